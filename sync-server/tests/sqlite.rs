//! SQLite-specific behaviour: persistence across reopen, namespaces, group
//! commit, schema versions and corrupt data.

mod support;

use futures_executor::block_on;
use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store_core::{Error, EventType, SetOptions, SetResult, Store, StoreOptions, WatchOptions};
use sync_server::backend::sqlite::{self, SqliteOptions, Synchronous};

const NONE: SetOptions = SetOptions { if_version: None };

fn open(path: &std::path::Path, ns: &str) -> sync_server::backend::Durable<Value> {
    sqlite::open(SqliteOptions::new(path, ns), StoreOptions::new()).expect("open")
}

#[test]
fn entries_revisions_and_history_survive_reopen() {
    let path = support::fresh_db("reopen");
    let store = open(&path, "ns");
    block_on(async {
        store.set("task", "a", json!({"t": 1}), NONE).await.unwrap();
        store.set("task", "a", json!({"t": 2}), NONE).await.unwrap();
        store.set("task", "b", json!("x"), NONE).await.unwrap();
        store.delete("task", "b", NONE).await.unwrap();
    });
    store.close();
    drop(store);

    let store = open(&path, "ns");
    block_on(async {
        assert_eq!(store.rev().await.unwrap(), 4);
        let a = store.get("task", "a").await.unwrap().unwrap();
        assert_eq!((a.value, a.version, a.rev), (json!({"t": 2}), 2, 2));
        assert!(store.get("task", "b").await.unwrap().is_none());
        // The change log came back too: resume from revision 1.
        let mut w = store
            .watch("task", WatchOptions::new().from_rev(1))
            .await
            .unwrap();
        let got: Vec<(u64, EventType)> = (0..3)
            .map(|_| w.next().now_or_never().unwrap().unwrap().unwrap())
            .map(|e| (e.rev, e.event_type))
            .collect();
        assert_eq!(
            got,
            [
                (2, EventType::Update),
                (3, EventType::Create),
                (4, EventType::Delete)
            ]
        );
        let w = store.set("task", "a", json!({"t": 3}), NONE).await.unwrap();
        assert_eq!(
            (w.version, w.rev),
            (3, 5),
            "versions and revisions continue after reopen"
        );
    });
}

#[test]
fn namespaces_in_one_file_are_isolated() {
    let path = support::fresh_db("namespaces");
    let one = open(&path, "tenant-1");
    let two = open(&path, "tenant-2");
    block_on(async {
        let mut w2 = two.watch("task", WatchOptions::new()).await.unwrap();
        one.set("task", "a", json!(1), NONE).await.unwrap();
        one.set("task", "b", json!(1), NONE).await.unwrap();
        let w = two.set("task", "a", json!(2), NONE).await.unwrap();
        assert_eq!(
            (w.result, w.rev),
            (SetResult::Created, 1),
            "each namespace has its own revisions"
        );
        let e = w2.next().await.unwrap().unwrap();
        assert_eq!(
            (e.rev, &e.value),
            (1, &json!(2)),
            "a watcher sees only its namespace"
        );
        assert_eq!(one.get("task", "a").await.unwrap().unwrap().value, json!(1));
        assert_eq!(two.count("task").await.unwrap(), 1);
    });
    drop((one, two));
    let conn = Connection::open(&path).unwrap();
    let heads: Vec<(String, i64)> = conn
        .prepare("SELECT ns, rev FROM zestor_heads ORDER BY ns")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(heads, [("tenant-1".to_owned(), 2), ("tenant-2".to_owned(), 1)]);
}

#[test]
fn a_group_commit_rejects_only_the_offending_write() {
    let path = support::fresh_db("group");
    let options = StoreOptions::new().validator("task", |_, v: &Value| {
        if v["ok"] == true {
            Ok(())
        } else {
            Err("not ok".into())
        }
    });
    let store = sqlite::open(SqliteOptions::new(&path, "ns"), options).unwrap();
    // Queue many writes at once: the writer takes them as one batch.
    let writes: Vec<_> = (0..100)
        .map(|i| store.set("task", &format!("k{i:03}"), json!({"ok": i % 10 != 7}), NONE))
        .collect();
    let results = block_on(join_all(writes));
    let rejected: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_err())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(rejected, (0..100).filter(|i| i % 10 == 7).collect::<Vec<_>>());
    assert!(results.iter().flatten().all(|w| w.result == SetResult::Created));
    let mut revs: Vec<u64> = results.iter().flatten().map(|w| w.rev).collect();
    revs.sort_unstable();
    assert_eq!(
        revs,
        (1..=90).collect::<Vec<u64>>(),
        "accepted writes take gap-free revisions"
    );
    store.close();
    drop(store);
    let reopened = open(&path, "ns");
    assert_eq!(block_on(reopened.count("task")).unwrap(), 90);
}

#[test]
fn synchronous_normal_is_an_explicit_choice() {
    let path = support::fresh_db("normal");
    let store: sync_server::backend::Durable<Value> = sqlite::open(
        SqliteOptions::new(&path, "ns").synchronous(Synchronous::Normal),
        StoreOptions::new(),
    )
    .unwrap();
    block_on(store.set("t", "a", json!(1), NONE)).unwrap();
    store.close();
    drop(store);
    assert_eq!(
        block_on(open(&path, "ns").get("t", "a")).unwrap().unwrap().value,
        json!(1)
    );
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Task {
    title: String,
}

#[test]
fn a_value_that_no_longer_decodes_is_a_typed_error() {
    let path = support::fresh_db("decode");
    let store = open(&path, "ns");
    block_on(store.set("task", "good", json!({"title": "fine"}), NONE)).unwrap();
    block_on(store.set("task", "bad", json!({"name": "no title"}), NONE)).unwrap();
    store.close();
    drop(store);
    match sqlite::open::<Task>(SqliteOptions::new(&path, "ns"), StoreOptions::new()) {
        Err(Error::Decode { kind, key, message }) => {
            assert_eq!((kind.as_str(), key.as_str()), ("task", "bad"));
            assert!(message.contains("title"), "{message}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    // Garbage in the table is reported the same way, not as a panic.
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE zestor_entries SET value = 'not json' WHERE key = 'good'",
            [],
        )
        .unwrap();
    let r = sqlite::open::<Value>(SqliteOptions::new(&path, "ns"), StoreOptions::new());
    assert!(
        matches!(&r, Err(Error::Decode { key, .. }) if key == "good"),
        "{r:?}"
    );
}

#[test]
fn a_newer_schema_version_is_refused() {
    let path = support::fresh_db("schema");
    drop(open(&path, "ns"));
    Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE zestor_meta SET value = 99 WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
    match sqlite::open::<Value>(SqliteOptions::new(&path, "ns"), StoreOptions::new()) {
        Err(e @ Error::Storage(_)) => assert!(e.to_string().contains("version 99"), "{e}"),
        other => panic!("expected a schema version error, got {other:?}"),
    }
}

/// The change log's type check costs no temporary table: SQLite evaluates
/// `IN` over more than two constants through one built on every execution
/// of the insert, the writer's largest cost per change before schema 3.
/// The rule is unchanged: an unknown type is refused.
#[test]
fn the_change_log_insert_checks_its_type_without_a_temporary_table() {
    let path = support::fresh_db("changes-check");
    drop(open(&path, "ns"));
    let conn = Connection::open(&path).unwrap();
    let insert = "INSERT INTO zestor_changes (ns, rev, kind, key, type, value, version)
                  VALUES ('ns', ?1, 't', 'k', ?2, '1', 1)";
    let plan: Vec<String> = conn
        .prepare(&format!("EXPLAIN {insert}"))
        .unwrap()
        .query_map(rusqlite::params![0, "create"], |r| r.get(1))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    assert!(!plan.iter().any(|op| op == "OpenEphemeral"), "{plan:?}");
    for (rev, t) in [(1, "create"), (2, "update"), (3, "delete")] {
        conn.execute(insert, rusqlite::params![rev, t]).unwrap();
    }
    let refused = conn.execute(insert, rusqlite::params![4, "upsert"]).unwrap_err();
    assert!(
        refused.to_string().contains("CHECK constraint failed"),
        "{refused}"
    );
}

#[test]
fn the_change_log_is_trimmed_to_the_retention() {
    let path = support::fresh_db("retention");
    let store = sqlite::open(SqliteOptions::new(&path, "ns"), StoreOptions::new().retention(5)).unwrap();
    let writes: Vec<_> = (0..600).map(|i| store.set("t", "k", json!(i), NONE)).collect();
    block_on(join_all(writes))
        .into_iter()
        .for_each(|w| assert!(w.unwrap().changed()));
    let (oldest, count): (i64, i64) = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT MIN(rev), COUNT(*) FROM zestor_changes WHERE ns = 'ns'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    // Rows past the retention go in steps, not on every commit.
    assert!(oldest > 300 && count < 300, "oldest {oldest}, {count} rows");
    let mut w = block_on(store.watch("t", WatchOptions::new().from_rev(3))).unwrap();
    assert!(matches!(
        w.next().now_or_never(),
        Some(Some(Err(Error::Compacted { oldest: 595 })))
    ));
    store.close();
    drop(store);
    let reopened =
        sqlite::open::<Value>(SqliteOptions::new(&path, "ns"), StoreOptions::new().retention(5)).unwrap();
    let mut w = block_on(reopened.watch("t", WatchOptions::new().from_rev(595))).unwrap();
    assert_eq!(w.next().now_or_never().unwrap().unwrap().unwrap().rev, 596);
}

#[test]
fn a_second_process_writes_are_caught_up_before_the_next_write() {
    // Two stores on one file stand in for two processes: each has its own
    // engine, and the writer reconciles with the change log first.
    let path = support::fresh_db("two-writers");
    let a = open(&path, "ns");
    let b = open(&path, "ns");
    block_on(async {
        a.set("t", "x", json!(1), NONE).await.unwrap();
        let w = b
            .set("t", "x", json!(2), SetOptions::if_version(1))
            .await
            .unwrap();
        assert_eq!((w.result, w.version, w.rev), (SetResult::Updated, 2, 2));
        let r = a.set("t", "x", json!(3), SetOptions::if_version(1)).await;
        assert!(
            matches!(
                r,
                Err(Error::Conflict {
                    expected: 1,
                    actual: 2
                })
            ),
            "{r:?}"
        );
        assert_eq!(a.get("t", "x").await.unwrap().unwrap().value, json!(2));
    });
}

#[test]
fn a_store_behind_the_trimmed_log_reloads_and_ends_its_watches_with_compacted() {
    let path = support::fresh_db("lagging");
    let options = || StoreOptions::new().retention(5);
    let a = sqlite::open::<Value>(SqliteOptions::new(&path, "ns"), options()).unwrap();
    let b = sqlite::open::<Value>(SqliteOptions::new(&path, "ns"), options()).unwrap();
    let mut watch = block_on(b.watch("t", WatchOptions::new())).unwrap();
    let writes: Vec<_> = (0..600)
        .map(|i| a.set("t", &format!("k{}", i % 7), json!(i), NONE))
        .collect();
    block_on(join_all(writes))
        .into_iter()
        .for_each(|w| assert!(w.unwrap().changed()));
    // B saw none of it; its next write finds the log trimmed past its revision.
    let w = block_on(b.set("t", "k0", json!("from b"), NONE)).expect("b reloads and writes");
    assert_eq!((w.rev, w.version), (601, 87));
    assert!(matches!(
        watch.next().now_or_never(),
        Some(Some(Err(Error::Compacted { .. })))
    ));
    assert!(matches!(watch.next().now_or_never(), Some(None)));
    assert_eq!(block_on(b.get("t", "k6")).unwrap().unwrap().value, json!(594));
    assert_eq!(block_on(b.count("t")).unwrap(), 7);
}

/// Opening a file another connection is writing waits for it, including
/// the switch to WAL, where SQLite itself answers "database is locked" at
/// once instead of waiting.
#[test]
fn opening_waits_for_a_writer_holding_the_file() {
    let path = support::fresh_db("held");
    let other = Connection::open(&path).unwrap();
    // Not in WAL mode yet: the store's open has to switch it.
    other
        .execute_batch("CREATE TABLE other_app (x); BEGIN IMMEDIATE; INSERT INTO other_app VALUES (1);")
        .unwrap();
    let opening = std::thread::spawn(move || {
        sqlite::open::<Value>(SqliteOptions::new(&path, "ns"), StoreOptions::new())
    });
    // Give the open time to reach the lock (it waits however long it comes
    // to be held, up to the busy timeout).
    std::thread::sleep(std::time::Duration::from_millis(200));
    other.execute_batch("COMMIT").unwrap();
    let store = opening
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("the open failed: {e}"));
    let w = block_on(store.set("t", "k", json!(1), NONE)).unwrap();
    assert_eq!((w.version, w.rev), (1, 1));
    store.close();
}

/// Stores opening one new file at once (several processes starting
/// together, say) all open: the switch to WAL and the migration wait for
/// each other, and the file is migrated once.
#[test]
fn stores_opening_a_new_file_at_once_all_open() {
    const OPENS: usize = 4;
    for round in 0..20 {
        let path = support::fresh_db("concurrent-open");
        let barrier = std::sync::Barrier::new(OPENS);
        let opened: Vec<_> = std::thread::scope(|s| {
            let threads: Vec<_> = (0..OPENS)
                .map(|i| {
                    let (path, barrier) = (&path, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        sqlite::open::<Value>(
                            SqliteOptions::new(path, format!("ns{}", i % 2)),
                            StoreOptions::new(),
                        )
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        let stores: Vec<_> = opened
            .into_iter()
            .map(|o| o.unwrap_or_else(|e| panic!("round {round}: an open failed: {e}")))
            .collect();
        for (i, s) in stores.iter().enumerate() {
            block_on(s.set("t", &format!("k{i}"), json!(i), NONE)).unwrap();
        }
        for s in &stores {
            s.close();
        }
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row(
                "SELECT value FROM zestor_meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(version, sqlite::SCHEMA_VERSION);
        let heads: Vec<(String, i64)> = conn
            .prepare("SELECT ns, rev FROM zestor_heads ORDER BY ns")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(heads, [("ns0".to_owned(), 2), ("ns1".to_owned(), 2)]);
    }
}
