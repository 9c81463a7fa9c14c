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
//! `ZESTOR_CRASH_CYCLES` sets the number of cycles (default 20).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{Value, json};
use store_core::{SetOptions, StoreOptions};
use sync_server::backend::sqlite::{self, SqliteOptions};

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

fn main() {
    if let Ok(path) = std::env::var(CHILD) {
        child(&path);
        return;
    }
    let cycles: usize = std::env::var("ZESTOR_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20);
    let path = support::fresh_db("crash");
    let mut failures = Vec::new();
    let mut acked: Vec<Ack> = Vec::new();
    let mut rng = seed();
    for cycle in 0..cycles {
        let delay = Duration::from_millis(30 + next(&mut rng) % 400);
        match run_cycle(&path, delay) {
            Ok(acks) => {
                let n = acks.len();
                acked.extend(acks);
                match check(&path, &acked) {
                    Ok(head) => println!("cycle {cycle}: killed after {delay:?}, {n} acks, head {head}: ok"),
                    Err(e) => failures.push(format!("cycle {cycle}: {e}")),
                }
            }
            Err(e) => failures.push(format!("cycle {cycle}: {e}")),
        }
    }
    for f in &failures {
        eprintln!("FAILED {f}");
    }
    println!(
        "sqlite crash cycles: {} passed, {} failed",
        cycles - failures.len(),
        failures.len()
    );
    if !failures.is_empty() {
        std::process::exit(1);
    }
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
fn run_cycle(path: &std::path::Path, delay: Duration) -> Result<Vec<Ack>, String> {
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .env(CHILD, path)
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
fn child(path: &str) {
    let store = sqlite::open::<Value>(
        SqliteOptions::new(path, "crash"),
        StoreOptions::new().retention(usize::MAX),
    )
    .expect("open");
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let store = &store;
            s.spawn(move || {
                let out = std::io::stdout();
                for i in 0u64.. {
                    let key = format!("k{}", (i * 7 + w) % KEYS);
                    if i % 9 == 4 {
                        if let Some(d) =
                            futures_executor::block_on(store.delete("t", &key, SetOptions::default()))
                                .expect("delete")
                        {
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
                        let done = futures_executor::block_on(store.set(
                            "t",
                            &key,
                            value.clone(),
                            SetOptions::default(),
                        ))
                        .expect("set");
                        writeln!(out.lock(), "ack t {key} {} {} {value}", done.version, done.rev).ok();
                    }
                }
            });
        }
    });
}

/// Checks the database after a crash; returns the head revision.
fn check(path: &std::path::Path, acked: &[Ack]) -> Result<u64, String> {
    let conn = Connection::open(path).map_err(|e| e.to_string())?;
    let head: u64 = conn
        .query_row("SELECT rev FROM zestor_heads WHERE ns = 'crash'", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|e| format!("head: {e}"))? as u64;
    let mut stmt = conn
        .prepare(
            "SELECT rev, kind, key, type, value, version FROM zestor_changes WHERE ns = 'crash' ORDER BY rev",
        )
        .map_err(|e| e.to_string())?;
    let log: Vec<(u64, String, String, String, String, u64)> = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get::<_, i64>(5)? as u64,
            ))
        })
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let revs: Vec<u64> = log.iter().map(|l| l.0).collect();
    if revs != (1..=head).collect::<Vec<u64>>() {
        return Err(format!(
            "revisions are not gap-free 1..={head}: {} rows",
            revs.len()
        ));
    }
    for ack in acked {
        let Some(row) = log.get(ack.rev as usize - 1) else {
            return Err(format!("acknowledged rev {} is missing (head {head})", ack.rev));
        };
        let value: Value = serde_json::from_str(&row.4).map_err(|e| e.to_string())?;
        if (row.1.as_str(), row.2.as_str(), row.5, &value)
            != (ack.kind.as_str(), ack.key.as_str(), ack.version, &ack.value)
        {
            return Err(format!(
                "acknowledged write {ack:?} differs from the log row {row:?}"
            ));
        }
    }
    let mut replayed: BTreeMap<(String, String), (Value, u64, u64)> = BTreeMap::new();
    for (rev, kind, key, t, value, version) in &log {
        if t == "delete" {
            replayed.remove(&(kind.clone(), key.clone()));
        } else {
            let value: Value = serde_json::from_str(value).map_err(|e| e.to_string())?;
            replayed.insert((kind.clone(), key.clone()), (value, *version, *rev));
        }
    }
    let mut stmt = conn
        .prepare("SELECT kind, key, value, version, rev FROM zestor_entries WHERE ns = 'crash'")
        .map_err(|e| e.to_string())?;
    let entries: BTreeMap<(String, String), (Value, u64, u64)> = stmt
        .query_map([], |r| {
            let value: String = r.get(2)?;
            Ok((
                (r.get(0)?, r.get(1)?),
                (
                    serde_json::from_str(&value).unwrap_or(Value::Null),
                    r.get::<_, i64>(3)? as u64,
                    r.get::<_, i64>(4)? as u64,
                ),
            ))
        })
        .map_err(|e| e.to_string())?
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    if entries != replayed {
        return Err("the entries table disagrees with the change log".to_owned());
    }
    Ok(head)
}
