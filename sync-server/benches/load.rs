//! Load on the sync server over real WebSockets on 127.0.0.1, with
//! baselines measured in the same run.
//!
//! Run with `cargo bench -p sync-server --bench load` (add `-- --quick` for
//! a short smoke run, or a case name — `latency`, `slow`, `writes`, `sync`,
//! `memory`, `scale` — to run only the cases whose name contains it). The
//! memory and scale cases run the release binary
//! `target/release/sync-server` as a child process:
//! build it first with `cargo build --release -p sync-server --bin
//! sync-server` (it is skipped, with that hint, when missing;
//! `ZESTOR_REQUIRE_ALL=1` makes that an error, as it does a missing
//! PostgreSQL). When `ZESTOR_BENCH_OUT` names a directory the results are
//! also written there as `server.json` (`bench/RESULTS-FORMAT.md`).
//!
//! 1. Propagation latency: N subscribed clients (hello, then the initial
//!    snapshot), one writer pushing one `set` per push at a fixed rate, the
//!    value stamped with its send time (a shared `Instant`); latency = receipt
//!    of the `changes` frame at a subscriber − send time, over every
//!    (subscriber, event) pair; p50 and p99. 100 subscribers at 50, 100, 200
//!    and 400 writes/s, 1,000 at 50 and 200. Baseline at each point: a raw
//!    tokio-tungstenite broadcast server (it answers `hello` with a minimal
//!    `welcome` and `snapshot`, then forwards every frame of the writer
//!    connection to every other one); the writer sends it frames shaped (and
//!    sized) like the `changes` frames the sync server sends, so the
//!    subscribers run the same code on both.
//! 2. Slow client: the 100-subscriber case at 200 writes/s with one more
//!    client that completes the handshake (welcome, snapshot) and then never
//!    reads its socket, against the same case without it. Goal: every other
//!    subscriber gets every event, their p99 within 2× of the run without.
//!    What the server does with the slow client is recorded.
//! 3. Acknowledged durable writes/s through the server: 1 client, then 32
//!    concurrent clients, each pushing one op and awaiting its `ack` before
//!    the next (every client is subscribed, so it also receives everyone's
//!    changes), on SQLite (`synchronous=FULL`) and on PostgreSQL (a fresh
//!    schema per server). Baselines: the raw driver upserting the same JSON
//!    with the same durability, as many per transaction as clients (the
//!    design's goals: ≥ 80 % of raw rusqlite, ≥ 50 % of raw pipelined
//!    tokio-postgres, judged on the 32-client case), and `Durable::set` on
//!    the same backend directly with as many concurrent writers (which
//!    splits the gap into store and server).
//! 4. Initial sync: a server with 100,000 entries (~100-byte values) in its
//!    SQLite file; a fresh client says hello without `since` and reads (and
//!    parses) the snapshot until `done: true`. Baseline: a raw
//!    tokio-tungstenite server sending the same frames (captured from the
//!    sync server) to the same client code.
//! 5. Memory per idle connection of the server binary: VmRSS of the child
//!    before and after opening N connections that completed hello, welcome
//!    and the snapshot (10,000; 500 with `--quick`; fewer if the open-file
//!    limit does not allow them, which is then printed). Goal: 10,000 idle
//!    connections in ≤ 1 GiB. Baselines: this binary re-executed as a raw
//!    tokio-tungstenite server (answers `hello` with `welcome` and
//!    `snapshot`, then only reads) with tungstenite's default 128 KiB read
//!    buffer, and with 8 KiB.
//! 6. Fan-out at scale, the server binary as a process of its own: 10,000
//!    subscribers at 20 writes/s on SQLite (goal: every event delivered, and
//!    ≤ 100 KiB of server RSS per connection while fanning out), and 1,000
//!    subscribers at 200 writes/s on PostgreSQL, one server process against
//!    the same subscribers split over two processes sharing the database
//!    (the writer on the first). Besides latency, the server processes' CPU
//!    time per delivered event, from /proc, between the moment every
//!    subscriber is in and the last event. Baseline: the raw broadcast
//!    server of case 1, this binary re-executed as a process of its own.
//!
//! Server and clients of cases 1–4 share one tokio runtime with 2 worker
//! threads in this process.

mod common;

use common::{
    KEYS, Pg, Plot, Results, Row, Series, crate_version, die, raw_sqlite_kv, runtime, skipped,
    sqlite_version, thousands, value, write_loops,
};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use store_core::sync::session::ServerConfig;
use store_core::{SetOptions, StoreOptions};
use sync_server::backend::sqlite::{self, SqliteOptions, Synchronous};
use sync_server::server::{AppState, Database, Metrics, Stores, Tokens, serve};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The clock every send stamp and receipt is read from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ns() -> u64 {
    EPOCH.elapsed().as_nanos() as u64
}

/// Write rates of the 100-subscriber sweep (also the plot's x values).
const RATES: [u64; 4] = [50, 100, 200, 400];
const SUBSCRIBERS: usize = 100;
/// Write rates of the 1,000-subscriber sweep.
const MANY_RATES: [u64; 2] = [50, 200];
const MANY_SUBSCRIBERS: usize = 1_000;
/// The rate of the slow-client case and of the `synchronous=NORMAL`
/// diagnostic.
const SLOW_RATE: u64 = 200;
/// The slow client's socket receive buffer: small, so the server's sends to
/// it block within about a second instead of after the loopback buffers
/// (hundreds of KiB) fill.
const SLOW_RCVBUF: u32 = 4 * 1024;
/// Concurrent clients of the write case.
const WRITERS: u64 = 32;
/// The sync server's `send_timeout` (as the binary's default).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Makes a latency value about 130 bytes of JSON.
const PAD: &str =
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
/// Any single wait on a socket.
const WAIT: Duration = Duration::from_secs(10);
/// File descriptors kept free of client sockets (database files, the
/// runtime, PostgreSQL connections, ...).
const FD_RESERVE: u64 = 256;

fn section_latency() -> &'static str {
    "Propagation latency"
}

// ---- clients ----

/// Small read buffers, so 10,000 clients stay cheap for this process.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(8 * 1024)
}

async fn connect(address: SocketAddr) -> Result<Socket, String> {
    let url = format!("ws://{address}/sync");
    let connecting = tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true);
    match tokio::time::timeout(WAIT, connecting).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connect timed out".into()),
    }
}

/// Connects with a socket receive buffer of `rcvbuf` bytes.
async fn connect_small(address: SocketAddr, rcvbuf: u32) -> Result<Socket, String> {
    let tcp = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    tcp.set_recv_buffer_size(rcvbuf).map_err(|e| e.to_string())?;
    let tcp = tcp.connect(address).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let url = format!("ws://{address}/sync");
    let handshake =
        tokio_tungstenite::client_async_with_config(url, MaybeTlsStream::Plain(tcp), Some(client_config()));
    match tokio::time::timeout(WAIT, handshake).await {
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("handshake timed out".into()),
    }
}

async fn send(socket: &mut Socket, message: &Value) -> Result<(), String> {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .map_err(|e| e.to_string())
}

/// The next text frame as JSON (pings skipped).
async fn recv(socket: &mut Socket) -> Result<Value, String> {
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                if v["type"] != "ping" {
                    return Ok(v);
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => return Err(format!("closed: {frame:?}")),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("the socket ended".into()),
            Err(_) => return Err("no message within 10 s".into()),
        }
    }
}

/// Which kinds a client subscribes to (`None`: all).
type Kinds = Option<&'static [&'static str]>;

fn hello(client: &str, kinds: Kinds) -> Value {
    let mut hello =
        json!({"type": "hello", "protocol": 1, "namespace": "bench", "token": "bench", "client_id": client});
    if let Some(kinds) = kinds {
        hello["kinds"] = json!(kinds);
    }
    hello
}

/// Says hello on `socket` and waits for `welcome` and the complete snapshot.
async fn handshake(mut socket: Socket, client: &str, kinds: Kinds) -> Result<Socket, String> {
    send(&mut socket, &hello(client, kinds)).await?;
    let welcome = recv(&mut socket).await?;
    if welcome["type"] != "welcome" {
        return Err(format!("expected welcome, got {welcome}"));
    }
    loop {
        let m = recv(&mut socket).await?;
        match m["type"].as_str() {
            Some("snapshot") if m["done"] == true => return Ok(socket),
            Some("snapshot") => {}
            _ => return Err(format!("expected a snapshot, got {m}")),
        }
    }
}

/// Connects, says hello and waits for `welcome` and the complete snapshot.
async fn try_subscribe(address: SocketAddr, client: &str, kinds: Kinds) -> Result<Socket, String> {
    handshake(connect(address).await?, client, kinds).await
}

async fn subscribe(address: SocketAddr, client: &str, kinds: Kinds) -> Socket {
    try_subscribe(address, client, kinds)
        .await
        .unwrap_or_else(|e| die(&format!("client {client}: {e}")))
}

/// `n` subscribed clients, 32 connecting at a time.
async fn subscribe_many(address: SocketAddr, n: usize, kinds: Kinds) -> Vec<Socket> {
    stream::iter(0..n)
        .map(|i| async move { subscribe(address, &format!("s{i}"), kinds).await })
        .buffered(32)
        .collect()
        .await
}

// ---- the in-process sync server (as tests/server.rs) ----

struct Server {
    address: SocketAddr,
    state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

/// A listener on a free loopback port, and its address.
async fn listen() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| die(&format!("cannot listen on 127.0.0.1: {e}")));
    let address = listener.local_addr().unwrap();
    (listener, address)
}

/// A server on port 0 over `database`; `sync` is SQLite's `synchronous`
/// (FULL everywhere but one latency diagnostic).
async fn start(database: Database, sync: Synchronous, send_timeout: Duration) -> Server {
    let (stop_tx, shutdown) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        stores: Stores::new(database, sync, StoreOptions::new()),
        auth: Tokens::open_to_all().into(),
        session: ServerConfig {
            heartbeat_ms: 600_000,
            ..ServerConfig::default()
        },
        metrics: Metrics::default(),
        allowed_origins: vec![],
        send_timeout,
        shutdown,
    });
    let (listener, address) = listen().await;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = state.clone();
    let done = tokio::spawn(async move {
        if let Err(e) = serve(listener, serving, None, stop_tx, async {
            let _ = stopped.await;
        })
        .await
        {
            die(&format!("the sync server failed: {e}"));
        }
    });
    Server {
        address,
        state,
        stop: Some(stop),
        done,
    }
}

async fn start_sqlite(db: &Path, sync: Synchronous) -> Server {
    start(Database::Sqlite(db.to_owned()), sync, SEND_TIMEOUT).await
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        match tokio::time::timeout(Duration::from_secs(15), self.done).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => die(&format!("the sync server's task failed: {e}")),
            Err(_) => die("the sync server did not shut down within 15 s"),
        }
    }
}

// ---- the raw broadcast server (baseline of case 1) ----

/// A raw server's side of a client's handshake: accepts the WebSocket,
/// reads the `hello`, subscribes to `fanout` and answers with a minimal
/// `welcome` and `snapshot`. `None` if the client went away meanwhile.
async fn raw_handshake(
    tcp: TcpStream,
    fanout: &tokio::sync::broadcast::Sender<Message>,
) -> Option<(
    WebSocketStream<TcpStream>,
    Value,
    tokio::sync::broadcast::Receiver<Message>,
)> {
    let mut ws = tokio_tungstenite::accept_async(tcp).await.ok()?;
    let Some(Ok(Message::Text(hello))) = ws.next().await else {
        return None;
    };
    let hello: Value = serde_json::from_str(&hello).unwrap_or_default();
    // Before the welcome: every frame sent after it reaches this client.
    let feed = fanout.subscribe();
    for m in [
        json!({"type": "welcome", "protocol": 1, "namespace": "bench", "rights": "read_write"}),
        json!({"type": "snapshot", "rev": 0, "reason": "initial", "entries": [], "done": true}),
    ] {
        ws.send(Message::Text(m.to_string().into())).await.ok()?;
    }
    Some((ws, hello, feed))
}

/// Accepts WebSockets; answers each `hello` with a minimal `welcome` and
/// `snapshot`; forwards every later frame of the client `writer` to all the
/// others. Dropping the returned handle's task (abort) ends everything.
async fn start_raw() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let (listener, address) = listen().await;
    let task = tokio::spawn(async move {
        let (fanout, _) = tokio::sync::broadcast::channel::<Message>(8_192);
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let fanout = fanout.clone();
            connections.spawn(async move {
                let Some((mut ws, first, mut feed)) = raw_handshake(tcp, &fanout).await else {
                    return;
                };
                if first["client_id"] == "writer" {
                    drop(feed);
                    while let Some(Ok(frame)) = ws.next().await {
                        if frame.is_text() {
                            let _ = fanout.send(frame);
                        }
                    }
                } else {
                    while let Ok(frame) = feed.recv().await {
                        if ws.send(frame).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (address, task)
}

/// How long the raw relay waits for every connection's push.
const RELAY_LINGER: Duration = Duration::from_millis(1);

/// A raw WebSocket relay: the transport's share of an acknowledged write,
/// with nothing stored and no rule checked. Accepts WebSockets as
/// [`start_raw`] does. Connections hand their pushes to one relay task,
/// which waits up to [`RELAY_LINGER`] for a push from every connection,
/// gives each op the next revision, sends the batch to every connection as
/// one `changes` frame (encoded once) and each pusher its `ack`s. A
/// connection sends what it holds, flushed once. With clients that have
/// one push in flight, every round is one batch: the transport at its
/// best, without the sync server's store and session.
async fn start_raw_relay() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    type Acks = tokio::sync::mpsc::UnboundedSender<Message>;
    let (listener, address) = listen().await;
    let task = tokio::spawn(async move {
        let (fanout, _) = tokio::sync::broadcast::channel::<Message>(8_192);
        let (pushes, mut pending) = tokio::sync::mpsc::unbounded_channel::<(Value, Acks)>();
        let relay = fanout.clone();
        let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = connected.clone();
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(async move {
            let mut head = 0u64;
            while let Some(first) = pending.recv().await {
                // Every connection's push in one batch (each client has one
                // in flight), or what came within the linger.
                let mut batch = vec![first];
                let until = tokio::time::Instant::now() + RELAY_LINGER;
                while batch.len() < connected.load(Ordering::Relaxed) {
                    match tokio::time::timeout_at(until, pending.recv()).await {
                        Ok(Some(next)) => batch.push(next),
                        _ => break,
                    }
                }
                let mut events = Vec::new();
                let mut acks = Vec::new();
                for (push, to) in batch {
                    for op in push["ops"].as_array().into_iter().flatten() {
                        head += 1;
                        events.push(json!({"kind": op["kind"], "key": op["key"], "type": "update",
                            "value": op["value"], "version": head, "rev": head}));
                        let ack = json!({"type": "ack", "op_id": op["op_id"], "result": "updated",
                            "version": head, "rev": head});
                        acks.push((to.clone(), ack));
                    }
                }
                let changes = json!({"type": "changes", "rev": head, "events": events});
                let _ = relay.send(Message::Text(changes.to_string().into()));
                for (to, ack) in acks {
                    let _ = to.send(Message::Text(ack.to_string().into()));
                }
            }
        });
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let (fanout, pushes, counted) = (fanout.clone(), pushes.clone(), counted.clone());
            tasks.spawn(async move {
                let Some((ws, _, mut feed)) = raw_handshake(tcp, &fanout).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::Relaxed);
                let (acks, mut answered) = tokio::sync::mpsc::unbounded_channel();
                let (mut tx, mut rx) = ws.split();
                loop {
                    let mut out = Vec::new();
                    tokio::select! {
                        frame = rx.next() => {
                            let Some(Ok(frame)) = frame else { return };
                            if let Message::Text(text) = frame {
                                let push: Value = serde_json::from_str(&text).unwrap_or_default();
                                let _ = pushes.send((push, acks.clone()));
                            }
                        }
                        Some(ack) = answered.recv() => out.push(ack),
                        m = feed.recv() => match m {
                            Ok(m) => out.push(m),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        },
                    }
                    while let Ok(m) = feed.try_recv() {
                        out.push(m);
                    }
                    while let Ok(m) = answered.try_recv() {
                        out.push(m);
                    }
                    if out.is_empty() {
                        continue;
                    }
                    for m in out {
                        if tx.feed(m).await.is_err() {
                            return;
                        }
                    }
                    if tx.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (address, task)
}

// ---- case 1: propagation latency ----

/// Receipt − send time of every event reaching this subscriber, until it
/// has `expected` of them or `deadline` passes; the socket is handed back
/// (still open).
async fn measure(mut socket: Socket, expected: usize, deadline: Instant) -> (Vec<u64>, Socket) {
    let mut latencies = Vec::with_capacity(expected);
    while latencies.len() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(frame))) => frame,
            _ => break,
        };
        let received = now_ns();
        if let Message::Text(text) = frame {
            let Ok(v) = serde_json::from_str::<Value>(&text) else {
                break;
            };
            if v["type"] == "changes" {
                for event in v["events"].as_array().into_iter().flatten() {
                    if let Some(sent) = event["value"]["t"].as_u64() {
                        latencies.push(received.saturating_sub(sent));
                    }
                }
            }
        }
    }
    (latencies, socket)
}

/// One latency run: `subscribers` clients subscribed to `kinds`, and a
/// writer (also subscribed to `kinds`) pushing `count` sets at `rate` per
/// second.
#[derive(Clone, Copy)]
struct Load<'a> {
    raw: bool,
    subscribers: usize,
    rate: u64,
    count: u64,
    kinds: Kinds,
    /// If given, set to the number of connections the bench holds besides
    /// a slow client: `subscribers + 1` while the writer is connected,
    /// `subscribers` once it is gone.
    open: Option<&'a AtomicU64>,
}

/// Pushes the sets of `load`, each stamped with its send time. To the raw
/// server it sends the `changes` frame subscribers should get instead of a
/// `push`. Returns once every push was sent and (sync server) acknowledged.
async fn write_at_rate(address: SocketAddr, load: Load<'_>) {
    let Load { raw, rate, count, .. } = load;
    let socket = subscribe(address, "writer", load.kinds).await;
    if let Some(open) = load.open {
        open.store(load.subscribers as u64 + 1, Ordering::Relaxed);
    }
    let (mut tx, mut rx) = socket.split();
    let acks = tokio::spawn(async move {
        let mut acks = 0;
        while !raw && acks < count {
            match tokio::time::timeout(WAIT, rx.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let v: Value = serde_json::from_str(&text).unwrap_or_default();
                    if v["type"] == "ack" {
                        acks += 1;
                    }
                    if v["type"] == "reject" {
                        die(&format!("the writer's push was rejected: {v}"));
                    }
                }
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        (acks, rx)
    });
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
    for i in 0..count {
        tick.tick().await;
        let key = format!("k{}", i % KEYS);
        let value = json!({"t": now_ns(), "pad": PAD});
        let frame = if raw {
            json!({"type": "changes", "rev": i + 1, "events": [
                {"kind": "task", "key": key, "type": "update", "value": value, "version": i + 1, "rev": i + 1}
            ]})
        } else {
            json!({"type": "push", "ops": [
                {"op_id": format!("w{i}"), "kind": "task", "key": key, "action": "set", "value": value}
            ]})
        };
        if let Err(e) = tx.send(Message::Text(frame.to_string().into())).await {
            die(&format!("the writer's socket failed: {e}"));
        }
    }
    let (acked, rx) = acks.await.unwrap();
    if !raw && acked != count {
        die(&format!(
            "only {acked} of the writer's {count} pushes were acknowledged"
        ));
    }
    drop(rx.reunite(tx));
    if let Some(open) = load.open {
        open.store(load.subscribers as u64, Ordering::Relaxed);
    }
}

struct Latency {
    /// Sorted, in ns.
    samples: Vec<u64>,
    expected: usize,
}

impl Latency {
    /// In ms.
    fn quantile(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let i = ((self.samples.len() - 1) as f64 * q).round() as usize;
        self.samples[i] as f64 / 1e6
    }

    fn complete(&self) -> bool {
        self.samples.len() == self.expected
    }

    /// `""`, or ` (N of M events received)` when some were missing.
    fn shortfall(&self) -> String {
        if self.complete() {
            String::new()
        } else {
            format!(" ({} of {} events received)", self.samples.len(), self.expected)
        }
    }
}

/// `load` against the server at `address`; the subscribers' sockets are
/// handed back still open.
async fn latency(address: SocketAddr, load: Load<'_>) -> (Latency, Vec<Socket>) {
    latency_across(address, &[address], load, &|| {}).await
}

/// `load` with its writer on `writer` and its subscribers spread evenly
/// over `servers` (several servers on one database); `subscribed` is
/// called once they all are, before the writes. The subscribers' sockets
/// are handed back still open.
async fn latency_across(
    writer: SocketAddr,
    servers: &[SocketAddr],
    load: Load<'_>,
    subscribed: &dyn Fn(),
) -> (Latency, Vec<Socket>) {
    let Load {
        subscribers, count, ..
    } = load;
    let mut sockets = Vec::with_capacity(subscribers);
    for (i, &server) in servers.iter().enumerate() {
        let share = subscribers / servers.len() + usize::from(i < subscribers % servers.len());
        sockets.extend(subscribe_many(server, share, load.kinds).await);
    }
    subscribed();
    let deadline = Instant::now() + Duration::from_millis(count * 1_000 / load.rate) + Duration::from_secs(5);
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|s| tokio::spawn(measure(s, count as usize, deadline)))
        .collect();
    write_at_rate(writer, load).await;
    let mut samples = Vec::with_capacity(subscribers * count as usize);
    let mut sockets = Vec::with_capacity(subscribers);
    for t in tasks {
        let (s, socket) = t.await.unwrap();
        samples.extend(s);
        sockets.push(socket);
    }
    samples.sort_unstable();
    let l = Latency {
        samples,
        expected: subscribers * count as usize,
    };
    (l, sockets)
}

/// One point of a sweep: fresh servers, raw first, then the sync server.
fn latency_point(rt: &Runtime, db: &Path, subscribers: usize, rate: u64, secs: f64) -> (Latency, Latency) {
    let load = Load {
        raw: true,
        subscribers,
        rate,
        count: (rate as f64 * secs).round() as u64,
        kinds: None,
        open: None,
    };
    let (raw_address, raw_task) = rt.block_on(start_raw());
    let (raw, sockets) = rt.block_on(latency(raw_address, load));
    drop(sockets);
    raw_task.abort();
    let server = rt.block_on(start_sqlite(db, Synchronous::Full));
    let (zestor, sockets) = rt.block_on(latency(server.address, Load { raw: false, ..load }));
    drop(sockets);
    rt.block_on(server.stop());
    (raw, zestor)
}

fn latency_header(title: &str) {
    println!("{title}");
    println!(
        "{:<44} | {:>9} | {:>9} | {:>9} | {:>19}",
        "case", "p50 ms", "p99 ms", "max ms", "events received"
    );
    println!("{}", "-".repeat(102));
}

fn latency_line(name: &str, l: &Latency) {
    println!(
        "{name:<44} | {:>9.2} | {:>9.2} | {:>9.2} | {:>9} / {:>7}",
        l.quantile(0.5),
        l.quantile(0.99),
        l.quantile(1.0),
        l.samples.len(),
        l.expected
    );
}

/// The points (subscribers, writes/s) that judge goal `server-fanout-p99`:
/// every event delivered, with a p99 at most 3× the raw broadcast's.
const FANOUT_GOAL_POINTS: [(usize, u64); 3] = [(100, 400), (1_000, 200), (10_000, 20)];

/// p50 and p99 rows of one point, against the raw broadcast.
fn latency_rows(results: &mut Results, point: (usize, u64), case: &str, zestor: &Latency, raw: &Latency) {
    latency_rows_in(results, section_latency(), point, case, zestor, raw);
}

/// p50 and p99 rows of one point in `section`, against the raw broadcast;
/// the p99 row of a goal point carries the verdict.
fn latency_rows_in(
    results: &mut Results,
    section: &str,
    point: (usize, u64),
    case: &str,
    zestor: &Latency,
    raw: &Latency,
) {
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        let (z, r) = (zestor.quantile(q), raw.quantile(q));
        if z.is_nan() || r.is_nan() {
            die(&format!("{case}: no event reached the subscribers"));
        }
        let mut row = Row::new(section, format!("{name}, {case}{}", zestor.shortfall()), z, "ms").vs(
            r,
            format!("raw tokio-tungstenite broadcast{}", raw.shortfall()),
            "x",
        );
        if q == 0.99 && FANOUT_GOAL_POINTS.contains(&point) {
            row = row.goal(
                "propagation p99 <= 3x the raw broadcast, every event delivered",
                "server-fanout-p99",
                z <= 3.0 * r && zestor.complete(),
            );
        }
        results.row(row);
    }
}

/// How many in-process clients fit the open-file limit (each costs this
/// process two descriptors: its socket and the server's).
fn clients_that_fit(wanted: usize, what: &str, results: &mut Results) -> usize {
    let limit = open_file_limit().unwrap_or(1_024);
    let fits = (limit.saturating_sub(FD_RESERVE) / 2) as usize;
    if fits >= wanted {
        return wanted;
    }
    if fits < 2 {
        die(&format!(
            "the open-file limit is {limit}: too low for {what}; raise it with `ulimit -n`"
        ));
    }
    let line = format!(
        "{what}: only {fits} of {wanted} clients, the open-file limit is {limit} (raise `ulimit -n`)"
    );
    println!("   ({line})");
    results.note(line);
    fits
}

fn latency_case(rt: &Runtime, dir: &Path, quick: bool, results: &mut Results) {
    let secs = if quick { 1.0 } else { 5.0 };
    let many = clients_that_fit(MANY_SUBSCRIBERS, "the 1,000-client latency sweep", results);
    latency_header(&format!(
        "1. propagation latency: 1 writer at a fixed rate for {secs} s per point, fresh servers; \
         raw = tokio-tungstenite broadcast"
    ));
    let mut plot: [Vec<[f64; 2]>; 4] = Default::default();
    let mut n = 0;
    let mut db = |name: &str| {
        n += 1;
        dir.join(format!("{name}-{n}.db"))
    };
    for (subscribers, rates) in [(SUBSCRIBERS, &RATES[..]), (many, &MANY_RATES[..])] {
        for &rate in rates {
            let (raw, zestor) = latency_point(rt, &db("latency"), subscribers, rate, secs);
            let case = format!("{} clients, {rate} writes/s", thousands(subscribers as u64));
            latency_line(&format!("raw, {case}"), &raw);
            latency_line(&format!("zestor, {case}"), &zestor);
            latency_rows(results, (subscribers, rate), &case, &zestor, &raw);
            if subscribers == SUBSCRIBERS {
                let x = rate as f64;
                for (series, value) in plot.iter_mut().zip([
                    zestor.quantile(0.5),
                    zestor.quantile(0.99),
                    raw.quantile(0.5),
                    raw.quantile(0.99),
                ]) {
                    series.push([x, common::round(value)]);
                }
            }
        }
    }
    // Diagnostic: the fsync on the path.
    let server = rt.block_on(start_sqlite(&db("latency-normal"), Synchronous::Normal));
    let count = (SLOW_RATE as f64 * secs) as u64;
    let load = Load {
        raw: false,
        subscribers: SUBSCRIBERS,
        rate: SLOW_RATE,
        count,
        kinds: None,
        open: None,
    };
    let (normal, sockets) = rt.block_on(latency(server.address, load));
    drop(sockets);
    rt.block_on(server.stop());
    let case = format!("{SUBSCRIBERS} clients, {SLOW_RATE} writes/s, synchronous=NORMAL (diagnostic)");
    latency_line(&format!("zestor, {case}"), &normal);
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        results.row(Row::new(
            section_latency(),
            format!("{name}, {case}{}", normal.shortfall()),
            normal.quantile(q),
            "ms",
        ));
    }
    let names = [
        "Zestor p50",
        "Zestor p99",
        "raw broadcast p50",
        "raw broadcast p99",
    ];
    results.plot = Some(Plot {
        title: format!("Propagation latency vs write rate, {SUBSCRIBERS} clients"),
        x_label: "writes/s".into(),
        y_label: "latency (ms)".into(),
        series: names
            .iter()
            .zip(plot)
            .map(|(name, points)| Series {
                name: (*name).into(),
                points,
            })
            .collect(),
    });
    results.condition(format!(
        "propagation latency: 1 writer client pushing one set per push at a fixed rate, values ~130 bytes \
         stamped with their send time; latency = receipt of the changes frame at a subscriber − send time, \
         over every (subscriber, event) pair; {secs} s per point; {SUBSCRIBERS} subscribers at {RATES:?} \
         writes/s, {} at {MANY_RATES:?}; fresh server (and SQLite file) per point",
        thousands(many as u64)
    ));
    results.condition(
        "latency baseline: a raw tokio-tungstenite server answering hello with a minimal welcome and \
         snapshot, then forwarding the writer's frames (shaped and sized like the sync server's changes \
         frames) to every subscriber through a tokio broadcast channel; same client code",
    );
}

// ---- case 2: a slow client ----

/// What became of the slow client.
struct SlowFate {
    /// When the server dropped the connection, since the fill was written
    /// (`None`: still open when the bench stopped waiting).
    cut_after: Option<Duration>,
    /// How long the bench watched it, since the fill.
    watched: Duration,
    /// `changes` events of kind `task` it had been sent (read afterwards).
    events: usize,
    /// How its stream ended when read afterwards.
    ending: String,
}

/// The subscribers of the slow-client case (both runs) read only this kind,
/// so the fill (kind `fill`) reaches the slow client alone.
const TASKS: Kinds = Some(&["task"]);

/// Bytes written (as kind `fill`) before the slow-client runs: more than the
/// kernel's largest TCP send buffer plus a margin, so that the server's
/// socket to the slow client is full and its sends to it block.
fn fill_bytes() -> usize {
    let max_wmem = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|t| t.split_whitespace().nth(2)?.parse::<usize>().ok())
        .unwrap_or(4 << 20);
    max_wmem + (1 << 20)
}

/// Writes `bytes` of kind `fill` through the server's own store, in 256 KiB
/// values.
async fn fill(server: &Server, bytes: usize) {
    let store = server
        .state
        .stores
        .get("bench")
        .await
        .unwrap_or_else(|e| die(&format!("the server's store: {e}")));
    let chunk = "f".repeat(256 * 1024);
    for i in 0..bytes.div_ceil(chunk.len()) {
        store
            .set(
                "fill",
                &format!("f{i}"),
                json!({ "pad": chunk }),
                SetOptions::default(),
            )
            .await
            .unwrap_or_else(|e| die(&format!("writing the fill: {e}")));
    }
}

fn slow_case(rt: &Runtime, dir: &Path, quick: bool, results: &mut Results) {
    let secs = if quick { 1.0 } else { 5.0 };
    let load = Load {
        raw: false,
        subscribers: SUBSCRIBERS,
        rate: SLOW_RATE,
        count: (SLOW_RATE as f64 * secs) as u64,
        kinds: TASKS,
        open: None,
    };
    // Quick runs would otherwise wait 10 s for the cut.
    let send_timeout = if quick {
        Duration::from_secs(1)
    } else {
        SEND_TIMEOUT
    };
    let fill_bytes = fill_bytes();
    println!();
    latency_header(&format!(
        "2. slow client: {SUBSCRIBERS} subscribers at {SLOW_RATE} writes/s for {secs} s, with and without \
         one client that never reads (server send_timeout {} s, fill {:.1} MiB)",
        send_timeout.as_secs(),
        fill_bytes as f64 / 1_048_576.0
    ));
    let without = rt.block_on(async {
        let db = Database::Sqlite(dir.join("slow-without.db"));
        let server = start(db, Synchronous::Full, send_timeout).await;
        fill(&server, fill_bytes).await;
        let (l, sockets) = latency(server.address, load).await;
        drop(sockets);
        server.stop().await;
        l
    });
    let (with, fate) = rt.block_on(async {
        let db = Database::Sqlite(dir.join("slow-with.db"));
        let server = start(db, Synchronous::Full, send_timeout).await;
        let slow = match connect_small(server.address, SLOW_RCVBUF).await {
            Ok(s) => handshake(s, "slow", None).await,
            Err(e) => Err(e),
        }
        .unwrap_or_else(|e| die(&format!("the slow client: {e}")));
        fill(&server, fill_bytes).await;
        let since = Instant::now();
        // Watches the server's connection count: the slow client is gone
        // when it drops to what the bench itself still holds.
        let open = Arc::new(AtomicU64::new(u64::MAX));
        let cut = Arc::new(Mutex::new(None::<Duration>));
        let monitor = {
            let (open, cut, state) = (open.clone(), cut.clone(), server.state.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let others = open.load(Ordering::Relaxed);
                    if others != u64::MAX && state.metrics.connections.load(Ordering::Relaxed) <= others {
                        *cut.lock().unwrap() = Some(since.elapsed());
                        return;
                    }
                }
            })
        };
        let (l, sockets) = latency(
            server.address,
            Load {
                open: Some(&open),
                ..load
            },
        )
        .await;
        // Give the server until its send timeout has surely passed.
        let give_up = since + send_timeout + Duration::from_secs(5);
        while cut.lock().unwrap().is_none() && Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        monitor.abort();
        let watched = since.elapsed();
        let cut_after = *cut.lock().unwrap();
        let (events, ending) = drain(slow, cut_after.is_some()).await;
        drop(sockets);
        server.stop().await;
        (
            l,
            SlowFate {
                cut_after,
                watched,
                events,
                ending,
            },
        )
    });
    latency_line("without the slow client", &without);
    latency_line("with the slow client (others)", &with);
    let met = with.complete() && with.quantile(0.99) <= 2.0 * without.quantile(0.99);
    let fate_text = match fate.cut_after {
        Some(t) => format!(
            "the server dropped it {:.1} s after the fill; read afterwards, it had been sent {} of the {} \
             task events, then {}",
            t.as_secs_f64(),
            fate.events,
            load.count,
            fate.ending
        ),
        None => format!(
            "still open {:.1} s after the fill (the bench stopped waiting); it had been sent {} of the {} \
             task events; then {}",
            fate.watched.as_secs_f64(),
            fate.events,
            load.count,
            fate.ending
        ),
    };
    println!("   slow client: {fate_text}");
    println!(
        "   verdict: {} (others: all events {}, p99 {:.2} ms vs {:.2} ms without, limit 2x)",
        if met { "met" } else { "NOT MET" },
        if with.complete() {
            "received"
        } else {
            "NOT received"
        },
        with.quantile(0.99),
        without.quantile(0.99)
    );
    let case = format!("{SUBSCRIBERS} clients, {SLOW_RATE} writes/s");
    let section = "Slow client";
    results.row(
        Row::new(
            section,
            format!(
                "p99 of the other subscribers with one client that never reads, {case}{}",
                with.shortfall()
            ),
            with.quantile(0.99),
            "ms",
        )
        .vs(
            without.quantile(0.99),
            format!("same case without the slow client{}", without.shortfall()),
            "x",
        )
        .goal(
            "a slow client never stalls others: every other subscriber receives every event and their p99 \
             stays within 2x of the same run without the slow client",
            "server-slow-client",
            met,
        ),
    );
    results.row(
        Row::new(
            section,
            format!("p50 of the other subscribers with the slow client, {case}"),
            with.quantile(0.5),
            "ms",
        )
        .vs(without.quantile(0.5), "same case without the slow client", "x"),
    );
    let cut_row = match fate.cut_after {
        Some(t) => Row::new(
            section,
            format!("slow client cut off: {fate_text}"),
            t.as_secs_f64(),
            "s",
        ),
        None => Row::new(
            section,
            format!("slow client not cut off: {fate_text}"),
            fate.watched.as_secs_f64(),
            "s",
        ),
    };
    results.row(cut_row);
    results.condition(format!(
        "slow client: connects with a {} KiB socket receive buffer, completes hello/welcome/snapshot (all kinds), \
         then never reads; the {SUBSCRIBERS} subscribers and the writer subscribe to kind task only; before \
         each run {:.1} MiB of kind fill (more than the kernel's largest TCP send buffer) are written through \
         the server's store, so the server's socket to the slow client is full and its sends to it block for \
         the whole measured window (the run without the slow client writes the same fill)",
        SLOW_RCVBUF / 1024,
        fill_bytes as f64 / 1_048_576.0
    ));
    results.condition(format!(
        "what the server does with it (connection.rs): the connection task sends one frame at a time, each \
         with a timeout (send_timeout, {} s here{}); while a send waits it reads nothing else for that client: \
         its changes wait in the store's per-watcher buffer (4,096 events; overflow → a 'lagged' snapshot), \
         the session's own queue is capped at 1,024 messages (slow_consumer, close 4008); the write path and \
         the other connections never wait on it; a send that times out drops the connection without a close \
         frame",
        send_timeout.as_secs(),
        if quick {
            "; the binary's default, 10 s, in full runs"
        } else {
            ", the binary's default"
        }
    ));
}

/// Reads what the slow client was sent: (`changes` events of kind `task`,
/// how it ended).
/// When the server has not dropped it, reads for a second and stops.
async fn drain(mut socket: Socket, cut: bool) -> (usize, String) {
    let mut events = 0;
    let limit = if cut { WAIT } else { Duration::from_secs(1) };
    let until = Instant::now() + limit;
    let ending = loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                if let Ok(v) = serde_json::from_str::<Value>(&text) {
                    if v["type"] == "changes" {
                        let task = |e: &&Value| e["kind"] == "task";
                        events += v["events"]
                            .as_array()
                            .map_or(0, |e| e.iter().filter(task).count());
                    } else if v["type"] == "error" {
                        println!("   slow client got an error frame: {v}");
                    }
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                break match frame {
                    Some(f) => format!("a close frame, code {}", u16::from(f.code)),
                    None => "a close frame without a code".into(),
                };
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => break format!("no close frame ({e})"),
            Ok(None) => break "the end of the stream, no close frame".into(),
            Err(_) => break "nothing more".into(),
        }
    };
    (events, ending)
}

// ---- case 3: acknowledged writes/s ----

/// One client pushing one op at a time, each awaited, until `budget` has
/// passed since `start`: the number acknowledged.
async fn push_loop(mut socket: Socket, w: u64, writers: u64, start: Instant, budget: Duration) -> u64 {
    let mut done = 0u64;
    let mut i = w;
    while start.elapsed() < budget {
        let op_id = format!("{done}");
        let op = json!({"op_id": op_id, "kind": "task", "key": format!("k{}", i % KEYS), "action": "set", "value": value(i)});
        if let Err(e) = send(&mut socket, &json!({"type": "push", "ops": [op]})).await {
            die(&format!("client {w}: sending a push: {e}"));
        }
        loop {
            let frame = match tokio::time::timeout(WAIT, socket.next()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(Some(Err(e))) => die(&format!("client {w}: {e}")),
                Ok(None) => die(&format!("client {w}: the server closed the socket")),
                Err(_) => die(&format!("client {w}: no ack within 10 s")),
            };
            let Message::Text(text) = frame else { continue };
            // Only acks and rejects are parsed; the changes (everyone's) are not.
            if !text.contains("\"ack\"") && !text.contains("\"reject\"") {
                continue;
            }
            let v: Value = serde_json::from_str(&text).unwrap_or_default();
            if v["type"] != "ack" {
                die(&format!("client {w}: expected an ack, got {v}"));
            }
            if v["op_id"] == op_id.as_str() {
                break;
            }
        }
        done += 1;
        i += writers;
    }
    done
}

/// `writers` subscribed clients pushing to the server at `address`, each
/// awaiting its ack before the next, until `budget` has passed:
/// acknowledged writes/s.
async fn push_rate(address: SocketAddr, writers: u64, budget: Duration) -> f64 {
    let mut sockets = Vec::new();
    for w in 0..writers {
        sockets.push(subscribe(address, &format!("c{w}"), None).await);
    }
    let start = Instant::now();
    let loops = sockets
        .into_iter()
        .enumerate()
        .map(|(w, s)| tokio::spawn(push_loop(s, w as u64, writers, start, budget)))
        .collect::<Vec<_>>();
    let mut done = 0;
    for l in loops {
        done += l.await.unwrap();
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// `writers` subscribed clients pushing through a fresh server on
/// `database`: acknowledged writes/s.
async fn through_server(database: Database, writers: u64, budget: Duration) -> f64 {
    let server = start(database, Synchronous::Full, SEND_TIMEOUT).await;
    let rate = push_rate(server.address, writers, budget).await;
    server.stop().await;
    rate
}

/// `writers` subscribed clients pushing through the raw relay
/// ([`start_raw_relay`]): acknowledged writes/s with nothing stored.
async fn through_relay(writers: u64, budget: Duration) -> f64 {
    let (address, relay) = start_raw_relay().await;
    let rate = push_rate(address, writers, budget).await;
    relay.abort();
    rate
}

/// `writers` concurrent `Durable::set` loops on the SQLite backend.
async fn direct_sqlite(db: &Path, writers: u64, budget: Duration) -> f64 {
    let store = sqlite::open::<Value>(
        SqliteOptions::new(db, "bench").synchronous(Synchronous::Full),
        StoreOptions::new(),
    )
    .unwrap_or_else(|e| die(&format!("opening {}: {e}", db.display())));
    let (done, elapsed) = write_loops(&store, writers, budget).await;
    let rate = done as f64 / elapsed.as_secs_f64();
    store.close();
    rate
}

/// Best of two interleaved rounds of each side.
#[derive(Default)]
struct Writes {
    /// Through the sync server.
    server: f64,
    /// The raw upserts, as many per commit as clients.
    raw: f64,
    /// `Durable::set` directly, as many writers as clients.
    direct: f64,
    /// Through the raw relay, which stores nothing.
    relay: f64,
}

fn clients_text(n: u64) -> String {
    if n == 1 {
        "1 client".into()
    } else {
        format!("{n} clients")
    }
}

fn writes_line(name: &str, w: &Writes) {
    println!(
        "{name:<36} | {:>10.0} | {:>10.0} | {:>6.0}% | {:>10.0} | {:>6.0}% | {:>10.0} | {:>6.0}%",
        w.server,
        w.raw,
        w.server / w.raw * 100.0,
        w.direct,
        w.server / w.direct * 100.0,
        w.relay,
        w.server / w.relay * 100.0
    );
}

#[allow(clippy::too_many_arguments)]
fn writes_rows(
    results: &mut Results,
    backend: &str,
    writers: u64,
    w: &Writes,
    raw_label: String,
    direct_label: String,
    goal: (&str, &str, f64),
) {
    let section = "Acknowledged writes";
    let (goal_text, goal_id, share) = goal;
    let clients = clients_text(writers);
    let mut raw_row = Row::new(
        section,
        if writers == WRITERS {
            format!("{backend}, {clients} vs raw at {writers} per commit (the goal's row)")
        } else {
            format!(
                "{backend}, {clients} vs raw at 1 per commit (the goal is judged on the {WRITERS}-client row)"
            )
        },
        w.server,
        "writes/s",
    )
    .vs(w.raw, raw_label, "%");
    if writers == WRITERS {
        raw_row = raw_row.goal(goal_text, goal_id, w.server / w.raw >= share);
    }
    results.row(raw_row);
    results.row(
        Row::new(
            section,
            format!("{backend}, {clients} vs Durable::set directly (store vs server)"),
            w.server,
            "writes/s",
        )
        .vs(w.direct, direct_label, "%"),
    );
    results.row(
        Row::new(
            section,
            format!("{backend}, {clients} vs the raw relay (transport vs server)"),
            w.server,
            "writes/s",
        )
        .vs(w.relay, relay_label(writers), "%"),
    );
}

fn relay_label(writers: u64) -> String {
    format!(
        "raw tokio-tungstenite relay, nothing stored, {} pushing",
        clients_text(writers)
    )
}

fn writes_case(rt: &Runtime, dir: &Path, quick: bool, pg: Option<&Pg>, results: &mut Results) {
    let budget = Duration::from_millis(if quick { 300 } else { 3_000 });
    println!();
    println!(
        "3. acknowledged writes/s, {} ms per run, best of 2 interleaved",
        budget.as_millis()
    );
    println!(
        "{:<36} | {:>10} | {:>10} | {:>7} | {:>10} | {:>7} | {:>10} | {:>7}",
        "case", "server w/s", "raw w/s", "vs raw", "direct w/s", "vs dir.", "relay w/s", "vs rel."
    );
    println!("{}", "-".repeat(121));
    let mut n = 0;
    let mut path = |name: &str| {
        n += 1;
        dir.join(format!("{name}-{n}.db"))
    };
    // The relay's rate for 1 and for WRITERS clients, measured with the
    // SQLite rounds and compared with both backends.
    let mut relay = [0.0; 2];
    for (writers, relay) in [1, WRITERS].into_iter().zip(&mut relay) {
        let mut w = Writes::default();
        for _ in 0..2 {
            w.relay = w.relay.max(rt.block_on(through_relay(writers, budget)));
            w.raw = w
                .raw
                .max(raw_sqlite_kv(&path("raw"), Synchronous::Full, writers, budget));
            w.direct = w
                .direct
                .max(rt.block_on(direct_sqlite(&path("direct"), writers, budget)));
            let db = Database::Sqlite(path("server"));
            w.server = w.server.max(rt.block_on(through_server(db, writers, budget)));
        }
        *relay = w.relay;
        writes_line(&format!("SQLite FULL, {}", clients_text(writers)), &w);
        let raw_label = format!("raw rusqlite batched upserts, {writers} per transaction, synchronous=FULL");
        // What the transport alone reaches of the raw upserts: a server that
        // also stores and checks each write is not expected to pass it.
        results.row(
            Row::new(
                "Acknowledged writes",
                format!(
                    "raw relay (nothing stored), {} vs raw rusqlite at {writers} per commit (the transport's ceiling)",
                    clients_text(writers)
                ),
                w.relay,
                "writes/s",
            )
            .vs(w.raw, raw_label.clone(), "%"),
        );
        writes_rows(
            results,
            "SQLite synchronous=FULL",
            writers,
            &w,
            raw_label,
            format!("Durable::set on SQLite, {writers} concurrent writer(s)"),
            (
                ">= 80 % of raw rusqlite batched upserts (acknowledged writes through the server, 32 concurrent \
                 clients, vs 32 upserts per transaction; synchronous=FULL on both)",
                "server-sqlite-acked",
                0.8,
            ),
        );
    }
    if let Some(pg) = pg {
        for (writers, relay) in [1, WRITERS].into_iter().zip(relay) {
            let mut w = Writes {
                relay,
                ..Writes::default()
            };
            let mut per_commit = 0.0;
            for _ in 0..2 {
                w.raw = w.raw.max(pg.raw_kv(writers, 1));
                let (direct, pc) = pg.zestor(writers);
                if direct > w.direct {
                    (w.direct, per_commit) = (direct, pc);
                }
                let db = Database::Postgres {
                    conn: pg.url.clone(),
                    schema: pg.fresh_schema(),
                };
                w.server = w.server.max(rt.block_on(through_server(db, writers, budget)));
            }
            writes_line(&format!("PostgreSQL, {}", clients_text(writers)), &w);
            writes_rows(
                results,
                "PostgreSQL",
                writers,
                &w,
                if writers == 1 {
                    "raw tokio-postgres upserts, autocommit".into()
                } else {
                    format!("raw pipelined tokio-postgres upserts, {writers} per commit")
                },
                format!(
                    "Durable::set on PostgreSQL, {writers} concurrent writer(s), {per_commit:.1} writes per commit"
                ),
                (
                    ">= 50 % of raw pipelined tokio-postgres upserts (acknowledged writes through the server, \
                     32 concurrent clients, vs BEGIN + 32 pipelined upserts + COMMIT in one round trip)",
                    "server-pg-acked",
                    0.5,
                ),
            );
        }
    }
    results.condition(format!(
        "acknowledged writes: each client pushes one set (3-field JSON value, ~45 bytes, one of 1,000 keys) and \
         awaits its ack before the next; every client is subscribed, so each also receives every client's \
         changes; {} ms per run, each side run twice interleaved, the better run counts; raw baselines: the \
         same upserts as the backends bench, as many per transaction as clients; the raw relay: the same \
         clients through a tokio-tungstenite server that stores nothing, checks nothing and answers every \
         client's push in one batch (one `changes` frame per connection, an `ack` per op; it waits up to 1 ms \
         for every client's push); fresh SQLite file / PostgreSQL schema per server",
        budget.as_millis()
    ));
}

// ---- case 4: initial sync ----

/// The seeded entries' values: shaped like the others, ~100 bytes of JSON.
fn sized_value(i: u64) -> Value {
    json!({"title": format!("task {i}"), "done": i.is_multiple_of(2), "n": i, "note": "a note of about fifty bytes, as a small task has"})
}

/// Writes `n` entries (kind `task`, keys `e000000`…) to the SQLite file
/// `db`, in batches, then closes the store.
fn seed(db: &Path, n: u64) {
    let store = sqlite::open::<Value>(
        SqliteOptions::new(db, "bench").synchronous(Synchronous::Normal),
        StoreOptions::new(),
    )
    .unwrap_or_else(|e| die(&format!("opening {}: {e}", db.display())));
    let mut i = 0;
    while i < n {
        let items = (i..n.min(i + 5_000))
            .map(|j| (format!("e{j:06}"), sized_value(j)))
            .collect::<Vec<_>>();
        i += items.len() as u64;
        futures_executor::block_on(store.set_many("task", items))
            .unwrap_or_else(|e| die(&format!("seeding {}: {e}", db.display())));
    }
    store.close();
}

struct SyncRun {
    secs: f64,
    entries: usize,
    frames: Vec<Utf8Bytes>,
}

/// A fresh client: connect, hello without `since`, read and parse every
/// frame until the snapshot part with `done: true`. `capture` keeps the
/// frames (for the raw baseline).
async fn initial_sync(address: SocketAddr, capture: bool) -> Result<SyncRun, String> {
    let start = Instant::now();
    let mut socket = connect(address).await?;
    send(&mut socket, &hello("fresh", None)).await?;
    let (mut entries, mut frames) = (0, Vec::new());
    loop {
        let text = match tokio::time::timeout(WAIT, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Close(f)))) => return Err(format!("closed: {f:?}")),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(None) => return Err("the socket ended".into()),
            Err(_) => return Err("no message within 10 s".into()),
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if capture {
            frames.push(text);
        }
        match v["type"].as_str() {
            Some("welcome" | "ping") => {}
            Some("snapshot") => {
                entries += v["entries"].as_array().map_or(0, Vec::len);
                if v["done"] == true {
                    break;
                }
            }
            _ => return Err(format!("expected a snapshot, got {v}")),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(socket);
    Ok(SyncRun {
        secs,
        entries,
        frames,
    })
}

/// A raw tokio-tungstenite server answering any first frame with `frames`.
async fn start_replay(frames: Arc<Vec<Utf8Bytes>>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let (listener, address) = listen().await;
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let frames = frames.clone();
            connections.spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let Some(Ok(Message::Text(_))) = ws.next().await else {
                    return;
                };
                for f in frames.iter() {
                    if ws.send(Message::Text(f.clone())).await.is_err() {
                        return;
                    }
                }
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    (address, task)
}

fn sync_case(rt: &Runtime, dir: &Path, quick: bool, results: &mut Results) {
    let n: u64 = if quick { 10_000 } else { 100_000 };
    let rounds = if quick { 1 } else { 3 };
    println!();
    println!(
        "4. initial sync of {n} entries (~100-byte values) to a fresh client, best of {rounds} interleaved"
    );
    let db = dir.join("sync.db");
    let seeding = Instant::now();
    seed(&db, n);
    println!(
        "   (seeded in {:.1} s, not counted)",
        seeding.elapsed().as_secs_f64()
    );
    let check = |run: Result<SyncRun, String>, who: &str| -> SyncRun {
        let run = run.unwrap_or_else(|e| die(&format!("initial sync from the {who}: {e}")));
        if run.entries != n as usize {
            die(&format!(
                "initial sync from the {who}: {} entries, expected {n}",
                run.entries
            ));
        }
        run
    };
    let (zestor, raw, parts, bytes) = rt.block_on(async {
        let server = start_sqlite(&db, Synchronous::Full).await;
        // The first sync opens the namespace's store (reads the file) and is
        // not counted; its frames are the raw server's.
        let first = check(initial_sync(server.address, true).await, "sync server");
        let parts = first.frames.len() - 1;
        let bytes: usize = first.frames.iter().map(|f| f.len()).sum();
        let (raw_address, raw_task) = start_replay(Arc::new(first.frames)).await;
        let (mut zestor, mut raw) = (f64::MAX, f64::MAX);
        for _ in 0..rounds {
            raw = raw.min(check(initial_sync(raw_address, false).await, "raw server").secs);
            zestor = zestor.min(check(initial_sync(server.address, false).await, "sync server").secs);
        }
        raw_task.abort();
        server.stop().await;
        (zestor, raw, parts, bytes)
    });
    println!("{:<44} | {:>9} | {:>12}", "case", "seconds", "entries/s");
    println!("{}", "-".repeat(72));
    for (name, secs) in [
        ("raw tungstenite, same frames", raw),
        ("zestor sync-server", zestor),
    ] {
        println!("{name:<44} | {secs:>9.3} | {:>12.0}", n as f64 / secs);
    }
    let section = "Initial sync";
    let label = "raw tokio-tungstenite server sending the same frames";
    results.row(
        Row::new(
            section,
            format!("{} entries to a fresh client, time", thousands(n)),
            zestor,
            "s",
        )
        .vs(raw, label, "x"),
    );
    results.row(
        Row::new(
            section,
            format!("{} entries to a fresh client, rate", thousands(n)),
            n as f64 / zestor,
            "entries/s",
        )
        .vs(n as f64 / raw, label, "%"),
    );
    results.condition(format!(
        "initial sync: {} entries of one kind (~100-byte JSON values) seeded in the SQLite file before the \
         server starts (not counted); the store is opened by an uncounted first sync, whose frames (welcome \
         and {parts} snapshot parts of up to 500 entries, {:.1} MiB) the raw baseline replays; time from \
         connect to the part with done: true, every frame parsed; best of {rounds}, interleaved",
        thousands(n),
        bytes as f64 / 1_048_576.0
    ));
}

// ---- case 5: memory per idle connection ----

/// `target/<profile>/sync-server`, next to this bench's `deps` folder.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| die(&format!("this bench's path: {e}")));
    let profile_dir = exe.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    profile_dir.join("sync-server")
}

/// The soft limit on open files of this process (the child inherits it).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The CPU time (user + system) process `pid` has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let read = || -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The fields after the command (which may hold spaces), from field 3.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        // USER_HZ, 100 on Linux.
        Some(ticks as f64 / 100.0)
    };
    read().unwrap_or_else(|| die(&format!("cannot read the CPU time of process {pid} from /proc")))
}

/// `load` against the server processes `servers` (the writer on the first);
/// the latencies and the CPU time the processes used from the moment every
/// subscriber was in until the last event arrived.
fn latency_cpu(
    rt: &Runtime,
    servers: &[(&ServerProcess, SocketAddr)],
    load: Load<'_>,
) -> (Latency, f64, Vec<Socket>) {
    let pids: Vec<u32> = servers.iter().map(|(p, _)| p.0.id()).collect();
    let addresses: Vec<SocketAddr> = servers.iter().map(|(_, a)| *a).collect();
    let total = || pids.iter().map(|&pid| cpu_seconds(pid)).sum::<f64>();
    let start = std::cell::Cell::new(0.0);
    let (latency, sockets) = rt.block_on(latency_across(addresses[0], &addresses, load, &|| {
        start.set(total())
    }));
    (latency, total() - start.get(), sockets)
}

fn rss_bytes(pid: u32) -> u64 {
    let read = || -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
    };
    read().unwrap_or_else(|| die(&format!("cannot read VmRSS of process {pid} from /proc")))
}

/// The server child; killed on drop if still running.
struct ServerProcess(Child);

/// Starts `command`, a server printing `… http://ADDR …` on its first
/// stdout line; the child and that address.
fn spawn_server(mut command: Command) -> (ServerProcess, SocketAddr) {
    let mut child = ServerProcess(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| die(&format!("starting {command:?}: {e}"))),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    let address: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| die(&format!("no server address in the child's first line {line:?}")));
    // The rest of its output is read (and dropped), so that it never
    // writes to a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    (child, address)
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Set (to a read buffer size in bytes) when this binary is re-executed as
/// the raw WebSocket server of the memory case.
const RAW_SERVER_ENV: &str = "ZESTOR_BENCH_LOAD_RAW_SERVER";

/// Child mode: a raw tokio-tungstenite server with `read_buffer_size` that
/// answers `hello` with a minimal `welcome` and `snapshot`, then only reads
/// (the idle-connection baseline). Prints its address like the sync server
/// and runs until killed.
fn raw_server_child(read_buffer_size: usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (listener, address) = listen().await;
        println!("raw server listening on http://{address} (read buffer {read_buffer_size})");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        let config = WebSocketConfig::default().read_buffer_size(read_buffer_size);
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await else {
                    return;
                };
                let Some(Ok(Message::Text(_))) = ws.next().await else {
                    return;
                };
                for m in [
                    json!({"type": "welcome", "protocol": 1, "namespace": "bench", "rights": "read_write"}),
                    json!({"type": "snapshot", "rev": 0, "reason": "initial", "entries": [], "done": true}),
                ] {
                    if ws.send(Message::Text(m.to_string().into())).await.is_err() {
                        return;
                    }
                }
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
}

struct Idle {
    before: u64,
    after: u64,
    opened: usize,
    error: Option<String>,
}

impl Idle {
    fn per_connection(&self) -> f64 {
        self.after.saturating_sub(self.before) as f64 / self.opened.max(1) as f64
    }

    /// RSS with `n` idle connections: measured when `n` were opened, else
    /// before + n × per connection.
    fn projected(&self, n: usize) -> f64 {
        self.before as f64 + n as f64 * self.per_connection()
    }
}

/// Starts `command` (a server printing `… http://ADDR …` on its first
/// stdout line), opens `n` idle subscribed connections to it and reads its
/// VmRSS before and after; kills it at the end.
fn idle_memory(rt: &Runtime, command: Command, n: usize) -> Idle {
    let (child, address) = spawn_server(command);
    let pid = child.0.id();
    rt.block_on(async {
        // One connection first, so the namespace's store is open before.
        let first = subscribe(address, "warm", None).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = rss_bytes(pid);
        let deadline = Instant::now() + Duration::from_secs(120);
        let results: Vec<Result<Socket, String>> = stream::iter(0..n)
            .take_while(|_| std::future::ready(Instant::now() < deadline))
            .map(|i| async move { try_subscribe(address, &format!("idle{i}"), None).await })
            .buffer_unordered(32)
            .collect()
            .await;
        let error = results.iter().find_map(|r| r.as_ref().err().cloned());
        let sockets: Vec<Socket> = results.into_iter().filter_map(Result::ok).collect();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_bytes(pid);
        let opened = sockets.len();
        drop(sockets);
        drop(first);
        Idle {
            before,
            after,
            opened,
            error,
        }
    })
}

/// Goal `server-idle-memory`: this many idle connections …
const IDLE_GOAL_CONNECTIONS: usize = 10_000;
/// … in at most this many bytes of RSS.
const IDLE_GOAL_BYTES: f64 = 1024.0 * 1024.0 * 1024.0;

fn memory_case(rt: &Runtime, dir: &Path, quick: bool, binary: &Path, results: &mut Results) {
    println!();
    let wanted: usize = if quick { 500 } else { IDLE_GOAL_CONNECTIONS };
    let limit = open_file_limit().unwrap_or(1_024);
    let fits = limit.saturating_sub(FD_RESERVE) as usize;
    let n = wanted.min(fits);
    println!(
        "5. memory per idle connection (child's VmRSS): {n} connections (hello, welcome, snapshot) per server"
    );
    if n < wanted {
        let line = format!(
            "memory case: only {n} of {wanted} connections, the open-file limit is {limit} (raise `ulimit -n`)"
        );
        println!("   ({line})");
        results.note(line);
    }
    println!(
        "{:<44} | {:>12} | {:>12} | {:>14} | {:>16}",
        "server", "RSS before", "RSS after", "per connection", "10,000 (proj.)"
    );
    println!("{}", "-".repeat(112));
    let mut zestor = Command::new(binary);
    zestor
        .args(["--db", &format!("sqlite://{}", dir.join("memory.db").display())])
        .args(["--insecure-open", "--listen", "127.0.0.1:0"])
        .args(["--heartbeat-ms", "3600000"])
        .env("RUST_LOG", "warn");
    let exe = std::env::current_exe().unwrap_or_else(|e| die(&format!("this bench's path: {e}")));
    let raw = |read_buffer_size: usize| {
        let mut c = Command::new(&exe);
        c.env(RAW_SERVER_ENV, read_buffer_size.to_string());
        c
    };
    let cases = [
        ("zestor sync-server (release binary)", zestor),
        ("raw tungstenite, 128 KiB read buffer", raw(128 * 1024)),
        ("raw tungstenite, 8 KiB read buffer", raw(8 * 1024)),
    ];
    let mut measured = Vec::new();
    for (name, command) in cases {
        let idle = idle_memory(rt, command, n);
        println!(
            "{:<44} | {:>8.1} MiB | {:>8.1} MiB | {:>10.1} KiB | {:>12.0} MiB",
            format!("{name}, {}", idle.opened),
            idle.before as f64 / 1_048_576.0,
            idle.after as f64 / 1_048_576.0,
            idle.per_connection() / 1024.0,
            idle.projected(IDLE_GOAL_CONNECTIONS) / 1_048_576.0
        );
        if let Some(e) = &idle.error {
            println!("   (some connections failed: {e})");
            results.note(format!("memory case, {name}: some connections failed: {e}"));
        }
        measured.push(idle);
    }
    let (z, raw128, raw8) = (&measured[0], &measured[1], &measured[2]);
    let met = z.projected(IDLE_GOAL_CONNECTIONS) <= IDLE_GOAL_BYTES && z.opened == n;
    println!(
        "   verdict: {} (goal: {IDLE_GOAL_CONNECTIONS} idle connections in <= 1 GiB)",
        if met { "met" } else { "NOT MET" }
    );
    let section = "Memory per idle connection";
    let how = if z.opened == IDLE_GOAL_CONNECTIONS {
        "measured".to_owned()
    } else {
        format!("projected from {} connections", thousands(z.opened as u64))
    };
    let mib = |b: f64| b / 1_048_576.0;
    results.row(
        Row::new(
            section,
            format!("RSS of the server with 10,000 idle connections ({how})"),
            mib(z.projected(IDLE_GOAL_CONNECTIONS)),
            "MiB",
        )
        .vs(
            mib(raw128.projected(IDLE_GOAL_CONNECTIONS)),
            "raw tokio-tungstenite server, default 128 KiB read buffer",
            "x",
        )
        .goal(
            "10,000 idle WebSocket clients in <= 1 GiB (1,024 MiB) of server RSS",
            "server-idle-memory",
            met,
        ),
    );
    results.row(
        Row::new(
            section,
            format!(
                "RSS per idle connection, {} connections",
                thousands(z.opened as u64)
            ),
            z.per_connection() / 1024.0,
            "KiB",
        )
        .vs(
            raw128.per_connection() / 1024.0,
            "raw tokio-tungstenite server, default 128 KiB read buffer",
            "x",
        ),
    );
    results.row(
        Row::new(
            section,
            format!(
                "RSS per idle connection, {} connections, vs an 8 KiB read buffer",
                thousands(z.opened as u64)
            ),
            z.per_connection() / 1024.0,
            "KiB",
        )
        .vs(
            raw8.per_connection() / 1024.0,
            "raw tokio-tungstenite server, 8 KiB read buffer",
            "x",
        ),
    );
    results.condition(format!(
        "memory: the release binary as a child (--insecure-open --heartbeat-ms 3600000, SQLite), one warm-up \
         connection, then VmRSS from /proc before and after opening {n} connections that completed hello, \
         welcome and the snapshot, 32 at a time; baselines: this bench re-executed as a raw \
         tokio-tungstenite server doing the same handshake; open-file limit {limit}"
    ));
}

// ---- case 6: fan-out at scale, servers as processes ----

/// Set when this binary is re-executed as the raw broadcast server of the
/// scale case (the latency baseline, in a process of its own).
const RAW_BROADCAST_ENV: &str = "ZESTOR_BENCH_LOAD_RAW_BROADCAST";

/// Child mode: the raw broadcast server of case 1 on a 2-worker runtime.
/// Prints its address like the sync server and runs until killed.
fn raw_broadcast_child() {
    runtime().block_on(async {
        let (address, task) = start_raw().await;
        println!("raw broadcast server listening on http://{address}");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        let _ = task.await;
    });
}

/// Goal: a connection of a server fanning out costs at most this much RSS.
const SCALE_RSS_GOAL_BYTES: f64 = 100.0 * 1024.0;

/// The release binary as a child on `db`, open to every token.
fn zestor_child(binary: &Path, db: &Database) -> (ServerProcess, SocketAddr) {
    let mut command = Command::new(binary);
    command
        .args(["--db", &db.url(), "--insecure-open", "--listen", "127.0.0.1:0"])
        .args(["--heartbeat-ms", "3600000"])
        .env("RUST_LOG", "warn");
    spawn_server(command)
}

fn raw_child() -> (ServerProcess, SocketAddr) {
    let exe = std::env::current_exe().unwrap_or_else(|e| die(&format!("this bench's path: {e}")));
    let mut command = Command::new(exe);
    command.env(RAW_BROADCAST_ENV, "1");
    spawn_server(command)
}

/// Case 6: the sync server as it is deployed, a process of its own (the
/// release binary), fanning out to many subscribers: 10,000 subscribers at
/// 20 writes/s on SQLite, with the server's RSS; and 1,000 subscribers at
/// 200 writes/s on PostgreSQL, one server process against the same
/// subscribers split over two processes sharing the database.
fn scale_case(rt: &Runtime, dir: &Path, quick: bool, binary: &Path, pg: Option<&Pg>, results: &mut Results) {
    println!();
    let secs = if quick { 1.0 } else { 5.0 };
    let limit = open_file_limit().unwrap_or(1_024);
    // The servers are children: a client costs this process one descriptor.
    let fits = limit.saturating_sub(FD_RESERVE) as usize;
    let wanted = if quick { 1_000 } else { 10_000 };
    let n = wanted.min(fits);
    if n < wanted {
        let line = format!(
            "scale case: only {n} of {wanted} subscribers, the open-file limit is {limit} (raise `ulimit -n`)"
        );
        println!("   ({line})");
        results.note(line);
    }
    latency_header(&format!(
        "6. fan-out at scale: servers as processes (the release binary; raw = this bench as a raw broadcast \
         server), 1 writer at a fixed rate for {secs} s"
    ));
    let section = "Fan-out at scale (server processes)";
    let rate = 20;
    let load = Load {
        raw: true,
        subscribers: n,
        rate,
        count: (rate as f64 * secs).round() as u64,
        kinds: None,
        open: None,
    };
    let case = format!("{} clients, {rate} writes/s", thousands(n as u64));
    let (raw_server, address) = raw_child();
    let (raw, raw_cpu, sockets) = latency_cpu(rt, &[(&raw_server, address)], load);
    let raw_rss = rss_bytes(raw_server.0.id());
    drop(sockets);
    drop(raw_server);
    let db = Database::Sqlite(dir.join("scale.db"));
    let (server, address) = zestor_child(binary, &db);
    let pid = server.0.id();
    // One connection first, so the namespace's store is open before.
    let first = rt.block_on(subscribe(address, "warm", None));
    let before = rss_bytes(pid);
    let (zestor, zestor_cpu, sockets) = latency_cpu(rt, &[(&server, address)], Load { raw: false, ..load });
    let after = rss_bytes(pid);
    drop((sockets, first));
    drop(server);
    latency_line(&format!("raw, {case}"), &raw);
    latency_line(&format!("zestor, {case}"), &zestor);
    latency_rows_in(results, section, (n, rate), &case, &zestor, &raw);
    cpu_row(
        results,
        section,
        &case,
        (zestor_cpu, &zestor),
        (raw_cpu, &raw),
        "the raw broadcast server",
    );
    let per_connection = after.saturating_sub(before) as f64 / (n + 1) as f64;
    let met = per_connection <= SCALE_RSS_GOAL_BYTES && zestor.complete();
    println!(
        "   server RSS: {:.1} MiB before the subscribers, {:.1} MiB after the run with them connected: \
         {:.1} KiB per connection (raw broadcast server: {:.1} MiB in all)",
        before as f64 / 1_048_576.0,
        after as f64 / 1_048_576.0,
        per_connection / 1024.0,
        raw_rss as f64 / 1_048_576.0
    );
    results.row(
        Row::new(
            section,
            format!("server RSS per connection, {case}{}", zestor.shortfall()),
            per_connection / 1024.0,
            "KiB",
        )
        .goal(
            "<= 100 KiB of server RSS per connection while fanning out, every event delivered",
            "server-fanout-memory",
            met,
        ),
    );

    let Some(pg) = pg else {
        results.note("scale case: the PostgreSQL points were skipped (no PostgreSQL)");
        return;
    };
    let subscribers = if quick { 100 } else { MANY_SUBSCRIBERS.min(fits) };
    let rate = 200;
    let load = Load {
        subscribers,
        rate,
        count: (rate as f64 * secs).round() as u64,
        ..load
    };
    let case = format!(
        "{} clients, {rate} writes/s, PostgreSQL",
        thousands(subscribers as u64)
    );
    let (raw_server, address) = raw_child();
    let (raw, raw_cpu, sockets) = latency_cpu(rt, &[(&raw_server, address)], load);
    drop((sockets, raw_server));
    let fresh = || Database::Postgres {
        conn: pg.url.clone(),
        schema: pg.fresh_schema(),
    };
    let zestor = Load { raw: false, ..load };
    let (server, address) = zestor_child(binary, &fresh());
    let (one, one_cpu, sockets) = latency_cpu(rt, &[(&server, address)], zestor);
    drop((sockets, server));
    let db = fresh();
    let (a, first) = zestor_child(binary, &db);
    let (b, second) = zestor_child(binary, &db);
    let (two, two_cpu, sockets) = latency_cpu(rt, &[(&a, first), (&b, second)], zestor);
    drop((sockets, a, b));
    latency_line(&format!("raw, {case}"), &raw);
    latency_line(&format!("zestor, 1 process, {case}"), &one);
    latency_line(&format!("zestor, 2 processes, {case}"), &two);
    latency_rows_in(
        results,
        section,
        (0, rate),
        &format!("1 process, {case}"),
        &one,
        &raw,
    );
    cpu_row(
        results,
        section,
        &format!("1 process, {case}"),
        (one_cpu, &one),
        (raw_cpu, &raw),
        "the raw broadcast server",
    );
    cpu_row(
        results,
        section,
        &format!("2 processes, {case}"),
        (two_cpu, &two),
        (one_cpu, &one),
        "1 process",
    );
    for (q, name) in [(0.5, "p50"), (0.99, "p99")] {
        results.row(
            Row::new(
                section,
                format!("{name}, 2 processes on one database, {case}{}", two.shortfall()),
                two.quantile(q),
                "ms",
            )
            .vs(one.quantile(q), format!("1 process{}", one.shortfall()), "x"),
        );
    }
    results.condition(format!(
        "scale: the release binary as a child (--insecure-open --heartbeat-ms 3600000), the bench's clients \
         in this process; 10,000 subscribers at 20 writes/s on SQLite with the child's VmRSS before the \
         subscribers and after the run (all connected); {} subscribers at 200 writes/s on PostgreSQL (a \
         fresh schema per server set), one process, then two processes on one schema with the subscribers \
         split evenly and the writer on the first; raw = this bench re-executed as the raw broadcast \
         server of case 1; {secs} s per point",
        thousands(subscribers as u64)
    ));
}

/// The server CPU time per delivered event (µs), against `base`'s.
fn cpu_row(
    results: &mut Results,
    section: &str,
    case: &str,
    (cpu, l): (f64, &Latency),
    (base_cpu, base): (f64, &Latency),
    base_name: &str,
) {
    let per = |cpu: f64, l: &Latency| cpu * 1e6 / l.samples.len().max(1) as f64;
    println!(
        "   server CPU, {case}: {cpu:.2} s, {:.2} µs per delivered event ({base_name}: {base_cpu:.2} s, {:.2} µs)",
        per(cpu, l),
        per(base_cpu, base)
    );
    results.row(
        Row::new(
            section,
            format!("server CPU per delivered event, {case}{}", l.shortfall()),
            per(cpu, l),
            "µs",
        )
        .vs(
            per(base_cpu, base),
            format!("{base_name}{}", base.shortfall()),
            "x",
        ),
    );
}

/// `tokio-tungstenite <the version package uses>`.
fn tungstenite_of(package: &str) -> String {
    match common::dependency_version(package, "tokio-tungstenite") {
        Some(v) => format!("tokio-tungstenite {v}"),
        None => crate_version("tokio-tungstenite"),
    }
}

/// The sync-server binary's allocator, so that the server measured here
/// in-process allocates as the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Ok(size) = std::env::var(RAW_SERVER_ENV) {
        raw_server_child(size.parse().unwrap_or(128 * 1024));
        return;
    }
    if std::env::var_os(RAW_BROADCAST_ENV).is_some() {
        raw_broadcast_child();
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wanted = |case: &str| filter.as_ref().is_none_or(|f| case.contains(f.as_str()));
    let mut results = Results::new(
        "server",
        "Sync server under load",
        "sync-server/benches/load.rs",
        "cargo bench -p sync-server --bench load",
        quick,
    );
    LazyLock::force(&EPOCH);
    let rt = Arc::new(runtime());
    let dir = tempfile::tempdir().unwrap_or_else(|e| die(&format!("a temporary directory: {e}")));
    println!(
        "sync-server load benchmark ({}), loopback 127.0.0.1",
        if quick { "quick" } else { "full" }
    );
    // What the cases need, checked before any runs.
    let binary = server_binary();
    let binary = if !wanted("memory") && !wanted("scale") {
        None
    } else if binary.exists() {
        Some(binary)
    } else {
        skipped(
            "the memory and scale cases",
            &format!("no {}", binary.display()),
            "build it with: cargo build --release -p sync-server --bin sync-server",
        );
        results.note(format!("memory and scale cases skipped: no {}", binary.display()));
        None
    };
    let pg = if !wanted("writes") && !wanted("scale") {
        None
    } else {
        let budget = Duration::from_millis(if quick { 300 } else { 3_000 });
        match Pg::setup(rt.clone(), "zl", budget) {
            Ok(pg) => Some(pg),
            Err(why) => {
                skipped(
                    "the PostgreSQL write and scale cases",
                    &format!("no PostgreSQL ({why})"),
                    &format!(
                        "set DATABASE_URL, or run one at {} (trust auth)",
                        common::PG_LOCAL
                    ),
                );
                results.note(format!(
                    "PostgreSQL write and scale cases skipped: no PostgreSQL ({why})"
                ));
                None
            }
        }
    };
    println!();
    results.condition(format!(
        "loopback 127.0.0.1; the sync server (in process: axum {} over {}) and its clients ({}) share one \
         tokio runtime with 2 workers, except in the memory case; machine: {} CPUs",
        common::locked_versions("axum").join(", "),
        tungstenite_of("axum"),
        tungstenite_of("sync-server"),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    results.condition(format!(
        "{}, WAL, synchronous=FULL unless a row says NORMAL",
        sqlite_version()
    ));
    if let Some(pg) = &pg {
        let (version, sync_commit) = pg.server_settings();
        println!(
            "PostgreSQL {version}, synchronous_commit={sync_commit} ({})",
            pg.at
        );
        results.condition(format!(
            "PostgreSQL {version} over TCP on the same machine, synchronous_commit={sync_commit} on every side, {}",
            crate_version("tokio-postgres")
        ));
    }
    let timed = |name: &str, case: &mut dyn FnMut()| {
        let started = Instant::now();
        case();
        println!("   ({name}: {:.1} s)", started.elapsed().as_secs_f64());
    };
    if wanted("latency") {
        timed("latency", &mut || {
            latency_case(&rt, dir.path(), quick, &mut results)
        });
    }
    if wanted("slow") {
        timed("slow client", &mut || {
            slow_case(&rt, dir.path(), quick, &mut results)
        });
    }
    if wanted("writes") {
        timed("writes", &mut || {
            writes_case(&rt, dir.path(), quick, pg.as_ref(), &mut results)
        });
    }
    if wanted("sync") {
        timed("initial sync", &mut || {
            sync_case(&rt, dir.path(), quick, &mut results)
        });
    }
    if let Some(binary) = binary.as_ref().filter(|_| wanted("memory")) {
        timed("memory", &mut || {
            memory_case(&rt, dir.path(), quick, binary, &mut results)
        });
    }
    if let Some(binary) = binary.as_ref().filter(|_| wanted("scale")) {
        timed("scale", &mut || {
            scale_case(&rt, dir.path(), quick, binary, pg.as_ref(), &mut results)
        });
    }
    drop(pg);
    results.write();
}
