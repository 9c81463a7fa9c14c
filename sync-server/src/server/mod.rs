//! The sync server: WebSocket sync at `/sync`, the HTTP API under `/v1`
//! (`docs/http.md`), `GET /healthz`, `GET /metrics`, and static files (the
//! web app) for everything else, over plain HTTP ([`serve`]) or TLS
//! ([`serve_tls`]).
//!
//! Each connection runs a [`ServerSession`](store_core::sync::session::ServerSession)
//! (the protocol's logic, in `store-core`) over the namespace's durable
//! store; see `docs/protocol.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::{Listener, ListenerExt, TapIo};
use store_core::sync::session::ServerConfig;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tower_http::services::ServeDir;

mod auth;
mod connection;
mod frames;
mod http;
mod maintenance;
mod metrics;
mod origin;
mod socket;
mod stores;
mod tls;

pub use auth::{Auth, Grant, JwtConfig, JwtKeys, NamespaceGrant, Tokens};
pub use maintenance::{DEFAULT_MAINTENANCE_INTERVAL, Maintenance, parse_duration};
pub use metrics::Metrics;
pub use origin::check_allowed_origins;
pub use stores::{Database, Stores};
pub use tls::Tls;

/// What a running server shares with its connections.
pub struct AppState {
    /// The namespaces' stores.
    pub stores: Stores,
    /// Who may sync what (`Tokens` convert into it).
    pub auth: Auth,
    /// How sessions behave (limits, heartbeats).
    pub session: ServerConfig,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Browser origins (`scheme://host[:port]`, `null`, or `*` for any)
    /// allowed to open `/sync` besides the pages of the server's own host;
    /// requests without an `Origin` (not from a browser) are always allowed.
    /// See `docs/protocol.md` (Origins).
    pub allowed_origins: Vec<String>,
    /// How long a send may wait on a client that does not read before the
    /// server gives up on it (`slow_consumer`, 4008), so it can neither
    /// stall nor grow the server; and how long the server then waits for
    /// the client to take its last frames and answer its close.
    pub send_timeout: std::time::Duration,
    /// Becomes `true` when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// The server's routes over `state`; static files from `static_dir` if given.
pub fn router(state: Arc<AppState>, static_dir: Option<PathBuf>) -> Router {
    let app = Router::new()
        .route("/sync", get(sync))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(http::routes(state.clone()));
    let app = match static_dir {
        Some(dir) => app.fallback_service(ServeDir::new(dir)),
        None => app,
    };
    app.with_state(state)
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn sync(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let headers = request.headers();
    let text = |name| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if !origin::allowed(text(header::ORIGIN), text(header::HOST), &state.allowed_origins) {
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    // Frames up to twice the limit reach the session, which answers the
    // ones over it with `too_large`; the transport refuses larger ones from
    // their header, and the connection answers them with `too_large` too.
    let max = state.session.limits.max_frame_bytes.saturating_mul(2);
    // A small read buffer: tungstenite's default (128 KiB, zero-filled) would
    // make every idle connection cost that much.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    socket::upgrade(request, config, move |socket| connection::run(socket, state))
}

/// Each connection's WebSocket read buffer.
const READ_BUFFER: usize = 8 * 1024;

/// How long shutdown waits for connections to finish their in-flight ops
/// and close.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves on `listener` until `shutdown` resolves; then stops accepting,
/// tells every session (each finishes its in-flight ops and closes with
/// 1001, going away), waits for the connections to end and closes the
/// stores.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    static_dir: Option<PathBuf>,
    stop: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Acks and changes are small frames: without TCP_NODELAY, Nagle's
    // algorithm holds each one back for tens of milliseconds.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    serve_on(listener, state, static_dir, stop, shutdown).await
}

/// Like [`serve`], over TLS with `tls`'s certificate (https, wss). Each
/// TLS handshake runs on a task of its own, within the handshake timeout
/// ([`Tls::with_handshake_timeout`]); a client that fails or stalls its
/// handshake is dropped without holding up the others.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Tls,
    state: Arc<AppState>,
    static_dir: Option<PathBuf>,
    stop: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // TCP_NODELAY is set before the handshake; the empty tap gives the
    // connections the same `ConnectInfo<SocketAddr>` as plain ones.
    let listener = tls::listen(listener, &tls)?.tap_io(|_| {});
    serve_on(listener, state, static_dir, stop, shutdown).await
}

async fn serve_on<L, F>(
    listener: TapIo<L, F>,
    state: Arc<AppState>,
    static_dir: Option<PathBuf>,
    stop: watch::Sender<bool>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
    F: FnMut(&mut L::Io) + Send + 'static,
{
    let app = router(state.clone(), static_dir).into_make_service_with_connect_info::<SocketAddr>();
    let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop.send(true);
    });
    // Graceful shutdown waits for every HTTP response to end; a change
    // stream whose reader stopped reading cannot end (its connection is
    // stuck writing), so the wait is bounded.
    let mut stopping = state.shutdown.clone();
    let deadline = async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(DRAIN).await;
    };
    tokio::select! {
        served = std::future::IntoFuture::into_future(serving) => served?,
        () = deadline => tracing::warn!("HTTP responses still open after {DRAIN:?}: not waiting for them"),
    }
    let started = std::time::Instant::now();
    while state
        .metrics
        .connections
        .load(std::sync::atomic::Ordering::Relaxed)
        > 0
        && started.elapsed() < DRAIN
    {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    state.stores.close_all().await;
    Ok(())
}
