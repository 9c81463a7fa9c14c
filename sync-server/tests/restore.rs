//! A restore to an older state, end to end: a real server process, the
//! native client over a real WebSocket, and the operator's commands.
//!
//! A client syncs to revision N = 7; the server's data goes back to the
//! state of an older revision R = 4 (the server stopped; SQLite:
//! `sync-server restore` of a `sync-server backup` file; PostgreSQL:
//! `sync-server import --replace` of a `sync-server export`, or
//! `pg_restore` of a `pg_dump`); meanwhile the client wrote offline. When
//! the restarted server is back, the client gets a snapshot of the
//! restored state, and its pending writes are applied once each, on top of
//! it.
//!
//! A restore through `restore` or `import` never moves the revision back:
//! the namespace goes on from N + 1, so a second client whose cursor C is
//! in (R, N], and that comes back only once the namespace has taken more
//! writes than C, still gets a snapshot. A restore into a new database or
//! with `pg_restore` puts the revision back to R: clients ahead of it get
//! a `reset` snapshot.

#[path = "support/pg.rs"]
mod pg;
#[path = "support/process.rs"]
mod process;
mod support;

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use store_core::Entry;
use store_core::sync::session::ClientEvent;
use store_core::sync::{ErrorCode, OpResult, SnapshotReason};
use sync_server::client::{Client, ClientOptions, Events, Link, PendingWrite, Update};

use process::{ServerProcess, ok, pg_db, sqlite_db};

const NS: &str = "restore";
const WAIT: Duration = Duration::from_secs(20);

fn options(server: &ServerProcess, client_id: &str) -> ClientOptions {
    ClientOptions {
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        heartbeat: Duration::from_secs(2),
        ..ClientOptions::new(server.url(), NS, "any", client_id)
    }
}

async fn acked(write: Option<PendingWrite>) -> store_core::sync::Ack {
    let write = write.expect("a write to send");
    tokio::time::timeout(WAIT, write.acked())
        .await
        .expect("timed out waiting for an ack")
        .expect("acknowledged")
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// The updates until `done` says the last one completes them.
async fn updates_until(events: &mut Events, mut done: impl FnMut(&[Update]) -> bool) -> Vec<Update> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !done(&seen) {
            seen.push(events.next().await.expect("the event stream ended"));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out; the updates so far: {seen:#?}"));
    seen
}

type Entries = Vec<(String, String, Entry<Value>)>;

fn entry(kind: &str, key: &str, value: Value, version: u64, rev: u64) -> (String, String, Entry<Value>) {
    (kind.into(), key.into(), Entry { value, version, rev })
}

/// What a restore does to the namespace's revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Revision {
    /// It goes on from the replaced one: 7 + 1.
    GoesOn,
    /// It goes back to the restored one, 4.
    GoesBack,
}

/// The scenario, on the server at `db`: `back_up` takes a copy while the
/// server runs, `restore` puts it back while it is stopped.
async fn restore_snapshots_clients_and_keeps_their_pending_writes(
    db: &str,
    revision: Revision,
    back_up: impl FnOnce(),
    restore: impl FnOnce(),
) {
    let server = ServerProcess::start(db);
    let address = server.address;
    let client = Client::connect(options(&server, "laptop"));

    // Revision R = 4: what the backup holds.
    acked(client.set("task", "a", json!({"v": 1})).unwrap()).await;
    acked(client.set("task", "b", json!({"v": 1})).unwrap()).await;
    acked(client.set("task", "c", json!({"v": 1})).unwrap()).await;
    acked(client.set("task", "a", json!({"v": 2})).unwrap()).await;
    until("the client is at revision 4", || {
        client.status().cursor == Some(4)
    })
    .await;
    let at_backup: Entries = vec![
        entry("task", "a", json!({"v": 2}), 2, 4),
        entry("task", "b", json!({"v": 1}), 1, 2),
        entry("task", "c", json!({"v": 1}), 1, 3),
    ];
    assert_eq!(client.state().entries, at_backup);
    back_up();

    // Revision N = 7: what the restore loses. A second client saw 5, and
    // leaves.
    acked(client.set("task", "a", json!({"v": 3})).unwrap()).await;
    let phone = Client::connect(options(&server, "phone"));
    until("the phone is at revision 5", || {
        let status = phone.status();
        status.synced && status.cursor == Some(5)
    })
    .await;
    phone.close().await;
    let phone_state = phone.state();
    acked(client.delete("task", "b").unwrap()).await;
    acked(client.set("task", "d", json!({"v": 1})).unwrap()).await;
    until("the client is at revision 7", || {
        client.status().cursor == Some(7)
    })
    .await;

    // The server comes back at the same address.
    let phone_options = options(&server, "phone");
    server.stop();
    until("the client is offline", || client.status().link != Link::Online).await;
    // Written offline: an update of a key the backup holds, a patch of a
    // key it does not, a new key.
    let c = client.set("task", "c", json!({"v": 2, "offline": true})).unwrap();
    let d = client.patch("task", "d", json!({"more": 1})).unwrap();
    let e = client.set("task", "e", json!({"offline": true})).unwrap();
    assert_eq!(client.status().pending, 3);
    assert_eq!(client.state().cursor, Some(7));
    // And by the phone, at revision 5.
    let phone = Client::connect(ClientOptions {
        state: Some(phone_state),
        ..phone_options.clone()
    });
    drop(phone.set("task", "p", json!({"phone": 1})).unwrap());
    assert_eq!(phone.status().pending, 1);
    phone.close().await;
    let phone_state = phone.state();
    assert_eq!((phone_state.cursor, phone_state.pending.len()), (Some(5), 1));

    restore();
    let mut events = client.events();
    let server = ServerProcess::start_at(db, address);

    let seen = updates_until(&mut events, |seen| {
        let answers = seen
            .iter()
            .filter(|u| {
                matches!(
                    u,
                    Update::Session(ClientEvent::Acked(_) | ClientEvent::Rejected { .. })
                )
            })
            .count();
        answers == 3
            && seen
                .iter()
                .any(|u| matches!(u, Update::Session(ClientEvent::Synced { .. })))
    })
    .await;
    let snapshots: Vec<_> = seen
        .iter()
        .filter_map(|u| match u {
            Update::Session(ClientEvent::SnapshotApplied { rev, reason }) => Some((*rev, *reason)),
            _ => None,
        })
        .collect();
    // The restored revision, and the first of the new history.
    let base = match revision {
        Revision::GoesOn => 8,
        Revision::GoesBack => 4,
    };
    let reason = match revision {
        Revision::GoesOn => SnapshotReason::Compacted,
        Revision::GoesBack => SnapshotReason::Reset,
    };
    assert_eq!(snapshots, [(base, reason)], "{seen:#?}");

    // Each pending write applied once, in order, on the restored state.
    let c = acked(c).await;
    assert_eq!((c.result, c.version, c.rev), (OpResult::Updated, 2, base + 1));
    let d = tokio::time::timeout(WAIT, d.expect("a patch to send").acked())
        .await
        .unwrap();
    assert!(
        matches!(
            &d,
            Err(sync_server::client::WriteError::Rejected {
                code: ErrorCode::KeyNotFound,
                ..
            })
        ),
        "{d:?}"
    );
    let e = acked(e).await;
    assert_eq!((e.result, e.version, e.rev), (OpResult::Created, 1, base + 2));

    // The confirmed state: the restored one, with the writes on top.
    let mut expected: Entries = vec![
        entry("task", "a", json!({"v": 2}), 2, 4),
        entry("task", "b", json!({"v": 1}), 1, 2),
        entry("task", "c", json!({"v": 2, "offline": true}), 2, base + 1),
        entry("task", "e", json!({"offline": true}), 1, base + 2),
    ];
    until("the client is past its writes", || {
        client.status().cursor == Some(base + 2)
    })
    .await;
    assert_eq!(client.state().entries, expected);
    assert!(client.state().pending.is_empty());
    assert_eq!(client.get("task", "d"), None, "the refused patch is rolled back");
    assert_eq!(client.get("task", "a"), Some(json!({"v": 2})));

    // The namespace takes more writes than the phone's revision 5.
    acked(client.set("task", "f", json!({"v": 1})).unwrap()).await;
    acked(client.set("task", "g", json!({"v": 1})).unwrap()).await;
    expected.push(entry("task", "f", json!({"v": 1}), 1, base + 3));
    expected.push(entry("task", "g", json!({"v": 1}), 1, base + 4));
    let mut head = base + 4;
    assert!(head > 5);

    let server = if revision == Revision::GoesOn {
        // The phone comes back: a snapshot, whatever the namespace's
        // revision now, and its write applied once. (Its events are read
        // from before it connects: the server restarts meanwhile.)
        server.stop();
        let phone = Client::connect(ClientOptions {
            state: Some(phone_state),
            ..phone_options
        });
        let mut events = phone.events();
        let server = ServerProcess::start_at(db, address);
        let seen = updates_until(&mut events, |seen| {
            let acked = seen
                .iter()
                .any(|u| matches!(u, Update::Session(ClientEvent::Acked(_))));
            acked
                && seen
                    .iter()
                    .any(|u| matches!(u, Update::Session(ClientEvent::Synced { .. })))
        })
        .await;
        let snapshots: Vec<_> = seen
            .iter()
            .filter_map(|u| match u {
                Update::Session(ClientEvent::SnapshotApplied { reason, .. }) => Some(*reason),
                _ => None,
            })
            .collect();
        assert_eq!(snapshots, [SnapshotReason::Compacted], "{seen:#?}");
        head += 1;
        expected.push(entry("task", "p", json!({"phone": 1}), 1, head));
        until("the phone is at the head", || phone.status().cursor == Some(head)).await;
        let state = phone.state();
        assert_eq!(state.entries, expected);
        assert!(state.pending.is_empty());
        phone.close().await;
        server
    } else {
        server
    };
    until("the client is at the head", || {
        client.status().cursor == Some(head)
    })
    .await;
    let state = client.state();
    assert_eq!(state.entries, expected);

    // The server holds the same: a new client's snapshot is at the head
    // (no write applied twice, none lost).
    let fresh = Client::connect(options(&server, "fresh"));
    until("the fresh client synced", || fresh.status().synced).await;
    assert_eq!(fresh.state().cursor, Some(head));
    assert_eq!(fresh.state().entries, expected);

    // And a restart with the same client state resumes, with nothing to redo.
    client.close().await;
    let again = Client::connect(ClientOptions {
        state: Some(state),
        ..options(&server, "laptop")
    });
    let mut events = again.events();
    let seen = updates_until(&mut events, |seen| {
        seen.iter()
            .any(|u| matches!(u, Update::Session(ClientEvent::Synced { .. })))
    })
    .await;
    assert!(
        !seen
            .iter()
            .any(|u| matches!(u, Update::Session(ClientEvent::SnapshotApplied { .. }))),
        "{seen:#?}"
    );
    assert_eq!(again.state().entries, expected);
    again.close().await;
    fresh.close().await;
    server.stop();
}

/// Moves the database file and its WAL aside, as an operator keeps what
/// they replace.
fn move_aside(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let from = format!("{}{suffix}", db.display());
        if Path::new(&from).exists() {
            std::fs::rename(&from, format!("{}.replaced{suffix}", db.display())).unwrap();
        }
    }
}

/// `sync-server backup`, then `sync-server restore` into the database
/// (`into_new`: a new one, the old file moved aside).
async fn sqlite_restore(into_new: bool) {
    let db = support::fresh_db("restore");
    let copy = db.with_extension("backup.db");
    let revision = if into_new {
        Revision::GoesBack
    } else {
        Revision::GoesOn
    };
    restore_snapshots_clients_and_keeps_their_pending_writes(
        &sqlite_db(&db),
        revision,
        || {
            let stderr = ok(&["backup", "--db", &sqlite_db(&db), copy.to_str().unwrap()]);
            assert!(stderr.contains("\"restore\" at revision 4"), "{stderr}");
        },
        || {
            if into_new {
                move_aside(&db);
            }
            let stderr = ok(&["restore", "--db", &sqlite_db(&db), copy.to_str().unwrap()]);
            let at = if into_new {
                " at revision 4\n".to_owned()
            } else {
                " at revision 8 (replaced revision 7 with 3 entries; \
                 the file is of revision 4, and revisions never go back)"
                    .to_owned()
            };
            let expected = format!(
                "restored 3 entries of namespace \"restore\" from {}{at}",
                copy.display()
            );
            assert!(stderr.contains(&expected), "{stderr}");
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restore_of_a_backup_file() {
    sqlite_restore(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_restore_of_a_backup_file_into_a_new_database() {
    sqlite_restore(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restore_of_an_export() {
    let Some(url) = pg::url("postgres_restore_of_an_export") else {
        return;
    };
    let schema = pg::create_schema(url).await;
    let db = pg_db(url, &schema);
    let export = support::fresh_db("restore").with_extension("ndjson");
    let out = export.to_str().unwrap();
    restore_snapshots_clients_and_keeps_their_pending_writes(
        &db,
        Revision::GoesOn,
        || {
            ok(&["export", "--db", &db, "--namespace", NS, "--out", out]);
        },
        || {
            let stderr = ok(&["import", "--db", &db, "--namespace", NS, "--replace", out]);
            assert!(
                stderr.contains(
                    "at revision 8 (replaced revision 7 with 3 entries; \
                     the file is of revision 4, and revisions never go back)"
                ),
                "{stderr}"
            );
        },
    )
    .await;
    pg::drop_schema(url, &schema).await;
}

/// Whether `program` runs; else a loud skip, or a failure when
/// `ZESTOR_REQUIRE_ALL=1`.
fn have(program: &str, test: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("ZESTOR_REQUIRE_ALL").as_deref() != Ok("1"),
            "{test}: {program} is not installed and ZESTOR_REQUIRE_ALL=1"
        );
        eprintln!("\n## SKIPPED {test}: {program} is not installed (PostgreSQL's client tools)\n");
    }
    found
}

fn run_tool(program: &str, args: &[&str]) {
    let out = std::process::Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restore_with_pg_dump_and_pg_restore() {
    let test = "postgres_restore_with_pg_dump_and_pg_restore";
    let Some(url) = pg::url(test) else {
        return;
    };
    if !(have("pg_dump", test) && have("pg_restore", test)) {
        return;
    }
    let schema = pg::create_schema(url).await;
    let dump = support::fresh_db("restore").with_extension("dump");
    let (file, dbname) = (format!("--file={}", dump.display()), format!("--dbname={url}"));
    // As sync-server/README.md says.
    restore_snapshots_clients_and_keeps_their_pending_writes(
        &pg_db(url, &schema),
        Revision::GoesBack,
        || {
            let only = format!("--schema={schema}");
            run_tool("pg_dump", &["--format=custom", &only, &file, &dbname]);
        },
        || {
            run_tool(
                "pg_restore",
                &[
                    "--clean",
                    "--if-exists",
                    "--single-transaction",
                    &dbname,
                    dump.to_str().unwrap(),
                ],
            );
        },
    )
    .await;
    pg::drop_schema(url, &schema).await;
}

#[test]
fn restore_refuses_a_namespace_the_backup_does_not_hold_and_writes_nothing() {
    let db = support::fresh_db("restore-refusal");
    let export = db.with_extension("ndjson");
    std::fs::write(
        &export,
        "{\"format\":\"zestor-export\",\"version\":1,\"namespace\":\"team\",\"rev\":1,\"entries\":1}\n\
         {\"kind\":\"task\",\"key\":\"a\",\"value\":1,\"version\":1,\"rev\":1}\n",
    )
    .unwrap();
    let live = sqlite_db(&db);
    ok(&[
        "import",
        "--db",
        &live,
        "--namespace",
        "team",
        export.to_str().unwrap(),
    ]);
    let copy = db.with_extension("backup.db");
    ok(&["backup", "--db", &live, copy.to_str().unwrap()]);
    let before = ok(&["export", "--db", &live, "--namespace", "team"]);

    let args = [
        "restore",
        "--db",
        &live,
        "--namespace",
        "team",
        "--namespace",
        "nope",
    ];
    let stderr = process::fails(&[&args[..], &[copy.to_str().unwrap()]].concat());
    assert!(
        stderr.contains("namespace \"nope\" holds nothing") && stderr.contains("nothing was restored"),
        "{stderr}"
    );
    assert_eq!(
        ok(&["export", "--db", &live, "--namespace", "team"]),
        before,
        "nothing was written"
    );
    let missing = db.with_extension("missing.db");
    let stderr = process::fails(&["restore", "--db", &live, missing.to_str().unwrap()]);
    assert!(stderr.contains("no such file"), "{stderr}");
}
