//! Crash test: SIGKILL a writing process many times; nothing acknowledged
//! may be lost.
//!
//! This is a `harness = false` test. Run plainly it is the parent: for each
//! cycle it starts this same binary as a child (`ZESTOR_CRASH_CHILD` set),
//! which opens the store and has four threads write as fast as they can,
//! printing an `ack` line only after each write returned (was durable). The
//! parent kills the child with SIGKILL, at any moment of its life, opening
//! included:
//!
//! - while its migration waits for a lock the parent holds (every tenth
//!   cycle, the first included: the database then is as an earlier
//!   schema version left it, SQLite 1 or PostgreSQL 2);
//! - as soon as it says its store is open (migrated, nothing written yet);
//! - otherwise at a random moment from 0 to 430 ms after it started.
//!
//! After each kill the parent reads the database and checks that
//!
//! - the schema is all there at the current version (the recorded answers
//!   with their `applied_at` column and its index), or all there at that
//!   earlier one (with neither) — a migration is one transaction — and in
//!   the latter case nothing was acknowledged;
//! - every acknowledged write is in the change log, at its revision, with its
//!   key, type, version and value;
//! - revisions are gap-free from 1 to the head;
//! - replaying the change log gives exactly the entries table.
//!
//! Every child must open the database the previous one left (a child that
//! fails to open exits by itself, which fails the cycle); after the last
//! cycle the parent opens it once more and checks the store reads what the
//! tables hold.
//!
//! It runs against SQLite, then PostgreSQL (see `support/pg.rs` for how the
//! database is found; without one the PostgreSQL half skips loudly, or fails
//! under `ZESTOR_REQUIRE_ALL=1`). `ZESTOR_CRASH_CYCLES` sets the number of
//! cycles per backend (default 20).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};
use store_core::{SetOptions, Store, StoreOptions};
use sync_server::backend::Durable;
use sync_server::backend::postgres::{self, PgOptions, error_message};
use sync_server::backend::sqlite::{self, SqliteOptions};

#[path = "support/pg.rs"]
mod pg;
mod support;

const CHILD: &str = "ZESTOR_CRASH_CHILD";
const WRITERS: u64 = 4;
const KEYS: u64 = 40;
/// What the child prints before it opens the store, and once it is open.
const OPENING: &str = "opening";
const OPENED: &str = "opened";
/// The tables a migrated schema holds.
const TABLES: [&str; 5] = [
    "zestor_meta",
    "zestor_heads",
    "zestor_entries",
    "zestor_changes",
    "zestor_applied_ops",
];

/// One acknowledged write, as the child printed it.
#[derive(Debug, Clone, PartialEq)]
struct Ack {
    key: String,
    kind: String,
    value: Value,
    version: u64,
    rev: u64,
}

/// The database a cycle writes to.
#[derive(Debug, Clone)]
enum Target {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, schema: String },
}

impl Target {
    /// How the child is told its target (one environment variable).
    fn encode(&self) -> String {
        match self {
            Target::Sqlite(path) => format!("sqlite\t{}", path.display()),
            Target::Postgres { url, schema } => format!("postgres\t{schema}\t{url}"),
        }
    }

    fn decode(s: &str) -> Target {
        let mut parts = s.splitn(3, '\t');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("sqlite"), Some(path), None) => Target::Sqlite(path.into()),
            (Some("postgres"), Some(schema), Some(url)) => Target::Postgres {
                url: url.to_owned(),
                schema: schema.to_owned(),
            },
            _ => panic!("bad {CHILD} value {s:?}"),
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres { .. } => "postgres",
        }
    }
}

fn main() {
    if let Ok(target) = std::env::var(CHILD) {
        child(&Target::decode(&target));
        return;
    }
    let cycles: usize = std::env::var("ZESTOR_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    let mut targets = vec![Target::Sqlite(support::fresh_db("crash"))];
    if let Some(url) = pg::url("crash test (postgres)") {
        let schema = pg::run(pg::create_schema(url));
        targets.push(Target::Postgres {
            url: url.to_owned(),
            schema,
        });
    }
    for target in &targets {
        previous_version(target);
    }
    let (mut passed, mut failures) = (0, Vec::new());
    for target in &targets {
        let (p, f) = crash_cycles(target, cycles);
        passed += p;
        failures.extend(f);
        if let Err(e) = reopen(target) {
            failures.push(format!("{} after the last cycle: {e}", target.name()));
        }
        if let Target::Postgres { url, schema } = target {
            pg::run(pg::drop_schema(url, schema));
        }
    }
    for f in &failures {
        eprintln!("FAILED {f}");
    }
    println!("crash cycles: {passed} passed, {} failed", failures.len());
    if !failures.is_empty() {
        std::process::exit(1);
    }
}

/// Leaves the database as an earlier schema version wrote it (SQLite 1,
/// PostgreSQL 2), so that the first cycle's child is killed in the
/// migration to this one.
fn previous_version(target: &Target) {
    match target {
        Target::Sqlite(path) => {
            let conn = Connection::open(path).expect("create the file");
            conn.execute_batch("PRAGMA journal_mode=WAL")
                .and_then(|()| conn.execute_batch(support::SQLITE_SCHEMA_V1))
                .expect("schema version 1");
        }
        Target::Postgres { url, schema } => pg::run(async {
            let store: Durable<Value> = postgres::open(pg_options(url, schema), store_options())
                .await
                .unwrap_or_else(|e| panic!("open postgres: {e}"));
            store.close();
            pg::connect(url)
                .await
                .batch_execute(&format!(
                    "DROP INDEX {schema}.zestor_applied_ops_applied_at;
                     ALTER TABLE {schema}.zestor_applied_ops DROP COLUMN applied_at;
                     UPDATE {schema}.zestor_meta SET value = 2 WHERE key = 'schema_version';"
                ))
                .await
                .unwrap_or_else(|e| panic!("back to schema version 2: {}", error_message(&e)));
        }),
    }
}

/// When a cycle kills its child.
#[derive(Debug, Clone, Copy)]
enum Kill {
    /// While the child's migration waits for the lock the parent holds
    /// meanwhile: whatever it had done, its migration has not committed.
    Migrating,
    /// As soon as the child says its store is open.
    Opened,
    /// This long after the child was started, whatever it is doing.
    After(Duration),
}

/// Runs `cycles` kill-and-check cycles against one target.
fn crash_cycles(target: &Target, cycles: usize) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut acked: Vec<Ack> = Vec::new();
    let mut rng = seed();
    for cycle in 0..cycles {
        let kill = match cycle % 10 {
            0 => Kill::Migrating,
            1 => Kill::Opened,
            _ => Kill::After(Duration::from_millis(next(&mut rng) % 430)),
        };
        let name = target.name();
        let result = run_cycle(target, kill).and_then(|acks| {
            let n = acks.len();
            acked.extend(acks);
            let tables = read_tables(target)?;
            check(&tables, &acked).map(|head| (n, head, tables.migrated))
        });
        match result {
            Ok((n, head, migrated)) => println!(
                "{name} cycle {cycle}: killed {kill:?}, {n} acks, head {head}{}: ok",
                if migrated { "" } else { ", not migrated yet" }
            ),
            Err(e) => failures.push(format!("{name} cycle {cycle} (killed {kill:?}): {e}")),
        }
    }
    (cycles - failures.len(), failures)
}

fn seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1
}

fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// A running child and its output, line by line.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(target: &Target) -> Result<Running, String> {
        let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
            .env(CHILD, target.encode())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("spawn: {e}"))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Running {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Collects output for up to `wait`; whether `line` was printed.
    fn read(&mut self, wait: Duration, line: &str) -> Result<bool, String> {
        match self.lines.recv_timeout(wait) {
            Ok(l) => {
                let found = l == line;
                self.seen.push(l);
                Ok(found)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Ok(false),
            // The child closed its output: it ended by itself.
            Err(mpsc::RecvTimeoutError::Disconnected) => self.exited(),
        }
    }

    /// An error when the child has ended (it was not killed yet).
    fn exited(&mut self) -> Result<bool, String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("the child exited by itself: {status}")),
            Ok(None) => Ok(false),
            Err(e) => Err(format!("wait: {e}")),
        }
    }

    /// Waits until the child prints `line`.
    fn wait_for(&mut self, line: &str) -> Result<(), String> {
        while !self.read(Duration::from_millis(5), line)? {
            self.exited()?;
        }
        Ok(())
    }

    /// SIGKILLs the child; returns every write it acknowledged.
    fn kill(mut self) -> Result<Vec<Ack>, String> {
        self.child.kill().map_err(|e| format!("kill: {e}"))?;
        self.child.wait().map_err(|e| format!("wait: {e}"))?;
        // The pipe is closed now: the rest of the output is buffered.
        self.seen.extend(self.lines.iter());
        // A line cut by the kill is not an ack; every complete one is.
        Ok(self.seen.iter().filter_map(|l| parse_ack(l)).collect())
    }
}

/// Starts a child, kills it as `kill` says, returns what it acknowledged.
fn run_cycle(target: &Target, kill: Kill) -> Result<Vec<Ack>, String> {
    match kill {
        Kill::Migrating => {
            let lock = MigrationLock::take(target)?;
            let mut child = Running::start(target)?;
            let waited = lock.wait_for_waiter(&mut child);
            let acks = child.kill();
            lock.release()?;
            waited?;
            acks
        }
        Kill::Opened => {
            let mut child = Running::start(target)?;
            child.wait_for(OPENED)?;
            child.kill()
        }
        Kill::After(delay) => {
            let mut child = Running::start(target)?;
            let started = Instant::now();
            while started.elapsed() < delay {
                child.read(Duration::from_millis(5), "")?;
                child.exited()?;
            }
            child.kill()
        }
    }
}

/// The lock a store's migration takes, held by the parent.
enum MigrationLock {
    /// A SQLite write transaction (`BEGIN IMMEDIATE`).
    Sqlite(Connection),
    /// The migration's advisory lock, taken at session level (it conflicts
    /// with the transaction-level one the migration waits for).
    Postgres {
        client: tokio_postgres::Client,
        schema: String,
    },
}

const PG_LOCK: &str = "SELECT pg_advisory_lock($1, hashtext($2::text))";
const PG_UNLOCK: &str = "SELECT pg_advisory_unlock($1, hashtext($2::text))";

impl MigrationLock {
    fn take(target: &Target) -> Result<MigrationLock, String> {
        match target {
            Target::Sqlite(path) => {
                let conn = Connection::open(path).map_err(|e| format!("lock sqlite: {e}"))?;
                // In WAL mode, as the store puts it: the child's switch to WAL
                // is then a no-op, and its migration's `BEGIN IMMEDIATE` waits.
                conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
                    .and_then(|()| conn.execute_batch("BEGIN IMMEDIATE"))
                    .map_err(|e| format!("lock sqlite: {e}"))?;
                Ok(MigrationLock::Sqlite(conn))
            }
            Target::Postgres { url, schema } => pg::run(async {
                let client = pg::connect(url).await;
                client
                    .execute(PG_LOCK, &[&postgres::MIGRATION_LOCK, schema])
                    .await
                    .map_err(|e| format!("taking the migration lock: {}", error_message(&e)))?;
                Ok(MigrationLock::Postgres {
                    client,
                    schema: schema.clone(),
                })
            }),
        }
    }

    /// Waits until the child waits for this lock (PostgreSQL), or has
    /// started opening its store (SQLite, where a wait cannot be seen: its
    /// migration cannot commit either way).
    fn wait_for_waiter(&self, child: &mut Running) -> Result<(), String> {
        match self {
            MigrationLock::Sqlite(_) => child.wait_for(OPENING),
            MigrationLock::Postgres { client, schema } => {
                child.wait_for(OPENING)?;
                loop {
                    let waiting = pg::run(async {
                        client
                            .query_one(
                                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                                 AND classid = $1::int4::oid AND objid = hashtext($2::text)::oid
                                 AND objsubid = 2",
                                &[&postgres::MIGRATION_LOCK, schema],
                            )
                            .await
                            .map(|r| r.get::<_, i64>(0))
                            .map_err(|e| format!("reading pg_locks: {}", error_message(&e)))
                    })?;
                    if waiting > 0 {
                        return Ok(());
                    }
                    child.read(Duration::from_millis(5), "")?;
                    child.exited()?;
                }
            }
        }
    }

    fn release(self) -> Result<(), String> {
        match self {
            MigrationLock::Sqlite(conn) => conn
                .execute_batch("ROLLBACK")
                .map_err(|e| format!("unlock sqlite: {e}")),
            MigrationLock::Postgres { client, schema } => pg::run(async {
                client
                    .execute(PG_UNLOCK, &[&postgres::MIGRATION_LOCK, &schema])
                    .await
                    .map(drop)
                    .map_err(|e| format!("releasing the migration lock: {}", error_message(&e)))
            }),
        }
    }
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut parts = line.splitn(6, ' ');
    if parts.next()? != "ack" {
        return None;
    }
    let kind = parts.next()?.to_owned();
    let key = parts.next()?.to_owned();
    let version = parts.next()?.parse().ok()?;
    let rev = parts.next()?.parse().ok()?;
    let value = serde_json::from_str(parts.next()?).ok()?;
    Some(Ack {
        key,
        kind,
        value,
        version,
        rev,
    })
}

fn store_options() -> StoreOptions<Value> {
    StoreOptions::new().retention(usize::MAX)
}

fn pg_options(url: &str, schema: &str) -> PgOptions {
    PgOptions::new(url, "crash").schema(schema)
}

/// The child: four writers, each printing an ack after every durable write.
fn child(target: &Target) {
    let say = |line: &str| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}").and_then(|()| out.flush()).ok();
    };
    say(OPENING);
    let runtime;
    let store: Durable<Value> = match target {
        Target::Sqlite(path) => sqlite::open(SqliteOptions::new(path, "crash"), store_options())
            .unwrap_or_else(|e| panic!("open sqlite: {e}")),
        Target::Postgres { url, schema } => {
            runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime
                .block_on(postgres::open(pg_options(url, schema), store_options()))
                .unwrap_or_else(|e| panic!("open postgres: {e}"))
        }
    };
    say(OPENED);
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let store = &store;
            s.spawn(move || {
                let out = std::io::stdout();
                for i in 0u64.. {
                    let key = format!("k{}", (i * 7 + w) % KEYS);
                    if i % 9 == 4 {
                        let deleted =
                            futures_executor::block_on(store.delete("t", &key, SetOptions::default()));
                        if let Some(d) = deleted.expect("delete") {
                            writeln!(
                                out.lock(),
                                "ack t {key} {} {} {}",
                                d.prev.version,
                                d.rev,
                                d.prev.value
                            )
                            .ok();
                        }
                    } else {
                        let value = json!({"w": w, "i": i});
                        let set = store.set("t", &key, value.clone(), SetOptions::default());
                        let done = futures_executor::block_on(set).expect("set");
                        writeln!(out.lock(), "ack t {key} {} {} {value}", done.version, done.rev).ok();
                    }
                }
            });
        }
    });
}

/// A change-log row: (rev, kind, key, type, value, version).
type LogRow = (u64, String, String, String, Value, u64);

/// What a crashed database holds for the namespace.
#[derive(Default)]
struct Tables {
    /// Whether the schema is there (else the rest is empty).
    migrated: bool,
    head: u64,
    log: Vec<LogRow>,
    entries: BTreeMap<(String, String), (Value, u64, u64)>,
}

fn read_tables(target: &Target) -> Result<Tables, String> {
    match target {
        Target::Sqlite(path) => read_sqlite(path),
        Target::Postgres { url, schema } => pg::run(read_postgres(url, schema)),
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| Value::String(format!("undecodable: {e}")))
}

/// Whether the recorded answers have the `applied_at` column, and its
/// index.
type Dated = (bool, bool);

/// Whether the schema is there at the current version (the tables, and
/// the recorded answers dated); `false` when it is at the `previous`
/// version [`previous_version`] left (all the tables, the answers not
/// dated) or not there at all. Anything in between is a half-applied
/// migration: an error.
fn migrated(
    found: &[String],
    version: Option<i64>,
    (previous, current): (i64, i64),
    dated: Dated,
) -> Result<bool, String> {
    let all = found.len() == TABLES.len();
    match (version, dated) {
        _ if found.is_empty() => Ok(false),
        (Some(v), (true, true)) if all && v == current => Ok(true),
        (Some(v), (false, false)) if all && v == previous => Ok(false),
        _ => Err(format!(
            "a half-applied migration: tables {found:?}, schema version {version:?} (this build: {current}), \
             applied_at column and index {dated:?}"
        )),
    }
}

fn read_sqlite(path: &std::path::Path) -> Result<Tables, String> {
    let q = |e: rusqlite::Error| format!("reading sqlite: {e}");
    let mut conn = Connection::open(path).map_err(q)?;
    // One snapshot for every read.
    let tx = conn.transaction().map_err(q)?;
    let found: Vec<String> = tx
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .map_err(q)?
        .query_map([], |r| r.get::<_, String>(0))
        .map_err(q)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(q)?
        .into_iter()
        .filter(|t| TABLES.contains(&t.as_str()))
        .collect();
    let version = if found.iter().any(|t| t == "zestor_meta") {
        tx.query_row(
            "SELECT value FROM zestor_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(q)?
    } else {
        None
    };
    let dated = if found.iter().any(|t| t == "zestor_applied_ops") {
        let count = |sql: &str| tx.query_row(sql, [], |r| r.get::<_, i64>(0)).map_err(q);
        (
            count("SELECT count(*) FROM pragma_table_info('zestor_applied_ops') WHERE name = 'applied_at'")?
                == 1,
            count("SELECT count(*) FROM sqlite_master WHERE name = 'zestor_applied_ops_applied_at'")? == 1,
        )
    } else {
        (false, false)
    };
    if !migrated(&found, version, (1, sqlite::SCHEMA_VERSION), dated)? {
        return Ok(Tables::default());
    }
    // The head row is written with the namespace's first change.
    let head: Option<i64> = tx
        .query_row("SELECT rev FROM zestor_heads WHERE ns = 'crash'", [], |r| {
            r.get(0)
        })
        .optional()
        .map_err(q)?;
    let log = tx
        .prepare(
            "SELECT rev, kind, key, type, value, version FROM zestor_changes WHERE ns = 'crash' ORDER BY rev",
        )
        .map_err(q)?
        .query_map([], |r| {
            let value: String = r.get(4)?;
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                json(&value),
                r.get::<_, i64>(5)? as u64,
            ))
        })
        .map_err(q)?
        .collect::<rusqlite::Result<_>>()
        .map_err(q)?;
    let entries = tx
        .prepare("SELECT kind, key, value, version, rev FROM zestor_entries WHERE ns = 'crash'")
        .map_err(q)?
        .query_map([], |r| {
            let value: String = r.get(2)?;
            Ok((
                (r.get(0)?, r.get(1)?),
                (
                    json(&value),
                    r.get::<_, i64>(3)? as u64,
                    r.get::<_, i64>(4)? as u64,
                ),
            ))
        })
        .map_err(q)?
        .collect::<rusqlite::Result<_>>()
        .map_err(q)?;
    Ok(Tables {
        migrated: true,
        head: head.map_or(0, |h| h as u64),
        log,
        entries,
    })
}

async fn read_postgres(url: &str, schema: &str) -> Result<Tables, String> {
    let mut client = pg::connect(url).await;
    let q = |e: tokio_postgres::Error| format!("reading postgres: {}", error_message(&e));
    // One snapshot for every read: the killed child's server-side session
    // may still be committing a transaction it had already sent.
    let client = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(q)?;
    let found: Vec<String> = client
        .query(
            "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname::text = ANY($2)",
            &[&schema, &&TABLES[..]],
        )
        .await
        .map_err(q)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let version = if found.iter().any(|t| t == "zestor_meta") {
        client
            .query_opt(
                &format!("SELECT value FROM {schema}.zestor_meta WHERE key = 'schema_version'"),
                &[],
            )
            .await
            .map_err(q)?
            .map(|r| r.get(0))
    } else {
        None
    };
    let dated = if found.iter().any(|t| t == "zestor_applied_ops") {
        let row = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_schema = $1
                     AND table_name = 'zestor_applied_ops' AND column_name = 'applied_at'),
                 to_regclass(quote_ident($1) || '.zestor_applied_ops_applied_at') IS NOT NULL",
                &[&schema],
            )
            .await
            .map_err(q)?;
        (row.get(0), row.get(1))
    } else {
        (false, false)
    };
    if !migrated(&found, version, (2, postgres::SCHEMA_VERSION), dated)? {
        return Ok(Tables::default());
    }
    // The migration creates the namespace's head row.
    let head: i64 = client
        .query_opt(
            &format!("SELECT rev FROM {schema}.zestor_heads WHERE ns = 'crash'"),
            &[],
        )
        .await
        .map_err(q)?
        .ok_or("the schema is migrated but the namespace has no head row")?
        .get(0);
    let log = client
        .query(
            &format!(
                "SELECT rev, kind, key, type, value::text, version FROM {schema}.zestor_changes
                 WHERE ns = 'crash' ORDER BY rev"
            ),
            &[],
        )
        .await
        .map_err(q)?
        .iter()
        .map(|r| {
            let value: String = r.get(4);
            (
                r.get::<_, i64>(0) as u64,
                r.get(1),
                r.get(2),
                r.get(3),
                json(&value),
                r.get::<_, i64>(5) as u64,
            )
        })
        .collect();
    let entries = client
        .query(
            &format!(
                "SELECT kind, key, value::text, version, rev FROM {schema}.zestor_entries WHERE ns = 'crash'"
            ),
            &[],
        )
        .await
        .map_err(q)?
        .iter()
        .map(|r| {
            let value: String = r.get(2);
            (
                (r.get(0), r.get(1)),
                (json(&value), r.get::<_, i64>(3) as u64, r.get::<_, i64>(4) as u64),
            )
        })
        .collect();
    Ok(Tables {
        migrated: true,
        head: head as u64,
        log,
        entries,
    })
}

/// Opens the store on what the last child left, as a restarted server would,
/// and checks it reads what the tables hold.
fn reopen(target: &Target) -> Result<(), String> {
    let store: Durable<Value> = match target {
        Target::Sqlite(path) => sqlite::open(SqliteOptions::new(path, "crash"), store_options()),
        Target::Postgres { url, schema } => pg::run(postgres::open(pg_options(url, schema), store_options())),
    }
    .map_err(|e| format!("reopening: {e}"))?;
    let (rev, entries) = futures_executor::block_on(async { (store.rev().await, store.get_all("t").await) });
    store.close();
    let (rev, entries) = (
        rev.map_err(|e| e.to_string())?,
        entries.map_err(|e| e.to_string())?,
    );
    let tables = read_tables(target)?;
    let read: BTreeMap<(String, String), (Value, u64, u64)> = entries
        .into_iter()
        .map(|(key, e)| (("t".to_owned(), key), (e.value, e.version, e.rev)))
        .collect();
    if (rev, &read) != (tables.head, &tables.entries) {
        return Err(format!(
            "the reopened store (rev {rev}, {} entries) differs from the tables (head {}, {} entries)",
            read.len(),
            tables.head,
            tables.entries.len()
        ));
    }
    println!(
        "{}: reopened at rev {rev} with {} entries: ok",
        target.name(),
        read.len()
    );
    Ok(())
}

/// Checks the database after a crash; returns the head revision.
fn check(tables: &Tables, acked: &[Ack]) -> Result<u64, String> {
    let Tables {
        head, log, entries, ..
    } = tables;
    let revs: Vec<u64> = log.iter().map(|l| l.0).collect();
    if revs != (1..=*head).collect::<Vec<u64>>() {
        return Err(format!(
            "revisions are not gap-free 1..={head}: {} rows",
            revs.len()
        ));
    }
    for ack in acked {
        let Some(row) = log.get(ack.rev as usize - 1) else {
            return Err(format!("acknowledged rev {} is missing (head {head})", ack.rev));
        };
        if (row.1.as_str(), row.2.as_str(), row.5, &row.4)
            != (ack.kind.as_str(), ack.key.as_str(), ack.version, &ack.value)
        {
            return Err(format!(
                "acknowledged write {ack:?} differs from the log row {row:?}"
            ));
        }
    }
    let mut replayed: BTreeMap<(String, String), (Value, u64, u64)> = BTreeMap::new();
    for (rev, kind, key, t, value, version) in log {
        if t == "delete" {
            replayed.remove(&(kind.clone(), key.clone()));
        } else {
            replayed.insert((kind.clone(), key.clone()), (value.clone(), *version, *rev));
        }
    }
    if *entries != replayed {
        return Err("the entries table disagrees with the change log".to_owned());
    }
    Ok(*head)
}
