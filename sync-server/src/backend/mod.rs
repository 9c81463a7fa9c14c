//! The durable backends and what they share.
//!
//! A durable store is the core engine in memory (every read is served from
//! it) plus one writer that owns the database connection. A write travels:
//! caller → writer queue → one database transaction for everything queued
//! (group commit) → engine commit → watchers → caller. The writer:
//!
//! 1. begins a transaction that locks the namespace's head row, and reads the
//!    persisted head revision;
//! 2. applies any changes another process committed since this engine last
//!    saw the database (so decisions are made on the current state);
//! 3. stages every queued operation in one engine transaction — an operation
//!    that breaks the key rules (length, NUL), fails validation,
//!    compare-and-set or its function is answered with its error and leaves
//!    its neighbours alone;
//! 4. writes the change records (entries, change log, head) and commits;
//! 5. only then commits the engine transaction, which publishes to watchers,
//!    and answers the callers.
//!
//! Group commit pays one durable commit (an fsync, a round trip) for all
//! that is queued. With many callers each awaiting its write before the
//! next, the callers answered by one batch come back while the writer
//! already commits what the others queued meanwhile, and the batches settle
//! at half the callers each. So after answering a batch of more than one
//! write, the writer waits for that many requests to arrive, for at most
//! half its last commit's time ([`MAX_LINGER`] at most). A lone caller
//! never waits: its batch was one write, and its next write is the first
//! to arrive.
//!
//! Waiting pays only when the callers come back fast, as callers in the
//! same process do. Callers that come back over a network (the sync
//! server's clients) take longer than the wait is allowed, and holding the
//! writer for them only puts the two halves of the callers in step: the
//! writer idles while each half travels, where it would have committed
//! one half while the other travelled. So a wait that ends at its limit
//! short of the batch it waited for stops the waiting for the next
//! [`FIRST_BACKOFF`] batches; every failed try after that doubles the
//! pause (up to [`MAX_BACKOFF`] batches), and a wait that fills its batch
//! ends it.
//!
//! The backends differ only in `Storage`: how a transaction is begun,
//! written and committed.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt;
use store_core::sync::{self, Ack, ErrorCode, Reject};
use store_core::{
    BoxError, Deleted, Engine, Entry, Error, Event, EventType, MemStore, Result, SetOptions, StoreOptions,
    StoreValue, WriteTxn, Written,
};

pub mod dump;
mod durable;
pub mod maintenance;
pub mod postgres;
pub mod sqlite;

pub use durable::{Durable, Page};

/// The most operations one group commit takes from the queue.
const MAX_BATCH: usize = 512;

/// The longest the writer waits for the callers of its last batch to queue
/// their next writes (see the module's documentation).
pub const MAX_LINGER: Duration = Duration::from_micros(500);

/// Batches committed without waiting after a wait that did not fill its
/// batch; doubled for every wait after it that does not either.
const FIRST_BACKOFF: u32 = 16;

/// The longest pause between two tries of waiting, in batches.
const MAX_BACKOFF: u32 = 256;

/// A change record as stored: its value is JSON text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredEvent {
    pub(crate) kind: String,
    pub(crate) key: String,
    pub(crate) event_type: EventType,
    pub(crate) value: String,
    pub(crate) version: u64,
    pub(crate) rev: u64,
}

/// An entry as stored.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredEntry {
    pub(crate) kind: String,
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) version: u64,
    pub(crate) rev: u64,
}

/// The recorded answer of a client op, written with the op's change so that
/// a retried op id is answered, not applied again.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AppliedOp {
    pub(crate) client_id: String,
    pub(crate) op_id: String,
    /// The `Ack` or `Reject`, as JSON.
    pub(crate) answer: String,
}

/// The answer to one client op: the server's `ack` or `reject`.
pub type Answer = std::result::Result<Ack, Reject>;

/// What a namespace looks like on disk when a store opens.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub(crate) rev: u64,
    pub(crate) entries: Vec<StoredEntry>,
    /// The retained tail of the change log, in revision order.
    pub(crate) history: Vec<StoredEvent>,
}

/// How a backend persists one namespace. Called only by the writer, one
/// transaction at a time.
pub(crate) trait Storage: Send + 'static {
    /// Begins a write transaction holding the namespace's write lock, and
    /// returns the persisted head revision and the recorded answers of the
    /// client ops `ops` already applied, looked up by `(client id, op id)`
    /// under that lock (`None` for new ones).
    fn begin(
        &mut self,
        ops: &[(String, String)],
    ) -> impl Future<Output = Result<(u64, Vec<Option<String>>)>> + Send;
    /// The namespace as stored (head, entries, the last `retention`
    /// revisions of the log), read inside the open transaction; for a store
    /// that fell behind the retained change log.
    fn snapshot(&mut self, retention: u64) -> impl Future<Output = Result<Snapshot>> + Send;
    /// The change records after revision `after`, up to `to`, in order.
    fn changes(&mut self, after: u64, to: u64) -> impl Future<Output = Result<Vec<StoredEvent>>> + Send;
    /// Writes `events` (entries, change log, head) and the answers of the
    /// client ops applied with them, and drops change-log rows at or below
    /// `trim_through`.
    fn write(
        &mut self,
        events: &[StoredEvent],
        applied: &[AppliedOp],
        trim_through: u64,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Commits the transaction; the write is durable when this returns.
    fn commit(&mut self) -> impl Future<Output = Result<()>> + Send;
    /// Abandons the transaction.
    fn rollback(&mut self) -> impl Future<Output = ()> + Send;
}

fn decode<T: StoreValue>(kind: &str, key: &str, json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::Decode {
        kind: kind.to_owned(),
        key: key.to_owned(),
        message: e.to_string(),
    })
}

fn encode<T: StoreValue>(event: &Event<T>) -> Result<StoredEvent> {
    Ok(StoredEvent {
        kind: event.kind.clone(),
        key: event.key.clone(),
        event_type: event.event_type,
        value: serde_json::to_string(&event.value).map_err(|e| Error::Encoding(e.to_string()))?,
        version: event.version,
        rev: event.rev,
    })
}

impl StoredEvent {
    pub(crate) fn decode<T: StoreValue>(self) -> Result<Event<T>> {
        Ok(Event {
            value: decode(&self.kind, &self.key, &self.value)?,
            kind: self.kind,
            key: self.key,
            event_type: self.event_type,
            version: self.version,
            rev: self.rev,
        })
    }
}

/// A snapshot decoded: head, entries and history.
type Decoded<T> = (u64, Vec<(String, String, Entry<T>)>, Vec<Event<T>>);

impl Snapshot {
    /// An engine holding this snapshot.
    pub(crate) fn restore<T: StoreValue>(self, options: StoreOptions<T>) -> Result<Engine<T>> {
        let (rev, entries, history) = self.decode()?;
        Engine::restore(options, rev, entries, history)
    }

    fn decode<T: StoreValue>(self) -> Result<Decoded<T>> {
        let entries = self
            .entries
            .into_iter()
            .map(|e| {
                let value = decode(&e.kind, &e.key, &e.value)?;
                Ok((
                    e.kind,
                    e.key,
                    Entry {
                        value,
                        version: e.version,
                        rev: e.rev,
                    },
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let history = self
            .history
            .into_iter()
            .map(StoredEvent::decode)
            .collect::<Result<Vec<_>>>()?;
        Ok((self.rev, entries, history))
    }
}

/// The name of an event type in the change log.
pub(crate) fn type_name(t: EventType) -> &'static str {
    match t {
        EventType::Create => "create",
        EventType::Update => "update",
        EventType::Delete => "delete",
    }
}

/// The event type of a change-log name.
pub(crate) fn parse_type(name: &str) -> Result<EventType> {
    match name {
        "create" => Ok(EventType::Create),
        "update" => Ok(EventType::Update),
        "delete" => Ok(EventType::Delete),
        other => Err(storage_error(format!(
            "unknown change type {other:?} in the change log"
        ))),
    }
}

pub(crate) fn storage_error(e: impl Into<BoxError>) -> Error {
    Error::Storage(e.into())
}

/// An update function sent to the writer.
type UpdateFn<T> = Box<dyn FnOnce(&T) -> std::result::Result<T, BoxError> + Send>;

/// One queued write.
pub(crate) enum Op<T> {
    Set {
        kind: String,
        key: String,
        value: T,
        opts: SetOptions,
    },
    SetFn {
        kind: String,
        key: String,
        f: UpdateFn<T>,
        opts: SetOptions,
    },
    Patch {
        kind: String,
        key: String,
        patch: serde_json::Value,
        opts: SetOptions,
    },
    SetMany {
        kind: String,
        items: Vec<(String, T)>,
    },
    Delete {
        kind: String,
        key: String,
        opts: SetOptions,
    },
    /// A sync client's op, applied at most once per `(client_id, op_id)`.
    Client {
        client_id: String,
        op: sync::Op,
    },
}

/// What a queued write answers.
pub(crate) enum Outcome<T> {
    Written(Written),
    Many(Vec<(String, Written)>),
    Deleted(Option<Deleted<T>>),
    Answer(Answer),
}

pub(crate) struct Request<T> {
    op: Op<T>,
    reply: oneshot::Sender<Result<Outcome<T>>>,
}

fn stage<T: StoreValue>(engine: &Engine<T>, txn: &mut WriteTxn<T>, op: Op<T>) -> Result<Outcome<T>> {
    match op {
        Op::Set {
            kind,
            key,
            value,
            opts,
        } => engine.set(txn, &kind, &key, value, opts).map(Outcome::Written),
        Op::SetFn { kind, key, f, opts } => engine.set_fn(txn, &kind, &key, f, opts).map(Outcome::Written),
        Op::Patch {
            kind,
            key,
            patch,
            opts,
        } => engine.patch(txn, &kind, &key, &patch, opts).map(Outcome::Written),
        Op::SetMany { kind, items } => engine.set_many(txn, &kind, items).map(Outcome::Many),
        Op::Delete { kind, key, opts } => engine.delete(txn, &kind, &key, opts).map(Outcome::Deleted),
        Op::Client { op, .. } => {
            let opts = SetOptions {
                if_version: op.if_version,
            };
            match op.action {
                sync::OpAction::Delete => engine.delete(txn, &op.kind, &op.key, opts).map(Outcome::Deleted),
                sync::OpAction::Patch => {
                    let patch = op.value.unwrap_or(serde_json::Value::Null);
                    engine
                        .patch(txn, &op.kind, &op.key, &patch, opts)
                        .map(Outcome::Written)
                }
                sync::OpAction::Set => {
                    let value = op.value.unwrap_or(serde_json::Value::Null);
                    let value: T = serde_json::from_value(value).map_err(|e| Error::Decode {
                        kind: op.kind.clone(),
                        key: op.key.clone(),
                        message: e.to_string(),
                    })?;
                    engine
                        .set(txn, &op.kind, &op.key, value, opts)
                        .map(Outcome::Written)
                }
            }
        }
    }
}

/// Stages a client op unless its op id was answered before, and records
/// its answer. Answers that say the server failed or was stopping
/// (`internal`, `shutting_down`) are not recorded, so a
/// retry applies the op.
fn stage_client<T: StoreValue>(
    engine: &Engine<T>,
    txn: &mut WriteTxn<T>,
    encoded: &mut Vec<StoredEvent>,
    answers: &mut ClientAnswers,
    client_id: String,
    op: sync::Op,
) -> Answer {
    let id = (client_id, op.op_id.clone());
    if let Some(answer) = answers.known.get(&id) {
        return serde_json::from_str(answer).unwrap_or_else(|e| {
            Err(Reject {
                op_id: id.1.clone(),
                code: ErrorCode::Internal,
                message: format!("the recorded answer does not decode: {e}"),
            })
        });
    }
    let op_id = op.op_id.clone();
    let patch = (op.action == sync::OpAction::Patch).then(|| (op.kind.clone(), op.key.clone()));
    let staged = stage_one(
        engine,
        txn,
        encoded,
        Op::Client {
            client_id: id.0.clone(),
            op,
        },
    );
    let head = txn.base_rev() + txn.savepoint() as u64;
    let answer = match staged {
        Ok(Outcome::Written(w)) => {
            // A patch's ack carries the value it left.
            let value = match patch {
                Some((kind, key)) if w.changed() => txn
                    .events()
                    .last()
                    .filter(|e| (e.rev, &e.kind, &e.key) == (w.rev, &kind, &key))
                    .and_then(|e| serde_json::to_value(&e.value).ok()),
                _ => None,
            };
            Ok(Ack {
                value,
                ..Ack::written(op_id, w)
            })
        }
        Ok(Outcome::Deleted(d)) => Ok(Ack::deleted(op_id, d.as_ref(), head)),
        Ok(_) => Err(Reject::of(op_id, &unexpected())),
        Err(e) => Err(Reject::of(op_id, &e)),
    };
    if !matches!(&answer, Err(r) if matches!(r.code, ErrorCode::Internal | ErrorCode::ShuttingDown)) {
        let json = serde_json::to_string(&answer).unwrap_or_default();
        answers.known.insert(id.clone(), json.clone());
        answers.new.push(AppliedOp {
            client_id: id.0,
            op_id: id.1,
            answer: json,
        });
    }
    answer
}

/// The writer answered an op with the outcome of another kind of op.
pub(crate) fn unexpected() -> Error {
    storage_error("the writer answered with an unexpected outcome")
}

/// Client-op answers of one batch: recorded before, and new ones to record.
struct ClientAnswers {
    known: std::collections::HashMap<(String, String), String>,
    new: Vec<AppliedOp>,
}

/// The `(client id, op id)` of the batch's client ops.
fn client_op_ids<T>(batch: &[Request<T>]) -> Vec<(String, String)> {
    batch
        .iter()
        .filter_map(|r| match &r.op {
            Op::Client { client_id, op } => Some((client_id.clone(), op.op_id.clone())),
            _ => None,
        })
        .collect()
}

impl ClientAnswers {
    /// The answers `found` for the op ids `ids`, as [`Storage::begin`] gave them.
    fn recorded(ids: Vec<(String, String)>, found: Vec<Option<String>>) -> Self {
        let known = ids
            .into_iter()
            .zip(found)
            .filter_map(|(id, answer)| Some((id, answer?)))
            .collect();
        ClientAnswers {
            known,
            new: Vec::new(),
        }
    }
}

/// Closes the store when the writer ends, however it ends (its handles
/// dropped, `close`, or its task torn down), so watches end and later calls
/// fail with `Closed` instead of hanging.
struct CloseOnExit<T: StoreValue>(MemStore<T>);

impl<T: StoreValue> Drop for CloseOnExit<T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The writer: takes everything queued, commits it as one transaction,
/// answers each caller. Ends when every sender is gone or closed.
pub(crate) async fn run_writer<T: StoreValue, S: Storage>(
    mem: MemStore<T>,
    mut storage: S,
    mut queue: mpsc::UnboundedReceiver<Request<T>>,
) {
    let _close = CloseOnExit(mem.clone());
    // How many writes the last batch answered, how long it took to commit,
    // and the batch worth waiting for: the requests queued before its
    // answers went out, and as many again as it answered.
    let (mut answered, mut took, mut full) = (0, Duration::ZERO, 0);
    let mut patience = Patience::default();
    let mut batch = Vec::new();
    loop {
        if batch.is_empty() {
            match queue.next().await {
                Some(request) => batch.push(request),
                None => break,
            }
            take_queued(&mut queue, &mut batch);
        }
        if answered > 1 && batch.len() < full && patience.waits() {
            let filled = linger(&mut queue, &mut batch, full, (took / 2).min(MAX_LINGER)).await;
            patience.waited(filled);
        }
        let started = Instant::now();
        let replies = write_batch(&mem, &mut storage, std::mem::take(&mut batch)).await;
        took = started.elapsed();
        answered = replies.len();
        take_queued(&mut queue, &mut batch);
        full = batch.len() + answered;
        for (reply, outcome) in replies {
            let _ = reply.send(outcome);
        }
    }
}

/// Moves what the queue holds into `batch`, up to [`MAX_BATCH`]; false
/// once the queue is closed and empty.
fn take_queued<T>(queue: &mut mpsc::UnboundedReceiver<Request<T>>, batch: &mut Vec<Request<T>>) -> bool {
    while batch.len() < MAX_BATCH {
        match queue.try_recv() {
            Ok(request) => batch.push(request),
            Err(e) => return !e.is_closed(),
        }
    }
    true
}

/// Waits up to `limit` for `batch` to reach `full` requests; true when it
/// did. It looks at the queue a few times rather than on every arrival:
/// woken per request, the writer would trade places with its callers'
/// thread for each one.
async fn linger<T>(
    queue: &mut mpsc::UnboundedReceiver<Request<T>>,
    batch: &mut Vec<Request<T>>,
    full: usize,
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    let step = limit / 4;
    let full = full.min(MAX_BATCH);
    while take_queued(queue, batch) && batch.len() < full {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        futures_timer::Delay::new(step.min(left)).await;
    }
    batch.len() >= full
}

/// Whether the writer waits for its callers now, from how its last waits
/// went (see the module's documentation).
#[derive(Debug, Default)]
struct Patience {
    /// Batches still to commit without waiting.
    skip: u32,
    /// The last pause, in batches (0 after a wait that filled its batch).
    backoff: u32,
}

impl Patience {
    /// Whether to wait before this batch (a batch that could wait and does
    /// not counts towards the pause).
    fn waits(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// How the wait went: it filled its batch, or it ended without.
    fn waited(&mut self, filled: bool) {
        self.backoff = if filled {
            0
        } else {
            (self.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF)
        };
        self.skip = self.backoff;
    }
}

/// The same error again, for every caller of a failed batch.
fn replicate(e: &Error) -> Error {
    match e {
        Error::Closed => Error::Closed,
        Error::Decode { kind, key, message } => Error::Decode {
            kind: kind.clone(),
            key: key.clone(),
            message: message.clone(),
        },
        Error::Encoding(message) => Error::Encoding(message.clone()),
        Error::Storage(inner) => storage_error(inner.to_string()),
        other => storage_error(other.to_string()),
    }
}

/// Stages one operation, and encodes what it staged; on any failure —
/// including a panic in the caller's function, validator or compare — the
/// operation is undone and answered alone.
fn stage_one<T: StoreValue>(
    engine: &Engine<T>,
    txn: &mut WriteTxn<T>,
    encoded: &mut Vec<StoredEvent>,
    op: Op<T>,
) -> Result<Outcome<T>> {
    let savepoint = txn.savepoint();
    let staged = catch_unwind(AssertUnwindSafe(|| stage(engine, txn, op)))
        .unwrap_or_else(|panic| {
            Err(Error::Function(
                format!("panicked: {}", panic_message(&panic)).into(),
            ))
        })
        .and_then(|outcome| {
            for event in &txn.events()[savepoint..] {
                encoded.push(encode(event)?);
            }
            Ok(outcome)
        });
    if staged.is_err() {
        txn.rollback_to(savepoint);
        encoded.truncate(savepoint);
    }
    staged
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-string panic")
}

/// The answers of a batch, each with the caller it goes to.
type Replies<T> = Vec<(oneshot::Sender<Result<Outcome<T>>>, Result<Outcome<T>>)>;

/// Commits `batch` and returns its answers, which the caller sends.
async fn write_batch<T: StoreValue, S: Storage>(
    mem: &MemStore<T>,
    storage: &mut S,
    batch: Vec<Request<T>>,
) -> Replies<T> {
    let fail_all = |batch: Vec<Request<T>>, e: &Error| -> Replies<T> {
        batch.into_iter().map(|r| (r.reply, Err(replicate(e)))).collect()
    };
    if mem.read_engine(Engine::is_closed) {
        return fail_all(batch, &Error::Closed);
    }
    let mut answers = match catch_up(mem, storage, client_op_ids(&batch)).await {
        Ok(answers) => answers,
        Err(e) => {
            storage.rollback().await;
            return fail_all(batch, &e);
        }
    };
    let (txn, encoded, outcomes, retention) = mem.read_engine(|engine| {
        let mut txn = engine.begin();
        let mut encoded = Vec::new();
        let outcomes: Replies<T> = batch
            .into_iter()
            .map(|r| {
                let outcome = match r.op {
                    Op::Client { client_id, op } => {
                        let answer =
                            stage_client(engine, &mut txn, &mut encoded, &mut answers, client_id, op);
                        Ok(Outcome::Answer(answer))
                    }
                    op => stage_one(engine, &mut txn, &mut encoded, op),
                };
                (r.reply, outcome)
            })
            .collect();
        (
            txn,
            encoded,
            outcomes,
            engine.options().retained_revisions() as u64,
        )
    });
    if !txn.is_empty() || !answers.new.is_empty() {
        if let Err(e) = persist(storage, &encoded, &answers.new, txn.base_rev(), retention).await {
            storage.rollback().await;
            tracing::error!(error = %e, "write transaction failed");
            return outcomes
                .into_iter()
                .map(|(reply, outcome)| (reply, outcome.and(Err(replicate(&e)))))
                .collect();
        }
        // Durable now. A store closed meanwhile still reports what it stored.
        match mem.write_engine(|engine| engine.commit(txn)) {
            Ok(()) | Err(Error::Closed) => {}
            Err(e) => tracing::error!(error = %e, "engine commit after a durable write failed"),
        }
    } else {
        storage.rollback().await;
    }
    outcomes
}

/// Begins the transaction, brings the engine up to the persisted head and
/// returns the recorded answers of the client ops `ids`.
async fn catch_up<T: StoreValue, S: Storage>(
    mem: &MemStore<T>,
    storage: &mut S,
    ids: Vec<(String, String)>,
) -> Result<ClientAnswers> {
    let (head, found) = storage.begin(&ids).await?;
    let answers = ClientAnswers::recorded(ids, found);
    let local = mem.read_engine(Engine::rev);
    if head < local {
        return Err(storage_error(format!(
            "the database is at revision {head}, behind this store's {local}: it was replaced or rolled back"
        )));
    }
    if head > local {
        let events = storage
            .changes(local, head)
            .await?
            .into_iter()
            .map(StoredEvent::decode)
            .collect::<Result<Vec<_>>>()?;
        let complete =
            events.len() as u64 == head - local && events.first().is_none_or(|e| e.rev == local + 1);
        if complete {
            mem.write_engine(|engine| engine.apply_committed(events))?;
        } else {
            // The log was trimmed past this store's revision (another process
            // wrote more than the retention meanwhile): start over from the
            // stored state; the watches end with `Compacted`.
            tracing::warn!(
                local,
                head,
                "the change log no longer reaches this store's revision: reloading"
            );
            let retention = mem.read_engine(|e| e.options().retained_revisions() as u64);
            let (rev, entries, history) = storage.snapshot(retention).await?.decode()?;
            mem.write_engine(|engine| engine.reload(rev, entries, history))?;
        }
    }
    Ok(answers)
}

async fn persist<S: Storage>(
    storage: &mut S,
    events: &[StoredEvent],
    applied: &[AppliedOp],
    base: u64,
    retention: u64,
) -> Result<()> {
    let head = events.last().map_or(base, |e| e.rev);
    storage
        .write(events, applied, head.saturating_sub(retention))
        .await?;
    storage.commit().await
}

/// Sends `op` to the writer and waits for its answer.
pub(crate) fn submit<T: StoreValue>(
    queue: &mpsc::UnboundedSender<Request<T>>,
    op: Op<T>,
) -> impl Future<Output = Result<Outcome<T>>> + Send + use<T> {
    let (reply, answer) = oneshot::channel();
    let sent = queue.unbounded_send(Request { op, reply });
    async move {
        sent.map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn request(key: &str) -> Request<Value> {
        Request {
            op: Op::Delete {
                kind: "t".into(),
                key: key.into(),
                opts: SetOptions::default(),
            },
            reply: oneshot::channel().0,
        }
    }

    /// Sends `n` requests from another thread after a short pause.
    fn send_later(queue: &mpsc::UnboundedSender<Request<Value>>, n: usize) -> std::thread::JoinHandle<()> {
        let queue = queue.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            for i in 0..n {
                queue.unbounded_send(request(&format!("k{i}"))).unwrap();
            }
        })
    }

    #[test]
    fn a_linger_ends_once_the_batch_is_full() {
        let (queue, mut requests) = mpsc::unbounded();
        let mut batch = vec![request("first")];
        let sender = send_later(&queue, 3);
        let started = Instant::now();
        // It looks at the queue every second: full at the first look, it
        // does not wait out the other three.
        let filled = futures_executor::block_on(linger(&mut requests, &mut batch, 4, Duration::from_secs(4)));
        sender.join().unwrap();
        assert!(filled);
        assert_eq!(batch.len(), 4);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_linger_ends_at_its_limit_with_what_came() {
        let (queue, mut requests) = mpsc::unbounded();
        let mut batch = vec![request("first")];
        let sender = send_later(&queue, 1);
        let started = Instant::now();
        let filled =
            futures_executor::block_on(linger(&mut requests, &mut batch, 5, Duration::from_millis(200)));
        sender.join().unwrap();
        assert!(!filled);
        assert_eq!(batch.len(), 2);
        assert!(started.elapsed() >= Duration::from_millis(200));
    }

    #[test]
    fn a_linger_ends_when_the_queue_closes() {
        let (queue, mut requests) = mpsc::unbounded::<Request<Value>>();
        let mut batch = vec![request("first")];
        queue.close_channel();
        let filled =
            futures_executor::block_on(linger(&mut requests, &mut batch, 5, Duration::from_secs(3600)));
        assert!(!filled);
        assert_eq!(batch.len(), 1);
    }

    /// The batches, of `n` that could wait, that do.
    fn waiting(patience: &mut Patience, n: u32) -> Vec<u32> {
        (0..n).filter(|_| patience.waits()).collect()
    }

    #[test]
    fn waiting_pauses_after_a_wait_that_did_not_fill_and_longer_after_each_more() {
        let mut patience = Patience::default();
        assert_eq!(
            waiting(&mut patience, 3),
            [0, 1, 2],
            "it waits until a wait fails"
        );
        patience.waited(false);
        let n = FIRST_BACKOFF;
        assert_eq!(waiting(&mut patience, n + 1), [n], "the first pause");
        patience.waited(false);
        assert_eq!(waiting(&mut patience, 2 * n + 1), [2 * n], "doubled");
        for _ in 0..10 {
            patience.waited(false);
        }
        assert_eq!(
            waiting(&mut patience, MAX_BACKOFF + 1),
            [MAX_BACKOFF],
            "never longer than the most"
        );
    }

    #[test]
    fn a_wait_that_fills_its_batch_ends_the_pause() {
        let mut patience = Patience::default();
        patience.waited(false);
        patience.waited(false);
        patience.waited(true);
        assert_eq!(waiting(&mut patience, 3), [0, 1, 2]);
        // After a success the next failure starts the pauses over.
        patience.waited(false);
        assert_eq!(waiting(&mut patience, FIRST_BACKOFF + 1), [FIRST_BACKOFF]);
    }
}
