//! The conformance suite against the PostgreSQL backend (every store on a
//! fresh namespace of this process's test schema), then the backend's own cases: decode errors, schema
//! versions, namespaces, reopening.
//!
//! The stores run on one process-wide tokio runtime ([`pg::RT`]); the suite
//! drives its cases with `futures_executor::block_on` from the test threads,
//! which proves the store's futures need no particular executor. Without
//! PostgreSQL the cases skip loudly (see `support/pg.rs`); the three threaded
//! cases, which the suite runs without a hook for skipping, then run against
//! SQLite instead, saying so.

#[path = "support/pg.rs"]
mod pg;
mod support;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store_core::{Error, SetOptions, Store, StoreOptions, StoreValue, WatchOptions};
use sync_server::backend::Durable;
use sync_server::backend::postgres::{self, PgOptions, SCHEMA_VERSION};
use sync_server::backend::sqlite::{self, SqliteOptions};

/// A fresh store on a fresh namespace, opened on the shared runtime.
async fn open_fresh(options: StoreOptions<Value>) -> Durable<Value> {
    match pg::url("conformance case (threaded: runs against SQLite instead)") {
        Some(url) => pg::RT
            .spawn(async move {
                let schema = pg::process_schema(url).await;
                postgres::open(
                    PgOptions::new(url, pg::fresh_namespace("case")).schema(schema),
                    options,
                )
                .await
                .expect("open postgres")
            })
            .await
            .expect("the open task"),
        None => sqlite::open(
            SqliteOptions::new(support::fresh_db("pg-fallback"), "ns"),
            options,
        )
        .expect("open sqlite"),
    }
}

store_core::conformance_suite!(
    block_on: pg::block_on_or_skip,
    open: |options| open_fresh(options),
);

// ---- the backend's own cases ----

const NONE: SetOptions = SetOptions { if_version: None };

async fn open_in<T: StoreValue>(url: &str, schema: &str, ns: &str) -> store_core::Result<Durable<T>> {
    postgres::open(PgOptions::new(url, ns).schema(schema), StoreOptions::new()).await
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    title: String,
    done: bool,
}

/// A stored value that no longer decodes as `T` fails `open` with a typed
/// error naming its kind and key.
#[test]
fn undecodable_value_is_a_typed_error() {
    let Some(url) = pg::url("undecodable_value_is_a_typed_error") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let s = open_in::<Task>(url, &schema, "ns").await.unwrap();
        let task = Task {
            title: "ship".into(),
            done: false,
        };
        s.set("task", "t1", task.clone(), NONE).await.unwrap();
        s.set("task", "t2", task, NONE).await.unwrap();
        Store::close(&s).await;
        let admin = pg::connect(url).await;
        let n = admin
            .execute(
                &format!("UPDATE {schema}.zestor_entries SET value = '\"x\"'::jsonb WHERE key = 't2'"),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(n, 1);
        match open_in::<Task>(url, &schema, "ns").await {
            Err(Error::Decode { kind, key, message }) => {
                assert_eq!((kind.as_str(), key.as_str()), ("task", "t2"), "{message}");
            }
            other => panic!("expected a Decode error naming task/t2, got {other:?}"),
        }
        // The same data still opens as JSON.
        let raw = open_in::<Value>(url, &schema, "ns").await.unwrap();
        assert_eq!(raw.get("task", "t2").await.unwrap().unwrap().value, json!("x"));
        Store::close(&raw).await;
        pg::drop_schema(url, &schema).await;
    });
}

/// A schema newer than this build is refused with a clear error.
#[test]
fn newer_schema_version_is_refused() {
    let Some(url) = pg::url("newer_schema_version_is_refused") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let s = open_in::<Value>(url, &schema, "ns").await.unwrap();
        Store::close(&s).await;
        let admin = pg::connect(url).await;
        admin
            .execute(
                &format!("UPDATE {schema}.zestor_meta SET value = $1 WHERE key = 'schema_version'"),
                &[&(SCHEMA_VERSION + 1)],
            )
            .await
            .unwrap();
        match open_in::<Value>(url, &schema, "ns").await {
            Err(Error::Storage(e)) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("version {}", SCHEMA_VERSION + 1))
                        && msg.contains("newer than this build supports"),
                    "unclear error: {msg}"
                );
            }
            other => panic!("expected a storage error, got {other:?}"),
        }
        pg::drop_schema(url, &schema).await;
    });
}

/// Two namespaces in one schema see neither each other's entries, nor
/// revisions, nor events.
#[test]
fn namespaces_are_isolated() {
    let Some(url) = pg::url("namespaces_are_isolated") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let a = open_in::<Value>(url, &schema, "tenant-a").await.unwrap();
        let b = open_in::<Value>(url, &schema, "tenant-b").await.unwrap();
        // A second handle on tenant-b, as another process would have.
        let b2 = open_in::<Value>(url, &schema, "tenant-b").await.unwrap();
        let mut wa = a.watch("t", WatchOptions::new()).await.unwrap();
        let mut wb2 = b2.watch("t", WatchOptions::new()).await.unwrap();
        for i in 0..5 {
            a.set("t", "k", json!(["a", i]), NONE).await.unwrap();
        }
        let w = b.set("t", "k", json!("b"), NONE).await.unwrap();
        assert_eq!((w.rev, w.version), (1, 1), "tenant-b counts its own revisions");
        assert_eq!(a.rev().await.unwrap(), 5);
        assert_eq!(b.get("t", "k").await.unwrap().unwrap().value, json!("b"));
        assert_eq!(a.get("t", "k").await.unwrap().unwrap().value, json!(["a", 4]));
        for i in 0..5 {
            let e = wa.next().await.unwrap().unwrap();
            assert_eq!((e.rev, &e.value), (i + 1, &json!(["a", i])));
        }
        // tenant-b's other handle sees exactly tenant-b's one event.
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), wb2.next())
            .await
            .expect("tenant-b's event reaches its other handle")
            .unwrap()
            .unwrap();
        assert_eq!((e.rev, &e.value), (1, &json!("b")));
        b2.set("t", "marker", json!(null), NONE).await.unwrap();
        assert_eq!(wb2.next().await.unwrap().unwrap().key, "marker");
        assert_eq!(b2.keys("t").await.unwrap(), ["k", "marker"]);
        for s in [&a, &b, &b2] {
            Store::close(s).await;
        }
        // Reopened, each namespace holds only its own.
        let a = open_in::<Value>(url, &schema, "tenant-a").await.unwrap();
        assert_eq!(
            (a.rev().await.unwrap(), a.keys("t").await.unwrap()),
            (5, vec!["k".to_owned()])
        );
        Store::close(&a).await;
        pg::drop_schema(url, &schema).await;
    });
}

/// Entries, versions, revisions and the watch history survive a reopen.
#[test]
fn reopen_restores_state_and_history() {
    let Some(url) = pg::url("reopen_restores_state_and_history") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let s = open_in::<Value>(url, &schema, "ns").await.unwrap();
        s.set(
            "t",
            "a",
            json!({"n": 1, "nested": {"z": [1.5, "x"], "a": null}}),
            NONE,
        )
        .await
        .unwrap();
        s.set("t", "a", json!({"n": 2}), NONE).await.unwrap();
        s.set("t", "b", json!(7), NONE).await.unwrap();
        s.delete("t", "b", NONE).await.unwrap();
        s.set_many("u", vec![("x".into(), json!(1)), ("y".into(), json!(2))])
            .await
            .unwrap();
        Store::close(&s).await;
        let s = open_in::<Value>(url, &schema, "ns").await.unwrap();
        assert_eq!(s.rev().await.unwrap(), 6);
        let a = s.get("t", "a").await.unwrap().unwrap();
        assert_eq!((a.value, a.version, a.rev), (json!({"n": 2}), 2, 2));
        assert!(s.get("t", "b").await.unwrap().is_none());
        assert_eq!(s.keys("u").await.unwrap(), ["x", "y"]);
        let mut w = s.watch("t", WatchOptions::new().from_rev(1)).await.unwrap();
        let mut revs = Vec::new();
        for _ in 0..3 {
            revs.push(w.next().await.unwrap().unwrap().rev);
        }
        assert_eq!(revs, [2, 3, 4]);
        let w = s.set("t", "a", json!({"n": 3}), NONE).await.unwrap();
        assert_eq!((w.version, w.rev), (3, 7));
        Store::close(&s).await;
        pg::drop_schema(url, &schema).await;
    });
}

/// Outside a tokio runtime, `open` says what is missing.
#[test]
fn open_outside_a_runtime_is_an_error() {
    let opened = futures_executor::block_on(postgres::open::<Value>(
        PgOptions::new(pg::LOCAL, "ns"),
        StoreOptions::new(),
    ));
    match opened {
        Err(Error::Storage(e)) => assert!(e.to_string().contains("tokio runtime"), "{e}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
}

/// A database of schema version 1, whose values were `jsonb`, is migrated
/// at open: its entries and change log are kept, and it then stores what
/// `jsonb` could not, a string with the NUL character.
#[test]
fn a_version_1_database_is_migrated_to_json_values() {
    let Some(url) = pg::url("a_version_1_database_is_migrated_to_json_values") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let s = open_in::<Value>(url, &schema, "ns").await.unwrap();
        s.set("t", "k", json!({"n": 1}), NONE).await.unwrap();
        s.set("t", "k", json!({"n": 2}), NONE).await.unwrap();
        Store::close(&s).await;
        let admin = pg::connect(url).await;
        admin
            .batch_execute(&format!(
                "ALTER TABLE {schema}.zestor_entries ALTER COLUMN value TYPE JSONB USING value::jsonb;
                 ALTER TABLE {schema}.zestor_changes ALTER COLUMN value TYPE JSONB USING value::jsonb;
                 DROP INDEX {schema}.zestor_applied_ops_applied_at;
                 ALTER TABLE {schema}.zestor_applied_ops DROP COLUMN applied_at;
                 UPDATE {schema}.zestor_meta SET value = 1 WHERE key = 'schema_version';"
            ))
            .await
            .unwrap();
        let s = open_in::<Value>(url, &schema, "ns").await.unwrap();
        let types: Vec<String> = admin
            .query(
                "SELECT data_type FROM information_schema.columns
                 WHERE table_schema = $1 AND column_name = 'value'
                   AND table_name IN ('zestor_entries', 'zestor_changes')",
                &[&schema],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(types, ["json", "json"]);
        let version: i64 = admin
            .query_one(
                &format!("SELECT value FROM {schema}.zestor_meta WHERE key = 'schema_version'"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, SCHEMA_VERSION);
        let e = s.get("t", "k").await.unwrap().unwrap();
        assert_eq!((e.value, e.version, e.rev), (json!({"n": 2}), 2, 2));
        let mut w = s.watch("t", WatchOptions::new().from_rev(0)).await.unwrap();
        for rev in 1..=2 {
            assert_eq!(
                w.next().await.unwrap().unwrap().rev,
                rev,
                "the change log is kept"
            );
        }
        let value = json!({"text": "a\u{0}b"});
        let w = s.set("t", "nul", value.clone(), NONE).await.unwrap();
        assert_eq!(w.rev, 3);
        Store::close(&s).await;
        let s = open_in::<Value>(url, &schema, "ns").await.unwrap();
        assert_eq!(s.get("t", "nul").await.unwrap().unwrap().value, value);
        Store::close(&s).await;
        pg::drop_schema(url, &schema).await;
    });
}

/// The change log keeps `max(retention, min_log_retention)` revisions.
#[test]
fn change_log_is_trimmed() {
    let Some(url) = pg::url("change_log_is_trimmed") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let admin = pg::connect(url).await;
        let revs =
            |ns: &'static str| {
                let (admin, schema) = (&admin, &schema);
                async move {
                    admin
                    .query_one(
                        &format!(
                            "SELECT min(rev), max(rev), count(*) FROM {schema}.zestor_changes WHERE ns = $1"
                        ),
                        &[&ns],
                    )
                    .await
                    .map(|r| (r.get::<_, Option<i64>>(0), r.get::<_, Option<i64>>(1), r.get::<_, i64>(2)))
                    .unwrap()
                }
            };
        for (ns, retention, floor, want) in [("short", 5, 10, 10), ("long", 15, 10, 15)] {
            let options = PgOptions::new(url, ns).schema(&schema).min_log_retention(floor);
            let s = postgres::open(options, StoreOptions::<Value>::new().retention(retention))
                .await
                .unwrap();
            for i in 0..30 {
                s.set("t", &format!("k{}", i % 4), json!(i), NONE).await.unwrap();
            }
            assert_eq!(revs(ns).await, (Some(31 - want), Some(30), want), "{ns}");
            Store::close(&s).await;
        }
        pg::drop_schema(url, &schema).await;
    });
}

/// A write the database refuses fails with the server's own report — its
/// SQLSTATE code, message, detail and hint — not tokio-postgres' bare
/// `db error`.
#[test]
fn a_refused_write_reports_the_database_error() {
    let Some(url) = pg::url("a_refused_write_reports_the_database_error") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let s = open_in::<Value>(url, &schema, "ns").await.unwrap();
        let admin = pg::connect(url).await;
        admin
            .batch_execute(&format!(
                "ALTER TABLE {schema}.zestor_entries ADD CONSTRAINT short_keys CHECK (length(key) < 8);
                 CREATE FUNCTION {schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'ZT001',
                         DETAIL = 'the key is refused', HINT = 'use another key';
                 END $$;
                 CREATE TRIGGER refuse BEFORE INSERT ON {schema}.zestor_entries
                     FOR EACH ROW WHEN (NEW.key = 'refused') EXECUTE FUNCTION {schema}.refuse();"
            ))
            .await
            .unwrap();
        let refused = |key: &'static str| {
            let s = &s;
            async move {
                match s.set("t", key, json!(1), NONE).await {
                    Err(Error::Storage(e)) => e.to_string(),
                    other => panic!("expected a storage error writing {key}, got {other:?}"),
                }
            }
        };
        let msg = refused("too-long-a-key").await;
        assert!(
            msg.contains(
                "ERROR 23514: new row for relation \"zestor_entries\" violates check constraint \"short_keys\""
            ) && msg.contains("; detail: Failing row contains (ns, t, too-long-a-key"),
            "{msg}"
        );
        let msg = refused("refused").await;
        assert!(
            msg.contains(
                "ERROR ZT001: refused by the test; detail: the key is refused; hint: use another key"
            ),
            "{msg}"
        );
        // Nothing was written, and the store goes on.
        assert_eq!(s.rev().await.unwrap(), 0);
        let w = s.set("t", "ok", json!(1), NONE).await.unwrap();
        assert_eq!((w.rev, w.version), (1, 1));
        Store::close(&s).await;
        pg::drop_schema(url, &schema).await;
    });
}

/// A migration the database refuses fails `open` with the server's report,
/// and leaves the schema as it was: the migration is one transaction.
#[test]
fn a_refused_migration_reports_the_database_error_and_changes_nothing() {
    let Some(url) = pg::url("a_refused_migration_reports_the_database_error_and_changes_nothing") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let admin = pg::connect(url).await;
        // A table of another application where the migration creates one.
        admin
            .batch_execute(&format!("CREATE TABLE {schema}.zestor_entries (x int)"))
            .await
            .unwrap();
        match open_in::<Value>(url, &schema, "ns").await {
            Err(Error::Storage(e)) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(
                        "migrating the schema: ERROR 42P07: relation \"zestor_entries\" already exists"
                    ),
                    "{msg}"
                );
            }
            other => panic!("expected a storage error, got {other:?}"),
        }
        let tables: Vec<String> = admin
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1",
                &[&schema],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(tables, ["zestor_entries"]);
        pg::drop_schema(url, &schema).await;
    });
}

/// Stores opening at once on a schema that does not exist yet migrate one at
/// a time: while the migration lock is held elsewhere they all wait for it;
/// once it is released every one opens, on a schema created once, at the
/// current version, with each namespace's head.
#[test]
fn stores_opening_at_once_migrate_one_at_a_time() {
    let Some(url) = pg::url("stores_opening_at_once_migrate_one_at_a_time") else {
        return;
    };
    const OPENS: i64 = 4;
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let admin = pg::connect(url).await;
        admin
            .batch_execute(&format!("DROP SCHEMA {schema}"))
            .await
            .unwrap();
        let lock = [
            "SELECT pg_advisory_lock($1, hashtext($2::text))",
            "SELECT pg_advisory_unlock($1, hashtext($2::text))",
        ];
        admin
            .execute(lock[0], &[&postgres::MIGRATION_LOCK, &schema])
            .await
            .unwrap();
        let opens: Vec<_> = (0..OPENS)
            .map(|i| {
                let schema = schema.clone();
                tokio::spawn(async move { open_in::<Value>(url, &schema, &format!("ns{}", i % 2)).await })
            })
            .collect();
        loop {
            let waiting: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                     AND classid = $1::int4::oid AND objid = hashtext($2::text)::oid AND objsubid = 2",
                    &[&postgres::MIGRATION_LOCK, &schema],
                )
                .await
                .unwrap()
                .get(0);
            // An open that ended without waiting fails below.
            if waiting == OPENS || opens.iter().any(tokio::task::JoinHandle::is_finished) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        admin
            .execute(lock[1], &[&postgres::MIGRATION_LOCK, &schema])
            .await
            .unwrap();
        let mut stores = Vec::new();
        for open in opens {
            stores.push(open.await.unwrap().expect("every store opens"));
        }
        for (i, s) in stores.iter().enumerate() {
            s.set("t", &format!("k{i}"), json!(i), NONE).await.unwrap();
        }
        let version: i64 = admin
            .query_one(
                &format!("SELECT value FROM {schema}.zestor_meta WHERE key = 'schema_version'"),
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(version, SCHEMA_VERSION);
        let heads: Vec<(String, i64)> = admin
            .query(
                &format!("SELECT ns, rev FROM {schema}.zestor_heads ORDER BY ns"),
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert_eq!(heads, [("ns0".to_owned(), 2), ("ns1".to_owned(), 2)]);
        for s in &stores {
            Store::close(s).await;
        }
        pg::drop_schema(url, &schema).await;
    });
}
