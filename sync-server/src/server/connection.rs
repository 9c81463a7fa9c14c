//! One client connection: a WebSocket moved in and out of a
//! [`ServerSession`], whose effects are served by the namespace's store.
//!
//! The session decides everything; this module only moves frames, serves
//! effects, feeds the store's changes and drives the session's timer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::Value;
use store_core::sync::codec::encode_server;
use store_core::sync::session::{Authorized, Outbound, ServerEffect, ServerSession, SyncStart};
use store_core::sync::{ErrorCode, SnapshotEntry, SnapshotReason};
use store_core::{Error, Event, Store, Watch, WatchOptions};

use super::AppState;
use super::frames::EventFrames;
use super::metrics::Metrics;
use crate::backend::{Answer, Durable};

/// How many committed changes may wait for a connection before it is
/// treated as lagging (and sent a snapshot instead).
const LIVE_BUFFER: usize = 4_096;

/// The namespace a session was admitted to.
struct Admitted {
    store: Durable<Value>,
    /// The namespace's shared encodings of its events.
    frames: Arc<EventFrames>,
    client_id: String,
}

/// At most this many received frames are handled before the connection
/// serves them (applies their pushes) and answers.
const MAX_FRAMES_PER_ROUND: usize = 64;

/// Runs one connection to its end.
pub(crate) async fn run(socket: WebSocket, state: Arc<AppState>) {
    let metrics = &state.metrics;
    Metrics::add(&metrics.connections, 1);
    Metrics::add(&metrics.connections_total, 1);
    let started = Instant::now();
    let now = || started.elapsed().as_millis() as u64;
    let mut session = ServerSession::new(state.session, now());
    let mut admitted: Option<Admitted> = None;
    let mut watch: Option<Watch<Value>> = None;
    let mut shutdown = state.shutdown.clone();
    let lag = metrics.register_lag();
    let (mut tx, mut rx) = socket.split();

    // The peer closed or the socket failed: what it sent before is still
    // served and answered, then the connection ends.
    let mut closing = false;
    // The answers of a round of pushes are queued before any is sent: a
    // round holds at most half the session's queue of ops, and a push that
    // does not fit waits for the next round.
    let max_ops_per_round = (state.session.max_queued_messages / 2).max(1);
    let mut next_round: Option<ServerEffect> = None;

    'session: loop {
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
            if let Some(submitted) = serve(&state, &mut session, effect, &mut admitted, &mut watch).await {
                applying.push(submitted);
            }
        }
        answer(&state, &mut session, &mut applying).await;
        while let Some(outbound) = session.poll_outbound() {
            if let Outbound::Changes { events, .. } = &outbound {
                Metrics::add(&metrics.events_out, events.len() as u64);
            }
            // A `changes` frame is built from the namespace's shared
            // encodings of its events, not encoded per connection.
            let text = match (&outbound, &admitted) {
                (Outbound::Changes { events, rev }, Some(a)) => a.frames.changes(events, *rev),
                _ => encode_server(&outbound.into_message()),
            };
            match tokio::time::timeout(state.send_timeout, tx.send(Message::Text(text.into()))).await {
                Ok(Ok(())) => Metrics::add(&metrics.frames_out, 1),
                Ok(Err(_)) => break 'session,
                Err(_) => {
                    tracing::info!("cutting off a client that stopped reading");
                    break 'session;
                }
            }
        }
        let backlog = watch.as_ref().map_or(0, Watch::ready) as u64;
        lag.store(backlog, std::sync::atomic::Ordering::Relaxed);
        if closing && next_round.is_none() {
            break;
        }
        if let Some(code) = session.poll_close() {
            let frame = CloseFrame {
                code: code.code(),
                reason: "".into(),
            };
            let _ = tokio::time::timeout(state.send_timeout, tx.send(Message::Close(Some(frame)))).await;
            break;
        }
        if next_round.is_some() {
            continue;
        }
        let timer = session
            .poll_timeout()
            .map(|at| Duration::from_millis(at.saturating_sub(now())));
        tokio::select! {
            frame = rx.next() => {
                // This frame and those already received after it (a bounded
                // number), so that their pushes are applied together.
                let mut frame = frame;
                for round in 1.. {
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            Metrics::add(&metrics.frames_in, 1);
                            session.handle_frame(text.as_bytes(), now());
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            Metrics::add(&metrics.frames_in, 1);
                            session.handle_frame(&bytes, now());
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                        Some(Ok(Message::Close(_)) | Err(_)) | None => {
                            closing = true;
                            break;
                        }
                    }
                    if round == MAX_FRAMES_PER_ROUND {
                        break;
                    }
                    match rx.next().now_or_never() {
                        Some(next) => frame = next,
                        None => break,
                    }
                }
            }
            events = next_changes(&mut watch) => match events {
                Some(Ok((events, rev))) => session.handle_events(events, rev),
                Some(Err(Error::Overflow)) => {
                    // Too far behind to stream changes: start over with a snapshot.
                    if let Some(a) = &admitted {
                        match snapshot(&a.store, SnapshotReason::Lagged).await {
                            Ok(started) => started.feed(&mut session, &mut watch),
                            Err(_) => session.handle_shutdown(),
                        }
                    }
                }
                Some(Err(_)) | None => {
                    watch = None;
                    session.handle_shutdown();
                }
            },
            () = sleep(timer) => session.handle_timeout(now()),
            _ = shutdown.changed() => session.handle_shutdown(),
        }
    }
    Metrics::decrement(&metrics.connections);
}

async fn sleep(timer: Option<Duration>) {
    match timer {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Waits for the next committed changes and takes every one that is ready,
/// with the namespace revision they bring the client to.
async fn next_changes(
    watch: &mut Option<Watch<Value>>,
) -> Option<Result<(Vec<Arc<Event<Value>>>, u64), Error>> {
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

/// Serves one effect of the session. A push is only submitted to the
/// store: its answers are what the returned future resolves to.
async fn serve(
    state: &AppState,
    session: &mut ServerSession,
    effect: ServerEffect,
    admitted: &mut Option<Admitted>,
    watch: &mut Option<Watch<Value>>,
) -> Option<impl Future<Output = Vec<Answer>> + use<>> {
    match effect {
        ServerEffect::Authenticate {
            namespace,
            token,
            client_id,
        } => {
            let answer = match state.tokens.check(&token, &namespace) {
                Ok(rights) => match state.stores.open(&namespace).await {
                    Ok((store, frames)) => {
                        *admitted = Some(Admitted {
                            store,
                            frames,
                            client_id,
                        });
                        Ok(Authorized {
                            rights,
                            schemas: state.stores.schemas(),
                        })
                    }
                    Err(e) => {
                        tracing::error!(namespace, error = %e, "cannot open the namespace's store");
                        Err(ErrorCode::Internal)
                    }
                },
                Err(code) => Err(code),
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
                    session.handle_shutdown();
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
