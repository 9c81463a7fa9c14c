//! The sync server: WebSocket sync at `/sync`, `GET /healthz`,
//! `GET /metrics`, and static files (the web app) for everything else.
//!
//! Each connection runs a [`ServerSession`](store_core::sync::session::ServerSession)
//! (the protocol's logic, in `store-core`) over the namespace's durable
//! store; see `docs/protocol.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use store_core::sync::session::ServerConfig;
use tokio::sync::watch;
use tower_http::services::ServeDir;

mod auth;
mod connection;
mod frames;
mod metrics;
mod stores;

pub use auth::Tokens;
pub use metrics::Metrics;
pub use stores::{Database, Stores};

/// What a running server shares with its connections.
pub struct AppState {
    /// The namespaces' stores.
    pub stores: Stores,
    /// Who may sync what.
    pub tokens: Tokens,
    /// How sessions behave (limits, heartbeats).
    pub session: ServerConfig,
    /// Counters for `/metrics`.
    pub metrics: Metrics,
    /// Browser origins allowed to open `/sync`; empty allows any.
    pub allowed_origins: Vec<String>,
    /// How long a send may wait on a client that does not read before the
    /// connection is cut, so it can neither stall nor grow the server.
    pub send_timeout: std::time::Duration,
    /// Becomes `true` when the server shuts down.
    pub shutdown: watch::Receiver<bool>,
}

/// The server's routes over `state`; static files from `static_dir` if given.
pub fn router(state: Arc<AppState>, static_dir: Option<PathBuf>) -> Router {
    let app = Router::new()
        .route("/sync", get(sync))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics));
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

async fn sync(State(state): State<Arc<AppState>>, headers: HeaderMap, upgrade: WebSocketUpgrade) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !state.allowed_origins.is_empty()
        && !state.allowed_origins.iter().any(|allowed| allowed == origin)
    {
        return (StatusCode::FORBIDDEN, "origin not allowed\n").into_response();
    }
    // Frames up to twice the limit reach the session, which answers the
    // ones over it with `too_large`; larger ones end the connection.
    let max = state.session.limits.max_frame_bytes.saturating_mul(2);
    // A small read buffer: tungstenite's default (128 KiB, zero-filled) would
    // make every idle connection cost that much.
    upgrade
        .read_buffer_size(READ_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| connection::run(socket, state))
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
    let app = router(state.clone(), static_dir).into_make_service_with_connect_info::<SocketAddr>();
    // Acks and changes are small frames: without TCP_NODELAY, Nagle's
    // algorithm holds each one back for tens of milliseconds.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await?;
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
