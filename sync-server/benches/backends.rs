//! Acknowledged durable writes per second through the durable backends,
//! against the raw driver doing the same upserts with the same durability,
//! measured in the same run.
//!
//! Run with `cargo bench -p sync-server --bench backends` (add `-- --quick`
//! for a short smoke run).
//!
//! - SQLite, 1 writer: `Durable::set` one at a time vs. a rusqlite loop of
//!   one upsert per transaction (one fsync each, like the store).
//! - SQLite, 32 writers: 32 concurrent writers (async loops on one thread,
//!   like a server's connections; the store group-commits them) vs. a rusqlite loop of 32 upserts per transaction.
//!
//! Two raw baselines: "raw kv", one upsert of the value per write (the
//! cheapest a key-value table can be), and "raw rows", the same rows the
//! store writes per change (entry upsert, change-log row, namespace head)
//! by hand. All sides use WAL with `synchronous=FULL` (the store's default),
//! then again with `NORMAL`. The goal is ≥ 80 % of the raw kv rate.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use serde_json::{Value, json};
use store_core::{SetOptions, StoreOptions};
use sync_server::backend::sqlite::{self, SqliteOptions, Synchronous};

const KEYS: u64 = 1_000;

struct Bench {
    dir: tempfile::TempDir,
    budget: Duration,
    next: AtomicU64,
}

impl Bench {
    fn path(&self, name: &str) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("{name}-{n}.db"))
    }
}

fn value(i: u64) -> Value {
    json!({"title": format!("task {i}"), "done": i.is_multiple_of(2), "n": i})
}

fn pragma(sync: Synchronous) -> &'static str {
    match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    }
}

/// Raw rusqlite: upserts of the same JSON text, `batch` per transaction.
fn raw(b: &Bench, sync: Synchronous, batch: u64) -> f64 {
    let conn = Connection::open(b.path("raw")).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={};
         CREATE TABLE kv (kind TEXT, key TEXT, value TEXT, PRIMARY KEY (kind, key)) WITHOUT ROWID;",
        pragma(sync)
    ))
    .unwrap();
    let mut stmt = conn
        .prepare(
            "INSERT INTO kv (kind, key, value) VALUES ('task', ?1, ?2)
             ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
        )
        .unwrap();
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < b.budget {
        conn.execute_batch("BEGIN").unwrap();
        for _ in 0..batch {
            let text = serde_json::to_string(&value(done)).unwrap();
            stmt.execute(params![format!("k{}", done % KEYS), text]).unwrap();
            done += 1;
        }
        conn.execute_batch("COMMIT").unwrap();
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// Raw rusqlite writing the rows the store writes per change (the entry,
/// a change-log row, the namespace head), `batch` changes per transaction.
fn raw_same_rows(b: &Bench, sync: Synchronous, batch: u64) -> f64 {
    let conn = Connection::open(b.path("raw-rows")).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous={};
         CREATE TABLE entries (ns TEXT, kind TEXT, key TEXT, value TEXT, version INTEGER, rev INTEGER,
                               PRIMARY KEY (ns, kind, key)) WITHOUT ROWID;
         CREATE TABLE changes (ns TEXT, rev INTEGER, kind TEXT, key TEXT, type TEXT, value TEXT, version INTEGER,
                               PRIMARY KEY (ns, rev)) WITHOUT ROWID;
         CREATE TABLE heads (ns TEXT PRIMARY KEY, rev INTEGER);",
        pragma(sync)
    ))
    .unwrap();
    let mut entry = conn
        .prepare(
            "INSERT INTO entries VALUES ('b', 'task', ?1, ?2, 1, ?3)
             ON CONFLICT (ns, kind, key) DO UPDATE SET value = excluded.value, version = version + 1, rev = excluded.rev",
        )
        .unwrap();
    let mut change = conn
        .prepare("INSERT INTO changes VALUES ('b', ?1, 'task', ?2, 'update', ?3, 1)")
        .unwrap();
    let mut head = conn
        .prepare("INSERT INTO heads VALUES ('b', ?1) ON CONFLICT (ns) DO UPDATE SET rev = excluded.rev")
        .unwrap();
    let start = Instant::now();
    let mut done = 0u64;
    while start.elapsed() < b.budget {
        conn.execute_batch("BEGIN").unwrap();
        for _ in 0..batch {
            let text = serde_json::to_string(&value(done)).unwrap();
            let key = format!("k{}", done % KEYS);
            done += 1;
            entry.execute(params![key, text, done as i64]).unwrap();
            change.execute(params![done as i64, key, text]).unwrap();
        }
        head.execute([done as i64]).unwrap();
        conn.execute_batch("COMMIT").unwrap();
    }
    done as f64 / start.elapsed().as_secs_f64()
}

/// The SQLite store with `writers` concurrent writers: async loops driven by
/// one thread, as a server's connections would be, each awaiting its write
/// before the next.
fn zestor(b: &Bench, sync: Synchronous, writers: u64) -> f64 {
    let store = sqlite::open::<Value>(
        SqliteOptions::new(b.path("zestor"), "bench").synchronous(sync),
        StoreOptions::new(),
    )
    .unwrap();
    let start = Instant::now();
    let loops = (0..writers).map(|w| {
        let store = &store;
        async move {
            let mut i = w;
            let mut done = 0u64;
            while start.elapsed() < b.budget {
                let key = format!("k{}", i % KEYS);
                store
                    .set("task", &key, value(i), SetOptions::default())
                    .await
                    .unwrap();
                done += 1;
                i += writers;
            }
            done
        }
    });
    let done: u64 = futures_executor::block_on(futures_util::future::join_all(loops))
        .into_iter()
        .sum();
    let rate = done as f64 / start.elapsed().as_secs_f64();
    store.close();
    rate
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let b = Bench {
        dir: tempfile::tempdir().unwrap(),
        budget: Duration::from_millis(if quick { 200 } else { 3_000 }),
        next: AtomicU64::new(0),
    };
    println!(
        "sync-server backend benchmark ({} per case)",
        if quick { "200 ms, quick" } else { "3 s" }
    );
    println!(
        "{:<38} | {:>10} | {:>10} | {:>10} | {:>7} | {:>9} | verdict (goal >= 80% of raw kv)",
        "case", "zestor w/s", "raw kv w/s", "raw rows", "vs kv", "vs rows"
    );
    println!("{}", "-".repeat(130));
    // A plain argument filters the cases by name.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    for sync in [Synchronous::Full, Synchronous::Normal] {
        for (writers, batch) in [(1, 1), (32, 32)] {
            let name = format!("sqlite {} {writers} writer(s), batch {batch}", pragma(sync));
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            // Interleave the sides twice and keep the best of each, so drift
            // on a shared machine hits all of them alike.
            let (mut z, mut kv, mut rows) = (0f64, 0f64, 0f64);
            for _ in 0..2 {
                kv = kv.max(raw(&b, sync, batch));
                rows = rows.max(raw_same_rows(&b, sync, batch));
                z = z.max(zestor(&b, sync, writers));
            }
            let verdict = if quick {
                "n/a (quick)"
            } else if z / kv >= 0.8 {
                "met"
            } else {
                "NOT MET"
            };
            println!(
                "{name:<38} | {z:>10.0} | {kv:>10.0} | {rows:>10.0} | {:>6.0}% | {:>8.0}% | {verdict}",
                z / kv * 100.0,
                z / rows * 100.0
            );
        }
    }
}
