//! Crash test: SIGKILL a writing process many times; nothing acknowledged
//! may be lost.
//!
//! This is a `harness = false` test. Run plainly it is the parent: for each
//! cycle it starts this same binary as a child (`ZESTOR_CRASH_CHILD` set),
//! which opens the store and has four threads write as fast as they can,
//! printing an `ack` line only after each write returned (was durable). The
//! parent kills the child at a random moment with SIGKILL, then reopens the
//! database and checks that
//!
//! - every acknowledged write is in the change log, at its revision, with its
//!   key, type, version and value;
//! - revisions are gap-free from 1 to the head;
//! - replaying the change log gives exactly the entries table.
//!
//! It runs against SQLite, then PostgreSQL (see `support/pg.rs` for how the
//! database is found; without one the PostgreSQL half skips loudly, or fails
//! under `ZESTOR_REQUIRE_ALL=1`). `ZESTOR_CRASH_CYCLES` sets the number of
//! cycles per backend (default 20).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{Value, json};
use store_core::{SetOptions, StoreOptions};
use sync_server::backend::Durable;
use sync_server::backend::postgres::{self, PgOptions};
use sync_server::backend::sqlite::{self, SqliteOptions};

#[path = "support/pg.rs"]
mod pg;
mod support;

const CHILD: &str = "ZESTOR_CRASH_CHILD";
const WRITERS: u64 = 4;
const KEYS: u64 = 40;

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
    let (mut passed, mut failures) = (0, Vec::new());
    for target in &targets {
        let (p, f) = crash_cycles(target, cycles);
        passed += p;
        failures.extend(f);
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

/// Runs `cycles` kill-and-check cycles against one target.
fn crash_cycles(target: &Target, cycles: usize) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let mut acked: Vec<Ack> = Vec::new();
    let mut rng = seed();
    for cycle in 0..cycles {
        let delay = Duration::from_millis(30 + next(&mut rng) % 400);
        let name = target.name();
        let result = run_cycle(target, delay).and_then(|acks| {
            let n = acks.len();
            acked.extend(acks);
            check(&read_tables(target)?, &acked).map(|head| (n, head))
        });
        match result {
            Ok((n, head)) => {
                println!("{name} cycle {cycle}: killed after {delay:?}, {n} acks, head {head}: ok")
            }
            Err(e) => failures.push(format!("{name} cycle {cycle}: {e}")),
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

/// Starts a child, kills it after `delay`, returns what it acknowledged.
fn run_cycle(target: &Target, delay: Duration) -> Result<Vec<Ack>, String> {
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .env(CHILD, target.encode())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let started = Instant::now();
    while started.elapsed() < delay {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the child exited by itself: {status}"));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().map_err(|e| format!("kill: {e}"))?; // SIGKILL
    child.wait().map_err(|e| format!("wait: {e}"))?;
    let lines = reader.join().map_err(|_| "reader thread panicked".to_owned())?;
    // A line cut by the kill is not an ack; every complete one is.
    Ok(lines.iter().filter_map(|l| parse_ack(l)).collect())
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

/// The child: four writers, each printing an ack after every durable write.
fn child(target: &Target) {
    let options = StoreOptions::new().retention(usize::MAX);
    let runtime;
    let store: Durable<Value> = match target {
        Target::Sqlite(path) => {
            sqlite::open(SqliteOptions::new(path, "crash"), options).expect("open sqlite")
        }
        Target::Postgres { url, schema } => {
            runtime = tokio::runtime::Runtime::new().expect("runtime");
            let options = PgOptions::new(url.as_str(), "crash").schema(schema.as_str());
            runtime
                .block_on(postgres::open(options, StoreOptions::new().retention(usize::MAX)))
                .expect("open postgres")
        }
    };
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
struct Tables {
    head: u64,
    log: Vec<LogRow>,
    entries: BTreeMap<(String, String), (Value, u64, u64)>,
}

fn read_tables(target: &Target) -> Result<Tables, String> {
    match target {
        Target::Sqlite(path) => read_sqlite(path).map_err(|e| format!("reading sqlite: {e}")),
        Target::Postgres { url, schema } => pg::run(read_postgres(url, schema)),
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| Value::String(format!("undecodable: {e}")))
}

fn read_sqlite(path: &std::path::Path) -> rusqlite::Result<Tables> {
    let conn = Connection::open(path)?;
    let head = conn.query_row("SELECT rev FROM zestor_heads WHERE ns = 'crash'", [], |r| {
        r.get::<_, i64>(0)
    })?;
    let log = conn
        .prepare(
            "SELECT rev, kind, key, type, value, version FROM zestor_changes WHERE ns = 'crash' ORDER BY rev",
        )?
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
        })?
        .collect::<rusqlite::Result<_>>()?;
    let entries = conn
        .prepare("SELECT kind, key, value, version, rev FROM zestor_entries WHERE ns = 'crash'")?
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
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Tables {
        head: head as u64,
        log,
        entries,
    })
}

async fn read_postgres(url: &str, schema: &str) -> Result<Tables, String> {
    let mut client = pg::connect(url).await;
    let q = |e: tokio_postgres::Error| format!("reading postgres: {e}");
    // One snapshot for all three reads: the killed child's server-side session
    // may still be committing a transaction it had already sent.
    let client = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(q)?;
    let head: i64 = client
        .query_one(
            &format!("SELECT rev FROM {schema}.zestor_heads WHERE ns = 'crash'"),
            &[],
        )
        .await
        .map_err(q)?
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
        head: head as u64,
        log,
        entries,
    })
}

/// Checks the database after a crash; returns the head revision.
fn check(tables: &Tables, acked: &[Ack]) -> Result<u64, String> {
    let Tables { head, log, entries } = tables;
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
