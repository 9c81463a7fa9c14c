//! Load on the sync server over real WebSockets on 127.0.0.1, with
//! baselines measured in the same run.
//!
//! Run with `cargo bench -p sync-server --bench load` (add `-- --quick` for
//! a short smoke run). The memory case runs the release binary
//! `target/release/sync-server` as a child process: build it first with
//! `cargo build --release -p sync-server --bin sync-server` (it is skipped,
//! with that hint, when missing; `ZESTOR_REQUIRE_ALL=1` makes that an error).
//!
//! 1. Propagation latency: 100 subscribed clients (hello, then the initial
//!    snapshot), one writer pushing one `set` per push at a fixed rate, the
//!    value stamped with its send time (a shared `Instant`); latency = receipt
//!    of the `changes` frame at a subscriber − send time, over every
//!    (subscriber, event) pair. Baseline: a raw tokio-tungstenite broadcast
//!    server (it answers `hello` with a minimal `welcome` and `snapshot`, then
//!    forwards every frame of the writer connection to every other one); the
//!    writer sends it frames shaped (and sized) like the `changes` frames the
//!    sync server sends, so the subscribers run the same code on both.
//! 2. Acknowledged writes/s through the server: 1 client, then 32 concurrent
//!    clients, each pushing one op and awaiting its `ack` before the next
//!    (every client is subscribed, so it also receives everyone's changes),
//!    against `Durable::set` on the SQLite backend directly with the same
//!    number of concurrent writers; `synchronous=FULL` on both sides.
//! 3. Memory per idle connection of the server binary: VmRSS of the child
//!    before and after opening N connections that completed hello, welcome
//!    and the snapshot (10,000; 500 with `--quick`; fewer if the open-file
//!    limit does not allow them, which is then printed). Goal ≤ 100 KiB.
//!    Baselines: this binary re-executed as a raw tokio-tungstenite server
//!    (answers `hello` with `welcome` and `snapshot`, then only reads) with
//!    tungstenite's default 128 KiB read buffer, and with 8 KiB.
//!
//! Server and clients of cases 1 and 2 share one tokio runtime with 2 worker
//! threads in this process.

mod common;

use common::{KEYS, value, write_loops};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use futures_util::{SinkExt, StreamExt, stream};
use serde_json::{Value, json};
use store_core::StoreOptions;
use store_core::sync::session::ServerConfig;
use sync_server::backend::sqlite::{self, SqliteOptions, Synchronous};
use sync_server::server::{AppState, Database, Metrics, Stores, Tokens, serve};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The clock every send stamp and receipt is read from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ns() -> u64 {
    EPOCH.elapsed().as_nanos() as u64
}

const SUBSCRIBERS: usize = 100;
const RATE: u64 = 200;
const WRITERS: u64 = 32;
/// Makes a latency value about 130 bytes of JSON.
const PAD: &str =
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";
/// Any single wait on a socket.
const WAIT: Duration = Duration::from_secs(10);

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

fn hello(client: &str) -> Value {
    json!({"type": "hello", "protocol": 1, "namespace": "bench", "token": "bench", "client_id": client})
}

/// Connects, says hello and waits for `welcome` and the complete snapshot.
async fn try_subscribe(address: SocketAddr, client: &str) -> Result<Socket, String> {
    let mut socket = connect(address).await?;
    send(&mut socket, &hello(client)).await?;
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

async fn subscribe(address: SocketAddr, client: &str) -> Socket {
    try_subscribe(address, client)
        .await
        .unwrap_or_else(|e| panic!("client {client}: {e}"))
}

// ---- the in-process sync server (as tests/server.rs) ----

struct Server {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

/// A server on port 0; `sync` is SQLite's `synchronous` (FULL everywhere
/// but one latency diagnostic).
async fn start(db: &Path, sync: Synchronous) -> Server {
    let (stop_tx, shutdown) = tokio::sync::watch::channel(false);
    let state = Arc::new(AppState {
        stores: Stores::new(Database::Sqlite(db.to_owned()), sync, StoreOptions::new()),
        tokens: Tokens::open_to_all(),
        session: ServerConfig {
            heartbeat_ms: 600_000,
            ..ServerConfig::default()
        },
        metrics: Metrics::default(),
        allowed_origins: vec![],
        send_timeout: Duration::from_secs(10),
        shutdown,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        serve(listener, state, None, stop_tx, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        address,
        stop: Some(stop),
        done,
    }
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(15), self.done)
            .await
            .expect("graceful shutdown")
            .unwrap();
    }
}

// ---- the raw broadcast server (baseline of case 1) ----

/// Accepts WebSockets; answers each `hello` with a minimal `welcome` and
/// `snapshot`; forwards every later frame of the client `writer` to all the
/// others. Dropping the returned handle's task (abort) ends everything.
async fn start_raw() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (fanout, _) = tokio::sync::broadcast::channel::<Message>(8_192);
        let mut connections = tokio::task::JoinSet::new();
        while let Ok((tcp, _)) = listener.accept().await {
            tcp.set_nodelay(true).unwrap();
            let fanout = fanout.clone();
            connections.spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let Some(Ok(Message::Text(first))) = ws.next().await else {
                    return;
                };
                let first: Value = serde_json::from_str(&first).unwrap();
                let mut feed = fanout.subscribe();
                for m in [
                    json!({"type": "welcome", "protocol": 1, "namespace": "bench", "rights": "read_write"}),
                    json!({"type": "snapshot", "rev": 0, "reason": "initial", "entries": [], "done": true}),
                ] {
                    if ws.send(Message::Text(m.to_string().into())).await.is_err() {
                        return;
                    }
                }
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

// ---- case 1: propagation latency ----

/// Receipt − send time of every event reaching this subscriber, until it
/// has `expected` of them or `deadline` passes.
async fn measure(mut socket: Socket, expected: usize, deadline: Instant) -> Vec<u64> {
    let mut latencies = Vec::with_capacity(expected);
    while latencies.len() < expected {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(frame))) => frame,
            _ => break,
        };
        let received = now_ns();
        if let Message::Text(text) = frame {
            let v: Value = serde_json::from_str(&text).unwrap();
            if v["type"] == "changes" {
                for event in v["events"].as_array().into_iter().flatten() {
                    if let Some(sent) = event["value"]["t"].as_u64() {
                        latencies.push(received.saturating_sub(sent));
                    }
                }
            }
        }
    }
    latencies
}

/// Pushes `count` sets at `RATE` per second, each stamped with its send
/// time. To the raw server it sends the `changes` frame subscribers should
/// get instead of a `push`. Returns once every push was sent and (sync
/// server) acknowledged.
async fn write_at_rate(address: SocketAddr, raw: bool, count: u64) {
    let socket = subscribe(address, "writer").await;
    let (mut tx, mut rx) = socket.split();
    let acks = tokio::spawn(async move {
        let mut acks = 0;
        while !raw && acks < count {
            match tokio::time::timeout(WAIT, rx.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    if v["type"] == "ack" {
                        acks += 1;
                    }
                    assert_ne!(v["type"], "reject", "{v}");
                }
                Ok(Some(Ok(_))) => {}
                _ => break,
            }
        }
        (acks, rx)
    });
    let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / RATE));
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
        tx.send(Message::Text(frame.to_string().into())).await.unwrap();
    }
    let (acked, rx) = acks.await.unwrap();
    if !raw {
        assert_eq!(acked, count, "every push acknowledged");
    }
    drop(rx.reunite(tx));
}

struct Latency {
    /// Sorted, in ns.
    samples: Vec<u64>,
    expected: usize,
}

impl Latency {
    fn quantile(&self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let i = ((self.samples.len() - 1) as f64 * q).round() as usize;
        self.samples[i] as f64 / 1_000.0
    }
}

/// `SUBSCRIBERS` subscribers and the writer against the server at `address`.
async fn latency(address: SocketAddr, raw: bool, count: u64) -> Latency {
    let mut sockets = Vec::with_capacity(SUBSCRIBERS);
    for i in 0..SUBSCRIBERS {
        sockets.push(subscribe(address, &format!("s{i}")).await);
    }
    let deadline = Instant::now() + Duration::from_millis(count * 1_000 / RATE) + Duration::from_secs(5);
    let subscribers: Vec<_> = sockets
        .into_iter()
        .map(|s| tokio::spawn(measure(s, count as usize, deadline)))
        .collect();
    write_at_rate(address, raw, count).await;
    let mut samples = Vec::new();
    for s in subscribers {
        samples.extend(s.await.unwrap());
    }
    samples.sort_unstable();
    Latency {
        samples,
        expected: SUBSCRIBERS * count as usize,
    }
}

fn latency_case(rt: &Runtime, dir: &Path, quick: bool) {
    let secs = if quick { 1 } else { 5 };
    let count = RATE * secs;
    println!(
        "1. propagation latency: {SUBSCRIBERS} subscribers, 1 writer at {RATE} sets/s for {secs} s ({count} events each), µs"
    );
    println!(
        "{:<34} | {:>9} | {:>9} | {:>9} | {:>18}",
        "case", "p50", "p99", "max", "events received"
    );
    println!("{}", "-".repeat(90));
    let (raw_address, raw_task) = rt.block_on(start_raw());
    let raw = rt.block_on(latency(raw_address, true, count));
    raw_task.abort();
    let server = rt.block_on(start(&dir.join("latency.db"), Synchronous::Full));
    let zestor = rt.block_on(latency(server.address, false, count));
    rt.block_on(server.stop());
    let server = rt.block_on(start(&dir.join("latency-normal.db"), Synchronous::Normal));
    let normal = rt.block_on(latency(server.address, false, count));
    rt.block_on(server.stop());
    for (name, l) in [
        ("raw tungstenite broadcast", &raw),
        ("zestor sync-server", &zestor),
        ("  … sync=NORMAL (diagnostic)", &normal),
    ] {
        println!(
            "{name:<34} | {:>9.0} | {:>9.0} | {:>9.0} | {:>8} / {:>7}",
            l.quantile(0.5),
            l.quantile(0.99),
            l.quantile(1.0),
            l.samples.len(),
            l.expected
        );
    }
    println!(
        "{:<34} | {:>8.1}x | {:>8.1}x | {:>9} | recorded (no goal)",
        "zestor / raw",
        zestor.quantile(0.5) / raw.quantile(0.5),
        zestor.quantile(0.99) / raw.quantile(0.99),
        ""
    );
}

// ---- case 2: acknowledged writes/s ----

/// One client pushing one op at a time, each awaited, until `budget` has
/// passed since `start`: the number acknowledged.
async fn push_loop(mut socket: Socket, w: u64, writers: u64, start: Instant, budget: Duration) -> u64 {
    let mut done = 0u64;
    let mut i = w;
    while start.elapsed() < budget {
        let op_id = format!("{done}");
        let op = json!({"op_id": op_id, "kind": "task", "key": format!("k{}", i % KEYS), "action": "set", "value": value(i)});
        send(&mut socket, &json!({"type": "push", "ops": [op]}))
            .await
            .unwrap();
        loop {
            let frame = tokio::time::timeout(WAIT, socket.next())
                .await
                .expect("an ack within 10 s")
                .expect("the socket is open")
                .unwrap();
            let Message::Text(text) = frame else { continue };
            // Only acks and rejects are parsed; the changes (everyone's) are not.
            if !text.contains("\"ack\"") && !text.contains("\"reject\"") {
                continue;
            }
            let v: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(v["type"], "ack", "{v}");
            if v["op_id"] == op_id.as_str() {
                break;
            }
        }
        done += 1;
        i += writers;
    }
    done
}

async fn through_server(db: &Path, writers: u64, budget: Duration) -> f64 {
    let server = start(db, Synchronous::Full).await;
    let mut sockets = Vec::new();
    for w in 0..writers {
        sockets.push(subscribe(server.address, &format!("c{w}")).await);
    }
    let start = Instant::now();
    let loops = sockets
        .into_iter()
        .enumerate()
        .map(|(w, s)| tokio::spawn(push_loop(s, w as u64, writers, start, budget)));
    let done: u64 = join_all(loops).await.into_iter().map(Result::unwrap).sum();
    let rate = done as f64 / start.elapsed().as_secs_f64();
    server.stop().await;
    rate
}

/// `writers` concurrent `Durable::set` loops on the SQLite backend.
async fn direct(db: &Path, writers: u64, budget: Duration) -> f64 {
    let store = sqlite::open::<Value>(
        SqliteOptions::new(db, "bench").synchronous(Synchronous::Full),
        StoreOptions::new(),
    )
    .unwrap();
    let (done, elapsed) = write_loops(&store, writers, budget).await;
    let rate = done as f64 / elapsed.as_secs_f64();
    store.close();
    rate
}

fn writes_case(rt: &Runtime, dir: &Path, quick: bool) {
    let budget = Duration::from_millis(if quick { 300 } else { 3_000 });
    println!();
    println!(
        "2. acknowledged writes/s, SQLite synchronous=FULL, {} ms per run, best of 2 interleaved",
        budget.as_millis()
    );
    println!(
        "{:<34} | {:>12} | {:>12} | {:>7} | verdict",
        "case", "server w/s", "direct w/s", "ratio"
    );
    println!("{}", "-".repeat(90));
    let mut n = 0;
    let mut path = |name: &str| {
        n += 1;
        dir.join(format!("{name}-{n}.db"))
    };
    for writers in [1, WRITERS] {
        let (mut server, mut backend) = (0f64, 0f64);
        for _ in 0..2 {
            backend = backend.max(rt.block_on(direct(&path("direct"), writers, budget)));
            server = server.max(rt.block_on(through_server(&path("server"), writers, budget)));
        }
        println!(
            "{:<34} | {server:>12.0} | {backend:>12.0} | {:>6.0}% | recorded (no goal)",
            format!("{writers} client(s) / writer(s)"),
            server / backend * 100.0
        );
    }
}

// ---- case 3: memory per idle connection ----

/// `target/<profile>/sync-server`, next to this bench's `deps` folder.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    profile_dir.join("sync-server")
}

/// The soft limit on open files of this process (the child inherits it).
fn open_file_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The server child; killed on drop if still running.
struct ServerProcess(Child);

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
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
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

/// Starts `command` (a server printing `… http://ADDR …` on its first
/// stdout line), opens `n` idle subscribed connections to it and reads its
/// VmRSS before and after; kills it at the end.
fn idle_memory(rt: &Runtime, mut command: Command, n: usize) -> Idle {
    let mut child = ServerProcess(
        command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let address: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("the server's address in {line:?}"));
    rt.block_on(async {
        // One connection first, so the namespace's store is open before.
        let first = subscribe(address, "warm").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = rss_bytes(pid);
        let deadline = Instant::now() + Duration::from_secs(120);
        let results: Vec<Result<Socket, String>> = stream::iter(0..n)
            .take_while(|_| std::future::ready(Instant::now() < deadline))
            .map(|i| async move { try_subscribe(address, &format!("idle{i}")).await })
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

fn memory_case(rt: &Runtime, dir: &Path, quick: bool) {
    println!();
    let binary = server_binary();
    if !binary.exists() {
        println!("{}", "!".repeat(90));
        println!("!!! 3. memory case skipped: no {}", binary.display());
        println!("!!! build it with: cargo build --release -p sync-server --bin sync-server");
        println!("{}", "!".repeat(90));
        if std::env::var("ZESTOR_REQUIRE_ALL").as_deref() == Ok("1") {
            eprintln!("error: ZESTOR_REQUIRE_ALL=1 and the memory case was skipped");
            std::process::exit(1);
        }
        return;
    }
    let wanted: usize = if quick { 500 } else { 10_000 };
    let limit = open_file_limit().unwrap_or(1_024);
    let fits = limit.saturating_sub(256) as usize;
    let n = wanted.min(fits);
    println!(
        "3. memory per idle connection (child's VmRSS): {n} connections (hello, welcome, snapshot) per server"
    );
    if n < wanted {
        println!("   (only {n} of {wanted}: the open-file limit is {limit}; raise `ulimit -n` for more)");
    }
    println!(
        "{:<44} | {:>12} | {:>12} | {:>14} | verdict (goal <= 100 KiB)",
        "server", "RSS before", "RSS after", "per connection"
    );
    println!("{}", "-".repeat(112));
    let mut zestor = Command::new(&binary);
    zestor
        .args(["--db", &format!("sqlite://{}", dir.join("memory.db").display())])
        .args(["--insecure-open", "--listen", "127.0.0.1:0"])
        .args(["--heartbeat-ms", "3600000"])
        .env("RUST_LOG", "warn");
    let raw = |read_buffer_size: usize| {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.env(RAW_SERVER_ENV, read_buffer_size.to_string());
        c
    };
    let cases = [
        ("zestor sync-server (release binary)", zestor, "goal"),
        (
            "raw tungstenite, 128 KiB read buffer",
            raw(128 * 1024),
            "baseline",
        ),
        ("raw tungstenite, 8 KiB read buffer", raw(8 * 1024), "diagnostic"),
    ];
    for (name, command, role) in cases {
        let idle = idle_memory(rt, command, n);
        let per = idle.after.saturating_sub(idle.before) as f64 / idle.opened.max(1) as f64;
        let verdict = match () {
            _ if role != "goal" => role,
            _ if quick => "n/a (quick)",
            _ if per <= 100.0 * 1024.0 => "met",
            _ => "NOT MET",
        };
        println!(
            "{:<44} | {:>8.1} MiB | {:>8.1} MiB | {:>10.1} KiB | {verdict}",
            format!("{name}, {}", idle.opened),
            idle.before as f64 / 1_048_576.0,
            idle.after as f64 / 1_048_576.0,
            per / 1024.0
        );
        if let Some(e) = idle.error {
            println!("   (some connections failed: {e})");
        }
    }
}

fn main() {
    if let Ok(size) = std::env::var(RAW_SERVER_ENV) {
        raw_server_child(size.parse().unwrap());
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    LazyLock::force(&EPOCH);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "sync-server load benchmark ({}), loopback 127.0.0.1",
        if quick { "quick" } else { "full" }
    );
    println!();
    latency_case(&rt, dir.path(), quick);
    writes_case(&rt, dir.path(), quick);
    memory_case(&rt, dir.path(), quick);
}
