//! [`ClientSession`]: the client side of a sync connection.
//!
//! It owns the confirmed state of the subscribed kinds (what the server said,
//! with the server's versions and revisions), the queue of pending ops
//! (written locally, not yet answered) and the cursor. It survives
//! disconnects: [`ClientSession::disconnected`] then
//! [`ClientSession::connect`] resumes from the cursor and re-sends every
//! pending op, in order, with its original op id.
//!
//! The confirmed state is a plain ordered map rather than an [`Engine`]:
//! an engine assigns its own versions and requires gap-free revisions,
//! while a client holds the server's versions and sees revision gaps
//! whenever it subscribes to some kinds only.
//!
//! [`Engine`]: crate::Engine

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::Value;

use crate::schema::Schema;
use crate::sync::codec;
use crate::sync::view::{self, Shown, Step};
use crate::sync::{
    Ack, ChangeBatch, ClientMessage, ErrorCode, Hello, Op, OpAction, OpResult, PROTOCOL_VERSION,
    ProtocolError, Push, Rights, ServerError, ServerMessage, Snapshot, SnapshotEntry, SnapshotReason,
};
use crate::{Entry, Event, EventType};

/// The most ops a client puts in one `push`.
const OPS_PER_PUSH: usize = 100;

/// Who the client is and what it syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// The namespace to sync.
    pub namespace: String,
    /// The credential sent in `hello`.
    pub token: String,
    /// A stable id of this client installation.
    pub client_id: String,
    /// The kinds to sync; `None` is every kind.
    pub kinds: Option<Vec<String>>,
    /// The heartbeat period used until `welcome` gives the server's.
    pub heartbeat_ms: u64,
    /// The largest frame accepted from the server.
    pub max_frame_bytes: usize,
    /// Record a [`Step`] for everything that changes the confirmed state or
    /// the queue, for [`ClientSession::take_steps`]: for a client that shows
    /// its view through a store with watchers ([`view::rebase`]). A client
    /// that records steps must take them.
    pub record_steps: bool,
}

impl ClientConfig {
    /// A configuration syncing every kind of `namespace`.
    #[must_use]
    pub fn new(namespace: impl Into<String>, token: impl Into<String>, client_id: impl Into<String>) -> Self {
        ClientConfig {
            namespace: namespace.into(),
            token: token.into(),
            client_id: client_id.into(),
            kinds: None,
            heartbeat_ms: 30_000,
            max_frame_bytes: 16 << 20,
            record_steps: false,
        }
    }
}

/// What a client persists to resume after a restart: give it back to
/// [`ClientSession::restore`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClientState {
    /// The revision the confirmed state is at; `None` before the first sync.
    pub cursor: Option<u64>,
    /// The confirmed entries: `(kind, key, entry)`.
    pub entries: Vec<(String, String, Entry<Value>)>,
    /// The pending ops, in order.
    pub pending: Vec<Op>,
    /// The sequence number of the next op id (never reused).
    pub next_op_seq: u64,
}

/// What happened, for the application to see; drained with
/// [`ClientSession::poll_event`].
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The server welcomed the session.
    Connected {
        /// What the token allows.
        rights: Rights,
    },
    /// A snapshot replaced the confirmed state.
    SnapshotApplied {
        /// Its revision (now the cursor).
        rev: u64,
        /// Why it was sent.
        reason: SnapshotReason,
    },
    /// The connection caught up with the server (after the snapshot or the
    /// first `changes` batch); live changes follow. Once per connection.
    Synced {
        /// The cursor.
        rev: u64,
    },
    /// Confirmed changes were applied.
    Changed {
        /// The changes, in order.
        events: Vec<Event<Value>>,
    },
    /// A pending op was acknowledged and left the queue.
    Acked(Ack),
    /// A pending op was refused and rolled back: it left the queue.
    Rejected {
        /// The refused op.
        op: Op,
        /// Why, as a stable code.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// The server reported an error; when fatal it closes the connection.
    Error(ServerError),
    /// The server ended a welcomed session because its token expired or
    /// was revoked (a fatal `unauthorized` or `forbidden` after `welcome`).
    /// The shell should connect again with a fresh token; if that one is
    /// refused too, the refusal comes as a fatal [`ClientEvent::Error`].
    AccessLost(ServerError),
    /// The server stayed silent for twice the heartbeat period: the shell
    /// should drop the connection and reconnect.
    TimedOut,
    /// The server failed to apply a pending op without recording an
    /// answer (`internal` or `shutting_down`): the op stays queued, and the
    /// session dropped the connection so that the op is sent again on the
    /// next one, in its place among the others. The shell should close the
    /// socket and reconnect with backoff.
    Retry {
        /// The op.
        op_id: String,
        /// Why, as a stable code.
        code: ErrorCode,
        /// The server's message.
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Disconnected,
    /// `hello` queued, waiting for `welcome`.
    Connecting,
    /// Welcomed.
    Connected,
}

/// The client side of sync, sans I/O.
///
/// The shell's loop: [`connect`] when a socket opens, send everything
/// [`poll_transmit`] yields (encode with [`codec::encode_client`]), feed
/// every received frame to [`handle_frame`], call [`disconnected`] when the
/// socket closes, arm a timer at [`poll_timeout`] and call
/// [`handle_timeout`] when it fires; show [`poll_event`]s to the app and
/// persist [`state`] whenever it should survive a reload.
///
/// [`connect`]: ClientSession::connect
/// [`poll_transmit`]: ClientSession::poll_transmit
/// [`handle_frame`]: ClientSession::handle_frame
/// [`disconnected`]: ClientSession::disconnected
/// [`poll_timeout`]: ClientSession::poll_timeout
/// [`handle_timeout`]: ClientSession::handle_timeout
/// [`poll_event`]: ClientSession::poll_event
/// [`state`]: ClientSession::state
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    link: Link,
    /// The current connection caught up.
    synced: bool,
    cursor: Option<u64>,
    confirmed: BTreeMap<(String, String), Entry<Value>>,
    pending: VecDeque<Op>,
    /// How many of the first pending ops were sent on this connection.
    sent: usize,
    next_op_seq: u64,
    snapshot: Vec<SnapshotEntry>,
    schemas: BTreeMap<String, Value>,
    /// `schemas`, compiled.
    compiled: BTreeMap<String, Schema>,
    rights: Option<Rights>,
    heartbeat_ms: u64,
    transmit: VecDeque<ClientMessage>,
    events: VecDeque<ClientEvent>,
    last_rx_ms: u64,
    last_tx_ms: u64,
    next_nonce: u64,
    /// Recorded steps, when the config asks for them.
    steps: Vec<Step>,
    /// The keys whose confirmed entry the server set (a change or an ack)
    /// since [`ClientSession::take_changed`], when recording steps.
    changed: BTreeSet<(String, String)>,
    /// Keys an ack deleted at a revision past the cursor (see `confirm`).
    deleted_ahead: BTreeMap<(String, String), u64>,
}

impl ClientSession {
    /// A client that has never synced.
    #[must_use]
    pub fn new(config: ClientConfig) -> Self {
        Self::restore(config, ClientState::default())
    }

    /// A client resuming from persisted [`ClientState`].
    #[must_use]
    pub fn restore(config: ClientConfig, state: ClientState) -> Self {
        let heartbeat_ms = config.heartbeat_ms;
        ClientSession {
            config,
            link: Link::Disconnected,
            synced: false,
            cursor: state.cursor,
            confirmed: state
                .entries
                .into_iter()
                .map(|(kind, key, e)| ((kind, key), e))
                .collect(),
            pending: state.pending.into(),
            sent: 0,
            next_op_seq: state.next_op_seq,
            snapshot: Vec::new(),
            schemas: BTreeMap::new(),
            compiled: BTreeMap::new(),
            rights: None,
            heartbeat_ms,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            last_rx_ms: 0,
            last_tx_ms: 0,
            next_nonce: 1,
            steps: Vec::new(),
            changed: BTreeSet::new(),
            deleted_ahead: BTreeMap::new(),
        }
    }

    /// Everything to persist to resume later with [`ClientSession::restore`].
    #[must_use]
    pub fn state(&self) -> ClientState {
        ClientState {
            cursor: self.cursor,
            entries: self
                .confirmed
                .iter()
                .map(|((kind, key), e)| (kind.clone(), key.clone(), e.clone()))
                .collect(),
            pending: self.pending.iter().cloned().collect(),
            next_op_seq: self.next_op_seq,
        }
    }

    /// The revision the confirmed state is at; `None` before the first sync.
    #[must_use]
    pub fn cursor(&self) -> Option<u64> {
        self.cursor
    }

    /// The ops not yet answered by the server, in order.
    #[must_use]
    pub fn pending(&self) -> impl ExactSizeIterator<Item = &Op> {
        self.pending.iter()
    }

    /// The JSON Schemas of the last `welcome` (or of
    /// [`ClientSession::set_schemas`]), by kind.
    #[must_use]
    pub fn schemas(&self) -> &BTreeMap<String, Value> {
        &self.schemas
    }

    /// Sets the server's schemas, as a client that persisted them restores
    /// them before it connects (so that it checks writes offline too).
    /// Returns whether they changed. A schema that does not compile checks
    /// nothing (the server enforces its own).
    pub fn set_schemas(&mut self, schemas: BTreeMap<String, Value>) -> bool {
        if self.schemas == schemas {
            return false;
        }
        self.compiled = schemas
            .iter()
            .filter_map(|(kind, s)| Schema::compile(s.clone()).ok().map(|c| (kind.clone(), c)))
            .collect();
        self.schemas = schemas;
        true
    }

    /// Checks a write before it is queued, as the server will: the kind and
    /// key rules of every store ([`crate::MAX_KEY_BYTES`], no NUL, a kind)
    /// and, for a `set`, the kind's schema from the server. A write that
    /// fails here would only be rejected.
    pub fn check(&self, kind: &str, key: &str, value: Option<&Value>) -> crate::Result<()> {
        crate::engine::check_key(kind, key)?;
        if let (Some(value), Some(schema)) = (value, self.compiled.get(kind)) {
            schema.validate(value).map_err(|e| crate::Error::Validation {
                kind: kind.to_owned(),
                key: key.to_owned(),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }

    /// What the token allows, once welcomed.
    #[must_use]
    pub fn rights(&self) -> Option<Rights> {
        self.rights
    }

    /// Whether the server welcomed the current connection.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.link == Link::Connected
    }

    /// Whether the current connection caught up with the server (see
    /// [`ClientEvent::Synced`]).
    #[must_use]
    pub fn is_synced(&self) -> bool {
        self.synced
    }

    /// The confirmed entry of `kind`/`key`: what the server said.
    #[must_use]
    pub fn confirmed(&self, kind: &str, key: &str) -> Option<&Entry<Value>> {
        self.confirmed.get(&(kind.to_owned(), key.to_owned()))
    }

    /// Every confirmed entry, by kind then key.
    pub fn confirmed_entries(&self) -> impl Iterator<Item = (&str, &str, &Entry<Value>)> {
        self.confirmed
            .iter()
            .map(|((kind, key), e)| (kind.as_str(), key.as_str(), e))
    }

    /// The value of `kind`/`key` as the app should show it: confirmed state
    /// with every pending op applied on top, in order (optimistically:
    /// `if_version` is not checked locally).
    #[must_use]
    pub fn get(&self, kind: &str, key: &str) -> Option<Value> {
        self.optimistic(kind, key).map(|(value, _)| value)
    }

    /// The optimistic value of `kind`/`key` with its version (see
    /// [`view::optimistic`]).
    #[must_use]
    pub fn optimistic(&self, kind: &str, key: &str) -> Option<Shown> {
        let ops = self.pending.iter().filter(|op| op.kind == kind && op.key == key);
        view::optimistic(self.confirmed(kind, key), ops)
    }

    /// The steps recorded since the last call (see
    /// [`ClientConfig::record_steps`]), in order.
    pub fn take_steps(&mut self) -> Vec<Step> {
        std::mem::take(&mut self.steps)
    }

    /// Whether steps were recorded since [`ClientSession::take_steps`].
    #[must_use]
    pub fn has_steps(&self) -> bool {
        !self.steps.is_empty()
    }

    /// The keys whose confirmed entry a change or an ack from the server
    /// set since the last call (when recording steps): what a client that
    /// persists its confirmed state writes. Other steps (a reject, a
    /// mirrored op) change nothing there.
    pub fn take_changed(&mut self) -> BTreeSet<(String, String)> {
        std::mem::take(&mut self.changed)
    }

    fn changed(&mut self, slot: &(String, String)) {
        if self.config.record_steps {
            self.changed.insert(slot.clone());
        }
    }

    fn record(&mut self, kind: &str, key: &str, answered: Option<Op>) {
        if self.config.record_steps {
            let confirmed = self.confirmed(kind, key).cloned();
            self.steps.push(Step {
                kind: kind.to_owned(),
                key: key.to_owned(),
                confirmed,
                answered,
            });
        }
    }

    /// Every key of `kind` with its optimistic value (see
    /// [`ClientSession::get`]), sorted by key.
    #[must_use]
    pub fn list(&self, kind: &str) -> Vec<(String, Value)> {
        let mut view: BTreeMap<String, Value> = self
            .confirmed
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, key), e)| (key.clone(), e.value.clone()))
            .collect();
        for op in self.pending.iter().filter(|op| op.kind == kind) {
            match (&op.action, &op.value) {
                (OpAction::Set, Some(v)) => {
                    view.insert(op.key.clone(), v.clone());
                }
                _ => {
                    view.remove(&op.key);
                }
            }
        }
        view.into_iter().collect()
    }

    /// Every kind that holds a key in the optimistic view, sorted.
    #[must_use]
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self
            .confirmed
            .keys()
            .map(|(k, _)| k.clone())
            .chain(self.pending.iter().map(|op| op.kind.clone()))
            .collect();
        kinds.sort();
        kinds.dedup();
        kinds.retain(|k| !self.list(k).is_empty());
        kinds
    }

    // ---- inputs ----

    /// Queues a write and returns its op id. It shows in [`ClientSession::get`]
    /// at once, and is sent when connected.
    pub fn push_op(
        &mut self,
        kind: &str,
        key: &str,
        action: OpAction,
        value: Option<Value>,
        if_version: Option<u64>,
    ) -> String {
        let op_id = self.next_op_id();
        let value = match action {
            OpAction::Set | OpAction::Patch => Some(value.unwrap_or(Value::Null)),
            OpAction::Delete => None,
        };
        self.enqueue(Op {
            op_id: op_id.clone(),
            kind: kind.to_owned(),
            key: key.to_owned(),
            action,
            value,
            if_version,
        });
        op_id
    }

    /// Takes the next op id (never reused), for a shell that persists an op
    /// before queuing it with [`ClientSession::enqueue`].
    pub fn next_op_id(&mut self) -> String {
        let op_id = format!("{}:{}", self.config.client_id, self.next_op_seq);
        self.next_op_seq += 1;
        op_id
    }

    /// Queues an op built by the shell (its id from
    /// [`ClientSession::next_op_id`], or any id unique to this client). It
    /// shows in [`ClientSession::get`] at once, and is sent when connected.
    pub fn enqueue(&mut self, op: Op) {
        self.pending.push_back(op);
    }

    // ---- mirroring ----
    //
    // A client that shares its persisted state with another live client
    // (a second browser tab on the same database, where only one tab holds
    // the connection) keeps its session in step with what that one learned.

    /// Applies a step the client holding the connection recorded (see
    /// [`ClientConfig::record_steps`]): its confirmed entry, and the op it
    /// answered leaves the queue. Records the step in turn, without the op
    /// when this client did not hold it. Returns the op it answered here.
    pub fn mirror(&mut self, step: Step) -> Option<Op> {
        let slot = (step.kind.clone(), step.key.clone());
        match step.confirmed {
            Some(e) => {
                self.confirmed.insert(slot, e);
            }
            None => {
                self.confirmed.remove(&slot);
            }
        }
        let answered = step.answered.and_then(|op| self.take_pending(&op.op_id));
        self.record(&step.kind, &step.key, answered.clone());
        answered
    }

    /// Queues an op another client sharing this state wrote (it persisted
    /// the op; this client may hold the connection that sends it). Unlike
    /// [`ClientSession::enqueue`], it records a step: the view does not show
    /// the op yet.
    pub fn mirror_op(&mut self, op: Op) {
        let (kind, key) = (op.kind.clone(), op.key.clone());
        self.pending.push_back(op);
        self.record(&kind, &key, None);
    }

    /// Sets the cursor to the one the client holding the connection reached.
    pub fn mirror_cursor(&mut self, cursor: Option<u64>) {
        self.cursor = cursor;
    }

    /// Sets the credential the next [`ClientSession::connect`] sends: a
    /// fresh token from the application, fetched before each connection.
    pub fn set_token(&mut self, token: impl Into<String>) {
        self.config.token = token.into();
    }

    /// Call when a socket to the server opened: queues `hello` resuming from
    /// the cursor. Pending ops are sent once welcomed.
    pub fn connect(&mut self, now_ms: u64) {
        self.link = Link::Connecting;
        self.synced = false;
        self.sent = 0;
        self.snapshot.clear();
        self.transmit.clear();
        self.last_rx_ms = now_ms;
        self.last_tx_ms = now_ms;
        self.transmit.push_back(ClientMessage::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            namespace: self.config.namespace.clone(),
            token: self.config.token.clone(),
            client_id: self.config.client_id.clone(),
            since: self.cursor,
            kinds: self.config.kinds.clone(),
        }));
    }

    /// Call when the socket closed (or the shell dropped it). Unsent messages
    /// are dropped; pending ops stay queued for the next connection.
    pub fn disconnected(&mut self) {
        self.link = Link::Disconnected;
        self.synced = false;
        self.sent = 0;
        self.snapshot.clear();
        self.transmit.clear();
    }

    /// Call with every frame received from the server. A frame that does not
    /// decode is returned as an error; the shell should drop the connection.
    pub fn handle_frame(&mut self, bytes: &[u8], now_ms: u64) -> Result<(), ProtocolError> {
        if self.link == Link::Disconnected {
            return Ok(());
        }
        self.last_rx_ms = now_ms;
        let message = codec::decode_server(bytes, self.config.max_frame_bytes)?;
        self.handle_message(message);
        Ok(())
    }

    fn handle_message(&mut self, message: ServerMessage) {
        match message {
            ServerMessage::Welcome(w) => {
                self.link = Link::Connected;
                self.set_schemas(w.schemas);
                self.rights = Some(w.rights);
                self.heartbeat_ms = w.heartbeat_ms;
                self.events.push_back(ClientEvent::Connected { rights: w.rights });
            }
            ServerMessage::Snapshot(s) => self.handle_snapshot(s),
            ServerMessage::Changes(c) => self.handle_changes(c),
            ServerMessage::Ack(ack) => {
                if let Some(op) = self.take_pending(&ack.op_id) {
                    self.confirm(&op, &ack);
                    self.record(&op.kind, &op.key, Some(op.clone()));
                    self.events.push_back(ClientEvent::Acked(ack));
                }
            }
            ServerMessage::Reject(r) if matches!(r.code, ErrorCode::Internal | ErrorCode::ShuttingDown) => {
                // Not applied, and a retry applies it (docs/protocol.md). It
                // must not go after the ops behind it, so the whole queue
                // goes again, in order, on a new connection; the server
                // answers the ops it applied from its record.
                if self.pending.iter().any(|op| op.op_id == r.op_id) {
                    self.disconnected();
                    self.events.push_back(ClientEvent::Retry {
                        op_id: r.op_id,
                        code: r.code,
                        message: r.message,
                    });
                }
            }
            ServerMessage::Reject(r) => {
                if let Some(op) = self.take_pending(&r.op_id) {
                    self.record(&op.kind, &op.key, Some(op.clone()));
                    self.events.push_back(ClientEvent::Rejected {
                        op,
                        code: r.code,
                        message: r.message,
                    });
                }
            }
            ServerMessage::Error(e) => {
                let welcomed = self.link == Link::Connected;
                if e.fatal {
                    self.disconnected();
                }
                let access = matches!(e.code, ErrorCode::Unauthorized | ErrorCode::Forbidden);
                self.events.push_back(if e.fatal && access && welcomed {
                    ClientEvent::AccessLost(e)
                } else {
                    ClientEvent::Error(e)
                });
            }
            ServerMessage::Ping { nonce } => self.transmit.push_back(ClientMessage::Pong { nonce }),
            ServerMessage::Pong { .. } => {}
        }
    }

    fn handle_snapshot(&mut self, s: Snapshot) {
        self.snapshot.extend(s.entries);
        if !s.done {
            return;
        }
        let confirmed: BTreeMap<(String, String), Entry<Value>> = std::mem::take(&mut self.snapshot)
            .into_iter()
            .map(|e| {
                let entry = Entry {
                    value: e.value,
                    version: e.version,
                    rev: e.rev,
                };
                ((e.kind, e.key), entry)
            })
            .collect();
        let old = std::mem::replace(&mut self.confirmed, confirmed);
        if s.reason == SnapshotReason::Reset {
            // The server's history was replaced (restored to an older
            // state): a revision past the snapshot's names another change
            // now, or none, so deletes acknowledged there say nothing.
            self.deleted_ahead.clear();
        } else {
            self.deleted_ahead.retain(|_, rev| *rev > s.rev);
        }
        if self.config.record_steps {
            // A snapshot has no history: one step per entry it changed.
            let mut changed: Vec<&(String, String)> = old
                .iter()
                .filter(|(slot, e)| self.confirmed.get(*slot) != Some(*e))
                .map(|(slot, _)| slot)
                .chain(
                    self.confirmed
                        .iter()
                        .filter(|(slot, e)| old.get(*slot) != Some(*e))
                        .map(|(slot, _)| slot),
                )
                .collect();
            changed.sort();
            changed.dedup();
            let changed: Vec<(String, String)> = changed.into_iter().cloned().collect();
            for (kind, key) in changed {
                self.record(&kind, &key, None);
            }
        }
        self.cursor = Some(s.rev);
        self.events.push_back(ClientEvent::SnapshotApplied {
            rev: s.rev,
            reason: s.reason,
        });
        self.mark_synced();
    }

    fn mark_synced(&mut self) {
        if !self.synced {
            self.synced = true;
            let rev = self.cursor.unwrap_or(0);
            self.events.push_back(ClientEvent::Synced { rev });
        }
    }

    fn handle_changes(&mut self, c: ChangeBatch) {
        let cursor = self.cursor.unwrap_or(0);
        let events: Vec<Event<Value>> = c.events.into_iter().filter(|e| e.rev > cursor).collect();
        for e in &events {
            let slot = (e.kind.clone(), e.key.clone());
            // An ack that arrived before its change already took the key to
            // a later revision (see `confirm`): older changes of the key
            // are history it has passed.
            let ahead = self
                .confirmed
                .get(&slot)
                .map(|c| c.rev)
                .max(self.deleted_ahead.get(&slot).copied());
            if ahead.is_some_and(|rev| rev >= e.rev) {
                continue;
            }
            self.changed(&slot);
            if e.event_type == EventType::Delete {
                self.confirmed.remove(&slot);
            } else {
                self.confirmed.insert(
                    slot,
                    Entry {
                        value: e.value.clone(),
                        version: e.version,
                        rev: e.rev,
                    },
                );
            }
            self.record(&e.kind, &e.key, None);
        }
        if c.rev > cursor || self.cursor.is_none() {
            self.cursor = Some(c.rev.max(cursor));
            let cursor = c.rev.max(cursor);
            self.deleted_ahead.retain(|_, rev| *rev > cursor);
        }
        if !events.is_empty() {
            self.events.push_back(ClientEvent::Changed { events });
        }
        self.mark_synced();
    }

    /// Applies an acknowledged op to the confirmed state when the change
    /// it made has not arrived yet (the server may answer before it relays
    /// the change), so the op does not vanish from the view in between. A
    /// cursor at or past the ack's revision means the change (and anything
    /// after it) is already in the confirmed state.
    fn confirm(&mut self, op: &Op, ack: &Ack) {
        if self.cursor.is_some_and(|c| c >= ack.rev) {
            return;
        }
        let slot = (op.kind.clone(), op.key.clone());
        match ack.result {
            OpResult::Created | OpResult::Updated => {
                // A patch's result is the server's to tell; without it the
                // change brings it.
                let value = match op.action {
                    OpAction::Patch => ack.value.clone(),
                    _ => op.value.clone(),
                };
                let Some(value) = value else { return };
                let entry = Entry {
                    value,
                    version: ack.version,
                    rev: ack.rev,
                };
                self.changed(&slot);
                self.confirmed.insert(slot, entry);
            }
            OpResult::Deleted => {
                self.changed(&slot);
                self.confirmed.remove(&slot);
                self.deleted_ahead.insert(slot, ack.rev);
            }
            OpResult::Unchanged | OpResult::Absent => {}
        }
    }

    fn take_pending(&mut self, op_id: &str) -> Option<Op> {
        let i = self.pending.iter().position(|op| op.op_id == op_id)?;
        if i < self.sent {
            self.sent -= 1;
        }
        self.pending.remove(i)
    }

    /// Call when the timer armed at [`ClientSession::poll_timeout`] fires:
    /// pings a quiet connection, and reports [`ClientEvent::TimedOut`] (and
    /// disconnects) after twice the heartbeat period without a frame.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.link == Link::Disconnected {
            return;
        }
        let hb = self.heartbeat_ms;
        if now_ms >= self.last_rx_ms.saturating_add(2 * hb) {
            self.disconnected();
            self.events.push_back(ClientEvent::TimedOut);
        } else if now_ms >= self.last_tx_ms.saturating_add(hb) {
            self.last_tx_ms = now_ms;
            let nonce = self.next_nonce;
            self.next_nonce += 1;
            self.transmit.push_back(ClientMessage::Ping { nonce });
        }
    }

    // ---- outputs ----

    /// Call after every input and every [`ClientSession::push_op`]: the next
    /// message to send, pending ops batched into `push` messages once
    /// welcomed.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<ClientMessage> {
        if let Some(message) = self.transmit.pop_front() {
            return Some(message);
        }
        if self.link != Link::Connected || self.sent >= self.pending.len() {
            return None;
        }
        let end = (self.sent + OPS_PER_PUSH).min(self.pending.len());
        let ops: Vec<Op> = self.pending.range(self.sent..end).cloned().collect();
        self.sent = end;
        Some(ClientMessage::Push(Push { ops }))
    }

    /// Like [`ClientSession::poll_transmit`], encoded as a text frame; `now_ms`
    /// tells the heartbeat that the client spoke.
    #[must_use]
    pub fn poll_transmit_frame(&mut self, now_ms: u64) -> Option<String> {
        let message = self.poll_transmit()?;
        self.last_tx_ms = now_ms;
        Some(codec::encode_client(&message))
    }

    /// Call after every input: the next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// Call after every input: when to call [`ClientSession::handle_timeout`]
    /// next; `None` while disconnected.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<u64> {
        if self.link == Link::Disconnected {
            return None;
        }
        let hb = self.heartbeat_ms;
        Some(
            self.last_tx_ms
                .saturating_add(hb)
                .min(self.last_rx_ms.saturating_add(2 * hb)),
        )
    }
}
