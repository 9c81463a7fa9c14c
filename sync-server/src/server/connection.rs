//! One client connection: a WebSocket moved in and out of a
//! [`ServerSession`], whose effects are served by the namespace's store.
//!
//! The session decides everything; this module only moves frames, serves
//! effects, feeds the store's changes and drives the session's timer.

use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::Value;
use store_core::sync::codec::encode_server;
use store_core::sync::session::{
    Authorized, BadFrame, Denied, Outbound, ServerEffect, ServerSession, SyncStart,
};
use store_core::sync::{ErrorCode, Rights, SnapshotEntry, SnapshotReason};
use store_core::{Error, Event, Store, Watch, WatchOptions};
use tokio::io::AsyncReadExt;
use tokio::time::timeout_at;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use super::AppState;
use super::frames::EventFrames;
use super::metrics::Metrics;
use super::socket::Socket;
use crate::backend::{Answer, Durable};

/// How many committed changes may wait for a connection before it is
/// treated as lagging (and sent a snapshot instead).
const LIVE_BUFFER: usize = 4_096;

/// After a frame the transport refused, the server reads out (and drops)
/// what the client still sends, so that closing does not reset the
/// connection under the close frame; it stops when nothing arrives for
/// this long (the client is done and waits for the server to hang up).
const DRAIN_IDLE: Duration = Duration::from_millis(500);

/// The namespace a session was admitted to.
struct Admitted {
    store: Durable<Value>,
    /// The namespace's shared encodings of its events.
    frames: Arc<EventFrames>,
    client_id: String,
    /// The credential and namespace, checked again when the server's
    /// tokens or keys are reloaded.
    token: String,
    namespace: String,
}

/// At most this many received frames are handled before the connection
/// serves them (applies their pushes) and answers.
const MAX_FRAMES_PER_ROUND: usize = 64;

/// How the client's side of the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// Frames may still come.
    Open,
    /// The client sent a Close frame. Nothing more can be sent but the
    /// answering Close (tungstenite has queued it, with the client's code);
    /// it goes out once what the client pushed before is applied.
    Closed,
    /// The connection is gone (reset, or ended without a Close).
    Gone,
    /// The transport refused a frame (too large, not UTF-8, malformed): the
    /// session answers it; the WebSocket reader is unusable from there on.
    Refused,
}

type Sink = SplitSink<Socket, Message>;
type Source = SplitStream<Socket>;

/// Runs one connection to its end.
///
/// How a connection ends, as the client sees it:
///
/// - a fatal error of the session (including a frame the transport refused,
///   and a client that stopped reading): what was queued before it, the
///   `error` message, then a Close frame with the error's close code; the
///   server then reads until the client answers the Close or hangs up;
/// - the client's Close: what it pushed before is applied, then the Close is
///   answered (with the client's code, 1000 for a normal close);
/// - every wait on the client (a send, the close, the answer to it) is
///   bounded by the send timeout; past it the TCP connection is dropped.
pub(crate) async fn run(socket: Socket, state: Arc<AppState>) {
    let metrics = &state.metrics;
    Metrics::add(&metrics.connections, 1);
    Metrics::add(&metrics.connections_total, 1);
    let started = Instant::now();
    let now = || started.elapsed().as_millis() as u64;
    let mut session = ServerSession::new(state.session, now());
    let mut admitted: Option<Admitted> = None;
    let mut watch: Option<Watch<Value>> = None;
    let lag = metrics.register_lag();
    let (mut tx, rx) = socket.split();
    let mut reader = Reader::spawn(rx);

    // What the loop waits on besides the socket and the changes lives
    // across its turns: a turn per batch of changes must not register a
    // timer and two notifications afresh. The session's timer is moved
    // only when its deadline changes.
    let mut shutdown = pin!(signalled(state.shutdown.clone()));
    let mut reloads = pin!(signalled(state.auth.reloads()));
    let origin = tokio::time::Instant::from_std(started);
    let mut timer = pin!(tokio::time::sleep_until(origin));
    let mut armed: Option<u64> = None;

    // Once the client closed, went away or sent a frame the transport
    // refused, what it sent before is still served, then the connection
    // ends.
    let mut peer = Peer::Open;
    // The answers of a round of pushes are queued before any is sent: a
    // round holds at most half the session's queue of ops, and a push that
    // does not fit waits for the next round.
    let max_ops_per_round = (state.session.max_queued_messages / 2).max(1);
    let mut next_round: Option<ServerEffect> = None;

    loop {
        // Pushes received together are submitted together, so the store
        // commits them in one transaction; they are answered in order.
        let mut applying = Vec::new();
        let mut ops_in_round = 0;
        while let Some(effect) = next_round.take().or_else(|| session.poll_effect()) {
            if let ServerEffect::Apply { ops, .. } = &effect {
                if !applying.is_empty() && ops_in_round + ops.len() > max_ops_per_round {
                    next_round = Some(effect);
                    break;
                }
                ops_in_round += ops.len();
            } else {
                answer(&state, &mut session, &mut applying).await;
            }
            if let Some(submitted) =
                serve(&state, &mut session, effect, &mut admitted, &mut watch, started).await
            {
                applying.push(submitted);
            }
        }
        let applied = !applying.is_empty();
        answer(&state, &mut session, &mut applying).await;
        if applied {
            // The store published the pushes' changes before it answered:
            // they leave with the acks, in one write, rather than in a turn
            // of their own.
            if let Some(events) = next_changes(&mut watch).now_or_never() {
                on_changes(events, &mut session, &mut watch, admitted.as_ref()).await;
            }
        }
        if session.is_closed() {
            // The session's last messages and its close code are sent when
            // the connection ends.
            break;
        }
        if peer == Peer::Open {
            match send_queued(
                &mut tx,
                &mut session,
                admitted.as_ref(),
                state.send_timeout,
                metrics,
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(_)) => peer = Peer::Gone,
                Err(Stalled) => {
                    // The client stopped reading: stop queuing for it; the
                    // `slow_consumer` error and the close frame follow what
                    // its socket already holds, if it reads again in time.
                    tracing::info!("giving up on a client that stopped reading");
                    Metrics::add(&metrics.slow_consumers, 1);
                    session.handle_send_stalled(state.send_timeout.as_millis() as u64);
                    watch = None;
                }
            }
        } else {
            // The client closed or is gone: nothing more reaches it.
            while session.poll_outbound().is_some() {}
        }
        let backlog = watch.as_ref().map_or(0, Watch::ready) as u64;
        lag.store(backlog, std::sync::atomic::Ordering::Relaxed);
        if session.is_closed() || peer != Peer::Open && next_round.is_none() {
            break;
        }
        if next_round.is_some() {
            continue;
        }
        let deadline = session.poll_timeout();
        if deadline != armed {
            if let Some(at) = deadline {
                timer.as_mut().reset(origin + Duration::from_millis(at));
            }
            armed = deadline;
        }
        tokio::select! {
            frame = reader.next() => {
                // This frame and those already received after it (a bounded
                // number), so that their pushes are applied together.
                let mut frame = frame;
                for round in 1.. {
                    peer = take_frame(frame, &mut session, now(), metrics);
                    if peer != Peer::Open || round == MAX_FRAMES_PER_ROUND {
                        break;
                    }
                    match reader.try_next() {
                        Some(next) => frame = next,
                        None => break,
                    }
                }
            }
            events = next_changes(&mut watch) => {
                on_changes(events, &mut session, &mut watch, admitted.as_ref()).await;
            }
            () = &mut timer, if armed.is_some() => {
                // Armed again from the session's next deadline.
                armed = None;
                session.handle_timeout(now());
            }
            Some(()) = shutdown.next() => session.handle_shutdown(),
            Some(()) = reloads.next() => {
                if let Some(a) = &admitted {
                    recheck(&state, &mut session, a).await;
                }
            }
        }
    }
    drop(watch);
    close(&state, &mut session, admitted.as_ref(), tx, reader, peer).await;
    Metrics::decrement(&metrics.connections);
}

/// A frame as the WebSocket reader gives it: `None` when the connection ended.
type Frame = Option<Result<Message, WsError>>;

/// The client's frames, read by a task of their own: the connection's task
/// is woken by a frame only when one came, and a turn for the changes it
/// sends does not try a read (in tungstenite, each try zeroes the spare
/// read buffer). At most [`MAX_FRAMES_PER_ROUND`] frames wait in between;
/// past that the reader waits, and the client's sends with it.
struct Reader {
    frames: tokio::sync::mpsc::Receiver<Frame>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Source>,
}

impl Reader {
    fn spawn(mut rx: Source) -> Reader {
        let (sender, frames) = tokio::sync::mpsc::channel(MAX_FRAMES_PER_ROUND);
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                let frame = tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    frame = rx.next() => frame,
                };
                // After the end or an error the reader is done.
                let last = !matches!(frame, Some(Ok(_)));
                if sender.send(frame).await.is_err() || last {
                    break;
                }
            }
            rx
        });
        Reader {
            frames,
            stop: Some(stop),
            task,
        }
    }

    /// The next frame (`None`: the connection ended).
    async fn next(&mut self) -> Frame {
        self.frames.recv().await.flatten()
    }

    /// The next frame if one is waiting.
    fn try_next(&mut self) -> Option<Frame> {
        self.frames.try_recv().ok()
    }

    /// Stops the reader and hands back the WebSocket's read half (for
    /// reading the raw connection), unless its task failed.
    async fn into_source(mut self) -> Option<Source> {
        // Closing the channel ends a reader waiting to hand over a frame;
        // the signal, one waiting for the client.
        self.frames.close();
        drop(self.frames);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.ok()
    }
}

/// Hands one received frame to the session; tells how the client's side
/// stands after it.
fn take_frame(
    frame: Option<Result<Message, WsError>>,
    session: &mut ServerSession,
    now: u64,
    metrics: &Metrics,
) -> Peer {
    match frame {
        Some(Ok(Message::Text(text))) => {
            Metrics::add(&metrics.frames_in, 1);
            session.handle_frame(text.as_bytes(), now);
        }
        Some(Ok(Message::Binary(_))) => {
            Metrics::add(&metrics.frames_in, 1);
            session.handle_bad_frame(BadFrame::Binary, now);
        }
        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
        Some(Ok(Message::Close(_))) => return Peer::Closed,
        Some(Err(e)) => {
            return match refused(e) {
                Some(bad) => {
                    session.handle_bad_frame(bad, now);
                    Peer::Refused
                }
                None => Peer::Gone,
            };
        }
        None => return Peer::Gone,
    }
    Peer::Open
}

/// The frame the transport refused, or `None` when the error is the
/// connection's end.
fn refused(error: WsError) -> Option<BadFrame> {
    match error {
        WsError::Utf8(_) => Some(BadFrame::InvalidUtf8),
        WsError::Capacity(CapacityError::MessageTooLong { size, .. }) => Some(BadFrame::TooLarge { size }),
        WsError::Capacity(e) => Some(BadFrame::Malformed(e.to_string())),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        WsError::Protocol(e) => Some(BadFrame::Malformed(e.to_string())),
        WsError::AttackAttempt => Some(BadFrame::Malformed("an attack attempt".into())),
        _ => None,
    }
}

/// The text of a message to send: a `changes` message from the namespace's
/// shared encodings (the same bytes for every connection sent the same
/// batch), not encoded per connection.
fn encode(outbound: Outbound, admitted: Option<&Admitted>) -> Utf8Bytes {
    match (&outbound, admitted) {
        (Outbound::Changes { events, rev }, Some(a)) => a.frames.changes(events, *rev),
        _ => encode_server(&outbound.into_message()).into(),
    }
}

/// Ends the connection, waiting on the client at most the send timeout:
/// sends the session's last messages and its close frame (or answers the
/// client's close), then reads until the client hangs up.
async fn close(
    state: &AppState,
    session: &mut ServerSession,
    admitted: Option<&Admitted>,
    mut tx: Sink,
    reader: Reader,
    peer: Peer,
) {
    let deadline = tokio::time::Instant::now() + state.send_timeout;
    let code = session.poll_close();
    match (peer, code) {
        (Peer::Closed, _) => {
            // Writes the answering Close that tungstenite queued; the
            // connection ends with it.
            let _ = timeout_at(deadline, tx.flush()).await;
        }
        (Peer::Open | Peer::Refused, Some(code)) => {
            let sent = timeout_at(deadline, async {
                while let Some(outbound) = session.poll_outbound() {
                    let text = encode(outbound, admitted);
                    tx.send(Message::Text(text)).await?;
                    Metrics::add(&state.metrics.frames_out, 1);
                }
                let frame = CloseFrame {
                    code: code.code().into(),
                    reason: "".into(),
                };
                tx.send(Message::Close(Some(frame))).await
            })
            .await;
            if matches!(sent, Ok(Ok(()))) {
                drain(tx, reader, peer == Peer::Refused, deadline).await;
            }
        }
        (Peer::Gone, _) | (Peer::Open | Peer::Refused, None) => {}
    }
}

/// After the server's close frame: reads what the client still sends
/// until it answers the close or hangs up, so that the connection is not
/// reset under the close frame. When the WebSocket reader failed (`raw`),
/// the bytes are read from the TCP connection and dropped, until nothing
/// comes for [`DRAIN_IDLE`].
async fn drain(tx: Sink, mut reader: Reader, raw: bool, deadline: tokio::time::Instant) {
    if !raw {
        let _ = timeout_at(deadline, async { while let Some(Ok(_)) = reader.next().await {} }).await;
        return;
    }
    let Some(rx) = reader.into_source().await else {
        return;
    };
    let Ok(mut socket) = rx.reunite(tx) else {
        return;
    };
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let until = deadline.min(tokio::time::Instant::now() + DRAIN_IDLE);
        match timeout_at(until, socket.get_mut().read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
    }
}

/// A send to the client that did not complete within the send timeout.
struct Stalled;

/// Sends what the session queued, as one write where the socket takes it:
/// the frames are fed to the sink and flushed once. Most sends complete
/// without waiting; only one that waits is bounded by `send_timeout`
/// (`Stalled`), so the common case arms no timer.
async fn send_queued(
    tx: &mut Sink,
    session: &mut ServerSession,
    admitted: Option<&Admitted>,
    send_timeout: Duration,
    metrics: &Metrics,
) -> Result<Result<(), WsError>, Stalled> {
    let mut frames = 0;
    while let Some(outbound) = session.poll_outbound() {
        if let Outbound::Changes { events, .. } = &outbound {
            Metrics::add(&metrics.events_out, events.len() as u64);
        }
        let text = encode(outbound, admitted);
        if let Err(e) = bounded(tx.feed(Message::Text(text)), send_timeout).await? {
            return Ok(Err(e));
        }
        frames += 1;
    }
    if frames == 0 {
        return Ok(Ok(()));
    }
    let flushed = bounded(tx.flush(), send_timeout).await?;
    if flushed.is_ok() {
        Metrics::add(&metrics.frames_out, frames);
    }
    Ok(flushed)
}

/// `future`'s output; when it does not complete at once, within `limit`.
async fn bounded<T>(future: impl Future<Output = T>, limit: Duration) -> Result<T, Stalled> {
    let mut future = pin!(future);
    if let Some(done) = future.as_mut().now_or_never() {
        return Ok(done);
    }
    tokio::time::timeout(limit, future).await.map_err(|_| Stalled)
}

/// Resolves once per change of a watch channel (the shutdown flag, the
/// server's token reloads), polled across the connection's turns without
/// registering afresh each turn; never again once the sender is gone.
fn signalled<T: Send + Sync>(
    receiver: tokio::sync::watch::Receiver<T>,
) -> impl futures_util::Stream<Item = ()> {
    futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.changed().await.ok()?;
        Some(((), receiver))
    })
    .chain(futures_util::stream::pending())
}

/// What [`next_changes`] brings: committed changes with the namespace
/// revision they bring the client to, what ended the feed, or `None` once
/// the store closed.
type Changes = Option<Result<(Vec<Arc<Event<Value>>>, u64), Error>>;

/// Waits for the next committed changes and takes every one that is ready,
/// with the namespace revision they bring the client to.
async fn next_changes(watch: &mut Option<Watch<Value>>) -> Changes {
    let Some(w) = watch else {
        return std::future::pending().await;
    };
    let first = match w.next().await? {
        Ok(event) => event,
        Err(e) => return Some(Err(e)),
    };
    let mut events = vec![first];
    while w.ready() > 0 {
        match w.next().now_or_never() {
            Some(Some(Ok(event))) => events.push(event),
            _ => break,
        }
    }
    let rev = events.last().map_or(0, |e| e.rev);
    Some(Ok((events, rev)))
}

/// Hands the session what [`next_changes`] brought: the changes, or what
/// ended the feed (a client too far behind starts over from a snapshot).
async fn on_changes(
    events: Changes,
    session: &mut ServerSession,
    watch: &mut Option<Watch<Value>>,
    admitted: Option<&Admitted>,
) {
    match events {
        Some(Ok((events, rev))) => session.handle_events(events, rev),
        Some(Err(Error::Overflow)) => {
            // Too far behind to stream changes: start over with a snapshot.
            if let Some(a) = admitted {
                match snapshot(&a.store, SnapshotReason::Lagged).await {
                    Ok(started) => started.feed(session, watch),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read a snapshot for a lagging client");
                        session.handle_internal_error(format!("cannot read a snapshot: {e}"));
                    }
                }
            }
        }
        Some(Err(e)) => {
            *watch = None;
            tracing::error!(error = %e, "the change feed failed");
            session.handle_internal_error(format!("the change feed failed: {e}"));
        }
        // The store closed: the server is stopping.
        None => {
            *watch = None;
            session.handle_shutdown();
        }
    }
}

/// Serves one effect of the session. A push is only submitted to the
/// store: its answers are what the returned future resolves to.
async fn serve(
    state: &AppState,
    session: &mut ServerSession,
    effect: ServerEffect,
    admitted: &mut Option<Admitted>,
    watch: &mut Option<Watch<Value>>,
    started: Instant,
) -> Option<impl Future<Output = Vec<Answer>> + use<>> {
    match effect {
        ServerEffect::Authenticate {
            namespace,
            token,
            client_id,
        } => {
            let answer = match state.auth.check(&token, &namespace).await {
                Ok(grant) => match state.stores.open(&namespace).await {
                    Ok((store, frames)) => {
                        let expires_at_ms = grant.expires_at.map(|at| session_ms(started, at));
                        *admitted = Some(Admitted {
                            store,
                            frames,
                            client_id,
                            token,
                            namespace,
                        });
                        Ok(Authorized {
                            rights: grant.rights,
                            schemas: state.stores.schemas(),
                            expires_at_ms,
                        })
                    }
                    Err(e) => {
                        tracing::error!(namespace, error = %e, "cannot open the namespace's store");
                        Err(Denied {
                            code: ErrorCode::Internal,
                            message: "cannot open the namespace".into(),
                        })
                    }
                },
                Err(denied) => {
                    Metrics::add(&state.metrics.auth_refused, 1);
                    tracing::info!(namespace, reason = denied.message, "refused a token");
                    Err(denied)
                }
            };
            session.handle_auth(answer);
            None
        }
        ServerEffect::StartSync { since, .. } => {
            let Some(a) = admitted else {
                session.handle_shutdown();
                return None;
            };
            match start_sync(&a.store, since).await {
                Ok(started) => started.feed(session, watch),
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a sync");
                    session.handle_internal_error(format!("cannot start the sync: {e}"));
                }
            }
            None
        }
        ServerEffect::Apply { client_id, ops } => {
            let Some(a) = admitted.as_ref().filter(|a| a.client_id == client_id) else {
                session.handle_shutdown();
                return None;
            };
            Some(a.store.apply_ops(&client_id, ops))
        }
    }
}

/// A wall-clock time in the session's clock: milliseconds since the
/// connection started.
fn session_ms(started: Instant, at: SystemTime) -> u64 {
    let from_now = at.duration_since(SystemTime::now()).unwrap_or_default();
    u64::try_from(started.elapsed().saturating_add(from_now).as_millis()).unwrap_or(u64::MAX)
}

/// Checks a welcomed session's token again after the server's tokens or
/// keys were reloaded: a token refused now, or granting less than before,
/// ends the session.
async fn recheck(state: &AppState, session: &mut ServerSession, admitted: &Admitted) {
    let denied = match state.auth.check(&admitted.token, &admitted.namespace).await {
        Err(denied) => denied,
        Ok(grant) if grant.rights == Rights::Read && session.rights() == Rights::ReadWrite => {
            Denied::forbidden("the token no longer grants writing to this namespace")
        }
        Ok(_) => return,
    };
    tracing::info!(
        namespace = admitted.namespace,
        reason = denied.message,
        "revoked a session"
    );
    Metrics::add(&state.metrics.auth_revoked, 1);
    session.handle_revoked(denied);
}

/// Awaits the submitted pushes in order and hands each one's answers to
/// the session.
async fn answer(
    state: &AppState,
    session: &mut ServerSession,
    applying: &mut Vec<impl Future<Output = Vec<Answer>>>,
) {
    for answers in applying.drain(..) {
        let answers = answers.await;
        let acked = answers.iter().filter(|a| a.is_ok()).count() as u64;
        Metrics::add(&state.metrics.ops_acked, acked);
        Metrics::add(&state.metrics.ops_rejected, answers.len() as u64 - acked);
        session.handle_applied(answers);
    }
}

/// How a sync starts: what to tell the session, the live watch, and live
/// changes that arrived while the start was read (fed right after it).
struct Started {
    start: SyncStart,
    watch: Watch<Value>,
    early: Vec<Arc<Event<Value>>>,
}

impl Started {
    fn feed(self, session: &mut ServerSession, watch: &mut Option<Watch<Value>>) {
        *watch = Some(self.watch);
        session.handle_sync_start(self.start);
        if let Some(last) = self.early.last() {
            let rev = last.rev;
            session.handle_events(self.early, rev);
        }
    }
}

/// Subscribes and tells the session how to bring the client up to date:
/// the changes after `since` when the store still has them, else a snapshot.
async fn start_sync(store: &Durable<Value>, since: Option<u64>) -> Result<Started, Error> {
    let Some(since) = since else {
        return snapshot(store, SnapshotReason::Initial).await;
    };
    let mut w = store
        .watch_all(WatchOptions::new().from_rev(since).buffer_size(LIVE_BUFFER))
        .await?;
    let start_rev = w.start_rev();
    let (mut events, mut early) = (Vec::new(), Vec::new());
    while w.ready() > 0 || events.is_empty() && early.is_empty() {
        match w.next().now_or_never() {
            Some(Some(Ok(e))) if e.rev <= start_rev => events.push(Event::clone(&e)),
            Some(Some(Ok(e))) => early.push(e),
            Some(Some(Err(Error::Compacted { .. }))) => {
                return snapshot(store, SnapshotReason::Compacted).await;
            }
            Some(Some(Err(Error::RevisionAhead { .. }))) => {
                return snapshot(store, SnapshotReason::Reset).await;
            }
            Some(Some(Err(e))) => return Err(e),
            Some(None) => return Err(Error::Closed),
            None => break,
        }
    }
    Ok(Started {
        start: SyncStart::Changes {
            events,
            rev: start_rev,
        },
        watch: w,
        early,
    })
}

/// Subscribes with a replay: the replay is the snapshot, taken atomically
/// with the subscription.
async fn snapshot(store: &Durable<Value>, reason: SnapshotReason) -> Result<Started, Error> {
    let mut w = store
        .watch_all(WatchOptions::new().replay().buffer_size(LIVE_BUFFER))
        .await?;
    let rev = w.start_rev();
    let (mut entries, mut early) = (Vec::new(), Vec::new());
    while w.ready() > 0 {
        match w.next().now_or_never() {
            Some(Some(Ok(e))) if e.rev <= rev && early.is_empty() => entries.push(SnapshotEntry {
                kind: e.kind.clone(),
                key: e.key.clone(),
                value: e.value.clone(),
                version: e.version,
                rev: e.rev,
            }),
            Some(Some(Ok(e))) => early.push(e),
            Some(Some(Err(e))) => return Err(e),
            Some(None) => return Err(Error::Closed),
            None => break,
        }
    }
    Ok(Started {
        start: SyncStart::Snapshot { rev, reason, entries },
        watch: w,
        early,
    })
}
