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
//!
//! PostgreSQL (goal ≥ 50 % of the raw kv rate), on a fresh schema
//! `zb_<pid>` dropped at the end, with `synchronous_commit` as the server has
//! it (the default, `on`) for every side. The database is `DATABASE_URL`, else
//! `host=127.0.0.1 port=5432 user=postgres dbname=test` (as the tests). When
//! none answers the PostgreSQL cases print "skipped: no PostgreSQL" — and the
//! bench exits non-zero if `ZESTOR_REQUIRE_ALL=1`. Every side runs on the same
//! multi-threaded tokio runtime (2 workers), its loops driven by the bench
//! thread; each zestor run uses a fresh namespace, each raw run a fresh
//! connection.
//!
//! - PostgreSQL, 1 writer: `Durable::set` one at a time vs. "raw kv", one
//!   prepared upsert per round trip in autocommit (one commit per write, like
//!   the store).
//! - PostgreSQL, 32 writers: 32 concurrent writers (async loops) vs. "raw kv",
//!   batches of 32 upserts pipelined on one connection inside one
//!   transaction: `BEGIN`, 32 `execute`s (`try_join_all`) and `COMMIT` in one
//!   round trip. One transaction rather than autocommit because the store
//!   group-commits its 32 writers into about one commit per 32 writes; 32
//!   autocommits would pay 32 WAL flushes and flatter the store. The store's
//!   actual writes per commit are printed under its row (counted from the
//!   change log's `xmin`).
//! - "raw rows" on PostgreSQL: the rows the store writes, in the store's
//!   tables (same DDL), one transaction per batch, all pipelined in one round
//!   trip: `BEGIN`, the namespace head bumped first (its row lock serializes
//!   writers, as the store's `SELECT … FOR UPDATE` does), then per write the
//!   entry upsert and a change-log row (their revisions read from the head in
//!   SQL), then `COMMIT`. Not included: the store's log trimming and its
//!   `pg_notify` per batch.
//! - PostgreSQL, 2 processes: the bench re-executes itself twice (child mode
//!   selected by the `ZESTOR_BENCH_PG_CHILD` environment variable); each child
//!   opens a store on the same namespace and runs 32 concurrent writers for
//!   the same window, started together; the figure is the sum of the two
//!   rates. Its raw columns are two connections of this process, each doing
//!   the 32-writer raw case at once (raw kv on disjoint keys, raw rows on one
//!   namespace, so the head lock serializes them as it does the stores).
//!
//! When `ZESTOR_BENCH_OUT` names a directory, the results are also written
//! there as `backends.json` (see `bench/RESULTS-FORMAT.md`): one row per
//! case against raw kv (with the goal's verdict) and one against raw rows
//! (recorded).

mod common;

use common::{
    KEYS, Pg, Results, Row, crate_version, die, in_order, pragma, raw_sqlite_kv, runtime, skipped,
    sqlite_version, value, write_loops,
};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join, try_join3, try_join4};
use rusqlite::{Connection, params};
use serde_json::Value;
use store_core::StoreOptions;
use sync_server::backend::Durable;
use sync_server::backend::postgres::{self, PgOptions};
use sync_server::backend::sqlite::{self, SqliteOptions, Synchronous};
use tokio_postgres::Client;

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

/// Raw rusqlite writing the rows the store writes per change (the entry,
/// a change-log row, the namespace head), `batch` changes per transaction.
fn raw_same_rows(b: &Bench, sync: Synchronous, batch: u64) -> f64 {
    let path = b.path("raw-rows");
    let run = || -> rusqlite::Result<f64> {
        let conn = Connection::open(&path)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={};
             CREATE TABLE entries (ns TEXT, kind TEXT, key TEXT, value TEXT, version INTEGER, rev INTEGER,
                                   PRIMARY KEY (ns, kind, key)) WITHOUT ROWID;
             CREATE TABLE changes (ns TEXT, rev INTEGER, kind TEXT, key TEXT, type TEXT, value TEXT, version INTEGER,
                                   PRIMARY KEY (ns, rev)) WITHOUT ROWID;
             CREATE TABLE heads (ns TEXT PRIMARY KEY, rev INTEGER);",
            pragma(sync)
        ))?;
        let mut entry = conn.prepare(
            "INSERT INTO entries VALUES ('b', 'task', ?1, ?2, 1, ?3)
             ON CONFLICT (ns, kind, key) DO UPDATE SET value = excluded.value, version = version + 1, rev = excluded.rev",
        )?;
        let mut change = conn.prepare("INSERT INTO changes VALUES ('b', ?1, 'task', ?2, 'update', ?3, 1)")?;
        let mut head = conn.prepare(
            "INSERT INTO heads VALUES ('b', ?1) ON CONFLICT (ns) DO UPDATE SET rev = excluded.rev",
        )?;
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < b.budget {
            conn.execute_batch("BEGIN")?;
            for _ in 0..batch {
                let text = serde_json::to_string(&value(done)).expect("JSON text");
                let key = format!("k{}", done % KEYS);
                done += 1;
                entry.execute(params![key, text, done as i64])?;
                change.execute(params![done as i64, key, text])?;
            }
            head.execute([done as i64])?;
            conn.execute_batch("COMMIT")?;
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    };
    run().unwrap_or_else(|e| die(&format!("raw rows on {}: {e}", path.display())))
}

/// The SQLite store with `writers` concurrent writers: async loops driven by
/// one thread, as a server's connections would be, each awaiting its write
/// before the next.
fn zestor(b: &Bench, sync: Synchronous, writers: u64) -> f64 {
    let path = b.path("zestor");
    let store = sqlite::open::<Value>(
        SqliteOptions::new(&path, "bench").synchronous(sync),
        StoreOptions::new(),
    )
    .unwrap_or_else(|e| die(&format!("opening the SQLite store {}: {e}", path.display())));
    let (done, elapsed) = futures_executor::block_on(write_loops(&store, writers, b.budget));
    store.close();
    done as f64 / elapsed.as_secs_f64()
}

// ---- PostgreSQL ----

/// Set (to `<schema> <namespace> <budget ms>`) for a 2-process child.
const CHILD_ENV: &str = "ZESTOR_BENCH_PG_CHILD";
/// The connection string handed to a child.
const CHILD_URL_ENV: &str = "ZESTOR_BENCH_PG_URL";
/// Writers per store in the 32-writer and 2-process cases.
const WRITERS: u64 = 32;

/// The "raw rows" baseline's tables: the store's three tables (same DDL as
/// its migration) under `raw_` names. ("raw kv"'s table is made by
/// `Pg::setup`.)
const RAW_ROWS_TABLES: &str = "
    CREATE TABLE {s}.raw_heads (
        ns TEXT COLLATE \"C\" PRIMARY KEY,
        rev BIGINT NOT NULL
    );
    CREATE TABLE {s}.raw_entries (
        ns TEXT COLLATE \"C\" NOT NULL,
        kind TEXT COLLATE \"C\" NOT NULL,
        key TEXT COLLATE \"C\" NOT NULL,
        value JSONB NOT NULL,
        version BIGINT NOT NULL,
        rev BIGINT NOT NULL,
        PRIMARY KEY (ns, kind, key)
    );
    CREATE TABLE {s}.raw_changes (
        ns TEXT COLLATE \"C\" NOT NULL,
        rev BIGINT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('create', 'update', 'delete')),
        value JSONB NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (ns, rev)
    );";

/// Takes the namespace's head row lock and reserves `$2` revisions.
const ROWS_HEAD: &str = "UPDATE {s}.raw_heads SET rev = rev + $2::bigint WHERE ns = $1::text";
/// The entry of a write whose revision is the (bumped) head minus `$4`.
const ROWS_ENTRY: &str = "INSERT INTO {s}.raw_entries (ns, kind, key, value, version, rev)
     SELECT $1::text, 'task', $2::text, $3::text::jsonb, 1, h.rev - $4::bigint
     FROM {s}.raw_heads h WHERE h.ns = $1::text
     ON CONFLICT (ns, kind, key) DO UPDATE
     SET value = excluded.value, version = raw_entries.version + 1, rev = excluded.rev";
/// The change-log row of the same write.
const ROWS_CHANGE: &str = "INSERT INTO {s}.raw_changes (ns, rev, kind, key, type, value, version)
     SELECT $1::text, h.rev - $4::bigint, 'task', $2::text, 'update', $3::text::jsonb, 1
     FROM {s}.raw_heads h WHERE h.ns = $1::text";

fn pg_fail(what: &str, e: &tokio_postgres::Error) -> ! {
    die(&format!("{what}: {}", postgres::error_message(e)))
}

/// Two child processes, each a store on the same namespace with 32
/// writers, started together: (total writes/s, writes per commit).
fn zestor_two_processes(pg: &Pg) -> (f64, f64) {
    let ns = pg.namespace("p");
    let spec = format!("{} {ns} {}", pg.schema, pg.budget.as_millis());
    let mut children: Vec<ChildProc> = (0..2).map(|_| ChildProc::spawn(&spec, &pg.url)).collect();
    for c in &mut children {
        c.expect("READY");
    }
    for c in &mut children {
        c.send("GO");
    }
    let mut rate = 0.0;
    for c in &mut children {
        let done = c.expect("DONE");
        let mut fields = done.split_whitespace().skip(1).map(|f| f.parse::<f64>().unwrap());
        let (writes, secs) = (fields.next().unwrap(), fields.next().unwrap());
        rate += writes / secs;
    }
    for mut c in children {
        let status = c.child.wait().unwrap();
        if !status.success() {
            die(&format!("a 2-process child failed: {status}"));
        }
    }
    (rate, pg.writes_per_commit(&ns))
}

/// Raw tokio-postgres writing the store's rows, `conns` connections at once
/// on one namespace, `batch` writes per pipelined transaction: writes/s
/// over all connections.
fn raw_rows(pg: &Pg, batch: u64, conns: u64) -> f64 {
    let ns = pg.namespace("r");
    pg.rt.block_on(async {
        let mut clients = Vec::new();
        for _ in 0..conns {
            clients.push(pg.client().await);
        }
        clients[0]
            .execute(
                &pg.sql("INSERT INTO {s}.raw_heads (ns, rev) VALUES ($1::text, 0)"),
                &[&ns],
            )
            .await
            .unwrap_or_else(|e| pg_fail("raw rows", &e));
        let start = Instant::now();
        let loops = clients
            .iter()
            .map(|client| raw_rows_loop(pg, client, &ns, batch, start));
        let done: u64 = join_all(loops).await.into_iter().sum();
        done as f64 / start.elapsed().as_secs_f64()
    })
}

/// The store's rows for `batch` writes per transaction, pipelined in one
/// round trip: head first (the lock), then each write's entry and
/// change-log row.
async fn raw_rows_loop(pg: &Pg, client: &Client, ns: &String, batch: u64, start: Instant) -> u64 {
    let (head, entry, change) = try_join3(
        client.prepare(&pg.sql(ROWS_HEAD)),
        client.prepare(&pg.sql(ROWS_ENTRY)),
        client.prepare(&pg.sql(ROWS_CHANGE)),
    )
    .await
    .unwrap_or_else(|e| pg_fail("raw rows", &e));
    let n = batch as i64;
    let mut done = 0u64;
    while start.elapsed() < pg.budget {
        // (key, value, how far below the bumped head its revision is)
        let items: Vec<(String, String, i64)> = (0..batch)
            .map(|j| {
                let i = done + j;
                let key = format!("k{}", i % KEYS);
                (
                    key,
                    serde_json::to_string(&value(i)).expect("JSON text"),
                    n - 1 - j as i64,
                )
            })
            .collect();
        let writes = in_order(
            items
                .iter()
                .map(|(key, text, back)| async {
                    try_join(
                        client.execute(&entry, &[ns, key, text, back]),
                        client.execute(&change, &[ns, key, text, back]),
                    )
                    .await
                })
                .collect(),
        );
        try_join4(
            client.batch_execute("BEGIN"),
            client.execute(&head, &[ns, &n]),
            writes,
            client.batch_execute("COMMIT"),
        )
        .await
        .unwrap_or_else(|e| pg_fail("raw rows", &e));
        done += batch;
    }
    done
}

/// A 2-process child (this binary re-executed), talking in `@@` lines.
struct ChildProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl ChildProc {
    fn spawn(spec: &str, url: &str) -> ChildProc {
        let exe = std::env::current_exe().unwrap_or_else(|e| die(&format!("this bench's path: {e}")));
        let mut child = Command::new(exe)
            .env(CHILD_ENV, spec)
            .env(CHILD_URL_ENV, url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| die(&format!("starting a 2-process child: {e}")));
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        ChildProc { child, stdin, stdout }
    }

    /// The child's next `@@` line, which must start with `what`.
    fn expect(&mut self, what: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap_or(0);
            if n == 0 {
                die(&format!("a 2-process child ended before {what}"));
            }
            if let Some(l) = line.trim_end().strip_prefix("@@") {
                if !l.starts_with(what) {
                    die(&format!("expected {what} from a 2-process child, got {l:?}"));
                }
                return l.to_owned();
            }
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        // Only if still running (a panic on the way): kill that child.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Child mode: opens the store, says `@@READY`, waits for `GO`, runs 32
/// writers for the budget, says `@@DONE <writes> <seconds>`.
fn pg_child(spec: &str) {
    let mut fields = spec.split_whitespace();
    let (schema, ns, ms) = (
        fields.next().unwrap(),
        fields.next().unwrap(),
        fields.next().unwrap().parse::<u64>().unwrap(),
    );
    let url = std::env::var(CHILD_URL_ENV).unwrap();
    runtime().block_on(async {
        let store: Durable<Value> =
            postgres::open(PgOptions::new(url, ns).schema(schema), StoreOptions::new())
                .await
                .unwrap_or_else(|e| die(&format!("2-process child: opening the store: {e}")));
        println!("@@READY");
        std::io::stdout().flush().unwrap();
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        assert_eq!(go.trim(), "GO");
        let (done, elapsed) = write_loops(&store, WRITERS, Duration::from_millis(ms)).await;
        println!("@@DONE {done} {}", elapsed.as_secs_f64());
        std::io::stdout().flush().unwrap();
        store.close();
    });
}

const HEADER_RULE: usize = 130;

fn header(goal: &str) {
    println!(
        "{:<38} | {:>10} | {:>10} | {:>10} | {:>7} | {:>9} | verdict (goal >= {goal} of raw kv)",
        "case", "zestor w/s", "raw kv w/s", "raw rows", "vs kv", "vs rows"
    );
    println!("{}", "-".repeat(HEADER_RULE));
}

/// One table row; `goal` is the share of raw kv to meet, if any.
fn row(name: &str, z: f64, kv: f64, rows: f64, quick: bool, goal: Option<f64>) {
    let verdict = match goal {
        None => "recorded (no goal)",
        Some(_) if quick => "n/a (quick)",
        Some(g) if z / kv >= g => "met",
        Some(_) => "NOT MET",
    };
    println!(
        "{name:<38} | {z:>10.0} | {kv:>10.0} | {rows:>10.0} | {:>6.0}% | {:>8.0}% | {verdict}",
        z / kv * 100.0,
        z / rows * 100.0
    );
}

/// The two result rows of a case: against raw kv (with the goal, if any)
/// and against raw rows (recorded).
#[allow(clippy::too_many_arguments)]
fn result_rows(
    results: &mut Results,
    section: &str,
    case: &str,
    z: f64,
    (kv, kv_label): (f64, &str),
    (rows, rows_label): (f64, &str),
    goal: Option<(f64, &str)>,
) {
    let mut r = Row::new(section, format!("{case}, vs raw kv"), z, "writes/s").vs(kv, kv_label, "%");
    if let Some((share, text)) = goal {
        r = r.goal_text(text, z / kv >= share);
    }
    results.row(r);
    results.row(Row::new(section, format!("{case}, vs raw rows"), z, "writes/s").vs(rows, rows_label, "%"));
}

const SQLITE_GOAL: &str = ">= 80 % of raw kv, the store alone (its share of goal server-sqlite-acked, measured through the server in server.json)";
const PG_GOAL: &str = ">= 50 % of raw kv, the store alone (its share of goal server-pg-acked, measured through the server in server.json)";

fn postgres_cases(results: &mut Results, quick: bool, budget: Duration, filter: Option<&str>) {
    let cases = [
        ("postgres 1 writer(s), batch 1", 1u64),
        ("postgres 32 writer(s), batch 32", WRITERS),
        ("postgres 2 processes x 32 writer(s)", 0),
    ];
    let wanted: Vec<_> = cases
        .iter()
        .filter(|(name, _)| filter.is_none_or(|f| name.contains(f)))
        .collect();
    if wanted.is_empty() {
        return;
    }
    println!();
    let pg = match Pg::setup(Arc::new(runtime()), "zb", budget) {
        Ok(pg) => pg,
        Err(why) => {
            skipped(
                "the PostgreSQL cases",
                &format!("no PostgreSQL ({why})"),
                &format!(
                    "set DATABASE_URL, or run one at {} (trust auth)",
                    common::PG_LOCAL
                ),
            );
            results.note(format!("PostgreSQL cases skipped: no PostgreSQL ({why})"));
            return;
        }
    };
    pg.rt.block_on(async {
        pg.client()
            .await
            .batch_execute(&pg.sql(RAW_ROWS_TABLES))
            .await
            .unwrap_or_else(|e| pg_fail("creating the raw rows tables", &e));
    });
    let (version, sync_commit) = pg.server_settings();
    println!(
        "PostgreSQL {version}, synchronous_commit={sync_commit}, schema {} ({})",
        pg.schema, pg.at
    );
    results.condition(format!(
        "PostgreSQL {version} over TCP ({}), synchronous_commit={sync_commit} on every side, {}; \
         every side on one tokio runtime with 2 workers",
        pg.at,
        crate_version("tokio-postgres")
    ));
    results.condition(
        "PostgreSQL raw kv: 1 writer = one prepared upsert per round trip in autocommit; \
         32 = BEGIN, 32 pipelined upserts, COMMIT in one round trip (one commit per 32 writes); \
         2 processes = 2 connections of that, disjoint keys",
    );
    header("50%");
    for &&(name, writers) in &wanted {
        // Interleave the sides twice and keep the best of each, as above.
        let (mut z, mut kv, mut rows, mut per_commit) = (0f64, 0f64, 0f64, 0f64);
        let (batch, conns) = if writers == 0 { (WRITERS, 2) } else { (writers, 1) };
        for _ in 0..2 {
            kv = kv.max(pg.raw_kv(batch, conns));
            rows = rows.max(raw_rows(&pg, batch, conns));
            let (rate, pc) = if writers == 0 {
                zestor_two_processes(&pg)
            } else {
                pg.zestor(writers)
            };
            if rate > z {
                (z, per_commit) = (rate, pc);
            }
        }
        let goal = (writers != 0).then_some(0.5);
        row(name, z, kv, rows, quick, goal);
        println!(
            "  (zestor: {per_commit:.1} writes per commit; raw: {batch}{})",
            if writers == 0 { ", on 2 connections" } else { "" }
        );
        let case = match writers {
            0 => format!("2 processes x 32 writers (store: {per_commit:.1} writes per commit)"),
            1 => "1 writer, 1 per commit".to_owned(),
            w => format!("{w} writers (store: {per_commit:.1} writes per commit; raw: {w})"),
        };
        let kv_label = match writers {
            0 => "raw tokio-postgres upserts, 2 connections x 32 pipelined per commit".to_owned(),
            1 => "raw tokio-postgres upserts, autocommit".to_owned(),
            w => format!("raw tokio-postgres upserts, {w} pipelined per commit"),
        };
        result_rows(
            results,
            "PostgreSQL",
            &case,
            z,
            (kv, &kv_label),
            (rows, "the store's rows by hand, pipelined"),
            goal.map(|g| (g, PG_GOAL)),
        );
    }
}

/// The sync-server binary's allocator, so that the server measured here
/// in-process allocates as the binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        pg_child(&spec);
        return;
    }
    let quick = std::env::args().any(|a| a == "--quick" || a == "--test");
    let mut results = Results::new(
        "backends",
        "Durable backends",
        "sync-server/benches/backends.rs",
        "cargo bench -p sync-server --bench backends",
        quick,
    );
    let b = Bench {
        dir: tempfile::tempdir().unwrap_or_else(|e| die(&format!("a temporary directory: {e}"))),
        budget: Duration::from_millis(if quick { 200 } else { 3_000 }),
        next: AtomicU64::new(0),
    };
    println!(
        "sync-server backend benchmark ({} per case)",
        if quick { "200 ms, quick" } else { "3 s" }
    );
    results.condition(format!(
        "{} ms per case and side; each side runs twice, interleaved, the better run counts",
        b.budget.as_millis()
    ));
    results.condition(
        "writes: a 3-field JSON value (~45 bytes) to one of 1,000 keys of one kind; zestor = Durable::set awaited \
         before the next, 1 writer or 32 concurrent writers (the store group-commits what is queued)"
    );
    results.condition(format!(
        "{}, WAL journal, synchronous=FULL (the store's default) and NORMAL, the same on every side; \
         raw kv = rusqlite upserts of the same JSON text, as many per transaction as writers",
        sqlite_version()
    ));
    results.condition(format!(
        "machine: {} CPUs",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    ));
    // A plain argument filters the cases by name.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let mut headed = false;
    for sync in [Synchronous::Full, Synchronous::Normal] {
        for (writers, batch) in [(1, 1), (32, 32)] {
            let name = format!("sqlite {} {writers} writer(s), batch {batch}", pragma(sync));
            if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
                continue;
            }
            if !headed {
                header("80%");
                headed = true;
            }
            // Interleave the sides twice and keep the best of each, so drift
            // on a shared machine hits all of them alike.
            let (mut z, mut kv, mut rows) = (0f64, 0f64, 0f64);
            for _ in 0..2 {
                kv = kv.max(raw_sqlite_kv(&b.path("raw"), sync, batch, b.budget));
                rows = rows.max(raw_same_rows(&b, sync, batch));
                z = z.max(zestor(&b, sync, writers));
            }
            row(&name, z, kv, rows, quick, Some(0.8));
            let writers_text = if writers == 1 {
                "1 writer".to_owned()
            } else {
                format!("{writers} writers")
            };
            result_rows(
                &mut results,
                "SQLite",
                &format!(
                    "synchronous={}, {writers_text}, {batch} per transaction",
                    pragma(sync)
                ),
                z,
                (kv, &format!("raw rusqlite upserts, {batch} per transaction")),
                (rows, "the store's rows by hand"),
                Some((0.8, SQLITE_GOAL)),
            );
        }
    }
    postgres_cases(&mut results, quick, b.budget, filter.as_deref());
    results.note(
        "raw rows: the rows the store writes per change (entry upsert, change-log row, namespace head) \
         written by hand; the data-model reference, no goal",
    );
    results.write();
}
