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

mod common;

use common::{KEYS, value, write_loops};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join, try_join_all, try_join3, try_join4};
use rusqlite::{Connection, params};
use serde_json::Value;
use store_core::StoreOptions;
use sync_server::backend::Durable;
use sync_server::backend::postgres::{self, PgOptions};
use sync_server::backend::sqlite::{self, SqliteOptions, Synchronous};
use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls};

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
    let (done, elapsed) = futures_executor::block_on(write_loops(&store, writers, b.budget));
    store.close();
    done as f64 / elapsed.as_secs_f64()
}

// ---- PostgreSQL ----

/// The database the tests use when `DATABASE_URL` is not set.
const PG_LOCAL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";
/// Set (to `<schema> <namespace> <budget ms>`) for a 2-process child.
const CHILD_ENV: &str = "ZESTOR_BENCH_PG_CHILD";
/// The connection string handed to a child.
const CHILD_URL_ENV: &str = "ZESTOR_BENCH_PG_URL";
/// Writers per store in the 32-writer and 2-process cases.
const WRITERS: u64 = 32;

/// The raw baselines' tables: `raw_kv`, and the store's three tables (same
/// DDL as its migration) under `raw_` names.
const RAW_TABLES: &str = "
    CREATE TABLE {s}.raw_kv (
        kind TEXT COLLATE \"C\" NOT NULL,
        key TEXT COLLATE \"C\" NOT NULL,
        value JSONB NOT NULL,
        PRIMARY KEY (kind, key)
    );
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

const KV_UPSERT: &str = "INSERT INTO {s}.raw_kv (kind, key, value) VALUES ('task', $1::text, $2::text::jsonb)
     ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value";
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

/// Joins `futures` so that each is first polled in the order given, which
/// is the order tokio-postgres sends their queries in. (`try_join_all` over
/// more than 30 futures polls them in no fixed order: a `COMMIT` joined
/// after them could go out first and leave the rest outside the
/// transaction.)
async fn in_order<F, T, E>(futures: Vec<F>) -> Result<Vec<T>, E>
where
    F: std::future::Future<Output = Result<T, E>>,
{
    let mut chunks: Vec<Vec<F>> = Vec::new();
    for f in futures {
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < 16 => chunk.push(f),
            _ => chunks.push(vec![f]),
        }
    }
    assert!(chunks.len() <= 30, "in_order joins at most 480 futures");
    Ok(try_join_all(chunks.into_iter().map(try_join_all))
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// The error and its sources on one line (tokio-postgres keeps the server's
/// message in the source).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Connects, driving the connection as a task. Call within the runtime.
async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The PostgreSQL cases' database, runtime and schema; the schema is dropped
/// on drop.
struct Pg {
    rt: Runtime,
    url: String,
    schema: String,
    budget: Duration,
    next: AtomicU64,
}

impl Pg {
    /// Connects and creates the run's schema, or says why not.
    fn setup(budget: Duration) -> Result<Pg, String> {
        let from_env = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
        // The connection string may hold a password: only its source is shown.
        let at = if from_env.is_some() {
            "DATABASE_URL"
        } else {
            PG_LOCAL
        };
        let url = from_env.unwrap_or_else(|| PG_LOCAL.to_owned());
        let rt = runtime();
        let schema = format!("zb_{}", std::process::id());
        rt.block_on(async {
            let client = match tokio::time::timeout(Duration::from_secs(5), connect(&url)).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => return Err(format!("{at}: {}", chain(&e))),
                Err(_) => return Err(format!("{at}: no answer within 5 s")),
            };
            client
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};{}",
                    RAW_TABLES.replace("{s}", &schema)
                ))
                .await
                .map_err(|e| format!("creating the schema {schema}: {}", chain(&e)))
        })?;
        Ok(Pg {
            rt,
            url,
            schema,
            budget,
            next: AtomicU64::new(0),
        })
    }

    fn sql(&self, sql: &str) -> String {
        sql.replace("{s}", &self.schema)
    }

    /// A namespace not used before in this run.
    fn namespace(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// The store's writes per commit in `ns`, over its retained change log
    /// (rows written by one transaction share an `xmin`).
    fn writes_per_commit(&self, ns: &str) -> f64 {
        self.rt.block_on(async {
            let client = connect(&self.url).await.unwrap();
            client
                .query_one(
                    &self.sql(
                        "SELECT count(*)::float8 / greatest(count(DISTINCT xmin::text), 1)
                         FROM {s}.zestor_changes WHERE ns = $1::text",
                    ),
                    &[&ns],
                )
                .await
                .unwrap()
                .get(0)
        })
    }

    /// The store with `writers` concurrent writers: (writes/s, writes per
    /// commit).
    fn zestor(&self, writers: u64) -> (f64, f64) {
        let ns = self.namespace("z");
        let rate = self.rt.block_on(async {
            let store: Durable<Value> = postgres::open(
                PgOptions::new(&self.url, &ns).schema(&self.schema),
                StoreOptions::new(),
            )
            .await
            .unwrap();
            let (done, elapsed) = write_loops(&store, writers, self.budget).await;
            store.close();
            done as f64 / elapsed.as_secs_f64()
        });
        (rate, self.writes_per_commit(&ns))
    }

    /// Two child processes, each a store on the same namespace with 32
    /// writers, started together: (total writes/s, writes per commit).
    fn zestor_two_processes(&self) -> (f64, f64) {
        let ns = self.namespace("p");
        let spec = format!("{} {ns} {}", self.schema, self.budget.as_millis());
        let mut children: Vec<ChildProc> = (0..2).map(|_| ChildProc::spawn(&spec, &self.url)).collect();
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
            assert!(status.success(), "a 2-process child failed: {status}");
        }
        (rate, self.writes_per_commit(&ns))
    }

    /// Raw tokio-postgres, `conns` connections at once, each writing batches
    /// of `batch` (autocommit when 1, else one pipelined transaction per
    /// batch): "raw kv" upserts, or the store's rows (`rows`). Writes/s over
    /// all connections.
    fn raw(&self, rows: bool, batch: u64, conns: u64) -> f64 {
        let ns = self.namespace("r");
        self.rt.block_on(async {
            let mut clients = Vec::new();
            for _ in 0..conns {
                clients.push(connect(&self.url).await.unwrap());
            }
            if rows {
                clients[0]
                    .execute(
                        &self.sql("INSERT INTO {s}.raw_heads (ns, rev) VALUES ($1::text, 0)"),
                        &[&ns],
                    )
                    .await
                    .unwrap();
            }
            let start = Instant::now();
            let loops = clients.iter().enumerate().map(|(c, client)| {
                let ns = &ns;
                async move {
                    if rows {
                        self.raw_rows_loop(client, ns, batch, start).await
                    } else {
                        self.raw_kv_loop(client, c as u64, batch, start).await
                    }
                }
            });
            let done: u64 = join_all(loops).await.into_iter().sum();
            done as f64 / start.elapsed().as_secs_f64()
        })
    }

    /// Upserts of `kind = 'task'`, keys `k<conn·1000 + n mod 1000>`
    /// (disjoint per connection).
    async fn raw_kv_loop(&self, client: &Client, conn: u64, batch: u64, start: Instant) -> u64 {
        let upsert = client.prepare(&self.sql(KV_UPSERT)).await.unwrap();
        let mut done = 0u64;
        while start.elapsed() < self.budget {
            let items: Vec<(String, String)> = (done..done + batch)
                .map(|i| {
                    let key = format!("k{}", conn * KEYS + i % KEYS);
                    (key, serde_json::to_string(&value(i)).unwrap())
                })
                .collect();
            if batch == 1 {
                let (key, text) = &items[0];
                client.execute(&upsert, &[key, text]).await.unwrap();
            } else {
                let upserts = in_order(
                    items
                        .iter()
                        .map(|(key, text)| async { client.execute(&upsert, &[key, text]).await })
                        .collect(),
                );
                // First polled in this order, so sent in this order, in one
                // round trip.
                try_join3(
                    client.batch_execute("BEGIN"),
                    upserts,
                    client.batch_execute("COMMIT"),
                )
                .await
                .unwrap();
            }
            done += batch;
        }
        done
    }

    /// The store's rows for `batch` writes per transaction, pipelined in one
    /// round trip: head first (the lock), then each write's entry and
    /// change-log row.
    async fn raw_rows_loop(&self, client: &Client, ns: &String, batch: u64, start: Instant) -> u64 {
        let (head, entry, change) = try_join3(
            client.prepare(&self.sql(ROWS_HEAD)),
            client.prepare(&self.sql(ROWS_ENTRY)),
            client.prepare(&self.sql(ROWS_CHANGE)),
        )
        .await
        .unwrap();
        let n = batch as i64;
        let mut done = 0u64;
        while start.elapsed() < self.budget {
            // (key, value, how far below the bumped head its revision is)
            let items: Vec<(String, String, i64)> = (0..batch)
                .map(|j| {
                    let i = done + j;
                    let key = format!("k{}", i % KEYS);
                    (key, serde_json::to_string(&value(i)).unwrap(), n - 1 - j as i64)
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
            .unwrap();
            done += batch;
        }
        done
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let dropped = self.rt.block_on(async {
            let client = connect(&self.url).await?;
            client
                .batch_execute(&format!(
                    "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {} CASCADE",
                    self.schema
                ))
                .await
        });
        if let Err(e) = dropped {
            eprintln!("could not drop the bench schema {}: {}", self.schema, chain(&e));
        }
    }
}

/// A 2-process child (this binary re-executed), talking in `@@` lines.
struct ChildProc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl ChildProc {
    fn spawn(spec: &str, url: &str) -> ChildProc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, spec)
            .env(CHILD_URL_ENV, url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        ChildProc { child, stdin, stdout }
    }

    /// The child's next `@@` line, which must start with `what`.
    fn expect(&mut self, what: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "a 2-process child ended before {what}");
            if let Some(l) = line.trim_end().strip_prefix("@@") {
                assert!(l.starts_with(what), "expected {what} from a child, got {l:?}");
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
                .unwrap();
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

fn postgres_cases(quick: bool, budget: Duration, filter: Option<&str>) {
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
    let pg = match Pg::setup(budget) {
        Ok(pg) => pg,
        Err(why) => {
            println!("{}", "!".repeat(HEADER_RULE));
            println!("!!! PostgreSQL cases skipped: no PostgreSQL ({why})");
            println!("!!! set DATABASE_URL, or run one at {PG_LOCAL} (trust auth)");
            println!("{}", "!".repeat(HEADER_RULE));
            if std::env::var("ZESTOR_REQUIRE_ALL").as_deref() == Ok("1") {
                eprintln!("error: ZESTOR_REQUIRE_ALL=1 and the PostgreSQL cases were skipped: no PostgreSQL");
                std::process::exit(1);
            }
            return;
        }
    };
    let version: String = pg.rt.block_on(async {
        let client = connect(&pg.url).await.unwrap();
        let row = client
            .query_one(
                "SELECT current_setting('server_version') || ', synchronous_commit=' || current_setting('synchronous_commit')",
                &[],
            )
            .await
            .unwrap();
        row.get(0)
    });
    println!("PostgreSQL {version}, schema {}", pg.schema);
    header("50%");
    for &&(name, writers) in &wanted {
        // Interleave the sides twice and keep the best of each, as above.
        let (mut z, mut kv, mut rows, mut per_commit) = (0f64, 0f64, 0f64, 0f64);
        for _ in 0..2 {
            let (batch, conns) = if writers == 0 { (WRITERS, 2) } else { (writers, 1) };
            kv = kv.max(pg.raw(false, batch, conns));
            rows = rows.max(pg.raw(true, batch, conns));
            let (rate, pc) = if writers == 0 {
                pg.zestor_two_processes()
            } else {
                pg.zestor(writers)
            };
            if rate > z {
                (z, per_commit) = (rate, pc);
            }
        }
        let goal = (writers != 0).then_some(0.5);
        row(name, z, kv, rows, quick, goal);
        let raw_batch = if writers == 0 { WRITERS } else { writers };
        println!(
            "  (zestor: {per_commit:.1} writes per commit; raw: {raw_batch}{})",
            if writers == 0 { ", on 2 connections" } else { "" }
        );
    }
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        pg_child(&spec);
        return;
    }
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
                kv = kv.max(raw(&b, sync, batch));
                rows = rows.max(raw_same_rows(&b, sync, batch));
                z = z.max(zestor(&b, sync, writers));
            }
            row(&name, z, kv, rows, quick, Some(0.8));
        }
    }
    postgres_cases(quick, b.budget, filter.as_deref());
}
