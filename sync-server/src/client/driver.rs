//! The client's task: owns the socket, the clock and the reconnect loop.
//! Every protocol decision is the replica's; this only moves frames.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use store_core::sync::reconnect::{self, Backoff, Next};
use store_core::sync::session::ClientEvent;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream, connect_async_tls_with_config};

use super::{ClientError, ClientOptions, Inner, Link, Shared, Update, WriteError};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How one connection ended.
enum End {
    /// Reconnect after a backoff.
    Retry(String),
    /// Stop for good.
    Stop(ClientError),
}

pub(super) async fn run(shared: Arc<Shared>, options: ClientOptions, mut stop: watch::Receiver<bool>) {
    let clock = Clock(Instant::now());
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let mut backoff = Backoff::new(ms(options.backoff_min), ms(options.backoff_max));
    // Built at the first `wss://` connection, kept for the next ones.
    let mut tls = None;
    let error = loop {
        shared.inner.lock().link = Link::Connecting;
        let opened = tokio::select! {
            opened = open(&shared, &options, &mut tls) => opened,
            () = stopped(&mut stop) => break ClientError::Closed,
        };
        let end = match opened {
            Ok(socket) => drive(&shared, socket, clock, &mut stop, &mut backoff).await,
            Err(why) => End::Retry(why),
        };
        match end {
            End::Stop(e) => break e,
            End::Retry(reason) => {
                {
                    let mut inner = shared.inner.lock();
                    inner.session().disconnected();
                    inner.link = Link::Offline;
                    inner.publish(&Update::Disconnected { reason });
                }
                let delay = Duration::from_millis(backoff.next_delay_ms(random()));
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = stopped(&mut stop) => break ClientError::Closed,
                }
            }
        }
    };
    let mut inner = shared.inner.lock();
    inner.session().disconnected();
    inner.link = Link::Stopped;
    inner.stopped = Some(error.clone());
    for (_, waiter) in inner.waiters.drain() {
        let _ = waiter.send(Err(WriteError::Stopped(error.clone())));
    }
    inner.publish(&Update::Stopped(error));
    inner.subscribers.clear();
}

/// Gets a fresh token, if the options have a source, then opens a socket
/// (over TLS for a `wss://` URL).
async fn open(
    shared: &Shared,
    options: &ClientOptions,
    tls: &mut Option<Arc<rustls::ClientConfig>>,
) -> Result<Socket, String> {
    if let Some(source) = &options.token_source {
        let token = source
            .fetch()
            .await
            .map_err(|e| format!("cannot get a token: {e}"))?;
        shared.inner.lock().session().set_token(token);
    }
    let failed = |why: String| format!("cannot connect to {}: {why}", options.url);
    let request = options
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| failed(e.to_string()))?;
    let connector = if request.uri().scheme_str() == Some("wss") {
        let config = match tls {
            Some(config) => Arc::clone(config),
            None => Arc::clone(tls.insert(super::tls::client_config(options.ca.as_ref()).map_err(failed)?)),
        };
        Some(Connector::Rustls(config))
    } else {
        None
    };
    // Without TCP_NODELAY, Nagle's algorithm would hold each small push
    // back until the previous one is acknowledged.
    let (socket, _) = connect_async_tls_with_config(request, None, true, connector)
        .await
        .map_err(|e| failed(connect_error(&e)))?;
    Ok(socket)
}

/// A connection failure in words; a TLS failure says what was not trusted.
fn connect_error(error: &WsError) -> String {
    let tls = match error {
        WsError::Io(e) => e.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()),
        WsError::Tls(tokio_tungstenite::tungstenite::error::TlsError::Rustls(e)) => Some(&**e),
        _ => None,
    };
    match tls {
        Some(e) => super::tls::describe(e),
        None => error.to_string(),
    }
}

/// One connection, from `hello` to its end.
async fn drive(
    shared: &Shared,
    socket: Socket,
    clock: Clock,
    stop: &mut watch::Receiver<bool>,
    backoff: &mut Backoff,
) -> End {
    let (mut sink, mut stream) = socket.split();
    shared.inner.lock().session().connect(clock.now_ms());
    let mut closed_with: Option<(u16, String)> = None;
    loop {
        let (frames, end, deadline) = {
            let mut inner = shared.inner.lock();
            let end = dispatch_events(&mut inner, backoff);
            let mut frames = Vec::new();
            while let Some(frame) = inner.session().poll_transmit_frame(clock.now_ms()) {
                frames.push(frame);
            }
            (frames, end, inner.session().poll_timeout())
        };
        for frame in frames {
            if let Err(e) = sink.send(Message::text(frame)).await {
                return End::Retry(format!("send failed: {e}"));
            }
        }
        if let Some(end) = end {
            let _ = sink.close().await;
            return end;
        }
        tokio::select! {
            () = stopped(stop) => {
                let bye = CloseFrame { code: WsCloseCode::Normal, reason: "client closed".into() };
                let _ = sink.send(Message::Close(Some(bye))).await;
                return End::Stop(ClientError::Closed);
            }
            () = shared.wake.notified() => {}
            () = sleep_until(deadline.map(|t| clock.at(t))) => {
                shared.inner.lock().session().handle_timeout(clock.now_ms());
            }
            message = stream.next() => {
                let bytes = match message {
                    Some(Ok(Message::Text(text))) => text.as_bytes().to_vec(),
                    Some(Ok(Message::Binary(bytes))) => bytes.to_vec(),
                    Some(Ok(Message::Close(frame))) => {
                        // tungstenite answers the close; the stream ends next.
                        closed_with = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                        continue;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) if closed_with.is_none() => return End::Retry(format!("connection lost: {e}")),
                    Some(Err(_)) | None => return after_close(closed_with),
                };
                let handled = {
                    let mut inner = shared.inner.lock();
                    let handled = inner.session().handle_frame(&bytes, clock.now_ms());
                    // What the frame brought is in the view before the lock
                    // goes: `status().synced` never shows a view behind it.
                    inner.sync_view();
                    handled
                };
                if let Err(e) = handled {
                    let _ = sink.close().await;
                    return End::Retry(format!("bad frame from the server: {e}"));
                }
            }
        }
    }
}

/// Hands the session's events to waiters and subscribers; says whether the
/// connection is over.
fn dispatch_events(inner: &mut Inner, backoff: &mut Backoff) -> Option<End> {
    let mut end = None;
    while let Some(event) = inner.replica.poll_event() {
        if let ClientEvent::Connected { .. } = event {
            backoff.reset();
        }
        let why = || match &event {
            ClientEvent::Error(e) | ClientEvent::AccessLost(e) => format!("{}: {}", e.code, e.message),
            ClientEvent::Retry { op_id, code, message } => {
                format!("op {op_id} failed on the server ({code}): {message}")
            }
            _ => "the server stopped answering".to_owned(),
        };
        match reconnect::after_event(&event) {
            Next::Keep => {}
            Next::Reconnect => end = Some(End::Retry(why())),
            Next::Stop => {
                let code = match &event {
                    ClientEvent::Error(e) => Some(e.code),
                    _ => None,
                };
                end = Some(End::Stop(ClientError::Refused { code, message: why() }));
            }
        }
        inner.dispatch(event);
    }
    inner.sync_view();
    end
}

/// The end after the server closed without a fatal `error` first (the
/// policy of [`reconnect::retry_after_close`]).
fn after_close(closed_with: Option<(u16, String)>) -> End {
    let Some((code, reason)) = closed_with else {
        return End::Retry("connection closed".into());
    };
    let message = format!("closed with {code}: {reason}");
    if reconnect::retry_after_close(Some(code)) {
        End::Retry(message)
    } else {
        End::Stop(ClientError::Refused { code: None, message })
    }
}

/// Resolves when `close` was called or every handle is gone.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// The session's milliseconds, counted from the task's start.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now_ms(self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn at(self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
}

/// A number uniform in `[0, 1)` for the backoff's jitter.
fn random() -> f64 {
    let bits = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_within_zero_and_one() {
        for _ in 0..1000 {
            let r = random();
            assert!((0.0..1.0).contains(&r), "{r}");
        }
    }

    #[test]
    fn only_refusals_stop_the_client() {
        assert!(matches!(after_close(Some((4001, String::new()))), End::Stop(_)));
        assert!(matches!(after_close(Some((1002, String::new()))), End::Stop(_)));
        assert!(matches!(after_close(Some((4008, String::new()))), End::Retry(_)));
        assert!(matches!(after_close(Some((1000, String::new()))), End::Retry(_)));
        assert!(matches!(after_close(None), End::Retry(_)));
    }
}
