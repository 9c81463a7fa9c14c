//! [`Replica`]: a client's local store, optionally synced, as one sans-I/O
//! state machine: the rules a shell (the browser package, a native app)
//! follows between its storage, its socket and its other instances.
//!
//! A replica owns an [`Engine`] that shows what the app reads and watches.
//! For a local replica that is all there is. A synced replica also owns a
//! [`ClientSession`] (the server-confirmed entries, the queue of pending
//! ops, the cursor), and its engine shows the optimistic view: confirmed
//! state with the pending ops on top, with versions ([`view::optimistic`]).
//!
//! The replica does no I/O and reads no clock. The shell drives it:
//!
//! - **Local writes.** [`Replica::stage`] checks and stages writes on the
//!   engine (validators, compare-and-set, the server's schemas) and builds
//!   their ops and what to persist ([`Plan`]); the shell persists the plan
//!   in one transaction and then calls [`Replica::commit`], which publishes
//!   the writes to watchers and queues the ops. A write is visible once it
//!   is durable.
//! - **The server.** The shell moves the session's frames
//!   ([`Replica::session_mut`]) and drains [`Replica::poll_event`]. Whatever
//!   the session learned is persisted and shown by one pass:
//!   [`Replica::plan_sync`] gives the [`SyncPass`] (what to persist, the
//!   view's changes, the messages for the other instances), and once its
//!   plan is durable [`Replica::sync_persisted`] applies the changes (each
//!   remote change one ordinary watch event, in server order; see
//!   [`view::rebase`]) and reports the answered ops.
//! - **Several instances on one storage** (browser tabs): one instance, the
//!   *leader*, holds the connection and persists what the server says; the
//!   others mirror it. Every instance persists its own writes. They talk by
//!   [`TabMessage`]s: [`Replica::commit`] and [`Replica::sync_persisted`]
//!   return the messages to post, [`Replica::receive`] takes one and says
//!   what to do ([`Reaction`]). A new leader [`Replica::reload`]s from
//!   storage first ([`Replica::begin_read`] when the read starts: what the
//!   leader posts meanwhile is replayed over it). An instance that joins
//!   posts [`Replica::joined`].
//! - **Restart.** [`Replica::open`] takes exactly what earlier plans
//!   persisted ([`Persisted`]).
//!
//! Op ids are `{op_prefix}:{n}`: the session's client id is shared by every
//! instance and restart over one storage, so the prefix must be unique to
//! this replica (the shell makes one at open).

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::session::{ClientConfig, ClientEvent, ClientSession, ClientState};
use super::view::{self, Step};
use super::{Ack, ErrorCode, Op, OpAction, Rights};
use crate::{
    BoxError, Deleted, Engine, Entry, Error, Event, EventType, Result, SetOptions, StoreOptions, WriteTxn,
    Written,
};

/// How many answered op ids [`Replica::answer`] remembers.
const ANSWERS_KEPT: usize = 4096;

/// `(kind, key, entry)`.
pub type KeyedEntry = (String, String, Entry<Value>);

/// Where the shell's storage keeps a pending op (its queue's key, e.g. an
/// IndexedDB auto-increment key): the queue's order across every instance.
pub type Place = f64;

/// How the server answered an op.
pub type Answer = std::result::Result<Ack, (ErrorCode, String)>;

/// A `set_fn` function.
pub type UpdateFn = Box<dyn FnOnce(&Value) -> std::result::Result<Value, BoxError>>;

/// A write as the app asked for it.
pub enum LocalOp {
    /// Set a value.
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
    /// Make the new value from the current one.
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
    /// Apply a JSON Merge Patch to an existing key; a synced replica sends
    /// the patch, which the server applies to its value then.
    Patch {
        /// The kind.
        kind: String,
        /// The key.
        key: String,
        /// The patch.
        patch: Value,
        /// Compare-and-set.
        if_version: Option<u64>,
    },
    /// Set many keys of one kind, all or nothing.
    SetMany {
        /// The kind.
        kind: String,
        /// The keys and their new values.
        items: Vec<(String, Value)>,
    },
    /// Delete a key.
    Delete {
        /// The kind.
        kind: String,
        /// The key.
        key: String,
        /// Compare-and-set.
        if_version: Option<u64>,
    },
}

/// What a write did, with the op id sent to the server for each change (a
/// synced replica's, when something changed).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A set or set_fn.
    Written(Written, Option<String>),
    /// A set_many: each key's result and op id.
    Many(Vec<(String, Written, Option<String>)>),
    /// A delete: what it deleted and its op id, or nothing.
    Deleted(Option<(Deleted<Value>, Option<String>)>),
}

/// What to write to storage, in one transaction.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    /// Remove every entry first.
    pub clear_entries: bool,
    /// Entries to write (for a synced replica, confirmed entries).
    pub put_entries: Vec<KeyedEntry>,
    /// Entries to remove.
    pub delete_entries: Vec<(String, String)>,
    /// Ops to append to the queue, in order; the storage gives each its
    /// [`Place`], handed to [`Replica::commit`].
    pub put_pending: Vec<Op>,
    /// Queued ops to remove.
    pub delete_pending: Vec<Place>,
    /// The engine's revision, for revisions to go on after a restart.
    pub head: Option<u64>,
    /// The session's cursor.
    pub cursor: Option<Option<u64>>,
    /// The server's schemas.
    pub schemas: Option<BTreeMap<String, Value>>,
}

impl Plan {
    /// Whether there is nothing to write.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }
}

/// What earlier [`Plan`]s left in storage, read at open or reload.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Persisted {
    /// The last persisted head (0 if none).
    pub head: u64,
    /// The entries.
    pub entries: Vec<KeyedEntry>,
    /// The cursor.
    pub cursor: Option<u64>,
    /// The queued ops with their places.
    pub pending: Vec<(Place, Op)>,
    /// The server's schemas, if persisted.
    pub schemas: Option<BTreeMap<String, Value>>,
    /// The next op id's number (0 where the op-id prefix is new).
    pub next_op_seq: u64,
}

impl Persisted {
    /// What a [`ClientState`] holds, its ops placed in order.
    #[must_use]
    pub fn from_state(state: ClientState) -> Self {
        Persisted {
            head: 0,
            entries: state.entries,
            cursor: state.cursor,
            pending: (0..).map(f64::from).zip(state.pending).collect(),
            schemas: None,
            next_op_seq: state.next_op_seq,
        }
    }
}

/// A server's answer, as a replica reports it once persisted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answered {
    /// The server acknowledged an op.
    Acked {
        /// The server's ack.
        ack: Ack,
        /// The op's kind.
        kind: String,
        /// The op's key.
        key: String,
    },
    /// The server refused an op; it was rolled back.
    Rejected {
        /// The op refused.
        op: Op,
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
}

impl Answered {
    /// The op answered.
    #[must_use]
    pub fn op_id(&self) -> &str {
        match self {
            Answered::Acked { ack, .. } => &ack.op_id,
            Answered::Rejected { op, .. } => &op.op_id,
        }
    }

    /// The answer.
    pub fn answer(&self) -> Answer {
        match self {
            Answered::Acked { ack, .. } => Ok(ack.clone()),
            Answered::Rejected { code, message, .. } => Err((*code, message.clone())),
        }
    }
}

/// What one instance tells the others of one storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum TabMessage {
    /// An instance queued these ops (with their places).
    Pending {
        /// The ops.
        ops: Vec<(Place, Op)>,
    },
    /// The leader persisted what the server said.
    Synced {
        /// The cursor it reached.
        cursor: Option<u64>,
        /// What its session recorded, in order (none after a snapshot:
        /// `Reload` follows).
        steps: Vec<Step>,
        /// The ops answered.
        answered: Vec<Answered>,
        /// The server's schemas, when they changed.
        schemas: Option<BTreeMap<String, Value>>,
    },
    /// A snapshot replaced the confirmed state: read it from storage.
    Reload,
    /// An instance joined: the leader answers with its `Status`.
    Joined,
    /// An instance took over the connection: the others post their pending
    /// ops.
    Leading,
    /// The leader's connection status.
    Status {
        /// `online`, `connecting`, `offline`.
        connection: String,
        /// The last error's code and message.
        error: Option<(String, String)>,
        /// What the token allows.
        rights: Option<Rights>,
    },
}

/// What a shell does about a [`TabMessage`] it received.
#[derive(Debug, Clone, PartialEq)]
pub enum Reaction {
    /// Nothing.
    None,
    /// Post this to the other instances.
    Post(TabMessage),
    /// Run a sync pass ([`Replica::plan_sync`]); with `send`, ops were
    /// queued for the connection to send.
    Persist {
        /// New ops to send, if this instance leads.
        send: bool,
    },
    /// Read the storage again ([`Replica::reload`]).
    Reload,
    /// The leader's status changed ([`Replica::leader_status`]).
    Status,
    /// An instance joined: post this one's status if it leads.
    Joined,
}

/// Local writes staged, to persist then [`Replica::commit`].
pub struct Staged {
    txn: WriteTxn<Value>,
    ops: Vec<Op>,
    /// What to persist before committing.
    pub plan: Plan,
}

/// One sync pass: what to persist, then [`Replica::sync_persisted`] (or
/// [`Replica::sync_failed`]).
pub struct SyncPass {
    /// What to persist.
    pub plan: Plan,
    cursor: Option<u64>,
    messages: Vec<TabMessage>,
    events: Vec<Event<Value>>,
    pending_revs: Vec<u64>,
    answered: Vec<Answered>,
    /// The answered ops' ids, places, kinds and keys.
    places: Vec<(String, PendingOp)>,
    steps: Vec<Step>,
    dirty_all: bool,
    rebase_all: bool,
    schemas: bool,
    /// The keys whose confirmed entries it persists.
    changed: BTreeSet<(String, String)>,
    /// The pass tells the other instances to read the storage again, as
    /// this instance just became the leader.
    others_behind: bool,
    /// Answers told again.
    reannounced: Vec<Answered>,
}

/// A sync pass applied.
#[derive(Debug, Default)]
pub struct Applied {
    /// Post these to the other instances.
    pub messages: Vec<TabMessage>,
    /// The ops answered (each once), for waiters and listeners.
    pub answered: Vec<Answered>,
    /// The view could not apply the changes (a bug; the shell logs it).
    pub error: Option<Error>,
}

/// Whether an op id is known to [`Replica::answer`].
#[derive(Debug, Clone, PartialEq)]
pub enum AnswerState {
    /// Answered (recently).
    Answered(Answer),
    /// Pending, or its answer is being persisted.
    Pending,
    /// Neither pending nor recently answered.
    Unknown,
}

/// The leader's status, as it posted it.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaderStatus {
    /// `online`, `connecting`, `offline`.
    pub connection: String,
    /// The last error's code and message.
    pub error: Option<(String, String)>,
    rights: Option<Rights>,
}

#[derive(Debug, Clone)]
struct PendingOp {
    place: Place,
    kind: String,
    key: String,
}

/// The sync half of a replica.
struct Synced {
    session: ClientSession,
    config: ClientConfig,
    leader: bool,
    /// The cursor the view reflects: the session's, once what led to it
    /// was persisted and applied.
    applied_cursor: Option<u64>,
    status: Option<LeaderStatus>,
    op_prefix: String,
    next_op_seq: Cell<u64>,
    /// Each pending op's place, kind and key.
    places: HashMap<String, PendingOp>,
    /// How many pending ops each key has.
    pending_keys: HashMap<(String, String), u32>,
    /// What the session (or the leader) recorded since the last pass.
    steps: Vec<Step>,
    /// The keys whose confirmed entry the server changed since the last
    /// pass: the only entries a leader writes. Its session may hold older
    /// entries than the storage (it read the storage before the previous
    /// leader's last pass landed): those are not its to write.
    changed: BTreeSet<(String, String)>,
    /// A snapshot replaced the confirmed state since the last pass.
    dirty_all: bool,
    /// The session was reloaded from storage: rebase every key.
    rebase_all: bool,
    /// Ops answered since the last pass.
    answered: Vec<Answered>,
    schemas_dirty: bool,
    /// Answered ops whose answer is being persisted.
    answering: HashSet<String>,
    answers: HashMap<String, Answer>,
    answer_order: VecDeque<String>,
    /// The leader's `Synced` messages heard while a read of the storage
    /// is under way ([`Replica::begin_read`]), replayed over what it read.
    reading: Option<Vec<TabMessage>>,
    /// This instance became the leader: its next pass tells the others to
    /// read the storage again. The previous leader may have closed between
    /// persisting a pass and posting it, and the others, which mirror what
    /// it posted, would never learn that pass otherwise.
    others_behind: bool,
    /// Answers told again ([`Synced::reannounce`]) for the next pass to post.
    reannounced: Vec<Answered>,
}

/// A client's local store, optionally synced (see the [module](self)).
pub struct Replica {
    engine: Engine<Value>,
    sync: Option<Synced>,
    /// Revisions of changes published while pending.
    pending_revs: BTreeSet<u64>,
}

impl Replica {
    /// Opens a replica from what was persisted. `sync` is the session's
    /// config and this replica's op-id prefix, for a synced one.
    pub fn open(
        options: StoreOptions<Value>,
        sync: Option<(ClientConfig, String)>,
        persisted: Persisted,
    ) -> Result<Replica> {
        let Some((mut config, op_prefix)) = sync else {
            let head = persisted
                .entries
                .iter()
                .map(|(_, _, e)| e.rev)
                .max()
                .unwrap_or(0)
                .max(persisted.head);
            let engine = Engine::restore(options, head, persisted.entries, Vec::new())?;
            return Ok(Replica {
                engine,
                sync: None,
                pending_revs: BTreeSet::new(),
            });
        };
        config.record_steps = true;
        let mut sync = Synced {
            session: ClientSession::new(config.clone()),
            config,
            leader: true,
            applied_cursor: None,
            status: None,
            op_prefix,
            next_op_seq: Cell::new(0),
            places: HashMap::new(),
            pending_keys: HashMap::new(),
            steps: Vec::new(),
            changed: BTreeSet::new(),
            dirty_all: false,
            rebase_all: false,
            answered: Vec::new(),
            schemas_dirty: false,
            answering: HashSet::new(),
            answers: HashMap::new(),
            answer_order: VecDeque::new(),
            reading: None,
            others_behind: false,
            reannounced: Vec::new(),
        };
        let head = persisted.head;
        sync.next_op_seq.set(persisted.next_op_seq);
        sync.restore(persisted);
        let (head, entries, pending_revs) = sync.view(head);
        let engine = Engine::restore(options, head, entries, Vec::new())?;
        Ok(Replica {
            engine,
            sync: Some(sync),
            pending_revs: pending_revs.into_iter().collect(),
        })
    }

    /// The engine: what the app reads and watches.
    #[must_use]
    pub fn engine(&self) -> &Engine<Value> {
        &self.engine
    }

    /// The engine, to watch or close.
    pub fn engine_mut(&mut self) -> &mut Engine<Value> {
        &mut self.engine
    }

    /// What a client without storage of its own keeps to resume later
    /// (restored by [`Persisted::from_state`]); `None` for a local replica.
    #[must_use]
    pub fn client_state(&self) -> Option<ClientState> {
        let sync = self.sync.as_ref()?;
        let mut state = sync.session.state();
        state.next_op_seq = sync.next_op_seq.get();
        Some(state)
    }

    /// Whether the replica syncs.
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.sync.is_some()
    }

    /// The session, to move its frames; `None` for a local replica.
    pub fn session_mut(&mut self) -> Option<&mut ClientSession> {
        self.sync.as_mut().map(|s| &mut s.session)
    }

    /// The session; `None` for a local replica.
    #[must_use]
    pub fn session(&self) -> Option<&ClientSession> {
        self.sync.as_ref().map(|s| &s.session)
    }

    /// Whether `kind`/`key` has ops not yet answered.
    #[must_use]
    pub fn is_pending(&self, kind: &str, key: &str) -> bool {
        self.sync
            .as_ref()
            .is_some_and(|s| s.pending_keys.contains_key(&(kind.to_owned(), key.to_owned())))
    }

    /// Whether the change at `rev` showed pending ops.
    #[must_use]
    pub fn is_pending_rev(&self, rev: u64) -> bool {
        self.pending_revs.contains(&rev)
    }

    /// Ops written on this storage whose answer is not yet shown.
    #[must_use]
    pub fn pending_count(&self) -> usize {
        self.sync.as_ref().map_or(0, |s| s.places.len())
    }

    /// The server revision the view reflects.
    #[must_use]
    pub fn synced_rev(&self) -> Option<u64> {
        self.sync.as_ref().and_then(|s| s.applied_cursor)
    }

    /// Whether this instance holds the connection.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.sync.as_ref().is_some_and(|s| s.leader)
    }

    /// Makes this instance the one holding the connection, or not. A new
    /// leader posts [`TabMessage::Leading`] once connecting; its next pass
    /// ([`Replica::has_news`]) posts [`TabMessage::Reload`], for the others
    /// to read what the previous leader persisted but could not post.
    pub fn set_leader(&mut self, leader: bool) {
        if let Some(s) = &mut self.sync {
            s.others_behind |= leader && !s.leader;
            s.leader = leader;
        }
    }

    /// The leader's status as it last posted it (for an instance without
    /// the connection).
    #[must_use]
    pub fn leader_status(&self) -> Option<&LeaderStatus> {
        self.sync.as_ref().and_then(|s| s.status.as_ref())
    }

    /// What the token allows, as this session or the leader learned.
    #[must_use]
    pub fn rights(&self) -> Option<Rights> {
        let s = self.sync.as_ref()?;
        s.session.rights().or(s.status.as_ref().and_then(|s| s.rights))
    }

    /// Where `op_id` stands.
    #[must_use]
    pub fn answer(&self, op_id: &str) -> AnswerState {
        let Some(s) = &self.sync else {
            return AnswerState::Unknown;
        };
        if let Some(answer) = s.answers.get(op_id) {
            AnswerState::Answered(answer.clone())
        } else if s.places.contains_key(op_id) || s.answering.contains(op_id) {
            AnswerState::Pending
        } else {
            AnswerState::Unknown
        }
    }

    // ---- local writes ----

    /// Stages `writes` in order. Returns each one's result and, when any
    /// staged a change, what to persist before [`Replica::commit`]. A write
    /// that failed staged nothing; one that succeeded takes effect only
    /// with the commit. Validators, compare and `set_fn` functions run
    /// here, with only shared access to the replica.
    pub fn stage(&self, writes: impl IntoIterator<Item = LocalOp>) -> (Vec<Result<Outcome>>, Option<Staged>) {
        let mut txn = self.engine.begin();
        let mut ops = Vec::new();
        let mut results = Vec::new();
        for write in writes {
            let savepoint = txn.savepoint();
            let ops_before = ops.len();
            let staged = self.stage_one(&mut txn, write, &mut ops);
            if staged.is_err() {
                txn.rollback_to(savepoint);
                ops.truncate(ops_before);
            }
            results.push(staged);
        }
        if txn.is_empty() {
            return (results, None);
        }
        let mut plan = Plan::default();
        let last = txn.events().last().map(|e| (e.rev, e.event_type));
        if self.sync.is_some() {
            // Pending ops carry no revision: the head is persisted for the
            // revisions to go on after a restart.
            plan.head = last.map(|(rev, _)| rev);
            plan.put_pending.clone_from(&ops);
        } else {
            // At open, the head is the larger of the persisted head and the
            // entries' revisions: only a batch ending with a delete needs
            // to persist it.
            if let Some((rev, EventType::Delete)) = last {
                plan.head = Some(rev);
            }
            for event in txn.events() {
                if event.event_type == EventType::Delete {
                    plan.delete_entries.push((event.kind.clone(), event.key.clone()));
                } else {
                    let entry = Entry {
                        value: event.value.clone(),
                        version: event.version,
                        rev: event.rev,
                    };
                    plan.put_entries
                        .push((event.kind.clone(), event.key.clone(), entry));
                }
            }
        }
        (results, Some(Staged { txn, ops, plan }))
    }

    /// Publishes writes whose plan was persisted; `places` are the queued
    /// ops' places, in order. Returns what to post to the other instances.
    /// Nothing may have changed the replica since [`Replica::stage`] but
    /// sync input (frames, tab messages).
    pub fn commit(&mut self, staged: Staged, places: Vec<Place>) -> Result<Option<TabMessage>> {
        let Staged { txn, ops, .. } = staged;
        let mut message = None;
        if let Some(sync) = &mut self.sync {
            // The ops are durable: they are queued even if the view fails.
            self.pending_revs.extend(txn.events().iter().map(|e| e.rev));
            // Another instance may have read them back from storage and
            // posted them while they were being persisted: those are queued
            // (or answered) already.
            let queued: Vec<(Place, Op)> = places
                .into_iter()
                .zip(ops)
                .filter(|(_, op)| !sync.knows(&op.op_id))
                .collect();
            for (place, op) in &queued {
                sync.add_pending(op, *place);
                sync.session.enqueue(op.clone());
            }
            message = (!queued.is_empty()).then_some(TabMessage::Pending { ops: queued });
        }
        self.engine.commit(txn)?;
        self.trim_pending_revs();
        Ok(message)
    }

    fn stage_one(&self, txn: &mut WriteTxn<Value>, write: LocalOp, ops: &mut Vec<Op>) -> Result<Outcome> {
        let engine = &self.engine;
        let sync = self.sync.as_ref();
        // The server's rules as the session knows them: refused here, not
        // queued to be rejected.
        let check = |kind: &str, key: &str, value: &Value| -> Result<()> {
            sync.map_or(Ok(()), |s| s.session.check(kind, key, Some(value)))
        };
        let mut queue = |kind: &str, key: &str, action: OpAction, value: Option<Value>, if_version| {
            let sync = sync?;
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
        let opts = |if_version| SetOptions { if_version };
        match write {
            LocalOp::Set {
                kind,
                key,
                value,
                if_version,
            } => {
                check(&kind, &key, &value)?;
                let written = engine.set(txn, &kind, &key, value.clone(), opts(if_version))?;
                let op_id = written
                    .changed()
                    .then(|| queue(&kind, &key, OpAction::Set, Some(value), if_version));
                Ok(Outcome::Written(written, op_id.flatten()))
            }
            LocalOp::SetFn {
                kind,
                key,
                f,
                if_version,
            } => {
                let mut new_value = None;
                let written = engine.set_fn(
                    txn,
                    &kind,
                    &key,
                    |old: &Value| -> std::result::Result<Value, BoxError> {
                        let new = f(old)?;
                        new_value = Some(new.clone());
                        Ok(new)
                    },
                    opts(if_version),
                )?;
                let new_value = new_value.unwrap_or(Value::Null);
                check(&kind, &key, &new_value)?;
                let op_id = if written.changed() {
                    queue(&kind, &key, OpAction::Set, Some(new_value), None)
                } else {
                    None
                };
                Ok(Outcome::Written(written, op_id))
            }
            LocalOp::Patch {
                kind,
                key,
                patch,
                if_version,
            } => {
                let written = engine.patch(txn, &kind, &key, &patch, opts(if_version))?;
                let op_id = if written.changed() {
                    let merged = txn.events().last().map_or(&Value::Null, |e| &e.value);
                    check(&kind, &key, merged)?;
                    queue(&kind, &key, OpAction::Patch, Some(patch), if_version)
                } else {
                    None
                };
                Ok(Outcome::Written(written, op_id))
            }
            LocalOp::SetMany { kind, items } => {
                for (key, value) in &items {
                    check(&kind, key, value)?;
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
                        queue(&kind, &key, OpAction::Set, values.get(&key).cloned(), None)
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
                    let op_id = queue(&kind, &key, OpAction::Delete, None, if_version);
                    (d, op_id)
                })))
            }
        }
    }

    fn trim_pending_revs(&mut self) {
        let oldest = self.engine.oldest_resumable();
        if self.pending_revs.first().is_some_and(|r| *r <= oldest) {
            self.pending_revs = self.pending_revs.split_off(&(oldest + 1));
        }
    }

    // ---- the server ----

    /// The session's next event, once the replica noted what it must
    /// persist. The shell uses it for its status and connection (see
    /// [`super::reconnect`]); call [`Replica::plan_sync`] when
    /// [`Replica::has_news`].
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        let sync = self.sync.as_mut()?;
        let event = sync.session.poll_event()?;
        match &event {
            ClientEvent::Connected { .. } => sync.schemas_dirty = true,
            ClientEvent::SnapshotApplied { .. } => sync.dirty_all = true,
            ClientEvent::Acked(ack) => sync.answered.push(Answered::Acked {
                ack: ack.clone(),
                kind: String::new(),
                key: String::new(),
            }),
            ClientEvent::Rejected { op, code, message } => sync.answered.push(Answered::Rejected {
                op: op.clone(),
                code: *code,
                message: message.clone(),
            }),
            _ => {}
        }
        Some(event)
    }

    /// Whether the session or the leader told something not yet persisted
    /// and shown.
    #[must_use]
    pub fn has_news(&self) -> bool {
        self.sync.as_ref().is_some_and(|s| {
            s.dirty_all
                || s.rebase_all
                || s.schemas_dirty
                || !s.steps.is_empty()
                || !s.answered.is_empty()
                || s.session.has_steps()
                || s.applied_cursor != s.session.cursor()
                || (s.leader && s.others_behind)
        })
    }

    /// Starts a sync pass over everything learned since the last one;
    /// `None` for a local replica. Persist its plan (the leader's; another
    /// instance's is empty), then call [`Replica::sync_persisted`].
    pub fn plan_sync(&mut self) -> Option<SyncPass> {
        let sync = self.sync.as_mut()?;
        Some(sync.plan(&self.engine))
    }

    /// Applies a pass whose plan was persisted: the view's changes, the
    /// answers.
    pub fn sync_persisted(&mut self, pass: SyncPass) -> Applied {
        let Some(sync) = &mut self.sync else {
            return Applied::default();
        };
        self.pending_revs.extend(pass.pending_revs);
        let error = self.engine.apply_committed(pass.events).err();
        sync.applied_cursor = pass.cursor;
        for answered in &pass.answered {
            sync.remember(answered.op_id(), answered.answer());
        }
        self.trim_pending_revs();
        Applied {
            messages: pass.messages,
            answered: pass.answered,
            error,
        }
    }

    /// Keeps a pass whose plan could not be persisted for the next one.
    pub fn sync_failed(&mut self, pass: SyncPass) {
        let Some(sync) = &mut self.sync else { return };
        sync.dirty_all |= pass.dirty_all;
        sync.rebase_all |= pass.rebase_all;
        sync.schemas_dirty |= pass.schemas;
        sync.changed.extend(pass.changed);
        sync.others_behind |= pass.others_behind;
        let later = std::mem::replace(&mut sync.reannounced, pass.reannounced);
        sync.reannounced.extend(later);
        let later = std::mem::replace(&mut sync.steps, pass.steps);
        sync.steps.extend(later);
        for (op_id, p) in pass.places {
            sync.answering.remove(&op_id);
            let op = Op {
                op_id,
                kind: p.kind,
                key: p.key,
                action: OpAction::Set,
                value: None,
                if_version: None,
            };
            sync.add_pending(&op, p.place);
        }
        let later = std::mem::replace(&mut sync.answered, pass.answered);
        sync.answered.extend(later);
    }

    /// Call when a read of the storage for [`Replica::reload`] starts:
    /// what the leader posts from now on is replayed over the read, which
    /// may or may not hold it.
    pub fn begin_read(&mut self) {
        if let Some(sync) = &mut self.sync {
            sync.reading = Some(Vec::new());
        }
    }

    /// Call when a read started by [`Replica::begin_read`] failed.
    pub fn read_failed(&mut self) {
        if let Some(sync) = &mut self.sync {
            sync.reading = None;
        }
    }

    /// Replaces the sync state with what storage holds now, read since
    /// [`Replica::begin_read`] (a new leader, or after the leader applied a
    /// snapshot); the next pass rebases every key onto it. A leader ignores
    /// it: its session is the truth the storage follows, and it may be
    /// connected.
    pub fn reload(&mut self, persisted: Persisted) {
        let Some(sync) = &mut self.sync else { return };
        let heard = sync.reading.take().unwrap_or_default();
        if sync.leader {
            return;
        }
        sync.restore(persisted);
        sync.steps.clear();
        sync.rebase_all = true;
        for message in heard {
            if let TabMessage::Synced {
                cursor,
                steps,
                answered,
                schemas,
            } = message
            {
                sync.mirror_synced(cursor, steps, answered, schemas);
            }
        }
    }

    /// What this instance posts once it joined the others: that it joined
    /// (the leader answers with its status), and the queue it read, in case
    /// an instance persisted ops and closed before posting them.
    #[must_use]
    pub fn joined(&self) -> Vec<TabMessage> {
        let mut messages = vec![TabMessage::Joined];
        messages.extend(self.sync.as_ref().and_then(Synced::pending_message));
        messages
    }

    // ---- other instances ----

    /// Takes what another instance posted.
    pub fn receive(&mut self, message: TabMessage) -> Reaction {
        let Some(sync) = &mut self.sync else {
            return Reaction::None;
        };
        match message {
            TabMessage::Pending { ops } => {
                let mut any = false;
                let mut again = false;
                for (place, op) in ops {
                    if !sync.knows(&op.op_id) {
                        sync.add_pending(&op, place);
                        sync.session.mirror_op(op);
                        any = true;
                    } else if sync.leader
                        && let Some(answer) = sync.answers.get(&op.op_id).cloned()
                    {
                        sync.reannounce(op, answer);
                        again = true;
                    }
                }
                if any || again {
                    Reaction::Persist { send: any }
                } else {
                    Reaction::None
                }
            }
            TabMessage::Joined => Reaction::Joined,
            // The leader persists for itself; a second leader (where
            // instances cannot elect one) hears the server directly.
            _ if sync.leader => Reaction::None,
            TabMessage::Leading => {
                // A new leader read the queue from storage, which lacks what
                // the previous leader answered but could not tell: post every
                // op still pending here, so that it sends the ones it does
                // not hold (the server answers those again, from its record).
                sync.pending_message().map_or(Reaction::None, Reaction::Post)
            }
            TabMessage::Synced {
                cursor,
                steps,
                answered,
                schemas,
            } => {
                if let Some(read) = &mut sync.reading {
                    read.push(TabMessage::Synced {
                        cursor,
                        steps: steps.clone(),
                        answered: answered.clone(),
                        schemas: schemas.clone(),
                    });
                }
                sync.mirror_synced(cursor, steps, answered, schemas);
                Reaction::Persist { send: false }
            }
            TabMessage::Reload => Reaction::Reload,
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
                Reaction::Status
            }
        }
    }
}

impl Synced {
    fn next_op_id(&self) -> String {
        let n = self.next_op_seq.get();
        self.next_op_seq.set(n + 1);
        format!("{}:{n}", self.op_prefix)
    }

    /// Whether `op_id` is queued here, or answered (recently).
    fn knows(&self, op_id: &str) -> bool {
        self.places.contains_key(op_id)
            || self.answering.contains(op_id)
            || self.answers.contains_key(op_id)
            // Answered by a message the next pass takes: queuing it now
            // would leave it in the session's queue for good.
            || self.answered.iter().any(|a| a.op_id() == op_id)
    }

    /// Tells the others again how the server answered `op`: another
    /// instance posted it as pending, having read it back from storage
    /// before the answer was persisted (or heard of it from one that did),
    /// and the instances that joined since the answer was posted would
    /// hold it pending for good.
    fn reannounce(&mut self, op: Op, answer: Answer) {
        let confirmed = self.session.confirmed(&op.kind, &op.key).cloned();
        self.steps.push(Step {
            kind: op.kind.clone(),
            key: op.key.clone(),
            confirmed,
            answered: Some(op.clone()),
        });
        self.reannounced.push(match answer {
            Ok(ack) => Answered::Acked {
                ack,
                kind: op.kind,
                key: op.key,
            },
            Err((code, message)) => Answered::Rejected { op, code, message },
        });
    }

    /// This instance's pending ops with their places, in queue order.
    fn pending_message(&self) -> Option<TabMessage> {
        let ops: Vec<(Place, Op)> = self
            .session
            .pending()
            .filter_map(|op| self.places.get(&op.op_id).map(|p| (p.place, op.clone())))
            .collect();
        (!ops.is_empty()).then_some(TabMessage::Pending { ops })
    }

    /// Mirrors what the leader persisted. A message older than the state
    /// this instance holds (posted before a read of the storage that
    /// already holds it) only answers its ops: its steps would take the
    /// confirmed state back.
    fn mirror_synced(
        &mut self,
        cursor: Option<u64>,
        steps: Vec<Step>,
        answered: Vec<Answered>,
        schemas: Option<BTreeMap<String, Value>>,
    ) {
        if cursor < self.session.cursor() {
            for step in steps {
                if step.answered.is_some() {
                    let confirmed = self.session.confirmed(&step.kind, &step.key).cloned();
                    self.session.mirror(Step { confirmed, ..step });
                }
            }
        } else {
            for step in steps {
                self.session.mirror(step);
            }
            self.session.mirror_cursor(cursor);
        }
        self.answered.extend(answered);
        if let Some(schemas) = schemas {
            self.schemas_dirty |= self.session.set_schemas(schemas);
        }
    }

    fn add_pending(&mut self, op: &Op, place: Place) {
        let p = PendingOp {
            place,
            kind: op.kind.clone(),
            key: op.key.clone(),
        };
        if self.places.insert(op.op_id.clone(), p).is_none() {
            *self
                .pending_keys
                .entry((op.kind.clone(), op.key.clone()))
                .or_default() += 1;
        }
    }

    /// Forgets an answered op.
    fn remove_pending(&mut self, op_id: &str) -> Option<PendingOp> {
        let p = self.places.remove(op_id)?;
        let slot = (p.kind.clone(), p.key.clone());
        if let Some(n) = self.pending_keys.get_mut(&slot) {
            *n -= 1;
            if *n == 0 {
                self.pending_keys.remove(&slot);
            }
        }
        Some(p)
    }

    fn remember(&mut self, op_id: &str, answer: Answer) {
        self.answering.remove(op_id);
        self.answers.insert(op_id.to_owned(), answer);
        self.answer_order.push_back(op_id.to_owned());
        if self.answer_order.len() > ANSWERS_KEPT
            && let Some(old) = self.answer_order.pop_front()
        {
            self.answers.remove(&old);
        }
    }

    /// Replaces the session's state with a persisted one.
    fn restore(&mut self, mut p: Persisted) {
        // Ops this instance heard of that the read missed: written by
        // another instance after it (their post can arrive before the read
        // completes), or answered and removed by the leader (sending them
        // again gets their recorded answer). Dropping them would strand
        // them; they keep their place in the queue.
        let read: HashSet<&str> = p.pending.iter().map(|(_, op)| op.op_id.as_str()).collect();
        let missed: Vec<(Place, Op)> = self
            .session
            .pending()
            .filter(|op| !read.contains(op.op_id.as_str()))
            .filter_map(|op| self.places.get(&op.op_id).map(|pl| (pl.place, op.clone())))
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
    /// newest changes), so revisions keep their meaning after a restart.
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

    /// What to persist for the session's news, and the view's changes.
    fn plan(&mut self, engine: &Engine<Value>) -> SyncPass {
        // Only the leader persists; the others mirror.
        let persist = self.leader;
        let dirty_all = std::mem::take(&mut self.dirty_all);
        let rebase_all = std::mem::take(&mut self.rebase_all);
        let mut steps = std::mem::take(&mut self.steps);
        steps.extend(self.session.take_steps());
        self.changed.extend(self.session.take_changed());
        let changed = std::mem::take(&mut self.changed);
        let mut answered = std::mem::take(&mut self.answered);
        // A message heard during a read is mirrored twice (see `reload`).
        let mut seen = HashSet::new();
        answered.retain(|a| seen.insert(a.op_id().to_owned()));
        let mut plan = Plan::default();
        let mut places = Vec::new();
        for a in &mut answered {
            if let Some(p) = self.remove_pending(a.op_id()) {
                if let Answered::Acked { kind, key, .. } = a {
                    (*kind, *key) = (p.kind.clone(), p.key.clone());
                }
                if !self.answers.contains_key(a.op_id()) {
                    self.answering.insert(a.op_id().to_owned());
                }
                if persist {
                    plan.delete_pending.push(p.place);
                }
                places.push((a.op_id().to_owned(), p));
            }
        }
        // An op sent again after a hand-over (read back from storage before
        // the old leader's answer was written) leaves the queue above, but
        // its answer was reported already.
        answered.retain(|a| !self.answers.contains_key(a.op_id()));
        let reannounced = std::mem::take(&mut self.reannounced);
        let schemas = std::mem::take(&mut self.schemas_dirty);
        let mut messages = Vec::new();
        let mut others_behind = false;
        if persist {
            let session = &self.session;
            if dirty_all {
                plan.clear_entries = true;
                plan.put_entries = session
                    .confirmed_entries()
                    .map(|(kind, key, e)| (kind.to_owned(), key.to_owned(), e.clone()))
                    .collect();
            } else {
                for (kind, key) in &changed {
                    match session.confirmed(kind, key) {
                        Some(e) => plan.put_entries.push((kind.clone(), key.clone(), e.clone())),
                        None => plan.delete_entries.push((kind.clone(), key.clone())),
                    }
                }
            }
            let moved = session.cursor() != self.applied_cursor;
            plan.cursor = (moved || dirty_all).then_some(session.cursor());
            plan.schemas = schemas.then(|| session.schemas().clone());
            if moved || dirty_all || schemas || !steps.is_empty() || !answered.is_empty() {
                // After a snapshot the other instances read the new state
                // from storage rather than receive a step per entry.
                let mut posted = answered.clone();
                for a in &reannounced {
                    if !posted.iter().any(|p| p.op_id() == a.op_id()) {
                        posted.push(a.clone());
                    }
                }
                messages.push(TabMessage::Synced {
                    cursor: session.cursor(),
                    steps: if dirty_all { Vec::new() } else { steps.clone() },
                    answered: posted,
                    schemas: plan.schemas.clone(),
                });
            }
            others_behind = std::mem::take(&mut self.others_behind);
            if dirty_all || others_behind {
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
            for (kind, key, _) in self.session.confirmed_entries() {
                keys.insert((kind.to_owned(), key.to_owned()));
            }
            for op in self.session.pending() {
                keys.insert((op.kind.clone(), op.key.clone()));
            }
            let touched: Vec<Step> = keys
                .into_iter()
                .map(|(kind, key)| Step {
                    confirmed: self.session.confirmed(&kind, &key).cloned(),
                    kind,
                    key,
                    answered: None,
                })
                .collect();
            view::rebase(&touched, shown, self.session.pending())
        } else {
            view::rebase(&steps, shown, self.session.pending())
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
            plan.head = Some(rev);
        }
        SyncPass {
            plan,
            cursor: self.session.cursor(),
            messages,
            events,
            pending_revs,
            answered,
            places,
            steps,
            dirty_all,
            rebase_all,
            schemas,
            changed,
            others_behind,
            reannounced,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::SetResult;

    /// Storage that applies plans as the browser's IndexedDB does.
    #[derive(Default)]
    struct Storage {
        persisted: Persisted,
        next_place: f64,
    }

    impl Storage {
        fn write(&mut self, plan: &Plan) -> Vec<Place> {
            let p = &mut self.persisted;
            if plan.clear_entries {
                p.entries.clear();
            }
            for (kind, key) in &plan.delete_entries {
                p.entries.retain(|(k, n, _)| (k, n) != (kind, key));
            }
            for (kind, key, e) in &plan.put_entries {
                p.entries.retain(|(k, n, _)| (k, n) != (kind, key));
                p.entries.push((kind.clone(), key.clone(), e.clone()));
            }
            p.pending
                .retain(|(place, _)| !plan.delete_pending.contains(place));
            let mut places = Vec::new();
            for op in &plan.put_pending {
                self.next_place += 1.0;
                places.push(self.next_place);
                p.pending.push((self.next_place, op.clone()));
            }
            p.head = plan.head.unwrap_or(p.head);
            p.cursor = plan.cursor.unwrap_or(p.cursor);
            if let Some(s) = &plan.schemas {
                p.schemas = Some(s.clone());
            }
            places
        }
    }

    fn config() -> ClientConfig {
        ClientConfig::new("ns", "rw", "device")
    }

    fn synced(storage: &Storage, prefix: &str) -> Replica {
        let sync = Some((config(), prefix.to_owned()));
        Replica::open(StoreOptions::new(), sync, storage.persisted.clone()).unwrap()
    }

    fn set(kind: &str, key: &str, value: Value) -> LocalOp {
        LocalOp::Set {
            kind: kind.into(),
            key: key.into(),
            value,
            if_version: None,
        }
    }

    /// Stages, persists and commits `ops`; returns the results and what to
    /// post.
    fn write(
        r: &mut Replica,
        storage: &mut Storage,
        ops: Vec<LocalOp>,
    ) -> (Vec<Result<Outcome>>, Option<TabMessage>) {
        let (results, staged) = r.stage(ops);
        let Some(staged) = staged else {
            return (results, None);
        };
        let places = storage.write(&staged.plan);
        let post = r.commit(staged, places).unwrap();
        (results, post)
    }

    fn shown(r: &Replica, kind: &str, key: &str) -> Option<(Value, u64)> {
        let e = r.engine().get(kind, key).unwrap()?;
        Some((e.value.clone(), e.version))
    }

    #[test]
    fn a_local_replica_persists_entries_and_the_head_only_after_a_delete() {
        let mut storage = Storage::default();
        let mut r = Replica::open(StoreOptions::new(), None, Persisted::default()).unwrap();
        let (results, post) = write(
            &mut r,
            &mut storage,
            vec![set("t", "a", json!(1)), set("t", "b", json!(2))],
        );
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(post, None, "a local replica posts nothing");
        assert_eq!(storage.persisted.head, 0, "the newest entry holds the head");
        let delete = LocalOp::Delete {
            kind: "t".into(),
            key: "b".into(),
            if_version: None,
        };
        write(&mut r, &mut storage, vec![delete]);
        assert_eq!(storage.persisted.head, 3);
        let reopened = Replica::open(StoreOptions::new(), None, storage.persisted.clone()).unwrap();
        assert_eq!(reopened.engine().rev(), 3, "revisions go on after a restart");
        assert_eq!(shown(&reopened, "t", "a"), Some((json!(1), 1)));
        assert_eq!(shown(&reopened, "t", "b"), None);
    }

    #[test]
    fn a_synced_write_persists_its_op_and_the_view_survives_a_restart() {
        let mut storage = Storage::default();
        let mut r = synced(&storage, "tab-1");
        let (results, post) = write(
            &mut r,
            &mut storage,
            vec![set("t", "a", json!(1)), set("t", "a", json!(2))],
        );
        let op_ids: Vec<String> = results
            .into_iter()
            .map(|o| match o.unwrap() {
                Outcome::Written(w, Some(op_id)) => {
                    assert_eq!(
                        w.result,
                        if op_id.ends_with(":0") {
                            SetResult::Created
                        } else {
                            SetResult::Updated
                        }
                    );
                    op_id
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(op_ids, ["tab-1:0", "tab-1:1"]);
        let Some(TabMessage::Pending { ops }) = post else {
            panic!("{post:?}")
        };
        assert_eq!(
            ops.iter().map(|(place, _)| *place).collect::<Vec<_>>(),
            [1.0, 2.0]
        );
        assert!(storage.persisted.entries.is_empty(), "nothing is confirmed yet");
        assert_eq!(storage.persisted.head, 2);
        assert_eq!((r.pending_count(), r.is_pending("t", "a")), (2, true));
        // A reload (another tab, the page again) shows the same, under a new
        // op-id prefix.
        let mut again = synced(&storage, "tab-2");
        assert_eq!(shown(&again, "t", "a"), Some((json!(2), 2)));
        assert_eq!(again.engine().rev(), 2);
        assert!(again.is_pending_rev(2));
        let (results, _) = write(&mut again, &mut storage, vec![set("t", "b", json!(3))]);
        assert!(matches!(&results[0], Ok(Outcome::Written(_, Some(id))) if id == "tab-2:0"));
    }

    #[test]
    fn a_write_the_server_schema_refuses_is_refused_alone_and_queues_nothing() {
        let mut storage = Storage::default();
        storage.persisted.schemas = Some(BTreeMap::from([(
            "t".to_owned(),
            json!({"type": "object", "required": ["title"]}),
        )]));
        let mut r = synced(&storage, "tab");
        let bad = set("t", "a", json!({"no": "title"}));
        let good = set("t", "b", json!({"title": "x"}));
        let (results, _) = write(&mut r, &mut storage, vec![bad, good]);
        assert_eq!(results[0].as_ref().unwrap_err().code(), "validation");
        assert!(results[1].is_ok());
        let queued: Vec<&str> = storage
            .persisted
            .pending
            .iter()
            .map(|(_, op)| op.key.as_str())
            .collect();
        assert_eq!(queued, ["b"]);
        assert_eq!(shown(&r, "t", "a"), None);
    }

    #[test]
    fn tabs_share_ops_and_a_new_leader_hears_of_the_ones_it_lacks() {
        let mut storage = Storage::default();
        let mut leader = synced(&storage, "a");
        let mut other = synced(&storage, "b");
        other.set_leader(false);
        let (_, post) = write(&mut other, &mut storage, vec![set("t", "k", json!(1))]);
        let post = post.unwrap();
        assert_eq!(leader.receive(post.clone()), Reaction::Persist { send: true });
        assert_eq!(leader.receive(post), Reaction::None, "known already");
        assert_eq!(leader.session().unwrap().pending().len(), 1);
        // The leader's pass shows the other tab's op.
        let pass = leader.plan_sync().unwrap();
        let plan = &pass.plan;
        assert!(
            plan.put_pending.is_empty() && plan.delete_pending.is_empty(),
            "the writer persisted it"
        );
        leader.sync_persisted(pass);
        assert_eq!(shown(&leader, "t", "k"), Some((json!(1), 1)));
        // A tab without the connection posts its pending ops to a new leader.
        let Reaction::Post(TabMessage::Pending { ops }) = other.receive(TabMessage::Leading) else {
            panic!("the other tab posts what it holds");
        };
        assert_eq!(ops.len(), 1);
        assert_eq!(
            leader.receive(TabMessage::Leading),
            Reaction::None,
            "a leader ignores it"
        );
    }

    /// What the leader posts once it persisted the server's ack of `op`
    /// (its change at `rev`, as version 1).
    fn acked(op: &Op, rev: u64) -> TabMessage {
        let entry = Entry {
            value: op.value.clone().unwrap(),
            version: 1,
            rev,
        };
        TabMessage::Synced {
            cursor: Some(rev),
            steps: vec![Step {
                kind: op.kind.clone(),
                key: op.key.clone(),
                confirmed: Some(entry),
                answered: Some(op.clone()),
            }],
            answered: vec![Answered::Acked {
                ack: Ack {
                    op_id: op.op_id.clone(),
                    result: super::super::OpResult::Created,
                    version: 1,
                    rev,
                    value: None,
                },
                kind: op.kind.clone(),
                key: op.key.clone(),
            }],
            schemas: None,
        }
    }

    /// The leader's persisting of `message` (the part the tests need).
    fn persist_acked(storage: &mut Storage, message: &TabMessage) {
        let TabMessage::Synced { cursor, steps, .. } = message else {
            panic!("{message:?}")
        };
        let plan = Plan {
            put_entries: steps
                .iter()
                .map(|s| (s.kind.clone(), s.key.clone(), s.confirmed.clone().unwrap()))
                .collect(),
            delete_pending: storage
                .persisted
                .pending
                .iter()
                .filter(|(_, op)| steps.iter().any(|s| s.answered.as_ref() == Some(op)))
                .map(|(place, _)| *place)
                .collect(),
            cursor: Some(*cursor),
            ..Plan::default()
        };
        storage.write(&plan);
    }

    fn pass(r: &mut Replica) -> Applied {
        let pass = r.plan_sync().unwrap();
        r.sync_persisted(pass)
    }

    fn follower(storage: &Storage, prefix: &str) -> Replica {
        let mut r = synced(storage, prefix);
        r.set_leader(false);
        r
    }

    #[test]
    fn a_reload_keeps_what_the_leader_posted_during_the_read() {
        for read_sees_it in [false, true] {
            let mut storage = Storage::default();
            let mut tab = follower(&storage, "b");
            write(&mut tab, &mut storage, vec![set("t", "k", json!(1))]);
            let op = storage.persisted.pending[0].1.clone();
            // The tab takes over: its read of the storage starts, the old
            // leader persists the server's ack and posts it, and the read
            // completes with or without it.
            tab.begin_read();
            let before = storage.persisted.clone();
            let message = acked(&op, 1);
            persist_acked(&mut storage, &message);
            let read = if read_sees_it {
                storage.persisted.clone()
            } else {
                before
            };
            tab.receive(message);
            tab.reload(read);
            let applied = pass(&mut tab);
            assert_eq!(
                applied.answered.iter().map(Answered::op_id).collect::<Vec<_>>(),
                [op.op_id.as_str()],
                "answered once (read saw it: {read_sees_it})"
            );
            assert_eq!(tab.pending_count(), 0);
            assert_eq!(tab.session().unwrap().pending().len(), 0);
            assert_eq!(tab.synced_rev(), Some(1));
            assert_eq!(shown(&tab, "t", "k"), Some((json!(1), 1)));
            assert!(!tab.is_pending("t", "k"));
        }
    }

    #[test]
    fn a_message_older_than_the_state_read_answers_its_ops_but_keeps_the_state() {
        let mut storage = Storage::default();
        let mut tab = follower(&storage, "b");
        write(&mut tab, &mut storage, vec![set("t", "k", json!(1))]);
        let op = storage.persisted.pending[0].1.clone();
        let first = acked(&op, 1);
        persist_acked(&mut storage, &first);
        // The leader moved on to revision 2 (another client's change).
        let mut second = acked(&op, 2);
        if let TabMessage::Synced { steps, answered, .. } = &mut second {
            steps[0].confirmed = Some(Entry {
                value: json!(2),
                version: 2,
                rev: 2,
            });
            steps[0].answered = None;
            answered.clear();
        }
        persist_acked(&mut storage, &second);
        tab.begin_read();
        tab.reload(storage.persisted.clone());
        // The first message arrives after the read that holds both.
        tab.receive(first);
        pass(&mut tab);
        assert_eq!(tab.synced_rev(), Some(2), "the cursor does not go back");
        assert_eq!(shown(&tab, "t", "k"), Some((json!(2), 2)));
        assert_eq!(tab.pending_count(), 0);
    }

    #[test]
    fn a_leader_ignores_a_reload() {
        let mut storage = Storage::default();
        let mut leader = synced(&storage, "a");
        write(&mut leader, &mut storage, vec![set("t", "k", json!(1))]);
        leader.session_mut().unwrap().connect(0);
        leader.begin_read();
        leader.reload(Persisted::default());
        let hello = leader.session_mut().unwrap().poll_transmit();
        assert!(
            matches!(hello, Some(crate::sync::ClientMessage::Hello(_))),
            "the live session stays: {hello:?}"
        );
        assert_eq!(leader.pending_count(), 1);
    }

    #[test]
    fn a_joining_tab_posts_the_queue_it_read_and_commit_skips_ops_posted_meanwhile() {
        let mut storage = Storage::default();
        let mut leader = synced(&storage, "a");
        let mut writer = follower(&storage, "b");
        // The writer's op reaches storage; before it commits, a tab opens,
        // reads it and posts it.
        let (_, staged) = writer.stage(vec![set("t", "k", json!(1))]);
        let staged = staged.unwrap();
        let places = storage.write(&staged.plan);
        let joiner = follower(&storage, "c");
        let posted = joiner.joined();
        assert_eq!(posted[0], TabMessage::Joined);
        assert!(matches!(&posted[1], TabMessage::Pending { ops } if ops.len() == 1));
        assert_eq!(
            leader.receive(posted[1].clone()),
            Reaction::Persist { send: true }
        );
        assert_eq!(
            writer.receive(posted[1].clone()),
            Reaction::Persist { send: true }
        );
        // The writer commits: the op is queued once.
        assert_eq!(writer.commit(staged, places).unwrap(), None, "posted already");
        assert_eq!(writer.session().unwrap().pending().len(), 1);
        assert_eq!(writer.pending_count(), 1);
        assert_eq!(leader.session().unwrap().pending().len(), 1);
        // Without a queue, a tab posts only that it joined.
        let alone = follower(&Storage::default(), "d");
        assert_eq!(alone.joined(), [TabMessage::Joined]);
    }
}
