//! The whole client side of sync, simulated: devices with several tabs,
//! each tab a shell around one [`Replica`] as the browser package drives
//! it, against one [`SimServer`], deterministically from a seed.
//!
//! # What it models
//!
//! - **The server**: a [`SimServer`] (the real `ServerSession` over a
//!   `MemStore`) with three kinds, `task` under a JSON Schema that the store
//!   enforces and `welcome` announces, tokens `rw` and `ro` (a read-only
//!   device gets `forbidden` rejects), small history retention on some seeds
//!   (a resuming client gets a `compacted` snapshot), snapshots in parts of
//!   one to four entries, a heartbeat of one second, feeds that fall behind
//!   (a `lagged` snapshot while live) and pushes its storage fails
//!   (`internal` rejects: the client keeps the ops and sends them again on
//!   a new connection). On some devices tokens expire: each connection
//!   gets a fresh token, which the server's session ends at its expiry
//!   (the client reconnects, as after a revocation).
//! - **Devices** (two or three): one storage, an in-memory IndexedDB that
//!   runs its requests in the order they were issued (each write applies a
//!   [`Plan`] atomically and gives queued ops increasing places; a read sees
//!   every earlier write), one `BroadcastChannel` (a post reaches every
//!   other tab on the channel, in order per sender, as JSON) and one Web
//!   Lock (the tab holding it leads; when it unloads, the lock goes to the
//!   longest waiting tab).
//! - **Tabs** (up to three live per device): each is the browser shell's
//!   sequence of steps, with every await a separate event so that anything
//!   may happen in between. Opening joins the channel (messages buffer from
//!   then), reads the storage, opens the replica, follows, takes the
//!   buffered messages, posts [`Replica::joined`] and asks for the lock. One
//!   writer per tab runs its jobs in order: writes (stage, persist, commit,
//!   post), sync passes (plan, persist, apply, post) and reloads (begin the
//!   read, read, reload, pass). A tab granted the lock (at once or later)
//!   reloads before it leads. The leader moves frames between its session
//!   and the server, drains the session's
//!   events, runs a pass when the replica has news and reconnects as
//!   [`reconnect::after_event`] and [`Backoff`] say, in virtual time.
//! - **Faults**, chosen by the seed: sockets that break (frames in flight
//!   lost), frames a closed socket had already sent still reaching the
//!   server, frames delivered late and in bursts, stalled links (heartbeat
//!   timeouts), server restarts with downtime, storage writes that fail,
//!   page unloads at any point (between a write's persist and its commit,
//!   between a read and its reload; the unloading tab's unfinished storage
//!   writes land or not), new tabs, other clients writing on the server,
//!   and app writes of every kind (`set`, `patch` and `delete`, each with
//!   and without `if_version`, `set_many`, `set_fn`) over four keys per
//!   kind, so that devices collide, conflict, break the schema and write
//!   with a read-only token.
//!
//! What it does not model: `shutting_down` rejects, `slow_consumer`
//! closes, failed storage reads, and the browser's `online`/`offline`
//! events.
//!
//! # What it checks
//!
//! After every event: each tab's watch (subscribed when it opened) yields
//! revisions one after another with no gap, each event fits what the tab
//! showed before (a create of an absent key, an update or delete of a shown
//! one), and the events replayed over what the tab showed at open are
//! exactly its engine's entries; each op is answered at most once to each
//! tab, as the server answered it; a device has at most one leader.
//!
//! At the end, after a quiet phase (no faults, a new tab on every device,
//! which posts the queue it reads, everything delivered, every leader
//! synced): every live tab's engine holds
//! the server's entries (values and versions) and has nothing pending; every
//! storage holds the server's entries (with their revisions) and cursor and
//! an empty queue; the server applied every op at most once, and every op
//! that reached a storage was answered (applied once, or rejected); every
//! live tab heard the answer to every op it wrote.
//!
//! # Running it
//!
//! - `ZESTOR_SIM_SEEDS=n`: how many seeds (default 500).
//! - `ZESTOR_SIM_SEED=n`: only seed `n`, e.g.
//!   `ZESTOR_SIM_SEED=17 cargo test -p store-core --features testkit --test sync_replicas`.
//! - `ZESTOR_SIM_TRACE=1`: print every event of the seeds run.
//! - `ZESTOR_SIM_KEEP_GOING=1`: run every seed and list the failing ones.
//!
//! A failing seed panics with the seed, the invariant, the last events and
//! the command that replays it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use futures_util::{FutureExt, StreamExt};
use serde_json::{Value, json};
use store_core::schema::Schema;
use store_core::sync::reconnect::{self, Backoff, Next};
use store_core::sync::replica::{
    Answer, Answered, LocalOp, Outcome, Persisted, Plan, Reaction, Replica, Staged, SyncPass, TabMessage,
};
use store_core::sync::session::{ClientConfig, ClientEvent, ServerConfig};
use store_core::sync::{ErrorCode, Op, ServerMessage, SnapshotReason, codec};
use store_core::testkit::sync::Rng;
use store_core::testkit::world::{ConnId, NAMESPACE, SimServer};
use store_core::{Entry, EventType, SetOptions, StoreOptions, Watch, WatchOptions};

const KINDS: [&str; 3] = ["task", "note", "tag"];
const KEYS: [&str; 4] = ["a", "b", "c", "d"];
const HEARTBEAT_MS: u64 = 1_000;
const MAX_TABS: usize = 3;
const REPLAY: &str = "cargo test -p store-core --features testkit --test sync_replicas";
/// Events kept for a failure's message.
const RECENT: usize = 40;

type TabId = usize;
type DevId = usize;
/// `(kind, key)`.
type Slot = (String, String);

/// The schema of `task`, on the server's store and in `welcome`.
fn task_schema() -> Value {
    json!({
        "type": "object",
        "required": ["title"],
        "properties": {"title": {"type": "string"}, "n": {"type": "integer"}}
    })
}

/// A broken invariant.
struct Failure {
    invariant: &'static str,
    detail: String,
}

type Check<T = ()> = Result<T, Failure>;

fn broken<T>(invariant: &'static str, detail: impl Into<String>) -> Check<T> {
    Err(Failure {
        invariant,
        detail: detail.into(),
    })
}

/// Notes an event for the trace, formatted only when the run records.
macro_rules! note {
    ($sim:expr, $($arg:tt)+) => {
        if $sim.record {
            let line = format!($($arg)+);
            $sim.push_note(line);
        }
    };
}

macro_rules! ensure {
    ($cond:expr, $invariant:expr, $($arg:tt)+) => {
        if !$cond {
            return broken($invariant, format!($($arg)+));
        }
    };
}

// ---- the storage: IndexedDB in memory ----

/// One device's database.
#[derive(Default)]
struct Storage {
    entries: BTreeMap<Slot, Entry<Value>>,
    /// The queue, in place order.
    pending: Vec<(f64, Op)>,
    next_place: f64,
    head: u64,
    cursor: Option<u64>,
    schemas: Option<BTreeMap<String, Value>>,
}

impl Storage {
    /// Applies a plan in one transaction, in the order the browser's batch
    /// issues its requests; returns the places of the queued ops.
    fn apply(&mut self, plan: &Plan) -> Vec<f64> {
        if plan.clear_entries {
            self.entries.clear();
        }
        for (kind, key) in &plan.delete_entries {
            self.entries.remove(&(kind.clone(), key.clone()));
        }
        for (kind, key, e) in &plan.put_entries {
            self.entries.insert((kind.clone(), key.clone()), e.clone());
        }
        self.pending
            .retain(|(place, _)| !plan.delete_pending.contains(place));
        let mut places = Vec::new();
        for op in &plan.put_pending {
            // Stored as JSON text, as the browser stores it.
            let text = serde_json::to_string(op).expect("an op encodes");
            let op: Op = serde_json::from_str(&text).expect("an op decodes");
            self.next_place += 1.0;
            places.push(self.next_place);
            self.pending.push((self.next_place, op));
        }
        if let Some(head) = plan.head {
            self.head = head;
        }
        if let Some(cursor) = plan.cursor {
            self.cursor = cursor;
        }
        if let Some(schemas) = &plan.schemas {
            self.schemas = Some(schemas.clone());
        }
        places
    }

    fn read(&self) -> Persisted {
        Persisted {
            head: self.head,
            entries: self
                .entries
                .iter()
                .map(|((kind, key), e)| (kind.clone(), key.clone(), e.clone()))
                .collect(),
            cursor: self.cursor,
            pending: self.pending.clone(),
            schemas: self.schemas.clone(),
            next_op_seq: 0,
        }
    }
}

enum Request {
    Read,
    Write(Plan),
}

/// A storage request's result, waiting for its tab to take it.
enum Landed {
    Read(Persisted),
    /// The places, or `None`: the transaction failed.
    Written(Option<Vec<f64>>),
}

struct Device {
    client_id: String,
    token: &'static str,
    /// How long each token the device gets lives (virtual ms), when its
    /// tokens expire: every connection gets a fresh one, as the browser's
    /// token callback gives it.
    token_lifetime: Option<u64>,
    storage: Storage,
    /// Storage requests in the order issued, with their tab.
    requests: VecDeque<(TabId, Request)>,
    /// The Web Lock's holder and the tabs waiting for it, oldest first.
    holder: Option<TabId>,
    waiters: VecDeque<TabId>,
    /// The tabs on the channel.
    members: Vec<TabId>,
}

// ---- a tab ----

enum Job {
    /// A write, and how the trace shows it.
    Write(LocalOp, String),
    Sync,
    Reload {
        lead: bool,
    },
}

/// What a tab's storage request is for.
enum Await {
    Open,
    Write {
        staged: Staged,
        results: Vec<store_core::Result<Outcome>>,
    },
    Sync {
        pass: SyncPass,
        then: Then,
    },
    Reload {
        lead: bool,
    },
}

/// What follows a sync pass.
#[derive(Clone, Copy)]
enum Then {
    Nothing,
    /// The pass of a reload; lead after it.
    Reloaded {
        lead: bool,
    },
}

struct Link {
    conn: ConnId,
    to_server: VecDeque<String>,
    to_client: VecDeque<String>,
    /// The socket closed: by the server (its code), or it broke (`None`).
    /// The client hears of it once it took the frames before.
    closing: Option<Option<u16>>,
    /// The network holds every frame until then.
    hold_until: u64,
}

enum Net {
    Offline { retry_at: Option<u64> },
    Opening { at: u64 },
    Open(Link),
}

/// The leader's connection driver.
struct Driver {
    net: Net,
    backoff: Backoff,
    stopped: bool,
    /// The session's timer.
    timer: Option<u64>,
}

struct Tab {
    device: DevId,
    alive: bool,
    prefix: String,
    replica: Option<Replica>,
    /// Channel messages received before the replica opened.
    buffered: Vec<TabMessage>,
    awaiting: Option<Await>,
    landed: Option<Landed>,
    jobs: VecDeque<Job>,
    /// The lock was granted; its callback has not run yet.
    grant: bool,
    driver: Option<Driver>,
    watch: Option<Watch<Value>>,
    /// What the watch has shown: the engine at open, with every event since.
    view: BTreeMap<Slot, (Value, u64)>,
    seen_rev: u64,
    /// Every op answered to this tab.
    answered: HashMap<String, Answer>,
    /// The ops this tab wrote (committed).
    written: Vec<String>,
}

/// Connections the client closed whose last frames still reach the server.
struct Orphan {
    conn: ConnId,
    to_server: VecDeque<String>,
}

#[derive(Debug, Default, Clone)]
struct Stats {
    seeds: u64,
    steps: u64,
    takeovers: u64,
    compacted: u64,
    lagged: u64,
    internal: u64,
    snapshot_parts: u64,
    reloads: u64,
    breaks: u64,
    restarts: u64,
    timeouts: u64,
    expiries: u64,
    orphan_frames: u64,
    unloads: u64,
    landed_uncommitted: u64,
    storage_failures: u64,
    refused_locally: u64,
    acked: u64,
    conflicts: u64,
    validation: u64,
    forbidden: u64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.seeds += o.seeds;
        self.steps += o.steps;
        self.takeovers += o.takeovers;
        self.compacted += o.compacted;
        self.lagged += o.lagged;
        self.internal += o.internal;
        self.snapshot_parts += o.snapshot_parts;
        self.reloads += o.reloads;
        self.breaks += o.breaks;
        self.restarts += o.restarts;
        self.timeouts += o.timeouts;
        self.expiries += o.expiries;
        self.orphan_frames += o.orphan_frames;
        self.unloads += o.unloads;
        self.landed_uncommitted += o.landed_uncommitted;
        self.storage_failures += o.storage_failures;
        self.refused_locally += o.refused_locally;
        self.acked += o.acked;
        self.conflicts += o.conflicts;
        self.validation += o.validation;
        self.forbidden += o.forbidden;
    }
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Land(DevId),
    Resume(TabId),
    Deliver(TabId, TabId),
    Grant(TabId),
    SocketOpen(TabId),
    Retry(TabId),
    ToServer(TabId),
    ToClient(TabId),
    CloseToClient(TabId),
    ClientTimer(TabId),
    OrphanToServer(usize),
    ServerTimer(ConnId),
    // Chaos.
    Write(TabId),
    Open(DevId),
    Unload(TabId),
    Break(TabId),
    Stall(TabId),
    Lag(TabId),
    FailPush,
    Restart,
    ServerWrite,
    Idle,
}

struct Sim {
    rng: Rng,
    /// Print every event.
    trace: bool,
    /// Keep the last events (a failing seed runs again recording).
    record: bool,
    chaos: bool,
    now: u64,
    server: SimServer,
    server_down_until: u64,
    devices: Vec<Device>,
    tabs: Vec<Tab>,
    /// Channel messages in flight, per sender and receiver.
    channel: BTreeMap<(TabId, TabId), VecDeque<TabMessage>>,
    orphans: Vec<Orphan>,
    /// How many messages were posted.
    posts: u64,
    /// The server's answer to each op, from its frames.
    server_answers: HashMap<String, Answer>,
    /// Every op that reached a storage.
    stored: Vec<String>,
    recent: VecDeque<String>,
    stats: Stats,
}

fn rand01(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn short(message: &TabMessage) -> String {
    match message {
        TabMessage::Pending { ops } => {
            let ids: Vec<&str> = ops.iter().map(|(_, op)| op.op_id.as_str()).collect();
            format!("Pending{ids:?}")
        }
        TabMessage::Synced {
            cursor,
            steps,
            answered,
            schemas,
        } => {
            let ids: Vec<&str> = answered.iter().map(Answered::op_id).collect();
            let keys: Vec<String> = steps.iter().map(|s| format!("{}/{}", s.kind, s.key)).collect();
            format!(
                "Synced{{cursor {cursor:?}, steps {keys:?}, answered {ids:?}{}}}",
                if schemas.is_some() { ", schemas" } else { "" }
            )
        }
        TabMessage::Reload => "Reload".into(),
        TabMessage::Joined => "Joined".into(),
        TabMessage::Leading => "Leading".into(),
        TabMessage::Status { connection, .. } => format!("Status({connection})"),
    }
}

fn op_ids(results: &[store_core::Result<Outcome>]) -> Vec<String> {
    let mut ids = Vec::new();
    for r in results.iter().flatten() {
        match r {
            Outcome::Written(_, id) => ids.extend(id.clone()),
            Outcome::Many(items) => ids.extend(items.iter().filter_map(|(_, _, id)| id.clone())),
            Outcome::Deleted(d) => ids.extend(d.as_ref().and_then(|(_, id)| id.clone())),
        }
    }
    ids
}

/// Whether two answers are the same (a reject's message may be worded
/// differently).
fn same_answer(a: &Answer, b: &Answer) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a == b,
        (Err((a, _)), Err((b, _))) => a == b,
        _ => false,
    }
}

impl Sim {
    fn new(seed: u64, trace: bool, record: bool) -> Sim {
        let mut rng = Rng::new(seed);
        let retention = if rng.below(3) == 0 {
            2 + rng.below(6) as usize
        } else {
            10_000
        };
        let part = 1 + rng.below(4) as usize;
        let schema = Schema::compile(task_schema()).expect("the task schema compiles");
        let options = StoreOptions::new().schema("task", schema).retention(retention);
        let config = ServerConfig {
            heartbeat_ms: HEARTBEAT_MS,
            snapshot_part_entries: part,
            ..ServerConfig::default()
        };
        let server = SimServer::new(options, config)
            .with_schemas(BTreeMap::from([("task".to_owned(), task_schema())]));
        let n_devices = 2 + rng.below(2) as usize;
        let devices = (0..n_devices)
            .map(|i| Device {
                client_id: format!("device-{i}"),
                token: if i > 0 && rng.below(5) == 0 { "ro" } else { "rw" },
                token_lifetime: (rng.below(3) == 0).then(|| 500 + rng.below(3_000)),
                storage: Storage::default(),
                requests: VecDeque::new(),
                holder: None,
                waiters: VecDeque::new(),
                members: Vec::new(),
            })
            .collect();
        let mut sim = Sim {
            rng,
            trace,
            record: record || trace,
            chaos: true,
            now: 0,
            server,
            server_down_until: 0,
            devices,
            tabs: Vec::new(),
            channel: BTreeMap::new(),
            orphans: Vec::new(),
            posts: 0,
            server_answers: HashMap::new(),
            stored: Vec::new(),
            recent: VecDeque::new(),
            stats: Stats {
                seeds: 1,
                ..Stats::default()
            },
        };
        note!(
            sim,
            "seed {seed}: devices {:?}, retention {retention}, snapshot parts of {part}",
            sim.devices
                .iter()
                .map(|d| format!("{} ({})", d.client_id, d.token))
                .collect::<Vec<_>>()
        );
        sim
    }

    fn push_note(&mut self, line: String) {
        let line = format!("{:>7}ms {line}", self.now);
        if self.trace {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    fn below(&mut self, n: usize) -> usize {
        self.rng.below(n as u64) as usize
    }

    fn replica(&mut self, t: TabId) -> &mut Replica {
        self.tabs[t].replica.as_mut().expect("the tab is open")
    }

    fn is_leader(&self, t: TabId) -> bool {
        self.tabs[t].driver.is_some()
    }

    // ---- the run ----

    fn run(&mut self) -> Check {
        for d in 0..self.devices.len() {
            self.open_tab(d);
        }
        let steps = 250 + self.rng.below(350);
        for _ in 0..steps {
            self.step()?;
        }
        // The quiet phase. A new tab on every device posts the queue it
        // reads: ops a tab persisted but closed before posting wait in the
        // storage for that.
        self.chaos = false;
        note!(self, "quiet: faults stop, a new tab opens on every device");
        for d in 0..self.devices.len() {
            self.open_tab(d);
        }
        for tab in &mut self.tabs {
            if let Some(Driver {
                net: Net::Open(link), ..
            }) = &mut tab.driver
            {
                link.hold_until = 0;
            }
        }
        let mut quiet_steps = 0;
        while !self.settled() {
            quiet_steps += 1;
            ensure!(
                quiet_steps < 100_000,
                "the quiet phase settles",
                "still busy after {quiet_steps} steps: {}",
                self.busy()
            );
            self.step()?;
        }
        note!(self, "settled");
        self.final_checks()
    }

    fn step(&mut self) -> Check {
        self.stats.steps += 1;
        let candidates = self.candidates();
        if candidates.is_empty() {
            let next = self.next_deadline();
            ensure!(
                next.is_some(),
                "the quiet phase settles",
                "nothing left to happen: {}",
                self.busy()
            );
            self.now = next.unwrap_or(self.now).max(self.now);
            return Ok(());
        }
        let total: u64 = candidates.iter().map(|(w, _)| u64::from(*w)).sum();
        let mut pick = self.rng.below(total);
        let mut action = candidates[0].1;
        for (w, a) in &candidates {
            if pick < u64::from(*w) {
                action = *a;
                break;
            }
            pick -= u64::from(*w);
        }
        if self.chaos {
            self.now += self.rng.below(25);
        }
        self.perform(action)?;
        // The writers run what was queued (a microtask after the event).
        for t in 0..self.tabs.len() {
            self.kick(t)?;
        }
        self.check_views()?;
        self.check_leaders()
    }

    fn candidates(&self) -> Vec<(u32, Action)> {
        let now = self.now;
        let mut c = Vec::new();
        for (d, dev) in self.devices.iter().enumerate() {
            if !dev.requests.is_empty() {
                c.push((80, Action::Land(d)));
            }
        }
        let mut conns = Vec::new();
        for (t, tab) in self.tabs.iter().enumerate() {
            if !tab.alive {
                continue;
            }
            if tab.landed.is_some() {
                c.push((80, Action::Resume(t)));
            }
            if tab.grant {
                c.push((80, Action::Grant(t)));
            }
            if let Some(driver) = &tab.driver {
                match &driver.net {
                    Net::Opening { at } if *at <= now => c.push((80, Action::SocketOpen(t))),
                    Net::Offline { retry_at: Some(at) } if *at <= now => c.push((80, Action::Retry(t))),
                    Net::Open(link) => {
                        if link.closing.is_none() {
                            conns.push(link.conn);
                        }
                        if link.hold_until <= now {
                            if !link.to_server.is_empty() {
                                c.push((80, Action::ToServer(t)));
                            }
                            if !link.to_client.is_empty() {
                                c.push((80, Action::ToClient(t)));
                            } else if link.closing.is_some() {
                                c.push((80, Action::CloseToClient(t)));
                            }
                        }
                        if self.chaos {
                            c.push((3, Action::Break(t)));
                            c.push((2, Action::Stall(t)));
                            c.push((1, Action::Lag(t)));
                        }
                    }
                    _ => {}
                }
                if driver.timer.is_some_and(|at| at <= now) {
                    c.push((80, Action::ClientTimer(t)));
                }
            }
            if self.chaos && tab.replica.is_some() {
                c.push((50, Action::Write(t)));
                c.push((6, Action::Unload(t)));
            }
        }
        for (&(from, to), queue) in &self.channel {
            if !queue.is_empty() {
                c.push((80, Action::Deliver(from, to)));
            }
        }
        for (i, orphan) in self.orphans.iter().enumerate() {
            conns.push(orphan.conn);
            if !orphan.to_server.is_empty() {
                c.push((40, Action::OrphanToServer(i)));
            }
        }
        for conn in conns {
            if self.server.poll_timeout(conn).is_some_and(|at| at <= now) {
                c.push((80, Action::ServerTimer(conn)));
            }
        }
        if self.chaos {
            for (d, dev) in self.devices.iter().enumerate() {
                let live = dev.members.len();
                if live < MAX_TABS {
                    c.push((if live == 0 { 30 } else { 6 }, Action::Open(d)));
                }
            }
            c.push((1, Action::Restart));
            c.push((1, Action::FailPush));
            c.push((8, Action::ServerWrite));
            c.push((10, Action::Idle));
        }
        c
    }

    /// The earliest time something is due, for the quiet phase to jump to.
    fn next_deadline(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut at = |t: u64| next = Some(next.map_or(t, |n| n.min(t)));
        for tab in self.tabs.iter().filter(|t| t.alive) {
            let Some(driver) = &tab.driver else { continue };
            match &driver.net {
                Net::Opening { at: t } => at(*t),
                Net::Offline { retry_at: Some(t) } if !driver.stopped => at(*t),
                Net::Open(link) => {
                    if link.hold_until > self.now {
                        at(link.hold_until);
                    }
                    if link.closing.is_none()
                        && let Some(t) = self.server.poll_timeout(link.conn)
                    {
                        at(t);
                    }
                }
                Net::Offline { .. } => {}
            }
            if let Some(t) = driver.timer {
                at(t);
            }
        }
        for orphan in &self.orphans {
            if let Some(t) = self.server.poll_timeout(orphan.conn) {
                at(t);
            }
        }
        next
    }

    fn perform(&mut self, action: Action) -> Check {
        match action {
            Action::Land(d) => self.land(d),
            Action::Resume(t) => self.resume(t),
            Action::Deliver(from, to) => self.deliver(from, to),
            Action::Grant(t) => {
                note!(self, "tab {t}: the lock's callback runs: reload, then lead");
                self.stats.takeovers += 1;
                self.tabs[t].grant = false;
                self.tabs[t].jobs.push_back(Job::Reload { lead: true });
                Ok(())
            }
            Action::SocketOpen(t) => self.socket_open(t),
            Action::Retry(t) => {
                if let Some(driver) = &mut self.tabs[t].driver {
                    driver.net = Net::Offline { retry_at: None };
                }
                self.connect(t);
                Ok(())
            }
            Action::ToServer(t) => {
                let Some(Driver {
                    net: Net::Open(link), ..
                }) = &mut self.tabs[t].driver
                else {
                    return Ok(());
                };
                let frame = link.to_server.pop_front().expect("a frame");
                let conn = link.conn;
                if link.closing.is_none() {
                    self.server.receive(conn, &frame, self.now);
                }
                self.server_flush()
            }
            Action::ToClient(t) => self.deliver_to_client(t),
            Action::CloseToClient(t) => {
                let code = match &self.tabs[t].driver {
                    Some(Driver {
                        net: Net::Open(link), ..
                    }) => link.closing.flatten(),
                    _ => None,
                };
                note!(self, "tab {t}: its socket closed ({code:?})");
                self.closed(t, code);
                Ok(())
            }
            Action::ClientTimer(t) => {
                let now = self.now;
                if let Some(driver) = &mut self.tabs[t].driver {
                    driver.timer = None;
                }
                if let Some(session) = self.replica(t).session_mut() {
                    session.handle_timeout(now);
                }
                self.pump(t)
            }
            Action::OrphanToServer(i) => {
                self.stats.orphan_frames += 1;
                let orphan = &mut self.orphans[i];
                let frame = orphan.to_server.pop_front().expect("a frame");
                let conn = orphan.conn;
                self.server.receive(conn, &frame, self.now);
                self.server_flush()?;
                if let Some(i) = self.orphans.iter().position(|o| o.conn == conn)
                    && self.orphans[i].to_server.is_empty()
                {
                    self.server.disconnect(conn);
                    self.orphans.remove(i);
                }
                Ok(())
            }
            Action::ServerTimer(conn) => {
                self.server.handle_timeout(conn, self.now);
                self.server_flush()
            }
            Action::Write(t) => self.app_write(t),
            Action::Open(d) => {
                self.open_tab(d);
                Ok(())
            }
            Action::Unload(t) => {
                self.unload(t);
                Ok(())
            }
            Action::Break(t) => {
                note!(self, "tab {t}: its socket breaks");
                self.stats.breaks += 1;
                self.break_link(t);
                Ok(())
            }
            Action::Stall(t) => {
                let until = self.now + 1_500 + self.rng.below(3_000);
                if let Some(Driver {
                    net: Net::Open(link), ..
                }) = &mut self.tabs[t].driver
                {
                    link.hold_until = until;
                }
                note!(self, "tab {t}: the network stalls until {until}ms");
                Ok(())
            }
            Action::Lag(t) => {
                let conn = match &self.tabs[t].driver {
                    Some(Driver {
                        net: Net::Open(link), ..
                    }) => Some(link.conn),
                    _ => None,
                };
                if let Some(conn) = conn {
                    note!(self, "tab {t}: its connection's feed falls behind (lagged)");
                    self.server.lag(conn);
                }
                Ok(())
            }
            Action::FailPush => {
                note!(self, "the server's storage fails its next push (internal)");
                self.server.fail_next_pushes(1);
                Ok(())
            }
            Action::Restart => {
                self.stats.restarts += 1;
                self.server_down_until = self.now + self.rng.below(1_500);
                note!(
                    self,
                    "the server restarts (down until {}ms)",
                    self.server_down_until
                );
                for t in 0..self.tabs.len() {
                    if self.tabs[t].alive {
                        self.break_link(t);
                    }
                }
                for orphan in std::mem::take(&mut self.orphans) {
                    self.server.disconnect(orphan.conn);
                }
                Ok(())
            }
            Action::ServerWrite => {
                let kind = KINDS[self.below(KINDS.len())];
                let key = KEYS[self.below(KEYS.len())];
                if self.rng.below(3) == 0 {
                    let _ = self.server.store().delete(kind, key, SetOptions::default());
                    note!(self, "another client deletes {kind}/{key}");
                } else {
                    let value = Self::value_for(&mut self.rng, kind, false);
                    note!(self, "another client sets {kind}/{key}={value}");
                    let _ = self.server.store().set(kind, key, value, SetOptions::default());
                }
                self.server_flush()
            }
            Action::Idle => {
                self.now += 200 + self.rng.below(2_500);
                Ok(())
            }
        }
    }

    // ---- storage ----

    fn issue(&mut self, t: TabId, request: Request) {
        let d = self.tabs[t].device;
        self.devices[d].requests.push_back((t, request));
    }

    fn land(&mut self, d: DevId) -> Check {
        let (t, request) = self.devices[d].requests.pop_front().expect("a request");
        let landed = match request {
            Request::Read => {
                let persisted = self.devices[d].storage.read();
                note!(
                    self,
                    "dev {d}: tab {t}'s read: cursor {:?}, {} entries, queue {:?}",
                    persisted.cursor,
                    persisted.entries.len(),
                    persisted
                        .pending
                        .iter()
                        .map(|(_, op)| &op.op_id)
                        .collect::<Vec<_>>()
                );
                Landed::Read(persisted)
            }
            Request::Write(plan) => {
                if self.chaos && self.rng.below(50) == 0 {
                    self.stats.storage_failures += 1;
                    note!(self, "dev {d}: tab {t}'s write fails");
                    Landed::Written(None)
                } else {
                    let places = self.devices[d].storage.apply(&plan);
                    let ids: Vec<String> = plan.put_pending.iter().map(|op| op.op_id.clone()).collect();
                    if !self.tabs[t].alive && !ids.is_empty() {
                        self.stats.landed_uncommitted += 1;
                    }
                    note!(
                        self,
                        "dev {d}: tab {t}'s write lands: +{ids:?} -{:?}, {} entries{}{}",
                        plan.delete_pending,
                        plan.put_entries.len() + plan.delete_entries.len(),
                        if plan.clear_entries { " (cleared)" } else { "" },
                        plan.cursor.map(|c| format!(", cursor {c:?}")).unwrap_or_default()
                    );
                    self.stored.extend(ids);
                    Landed::Written(Some(places))
                }
            }
        };
        if self.tabs[t].alive {
            self.tabs[t].landed = Some(landed);
        }
        Ok(())
    }

    fn resume(&mut self, t: TabId) -> Check {
        let landed = self.tabs[t].landed.take().expect("a result");
        let awaiting = self.tabs[t].awaiting.take().expect("a request");
        match (awaiting, landed) {
            (Await::Open, Landed::Read(persisted)) => self.opened(t, persisted),
            (Await::Write { staged, results }, Landed::Written(places)) => {
                self.committed(t, staged, results, places)
            }
            (Await::Sync { pass, then }, Landed::Written(places)) => {
                self.pass_done(t, pass, then, places.is_some())
            }
            (Await::Reload { lead }, Landed::Read(persisted)) => {
                note!(self, "tab {t}: reloads");
                self.replica(t).reload(persisted);
                self.start_pass(t, Then::Reloaded { lead })
            }
            _ => unreachable!("a request's result of another kind"),
        }
    }

    // ---- tabs ----

    fn open_tab(&mut self, d: DevId) {
        let t = self.tabs.len();
        self.tabs.push(Tab {
            device: d,
            alive: true,
            prefix: format!("d{d}t{t}"),
            replica: None,
            buffered: Vec::new(),
            awaiting: Some(Await::Open),
            landed: None,
            jobs: VecDeque::new(),
            grant: false,
            driver: None,
            watch: None,
            view: BTreeMap::new(),
            seen_rev: 0,
            answered: HashMap::new(),
            written: Vec::new(),
        });
        // Joins the channel first: what is posted from now on is buffered.
        self.devices[d].members.push(t);
        self.issue(t, Request::Read);
        note!(self, "dev {d}: tab {t} opens: joins the channel, reads");
    }

    fn opened(&mut self, t: TabId, persisted: Persisted) -> Check {
        let d = self.tabs[t].device;
        let dev = &self.devices[d];
        let config = ClientConfig::new(NAMESPACE, dev.token, dev.client_id.clone());
        let prefix = self.tabs[t].prefix.clone();
        let mut replica = match Replica::open(StoreOptions::new(), Some((config, prefix)), persisted) {
            Ok(r) => r,
            Err(e) => {
                return broken(
                    "a replica opens from what its storage holds",
                    format!("tab {t}: {e}"),
                );
            }
        };
        replica.set_leader(false);
        let watch = replica
            .engine_mut()
            .watch_all(WatchOptions::new().buffer_size(1 << 20))
            .expect("the engine is open");
        let tab = &mut self.tabs[t];
        tab.view = engine_entries(&replica);
        tab.seen_rev = replica.engine().rev();
        tab.watch = Some(watch);
        tab.replica = Some(replica);
        note!(self, "tab {t}: opened at revision {}", self.tabs[t].seen_rev);
        for message in std::mem::take(&mut self.tabs[t].buffered) {
            self.react(t, message)?;
        }
        for message in self.replica(t).joined() {
            self.post(t, &message);
        }
        if self.devices[d].holder.is_none() {
            // Free at once: the storage is read again before leading, as on
            // a takeover (the read of the open may predate what the previous
            // leader persisted last).
            self.devices[d].holder = Some(t);
            self.tabs[t].jobs.push_back(Job::Reload { lead: true });
        } else {
            self.devices[d].waiters.push_back(t);
        }
        Ok(())
    }

    fn unload(&mut self, t: TabId) {
        self.stats.unloads += 1;
        let d = self.tabs[t].device;
        // The storage finishes some of its writes, in order, and drops the
        // rest and its reads.
        let writes = self.devices[d]
            .requests
            .iter()
            .filter(|(from, r)| *from == t && matches!(r, Request::Write(_)))
            .count();
        let mut keep = self.below(writes + 1);
        let kept = keep;
        self.devices[d].requests.retain(|(from, r)| {
            if *from != t {
                return true;
            }
            if matches!(r, Request::Write(_)) && keep > 0 {
                keep -= 1;
                return true;
            }
            false
        });
        note!(
            self,
            "tab {t} unloads{} ({kept} of its {writes} writes in flight land)",
            if self.is_leader(t) { " (the leader)" } else { "" }
        );
        let orphan = self.rng.below(2) == 0;
        let tab = &mut self.tabs[t];
        tab.alive = false;
        tab.landed = None;
        tab.awaiting = None;
        tab.jobs.clear();
        tab.watch = None;
        tab.replica = None;
        tab.buffered.clear();
        if let Some(driver) = tab.driver.take()
            && let Net::Open(link) = driver.net
        {
            self.let_go(link, orphan);
        }
        let dev = &mut self.devices[d];
        dev.members.retain(|m| *m != t);
        self.channel.retain(|(_, to), _| *to != t);
        dev.waiters.retain(|w| *w != t);
        if dev.holder == Some(t) {
            dev.holder = dev.waiters.pop_front();
            if let Some(w) = dev.holder {
                self.tabs[w].grant = true;
            }
        }
    }

    fn lead(&mut self, t: TabId) {
        note!(self, "tab {t} leads");
        self.replica(t).set_leader(true);
        self.tabs[t].driver = Some(Driver {
            net: Net::Offline { retry_at: None },
            backoff: Backoff::new(100, 3_000),
            stopped: false,
            timer: None,
        });
        self.connect(t);
        self.post(t, &TabMessage::Leading);
    }

    fn post(&mut self, t: TabId, message: &TabMessage) {
        let d = self.tabs[t].device;
        note!(self, "tab {t} posts {}", short(message));
        // The browser sends it as JSON text: every few posts go through it
        // (all of them would slow the runs down).
        self.posts += 1;
        let message = if self.posts % 8 == 1 {
            let text = serde_json::to_string(message).expect("a tab message encodes");
            serde_json::from_str(&text).expect("a tab message decodes")
        } else {
            message.clone()
        };
        for &to in &self.devices[d].members {
            if to != t {
                self.channel
                    .entry((t, to))
                    .or_default()
                    .push_back(message.clone());
            }
        }
    }

    fn post_status(&mut self, t: TabId) {
        let Some(driver) = &self.tabs[t].driver else {
            return;
        };
        let connection = match &driver.net {
            Net::Open(link) if link.closing.is_none() => {
                if self.tabs[t]
                    .replica
                    .as_ref()
                    .and_then(Replica::session)
                    .is_some_and(|s| s.is_connected())
                {
                    "online"
                } else {
                    "connecting"
                }
            }
            Net::Opening { .. } | Net::Open(_) => "connecting",
            Net::Offline { .. } => "offline",
        };
        let rights = self.replica(t).session().and_then(|s| s.rights());
        let status = TabMessage::Status {
            connection: connection.to_owned(),
            error: None,
            rights,
        };
        self.post(t, &status);
    }

    fn deliver(&mut self, from: TabId, to: TabId) -> Check {
        let queue = self.channel.get_mut(&(from, to)).expect("a queue");
        let message = queue.pop_front().expect("a message");
        if queue.is_empty() {
            self.channel.remove(&(from, to));
        }
        note!(self, "tab {to} <- tab {from}: {}", short(&message));
        if self.tabs[to].replica.is_none() {
            self.tabs[to].buffered.push(message);
            return Ok(());
        }
        self.react(to, message)
    }

    /// What the shell does with a message (`IdbStore::receive`).
    fn react(&mut self, t: TabId, message: TabMessage) -> Check {
        let reaction = self.replica(t).receive(message);
        match reaction {
            Reaction::None | Reaction::Status => {}
            Reaction::Post(message) => self.post(t, &message),
            Reaction::Persist { send } => {
                self.tabs[t].jobs.push_back(Job::Sync);
                if send && self.is_leader(t) {
                    self.pump(t)?;
                }
            }
            Reaction::Reload => {
                self.stats.reloads += 1;
                self.tabs[t].jobs.push_back(Job::Reload { lead: false });
            }
            Reaction::Joined => self.post_status(t),
        }
        Ok(())
    }

    // ---- the writer ----

    /// Starts the tab's next jobs until one waits for the storage.
    fn kick(&mut self, t: TabId) -> Check {
        loop {
            let tab = &mut self.tabs[t];
            if !tab.alive || tab.awaiting.is_some() || tab.replica.is_none() {
                return Ok(());
            }
            match tab.jobs.front() {
                None => return Ok(()),
                Some(Job::Sync) => {
                    // Every queued sync job is served by one pass.
                    tab.jobs.retain(|j| !matches!(j, Job::Sync));
                    self.start_pass(t, Then::Nothing)?;
                }
                Some(Job::Reload { lead }) => {
                    let lead = *lead;
                    tab.jobs.pop_front();
                    tab.awaiting = Some(Await::Reload { lead });
                    self.replica(t).begin_read();
                    self.issue(t, Request::Read);
                    note!(self, "tab {t}: begins a read to reload");
                }
                Some(Job::Write(..)) => {
                    let n = tab
                        .jobs
                        .iter()
                        .take_while(|j| matches!(j, Job::Write(..)))
                        .count();
                    let (ops, described): (Vec<LocalOp>, Vec<String>) = tab
                        .jobs
                        .drain(..n)
                        .map(|j| match j {
                            Job::Write(op, text) => (op, text),
                            _ => unreachable!("only writes were drained"),
                        })
                        .unzip();
                    let (results, staged) = self.replica(t).stage(ops);
                    let outcomes: Vec<String> = results
                        .iter()
                        .map(|r| match r {
                            Ok(_) => "ok".to_owned(),
                            Err(e) => e.code().to_string(),
                        })
                        .collect();
                    note!(
                        self,
                        "tab {t} stages {described:?}: {outcomes:?}, ops {:?}",
                        op_ids(&results)
                    );
                    if let Some(staged) = staged {
                        let plan = staged.plan.clone();
                        self.tabs[t].awaiting = Some(Await::Write { staged, results });
                        self.issue(t, Request::Write(plan));
                    }
                }
            }
        }
    }

    fn committed(
        &mut self,
        t: TabId,
        staged: Staged,
        results: Vec<store_core::Result<Outcome>>,
        places: Option<Vec<f64>>,
    ) -> Check {
        let Some(places) = places else {
            note!(self, "tab {t}: its write failed; nothing is committed");
            return Ok(());
        };
        let message = match self.replica(t).commit(staged, places) {
            Ok(m) => m,
            Err(e) => return broken("a persisted write commits", format!("tab {t}: {e}")),
        };
        let ids = op_ids(&results);
        note!(self, "tab {t} commits {ids:?}");
        self.tabs[t].written.extend(ids);
        if let Some(message) = message {
            self.post(t, &message);
            if self.is_leader(t) {
                self.pump(t)?;
            }
        }
        Ok(())
    }

    fn start_pass(&mut self, t: TabId, then: Then) -> Check {
        let pass = self.replica(t).plan_sync().expect("a synced replica");
        if pass.plan.is_empty() {
            return self.pass_done(t, pass, then, true);
        }
        let plan = pass.plan.clone();
        self.tabs[t].awaiting = Some(Await::Sync { pass, then });
        self.issue(t, Request::Write(plan));
        Ok(())
    }

    fn pass_done(&mut self, t: TabId, pass: SyncPass, then: Then, persisted: bool) -> Check {
        if persisted {
            let applied = self.replica(t).sync_persisted(pass);
            if let Some(e) = applied.error {
                return broken("a sync pass applies to the view", format!("tab {t}: {e}"));
            }
            for message in &applied.messages {
                self.post(t, message);
            }
            for answered in applied.answered {
                self.answered(t, &answered)?;
            }
        } else {
            note!(self, "tab {t}: its sync pass failed to persist");
            self.replica(t).sync_failed(pass);
        }
        if let Then::Reloaded { lead: true } = then {
            self.lead(t);
        }
        Ok(())
    }

    fn answered(&mut self, t: TabId, answered: &Answered) -> Check {
        let id = answered.op_id().to_owned();
        let answer = answered.answer();
        note!(
            self,
            "tab {t}: {id} answered {}",
            match &answer {
                Ok(ack) => format!("{:?} v{} r{}", ack.result, ack.version, ack.rev),
                Err((code, _)) => code.as_str().to_owned(),
            }
        );
        let Some(server) = self.server_answers.get(&id) else {
            return broken(
                "an op is answered as the server answered it",
                format!("tab {t}: {id} answered {answer:?}, which the server never said"),
            );
        };
        ensure!(
            same_answer(server, &answer),
            "an op is answered as the server answered it",
            "tab {t}: {id} answered {answer:?}, the server said {server:?}"
        );
        let before = self.tabs[t].answered.insert(id.clone(), answer);
        ensure!(
            before.is_none(),
            "an op is answered once per tab",
            "tab {t}: {id} answered again"
        );
        Ok(())
    }

    // ---- app writes ----

    fn value_for(rng: &mut Rng, kind: &str, invalid: bool) -> Value {
        let n = rng.below(3);
        match kind {
            "task" if invalid => json!({"n": n}),
            "task" => json!({"title": format!("t{n}"), "n": n}),
            "note" => json!(n),
            _ => json!(format!("v{n}")),
        }
    }

    fn app_write(&mut self, t: TabId) -> Check {
        // The shell refuses writes once it knows the token may only read.
        if self.replica(t).rights() == Some(store_core::sync::Rights::Read) {
            self.stats.refused_locally += 1;
            note!(self, "tab {t}: a write is refused (read-only)");
            return Ok(());
        }
        let n = if self.rng.below(4) == 0 { 2 } else { 1 };
        for _ in 0..n {
            let (op, text) = self.random_op(t);
            note!(self, "tab {t}: the app writes {text}");
            self.tabs[t].jobs.push_back(Job::Write(op, text));
        }
        Ok(())
    }

    /// A write, and how the trace shows it.
    fn random_op(&mut self, t: TabId) -> (LocalOp, String) {
        let kind = KINDS[self.below(KINDS.len())].to_owned();
        let key = KEYS[self.below(KEYS.len())].to_owned();
        let shown = self
            .replica(t)
            .engine()
            .get(&kind, &key)
            .ok()
            .flatten()
            .map_or(0, |e| e.version);
        let if_version = match self.rng.below(6) {
            0 | 1 => Some(shown),
            2 => Some(if self.rng.below(2) == 0 {
                shown + 1
            } else {
                shown.saturating_sub(1)
            }),
            _ => None,
        };
        let invalid = kind == "task" && self.rng.below(6) == 0;
        let record = self.record;
        let text = |what: &str| {
            if record {
                format!("{what} {kind}/{key} if {if_version:?}")
            } else {
                String::new()
            }
        };
        match self.rng.below(12) {
            0..=4 => {
                let value = Self::value_for(&mut self.rng, &kind, invalid);
                let text = text(&format!("set {value}"));
                let op = LocalOp::Set {
                    value,
                    kind,
                    key,
                    if_version,
                };
                (op, text)
            }
            5 => {
                let items: Vec<(String, Value)> = (0..1 + self.rng.below(3))
                    .map(|_| {
                        let key = KEYS[self.below(KEYS.len())].to_owned();
                        let invalid = kind == "task" && self.rng.below(8) == 0;
                        (key, Self::value_for(&mut self.rng, &kind, invalid))
                    })
                    .collect();
                let text = if record {
                    let items: Vec<String> = items.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("set_many {kind} {items:?}")
                } else {
                    String::new()
                };
                (LocalOp::SetMany { kind, items }, text)
            }
            6 | 7 => {
                let text = text("delete");
                (
                    LocalOp::Delete {
                        kind,
                        key,
                        if_version,
                    },
                    text,
                )
            }
            8 => {
                // A merge patch: a member of a task (removing its title
                // breaks the schema), or one that makes any other value an
                // object.
                let n = self.rng.below(3);
                let patch = match self.rng.below(4) {
                    0 if kind == "task" => json!({"title": null}),
                    0 | 1 => json!({"n": n}),
                    2 => json!({"title": format!("p{n}")}),
                    _ => json!({"n": null, "m": n}),
                };
                let text = text(&format!("patch {patch}"));
                let op = LocalOp::Patch {
                    kind,
                    key,
                    patch,
                    if_version,
                };
                (op, text)
            }
            _ => {
                let mode = self.rng.below(6);
                let is_task = kind == "task";
                let f = move |old: &Value| -> Result<Value, store_core::BoxError> {
                    let n = old.get("n").and_then(Value::as_u64).or(old.as_u64()).unwrap_or(0);
                    match mode {
                        0 => Err("the function refuses".into()),
                        1 if is_task => Ok(json!({"n": n + 1})),
                        _ if is_task => Ok(json!({"title": "f", "n": (n + 1) % 4})),
                        _ => Ok(json!((n + 1) % 4)),
                    }
                };
                let if_version = if_version.filter(|_| self.rng.below(2) == 0);
                let text = if record {
                    format!("set_fn({mode}) {kind}/{key} if {if_version:?}")
                } else {
                    String::new()
                };
                let op = LocalOp::SetFn {
                    kind,
                    key,
                    f: Box::new(f),
                    if_version,
                };
                (op, text)
            }
        }
    }

    // ---- the connection ----

    fn connect(&mut self, t: TabId) {
        let at = self.now + 1 + self.rng.below(30);
        let Some(driver) = &mut self.tabs[t].driver else {
            return;
        };
        if driver.stopped || !matches!(driver.net, Net::Offline { .. }) {
            return;
        }
        driver.net = Net::Opening { at };
        self.post_status(t);
    }

    fn socket_open(&mut self, t: TabId) -> Check {
        if self.now < self.server_down_until {
            note!(self, "tab {t}: its socket fails to open (the server is down)");
            self.closed(t, None);
            return Ok(());
        }
        let conn = self.server.connect(self.now);
        note!(self, "tab {t}: its socket opens ({conn:?})");
        if let Some(driver) = &mut self.tabs[t].driver {
            driver.net = Net::Open(Link {
                conn,
                to_server: VecDeque::new(),
                to_client: VecDeque::new(),
                closing: None,
                hold_until: 0,
            });
        }
        let now = self.now;
        let device = &self.devices[self.tabs[t].device];
        let token = device
            .token_lifetime
            .map(|lifetime| format!("{}@{}", device.token, now + lifetime));
        if let Some(session) = self.replica(t).session_mut() {
            if let Some(token) = token {
                session.set_token(token);
            }
            session.connect(now);
        }
        self.pump(t)
    }

    /// The socket closed (`Driver::closed`).
    fn closed(&mut self, t: TabId, code: Option<u16>) {
        let delay = {
            let rng = &mut self.rng;
            let Some(driver) = &mut self.tabs[t].driver else {
                return;
            };
            driver.net = Net::Offline { retry_at: None };
            driver.timer = None;
            if code.is_some_and(|c| !reconnect::retry_after_close(Some(c))) {
                driver.stopped = true;
            }
            (!driver.stopped).then(|| driver.backoff.next_delay_ms(rand01(rng)))
        };
        if let Some(session) = self.replica(t).session_mut() {
            session.disconnected();
        }
        if let Some(delay) = delay
            && let Some(driver) = &mut self.tabs[t].driver
        {
            driver.net = Net::Offline {
                retry_at: Some(self.now + delay),
            };
        }
        self.post_status(t);
    }

    /// The client closes its socket (`Driver::drop_socket`): what it sent
    /// may still reach the server.
    fn drop_socket(&mut self, t: TabId) {
        let orphan = self.rng.below(2) == 0;
        if let Some(driver) = &mut self.tabs[t].driver
            && let Net::Open(link) = std::mem::replace(&mut driver.net, Net::Offline { retry_at: None })
        {
            self.let_go(link, orphan);
        }
        self.closed(t, None);
    }

    /// A socket the client let go of (not one the server closed): with
    /// `orphan`, what it sent and the server has not read still reaches the
    /// server; otherwise the server sees it go.
    fn let_go(&mut self, link: Link, orphan: bool) {
        if link.closing.is_some() {
            return;
        }
        if orphan && !link.to_server.is_empty() {
            self.orphans.push(Orphan {
                conn: link.conn,
                to_server: link.to_server,
            });
        } else {
            self.server.disconnect(link.conn);
        }
    }

    /// The network drops the connection: everything in flight is lost; the
    /// client hears of it later.
    fn break_link(&mut self, t: TabId) {
        let Some(Driver {
            net: Net::Open(link), ..
        }) = &mut self.tabs[t].driver
        else {
            return;
        };
        if link.closing.is_none() {
            self.server.disconnect(link.conn);
        }
        link.to_server.clear();
        link.to_client.clear();
        link.closing = Some(None);
    }

    fn deliver_to_client(&mut self, t: TabId) -> Check {
        let burst = 1 + self.below(3);
        for _ in 0..burst {
            let now = self.now;
            let Some(Driver {
                net: Net::Open(link), ..
            }) = &mut self.tabs[t].driver
            else {
                return Ok(());
            };
            let Some(frame) = link.to_client.pop_front() else {
                return Ok(());
            };
            let session = self.tabs[t]
                .replica
                .as_mut()
                .and_then(Replica::session_mut)
                .expect("a synced replica");
            if let Err(e) = session.handle_frame(frame.as_bytes(), now) {
                return broken("the server's frames decode", format!("tab {t}: {e}"));
            }
            self.pump(t)?;
        }
        Ok(())
    }

    /// `Driver::pump`: drains the session's events and frames.
    fn pump(&mut self, t: TabId) -> Check {
        let now = self.now;
        let mut welcomed = false;
        let mut stop = false;
        let mut reconnect_now = false;
        let mut seen = Vec::new();
        let replica = self.tabs[t].replica.as_mut().expect("the tab is open");
        while let Some(event) = replica.poll_event() {
            let next = reconnect::after_event(&event);
            match &event {
                ClientEvent::Connected { .. } => welcomed = true,
                ClientEvent::TimedOut => seen.push("timed out".to_owned()),
                ClientEvent::Error(e) => seen.push(format!("error {}", e.code.as_str())),
                ClientEvent::AccessLost(e) => seen.push(format!("access lost ({})", e.message)),
                ClientEvent::SnapshotApplied { rev, reason } => {
                    seen.push(format!("snapshot {reason:?} at {rev}"));
                }
                _ => {}
            }
            stop |= next == Next::Stop;
            reconnect_now |= next != Next::Keep;
        }
        let news = replica.has_news();
        let mut frames = Vec::new();
        if let Some(session) = replica.session_mut() {
            while let Some(frame) = session.poll_transmit_frame(now) {
                frames.push(frame);
            }
        }
        let timer = replica.session().and_then(|s| s.poll_timeout());
        if !seen.is_empty() {
            note!(self, "tab {t}: {}", seen.join(", "));
            self.stats.timeouts += seen.iter().filter(|s| s.starts_with("timed")).count() as u64;
            self.stats.expiries += seen.iter().filter(|s| s.starts_with("access lost")).count() as u64;
        }
        let tab = &mut self.tabs[t];
        if news {
            tab.jobs.push_back(Job::Sync);
        }
        let Some(driver) = &mut tab.driver else {
            return Ok(());
        };
        if let Net::Open(link) = &mut driver.net
            && link.closing.is_none()
        {
            link.to_server.extend(frames);
        }
        if welcomed {
            driver.backoff.reset();
        }
        if stop {
            driver.stopped = true;
        }
        if welcomed {
            self.post_status(t);
        }
        if reconnect_now {
            note!(self, "tab {t}: drops its socket to reconnect");
            self.drop_socket(t);
        } else if let Some(driver) = &mut self.tabs[t].driver {
            driver.timer = timer;
        }
        Ok(())
    }

    /// Moves what the server sends into the links, and notes its answers.
    fn server_flush(&mut self) -> Check {
        for t in 0..self.tabs.len() {
            if !self.tabs[t].alive {
                continue;
            }
            let conn = match &self.tabs[t].driver {
                Some(Driver {
                    net: Net::Open(link), ..
                }) if link.closing.is_none() => link.conn,
                _ => continue,
            };
            let mut frames = Vec::new();
            while let Some(frame) = self.server.poll_transmit(conn) {
                self.heard(&frame)?;
                frames.push(frame);
            }
            let close = self.server.poll_close(conn);
            if let Some(Driver {
                net: Net::Open(link), ..
            }) = &mut self.tabs[t].driver
            {
                link.to_client.extend(frames);
                if let Some(code) = close {
                    link.closing = Some(Some(code.code()));
                    link.to_server.clear();
                }
            }
            if let Some(code) = close {
                note!(self, "the server closes tab {t}'s connection ({code:?})");
            }
        }
        let mut i = 0;
        while i < self.orphans.len() {
            let conn = self.orphans[i].conn;
            while let Some(frame) = self.server.poll_transmit(conn) {
                self.heard(&frame)?;
            }
            if self.server.poll_close(conn).is_some() {
                self.orphans.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(())
    }

    fn heard(&mut self, frame: &str) -> Check {
        // Only answers and snapshots matter here (decoding every change
        // would slow the runs down).
        if !["ack", "reject", "snapshot"]
            .iter()
            .any(|t| frame.starts_with(&format!(r#"{{"type":"{t}""#)))
        {
            return Ok(());
        }
        let message = match codec::decode_server(frame.as_bytes(), 1 << 24) {
            Ok(m) => m,
            Err(e) => return broken("the server's frames decode", e.to_string()),
        };
        let (op_id, answer) = match message {
            ServerMessage::Ack(ack) => (ack.op_id.clone(), Ok(ack)),
            ServerMessage::Reject(r) if !matches!(r.code, ErrorCode::Internal | ErrorCode::ShuttingDown) => {
                (r.op_id, Err((r.code, r.message)))
            }
            ServerMessage::Reject(_) => {
                self.stats.internal += 1;
                return Ok(());
            }
            ServerMessage::Snapshot(s) => {
                self.stats.snapshot_parts += 1;
                if s.reason == SnapshotReason::Compacted && s.done {
                    self.stats.compacted += 1;
                }
                if s.reason == SnapshotReason::Lagged && s.done {
                    self.stats.lagged += 1;
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        match self.server_answers.get(&op_id) {
            Some(before) => ensure!(
                same_answer(before, &answer),
                "the server answers an op one way",
                "{op_id}: {before:?}, then {answer:?}"
            ),
            None => {
                match &answer {
                    Ok(_) => self.stats.acked += 1,
                    Err((ErrorCode::Conflict, _)) => self.stats.conflicts += 1,
                    Err((ErrorCode::Validation, _)) => self.stats.validation += 1,
                    Err((ErrorCode::Forbidden, _)) => self.stats.forbidden += 1,
                    Err(_) => {}
                }
                self.server_answers.insert(op_id, answer);
            }
        }
        Ok(())
    }

    // ---- invariants ----

    fn check_views(&mut self) -> Check {
        for t in 0..self.tabs.len() {
            let tab = &mut self.tabs[t];
            let (Some(replica), Some(watch)) = (&tab.replica, &mut tab.watch) else {
                continue;
            };
            let mut changed = false;
            while let Some(item) = watch.next().now_or_never() {
                let Some(item) = item else {
                    return broken("a tab's watch goes on", format!("tab {t}: the watch ended"));
                };
                let event = match item {
                    Ok(e) => e,
                    Err(e) => return broken("a tab's watch goes on", format!("tab {t}: {e}")),
                };
                ensure!(
                    event.rev == tab.seen_rev + 1,
                    "a tab's watch is gap-free and in order",
                    "tab {t}: revision {} after {}",
                    event.rev,
                    tab.seen_rev
                );
                tab.seen_rev = event.rev;
                let slot = (event.kind.clone(), event.key.clone());
                let before = tab.view.get(&slot);
                match event.event_type {
                    EventType::Create => ensure!(
                        before.is_none(),
                        "a tab's watch fits what it showed",
                        "tab {t}: create of {slot:?}, shown as {before:?}"
                    ),
                    EventType::Update => ensure!(
                        before.is_some(),
                        "a tab's watch fits what it showed",
                        "tab {t}: update of {slot:?}, which it did not show"
                    ),
                    EventType::Delete => ensure!(
                        before == Some(&(event.value.clone(), event.version)),
                        "a tab's watch fits what it showed",
                        "tab {t}: delete of {slot:?} as {} v{}, shown as {before:?}",
                        event.value,
                        event.version
                    ),
                }
                if event.event_type == EventType::Delete {
                    tab.view.remove(&slot);
                } else {
                    tab.view.insert(slot, (event.value.clone(), event.version));
                }
                changed = true;
            }
            ensure!(
                tab.seen_rev == replica.engine().rev(),
                "a tab's watch is gap-free and in order",
                "tab {t}: the watch reached {}, the engine is at {}",
                tab.seen_rev,
                replica.engine().rev()
            );
            if changed {
                let engine = engine_entries(replica);
                ensure!(
                    tab.view == engine,
                    "a tab's watch replays to its engine",
                    "tab {t}: the watch shows {:?}, the engine holds {engine:?}",
                    tab.view
                );
            }
        }
        Ok(())
    }

    fn check_leaders(&self) -> Check {
        for (d, dev) in self.devices.iter().enumerate() {
            let leaders: Vec<TabId> = dev
                .members
                .iter()
                .copied()
                .filter(|t| self.tabs[*t].driver.is_some())
                .collect();
            ensure!(
                leaders.len() <= 1,
                "a device has at most one leader",
                "dev {d}: {leaders:?}"
            );
        }
        Ok(())
    }

    /// Whether the quiet phase is over.
    fn settled(&self) -> bool {
        self.busy().is_empty()
    }

    /// What still moves, for the quiet phase (empty once settled).
    fn busy(&self) -> String {
        let mut busy = Vec::new();
        if self.channel.values().any(|q| !q.is_empty()) {
            busy.push("channel messages in flight".to_owned());
        }
        if !self.orphans.is_empty() {
            busy.push("closed sockets' frames in flight".to_owned());
        }
        for (d, dev) in self.devices.iter().enumerate() {
            if !dev.requests.is_empty() {
                busy.push(format!("dev {d}: storage requests"));
            }
            let Some(h) = dev.holder else {
                busy.push(format!("dev {d}: no leader"));
                continue;
            };
            let tab = &self.tabs[h];
            let Some(driver) = &tab.driver else {
                busy.push(format!("dev {d}: tab {h} holds the lock but does not lead yet"));
                continue;
            };
            match &driver.net {
                Net::Open(link) if link.closing.is_none() => {
                    if !link.to_server.is_empty() || !link.to_client.is_empty() {
                        busy.push(format!("dev {d}: tab {h}'s frames in flight"));
                    }
                }
                _ => busy.push(format!(
                    "dev {d}: tab {h} is not connected{}",
                    if driver.stopped { " (stopped)" } else { "" }
                )),
            }
            if let Some(session) = tab.replica.as_ref().and_then(Replica::session) {
                if !session.is_synced() {
                    busy.push(format!("dev {d}: tab {h} is not synced"));
                }
                if session.pending().len() > 0 {
                    busy.push(format!(
                        "dev {d}: tab {h} has {} ops unanswered",
                        session.pending().len()
                    ));
                }
            }
        }
        for (t, tab) in self.tabs.iter().enumerate() {
            if !tab.alive {
                continue;
            }
            let idle = tab.replica.as_ref().is_some_and(|r| !r.has_news())
                && tab.awaiting.is_none()
                && tab.landed.is_none()
                && tab.jobs.is_empty()
                && !tab.grant
                && tab.buffered.is_empty();
            if !idle {
                busy.push(format!("tab {t} is busy"));
            }
        }
        busy.join("; ")
    }

    fn final_checks(&self) -> Check {
        let server_rev = self.server.store().rev().expect("the server's store is open");
        let mut server_entries: BTreeMap<Slot, Entry<Value>> = BTreeMap::new();
        for kind in KINDS {
            for (key, e) in self.server.store().list(kind, &[]).expect("the store is open") {
                server_entries.insert((kind.to_owned(), key), e);
            }
        }
        let server_view: BTreeMap<Slot, (Value, u64)> = server_entries
            .iter()
            .map(|(slot, e)| (slot.clone(), (e.value.clone(), e.version)))
            .collect();
        for (client, op, n) in self.server.applied_ops() {
            ensure!(
                n <= 1,
                "the server applies every op at most once",
                "{client} {op}: applied {n} times"
            );
        }
        for op_id in &self.stored {
            let n = self.server.applied_count(op_id);
            match self.server_answers.get(op_id) {
                None => {
                    return broken(
                        "every op that reached storage is answered",
                        format!("{op_id} was never answered"),
                    );
                }
                Some(Ok(_)) => ensure!(
                    n == 1,
                    "every op that reached storage is answered",
                    "{op_id} was acked but applied {n} times"
                ),
                Some(Err((code, _))) => ensure!(
                    n == 0,
                    "every op that reached storage is answered",
                    "{op_id} was rejected ({code:?}) but applied {n} times"
                ),
            }
        }
        for (d, dev) in self.devices.iter().enumerate() {
            let s = &dev.storage;
            ensure!(
                s.pending.is_empty(),
                "every storage queue ends empty",
                "dev {d}: {:?}",
                s.pending.iter().map(|(_, op)| &op.op_id).collect::<Vec<_>>()
            );
            ensure!(
                s.entries == server_entries,
                "every storage ends with the server's entries",
                "dev {d}: {:?}, the server holds {server_entries:?}",
                s.entries
            );
            ensure!(
                s.cursor == Some(server_rev),
                "every storage ends with the server's entries",
                "dev {d}: cursor {:?}, the server is at {server_rev}",
                s.cursor
            );
        }
        for (t, tab) in self.tabs.iter().enumerate() {
            if !tab.alive {
                continue;
            }
            let replica = tab.replica.as_ref().expect("the tab is open");
            let session = replica.session().expect("a synced replica");
            ensure!(
                replica.pending_count() == 0 && session.pending().len() == 0,
                "every live tab ends with nothing pending",
                "tab {t}: {} pending, the session holds {:?}",
                replica.pending_count(),
                session.pending().map(|op| &op.op_id).collect::<Vec<_>>()
            );
            let engine = engine_entries(replica);
            ensure!(
                engine == server_view,
                "every live tab ends with the server's entries",
                "tab {t}: {engine:?}, the server holds {server_view:?}"
            );
            ensure!(
                replica.synced_rev() == Some(server_rev),
                "every live tab ends with the server's entries",
                "tab {t}: at {:?}, the server at {server_rev}",
                replica.synced_rev()
            );
            for op_id in &tab.written {
                ensure!(
                    tab.answered.contains_key(op_id),
                    "every live tab hears the answer to every op it wrote",
                    "tab {t}: {op_id} was never answered to it"
                );
            }
        }
        Ok(())
    }
}

/// The engine's entries: values and versions.
fn engine_entries(replica: &Replica) -> BTreeMap<Slot, (Value, u64)> {
    let engine = replica.engine();
    let mut out = BTreeMap::new();
    for kind in engine.kinds().expect("the engine is open") {
        for (key, e) in engine.list(kind, &[]).expect("the engine is open") {
            out.insert((kind.to_owned(), key.to_owned()), (e.value.clone(), e.version));
        }
    }
    out
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Runs one seed; the failure's message, if it failed.
fn run_seed(seed: u64, trace: bool, stats: &mut Stats) -> Option<String> {
    let replay = format!("replay: ZESTOR_SIM_SEED={seed} {REPLAY}");
    let run = |record: bool| {
        catch_unwind(AssertUnwindSafe(|| {
            let mut sim = Sim::new(seed, trace, record);
            let result = sim.run();
            (result, sim.stats, sim.recent)
        }))
    };
    match run(false) {
        Ok((Ok(()), s, _)) => {
            stats.add(&s);
            None
        }
        Ok((Err(f), _, _)) => {
            // The same run again, keeping its last events (a traced run
            // kept them already).
            let again = if trace {
                Ok((Ok(()), Stats::default(), VecDeque::new()))
            } else {
                run(true)
            };
            let recent: Vec<String> = match again {
                Ok((_, _, recent)) => recent.into_iter().collect(),
                Err(_) => Vec::new(),
            };
            Some(format!(
                "seed {seed}: invariant broken: {}\n  {}\n{replay}\nlast events:\n{}",
                f.invariant,
                f.detail,
                recent.join("\n")
            ))
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            Some(format!("seed {seed}: panicked: {what}\n{replay}"))
        }
    }
}

#[test]
fn tabs_and_devices_converge_with_the_server_under_faults() {
    let trace = env("ZESTOR_SIM_TRACE").is_some_and(|v| v != "0");
    let keep_going = env("ZESTOR_SIM_KEEP_GOING").is_some_and(|v| v != "0");
    let seeds: Vec<u64> = match env("ZESTOR_SIM_SEED") {
        Some(s) => vec![s.parse().expect("ZESTOR_SIM_SEED is a number")],
        None => {
            let n = env("ZESTOR_SIM_SEEDS").map_or(500, |s| s.parse().expect("ZESTOR_SIM_SEEDS is a number"));
            (0..n).collect()
        }
    };
    let mut stats = Stats::default();
    let mut failures = Vec::new();
    for &seed in &seeds {
        if let Some(message) = run_seed(seed, trace, &mut stats) {
            if !keep_going {
                panic!("{message}");
            }
            let _ = writeln!(std::io::stderr(), "{message}\n");
            failures.push(seed);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} seeds failed: {failures:?}\nreplay one: ZESTOR_SIM_SEED=n {REPLAY}",
        failures.len(),
        seeds.len()
    );
    eprintln!("{stats:?}");
    if seeds.len() >= 200 {
        // The runs reach what they are meant to.
        let s = &stats;
        let reached = [
            ("a tab taking over the lock", s.takeovers),
            ("a compacted snapshot", s.compacted),
            ("a lagged snapshot", s.lagged),
            ("an internal reject (the op sent again)", s.internal),
            ("a reload after a snapshot", s.reloads),
            ("a socket breaking", s.breaks),
            ("a server restart", s.restarts),
            ("a heartbeat timeout", s.timeouts),
            ("a token expiring mid-session (a fresh one next time)", s.expiries),
            ("a closed socket's frame reaching the server", s.orphan_frames),
            ("a write landing after its tab unloaded", s.landed_uncommitted),
            ("a storage write failing", s.storage_failures),
            ("a write refused for a read-only token", s.refused_locally),
            ("a conflict reject", s.conflicts),
            ("a validation reject", s.validation),
            ("a forbidden reject", s.forbidden),
        ];
        for (what, n) in reached {
            assert!(n > 0, "no run reached {what}");
        }
    }
}
