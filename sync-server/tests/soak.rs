//! Soak: under continuous writes, the SQLite file stops growing.
//!
//! A real server on a real SQLite file, with a short time to live for op
//! ids (2 s), maintenance rounds every 250 ms and a short history (100
//! revisions), takes sync ops over WebSockets for 30 s from 8 connections
//! at once, 4,000 ops a second in all (paced, so that the steady state does
//! not depend on the machine's speed); each connection says `hello` with a
//! fresh client id every 1,000 ops, and every op has a fresh op id
//! (`client:seq`, as the clients make them): sets, patches and deletes over
//! 2,000 keys. Every 250 ms the test samples the file's size (database and
//! WAL) and the recorded answers.
//!
//! It then asserts that the size levels off: the median size of the last
//! third of the run is within 15 % of the median of the middle third (the
//! first third holds the growth to the steady state). Medians, because the
//! WAL file briefly grows past its 4 MiB when a checkpoint misses its
//! restart, until the next one cuts it back. Without pruning the recorded
//! answers grow with every op, and the last third's median is about 1.5 ×
//! the middle one's.
//!
//! `ZESTOR_SOAK_SECS` sets the run's length; `ZESTOR_SOAK_OP_IDS_TTL` the
//! time to live (`forever` shows the failure without pruning). Run with
//! `-- --nocapture` to see the samples (docs/benchmarks.md, "Bounded disk").

mod support;
#[allow(dead_code)]
#[path = "support/server.rs"]
mod test_server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use store_core::StoreOptions;
use store_core::sync::session::ServerConfig;
use sync_server::backend::sqlite::Synchronous;
use sync_server::server::{AppState, Database, Maintenance, Metrics, Stores, Tokens, parse_duration};
use tokio_tungstenite::tungstenite::Message;

const CONNECTIONS: usize = 8;
const OPS_PER_PUSH: usize = 50;
const PUSHES_PER_CLIENT_ID: usize = 20;
/// One push per connection this often: 8 × 50 ops per 100 ms.
const PUSH_EVERY: Duration = Duration::from_millis(100);
const KEYS: u64 = 2_000;
const RETENTION: usize = 100;
const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// One sample: seconds since the start, database bytes, WAL bytes,
/// recorded answers, ops acknowledged so far.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: f64,
    db: u64,
    wal: u64,
    answers: i64,
    acked: u64,
}

impl Sample {
    fn total(&self) -> u64 {
        self.db + self.wal
    }
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn env_duration(name: &str, default: Option<Duration>) -> Option<Duration> {
    match std::env::var(name) {
        Ok(v) if v == "forever" => None,
        Ok(v) => Some(parse_duration(&v).unwrap_or_else(|e| panic!("{name}: {e}"))),
        Err(_) => default,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_file_levels_off_under_continuous_writes() {
    let run = env_duration("ZESTOR_SOAK_SECS", Some(Duration::from_secs(30))).unwrap();
    let ttl = env_duration("ZESTOR_SOAK_OP_IDS_TTL", Some(Duration::from_secs(2)));
    let path = support::fresh_db("soak");
    let mut tokens = Tokens::default();
    tokens.grant("writer", "soak", store_core::sync::Rights::ReadWrite);
    let maintenance = Maintenance {
        op_ids_ttl: ttl,
        interval: Duration::from_millis(250),
    };
    let server = test_server::spawn(|shutdown| AppState {
        stores: Stores::new(
            Database::Sqlite(path.clone()),
            Synchronous::Full,
            StoreOptions::new().retention(RETENTION),
        )
        .maintenance(maintenance),
        auth: tokens.into(),
        session: ServerConfig::default(),
        metrics: Metrics::default(),
        allowed_origins: vec![],
        send_timeout: Duration::from_secs(10),
        shutdown,
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let client_ids = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let (stop, acked, client_ids) = (stop.clone(), acked.clone(), client_ids.clone());
            let url = format!("ws://{}/sync", server.address);
            tokio::spawn(async move { write(&url, c, &stop, &acked, &client_ids).await })
        })
        .collect();

    let started = Instant::now();
    let reader = rusqlite::Connection::open(&path).ok();
    let mut samples = Vec::new();
    while started.elapsed() < run {
        tokio::time::sleep(SAMPLE_EVERY).await;
        let answers = reader.as_ref().map_or(-1, |r| {
            r.query_row("SELECT count(*) FROM zestor_applied_ops", [], |row| row.get(0))
                .unwrap_or(-1)
        });
        samples.push(Sample {
            at: started.elapsed().as_secs_f64(),
            db: size(&path),
            wal: size(&wal(&path)),
            answers,
            acked: acked.load(Ordering::Relaxed),
        });
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    server.stop().await;

    report(&samples, run, ttl, client_ids.load(Ordering::Relaxed));
    let third = run.as_secs_f64() / 3.0;
    let median = |from: f64, to: f64| {
        let mut sizes: Vec<u64> = samples
            .iter()
            .filter(|s| s.at >= from && s.at < to)
            .map(Sample::total)
            .collect();
        assert!(!sizes.is_empty(), "samples in every third");
        sizes.sort_unstable();
        sizes[sizes.len() / 2]
    };
    let (middle, last) = (median(third, 2.0 * third), median(2.0 * third, f64::INFINITY));
    let peak = samples.iter().map(Sample::total).max().unwrap_or(0);
    println!("median of the middle third {middle} bytes, of the last {last}; largest sample {peak}");
    assert!(
        last as f64 <= middle as f64 * 1.15,
        "the file keeps growing: a median of {middle} bytes in the middle third, {last} in the last"
    );
    let end = samples.last().unwrap();
    assert!(
        (end.answers as u64) < end.acked / 2,
        "pruning keeps fewer answers than ops acked: {end:?}"
    );
}

fn wal(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", path.display()))
}

/// One connection's writes until `stop`: sessions of
/// [`PUSHES_PER_CLIENT_ID`] pushes, each with a fresh client id.
async fn write(url: &str, connection: usize, stop: &AtomicBool, acked: &AtomicU64, client_ids: &AtomicU64) {
    let mut n: u64 = connection as u64;
    let mut pace = tokio::time::interval(PUSH_EVERY);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        let client = format!("soak-{connection}-{}", client_ids.fetch_add(1, Ordering::Relaxed));
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        // Limited to a kind nobody writes: the session gets its acks, not
        // every other connection's changes.
        let hello = json!({"type": "hello", "protocol": 2, "namespace": "soak", "token": "writer",
            "client_id": client, "kinds": ["unwatched"]});
        socket
            .send(Message::Text(hello.to_string().into()))
            .await
            .unwrap();
        for seq in 0..PUSHES_PER_CLIENT_ID {
            pace.tick().await;
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let ops: Vec<Value> = (0..OPS_PER_PUSH)
                .map(|i| {
                    n = n
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let key = format!("k{}", (n >> 33) % KEYS);
                    let op_id = format!("{client}:{}", seq * OPS_PER_PUSH + i);
                    match (n >> 20) % 10 {
                        0 => json!({"op_id": op_id, "kind": "task", "key": key, "action": "delete"}),
                        1 | 2 => json!({"op_id": op_id, "kind": "task", "key": key, "action": "patch",
                            "value": {"done": n.is_multiple_of(2)}}),
                        _ => json!({"op_id": op_id, "kind": "task", "key": key, "action": "set",
                            "value": {"title": format!("task {n}"), "by": client, "note": "x".repeat(64)}}),
                    }
                })
                .collect();
            let push = json!({"type": "push", "ops": ops});
            socket.send(Message::Text(push.to_string().into())).await.unwrap();
            let mut answered = 0;
            while answered < OPS_PER_PUSH {
                let frame = tokio::time::timeout(Duration::from_secs(30), socket.next())
                    .await
                    .expect("an answer within 30 s")
                    .expect("the socket is open")
                    .expect("a frame");
                if let Message::Text(text) = frame {
                    let m: Value = serde_json::from_str(&text).unwrap();
                    match m["type"].as_str() {
                        Some("ack" | "reject") => answered += 1,
                        Some("error") => panic!("{m}"),
                        _ => {}
                    }
                }
            }
            acked.fetch_add(OPS_PER_PUSH as u64, Ordering::Relaxed);
        }
        let _ = socket.close(None).await;
    }
}

/// Prints the samples, one line a second.
fn report(samples: &[Sample], run: Duration, ttl: Option<Duration>, client_ids: u64) {
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "soak: {} s, op ids' time to live {ttl:?}, {CONNECTIONS} connections, {client_ids} client ids, \
         {} ops answered",
        run.as_secs(),
        samples.last().map_or(0, |s| s.acked)
    );
    println!("   t (s) | db (MiB) | WAL (MiB) | total (MiB) | recorded answers | ops answered");
    let mut next = 1.0;
    for s in samples {
        if s.at + 1e-9 >= next {
            println!(
                "{:>8.1} | {:>8.2} | {:>9.2} | {:>11.2} | {:>16} | {:>12}",
                s.at,
                mib(s.db),
                mib(s.wal),
                mib(s.total()),
                s.answers,
                s.acked
            );
            next += 1.0;
        }
    }
}
