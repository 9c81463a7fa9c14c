//! `GET /v1/ns/{ns}/changes`: a namespace's changes as Server-Sent Events,
//! the same ordered, gap-free changes a WebSocket client receives.
//!
//! The stream is a watch of the namespace's store (`watch_all`), from the
//! revision the reader resumes after (`?since=REV`, or `Last-Event-ID`,
//! which wins) or from now. Each change is an event whose id is its
//! revision. What waits for a reader is bounded by the watch's buffer: a
//! reader that falls that far behind gets its queued changes, then an
//! `end` event (`slow_consumer`), and the stream ends; it resumes from its
//! last event id. The stream also ends, with an `end` event, when the
//! server shuts down and when its token expires or is revoked.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{FutureExt, StreamExt};
use serde_json::{Value, json};
use store_core::sync::ErrorCode;
use store_core::{Error, Event, Store, Watch, WatchOptions};
use tokio::sync::watch;

use super::{AppState, Caller, HttpError, admit, integer, params, text_header};
use crate::server::metrics::Metrics;

/// How many changes may wait for a reader before its stream ends with
/// `slow_consumer`.
const BUFFER: usize = 4_096;

/// The header a reconnecting `EventSource` sends: the last event's id.
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// Answers with the stream of the namespace's changes.
pub(super) async fn changes(
    State(state): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let namespace = params(path)?;
    let caller = admit(&state, &headers, &namespace).await?;
    let since = resume_point(&headers, query)?;
    let options = WatchOptions::new().buffer_size(BUFFER);
    let options = match since {
        Some(rev) => options.from_rev(rev),
        None => options,
    };
    let mut watch = caller.store.watch_all(options).await?;
    let mut pending = VecDeque::new();
    let mut ending = false;
    // A revision the store cannot resume from fails the watch at once.
    match watch.next().now_or_never() {
        Some(Some(Err(Error::Compacted { oldest }))) => {
            pending.push_back(terminal(
                "compacted",
                json!({
                    "code": "compacted",
                    "message": format!(
                        "revision {} is older than the history kept; list the kinds again, then \
                         resume from the listing's rev (the oldest revision to resume from is {oldest})",
                        since.unwrap_or_default()
                    ),
                    "oldest": oldest,
                }),
            ));
            ending = true;
        }
        Some(Some(Err(Error::RevisionAhead { requested, head }))) => {
            pending.push_back(terminal(
                "reset",
                json!({
                    "code": "reset",
                    "message": format!(
                        "revision {requested} is ahead of the namespace's {head}: its data was \
                         replaced; list the kinds again, then resume from the listing's rev"
                    ),
                    "rev": head,
                }),
            ));
            ending = true;
        }
        Some(Some(Err(e))) => return Err(e.into()),
        Some(None) => return Err(Error::Closed.into()),
        first => {
            let rev = since.unwrap_or_else(|| watch.start_rev());
            pending.push_back(
                SseEvent::default()
                    .event("ready")
                    .id(rev.to_string())
                    .data(json!({"rev": rev}).to_string()),
            );
            if let Some(Some(Ok(event))) = first {
                pending.push_back(change(&caller, &event));
            }
        }
    }
    Metrics::add(&state.metrics.http_streams, 1);
    let feed = Feed {
        shutdown: state.shutdown.clone(),
        reloads: state.auth.reloads(),
        expires_at: caller.expires_at.map(instant),
        _open: Open(Arc::clone(&state)),
        state: Arc::clone(&state),
        caller,
        watch,
        pending,
        ending,
    };
    let keep_alive = KeepAlive::new()
        .interval(Duration::from_millis(state.session.heartbeat_ms.max(1)))
        .text("keep-alive");
    let mut response = Sse::new(futures_util::stream::unfold(feed, Feed::next))
        .keep_alive(keep_alive)
        .into_response();
    // Proxies that buffer responses (nginx) would hold the events back.
    response
        .headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// The revision the reader resumes after: `Last-Event-ID`, else `since`,
/// else none (from now).
fn resume_point(
    headers: &HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Option<u64>, HttpError> {
    if let Some(id) = text_header(headers, &LAST_EVENT_ID)? {
        return integer(id).map(Some).ok_or_else(|| {
            HttpError::bad_request(format!(
                "Last-Event-ID must be a revision (an integer), got {id:?}"
            ))
        });
    }
    let Query(query) = query.map_err(|e| HttpError::bad_request(format!("the query: {}", e.body_text())))?;
    let mut since = None;
    for (name, value) in query {
        if name != "since" {
            continue;
        }
        let rev = integer(&value).ok_or_else(|| {
            HttpError::bad_request(format!("since must be a revision (an integer), got {value:?}"))
        })?;
        if since.replace(rev).is_some() {
            return Err(HttpError::bad_request("since is given twice"));
        }
    }
    Ok(since)
}

/// A change, as the `events` of a `changes` message hold it, with its
/// revision as the event's id.
fn change(caller: &Caller, event: &Arc<Event<Value>>) -> SseEvent {
    SseEvent::default()
        .event("change")
        .id(event.rev.to_string())
        .data(&*caller.frames.encoded(event))
}

/// The last event of a stream.
fn terminal(name: &str, data: Value) -> SseEvent {
    SseEvent::default().event(name).data(data.to_string())
}

/// The `end` event: why the stream ends.
fn end(code: ErrorCode, message: impl Into<String>) -> SseEvent {
    terminal("end", json!({"code": code, "message": message.into()}))
}

/// A wall-clock time on tokio's clock.
fn instant(at: SystemTime) -> tokio::time::Instant {
    let from_now = at.duration_since(SystemTime::now()).unwrap_or_default();
    let now = tokio::time::Instant::now();
    now.checked_add(from_now)
        .unwrap_or(now + Duration::from_secs(86_400 * 365))
}

/// Counts an open stream in `/metrics` until dropped.
struct Open(Arc<AppState>);

impl Drop for Open {
    fn drop(&mut self) {
        Metrics::decrement(&self.0.metrics.http_streams);
    }
}

/// One reader's stream.
struct Feed {
    state: Arc<AppState>,
    caller: Caller,
    watch: Watch<Value>,
    /// Events to send before waiting again.
    pending: VecDeque<SseEvent>,
    /// Whether the stream ends once `pending` is sent.
    ending: bool,
    shutdown: watch::Receiver<bool>,
    reloads: watch::Receiver<u64>,
    expires_at: Option<tokio::time::Instant>,
    _open: Open,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<SseEvent, Infallible>, Feed)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.ending {
                return None;
            }
            let last = tokio::select! {
                biased;
                () = self.shutdown.wait_for(|stopping| *stopping).map(drop) => end(
                    ErrorCode::ShuttingDown,
                    "the server is shutting down; resume from the last event id later",
                ),
                item = self.watch.next() => match item {
                    Some(Ok(event)) => {
                        let event = change(&self.caller, &event);
                        self.pending.push_back(event);
                        continue;
                    }
                    Some(Err(Error::Overflow)) => {
                        Metrics::add(&self.state.metrics.slow_consumers, 1);
                        end(
                            ErrorCode::SlowConsumer,
                            format!(
                                "more than {BUFFER} changes waited for this stream; resume from \
                                 the last event id"
                            ),
                        )
                    }
                    Some(Err(e)) => {
                        tracing::error!(error = %e, "the change feed failed");
                        end(ErrorCode::Internal, format!("the change feed failed: {e}"))
                    }
                    None => end(
                        ErrorCode::ShuttingDown,
                        "the namespace closed; resume from the last event id later",
                    ),
                },
                () = until(self.expires_at) => end(
                    ErrorCode::Unauthorized,
                    "the token expired; connect with a fresh one",
                ),
                Ok(()) = self.reloads.changed() => {
                    match self.state.auth.check(&self.caller.token, &self.caller.namespace).await {
                        Ok(_) => continue,
                        Err(denied) => {
                            Metrics::add(&self.state.metrics.auth_revoked, 1);
                            end(denied.code, denied.message)
                        }
                    }
                }
            };
            self.pending.push_back(last);
            self.ending = true;
        }
    }
}

async fn until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
