//! What the server benchmarks (`backends`, `load`) share: the keys, the
//! values, the write loop on a store, the raw baselines (rusqlite and
//! tokio-postgres upserts), the PostgreSQL setup, and the JSON results file
//! (`bench/RESULTS-FORMAT.md`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::{join_all, try_join_all, try_join3};
use rusqlite::{Connection, params};
use serde::Serialize;
use serde_json::{Value, json};
use store_core::{SetOptions, StoreOptions};
use sync_server::backend::Durable;
use sync_server::backend::postgres::{self, PgOptions};
use sync_server::backend::sqlite::Synchronous;
use tokio::runtime::Runtime;
use tokio_postgres::{Client, NoTls};

/// Writes cycle over this many keys of one kind.
pub const KEYS: u64 = 1_000;

/// The value of write `i`.
pub fn value(i: u64) -> Value {
    json!({"title": format!("task {i}"), "done": i.is_multiple_of(2), "n": i})
}

/// `writers` concurrent writers on `store`, each awaiting its write before
/// the next, until `budget` has passed: (writes, elapsed).
pub async fn write_loops(store: &Durable<Value>, writers: u64, budget: Duration) -> (u64, Duration) {
    let start = Instant::now();
    let loops = (0..writers).map(|w| async move {
        let mut i = w;
        let mut done = 0u64;
        while start.elapsed() < budget {
            let key = format!("k{}", i % KEYS);
            store
                .set("task", &key, value(i), SetOptions::default())
                .await
                .unwrap_or_else(|e| die(&format!("a store write failed: {e}")));
            done += 1;
            i += writers;
        }
        done
    });
    let done = join_all(loops).await.into_iter().sum();
    (done, start.elapsed())
}

// ---- failing clearly ----

/// Ends the bench with a one-line error (status 1) instead of a panic.
pub fn die(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}

/// `ZESTOR_REQUIRE_ALL=1` (CI): a skipped case is an error.
pub fn require_all() -> bool {
    std::env::var("ZESTOR_REQUIRE_ALL").as_deref() == Ok("1")
}

/// Prints a banner saying `what` was skipped and why; exits with status 1
/// when `ZESTOR_REQUIRE_ALL=1`.
pub fn skipped(what: &str, why: &str, hint: &str) {
    println!("{}", "!".repeat(100));
    println!("!!! {what} skipped: {why}");
    println!("!!! {hint}");
    println!("{}", "!".repeat(100));
    if require_all() {
        die(&format!("ZESTOR_REQUIRE_ALL=1 and {what} skipped: {why}"));
    }
}

// ---- versions ----

/// The versions of package `name` in the workspace's `Cargo.lock` (read at
/// run time; empty if it cannot be read).
pub fn locked_versions(name: &str) -> Vec<String> {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    let Ok(text) = std::fs::read_to_string(lock) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == format!("name = \"{name}\"")
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            out.push(v.trim_end_matches('"').to_owned());
        }
    }
    out
}

/// The version of `dep` that package `package` depends on, per
/// `Cargo.lock`.
pub fn dependency_version(package: &str, dep: &str) -> Option<String> {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    let text = std::fs::read_to_string(lock).ok()?;
    let block = text
        .split("[[package]]")
        .find(|b| b.lines().any(|l| l == format!("name = \"{package}\"")))?;
    let line = block
        .lines()
        .map(|l| l.trim().trim_matches(|c| c == '"' || c == ','))
        .find(|l| *l == dep || l.starts_with(&format!("{dep} ")))?;
    match line.split_once(' ') {
        Some((_, version)) => Some(version.to_owned()),
        None => locked_versions(dep).pop(),
    }
}

/// `name 1.2.3` (every locked version, comma-separated).
pub fn crate_version(name: &str) -> String {
    let versions = locked_versions(name);
    if versions.is_empty() {
        format!("{name} (version unknown)")
    } else {
        format!("{name} {}", versions.join(", "))
    }
}

/// `SQLite 3.x.y (bundled by rusqlite 0.37.0)`.
pub fn sqlite_version() -> String {
    format!(
        "SQLite {} (bundled by {})",
        rusqlite::version(),
        crate_version("rusqlite")
    )
}

// ---- results file ----

/// One row of a results file.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    pub case: String,
    pub value: f64,
    pub unit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ratio_unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub goal_id: Option<String>,
    pub verdict: String,
}

/// `n` with thousands separators: `100,000`.
pub fn thousands(n: impl Into<u64>) -> String {
    let digits = n.into().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `x` rounded to 4 significant digits (the figures are not more precise).
pub fn round(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(3 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

impl Row {
    /// A recorded figure (no baseline, no goal).
    pub fn new(section: &str, case: impl Into<String>, value: f64, unit: &str) -> Row {
        Row {
            section: Some(section.to_owned()),
            case: case.into(),
            value: round(value),
            unit: unit.to_owned(),
            baseline: None,
            baseline_label: None,
            ratio: None,
            ratio_unit: None,
            goal: None,
            goal_id: None,
            verdict: "recorded".into(),
        }
    }

    /// With a same-run baseline; `ratio_unit` `"x"` (value / baseline) or
    /// `"%"` (value / baseline in percent).
    pub fn vs(mut self, baseline: f64, label: impl Into<String>, ratio_unit: &str) -> Row {
        let ratio = match ratio_unit {
            "%" => self.value / baseline * 100.0,
            _ => self.value / baseline,
        };
        self.baseline = Some(round(baseline));
        self.baseline_label = Some(label.into());
        self.ratio = Some(round(ratio));
        self.ratio_unit = Some(ratio_unit.to_owned());
        self
    }

    /// Measures design goal `id` (`goal` as text): verdict from `met`.
    pub fn goal(mut self, goal: &str, id: &str, met: bool) -> Row {
        self.goal = Some(goal.to_owned());
        self.goal_id = Some(id.to_owned());
        self.verdict = if met { "met" } else { "not met" }.into();
        self
    }

    /// A goal's text with a verdict, but not the row carrying the goal id.
    pub fn goal_text(mut self, goal: &str, met: bool) -> Row {
        self.goal = Some(goal.to_owned());
        self.verdict = if met { "met" } else { "not met" }.into();
        self
    }
}

/// A series of the optional plot: name and (x, y) points.
#[derive(Debug, Clone, Serialize)]
pub struct Series {
    pub name: String,
    pub points: Vec<[f64; 2]>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Plot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// A suite's results file, written to `$ZESTOR_BENCH_OUT/<suite>.json`.
#[derive(Debug, Serialize)]
pub struct Results {
    pub suite: String,
    pub title: String,
    pub source: String,
    pub command: String,
    pub quick: bool,
    /// When the results were written, in Unix seconds (set by [`Results::write`]).
    pub written: u64,
    pub conditions: Vec<String>,
    pub rows: Vec<Row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plot: Option<Plot>,
    pub notes: Vec<String>,
    #[serde(skip)]
    out: Option<PathBuf>,
}

impl Results {
    /// Checks `ZESTOR_BENCH_OUT` up front (creating the directory), so a bad
    /// one fails before the run rather than after it.
    pub fn new(suite: &str, title: &str, source: &str, command: &str, quick: bool) -> Results {
        let out = std::env::var_os("ZESTOR_BENCH_OUT")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        if let Some(dir) = &out {
            if let Err(e) = std::fs::create_dir_all(dir) {
                die(&format!(
                    "ZESTOR_BENCH_OUT={}: cannot create the directory: {e}",
                    dir.display()
                ));
            }
            if !dir.is_dir() {
                die(&format!("ZESTOR_BENCH_OUT={} is not a directory", dir.display()));
            }
        }
        Results {
            suite: suite.into(),
            title: title.into(),
            source: source.into(),
            command: command.into(),
            quick,
            written: 0,
            conditions: Vec::new(),
            rows: Vec::new(),
            plot: None,
            notes: Vec::new(),
            out,
        }
    }

    pub fn condition(&mut self, line: impl Into<String>) {
        self.conditions.push(line.into());
    }

    pub fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.notes.push(line.into());
    }

    /// Writes the file if `ZESTOR_BENCH_OUT` is set.
    pub fn write(&mut self) {
        let Some(dir) = &self.out else { return };
        self.written = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for r in &self.rows {
            if !r.value.is_finite() || r.baseline.is_some_and(|b| !b.is_finite()) {
                die(&format!("row {:?}: a figure is not a number", r.case));
            }
        }
        let path = dir.join(format!("{}.json", self.suite));
        let text = serde_json::to_string_pretty(self).expect("results serialize") + "\n";
        if let Err(e) = std::fs::write(&path, text) {
            die(&format!("cannot write {}: {e}", path.display()));
        }
        println!();
        println!("results written to {}", path.display());
    }
}

// ---- raw rusqlite upserts ----

pub fn pragma(sync: Synchronous) -> &'static str {
    match sync {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    }
}

/// Raw rusqlite on a new file at `path`: upserts of the same JSON text as the
/// store writes into a `(kind, key, value)` table, `batch` per transaction,
/// WAL with `synchronous` as given, until `budget` has passed: writes/s.
pub fn raw_sqlite_kv(path: &Path, sync: Synchronous, batch: u64, budget: Duration) -> f64 {
    let run = || -> rusqlite::Result<f64> {
        let conn = Connection::open(path)?;
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous={};
             CREATE TABLE kv (kind TEXT, key TEXT, value TEXT, PRIMARY KEY (kind, key)) WITHOUT ROWID;",
            pragma(sync)
        ))?;
        let mut stmt = conn.prepare(
            "INSERT INTO kv (kind, key, value) VALUES ('task', ?1, ?2)
             ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
        )?;
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < budget {
            conn.execute_batch("BEGIN")?;
            for _ in 0..batch {
                let text = serde_json::to_string(&value(done)).expect("JSON text");
                stmt.execute(params![format!("k{}", done % KEYS), text])?;
                done += 1;
            }
            conn.execute_batch("COMMIT")?;
        }
        Ok(done as f64 / start.elapsed().as_secs_f64())
    };
    run().unwrap_or_else(|e| die(&format!("raw rusqlite on {}: {e}", path.display())))
}

// ---- PostgreSQL ----

/// The database the tests use when `DATABASE_URL` is not set.
pub const PG_LOCAL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// The raw kv baseline's table.
const RAW_KV_TABLE: &str = "
    CREATE TABLE {s}.raw_kv (
        kind TEXT COLLATE \"C\" NOT NULL,
        key TEXT COLLATE \"C\" NOT NULL,
        value JSONB NOT NULL,
        PRIMARY KEY (kind, key)
    );";

const KV_UPSERT: &str = "INSERT INTO {s}.raw_kv (kind, key, value) VALUES ('task', $1::text, $2::text::jsonb)
     ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value";

/// A multi-threaded tokio runtime with 2 workers (this machine's cores).
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| die(&format!("cannot start a tokio runtime: {e}")))
}

/// Connects, driving the connection as a task. Call within the runtime.
pub async fn pg_connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Joins `futures` so that each is first polled in the order given, which
/// is the order tokio-postgres sends their queries in. (`try_join_all` over
/// more than 30 futures polls them in no fixed order: a `COMMIT` joined
/// after them could go out first and leave the rest outside the
/// transaction.)
pub async fn in_order<F, T, E>(futures: Vec<F>) -> Result<Vec<T>, E>
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

/// A run's PostgreSQL database, runtime and schema (`<prefix>_<pid>`, with
/// the raw kv table); the schema, and every schema made by
/// [`Pg::fresh_schema`], is dropped on drop.
pub struct Pg {
    pub rt: Arc<Runtime>,
    pub url: String,
    /// Where the connection string came from (`DATABASE_URL` or the
    /// default), for printing: the string itself may hold a password.
    pub at: String,
    pub schema: String,
    pub budget: Duration,
    next: AtomicU64,
    extra: std::sync::Mutex<Vec<String>>,
}

impl Pg {
    /// Connects and creates the run's schema, or says why not.
    pub fn setup(rt: Arc<Runtime>, prefix: &str, budget: Duration) -> Result<Pg, String> {
        let from_env = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
        // The connection string may hold a password: only its source is shown.
        let at = if from_env.is_some() {
            "DATABASE_URL"
        } else {
            PG_LOCAL
        };
        let url = from_env.unwrap_or_else(|| PG_LOCAL.to_owned());
        let schema = format!("{prefix}_{}", std::process::id());
        rt.block_on(async {
            let client = match tokio::time::timeout(Duration::from_secs(5), pg_connect(&url)).await {
                Ok(Ok(client)) => client,
                Ok(Err(e)) => return Err(format!("{at}: {}", postgres::error_message(&e))),
                Err(_) => return Err(format!("{at}: no answer within 5 s")),
            };
            client
                .batch_execute(&format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};{}",
                    RAW_KV_TABLE.replace("{s}", &schema)
                ))
                .await
                .map_err(|e| format!("creating the schema {schema}: {}", postgres::error_message(&e)))
        })?;
        Ok(Pg {
            rt,
            url,
            at: at.to_owned(),
            schema,
            budget,
            next: AtomicU64::new(0),
            extra: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// `sql` with `{s}` replaced by the run's schema.
    pub fn sql(&self, sql: &str) -> String {
        sql.replace("{s}", &self.schema)
    }

    /// A namespace not used before in this run.
    pub fn namespace(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.next.fetch_add(1, Ordering::Relaxed))
    }

    /// The name of a schema not used before in this run (not created: a
    /// store creates its schema), dropped with the run's.
    pub fn fresh_schema(&self) -> String {
        let name = format!("{}_{}", self.schema, self.next.fetch_add(1, Ordering::Relaxed));
        self.extra.lock().unwrap().push(name.clone());
        name
    }

    /// A connection for the bench itself (clear error if it fails).
    pub async fn client(&self) -> Client {
        pg_connect(&self.url)
            .await
            .unwrap_or_else(|e| die(&format!("PostgreSQL connection: {}", postgres::error_message(&e))))
    }

    /// `server_version` and `synchronous_commit` as the server has them.
    pub fn server_settings(&self) -> (String, String) {
        self.rt.block_on(async {
            let client = self.client().await;
            let version = client.query_one("SHOW server_version", &[]).await;
            let sync = client.query_one("SHOW synchronous_commit", &[]).await;
            match (version, sync) {
                (Ok(v), Ok(s)) => (v.get(0), s.get(0)),
                (Err(e), _) | (_, Err(e)) => {
                    die(&format!("PostgreSQL settings: {}", postgres::error_message(&e)))
                }
            }
        })
    }

    /// The store's writes per commit in `ns`, over its retained change log
    /// (rows written by one transaction share an `xmin`).
    pub fn writes_per_commit(&self, ns: &str) -> f64 {
        self.rt.block_on(async {
            self.client()
                .await
                .query_one(
                    &self.sql(
                        "SELECT count(*)::float8 / greatest(count(DISTINCT xmin::text), 1)
                         FROM {s}.zestor_changes WHERE ns = $1::text",
                    ),
                    &[&ns],
                )
                .await
                .unwrap_or_else(|e| {
                    die(&format!(
                        "counting writes per commit: {}",
                        postgres::error_message(&e)
                    ))
                })
                .get(0)
        })
    }

    /// The store on a fresh namespace with `writers` concurrent writers:
    /// (writes/s, writes per commit).
    pub fn zestor(&self, writers: u64) -> (f64, f64) {
        let ns = self.namespace("z");
        let rate = self.rt.block_on(async {
            let store: Durable<Value> = postgres::open(
                PgOptions::new(&self.url, &ns).schema(&self.schema),
                StoreOptions::new(),
            )
            .await
            .unwrap_or_else(|e| die(&format!("opening the PostgreSQL store: {e}")));
            let (done, elapsed) = write_loops(&store, writers, self.budget).await;
            store.close();
            done as f64 / elapsed.as_secs_f64()
        });
        (rate, self.writes_per_commit(&ns))
    }

    /// Raw tokio-postgres "raw kv": `conns` connections at once, each writing
    /// batches of `batch` upserts (autocommit when 1, else `BEGIN`, the
    /// upserts and `COMMIT` pipelined in one round trip). Writes/s over all
    /// connections.
    pub fn raw_kv(&self, batch: u64, conns: u64) -> f64 {
        self.rt.block_on(async {
            let mut clients = Vec::new();
            for _ in 0..conns {
                clients.push(self.client().await);
            }
            let start = Instant::now();
            let loops = clients
                .iter()
                .enumerate()
                .map(|(c, client)| self.raw_kv_loop(client, c as u64, batch, start));
            let done: u64 = join_all(loops).await.into_iter().sum();
            done as f64 / start.elapsed().as_secs_f64()
        })
    }

    /// Upserts of `kind = 'task'`, keys `k<conn·1000 + n mod 1000>`
    /// (disjoint per connection).
    async fn raw_kv_loop(&self, client: &Client, conn: u64, batch: u64, start: Instant) -> u64 {
        fn fail(e: tokio_postgres::Error) -> ! {
            die(&format!("raw kv upserts: {}", postgres::error_message(&e)))
        }
        let upsert = client
            .prepare(&self.sql(KV_UPSERT))
            .await
            .unwrap_or_else(|e| fail(e));
        let mut done = 0u64;
        while start.elapsed() < self.budget {
            let items: Vec<(String, String)> = (done..done + batch)
                .map(|i| {
                    let key = format!("k{}", conn * KEYS + i % KEYS);
                    (key, serde_json::to_string(&value(i)).expect("JSON text"))
                })
                .collect();
            if batch == 1 {
                let (key, text) = &items[0];
                client
                    .execute(&upsert, &[key, text])
                    .await
                    .unwrap_or_else(|e| fail(e));
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
                .unwrap_or_else(|e| fail(e));
            }
            done += batch;
        }
        done
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let mut schemas = vec![self.schema.clone()];
        schemas.extend(self.extra.lock().map(|e| e.clone()).unwrap_or_default());
        let dropped = self.rt.block_on(async {
            let client = pg_connect(&self.url).await?;
            for s in &schemas {
                client
                    .batch_execute(&format!(
                        "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {s} CASCADE"
                    ))
                    .await?;
            }
            Ok::<(), tokio_postgres::Error>(())
        });
        if let Err(e) = dropped {
            eprintln!(
                "could not drop the bench schemas {schemas:?}: {}",
                postgres::error_message(&e)
            );
        }
    }
}
