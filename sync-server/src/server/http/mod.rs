//! The HTTP API under `/v1` (`docs/http.md`): the namespaces of the
//! WebSocket sync, read and written by backend services with the same
//! tokens, and their changes as Server-Sent Events.
//!
//! A write is a sync op: each request becomes ops that the namespace's
//! store applies with [`Durable::apply_ops`] under an HTTP client id
//! (`http`, or `http:NAME` with `Zestor-Client-Id: NAME`), so the rules of
//! a WebSocket `push` hold exactly (each op checked by the codec's
//! `check_op`, the kind's schema, versions and `if_version`, one answer
//! per op id) and its change reaches every watcher like any other. This
//! module maps HTTP onto that (paths, headers, bodies, statuses); it
//! decides nothing about the data.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::Value;
use store_core::sync::codec::{Limits, check_op, decode_client};
use store_core::sync::{ClientMessage, ErrorCode, Op, OpAction, OpResult, Reject, Rights, ServerMessage};
use store_core::{Store, check_key};

use super::AppState;
use super::frames::EventFrames;
use super::metrics::Metrics;
use crate::backend::{Answer, Durable};

mod error;
mod sse;

pub(crate) use error::HttpError;

/// The client id HTTP writes are recorded under, alone or as the prefix of
/// `http:NAME` when a request names its caller with [`CLIENT_ID_HEADER`].
/// Op ids (an `Idempotency-Key`, or the `op_id`s of `POST …/ops`) are
/// unique per client id, as in the protocol.
const CLIENT_ID: &str = "http";

/// The header that names the caller, so that its op ids need only be
/// unique among its own writes.
const CLIENT_ID_HEADER: HeaderName = HeaderName::from_static("zestor-client-id");

/// The header that makes a write retry-safe: it is the write's op id.
const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// Entries in a page of a listing, unless `limit` says otherwise.
const DEFAULT_LIMIT: usize = 100;

/// The most entries in a page of a listing.
const MAX_LIMIT: usize = 1_000;

/// An entry: `GET` of a key, or one of a listing (with its key).
#[derive(Serialize)]
struct Found {
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    value: Value,
    version: u64,
    rev: u64,
}

/// A page of a listing.
#[derive(Serialize)]
struct Listing {
    entries: Vec<Found>,
    /// The `after` of the next page; `null` on the last one.
    next: Option<String>,
    /// The namespace revision the page was read at.
    rev: u64,
}

/// What a write did: its op's `ack`, without the op id.
#[derive(Serialize)]
struct Written {
    result: OpResult,
    version: u64,
    rev: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
}

/// The answers of `POST …/ops`, each an `ack` or a `reject` message.
#[derive(Serialize)]
struct Answers {
    answers: Vec<ServerMessage>,
}

/// The routes of the HTTP API, counted in `/metrics`.
pub(super) fn routes(state: Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/ns/{ns}/ops", only(post(ops), "POST"))
        .route("/v1/ns/{ns}/changes", only(get(sse::changes), "GET"))
        .route("/v1/ns/{ns}/{kind}", only(get(list), "GET"))
        .route(
            "/v1/ns/{ns}/{kind}/{key}",
            only(
                get(read).put(put).patch(patch).delete(delete),
                "GET, PUT, PATCH, DELETE",
            ),
        )
        .route("/v1", any(unknown_path))
        .route("/v1/{*rest}", any(unknown_path))
        .layer(middleware::from_fn_with_state(state, count))
}

/// `router`, answering other methods with 405 and the `Allow` header.
fn only(router: MethodRouter<Arc<AppState>>, allow: &'static str) -> MethodRouter<Arc<AppState>> {
    router.fallback(move || async move { HttpError::method_not_allowed(allow) })
}

async fn unknown_path() -> HttpError {
    HttpError::not_found("no such path (the HTTP API: docs/http.md)")
}

/// Counts every request of the API, and its errors, in `/metrics`.
async fn count(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let metrics = &state.metrics;
    Metrics::add(&metrics.http_requests, 1);
    if response.status().is_client_error() {
        Metrics::add(&metrics.http_client_errors, 1);
    } else if response.status().is_server_error() {
        Metrics::add(&metrics.http_server_errors, 1);
    }
    response
}

/// A request admitted to a namespace by its token.
pub(crate) struct Caller {
    pub(crate) namespace: String,
    pub(crate) token: String,
    pub(crate) rights: Rights,
    /// When the token stops being valid (a JWT's `exp`, plus the leeway).
    pub(crate) expires_at: Option<SystemTime>,
    pub(crate) store: Durable<Value>,
    pub(crate) frames: Arc<EventFrames>,
}

impl Caller {
    /// Refuses a write with a read-only token, as a push's ops are.
    fn writable(&self) -> Result<(), HttpError> {
        match self.rights {
            Rights::ReadWrite => Ok(()),
            Rights::Read => Err(HttpError::of(ErrorCode::Forbidden, "the token is read-only")),
        }
    }
}

/// Checks the request's bearer token for `namespace` exactly as a
/// WebSocket `hello` is checked, and opens the namespace's store.
pub(crate) async fn admit(
    state: &AppState,
    headers: &HeaderMap,
    namespace: &str,
) -> Result<Caller, HttpError> {
    let token = bearer(headers)?;
    check_namespace(namespace, &state.session.limits)?;
    if *state.shutdown.borrow() {
        return Err(HttpError::of(
            ErrorCode::ShuttingDown,
            "the server is shutting down; retry later",
        ));
    }
    let grant = match state.auth.check(token, namespace).await {
        Ok(grant) => grant,
        Err(denied) => {
            Metrics::add(&state.metrics.auth_refused, 1);
            tracing::info!(namespace, reason = denied.message, "refused a token over HTTP");
            return Err(denied.into());
        }
    };
    let (store, frames) = state.stores.open(namespace).await.map_err(|e| {
        tracing::error!(namespace, error = %e, "cannot open the namespace's store");
        HttpError::internal("cannot open the namespace")
    })?;
    Ok(Caller {
        namespace: namespace.to_owned(),
        token: token.to_owned(),
        rights: grant.rights,
        expires_at: grant.expires_at,
        store,
        frames,
    })
}

/// The token of `Authorization: Bearer TOKEN`.
fn bearer(headers: &HeaderMap) -> Result<&str, HttpError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(HttpError::no_token(
            "an Authorization: Bearer TOKEN header is required",
        ));
    };
    let value = value
        .to_str()
        .map_err(|_| HttpError::no_token("the Authorization header is not ASCII text"))?;
    match value.trim().split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(token.trim())
        }
        _ => Err(HttpError::no_token(
            "the Authorization header must be Bearer TOKEN",
        )),
    }
}

/// A namespace's rules, as `hello` checks them: 1 to `max_id_bytes`
/// bytes, no NUL.
fn check_namespace(namespace: &str, limits: &Limits) -> Result<(), HttpError> {
    if namespace.is_empty() || namespace.len() > limits.max_id_bytes {
        Err(HttpError::bad_request(format!(
            "a namespace is 1 to {} bytes long",
            limits.max_id_bytes
        )))
    } else if namespace.contains('\0') {
        Err(HttpError::bad_request(
            "the namespace contains the nul character (\\0)",
        ))
    } else {
        Ok(())
    }
}

/// A kind's and a key's rules, as an op's are checked (`kind_required`,
/// `key_too_long`, `invalid_key`).
fn check_names(kind: &str, key: &str) -> Result<(), HttpError> {
    check_key(kind, key).map_err(HttpError::from)
}

/// The path's parameters, or why they are not valid (invalid
/// percent-encoding, not UTF-8).
fn params<T>(path: Result<Path<T>, PathRejection>) -> Result<T, HttpError> {
    path.map(|Path(p)| p)
        .map_err(|e| HttpError::bad_request(format!("the path: {}", e.body_text())))
}

/// `GET /v1/ns/{ns}/{kind}/{key}`: `{value, version, rev}`.
async fn read(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (namespace, kind, key) = params(path)?;
    let caller = admit(&state, &headers, &namespace).await?;
    check_names(&kind, &key)?;
    match caller.store.get(&kind, &key).await? {
        Some(entry) => Ok(Json(Found {
            key: None,
            value: entry.value,
            version: entry.version,
            rev: entry.rev,
        })
        .into_response()),
        None => Err(HttpError::not_found(format!("{kind}/{key} does not exist"))),
    }
}

/// `GET /v1/ns/{ns}/{kind}?after=KEY&limit=N`: a page of the kind's
/// entries in key order, `{entries, next, rev}`.
async fn list(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (namespace, kind) = params(path)?;
    let caller = admit(&state, &headers, &namespace).await?;
    check_names(&kind, "")?;
    let Query(query) = query.map_err(|e| HttpError::bad_request(format!("the query: {}", e.body_text())))?;
    let (mut after, mut limit) = (None, None);
    for (name, value) in query {
        let slot = match name.as_str() {
            "after" => &mut after,
            "limit" => &mut limit,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(HttpError::bad_request(format!("{name} is given twice")));
        }
    }
    let limit = match limit {
        None => DEFAULT_LIMIT,
        Some(text) => match integer(&text) {
            Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
            _ => {
                return Err(HttpError::bad_request(format!(
                    "limit must be an integer from 1 to {MAX_LIMIT}, got {text:?}"
                )));
            }
        },
    };
    let page = caller.store.page(&kind, after.as_deref(), limit)?;
    let next = match page.entries.last() {
        Some((key, _)) if page.more => Some(key.clone()),
        _ => None,
    };
    let entries = page
        .entries
        .into_iter()
        .map(|(key, entry)| Found {
            key: Some(key),
            value: entry.value,
            version: entry.version,
            rev: entry.rev,
        })
        .collect();
    Ok(Json(Listing {
        entries,
        next,
        rev: page.rev,
    })
    .into_response())
}

/// `PUT /v1/ns/{ns}/{kind}/{key}`: sets the value (the JSON body).
async fn put(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let body = Some((body, "application/json"));
    write(&state, params(path)?, &headers, OpAction::Set, body).await
}

/// `PATCH /v1/ns/{ns}/{kind}/{key}`: merges a JSON Merge Patch (the body)
/// into the value.
async fn patch(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let body = Some((body, "application/merge-patch+json"));
    write(&state, params(path)?, &headers, OpAction::Patch, body).await
}

/// `DELETE /v1/ns/{ns}/{kind}/{key}`.
async fn delete(
    State(state): State<Arc<AppState>>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    write(&state, params(path)?, &headers, OpAction::Delete, None).await
}

/// One write as one op: answered `{result, version, rev}` (and `value` for
/// a patch that changed the key) with 201 when it created the key, else
/// 200; a reject is an error with its code.
async fn write(
    state: &AppState,
    (namespace, kind, key): (String, String, String),
    headers: &HeaderMap,
    action: OpAction,
    body: Option<(Body, &'static str)>,
) -> Result<Response, HttpError> {
    let limits = &state.session.limits;
    let caller = admit(state, headers, &namespace).await?;
    caller.writable()?;
    check_names(&kind, &key)?;
    let client_id = client_id(headers, limits)?;
    let if_version = if_version(headers)?;
    let op_id = match text_header(headers, &IDEMPOTENCY_KEY)? {
        Some(key) if key.is_empty() || key.len() > limits.max_id_bytes => {
            return Err(HttpError::bad_request(format!(
                "Idempotency-Key must be 1 to {} bytes long",
                limits.max_id_bytes
            )));
        }
        Some(key) => key.to_owned(),
        None => fresh_op_id(),
    };
    let value = match body {
        Some((body, media_type)) => Some(json_body(state, headers, body, media_type).await?),
        None => None,
    };
    let op = Op {
        op_id,
        kind,
        key,
        action,
        value,
        if_version,
    };
    check_op(&op, limits)?;
    let op_id = op.op_id.clone();
    let answer = apply(state, &caller, &client_id, vec![op])
        .await
        .pop()
        .unwrap_or_else(|| Err(lost(op_id)));
    let ack = answer?;
    let status = match ack.result {
        OpResult::Created => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    let body = Written {
        result: ack.result,
        version: ack.version,
        rev: ack.rev,
        value: ack.value,
    };
    Ok((status, Json(body)).into_response())
}

/// `POST /v1/ns/{ns}/ops` with `{"ops": [...]}` as in a `push`: applies
/// them in order, `{"answers": [...]}` with each op's `ack` or `reject`.
async fn ops(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let limits = &state.session.limits;
    let namespace = params(path)?;
    let caller = admit(&state, &headers, &namespace).await?;
    caller.writable()?;
    if headers.contains_key(IDEMPOTENCY_KEY) {
        return Err(HttpError::bad_request(
            "each op has its op_id: POST …/ops takes no Idempotency-Key",
        ));
    }
    let client_id = client_id(&headers, limits)?;
    let push = json_body(&state, &headers, body, "application/json").await?;
    let ops = decode_push(push, limits)?;
    // An op that breaks a rule of its own is refused alone, in its place.
    let mut checked = Vec::with_capacity(ops.len());
    let mut valid = Vec::with_capacity(ops.len());
    for op in ops {
        match check_op(&op, limits) {
            Ok(()) => {
                checked.push(Err(op.op_id.clone()));
                valid.push(op);
            }
            Err(reject) => checked.push(Ok(reject)),
        }
    }
    let mut applied = if valid.is_empty() {
        Vec::new()
    } else {
        apply(&state, &caller, &client_id, valid).await
    }
    .into_iter();
    let answers = checked
        .into_iter()
        .map(|slot| {
            let answer = match slot {
                Ok(refused) => Err(refused),
                Err(op_id) => applied.next().unwrap_or_else(|| Err(lost(op_id))),
            };
            match answer {
                Ok(ack) => ServerMessage::Ack(ack),
                Err(reject) => ServerMessage::Reject(reject),
            }
        })
        .collect();
    Ok(Json(Answers { answers }).into_response())
}

/// The ops of a `push` body, checked by the protocol's decoder (which
/// names the field at fault, and refuses more than 1,000 ops).
fn decode_push(mut push: Value, limits: &Limits) -> Result<Vec<Op>, HttpError> {
    let Some(object) = push.as_object_mut() else {
        return Err(HttpError::bad_request(
            "the body must be an object: {\"ops\": [...]}",
        ));
    };
    object.insert("type".into(), "push".into());
    let frame = serde_json::to_vec(&push).map_err(|e| HttpError::internal(e.to_string()))?;
    let limits = Limits {
        max_frame_bytes: usize::MAX,
        ..*limits
    };
    match decode_client(&frame, &limits) {
        Ok(ClientMessage::Push(push)) => Ok(push.ops),
        Ok(other) => Err(HttpError::internal(format!(
            "a push decoded as a {}",
            other.type_name()
        ))),
        Err(e) => Err(HttpError::of(e.code, e.message)),
    }
}

/// Applies ops under `client_id`, counted like a push's.
async fn apply(state: &AppState, caller: &Caller, client_id: &str, ops: Vec<Op>) -> Vec<Answer> {
    let answers = caller.store.apply_ops(client_id, ops).await;
    let acked = answers.iter().filter(|a| a.is_ok()).count() as u64;
    Metrics::add(&state.metrics.ops_acked, acked);
    Metrics::add(&state.metrics.ops_rejected, answers.len() as u64 - acked);
    answers
}

/// The answer of an op the store did not answer.
fn lost(op_id: String) -> Reject {
    Reject {
        op_id,
        code: ErrorCode::Internal,
        message: "the store gave no answer".into(),
    }
}

/// The client id of the request's writes: `http`, or `http:NAME`.
fn client_id(headers: &HeaderMap, limits: &Limits) -> Result<String, HttpError> {
    let Some(name) = text_header(headers, &CLIENT_ID_HEADER)? else {
        return Ok(CLIENT_ID.to_owned());
    };
    let id = format!("{CLIENT_ID}:{name}");
    if name.is_empty() || id.len() > limits.max_id_bytes {
        return Err(HttpError::bad_request(format!(
            "Zestor-Client-Id must be 1 to {} bytes long",
            limits.max_id_bytes - CLIENT_ID.len() - 1
        )));
    }
    Ok(id)
}

/// The write's `if_version`: `If-Match: VERSION` (bare or quoted) or
/// `If-None-Match: *` (0: the key must not exist).
fn if_version(headers: &HeaderMap) -> Result<Option<u64>, HttpError> {
    let if_match = text_header(headers, &header::IF_MATCH)?;
    let if_none_match = text_header(headers, &header::IF_NONE_MATCH)?;
    match (if_match, if_none_match) {
        (Some(_), Some(_)) => Err(HttpError::bad_request("give If-Match or If-None-Match, not both")),
        (Some(text), None) => {
            let version = text
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(text);
            match integer(version) {
                Some(version) => Ok(Some(version)),
                None => Err(HttpError::bad_request(format!(
                    "If-Match must be the version the key must have (an integer), got {text:?}"
                ))),
            }
        }
        (None, Some("*")) => Ok(Some(0)),
        (None, Some(text)) => Err(HttpError::bad_request(format!(
            "If-None-Match takes * (create only), got {text:?}"
        ))),
        (None, None) => Ok(None),
    }
}

/// A decimal integer from 0 to 2^64 − 1, digits only.
pub(crate) fn integer(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A header given at most once, as text (surrounding spaces removed).
fn text_header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>, HttpError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(HttpError::bad_request(format!("{name} is given twice")));
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| HttpError::bad_request(format!("{name} is not ASCII text")))
}

/// A fresh op id for a write without an `Idempotency-Key`: a random
/// prefix per process and a counter.
fn fresh_op_id() -> String {
    static PROCESS: LazyLock<u64> =
        LazyLock::new(|| RandomState::new().hash_one((SystemTime::now(), std::process::id())));
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("auto:{:016x}:{}", *PROCESS, NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The body as JSON, of the media type the method takes; at most the
/// server's `max_frame_bytes`.
async fn json_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    media_type: &str,
) -> Result<Value, HttpError> {
    let given = text_header(headers, &header::CONTENT_TYPE)?;
    let essence = given.map(|t| t.split(';').next().unwrap_or("").trim());
    if !essence.is_some_and(|t| t.eq_ignore_ascii_case(media_type)) {
        return Err(HttpError::media_type(format!(
            "the body must be {media_type} (Content-Type: {media_type}), got {}",
            given.map_or_else(|| "no Content-Type".to_owned(), |t| format!("{t:?}"))
        )));
    }
    let max = state.session.limits.max_frame_bytes;
    let length = text_header(headers, &header::CONTENT_LENGTH)?.and_then(integer);
    if length.is_some_and(|n| n > (max as u64).saturating_mul(2)) {
        // Refused from its header, unread: the connection closes after the
        // answer. A smaller one is read out first (`read_body`).
        return Err(too_large(max));
    }
    let bytes = read_body(body, max).await?;
    serde_json::from_slice(&bytes).map_err(|e| HttpError::bad_request(format!("the body is not JSON: {e}")))
}

/// Reads a body of at most `max` bytes. A larger one (sent without its
/// length) is refused with `too_large`; what follows, up to twice the
/// limit, is read and dropped first, so that the client, still sending,
/// gets the answer rather than a reset connection.
async fn read_body(body: Body, max: usize) -> Result<Bytes, HttpError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut size = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| HttpError::bad_request(format!("reading the body: {e}")))?;
        size = size.saturating_add(chunk.len());
        if size <= max {
            bytes.extend_from_slice(&chunk);
        } else if size > max.saturating_mul(2) {
            break;
        }
    }
    if size > max {
        return Err(too_large(max));
    }
    Ok(bytes.into())
}

fn too_large(max: usize) -> HttpError {
    HttpError::of(
        ErrorCode::TooLarge,
        format!("the body exceeds the limit of {max} bytes"),
    )
}
