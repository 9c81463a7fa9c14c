//! The listener: publishes other processes' commits to this store's
//! watchers.
//!
//! It holds its own connection doing `LISTEN zestor_changes`. On a
//! notification for its namespace (not sent by this store's own writer), and
//! once right after `LISTEN` is established, it reads the change log after
//! the engine's revision in revision order and applies it to the engine,
//! which publishes it. A lost connection is re-established with backoff,
//! then the log is drained from the engine's revision again, so nothing is
//! skipped. The listener ends when the store's writer does (the store was
//! closed or dropped).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use store_core::{Engine, Error, MemStore, Result, StoreValue};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client, NoTls, Notification, Statement};

use super::{CHANNEL, Shared, Target, error_message, event_of, i64_of, pg_error};
use crate::backend::StoredEvent;

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Change-log rows read per query.
const PAGE: i64 = 1_000;
/// How long the listener leaves a batch to this store's writer before
/// applying it itself.
const WRITER_GRACE: Duration = Duration::from_secs(5);

const DRAIN_SQL: &str = "SELECT rev, kind, key, type, value::text, version FROM {s}.zestor_changes
     WHERE ns = $1 AND rev > $2 ORDER BY rev LIMIT $3";

enum End {
    /// The store is closed or gone.
    Stop,
    /// The connection was lost: reconnect.
    Lost,
}

/// Runs until `stop` resolves (its sender is dropped when the writer ends).
pub(super) async fn run<T: StoreValue>(
    mem: MemStore<T>,
    target: Arc<Target>,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let ns = target.ns.as_str();
    let mut backoff = MIN_BACKOFF;
    loop {
        let session = tokio::select! {
            biased;
            _ = &mut stop => return,
            s = Session::start(&target) => s,
        };
        match session {
            Ok(mut session) => {
                backoff = MIN_BACKOFF;
                match session.listen(&mem, &target, &shared, &mut stop).await {
                    End::Stop => return,
                    End::Lost => {
                        tracing::warn!(ns, "the PostgreSQL listener lost its connection; reconnecting");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(ns, error = %e, retry_in = ?backoff, "the PostgreSQL listener cannot connect");
                tokio::select! {
                    biased;
                    _ = &mut stop => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

struct Session {
    client: Client,
    notes: mpsc::UnboundedReceiver<Notification>,
    changes: Statement,
}

impl Session {
    /// Connects, drives the connection on its own task (forwarding
    /// notifications), and LISTENs.
    async fn start(t: &Target) -> Result<Session> {
        let mut config = t.config.clone();
        let name = format!("{}/listener", config.get_application_name().unwrap_or("zestor"));
        config.application_name(name);
        let (client, mut connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| pg_error("connecting the listener", &e))?;
        let (forward, notes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                match message {
                    Ok(AsyncMessage::Notification(n)) => {
                        if forward.send(n).is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %error_message(&e), "the PostgreSQL listener's connection failed");
                        break;
                    }
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| pg_error("LISTEN", &e))?;
        let changes = client
            .prepare(&t.sql(DRAIN_SQL))
            .await
            .map_err(|e| pg_error("preparing the listener's query", &e))?;
        Ok(Session {
            client,
            notes,
            changes,
        })
    }

    async fn listen<T: StoreValue>(
        &mut self,
        mem: &MemStore<T>,
        t: &Target,
        shared: &Shared,
        stop: &mut oneshot::Receiver<()>,
    ) -> End {
        // Whatever was committed while nobody listened.
        if let Some(end) = self.drain(mem, t, shared).await {
            return end;
        }
        loop {
            tokio::select! {
                biased;
                _ = &mut *stop => return End::Stop,
                note = self.notes.recv() => {
                    let Some(note) = note else { return End::Lost };
                    let mut wake = relevant(&note, t, shared);
                    while let Ok(note) = self.notes.try_recv() {
                        wake |= relevant(&note, t, shared);
                    }
                    if !wake {
                        continue;
                    }
                }
                () = shared.kick.notified() => {}
            }
            if let Some(end) = self.drain(mem, t, shared).await {
                return end;
            }
        }
    }

    /// Applies the change log after the engine's revision. `Some` ends the
    /// session.
    async fn drain<T: StoreValue>(&self, mem: &MemStore<T>, t: &Target, shared: &Shared) -> Option<End> {
        let ns = t.ns.as_str();
        let mut waited = false;
        loop {
            let from = mem.read_engine(Engine::rev);
            let rows = match self
                .client
                .query(&self.changes, &[&t.ns, &i64_of(from), &PAGE])
                .await
            {
                Ok(rows) => rows,
                Err(_) if self.client.is_closed() => return Some(End::Lost),
                Err(e) => {
                    // Start over on a fresh connection (with backoff) rather
                    // than wait for a notification that may never come.
                    tracing::error!(ns, error = %error_message(&e), "the PostgreSQL listener cannot read the change log");
                    return Some(End::Lost);
                }
            };
            if rows.is_empty() {
                return None;
            }
            // This store's writer may be committing these very revisions:
            // it publishes them itself, right after the commit.
            let pending = shared.pending.load(Ordering::SeqCst);
            if !waited && pending != 0 && mem.read_engine(Engine::rev) < pending {
                wait_for_writer(mem, shared, pending).await;
                waited = true;
                continue;
            }
            let full = rows.len() as i64 == PAGE;
            let events = match rows
                .iter()
                .map(|r| event_of(r).and_then(StoredEvent::decode))
                .collect::<Result<Vec<_>>>()
            {
                Ok(events) => events,
                Err(e) => {
                    tracing::error!(ns, error = %e, "cannot apply changes committed by other processes");
                    return Some(End::Lost);
                }
            };
            let first = events.first().map_or(0, |e| e.rev);
            match mem.write_engine(|engine| engine.apply_committed(events)) {
                Ok(()) => waited = false,
                Err(Error::Closed) => return Some(End::Stop),
                Err(e) => {
                    tracing::error!(
                        ns,
                        error = %e,
                        store_rev = from,
                        oldest_in_log = first,
                        "the change log no longer holds the revisions after this store's; \
                         the store reloads at its next write"
                    );
                    return None;
                }
            }
            if !full {
                return None;
            }
        }
    }
}

/// Whether `note` announces a commit to our namespace by someone other than
/// this store's writer.
fn relevant(note: &Notification, t: &Target, shared: &Shared) -> bool {
    note.channel() == CHANNEL
        && note.payload() == t.payload
        && note.process_id() != shared.writer_pid.load(Ordering::SeqCst)
}

/// Waits (briefly) until the writer has applied its batch through `pending`.
async fn wait_for_writer<T: StoreValue>(mem: &MemStore<T>, shared: &Shared, pending: u64) {
    let started = Instant::now();
    while shared.pending.load(Ordering::SeqCst) == pending
        && mem.read_engine(Engine::rev) < pending
        && started.elapsed() < WRITER_GRACE
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
