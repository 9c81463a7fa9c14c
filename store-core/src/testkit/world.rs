//! A simulated sync server and a world of clients around it: the
//! deterministic, in-memory harness of the sync tests, in the manner of
//! quinn's `Pair`.
//!
//! Two layers:
//!
//! - [`SimServer`] is the server half, and speaks text frames only. It owns
//!   one [`MemStore`] (the namespace [`NAMESPACE`]), a fixed token table
//!   (`"rw"` reads and writes, `"ro"` reads) and a [`ServerSession`] per
//!   connection, whose effects it serves from the store: ops applied
//!   idempotently by `(client_id, op_id)`, live changes read from a watch of
//!   every kind. A shell feeds it the frames a client sent on a connection
//!   and sends the frames it yields, over in-memory queues ([`World`]) or a
//!   real socket.
//! - [`World`] wires [`ClientSession`]s to a [`SimServer`] through queues a
//!   test can hold, drop or duplicate, with virtual time.
//!
//! What the protocol guarantees and these harnesses rely on: a WebSocket
//! delivers one connection's frames in order and once. Duplicated and
//! reordered deliveries come from reconnects (frames of an old connection
//! handled after the new connection's), and op ids make them harmless.
//!
//! Nothing here reads a clock or opens a socket: time is passed in.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use futures_util::{FutureExt, StreamExt};
use serde_json::Value;

use crate::sync::codec;
use crate::sync::session::{
    Authorized, ClientConfig, ClientEvent, ClientSession, ClientState, Denied, ServerConfig, ServerEffect,
    ServerSession, SyncStart,
};
use crate::sync::{
    Ack, CloseCode, ErrorCode, Op, OpAction, Reject, Rights, ServerMessage, SnapshotEntry, SnapshotReason,
};
use crate::{Engine, Event, MemStore, SetOptions, StoreOptions, Watch, WatchOptions};

/// The namespace a [`SimServer`] serves; any other is `forbidden`.
pub const NAMESPACE: &str = "ns";

/// The largest frame the harness decodes.
const MAX_FRAME_BYTES: usize = 1 << 24;

/// A connection to a [`SimServer`], as [`SimServer::connect`] opened it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(u64);

/// One connection: its session and, once synced, its live feed.
struct Conn {
    session: ServerSession,
    watch: Option<Watch<Value>>,
}

/// The server half of a sync simulation, sans I/O: text frames in, text
/// frames out, per connection.
///
/// The shell's loop, per connection: [`connect`](SimServer::connect) when a
/// socket opens; [`receive`](SimServer::receive) every text frame the client
/// sends; after every input (and after anything is written to
/// [`store`](SimServer::store)), send every frame
/// [`poll_transmit`](SimServer::poll_transmit) yields, then close the socket
/// with [`poll_close`](SimServer::poll_close)'s code once it returns one
/// (the connection is then over); arm a timer at
/// [`poll_timeout`](SimServer::poll_timeout) and call
/// [`handle_timeout`](SimServer::handle_timeout) when it fires; and
/// [`disconnect`](SimServer::disconnect) when the socket breaks.
///
/// Every effect is served at once, inside `receive`: a push is applied,
/// its changes published to every connection, then answered.
///
/// ```
/// use store_core::StoreOptions;
/// use store_core::sync::session::ServerConfig;
/// use store_core::testkit::world::SimServer;
///
/// let mut server = SimServer::new(StoreOptions::new(), ServerConfig::default());
/// let conn = server.connect(0);
/// let hello = r#"{"type":"hello","protocol":1,"namespace":"ns","token":"rw","client_id":"c1"}"#;
/// server.receive(conn, hello, 0);
/// let frames: Vec<String> = std::iter::from_fn(|| server.poll_transmit(conn)).collect();
/// assert!(frames[0].contains(r#""type":"welcome""#), "{frames:?}");
/// assert!(frames[1].contains(r#""type":"snapshot""#), "{frames:?}");
/// assert_eq!(server.poll_close(conn), None);
/// ```
pub struct SimServer {
    store: MemStore<Value>,
    config: ServerConfig,
    schemas: BTreeMap<String, Value>,
    /// The answer given to each op, by `(client_id, op_id)`.
    answers: HashMap<(String, String), Result<Ack, Reject>>,
    /// How many times each op was really applied, by `(client_id, op_id)`.
    applied: HashMap<(String, String), usize>,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    /// How many of the next pushes fail as a storage failure would.
    failing_pushes: usize,
}

impl SimServer {
    /// A server over a new, empty [`MemStore`] opened with `options` (its
    /// retention decides when a resuming client gets a `compacted`
    /// snapshot), whose sessions behave as `config` says.
    #[must_use]
    pub fn new(options: StoreOptions<Value>, config: ServerConfig) -> Self {
        SimServer {
            store: MemStore::new(options),
            config,
            schemas: BTreeMap::new(),
            answers: HashMap::new(),
            applied: HashMap::new(),
            conns: BTreeMap::new(),
            next_conn: 0,
            failing_pushes: 0,
        }
    }

    /// The same server, sending these JSON Schemas by kind in `welcome`. They
    /// are only announced: the store checks what its options say.
    #[must_use]
    pub fn with_schemas(mut self, schemas: BTreeMap<String, Value>) -> Self {
        self.schemas = schemas;
        self
    }

    /// The namespace's store. Writes made here are relayed to the clients
    /// like any other commit.
    #[must_use]
    pub fn store(&self) -> &MemStore<Value> {
        &self.store
    }

    /// The answer to an `Authenticate` effect: token `"rw"` reads and
    /// writes, `"ro"` reads, any other is `unauthorized`; a namespace other
    /// than [`NAMESPACE`] is `forbidden`. Either token may end in `@MS`: it
    /// expires at that virtual time.
    pub fn authenticate(&self, namespace: &str, token: &str) -> Result<Authorized, Denied> {
        let (token, expires_at_ms) = match token.split_once('@') {
            Some((token, at)) => {
                let at = at.parse().map_err(|_| Denied::unauthorized("malformed expiry"))?;
                (token, Some(at))
            }
            None => (token, None),
        };
        let rights = match token {
            "rw" => Rights::ReadWrite,
            "ro" => Rights::Read,
            _ => return Err(Denied::unauthorized("unknown token")),
        };
        if namespace != NAMESPACE {
            return Err(Denied::forbidden("not this namespace"));
        }
        Ok(Authorized {
            rights,
            schemas: self.schemas.clone(),
            expires_at_ms,
        })
    }

    /// Call when a socket opens at `now_ms`: a new connection, waiting for
    /// the client's `hello`.
    pub fn connect(&mut self, now_ms: u64) -> ConnId {
        let id = ConnId(self.next_conn);
        self.next_conn += 1;
        let conn = Conn {
            session: ServerSession::new(self.config, now_ms),
            watch: None,
        };
        self.conns.insert(id, conn);
        id
    }

    /// Whether `conn` is open: connected, and neither closed by the server
    /// nor disconnected.
    #[must_use]
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.conns.contains_key(&conn)
    }

    /// Call with every text frame the client sent on `conn`, and the time.
    /// What it asks for is served at once. Frames on a connection that is
    /// over are ignored.
    pub fn receive(&mut self, conn: ConnId, frame: &str, now_ms: u64) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.session.handle_frame(frame.as_bytes(), now_ms);
        self.serve(conn);
    }

    /// Call when the timer armed at [`SimServer::poll_timeout`] fires.
    pub fn handle_timeout(&mut self, conn: ConnId, now_ms: u64) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session.handle_timeout(now_ms);
        }
    }

    /// Ends `conn`'s access before its token's expiry, as a server does
    /// when it reloads its tokens.
    pub fn revoke(&mut self, conn: ConnId, denied: Denied) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.session.handle_revoked(denied);
        }
    }

    /// Call when `conn`'s socket broke or was dropped: the connection is
    /// forgotten, with what it had still to send.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.conns.remove(&conn);
    }

    /// Call after every input: the next text frame to send on `conn`. The
    /// store's commits not yet relayed are fed to every connection first.
    #[must_use]
    pub fn poll_transmit(&mut self, conn: ConnId) -> Option<String> {
        self.publish();
        let message = self.conns.get_mut(&conn)?.session.poll_transmit()?;
        Some(codec::encode_server(&message))
    }

    /// Call after draining [`SimServer::poll_transmit`]: the code to close
    /// `conn`'s socket with, once; the connection is then over.
    #[must_use]
    pub fn poll_close(&mut self, conn: ConnId) -> Option<CloseCode> {
        let code = self.conns.get_mut(&conn)?.session.poll_close()?;
        self.conns.remove(&conn);
        Some(code)
    }

    /// When to call [`SimServer::handle_timeout`] for `conn` next, in the
    /// shell's milliseconds; `None` once it is over.
    #[must_use]
    pub fn poll_timeout(&self, conn: ConnId) -> Option<u64> {
        self.conns.get(&conn)?.session.poll_timeout()
    }

    /// How many times ops with id `op_id` were really applied (not answered
    /// again from the record), over every client: 1 for an applied op, 0 for
    /// one never applied or refused.
    #[must_use]
    pub fn applied_count(&self, op_id: &str) -> usize {
        self.applied
            .iter()
            .filter(|((_, id), _)| id == op_id)
            .map(|(_, n)| n)
            .sum()
    }

    /// Every op applied, as `(client_id, op_id, times applied)`, in no
    /// particular order.
    pub fn applied_ops(&self) -> impl Iterator<Item = (&str, &str, usize)> {
        self.applied
            .iter()
            .map(|((client, op), n)| (client.as_str(), op.as_str(), *n))
    }

    /// Every key of `kind` in the store with its value, sorted by key.
    #[must_use]
    pub fn state(&self, kind: &str) -> Vec<(String, Value)> {
        self.store
            .list(kind, &[])
            .expect("the simulated server's store is open")
            .into_iter()
            .map(|(k, e)| (k, e.value))
            .collect()
    }

    /// Serves `conn`'s effects until it asks for nothing more.
    fn serve(&mut self, conn: ConnId) {
        loop {
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            let Some(effect) = c.session.poll_effect() else {
                return;
            };
            match effect {
                ServerEffect::Authenticate { namespace, token, .. } => {
                    let answer = self.authenticate(&namespace, &token);
                    self.session(conn).handle_auth(answer);
                }
                ServerEffect::StartSync { since, .. } => {
                    let (start, watch) = self.start_sync(since);
                    let c = self.conns.get_mut(&conn).expect("the connection is open");
                    c.watch = Some(watch);
                    c.session.handle_sync_start(start);
                }
                ServerEffect::Apply { client_id, ops } => {
                    let results = self.apply(&client_id, ops);
                    // Published before answered, as the protocol requires.
                    self.publish();
                    self.session(conn).handle_applied(results);
                }
            }
        }
    }

    fn session(&mut self, conn: ConnId) -> &mut ServerSession {
        &mut self.conns.get_mut(&conn).expect("the connection is open").session
    }

    /// Answers `StartSync` atomically with subscribing the connection: the
    /// changes after `since`, or a snapshot of every kind (the session keeps
    /// the kinds the client subscribed to).
    fn start_sync(&self, since: Option<u64>) -> (SyncStart, Watch<Value>) {
        self.store.write_engine(|engine| {
            let rev = engine.rev();
            let reason = match since {
                None => Some(SnapshotReason::Initial),
                Some(s) if s > rev => Some(SnapshotReason::Reset),
                Some(s) if s < engine.oldest_resumable() => Some(SnapshotReason::Compacted),
                Some(_) => None,
            };
            if let Some(reason) = reason {
                snapshot(engine, reason)
            } else {
                let mut watch = engine
                    .watch_all(WatchOptions::new().from_rev(since.unwrap_or(0)))
                    .expect("the cursor is within the retained history");
                let events = drain(&mut watch).into_iter().map(Arc::unwrap_or_clone).collect();
                (SyncStart::Changes { events, rev }, watch)
            }
        })
    }

    /// Makes the next `n` pushes fail as a durable server's storage failure
    /// does: nothing of the push is applied, every op is answered
    /// `internal` (which the server does not record, so a retry applies it).
    pub fn fail_next_pushes(&mut self, n: usize) {
        self.failing_pushes += n;
    }

    /// The connection's feed falls behind, as a durable server's does when
    /// its watch overflows: the session is fed a `lagged` snapshot of the
    /// current state and its feed goes on from there. Nothing happens to a
    /// connection not yet syncing.
    pub fn lag(&mut self, conn: ConnId) {
        if self.conns.get(&conn).is_none_or(|c| c.watch.is_none()) {
            return;
        }
        let (start, watch) = self
            .store
            .write_engine(|engine| snapshot(engine, SnapshotReason::Lagged));
        let c = self.conns.get_mut(&conn).expect("the connection is open");
        c.watch = Some(watch);
        c.session.handle_sync_start(start);
    }

    /// Applies ops in order; an op applied before gets its original answer.
    fn apply(&mut self, client_id: &str, ops: Vec<Op>) -> Vec<Result<Ack, Reject>> {
        if self.failing_pushes > 0 {
            self.failing_pushes -= 1;
            return ops
                .into_iter()
                .map(|op| {
                    Err(Reject {
                        op_id: op.op_id,
                        code: ErrorCode::Internal,
                        message: "storage failed (simulated)".into(),
                    })
                })
                .collect();
        }
        ops.into_iter()
            .map(|op| {
                let slot = (client_id.to_owned(), op.op_id.clone());
                if let Some(answer) = self.answers.get(&slot) {
                    return answer.clone();
                }
                let opts = SetOptions {
                    if_version: op.if_version,
                };
                let answer = match op.action {
                    OpAction::Set => {
                        let value = op
                            .value
                            .clone()
                            .expect("the codec lets no set through without a value");
                        self.store
                            .set(&op.kind, &op.key, value, opts)
                            .map(|w| Ack::written(&op.op_id, w))
                    }
                    OpAction::Patch => {
                        let patch = op
                            .value
                            .as_ref()
                            .expect("the codec lets no patch through without a value");
                        self.store.patch(&op.kind, &op.key, patch, opts).map(|w| Ack {
                            value: w
                                .changed()
                                .then(|| self.store.get(&op.kind, &op.key).ok().flatten().map(|e| e.value))
                                .flatten(),
                            ..Ack::written(&op.op_id, w)
                        })
                    }
                    OpAction::Delete => self
                        .store
                        .delete(&op.kind, &op.key, opts)
                        .and_then(|d| Ok(Ack::deleted(&op.op_id, d.as_ref(), self.store.rev()?))),
                }
                .map_err(|e| Reject::of(op.op_id.clone(), &e));
                if answer.is_ok() {
                    *self.applied.entry(slot.clone()).or_default() += 1;
                }
                self.answers.insert(slot, answer.clone());
                answer
            })
            .collect()
    }

    /// Feeds the commits not yet relayed to every connection's session.
    fn publish(&mut self) {
        let rev = self.store.rev().expect("the store is open");
        for c in self.conns.values_mut() {
            let Some(watch) = &mut c.watch else {
                continue;
            };
            let events = drain(watch);
            if !events.is_empty() {
                c.session.handle_events(events, rev);
            }
        }
    }
}

/// A snapshot of every kind, and a feed from its revision on.
fn snapshot(engine: &mut Engine<Value>, reason: SnapshotReason) -> (SyncStart, Watch<Value>) {
    let rev = engine.rev();
    let mut entries = Vec::new();
    for kind in engine.kinds().expect("the store is open") {
        for (key, e) in engine.list(kind, &[]).expect("the store is open") {
            entries.push(SnapshotEntry {
                kind: kind.to_owned(),
                key: key.to_owned(),
                value: e.value.clone(),
                version: e.version,
                rev: e.rev,
            });
        }
    }
    let watch = engine.watch_all(WatchOptions::new()).expect("the store is open");
    (SyncStart::Snapshot { rev, reason, entries }, watch)
}

/// Every event ready on `watch`, in revision order.
fn drain(watch: &mut Watch<Value>) -> Vec<Arc<Event<Value>>> {
    let mut events = Vec::new();
    while let Some(Some(item)) = watch.next().now_or_never() {
        events.push(item.expect("a simulated server's feed is drained before it overflows"));
    }
    events
}

/// One connection as the network between a client and the server holds it.
#[derive(Debug)]
pub struct Link {
    conn: ConnId,
    client: usize,
    /// Frames the client sent that the server has not handled, oldest first.
    pub to_server: VecDeque<String>,
    /// Frames the server sent that the client has not handled.
    to_client: VecDeque<(String, ServerMessage)>,
    active: bool,
    /// While set, the frames to the server wait (the network stalls).
    pub hold: bool,
    /// The server closed the connection; its last frames still go to the
    /// client.
    closing: bool,
}

impl Link {
    /// The server's connection.
    #[must_use]
    pub fn conn(&self) -> ConnId {
        self.conn
    }

    /// The client's index in [`World::clients`].
    #[must_use]
    pub fn client(&self) -> usize {
        self.client
    }

    /// Whether the client still listens on it: false once abandoned
    /// ([`World::abandon_connection`]), while the server may still be
    /// handling its frames.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.active
    }
}

/// [`ClientSession`]s and a [`SimServer`] wired back to back, with no
/// sockets and virtual time.
///
/// Frames travel encoded, through a [`Link`] per connection that a test can
/// hold, drop or duplicate; [`World::pump`] moves them and serves the
/// server until nothing moves. Clients are numbered in the order they were
/// added, and every per-client field is indexed by that number.
///
/// ```
/// use serde_json::json;
/// use store_core::StoreOptions;
/// use store_core::sync::session::ServerConfig;
/// use store_core::testkit::world::{SimServer, World};
///
/// let mut w = World::new(SimServer::new(StoreOptions::new(), ServerConfig::default()));
/// let a = w.add_client("a", "rw");
/// let b = w.add_client("b", "rw");
/// w.connect(a);
/// w.connect(b);
/// w.set(a, "task", "t1", json!({"title": "ship"}));
/// w.pump();
/// assert_eq!(w.clients[b].get("task", "t1"), Some(json!({"title": "ship"})));
/// w.assert_converged();
/// ```
pub struct World {
    /// The server.
    pub server: SimServer,
    /// The clients.
    pub clients: Vec<ClientSession>,
    /// Drop the server's `ack` frames to each client (counted in
    /// [`World::dropped_acks`]).
    pub drop_acks: Vec<bool>,
    /// Every message delivered to each client, for assertions.
    pub delivered: Vec<Vec<ServerMessage>>,
    /// Every event of each client.
    pub events: Vec<Vec<ClientEvent>>,
    /// The close codes of the server's sessions, with their client, in order.
    pub closes: Vec<(usize, CloseCode)>,
    /// How many `ack` frames were dropped.
    pub dropped_acks: usize,
    /// The virtual time, in milliseconds, that every input is given.
    pub now: u64,
    links: Vec<Link>,
}

impl World {
    /// A world around `server`, with no clients yet.
    #[must_use]
    pub fn new(server: SimServer) -> Self {
        World {
            server,
            clients: Vec::new(),
            drop_acks: Vec::new(),
            delivered: Vec::new(),
            events: Vec::new(),
            closes: Vec::new(),
            dropped_acks: 0,
            now: 0,
            links: Vec::new(),
        }
    }

    /// The server's store.
    #[must_use]
    pub fn store(&self) -> &MemStore<Value> {
        self.server.store()
    }

    /// Adds a client restored from `state`; returns its number.
    pub fn add_client_with(&mut self, config: ClientConfig, state: ClientState) -> usize {
        self.clients.push(ClientSession::restore(config, state));
        self.drop_acks.push(false);
        self.delivered.push(Vec::new());
        self.events.push(Vec::new());
        self.clients.len() - 1
    }

    /// Adds a new client of [`NAMESPACE`] with this id and token; returns
    /// its number.
    pub fn add_client(&mut self, client_id: &str, token: &str) -> usize {
        self.add_client_with(
            ClientConfig::new(NAMESPACE, token, client_id),
            ClientState::default(),
        )
    }

    /// Opens a new connection for `client`; the old one, if any, is dropped.
    pub fn connect(&mut self, client: usize) {
        self.drop_connection(client);
        self.clients[client].connect(self.now);
        let conn = self.server.connect(self.now);
        self.links.push(Link {
            conn,
            client,
            to_server: VecDeque::new(),
            to_client: VecDeque::new(),
            active: true,
            hold: false,
            closing: false,
        });
    }

    /// The socket breaks: every frame in flight is lost.
    pub fn drop_connection(&mut self, client: usize) {
        let Some(i) = self.links.iter().position(|l| l.client == client && l.active) else {
            return;
        };
        let link = self.links.remove(i);
        self.server.disconnect(link.conn);
        self.clients[client].disconnected();
    }

    /// The client gives up on its connection while the server still holds
    /// (and will later handle) the frames it received: a reconnect race.
    pub fn abandon_connection(&mut self, client: usize) {
        if let Some(link) = self.link(client) {
            link.active = false;
            link.to_client.clear();
            self.clients[client].disconnected();
        }
    }

    /// Whether `client` has a connection it listens on.
    #[must_use]
    pub fn is_connected(&self, client: usize) -> bool {
        self.links.iter().any(|l| l.client == client && l.active)
    }

    /// The connection `client` listens on, if any.
    pub fn link(&mut self, client: usize) -> Option<&mut Link> {
        self.links.iter_mut().find(|l| l.client == client && l.active)
    }

    /// Every connection still open, abandoned ones included.
    pub fn links(&self) -> impl Iterator<Item = &Link> {
        self.links.iter()
    }

    /// Lets the frames of every held connection go.
    pub fn release_all(&mut self) {
        for link in &mut self.links {
            link.hold = false;
        }
    }

    /// Fires the server's timer of every connection at [`World::now`] (the
    /// clients' timers are left alone).
    pub fn fire_server_timers(&mut self) {
        for link in &self.links {
            self.server.handle_timeout(link.conn, self.now);
        }
    }

    /// Moves frames and serves the server until nothing moves.
    pub fn pump(&mut self) {
        loop {
            let mut moved = false;
            for (i, client) in self.clients.iter_mut().enumerate() {
                let Some(link) = self.links.iter_mut().find(|l| l.client == i && l.active) else {
                    continue;
                };
                while let Some(frame) = client.poll_transmit_frame(self.now) {
                    link.to_server.push_back(frame);
                    moved = true;
                }
            }
            for link in &mut self.links {
                while !link.hold
                    && !link.closing
                    && let Some(frame) = link.to_server.pop_front()
                {
                    moved = true;
                    self.server.receive(link.conn, &frame, self.now);
                }
            }
            for link in &mut self.links {
                while let Some(frame) = self.server.poll_transmit(link.conn) {
                    if !link.active {
                        continue;
                    }
                    let message = codec::decode_server(frame.as_bytes(), MAX_FRAME_BYTES)
                        .expect("the server's frames decode");
                    if self.drop_acks[link.client] && matches!(message, ServerMessage::Ack(_)) {
                        self.dropped_acks += 1;
                        continue;
                    }
                    link.to_client.push_back((frame, message));
                }
                if let Some(code) = self.server.poll_close(link.conn) {
                    link.closing = true;
                    self.closes.push((link.client, code));
                    moved = true;
                }
            }
            for link in self.links.iter_mut().filter(|l| l.active) {
                let client = &mut self.clients[link.client];
                while let Some((frame, message)) = link.to_client.pop_front() {
                    moved = true;
                    self.delivered[link.client].push(message);
                    client
                        .handle_frame(frame.as_bytes(), self.now)
                        .expect("the client takes the server's frames");
                }
                while let Some(e) = client.poll_event() {
                    self.events[link.client].push(e);
                }
            }
            for link in self.links.iter().filter(|l| l.closing && l.active) {
                self.clients[link.client].disconnected();
            }
            let before = self.links.len();
            let server = &mut self.server;
            self.links.retain(|l| {
                let keep = !l.closing && (l.active || !l.to_server.is_empty());
                if !keep {
                    server.disconnect(l.conn);
                }
                keep
            });
            moved |= self.links.len() != before;
            if !moved {
                return;
            }
        }
    }

    /// Moves `client`'s frames to its connection without delivering them.
    pub fn pump_client_only(&mut self, client: usize) {
        let now = self.now;
        let mut frames = Vec::new();
        while let Some(f) = self.clients[client].poll_transmit_frame(now) {
            frames.push(f);
        }
        self.link(client)
            .expect("the client is connected")
            .to_server
            .extend(frames);
    }

    /// `client` sets `kind`/`key` to `value`; returns the op id.
    pub fn set(&mut self, client: usize, kind: &str, key: &str, value: Value) -> String {
        self.clients[client].push_op(kind, key, OpAction::Set, Some(value), None)
    }

    /// `client` deletes `kind`/`key`; returns the op id.
    pub fn delete(&mut self, client: usize, kind: &str, key: &str) -> String {
        self.clients[client].push_op(kind, key, OpAction::Delete, None, None)
    }

    /// Asserts that every client has nothing pending and shows what the
    /// server holds, every kind of either, each key at the server's version
    /// and revision. Every client must be subscribed to every kind.
    pub fn assert_converged(&self) {
        let mut kinds: BTreeSet<String> = self.store().read_engine(|e| {
            let kinds = e.kinds().expect("the store is open");
            kinds.into_iter().map(str::to_owned).collect()
        });
        for (i, c) in self.clients.iter().enumerate() {
            assert_eq!(c.pending().len(), 0, "client {i} still has pending ops");
            kinds.extend(c.kinds());
        }
        for kind in &kinds {
            let server = self.server.state(kind);
            for (i, c) in self.clients.iter().enumerate() {
                assert_eq!(c.list(kind), server, "client {i}, kind {kind}");
                for (key, _) in &server {
                    let confirmed = c.confirmed(kind, key).expect("a confirmed entry");
                    let stored = self.store().get(kind, key).unwrap().expect("a stored entry");
                    assert_eq!(
                        (confirmed.version, confirmed.rev),
                        (stored.version, stored.rev),
                        "client {i}, {kind}/{key}"
                    );
                }
            }
        }
    }

    /// The snapshot parts delivered to `client`: `(reason, entries, done)`.
    #[must_use]
    pub fn snapshots(&self, client: usize) -> Vec<(SnapshotReason, usize, bool)> {
        self.delivered[client]
            .iter()
            .filter_map(|m| match m {
                ServerMessage::Snapshot(s) => Some((s.reason, s.entries.len(), s.done)),
                _ => None,
            })
            .collect()
    }
}
