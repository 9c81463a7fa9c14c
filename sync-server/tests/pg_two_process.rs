//! Cross-process watch on PostgreSQL.
//!
//! `two_processes_see_the_same_events` runs two store instances in separate
//! processes: it re-executes this test binary twice as
//! `<exe> --exact child_process --nocapture`, with `ZESTOR_PG_CHILD=<id>`
//! (plus `DATABASE_URL` and `ZESTOR_PG_SCHEMA`) in the environment. In a
//! normal run `child_process` sees no such variable and does nothing. The
//! parent and the children talk over the children's stdin/stdout, in lines;
//! a child's own lines are marked by `@@` (the harness prints others, and
//! may put "test child_process ... " in front of the first one):
//!
//! 1. child: opens the shared namespace, starts a watcher, prints `@@READY`;
//! 2. parent, once both are ready: `GO`; both children write concurrently
//!    (four tasks of 50 writes each, to overlapping keys), then print
//!    `@@DONE`;
//! 3. parent, once both are done: `HEAD <rev>` (the namespace's head);
//! 4. child: waits until its watcher has seen revision `<rev>`, prints every
//!    event it saw as `@@EVENT <json>`, then `@@END`, and exits.
//!
//! The parent asserts both children saw the same events in the same order,
//! gap-free from 1, equal to the change log table.
//!
//! The other cases run two stores in this process (each with its own
//! connections, as another process would be): a lost listener connection,
//! a lost writer connection, and the tasks ending with the store.

#[path = "support/pg.rs"]
mod pg;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use store_core::{Event, EventType, SetOptions, Store, StoreOptions, Watch, WatchOptions};
use sync_server::backend::Durable;
use sync_server::backend::postgres::{self, PgOptions};

const NONE: SetOptions = SetOptions { if_version: None };
const CHILD_ENV: &str = "ZESTOR_PG_CHILD";
const SCHEMA_ENV: &str = "ZESTOR_PG_SCHEMA";
const NS: &str = "shared";
const TASKS: usize = 4;
const WRITES_PER_TASK: usize = 50;
const PATIENCE: Duration = Duration::from_secs(60);

/// An event as both processes and the change log report it.
fn event_json(e: &Event<Value>) -> Value {
    json!({
        "rev": e.rev,
        "kind": e.kind,
        "key": e.key,
        "type": format!("{:?}", e.event_type).to_lowercase(),
        "version": e.version,
        "value": e.value,
    })
}

async fn next_within(w: &mut Watch<Value>, what: &str) -> std::sync::Arc<Event<Value>> {
    match tokio::time::timeout(Duration::from_secs(20), w.next()).await {
        Ok(Some(Ok(e))) => e,
        Ok(other) => panic!("{what}: expected an event, got {other:?}"),
        Err(_) => panic!("{what}: no event within 20 s"),
    }
}

// ---- the two-process test ----

/// One child process: see the module documentation.
#[test]
fn child_process() {
    let Ok(id) = std::env::var(CHILD_ENV) else {
        return; // a normal run: not a child
    };
    let url = std::env::var("DATABASE_URL").expect("the parent passes DATABASE_URL");
    let schema = std::env::var(SCHEMA_ENV).expect("the parent passes the schema");
    let (lines_tx, lines) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let read = move || lines.recv_timeout(PATIENCE).expect("a line from the parent");
    pg::run(async move {
        let options = PgOptions::new(&url, NS).schema(schema);
        let store: Durable<Value> = postgres::open(options, StoreOptions::new()).await.expect("open");
        let mut w = store
            .watch("doc", WatchOptions::new().buffer_size(1_000_000))
            .await
            .expect("watch");
        println!("@@READY");
        let go = tokio::task::block_in_place(&read);
        assert_eq!(go, "GO");
        let writers = (0..TASKS).map(|task| {
            let store = store.clone();
            let id = id.clone();
            tokio::spawn(async move {
                for i in 0..WRITES_PER_TASK {
                    let key = format!("k{}", (i * 3 + task) % 10);
                    if i % 7 == 6 {
                        store.delete("doc", &key, NONE).await.expect("delete");
                    } else {
                        let value = json!({"by": id, "task": task, "i": i});
                        store.set("doc", &key, value, NONE).await.expect("set");
                    }
                }
            })
        });
        for writer in futures_util::future::join_all(writers).await {
            writer.expect("writer task");
        }
        println!("@@DONE");
        let head_line = tokio::task::block_in_place(&read);
        let head: u64 = head_line
            .strip_prefix("HEAD ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("expected HEAD <rev>, got {head_line:?}"));
        let mut seen = Vec::new();
        while seen.last().is_none_or(|e: &Value| e["rev"].as_u64() < Some(head)) {
            let e = next_within(&mut w, "child watcher").await;
            seen.push(event_json(&e));
        }
        for e in &seen {
            println!("@@EVENT {e}");
        }
        println!("@@END");
        Store::close(&store).await;
    });
}

struct ChildProc {
    name: String,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl ChildProc {
    fn spawn(id: &str, url: &str, schema: &str) -> ChildProc {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", "child_process", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, id)
            .env("DATABASE_URL", url)
            .env(SCHEMA_ENV, schema)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the child");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest's "test child_process ... " may precede ours on
                // the same line.
                if let Some(at) = line.find("@@")
                    && tx.send(line[at + 2..].to_owned()).is_err()
                {
                    break;
                }
            }
        });
        ChildProc {
            name: format!("child {id}"),
            child,
            stdin,
            lines,
        }
    }

    fn expect(&self, what: &str) -> String {
        let line = self
            .lines
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("{}: no {what} within {PATIENCE:?}", self.name));
        assert!(
            line.starts_with(what),
            "{}: expected {what}, got {line:?}",
            self.name
        );
        line
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to the child");
        self.stdin.flush().expect("flush");
    }

    /// The events the child printed, after `@@END` and a clean exit.
    fn events(mut self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            let line = self.expect("");
            if line == "END" {
                break;
            }
            let json = line
                .strip_prefix("EVENT ")
                .unwrap_or_else(|| panic!("{}: unexpected line {line:?}", self.name));
            events.push(serde_json::from_str(json).expect("event JSON"));
        }
        let status = self.child.wait().expect("wait for the child");
        assert!(status.success(), "{} exited with {status}", self.name);
        events
    }
}

#[test]
fn two_processes_see_the_same_events() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let Some(url) = pg::url("two_processes_see_the_same_events") else {
        return;
    };
    let schema = pg::run(pg::create_schema(url));
    let mut children = [
        ChildProc::spawn("a", url, &schema),
        ChildProc::spawn("b", url, &schema),
    ];
    for c in &children {
        c.expect("READY");
    }
    for c in &mut children {
        c.send("GO");
    }
    for c in &children {
        c.expect("DONE");
    }
    let log = pg::run(async {
        let admin = pg::connect(url).await;
        admin
            .query(
                &format!(
                    "SELECT rev, kind, key, type, version, value::text FROM {schema}.zestor_changes
                     WHERE ns = $1 ORDER BY rev"
                ),
                &[&NS],
            )
            .await
            .expect("read the change log")
            .iter()
            .map(|r| {
                json!({
                    "rev": r.get::<_, i64>(0),
                    "kind": r.get::<_, String>(1),
                    "key": r.get::<_, String>(2),
                    "type": r.get::<_, String>(3),
                    "version": r.get::<_, i64>(4),
                    "value": serde_json::from_str::<Value>(&r.get::<_, String>(5)).expect("value JSON"),
                })
            })
            .collect::<Vec<_>>()
    });
    let head = log.len();
    for c in &mut children {
        c.send(&format!("HEAD {head}"));
    }
    let [a, b] = children;
    let (a, b) = (a.events(), b.events());
    let revs: Vec<u64> = a.iter().map(|e| e["rev"].as_u64().unwrap()).collect();
    assert_eq!(revs, (1..=head as u64).collect::<Vec<_>>(), "gap-free from 1");
    assert_eq!(a, b, "both processes saw the same events in the same order");
    assert_eq!(a, log, "and they equal the change log");
    for id in ["a", "b"] {
        assert!(
            a.iter().any(|e| e["value"]["by"] == id),
            "process {id}'s writes are among the events"
        );
    }
    assert!(
        a.iter().any(|e| e["type"] == "delete") && a.iter().any(|e| e["type"] == "update"),
        "the writes overlapped"
    );
    pg::run(pg::drop_schema(url, &schema));
}

// ---- two stores in this process ----

async fn open_named(url: &str, app: &str, schema: &str) -> Durable<Value> {
    // DATABASE_URL may be a URL or key=value pairs.
    let conn = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}application_name={app}")
    } else {
        format!("{url} application_name={app}")
    };
    postgres::open(PgOptions::new(conn, NS).schema(schema), StoreOptions::new())
        .await
        .expect("open")
}

async fn backends(url: &str, application_name: &str) -> i64 {
    pg::connect(url)
        .await
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap()
        .get(0)
}

async fn terminate(url: &str, application_name: &str) -> usize {
    pg::connect(url)
        .await
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&application_name],
        )
        .await
        .unwrap()
        .len()
}

fn unique_app(role: &str) -> String {
    format!("zt{}-{role}", std::process::id())
}

/// A watcher keeps receiving another store's writes, in order and without
/// a gap, across its listener losing the connection (twice).
#[test]
fn listener_survives_a_lost_connection() {
    let Some(url) = pg::url("listener_survives_a_lost_connection") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let app = unique_app("lost-listener");
        let watched = open_named(url, &app, &schema).await;
        let other = open_named(url, &unique_app("other"), &schema).await;
        let mut w = watched.watch("t", WatchOptions::new()).await.unwrap();
        let listener = format!("{app}/listener");
        let mut rev = 0;
        for round in 0..3 {
            for i in 0..20 {
                let value = json!([round, i]);
                rev = other
                    .set("t", &format!("k{}", i % 4), value, NONE)
                    .await
                    .unwrap()
                    .rev;
            }
            if round < 2 {
                // Wait until the listener is connected, then cut it off;
                // write while it is gone.
                while backends(url, &listener).await == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert_eq!(terminate(url, &listener).await, 1, "one listener connection");
            }
        }
        for want in 1..=rev {
            let e = next_within(&mut w, "watcher across lost connections").await;
            assert_eq!(e.rev, want, "in order, no gap");
            let (round, i) = ((want - 1) / 20, (want - 1) % 20);
            assert_eq!(e.value, json!([round, i]));
        }
        assert_eq!(watched.rev().await.unwrap(), rev);
        assert_eq!(
            watched.get_all("t").await.unwrap(),
            other.get_all("t").await.unwrap()
        );
        Store::close(&watched).await;
        Store::close(&other).await;
        pg::drop_schema(url, &schema).await;
    });
}

/// A store whose writer connection was lost reconnects on its next write,
/// after catching up on what others wrote meanwhile.
#[test]
fn writer_reconnects_after_a_lost_connection() {
    let Some(url) = pg::url("writer_reconnects_after_a_lost_connection") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let app = unique_app("lost-writer");
        let s = open_named(url, &app, &schema).await;
        let other = open_named(url, &unique_app("other-w"), &schema).await;
        s.set("t", "a", json!(1), NONE).await.unwrap();
        assert_eq!(terminate(url, &format!("{app}/writer")).await, 1);
        other.set("t", "b", json!(2), NONE).await.unwrap();
        // The loss is noticed by the first write at the latest; the next
        // one goes through on a new connection.
        let mut written = None;
        for _ in 0..3 {
            match s.set("t", "a", json!(3), NONE).await {
                Ok(w) => {
                    written = Some(w);
                    break;
                }
                Err(e) => eprintln!("write during reconnect: {e}"),
            }
        }
        let w = written.expect("a write after reconnecting");
        assert_eq!((w.rev, w.version), (3, 2));
        assert_eq!(s.get("t", "b").await.unwrap().unwrap().value, json!(2));
        Store::close(&s).await;
        Store::close(&other).await;
        pg::drop_schema(url, &schema).await;
    });
}

/// A store's connections (writer and listener) end when it is closed, and
/// when it is dropped without closing.
#[test]
fn connections_end_with_the_store() {
    let Some(url) = pg::url("connections_end_with_the_store") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        for close in [true, false] {
            let app = unique_app(if close { "closed" } else { "dropped" });
            let s = open_named(url, &app, &schema).await;
            s.set("t", "k", json!(1), NONE).await.unwrap();
            let roles = [format!("{app}/writer"), format!("{app}/listener")];
            for role in &roles {
                let mut tries = 0;
                while backends(url, role).await != 1 {
                    tries += 1;
                    assert!(tries < 200, "{role} is connected");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            if close {
                Store::close(&s).await;
            } else {
                drop(s);
            }
            for role in &roles {
                let mut tries = 0;
                while backends(url, role).await != 0 {
                    tries += 1;
                    assert!(tries < 500, "{role} disconnects once the store is gone");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        pg::drop_schema(url, &schema).await;
    });
}

/// Replay precedes live across processes: a store that opens after others
/// wrote replays the state at its revision, then sees only later changes.
#[test]
fn replay_then_live_across_stores() {
    let Some(url) = pg::url("replay_then_live_across_stores") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let writer = open_named(url, &unique_app("replay-w"), &schema).await;
        for i in 0..10 {
            writer
                .set("t", &format!("k{}", i % 3), json!(i), NONE)
                .await
                .unwrap();
        }
        let reader = open_named(url, &unique_app("replay-r"), &schema).await;
        let mut w = reader.watch("t", WatchOptions::new().replay()).await.unwrap();
        let mut replayed = Vec::new();
        for _ in 0..3 {
            let e = next_within(&mut w, "replay").await;
            assert_eq!(e.event_type, EventType::Create);
            replayed.push((e.key.clone(), e.value.clone()));
        }
        assert_eq!(
            replayed,
            [
                ("k0".into(), json!(9)),
                ("k1".into(), json!(7)),
                ("k2".into(), json!(8))
            ]
        );
        writer.set("t", "k1", json!("live"), NONE).await.unwrap();
        let e = next_within(&mut w, "live").await;
        assert_eq!((e.rev, e.key.as_str(), &e.value), (11, "k1", &json!("live")));
        Store::close(&writer).await;
        Store::close(&reader).await;
        pg::drop_schema(url, &schema).await;
    });
}

/// A large batch from another store reaches a watcher whole and in order
/// (the listener reads the log in pages).
#[test]
fn large_foreign_batch_reaches_watchers() {
    let Some(url) = pg::url("large_foreign_batch_reaches_watchers") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let watched = open_named(url, &unique_app("big-r"), &schema).await;
        let other = open_named(url, &unique_app("big-w"), &schema).await;
        let mut w = watched
            .watch("t", WatchOptions::new().buffer_size(10_000))
            .await
            .unwrap();
        let items: Vec<(String, Value)> = (0..2_500).map(|i| (format!("k{i:05}"), json!(i))).collect();
        other.set_many("t", items).await.unwrap();
        other.set("t", "k00000", json!("last"), NONE).await.unwrap();
        for rev in 1..=2_501 {
            let e = next_within(&mut w, "large batch").await;
            assert_eq!(e.rev, rev);
        }
        assert_eq!(watched.count("t").await.unwrap(), 2_500);
        assert_eq!(
            watched.get("t", "k00000").await.unwrap().unwrap().value,
            json!("last")
        );
        Store::close(&watched).await;
        Store::close(&other).await;
        pg::drop_schema(url, &schema).await;
    });
}
