//! Bounded disk: the answers of op ids older than their time to live are
//! pruned (a recent one is still answered from the record, a pruned one is
//! applied again), on SQLite and PostgreSQL; a database of the previous
//! schema version opens and migrates; SQLite files give free pages back,
//! and `sync-server vacuum` switches a file made before that; the WAL is cut
//! back after a reader held it.

#[path = "support/pg.rs"]
mod pg;
mod support;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_executor::block_on;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Value, json};
use store_core::sync::{Ack, Op, OpAction, OpResult, Reject};
use store_core::{SetOptions, Store, StoreOptions};
use sync_server::backend::Durable;
use sync_server::backend::postgres::{self, PgOptions};
use sync_server::backend::sqlite::{self, SqliteOptions};

const DAY: Duration = Duration::from_secs(86_400);
const TTL: Option<Duration> = Some(Duration::from_secs(7 * 86_400));
const NONE: SetOptions = SetOptions { if_version: None };

fn set(op_id: &str, key: &str, value: Value) -> Op {
    Op {
        op_id: op_id.into(),
        kind: "task".into(),
        key: key.into(),
        action: OpAction::Set,
        value: Some(value),
        if_version: None,
    }
}

fn ack(op_id: &str, result: OpResult, version: u64, rev: u64) -> Result<Ack, Reject> {
    Ok(Ack {
        op_id: op_id.into(),
        result,
        version,
        rev,
        value: None,
    })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .try_into()
        .unwrap()
}

/// What both backends must show: `old` was recorded 8 days ago and
/// `recent` just now; a round with a 7-day time to live has pruned `old`
/// alone, and another writer has changed both keys since. A retry of both
/// applies `old` again, as a new op (it overwrites the newer value), and
/// answers `recent` from the record (it does not).
async fn after_pruning(store: &Durable<Value>) {
    let retried = store
        .apply_ops(
            "c1",
            vec![
                set("old", "a", json!("from c1")),
                set("recent", "b", json!("from c1")),
            ],
        )
        .await;
    assert_eq!(
        retried,
        [
            ack("old", OpResult::Updated, 3, 5),
            ack("recent", OpResult::Created, 1, 2),
        ],
        "the pruned op id is applied again, the recent one answered from the record"
    );
    assert_eq!(
        store.get("task", "a").await.unwrap().unwrap().value,
        json!("from c1")
    );
    assert_eq!(
        store.get("task", "b").await.unwrap().unwrap().value,
        json!("from c2")
    );
}

/// Writes the two ops of [`after_pruning`], then another client's writes
/// over both keys.
async fn write_old_and_recent(store: &Durable<Value>) {
    let first = store
        .apply_ops(
            "c1",
            vec![
                set("old", "a", json!("from c1")),
                set("recent", "b", json!("from c1")),
            ],
        )
        .await;
    assert_eq!(
        first,
        [
            ack("old", OpResult::Created, 1, 1),
            ack("recent", OpResult::Created, 1, 2)
        ]
    );
    store.set("task", "a", json!("from c2"), NONE).await.unwrap();
    store.set("task", "b", json!("from c2"), NONE).await.unwrap();
}

// ---- SQLite ----

fn open(path: &Path) -> Durable<Value> {
    sqlite::open(SqliteOptions::new(path, "ns"), StoreOptions::new()).expect("open")
}

fn op_ids(conn: &Connection) -> Vec<String> {
    conn.prepare("SELECT op_id FROM zestor_applied_ops ORDER BY op_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap()
}

fn pragma(conn: &Connection, name: &str) -> i64 {
    conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
        .unwrap()
}

#[test]
fn sqlite_prunes_op_ids_older_than_the_ttl() {
    let path = support::fresh_db("prune");
    let store = open(&path);
    block_on(write_old_and_recent(&store));
    let conn = Connection::open(&path).unwrap();
    let backdated = conn
        .execute(
            "UPDATE zestor_applied_ops SET applied_at = applied_at - ?1 WHERE op_id = 'old'",
            [8 * DAY.as_millis() as i64],
        )
        .unwrap();
    assert_eq!(backdated, 1);
    let mut maintainer = sqlite::Maintainer::open(&path).unwrap();
    assert_eq!(
        maintainer.run(None).unwrap().op_ids_pruned,
        0,
        "no time to live: kept"
    );
    let report = maintainer.run(TTL).unwrap();
    assert_eq!((report.op_ids_pruned, report.more), (1, false));
    assert_eq!(op_ids(&conn), ["recent"]);
    block_on(after_pruning(&store));
    // The retry recorded a new answer, dated now: a round keeps it.
    assert_eq!(maintainer.run(TTL).unwrap().op_ids_pruned, 0);
    assert_eq!(op_ids(&conn), ["old", "recent"]);
    store.close();
}

/// A write that records answers also deletes up to twice as many expired
/// ones, oldest first, of any namespace; with no time to live, none.
#[test]
fn sqlite_writes_prune_twice_what_they_record() {
    let path = support::fresh_db("writer-prunes");
    let ttl = |ttl| {
        sqlite::open::<Value>(
            SqliteOptions::new(&path, "ns").op_ids_ttl(ttl),
            StoreOptions::new(),
        )
        .unwrap()
    };
    let (keeping, pruning) = (ttl(None), ttl(TTL));
    let other = sqlite::open(SqliteOptions::new(&path, "other-ns"), StoreOptions::new()).unwrap();
    block_on(other.apply_ops("c0", vec![set("o0", "k", json!(0))]));
    block_on(keeping.apply_ops(
        "c1",
        (1..=4).map(|i| set(&format!("o{i}"), "k", json!(i))).collect(),
    ));
    let conn = Connection::open(&path).unwrap();
    // Eight days old, o0 the oldest.
    conn.execute(
        "UPDATE zestor_applied_ops SET applied_at = applied_at - ?1 - (CASE op_id WHEN 'o0' THEN 1000 ELSE 0 END)",
        [8 * DAY.as_millis() as i64],
    )
    .unwrap();
    block_on(keeping.apply_ops("c2", vec![set("n1", "k", json!(5))]));
    assert_eq!(
        op_ids(&conn),
        ["n1", "o0", "o1", "o2", "o3", "o4"],
        "no time to live, nothing pruned"
    );
    block_on(pruning.apply_ops("c2", vec![set("n2", "k", json!(6))]));
    let left = op_ids(&conn);
    assert_eq!(left.len(), 5, "{left:?}");
    assert!(
        !left.contains(&"o0".to_owned()),
        "the oldest goes first, whatever its namespace: {left:?}"
    );
    block_on(pruning.apply_ops("c2", vec![set("n3", "k", json!(7)), set("n4", "k", json!(8))]));
    assert_eq!(op_ids(&conn), ["n1", "n2", "n3", "n4"]);
    for s in [keeping, pruning, other] {
        s.close();
    }
}

/// A retry of an op id gets its first answer, nothing applied again: from
/// the writer that applied it, from another writer of the namespace on the
/// same file (another process), and from a writer opened later.
#[test]
fn sqlite_answers_are_found_by_every_writer_of_the_namespace() {
    let path = support::fresh_db("answers-found");
    let first = open(&path);
    let ops = |n: usize| -> Vec<Op> {
        (0..n)
            .map(|i| set(&format!("op{i}"), &format!("k{i}"), json!(i)))
            .collect()
    };
    // More than one commit takes (512).
    let written = block_on(first.apply_ops("c1", ops(600)));
    assert!(
        written.iter().all(Result::is_ok),
        "{:?}",
        written.iter().find(|a| a.is_err())
    );
    let same = |retried: Vec<Result<Ack, Reject>>, by: &str| {
        let differ = retried.iter().zip(&written).filter(|(a, b)| a != b).count();
        assert!(
            retried.len() == written.len() && differ == 0,
            "{by}: {differ} of {} answers differ, first {:?}",
            written.len(),
            retried.iter().zip(&written).find(|(a, b)| a != b)
        );
    };
    same(block_on(first.apply_ops("c1", ops(600))), "the writer");
    let other = open(&path);
    block_on(other.apply_ops("c2", vec![set("x", "k0", json!("x"))]))
        .remove(0)
        .unwrap();
    same(block_on(other.apply_ops("c1", ops(600))), "another writer");
    let y = block_on(other.apply_ops("c2", vec![set("y", "k1", json!("y"))]));
    assert_eq!(
        block_on(first.apply_ops("c2", vec![set("y", "k1", json!("y"))])),
        y,
        "the first writer, of an op the other applied"
    );
    first.close();
    other.close();
    let reopened = open(&path);
    same(
        block_on(reopened.apply_ops("c1", ops(600))),
        "a writer opened later",
    );
    assert_eq!(
        block_on(reopened.get("task", "k0")).unwrap().unwrap().value,
        json!("x")
    );
    reopened.close();
}

/// Every recorded answer is dated when it is written.
#[test]
fn sqlite_answers_are_dated_when_written() {
    let path = support::fresh_db("dated");
    let store = open(&path);
    let before = now_ms();
    block_on(store.apply_ops("c1", vec![set("o1", "a", json!(1))]));
    let after = now_ms();
    let at: i64 = Connection::open(&path)
        .unwrap()
        .query_row("SELECT applied_at FROM zestor_applied_ops", [], |r| r.get(0))
        .unwrap();
    assert!((before..=after).contains(&at), "{before} <= {at} <= {after}");
    store.close();
}

/// A file as schema version 1 left it: no incremental auto-vacuum, one
/// entry written by a client op whose answer is recorded, and `rows` more
/// recorded answers of about 200 bytes each.
fn sqlite_v1_file(path: &Path, rows: usize) {
    let mut conn = Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL").unwrap();
    conn.execute_batch(support::SQLITE_SCHEMA_V1).unwrap();
    let answer = serde_json::to_string(&ack("o1", OpResult::Created, 1, 1)).unwrap();
    conn.execute_batch(
        "INSERT INTO zestor_heads VALUES ('ns', 1);
         INSERT INTO zestor_entries VALUES ('ns', 'task', 'a', '{\"t\":1}', 1, 1);
         INSERT INTO zestor_changes VALUES ('ns', 1, 'task', 'a', 'create', '{\"t\":1}', 1);",
    )
    .unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute(
        "INSERT INTO zestor_applied_ops VALUES ('ns', 'c1', 'o1', ?1)",
        [&answer],
    )
    .unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO zestor_applied_ops VALUES ('ns', ?1, ?2, ?3)")
            .unwrap();
        let padding = "x".repeat(120);
        for i in 0..rows {
            insert
                .execute([format!("client-{}", i % 97), format!("op-{i}"), padding.clone()])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// A file written by schema version 1 opens and migrates to the current
/// version: its data, its change log and its recorded answers stay, and those answers count as written
/// at the migration, so none is pruned before a full time to live has
/// passed. It still lacks incremental auto-vacuum; `sync-server vacuum`
/// (refused while a store has the file open) switches it.
#[test]
fn a_version_1_sqlite_file_is_migrated_then_vacuumed() {
    let path = support::fresh_db("v1");
    sqlite_v1_file(&path, 20_000);
    let before = now_ms();
    let store = open(&path);
    let after = now_ms();
    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .query_row(
            "SELECT value FROM zestor_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, sqlite::SCHEMA_VERSION);
    assert_eq!(version, 3);
    let (min, max): (i64, i64) = conn
        .query_row(
            "SELECT min(applied_at), max(applied_at) FROM zestor_applied_ops",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(min, max, "every old answer gets the same date");
    assert!(
        (before..=after).contains(&min),
        "dated at the migration: {before} <= {min} <= {after}"
    );
    let index: Option<String> = conn
        .query_row(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'zestor_applied_ops'
             AND sql LIKE '%applied_at%'",
            [],
            |r| r.get(0),
        )
        .optional()
        .unwrap();
    assert!(index.is_some(), "the applied_at index exists");
    let change: (i64, String, String) = conn
        .query_row(
            "SELECT rev, type, value FROM zestor_changes WHERE ns = 'ns'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        change,
        (1, "create".into(), "{\"t\":1}".into()),
        "the change log is kept"
    );
    block_on(async {
        assert_eq!(store.rev().await.unwrap(), 1);
        assert_eq!(
            store.get("task", "a").await.unwrap().unwrap().value,
            json!({"t": 1})
        );
        let retried = store.apply_ops("c1", vec![set("o1", "a", json!({"t": 1}))]).await;
        assert_eq!(
            retried,
            [ack("o1", OpResult::Created, 1, 1)],
            "answered from the v1 record"
        );
        let w = store.set("task", "a", json!({"t": 2}), NONE).await.unwrap();
        assert_eq!((w.version, w.rev), (2, 2));
    });
    let mut maintainer = sqlite::Maintainer::open(&path).unwrap();
    let report = maintainer.run(Some(Duration::from_secs(3600))).unwrap();
    assert_eq!(
        report.op_ids_pruned, 0,
        "old answers live a full time to live after the migration"
    );
    assert!(!maintainer.gives_space_back().unwrap());
    assert_eq!(pragma(&conn, "auto_vacuum"), 0, "a v1 file has no auto-vacuum");

    // Pruned (as it will be a week after the migration), the file reuses
    // the space but does not shrink.
    conn.execute(
        "UPDATE zestor_applied_ops SET applied_at = applied_at - ?1",
        [8 * DAY.as_millis() as i64],
    )
    .unwrap();
    let pruned = (0..)
        .map(|_| maintainer.run(TTL).unwrap())
        .find(|r| !r.more)
        .unwrap();
    assert_eq!(pruned.pages_vacuumed, 0);
    assert!(
        pragma(&conn, "freelist_count") > 100,
        "the pruned rows' pages are free"
    );
    drop(maintainer);

    // Not while the store has it open.
    let refused = sqlite::vacuum(&path).unwrap_err().to_string();
    assert!(refused.contains("in use by another process"), "{refused}");
    store.close();
    drop(store);
    drop(conn);
    // The store's writer lets go of the file when it ends.
    let vacuumed = retry(|| sqlite::vacuum(&path));
    assert!(
        vacuumed.bytes_after < vacuumed.bytes_before / 2,
        "the file is packed: {vacuumed:?}"
    );
    let conn = Connection::open(&path).unwrap();
    assert_eq!(pragma(&conn, "auto_vacuum"), 2, "incremental from now on");
    assert_eq!(pragma(&conn, "freelist_count"), 0);
    drop(conn);
    let store = open(&path);
    block_on(async {
        assert_eq!(store.rev().await.unwrap(), 2);
        assert_eq!(
            store.get("task", "a").await.unwrap().unwrap().value,
            json!({"t": 2})
        );
    });
    store.close();
}

/// `f` until it succeeds (up to 5 s): for what waits on a thread that is
/// ending.
fn retry<T>(mut f: impl FnMut() -> store_core::Result<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        match f() {
            Ok(t) => return t,
            Err(e) if started.elapsed() > Duration::from_secs(5) => panic!("{e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// The `sync-server vacuum` command: refuses a PostgreSQL database and a
/// missing file, and switches a version 1 file.
#[test]
fn the_vacuum_command() {
    let path = support::fresh_db("vacuum-cli");
    let run = |db: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sync-server"))
            .args(["vacuum", "--db", db])
            .env_remove("ZESTOR_DB")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let missing = run(&format!("sqlite://{}", path.display()));
    assert!(!missing.0 && missing.1.contains("no such file"), "{missing:?}");
    assert!(!path.exists(), "a missing file is not created");
    let pg = run("postgres://u@h/db");
    assert!(!pg.0 && pg.1.contains("vacuum is for SQLite files"), "{pg:?}");
    sqlite_v1_file(&path, 100);
    let done = run(&format!("sqlite://{}", path.display()));
    assert!(done.0 && done.1.contains("iB after"), "{done:?}");
    let conn = Connection::open(&path).unwrap();
    assert_eq!(pragma(&conn, "auto_vacuum"), 2);
    let version: i64 = conn
        .query_row(
            "SELECT value FROM zestor_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, sqlite::SCHEMA_VERSION);
}

/// A new file gives back the pages that pruning frees: the file shrinks.
#[test]
fn a_new_sqlite_file_gives_pruned_space_back() {
    let path = support::fresh_db("shrink");
    let store = open(&path);
    let padding = "x".repeat(200);
    for chunk in 0..20 {
        let ops = (0..500)
            .map(|i| {
                set(
                    &format!("op-{chunk}-{i}-{padding}"),
                    &format!("k{i}"),
                    json!(chunk),
                )
            })
            .collect();
        block_on(store.apply_ops(&format!("client-{chunk}"), ops));
    }
    let conn = Connection::open(&path).unwrap();
    assert_eq!(pragma(&conn, "auto_vacuum"), 2, "incremental from the start");
    let mut maintainer = sqlite::Maintainer::open(&path).unwrap();
    assert!(maintainer.gives_space_back().unwrap());
    maintainer.run(None).unwrap();
    let pages = pragma(&conn, "page_count");
    let size = std::fs::metadata(&path).unwrap().len();
    conn.execute(
        "UPDATE zestor_applied_ops SET applied_at = applied_at - ?1",
        [8 * DAY.as_millis() as i64],
    )
    .unwrap();
    let mut rounds = Vec::new();
    loop {
        let r = maintainer.run(TTL).unwrap();
        rounds.push(r.clone());
        if !r.more {
            break;
        }
    }
    let pruned: u64 = rounds.iter().map(|r| r.op_ids_pruned).sum();
    let vacuumed: u64 = rounds.iter().map(|r| r.pages_vacuumed).sum();
    assert_eq!(pruned, 10_000);
    assert!(op_ids(&conn).is_empty());
    assert_eq!(pragma(&conn, "freelist_count"), 0);
    let after = pragma(&conn, "page_count");
    assert!(after < pages / 2, "{pages} pages before, {after} after");
    // What the rounds say they gave back is what the file lost (give or
    // take the pointer-map pages and the B-tree pages pruning itself
    // rearranged).
    let dropped = u64::try_from(pages - after).unwrap();
    assert!(
        vacuumed.abs_diff(dropped) <= dropped / 10,
        "{vacuumed} of {dropped}"
    );
    // Checkpointed, the file on disk is that small too.
    let _: (i64, i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    let shrunk = std::fs::metadata(&path).unwrap().len();
    assert!(shrunk < size / 2, "{size} bytes before, {shrunk} after");
    store.close();
}

/// A file whose first page another program wrote, without tables, gets
/// incremental auto-vacuum when a store first opens it.
#[test]
fn an_empty_sqlite_file_made_elsewhere_gets_incremental_auto_vacuum() {
    let path = support::fresh_db("made-elsewhere");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("PRAGMA journal_mode=WAL").unwrap();
    assert_eq!(pragma(&conn, "auto_vacuum"), 0);
    drop(conn);
    let store = open(&path);
    // (A connection keeps the value it read first: ask a new one.)
    assert_eq!(pragma(&Connection::open(&path).unwrap(), "auto_vacuum"), 2);
    block_on(store.set("t", "k", json!(1), NONE)).unwrap();
    store.close();
}

/// While another connection holds a read transaction, a checkpoint cannot
/// reach the WAL's end and the WAL grows; the round says so. Once the
/// reader is gone, a round's checkpoint copies it all, and the next commit
/// cuts the file back to the size limit.
#[test]
fn a_long_reader_holds_the_wal_and_the_wal_is_cut_back_after() {
    let path = support::fresh_db("wal");
    let store = open(&path);
    block_on(store.set("t", "k", json!(0), NONE)).unwrap();
    let mut reader = Connection::open(&path).unwrap();
    let read = reader.transaction().unwrap();
    let _: i64 = read
        .query_row("SELECT count(*) FROM zestor_entries", [], |r| r.get(0))
        .unwrap();
    let big = "y".repeat(64 * 1024);
    let wal = || {
        std::fs::metadata(format!("{}-wal", path.display()))
            .unwrap()
            .len()
    };
    let mut i = 0;
    while wal() < 2 * sqlite::JOURNAL_SIZE_LIMIT {
        block_on(store.set("t", &format!("k{}", i % 50), json!([i, big]), NONE)).unwrap();
        i += 1;
    }
    let mut maintainer = sqlite::Maintainer::open(&path).unwrap();
    let held = maintainer.run(None).unwrap();
    assert!(held.wal_frames_behind > 0, "{held:?}");
    assert!(held.wal_bytes >= 2 * sqlite::JOURNAL_SIZE_LIMIT);
    read.rollback().unwrap();
    drop(reader);
    let freed = maintainer.run(None).unwrap();
    assert_eq!(freed.wal_frames_behind, 0, "{freed:?}");
    // The next write starts the WAL over and cuts it back.
    block_on(store.set("t", "k", json!(1), NONE)).unwrap();
    assert!(wal() <= sqlite::JOURNAL_SIZE_LIMIT, "{} bytes", wal());
    store.close();
}

// ---- PostgreSQL ----

async fn pg_open(url: &str, schema: &str) -> Durable<Value> {
    postgres::open(PgOptions::new(url, "ns").schema(schema), StoreOptions::new())
        .await
        .expect("open postgres")
}

async fn pg_op_ids(admin: &tokio_postgres::Client, schema: &str) -> Vec<String> {
    admin
        .query(
            &format!("SELECT op_id FROM {schema}.zestor_applied_ops ORDER BY op_id"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[test]
fn postgres_prunes_op_ids_older_than_the_ttl() {
    let Some(url) = pg::url("postgres_prunes_op_ids_older_than_the_ttl") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let store = pg_open(url, &schema).await;
        write_old_and_recent(&store).await;
        let admin = pg::connect(url).await;
        let n = admin
            .execute(
                &format!(
                    "UPDATE {schema}.zestor_applied_ops SET applied_at = applied_at - interval '8 days'
                     WHERE op_id = 'old'"
                ),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        let mut maintainer = postgres::Maintainer::connect(url, &schema).await.unwrap();
        assert_eq!(maintainer.run(None).await.unwrap().op_ids_pruned, 0);
        let report = maintainer.run(TTL).await.unwrap();
        assert_eq!(
            (report.op_ids_pruned, report.more, report.pruned_elsewhere),
            (1, false, false)
        );
        assert_eq!(pg_op_ids(&admin, &schema).await, ["recent"]);
        after_pruning(&store).await;
        assert_eq!(maintainer.run(TTL).await.unwrap().op_ids_pruned, 0);
        assert_eq!(pg_op_ids(&admin, &schema).await, ["old", "recent"]);
        Store::close(&store).await;
        pg::drop_schema(url, &schema).await;
    });
}

/// Several processes each run a maintainer: one prunes at a time (the
/// advisory lock), the others leave it to that one, and together they
/// prune every old answer once.
#[test]
fn postgres_maintainers_of_several_processes_share_the_pruning() {
    let Some(url) = pg::url("postgres_maintainers_of_several_processes_share_the_pruning") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let store = pg_open(url, &schema).await;
        for chunk in 0..6 {
            let ops = (0..500)
                .map(|i| set(&format!("op-{chunk}-{i}"), &format!("k{i}"), json!(chunk)))
                .collect();
            store.apply_ops(&format!("client-{chunk}"), ops).await;
        }
        store
            .apply_ops("client-new", vec![set("new", "k", json!(1))])
            .await;
        let admin = pg::connect(url).await;
        admin
            .execute(
                &format!(
                    "UPDATE {schema}.zestor_applied_ops SET applied_at = applied_at - interval '8 days'
                     WHERE client_id <> 'client-new'"
                ),
                &[],
            )
            .await
            .unwrap();
        // Held by another process: this one leaves the work.
        let lock = "SELECT pg_advisory_lock($1, hashtext($2::text))";
        admin
            .execute(lock, &[&postgres::PRUNE_LOCK, &schema])
            .await
            .unwrap();
        let mut a = postgres::Maintainer::connect(url, &schema).await.unwrap();
        let left = a.run(TTL).await.unwrap();
        assert_eq!((left.op_ids_pruned, left.pruned_elsewhere), (0, true));
        admin
            .execute(
                "SELECT pg_advisory_unlock($1, hashtext($2::text))",
                &[&postgres::PRUNE_LOCK, &schema],
            )
            .await
            .unwrap();
        let mut b = postgres::Maintainer::connect(url, &schema).await.unwrap();
        let mut pruned = 0;
        loop {
            let (ra, rb) = tokio::join!(a.run(TTL), b.run(TTL));
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            pruned += ra.op_ids_pruned + rb.op_ids_pruned;
            if !(ra.more || rb.more || ra.pruned_elsewhere || rb.pruned_elsewhere) {
                break;
            }
        }
        assert_eq!(pruned, 3000);
        assert_eq!(pg_op_ids(&admin, &schema).await, ["new"]);
        Store::close(&store).await;
        pg::drop_schema(url, &schema).await;
    });
}

/// A schema of version 2 opens and migrates to version 3: its recorded
/// answers stay (a retry is answered from them) and count as written at
/// the migration, by the database's clock.
#[test]
fn a_version_2_postgres_schema_is_migrated() {
    let Some(url) = pg::url("a_version_2_postgres_schema_is_migrated") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let store = pg_open(url, &schema).await;
        let first = store.apply_ops("c1", vec![set("o1", "a", json!(1))]).await;
        assert_eq!(first, [ack("o1", OpResult::Created, 1, 1)]);
        Store::close(&store).await;
        let admin = pg::connect(url).await;
        // Back to version 2, as that version left it.
        admin
            .batch_execute(&format!(
                "DROP INDEX {schema}.zestor_applied_ops_applied_at;
                 ALTER TABLE {schema}.zestor_applied_ops DROP COLUMN applied_at;
                 UPDATE {schema}.zestor_meta SET value = 2 WHERE key = 'schema_version';"
            ))
            .await
            .unwrap();
        let before: SystemTime = admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
        let store = pg_open(url, &schema).await;
        let after: SystemTime = admin.query_one("SELECT now()", &[]).await.unwrap().get(0);
        let version: i64 = admin
            .query_one(
                &format!("SELECT value FROM {schema}.zestor_meta WHERE key = 'schema_version'"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!((version, postgres::SCHEMA_VERSION), (3, 3));
        let at: SystemTime = admin
            .query_one(
                &format!("SELECT applied_at FROM {schema}.zestor_applied_ops"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(before <= at && at <= after, "dated at the migration");
        let retried = store.apply_ops("c1", vec![set("o1", "a", json!(1))]).await;
        assert_eq!(retried, [ack("o1", OpResult::Created, 1, 1)]);
        let mut maintainer = postgres::Maintainer::connect(url, &schema).await.unwrap();
        assert_eq!(
            maintainer
                .run(Some(Duration::from_secs(3600)))
                .await
                .unwrap()
                .op_ids_pruned,
            0
        );
        // New answers are dated by the database too.
        store.apply_ops("c1", vec![set("o2", "a", json!(2))]).await;
        let newest: SystemTime = admin
            .query_one(
                &format!("SELECT applied_at FROM {schema}.zestor_applied_ops WHERE op_id = 'o2'"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert!(newest >= after);
        Store::close(&store).await;
        pg::drop_schema(url, &schema).await;
    });
}
