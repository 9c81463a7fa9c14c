//! [`IdbStore`]: the store-core engine persisted in IndexedDB.
//!
//! Reads come from the engine in memory. Writes are queued to one writer
//! task that stages everything queued in one engine transaction, persists
//! it in one IndexedDB transaction, then commits the engine (publishing to
//! watchers) and answers: a write resolves once it is durable locally.
//!
//! A synced store keeps what [`ClientSession`] keeps: the server-confirmed
//! entries, the cursor and the queue of pending ops, all in IndexedDB. Its
//! engine holds the optimistic view, confirmed state with the pending ops
//! applied on top. A local write stages on that view and persists its op in
//! the same IndexedDB transaction; only then does the op join the
//! session's queue to be sent. Whatever the session learns from the server
//! (changes, a snapshot, acks, rejections) is persisted by the same writer,
//! and the keys it touched are rebased: their optimistic value is
//! recomputed and, where it differs from the engine's, applied as a change
//! with the server's version. Every engine mutation goes through the one
//! writer, so none can interleave with a transaction awaiting IndexedDB.

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::rc::Rc;

use futures_channel::oneshot;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store_core::sync::session::{ClientConfig, ClientSession, ClientState};
use store_core::sync::view::{self, Step};
use store_core::sync::{Ack, ErrorCode, Op, OpAction};
use store_core::{
    BoxError, Deleted, Engine, Entry, Error, Event, EventType, Filter, Result, SetOptions, Store,
    StoreOptions, Watch, WatchOptions, Written,
};

use crate::idb::{Batch, CLIENT_ID, Db, StoredEntry, StoredRef, unique_id};
use crate::tabs::{Channel, TabMessage};

const HEAD: &str = "head";
const CURSOR: &str = "cursor";
const SCHEMAS: &str = "schemas";
/// How many answered op ids `confirmed()` remembers.
const ANSWERS_KEPT: usize = 4096;

/// A `setFn` function.
pub type UpdateFn = Box<dyn FnOnce(&Value) -> std::result::Result<Value, BoxError>>;

/// Hears what the writer persisted.
type NoticeFn = Box<dyn Fn(Vec<Notice>)>;

/// A write as the API hands it to the writer.
pub enum LocalOp {
    /// `set`.
    Set {
        /// The kind.
        kind: String,
        /// The key.
        key: String,
        /// The new value.
        value: Value,
        /// Compare-and-set.
        if_version: Option<u64>,
    },
    /// `setFn`.
    SetFn {
        /// The kind.
        kind: String,
        /// The key.
        key: String,
        /// Makes the new value from the old one.
        f: UpdateFn,
        /// Compare-and-set.
        if_version: Option<u64>,
    },
    /// `setMany`.
    SetMany {
        /// The kind.
        kind: String,
        /// The keys and their new values.
        items: Vec<(String, Value)>,
    },
    /// `delete`.
    Delete {
        /// The kind.
        kind: String,
        /// The key.
        key: String,
        /// Compare-and-set.
        if_version: Option<u64>,
    },
}

/// What a write did, with the op sent to the server for each change.
pub enum Outcome {
    /// A `set` or `setFn`, with its op id when synced and changed.
    Written(Written, Option<String>),
    /// A `setMany`: each key's result and op id.
    Many(Vec<(String, Written, Option<String>)>),
    /// A `delete`: what it deleted and its op id, or nothing.
    Deleted(Option<(Deleted<Value>, Option<String>)>),
}

/// How the server answered an op.
pub type Answer = std::result::Result<Ack, (ErrorCode, String)>;

/// What the writer reports to the connection driver and the API (and the
/// leader posts to the other tabs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Notice {
    /// Local writes queued ops: send them.
    Queued,
    /// The server acknowledged an op (persisted: it left the queue).
    Acked {
        /// The server's ack.
        ack: Ack,
        /// The op's kind (filled in by the writer).
        kind: String,
        /// The op's key (filled in by the writer).
        key: String,
    },
    /// The server refused an op; it left the queue and was rolled back.
    Rejected {
        /// The op refused.
        op: Op,
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// Another tab joined and wants the leader's status.
    TabJoined,
}

impl Notice {
    fn op_id(&self) -> &str {
        match self {
            Notice::Queued | Notice::TabJoined => "",
            Notice::Acked { ack, .. } => &ack.op_id,
            Notice::Rejected { op, .. } => &op.op_id,
        }
    }

    fn answer(&self) -> Option<Answer> {
        match self {
            Notice::Queued | Notice::TabJoined => None,
            Notice::Acked { ack, .. } => Some(Ok(ack.clone())),
            Notice::Rejected { code, message, .. } => Some(Err((*code, message.clone()))),
        }
    }
}

/// The sync news to persist, with the rebase events to apply after.
struct SyncPlan {
    batch: Batch,
    /// The session's cursor the plan reflects.
    cursor: Option<u64>,
    /// What the leader posts to the other tabs once persisted.
    messages: Vec<TabMessage>,
    events: Vec<Event<Value>>,
    pending_revs: Vec<u64>,
    answered: Vec<Notice>,
    /// The answered ops' op ids, places, kinds and keys.
    places: Vec<(String, f64, String, String)>,
    /// The steps planned, kept for the next pass if persisting fails.
    steps: Vec<Step>,
    dirty_all: bool,
    rebase_all: bool,
}

/// A staged batch of local writes, ready to persist.
struct Staged {
    txn: store_core::WriteTxn<Value>,
    batch: Batch,
    answers: Vec<(oneshot::Sender<Result<Outcome>>, Result<Outcome>)>,
    ops: Vec<Op>,
}

enum Job {
    Write(LocalOp, oneshot::Sender<Result<Outcome>>),
    /// Persist and rebase what the session learned since the last one.
    Sync,
    /// Re-read the sync state from IndexedDB and rebase every key.
    Reload(oneshot::Sender<Result<()>>),
}

/// The sync state of a synced store, owned by the store so the writer can
/// persist it; the connection driver feeds its session.
pub struct SyncState {
    /// The session: confirmed state, queue and cursor.
    pub session: ClientSession,
    config: ClientConfig,
    /// This tab holds the connection (and persists what the server says);
    /// other tabs mirror what it posts.
    leader: bool,
    /// The server revision the view reflects: the session's cursor once
    /// what led to it was persisted and applied.
    applied_cursor: Option<u64>,
    /// The leader's connection status and rights, as it last posted them.
    status: Option<LeaderStatus>,
    /// Op ids are `{op_prefix}:{n}`: the client id is shared by every tab and
    /// reload of the database, so the prefix is unique to this open store.
    op_prefix: String,
    next_op_seq: u64,
    /// Each pending op's place in the IndexedDB queue, kind and key.
    places: HashMap<String, (f64, String, String)>,
    /// How many pending ops each key has.
    pending_keys: HashMap<(String, String), u32>,
    /// What the session (or, in a tab without the connection, the leader)
    /// recorded since the writer last persisted, in order.
    steps: Vec<Step>,
    /// A snapshot replaced the confirmed state since the last persist.
    dirty_all: bool,
    /// The session was reloaded from IndexedDB: rebase every key.
    rebase_all: bool,
    /// Ops answered since the last persist.
    answered: Vec<Notice>,
    /// The schemas changed since the last persist.
    schemas_dirty: bool,
    /// Answered ops whose answer is being persisted.
    answering: HashSet<String>,
    /// Recent answers, for `confirmed(opId)` after the fact.
    answers: HashMap<String, Answer>,
    answer_order: VecDeque<String>,
    waiters: HashMap<String, Vec<oneshot::Sender<Answer>>>,
}

impl SyncState {
    /// A snapshot replaced the confirmed state: persist all of it.
    pub fn snapshot_applied(&mut self) {
        self.dirty_all = true;
    }

    /// Records the server's answer to an op (an `Acked` or `Rejected`).
    pub fn answered(&mut self, notice: Notice) {
        self.answered.push(notice);
    }

    /// Replaces the session's state with a persisted one.
    fn restore(&mut self, mut p: Persisted) {
        // Ops this tab heard of that the read missed: written by another tab
        // after it (their post can arrive before the read completes), or
        // answered and removed by the tab holding the connection (sending
        // them again gets their recorded answer). Dropping them would strand
        // them; they keep their place in the queue.
        let read: HashSet<&str> = p.pending.iter().map(|(_, op)| op.op_id.as_str()).collect();
        let missed: Vec<(f64, Op)> = self
            .session
            .pending()
            .filter(|op| !read.contains(op.op_id.as_str()))
            .filter_map(|op| self.places.get(&op.op_id).map(|(place, ..)| (*place, op.clone())))
            .collect();
        p.pending.extend(missed);
        p.pending.sort_by(|(a, _), (b, _)| a.total_cmp(b));
        // The server's schemas (the session checks writes with them) stay
        // when none were persisted yet.
        let schemas = p
            .schemas
            .clone()
            .unwrap_or_else(|| self.session.schemas().clone());
        let state = ClientState {
            cursor: p.cursor,
            entries: p.entries,
            pending: p.pending.iter().map(|(_, op)| op.clone()).collect(),
            next_op_seq: 0,
        };
        self.applied_cursor = state.cursor;
        self.session = ClientSession::restore(self.config.clone(), state);
        self.places.clear();
        self.pending_keys.clear();
        for (place, op) in &p.pending {
            self.add_pending(op, *place);
        }
        self.session.set_schemas(schemas);
        self.schemas_dirty = p.schemas.is_none() && !self.session.schemas().is_empty();
    }

    /// The optimistic view of every key, for an engine restored at or
    /// after revision `head`: the head to restore at, the entries, and the
    /// revisions of the pending ones. Each entry gets its own revision, in
    /// the order the server changed them, pending ones last (they are the
    /// newest changes), so revisions keep their meaning after a reload.
    fn view(&self, head: u64) -> (u64, Vec<KeyedEntry>, Vec<u64>) {
        let keys: BTreeSet<(String, String)> = self
            .session
            .confirmed_entries()
            .map(|(kind, key, _)| (kind.to_owned(), key.to_owned()))
            .chain(self.pending_keys.keys().cloned())
            .collect();
        let mut ops: HashMap<(&str, &str), Vec<&Op>> = HashMap::new();
        for op in self.session.pending() {
            ops.entry((&op.kind, &op.key)).or_default().push(op);
        }
        let mut view: Vec<_> = keys
            .into_iter()
            .filter_map(|(kind, key)| {
                let confirmed = self.session.confirmed(&kind, &key);
                let key_ops = ops.get(&(kind.as_str(), key.as_str()));
                let (value, version) = view::optimistic(confirmed, key_ops.into_iter().flatten().copied())?;
                let pending = key_ops.is_some();
                let server_rev = confirmed.map_or(0, |e| e.rev);
                Some(((pending, server_rev), kind, key, value, version))
            })
            .collect();
        view.sort_by_key(|(order, ..)| *order);
        let head = head.max(view.len() as u64);
        let first = head + 1 - view.len() as u64;
        let mut pending_revs = Vec::new();
        let entries = view
            .into_iter()
            .zip(first..)
            .map(|(((pending, _), kind, key, value, version), rev)| {
                if pending {
                    pending_revs.push(rev);
                }
                (kind, key, Entry { value, version, rev })
            })
            .collect();
        (head, entries, pending_revs)
    }

    /// The server revision the store's view reflects (see `lastSyncedRev`).
    pub fn synced_rev(&self) -> Option<u64> {
        self.applied_cursor
    }

    /// Whether this tab holds the connection.
    pub fn is_leader(&self) -> bool {
        self.leader
    }

    /// The leader's last posted status: connection, error.
    pub fn leader_status(&self) -> Option<(String, Option<(String, String)>)> {
        self.status
            .as_ref()
            .map(|s| (s.connection.clone(), s.error.clone()))
    }

    /// What the token allows, as this tab's or the leader's session learned.
    pub fn rights(&self) -> Option<store_core::sync::Rights> {
        self.session
            .rights()
            .or(self.status.as_ref().and_then(|s| s.rights))
    }

    /// A new op id, never used before under this database's client id.
    fn next_op_id(&mut self) -> String {
        let op_id = format!("{}:{}", self.op_prefix, self.next_op_seq);
        self.next_op_seq += 1;
        op_id
    }

    /// Ops written here whose answer is not yet applied to the view.
    pub fn pending_count(&self) -> usize {
        self.places.len()
    }

    /// The server's schemas changed (a `welcome`, or the leader's post):
    /// the session checks writes with them, and the leader persists them.
    pub fn set_schemas(&mut self, schemas: BTreeMap<String, Value>) {
        self.schemas_dirty |= self.session.set_schemas(schemas);
    }

    /// A `welcome` set the session's schemas: persist them.
    pub fn welcomed(&mut self) {
        self.schemas_dirty = true;
    }

    fn remember(&mut self, op_id: &str, answer: Answer) {
        self.answering.remove(op_id);
        if let Some(waiters) = self.waiters.remove(op_id) {
            for w in waiters {
                let _ = w.send(answer.clone());
            }
        }
        self.answers.insert(op_id.to_owned(), answer);
        self.answer_order.push_back(op_id.to_owned());
        if self.answer_order.len() > ANSWERS_KEPT
            && let Some(old) = self.answer_order.pop_front()
        {
            self.answers.remove(&old);
        }
    }

    fn add_pending(&mut self, op: &Op, place: f64) {
        self.places
            .insert(op.op_id.clone(), (place, op.kind.clone(), op.key.clone()));
        *self
            .pending_keys
            .entry((op.kind.clone(), op.key.clone()))
            .or_default() += 1;
    }

    /// Forgets an answered op; its place in the IndexedDB queue.
    fn remove_pending(&mut self, op_id: &str) -> Option<(f64, String, String)> {
        let (place, kind, key) = self.places.remove(op_id)?;
        let slot = (kind.clone(), key.clone());
        if let Some(n) = self.pending_keys.get_mut(&slot) {
            *n -= 1;
            if *n == 0 {
                self.pending_keys.remove(&slot);
            }
        }
        Some((place, kind, key))
    }
}

/// What a synced store needs at open.
pub struct SyncSetup {
    /// The namespace to sync.
    pub namespace: String,
    /// The credential sent in `hello`.
    pub token: String,
    /// The kinds to sync; `None` is every kind.
    pub kinds: Option<Vec<String>>,
}

/// `(kind, key, entry)`.
type KeyedEntry = (String, String, Entry<Value>);

/// The connection status the leading tab posted.
struct LeaderStatus {
    connection: String,
    error: Option<(String, String)>,
    rights: Option<store_core::sync::Rights>,
}

/// What a synced store persisted, as read at open or reload.
struct Persisted {
    cursor: Option<u64>,
    entries: Vec<(String, String, Entry<Value>)>,
    pending: Vec<(f64, Op)>,
    schemas: Option<BTreeMap<String, Value>>,
}

impl Persisted {
    fn read(
        entries: Vec<(String, String, StoredEntry)>,
        pending: &[(f64, String)],
        meta: &HashMap<String, String>,
    ) -> Result<Persisted> {
        let mut ops = Vec::with_capacity(pending.len());
        for (place, text) in pending {
            let op: Op = serde_json::from_str(text)
                .map_err(|e| Error::Storage(format!("a pending op does not decode: {e}").into()))?;
            ops.push((*place, op));
        }
        Ok(Persisted {
            cursor: meta
                .get(CURSOR)
                .and_then(|c| serde_json::from_str::<CursorMeta>(c).ok())
                .and_then(|c| c.cursor),
            entries: entries
                .into_iter()
                .map(|(kind, key, e)| {
                    let entry = Entry {
                        value: e.value,
                        version: e.version,
                        rev: e.rev,
                    };
                    (kind, key, entry)
                })
                .collect(),
            pending: ops,
            schemas: meta.get(SCHEMAS).and_then(|s| serde_json::from_str(s).ok()),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct CursorMeta {
    cursor: Option<u64>,
}

struct Inner {
    db: Db,
    engine: RefCell<Engine<Value>>,
    queue: RefCell<VecDeque<Job>>,
    writing: Cell<bool>,
    /// Told when the writer runs out of work.
    idle: RefCell<Vec<oneshot::Sender<()>>>,
    sync: Option<RefCell<SyncState>>,
    /// Revisions of changes that were pending when published.
    pending_revs: RefCell<BTreeSet<u64>>,
    /// Called after the writer persisted sync answers.
    on_notice: RefCell<Option<NoticeFn>>,
    /// The other tabs of a synced store.
    channel: RefCell<Option<Channel>>,
    closed: Cell<bool>,
}

/// The store: an engine persisted in IndexedDB, optionally synced.
#[derive(Clone)]
pub struct IdbStore {
    inner: Rc<Inner>,
}

fn storage(e: crate::js::JsError) -> Error {
    if e.code == crate::js::Code::Store("closed") {
        Error::Closed
    } else {
        Error::Storage(e.message.into())
    }
}

fn reentrant() -> Error {
    Error::Storage("the store was called from its own validator, compare or setFn function".into())
}

fn stored_json(entry: &StoredEntry) -> String {
    serde_json::to_string(entry).unwrap_or_default()
}

impl IdbStore {
    /// Opens (or creates) IndexedDB database `name`, restoring its state.
    pub async fn open(name: &str, options: StoreOptions<Value>, sync: Option<SyncSetup>) -> Result<IdbStore> {
        let db = Db::open(name).await.map_err(storage)?;
        let loaded = db.load().await.map_err(storage)?;
        let meta: HashMap<String, String> = loaded.meta.into_iter().collect();
        let head: u64 = meta.get(HEAD).and_then(|h| h.parse().ok()).unwrap_or(0);
        let Some(setup) = sync else {
            let head = loaded
                .entries
                .iter()
                .map(|(_, _, e)| e.rev)
                .max()
                .unwrap_or(0)
                .max(head);
            let entries = loaded.entries.into_iter().map(|(kind, key, e)| {
                let entry = Entry {
                    value: e.value,
                    version: e.version,
                    rev: e.rev,
                };
                (kind, key, entry)
            });
            let engine = Engine::restore(options, head, entries, Vec::new())?;
            return Ok(IdbStore::assemble(db, engine, None));
        };
        let persisted = Persisted::read(loaded.entries, &loaded.pending, &meta)?;
        let client_id = match meta.get(CLIENT_ID).and_then(|c| serde_json::from_str(c).ok()) {
            Some(id) => id,
            None => {
                // A database created without one.
                let id = unique_id(name);
                let batch = Batch {
                    put_meta: vec![(CLIENT_ID, serde_json::to_string(&id).unwrap_or_default())],
                    ..Batch::default()
                };
                db.write(&batch).await.map_err(storage)?;
                id
            }
        };
        let mut config = ClientConfig::new(setup.namespace, setup.token, client_id);
        config.kinds = setup.kinds;
        config.record_steps = true;
        let mut sync = SyncState {
            session: ClientSession::new(config.clone()),
            config,
            leader: true,
            applied_cursor: None,
            op_prefix: unique_id(name),
            next_op_seq: 0,
            places: HashMap::new(),
            pending_keys: HashMap::new(),
            steps: Vec::new(),
            dirty_all: false,
            rebase_all: false,
            answered: Vec::new(),
            schemas_dirty: false,
            answering: HashSet::new(),
            answers: HashMap::new(),
            answer_order: VecDeque::new(),
            waiters: HashMap::new(),
            status: None,
        };
        sync.restore(persisted);
        let (head, entries, pending_revs) = sync.view(head);
        let engine = Engine::restore(options, head, entries, Vec::new())?;
        let store = IdbStore::assemble(db, engine, Some(sync));
        store.inner.pending_revs.borrow_mut().extend(pending_revs);
        Ok(store)
    }

    fn assemble(db: Db, engine: Engine<Value>, sync: Option<SyncState>) -> IdbStore {
        IdbStore {
            inner: Rc::new(Inner {
                db,
                engine: RefCell::new(engine),
                queue: RefCell::new(VecDeque::new()),
                writing: Cell::new(false),
                idle: RefCell::new(Vec::new()),
                sync: sync.map(RefCell::new),
                pending_revs: RefCell::new(BTreeSet::new()),
                on_notice: RefCell::new(None),
                channel: RefCell::new(None),
                closed: Cell::new(false),
            }),
        }
    }

    /// The engine, for reads; fails when called from inside a write's
    /// callback.
    pub fn engine(&self) -> Result<Ref<'_, Engine<Value>>> {
        self.inner.engine.try_borrow().map_err(|_| reentrant())
    }

    pub(crate) fn engine_mut(&self) -> Result<RefMut<'_, Engine<Value>>> {
        self.inner.engine.try_borrow_mut().map_err(|_| reentrant())
    }

    /// Whether the store syncs.
    pub fn is_synced(&self) -> bool {
        self.inner.sync.is_some()
    }

    /// The sync state; `None` for a local store.
    pub fn sync(&self) -> Option<RefMut<'_, SyncState>> {
        self.inner.sync.as_ref().map(|s| s.borrow_mut())
    }

    /// Whether `kind`/`key` has ops not yet answered by the server.
    pub fn is_pending(&self, kind: &str, key: &str) -> bool {
        self.inner.sync.as_ref().is_some_and(|s| {
            s.try_borrow()
                .is_ok_and(|s| s.pending_keys.contains_key(&(kind.to_owned(), key.to_owned())))
        })
    }

    /// Whether the change at `rev` was a pending (unconfirmed) one.
    pub fn is_pending_rev(&self, rev: u64) -> bool {
        self.inner.pending_revs.borrow().contains(&rev)
    }

    /// Where the API hears about answered ops once they are persisted.
    pub fn on_notice(&self, f: impl Fn(Vec<Notice>) + 'static) {
        *self.inner.on_notice.borrow_mut() = Some(Box::new(f));
    }

    /// Waits for the server's answer to `op_id`; `None` if the id is neither
    /// pending nor recently answered.
    pub fn answer(&self, op_id: &str) -> Option<oneshot::Receiver<Answer>> {
        let mut sync = self.sync()?;
        let (tx, rx) = oneshot::channel();
        if let Some(answer) = sync.answers.get(op_id) {
            let _ = tx.send(answer.clone());
        } else if sync.places.contains_key(op_id) || sync.answering.contains(op_id) {
            sync.waiters.entry(op_id.to_owned()).or_default().push(tx);
        } else {
            return None;
        }
        Some(rx)
    }

    /// Queues a write; resolves once it is durable in IndexedDB.
    pub async fn submit(&self, op: LocalOp) -> Result<Outcome> {
        if self.inner.closed.get() {
            return Err(Error::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.push(Job::Write(op, tx));
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Tells the writer the session learned something to persist and rebase.
    pub fn sync_changed(&self) {
        self.push(Job::Sync);
    }

    fn push(&self, job: Job) {
        self.inner.queue.borrow_mut().push_back(job);
        if !self.inner.writing.replace(true) {
            let store = self.clone();
            wasm_bindgen_futures::spawn_local(async move { store.run_writer().await });
        }
    }

    async fn run_writer(self) {
        loop {
            let jobs: Vec<Job> = {
                let mut queue = self.inner.queue.borrow_mut();
                match queue.front() {
                    None => {
                        self.inner.writing.set(false);
                        for waiter in self.inner.idle.borrow_mut().drain(..) {
                            let _ = waiter.send(());
                        }
                        return;
                    }
                    Some(Job::Sync) => {
                        // Every queued sync job is served by one pass.
                        queue.retain(|j| !matches!(j, Job::Sync));
                        vec![Job::Sync]
                    }
                    Some(Job::Reload(_)) => queue.pop_front().into_iter().collect(),
                    Some(Job::Write(..)) => {
                        let n = queue.iter().take_while(|j| matches!(j, Job::Write(..))).count();
                        queue.drain(..n).collect()
                    }
                }
            };
            match jobs.first() {
                Some(Job::Sync) => self.persist_sync().await,
                Some(Job::Reload(_)) => {
                    if let Some(Job::Reload(reply)) = jobs.into_iter().next() {
                        let _ = reply.send(self.reload_now().await);
                    }
                }
                _ => self.write_batch(jobs).await,
            }
        }
    }

    /// Stages, persists and commits one batch of local writes.
    async fn write_batch(&self, jobs: Vec<Job>) {
        let Some(Staged {
            txn,
            batch,
            answers,
            ops,
        }) = self.stage_batch(jobs)
        else {
            return;
        };
        // Only this writer mutates the engine, so nothing commits between
        // staging and the commit below.
        let places = match self.inner.db.write(&batch).await {
            Ok(places) => places,
            Err(e) => {
                // `closed` (another tab deleted or upgraded the database)
                // stays `Error::Closed`; anything else is a storage error.
                for (reply, _) in answers {
                    let _ = reply.send(Err(storage(e.clone())));
                }
                return;
            }
        };
        if let Some(sync) = &self.inner.sync {
            let mut sync = sync.borrow_mut();
            let mut revs = self.inner.pending_revs.borrow_mut();
            for event in txn.events() {
                revs.insert(event.rev);
            }
            let queued: Vec<(f64, Op)> = places.into_iter().zip(ops.iter().cloned()).collect();
            for (place, op) in &queued {
                sync.add_pending(op, *place);
                sync.session.enqueue(op.clone());
            }
            if !queued.is_empty() {
                self.post(&TabMessage::Pending { ops: queued });
            }
        }
        let mut engine = self.inner.engine.borrow_mut();
        let committed = engine.commit(txn);
        self.trim_pending_revs(&engine);
        drop(engine);
        for (reply, outcome) in answers {
            let _ = reply.send(
                committed
                    .as_ref()
                    .map_err(|e| Error::Storage(e.to_string().into()))
                    .and(outcome),
            );
        }
        if !ops.is_empty() {
            self.push_notices(vec![Notice::Queued]);
        }
    }

    /// Stages a batch of writes and builds what to persist; answers the
    /// writes that failed (or changed nothing, when none changed anything).
    fn stage_batch(&self, jobs: Vec<Job>) -> Option<Staged> {
        let writes = jobs.into_iter().filter_map(|j| match j {
            Job::Write(op, reply) => Some((op, reply)),
            Job::Sync | Job::Reload(_) => None,
        });
        // Staging needs only a shared borrow, so validators, compare and
        // setFn functions may read the store; none is held across an await.
        let engine = self.inner.engine.borrow();
        let mut txn = engine.begin();
        let mut batch = Batch::default();
        let mut answers = Vec::new();
        let mut ops = Vec::new();
        let mut sync = self.inner.sync.as_ref().map(|s| s.borrow_mut());
        for (op, reply) in writes {
            let savepoint = txn.savepoint();
            let ops_before = ops.len();
            let staged = stage(&engine, &mut txn, op, sync.as_deref_mut(), &mut ops);

            match staged {
                Ok(outcome) => answers.push((reply, Ok(outcome))),
                Err(e) => {
                    txn.rollback_to(savepoint);
                    ops.truncate(ops_before);
                    let _ = reply.send(Err(e));
                }
            }
        }
        if txn.is_empty() {
            for (reply, outcome) in answers {
                let _ = reply.send(outcome);
            }
            return None;
        }
        let last = txn.events().last().map(|e| (e.rev, e.event_type));
        match sync.as_deref_mut() {
            None => {
                // At open, the head is the larger of the persisted head and
                // the entries' revisions: a batch ending with a put leaves
                // its last revision on that entry, so only one ending with a
                // delete persists the head.
                if let Some((rev, EventType::Delete)) = last {
                    batch.put_meta.push((HEAD, rev.to_string()));
                }
                for event in txn.events() {
                    if event.event_type == EventType::Delete {
                        batch.delete_entries.push((event.kind.clone(), event.key.clone()));
                    } else {
                        let stored = StoredRef {
                            value: &event.value,
                            version: event.version,
                            rev: event.rev,
                        };
                        let text = serde_json::to_string(&stored).unwrap_or_default();
                        batch
                            .put_entries
                            .push((event.kind.clone(), event.key.clone(), text));
                    }
                }
            }
            Some(_) => {
                // Pending ops carry no revision: the head is persisted for
                // the revisions to go on after a reload.
                if let Some((rev, _)) = last {
                    batch.put_meta.push((HEAD, rev.to_string()));
                }
                for op in &ops {
                    batch
                        .put_pending
                        .push(serde_json::to_string(op).unwrap_or_default());
                }
            }
        }
        Some(Staged {
            txn,
            batch,
            answers,
            ops,
        })
    }

    fn trim_pending_revs(&self, engine: &Engine<Value>) {
        let oldest = engine.oldest_resumable();
        let mut revs = self.inner.pending_revs.borrow_mut();
        if revs.first().is_some_and(|r| *r <= oldest) {
            *revs = revs.split_off(&(oldest + 1));
        }
    }

    /// Persists what the session learned and rebases the view over it.
    async fn persist_sync(&self) {
        let Some(sync_cell) = &self.inner.sync else { return };
        let SyncPlan {
            batch,
            cursor,
            messages,
            events,
            pending_revs,
            answered,
            places,
            steps,
            dirty_all,
            rebase_all,
        } = self.plan_sync(sync_cell);
        let persisted = self.inner.db.write(&batch).await;
        let mut sync = sync_cell.borrow_mut();
        if let Err(e) = persisted {
            // Keep it all for the next pass.
            web_sys::console::error_1(&format!("zestor: persisting sync state failed: {e}").into());
            sync.dirty_all |= dirty_all;
            sync.rebase_all |= rebase_all;
            let later = std::mem::replace(&mut sync.steps, steps);
            sync.steps.extend(later);
            sync.schemas_dirty = true;
            for (op_id, place, kind, key) in places {
                let op = Op {
                    op_id,
                    kind,
                    key,
                    action: OpAction::Set,
                    value: None,
                    if_version: None,
                };
                sync.add_pending(&op, place);
            }
            sync.answered.extend(answered);
            return;
        }
        for message in &messages {
            self.post(message);
        }
        self.inner.pending_revs.borrow_mut().extend(pending_revs);
        let mut engine = self.inner.engine.borrow_mut();
        if let Err(e) = engine.apply_committed(events) {
            web_sys::console::error_1(&format!("zestor: applying synced changes failed: {e}").into());
        }
        self.trim_pending_revs(&engine);
        drop(engine);
        sync.applied_cursor = cursor;
        for notice in &answered {
            if let Some(answer) = notice.answer() {
                sync.remember(notice.op_id(), answer);
            }
        }
        drop(sync);
        self.push_notices(answered);
    }

    /// What to persist for the session's news, and the view's changes.
    fn plan_sync(&self, sync_cell: &RefCell<SyncState>) -> SyncPlan {
        let engine = self.inner.engine.borrow();
        let mut sync = sync_cell.borrow_mut();
        // Only the tab holding the connection persists; the others mirror.
        let persist = sync.leader;
        let dirty_all = std::mem::take(&mut sync.dirty_all);
        let rebase_all = std::mem::take(&mut sync.rebase_all);
        let mut steps = std::mem::take(&mut sync.steps);
        steps.extend(sync.session.take_steps());
        let mut answered = std::mem::take(&mut sync.answered);
        let mut batch = Batch::default();
        let mut places = Vec::new();
        for notice in &mut answered {
            if let Some((place, kind, key)) = sync.remove_pending(notice.op_id()) {
                if let Notice::Acked { kind: k, key: n, .. } = notice {
                    (*k, *n) = (kind.clone(), key.clone());
                }
                if !sync.answers.contains_key(notice.op_id()) {
                    sync.answering.insert(notice.op_id().to_owned());
                }
                if persist {
                    batch.delete_pending.push(place);
                }
                places.push((notice.op_id().to_owned(), place, kind, key));
            }
        }
        // An op sent again after a hand-over (read back from IndexedDB before
        // the old leader's answer was written) leaves the queue above, but
        // its answer was reported already.
        answered.retain(|n| !sync.answers.contains_key(n.op_id()));
        let mut messages = Vec::new();
        if persist {
            let confirmed = |kind: &str, key: &str| {
                sync.session.confirmed(kind, key).map(|e| StoredEntry {
                    value: e.value.clone(),
                    version: e.version,
                    rev: e.rev,
                })
            };
            if dirty_all {
                batch.clear_entries = true;
                for (kind, key, _) in sync.session.confirmed_entries() {
                    let stored = confirmed(kind, key).unwrap_or_else(|| unreachable!("listed"));
                    batch
                        .put_entries
                        .push((kind.to_owned(), key.to_owned(), stored_json(&stored)));
                }
            } else {
                let keys: BTreeSet<(&str, &str)> =
                    steps.iter().map(|s| (s.kind.as_str(), s.key.as_str())).collect();
                for (kind, key) in keys {
                    match confirmed(kind, key) {
                        Some(e) => batch
                            .put_entries
                            .push((kind.to_owned(), key.to_owned(), stored_json(&e))),
                        None => batch.delete_entries.push((kind.to_owned(), key.to_owned())),
                    }
                }
            }
            let cursor = sync.session.cursor();
            batch.put_meta.push((
                CURSOR,
                serde_json::to_string(&CursorMeta { cursor }).unwrap_or_default(),
            ));
            let schemas = std::mem::take(&mut sync.schemas_dirty).then(|| sync.session.schemas().clone());
            if let Some(schemas) = &schemas {
                batch
                    .put_meta
                    .push((SCHEMAS, serde_json::to_string(schemas).unwrap_or_default()));
            }
            // After a snapshot the other tabs read the new state from
            // IndexedDB rather than receive a step per entry.
            messages.push(TabMessage::Synced {
                cursor,
                steps: if dirty_all { Vec::new() } else { steps.clone() },
                answered: answered.clone(),
                schemas,
            });
            if dirty_all {
                messages.push(TabMessage::Reload);
            }
        }
        let shown = |kind: &str, key: &str| {
            engine
                .get(kind, key)
                .ok()
                .flatten()
                .map(|e| (e.value.clone(), e.version))
        };
        let changes = if rebase_all {
            // The session was restored: every key the view or the session
            // holds goes to what the session shows.
            let mut keys: BTreeSet<(String, String)> = BTreeSet::new();
            for kind in engine.kinds().unwrap_or_default() {
                for (key, _) in engine.list(kind, &[]).unwrap_or_default() {
                    keys.insert((kind.to_owned(), key.to_owned()));
                }
            }
            for (kind, key, _) in sync.session.confirmed_entries() {
                keys.insert((kind.to_owned(), key.to_owned()));
            }
            for op in sync.session.pending() {
                keys.insert((op.kind.clone(), op.key.clone()));
            }
            let touched: Vec<Step> = keys
                .into_iter()
                .map(|(kind, key)| Step {
                    confirmed: sync.session.confirmed(&kind, &key).cloned(),
                    kind,
                    key,
                    answered: None,
                })
                .collect();
            view::rebase(&touched, shown, sync.session.pending())
        } else {
            view::rebase(&steps, shown, sync.session.pending())
        };
        let mut rev = engine.rev();
        let mut events = Vec::with_capacity(changes.len());
        let mut pending_revs = Vec::new();
        for change in changes {
            rev += 1;
            if change.pending {
                pending_revs.push(rev);
            }
            events.push(Event {
                kind: change.kind,
                key: change.key,
                event_type: change.event_type,
                value: change.value,
                version: change.version,
                rev,
            });
        }
        if persist && !events.is_empty() {
            batch.put_meta.push((HEAD, rev.to_string()));
        }
        SyncPlan {
            cursor: sync.session.cursor(),
            messages,
            batch,
            events,
            pending_revs,
            answered,
            places,
            steps,
            dirty_all,
            rebase_all,
        }
    }

    /// Re-reads the sync state from IndexedDB (the truth every tab
    /// persists to) and rebases the view onto it: for a tab that takes over
    /// the connection, or after the leader applied a snapshot.
    pub async fn reload(&self) -> Result<()> {
        if self.inner.closed.get() {
            return Err(Error::Closed);
        }
        let (tx, rx) = oneshot::channel();
        self.push(Job::Reload(tx));
        rx.await.unwrap_or(Err(Error::Closed))
    }

    async fn reload_now(&self) -> Result<()> {
        let Some(sync) = &self.inner.sync else {
            return Ok(());
        };
        let loaded = self.inner.db.load().await.map_err(storage)?;
        let meta: HashMap<String, String> = loaded.meta.into_iter().collect();
        let persisted = Persisted::read(loaded.entries, &loaded.pending, &meta)?;
        {
            let mut sync = sync.borrow_mut();
            sync.restore(persisted);
            sync.steps.clear();
            sync.rebase_all = true;
        }
        self.persist_sync().await;
        Ok(())
    }

    /// Makes this tab the one holding the connection (or not).
    pub fn set_leader(&self, leader: bool) {
        if let Some(mut sync) = self.sync() {
            sync.leader = leader;
        }
    }

    /// Joins the channel to the other tabs of this (synced) store.
    pub fn join_tabs(&self, name: &str) {
        if self.inner.sync.is_none() {
            return;
        }
        let weak = Rc::downgrade(&self.inner);
        let channel = Channel::join(name, move |message| {
            if let Some(inner) = weak.upgrade() {
                IdbStore { inner }.receive(message);
            }
        });
        if let Some(channel) = &channel {
            channel.post(&TabMessage::Joined);
        }
        *self.inner.channel.borrow_mut() = channel;
    }

    /// Posts to the other tabs.
    pub fn post(&self, message: &TabMessage) {
        if let Some(channel) = self.inner.channel.borrow().as_ref() {
            channel.post(message);
        }
    }

    /// Applies what another tab posted.
    fn receive(&self, message: TabMessage) {
        if self.inner.closed.get() {
            return;
        }
        let Some(mut sync) = self.sync() else { return };
        match message {
            TabMessage::Pending { ops } => {
                let mut any = false;
                for (place, op) in ops {
                    let known = sync.places.contains_key(&op.op_id)
                        || sync.answering.contains(&op.op_id)
                        || sync.answers.contains_key(&op.op_id);
                    if known {
                        continue;
                    }
                    sync.add_pending(&op, place);
                    sync.session.mirror_op(op);
                    any = true;
                }
                drop(sync);
                if any {
                    self.sync_changed();
                    // The leader sends them.
                    self.push_notices(vec![Notice::Queued]);
                }
            }
            TabMessage::Joined => {
                drop(sync);
                self.push_notices(vec![Notice::TabJoined]);
            }
            // The leader persists for itself; a second leader (no Web
            // Locks) hears the server directly.
            _ if sync.leader => {}
            TabMessage::Leading => {
                // A tab took over the connection. It read the queue from
                // IndexedDB, which lacks what the previous leader answered
                // but could not tell: post every op still pending here, so
                // that the new leader sends the ones it does not hold (the
                // server answers those again, from its record).
                let ops: Vec<(f64, Op)> = sync
                    .session
                    .pending()
                    .filter_map(|op| sync.places.get(&op.op_id).map(|(place, ..)| (*place, op.clone())))
                    .collect();
                drop(sync);
                if !ops.is_empty() {
                    self.post(&TabMessage::Pending { ops });
                }
            }
            TabMessage::Synced {
                cursor,
                steps,
                answered,
                schemas,
            } => {
                for step in steps {
                    sync.session.mirror(step);
                }
                sync.session.mirror_cursor(cursor);
                for notice in answered {
                    sync.answered(notice);
                }
                if let Some(schemas) = schemas {
                    sync.set_schemas(schemas);
                }
                drop(sync);
                self.sync_changed();
            }
            TabMessage::Reload => {
                drop(sync);
                let store = self.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    if let Err(e) = store.reload().await {
                        web_sys::console::error_1(
                            &format!("zestor: reloading after a snapshot failed: {e}").into(),
                        );
                    }
                });
            }
            TabMessage::Status {
                connection,
                error,
                rights,
            } => {
                sync.status = Some(LeaderStatus {
                    connection,
                    error,
                    rights,
                });
                drop(sync);
                self.push_notices(Vec::new());
            }
        }
    }

    fn push_notices(&self, notices: Vec<Notice>) {
        let callback = self.inner.on_notice.borrow();
        if let Some(f) = callback.as_ref() {
            f(notices);
        }
    }

    /// Closes the store: pending writes finish, later calls fail with
    /// `closed`, watches end.
    pub async fn close(&self) {
        if self.inner.closed.replace(true) {
            return;
        }
        // Let queued writes drain.
        if self.inner.writing.get() {
            let (tx, rx) = oneshot::channel::<()>();
            self.inner.idle.borrow_mut().push(tx);
            let _ = rx.await;
        }
        if let Ok(mut engine) = self.inner.engine.try_borrow_mut() {
            engine.close();
        }
        self.inner.channel.borrow_mut().take();
        self.inner.db.close();
    }

    /// Whether `close` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }
}

/// Stages one local write on `txn`; for a synced store, also builds its op.
fn stage(
    engine: &Engine<Value>,
    txn: &mut store_core::WriteTxn<Value>,
    op: LocalOp,
    mut sync: Option<&mut SyncState>,
    ops: &mut Vec<Op>,
) -> Result<Outcome> {
    // The server's rules, as the session knows them: refused here, not
    // queued to be rejected.
    let check = |sync: &Option<&mut SyncState>, kind: &str, key: &str, value: &Value| -> Result<()> {
        sync.as_ref()
            .map_or(Ok(()), |s| s.session.check(kind, key, Some(value)))
    };
    let mut queue_op = |sync: &mut Option<&mut SyncState>,
                        kind: &str,
                        key: &str,
                        action: OpAction,
                        value: Option<Value>,
                        if_version: Option<u64>|
     -> Option<String> {
        let sync = sync.as_deref_mut()?;
        let op_id = sync.next_op_id();
        ops.push(Op {
            op_id: op_id.clone(),
            kind: kind.to_owned(),
            key: key.to_owned(),
            action,
            value,
            if_version,
        });
        Some(op_id)
    };
    let opts = |v: Option<u64>| SetOptions { if_version: v };
    match op {
        LocalOp::Set {
            kind,
            key,
            value,
            if_version,
        } => {
            check(&sync, &kind, &key, &value)?;
            let written = engine.set(txn, &kind, &key, value.clone(), opts(if_version))?;
            let op_id = written
                .changed()
                .then(|| queue_op(&mut sync, &kind, &key, OpAction::Set, Some(value), if_version));
            Ok(Outcome::Written(written, op_id.flatten()))
        }
        LocalOp::SetFn {
            kind,
            key,
            f,
            if_version,
        } => {
            let schema_ok = |v: &Value| check(&sync, &kind, &key, v);
            let mut checked: Option<Result<()>> = None;
            let written = engine.set_fn(
                txn,
                &kind,
                &key,
                |old: &Value| -> std::result::Result<Value, BoxError> {
                    let new = f(old)?;
                    checked = Some(schema_ok(&new));
                    Ok(new)
                },
                opts(if_version),
            )?;
            if let Some(Err(e)) = checked {
                return Err(e);
            }
            let op_id = if written.changed() {
                let value = engine_value(txn, &kind, &key);
                queue_op(&mut sync, &kind, &key, OpAction::Set, value, None)
            } else {
                None
            };
            Ok(Outcome::Written(written, op_id))
        }
        LocalOp::SetMany { kind, items } => {
            for (key, value) in &items {
                check(&sync, &kind, key, value)?;
            }
            let values: HashMap<String, Value> = if sync.is_some() {
                items.iter().cloned().collect()
            } else {
                HashMap::new()
            };
            let written = engine.set_many(txn, &kind, items)?;
            let mut out = Vec::with_capacity(written.len());
            for (key, w) in written {
                let op_id = if w.changed() {
                    let value = values.get(&key).cloned();
                    queue_op(&mut sync, &kind, &key, OpAction::Set, value, None)
                } else {
                    None
                };
                out.push((key, w, op_id));
            }
            Ok(Outcome::Many(out))
        }
        LocalOp::Delete {
            kind,
            key,
            if_version,
        } => {
            let deleted = engine.delete(txn, &kind, &key, opts(if_version))?;
            Ok(Outcome::Deleted(deleted.map(|d| {
                let op_id = queue_op(&mut sync, &kind, &key, OpAction::Delete, None, if_version);
                (d, op_id)
            })))
        }
    }
}

/// The value `txn` staged last for `kind`/`key`.
fn engine_value(txn: &store_core::WriteTxn<Value>, kind: &str, key: &str) -> Option<Value> {
    txn.events()
        .iter()
        .rev()
        .find(|e| e.kind == kind && e.key == key)
        .map(|e| e.value.clone())
}

impl Store<Value> for IdbStore {
    async fn get(&self, kind: &str, key: &str) -> Result<Option<Entry<Value>>> {
        Ok(self.engine()?.get(kind, key)?.map(|e| e.cloned()))
    }

    async fn list(&self, kind: &str, filters: &[Filter<Value>]) -> Result<Vec<(String, Entry<Value>)>> {
        let engine = self.engine()?;
        Ok(engine
            .list(kind, filters)?
            .into_iter()
            .map(|(k, e)| (k.to_owned(), e.cloned()))
            .collect())
    }

    async fn count(&self, kind: &str) -> Result<usize> {
        self.engine()?.count(kind)
    }

    async fn keys(&self, kind: &str) -> Result<Vec<String>> {
        let engine = self.engine()?;
        Ok(engine
            .list(kind, &[])?
            .into_iter()
            .map(|(k, _)| k.to_owned())
            .collect())
    }

    async fn values(&self, kind: &str) -> Result<Vec<Value>> {
        let engine = self.engine()?;
        Ok(engine
            .list(kind, &[])?
            .into_iter()
            .map(|(_, e)| e.value.clone())
            .collect())
    }

    async fn get_all(&self, kind: &str) -> Result<BTreeMap<String, Entry<Value>>> {
        let engine = self.engine()?;
        Ok(engine
            .list(kind, &[])?
            .into_iter()
            .map(|(k, e)| (k.to_owned(), e.cloned()))
            .collect())
    }

    async fn set(&self, kind: &str, key: &str, value: Value, opts: SetOptions) -> Result<Written> {
        let op = LocalOp::Set {
            kind: kind.to_owned(),
            key: key.to_owned(),
            value,
            if_version: opts.if_version,
        };
        match self.submit(op).await? {
            Outcome::Written(w, _) => Ok(w),
            _ => unreachable!("a set answers Written"),
        }
    }

    async fn set_fn<F, E>(&self, kind: &str, key: &str, f: F, opts: SetOptions) -> Result<Written>
    where
        F: FnOnce(&Value) -> std::result::Result<Value, E> + 'static,
        E: Into<BoxError> + 'static,
    {
        let op = LocalOp::SetFn {
            kind: kind.to_owned(),
            key: key.to_owned(),
            f: Box::new(move |v| f(v).map_err(Into::into)),
            if_version: opts.if_version,
        };
        match self.submit(op).await? {
            Outcome::Written(w, _) => Ok(w),
            _ => unreachable!("a set_fn answers Written"),
        }
    }

    async fn set_many(&self, kind: &str, items: Vec<(String, Value)>) -> Result<Vec<(String, Written)>> {
        let op = LocalOp::SetMany {
            kind: kind.to_owned(),
            items,
        };
        match self.submit(op).await? {
            Outcome::Many(out) => Ok(out.into_iter().map(|(k, w, _)| (k, w)).collect()),
            _ => unreachable!("a set_many answers Many"),
        }
    }

    async fn delete(&self, kind: &str, key: &str, opts: SetOptions) -> Result<Option<Deleted<Value>>> {
        let op = LocalOp::Delete {
            kind: kind.to_owned(),
            key: key.to_owned(),
            if_version: opts.if_version,
        };
        match self.submit(op).await? {
            Outcome::Deleted(d) => Ok(d.map(|(d, _)| d)),
            _ => unreachable!("a delete answers Deleted"),
        }
    }

    async fn watch(&self, kind: &str, opts: WatchOptions) -> Result<Watch<Value>> {
        self.engine_mut()?.watch(kind, opts)
    }

    async fn watch_all(&self, opts: WatchOptions) -> Result<Watch<Value>> {
        self.engine_mut()?.watch_all(opts)
    }

    async fn rev(&self) -> Result<u64> {
        let engine = self.engine()?;
        if engine.is_closed() {
            return Err(Error::Closed);
        }
        Ok(engine.rev())
    }

    async fn close(&self) {
        IdbStore::close(self).await;
    }
}
