//! `sync-server export` and `import` on both backends (SQLite files, a
//! real PostgreSQL), through the binary: a namespace goes out and comes
//! back with its revision, versions and revisions, across backends too; a
//! bad file, a wrong namespace or a namespace that holds data is refused
//! with a clear error and changes nothing.

#[path = "support/pg.rs"]
mod pg;
#[path = "support/process.rs"]
mod process;
mod support;

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde_json::{Value, json};
use store_core::sync::{Op, OpAction, OpResult};
use store_core::{SetOptions, Store, StoreOptions, WatchOptions};
use sync_server::backend::Durable;
use sync_server::backend::postgres::{self, PgOptions};
use sync_server::backend::sqlite::{self, SqliteOptions};

use process::{fails, ok, pg_db, sqlite_db};

const NS: &str = "team";

/// A database the tests write to.
enum Db {
    Sqlite(PathBuf),
    Pg { url: &'static str, schema: String },
}

impl Db {
    fn sqlite(name: &str) -> Db {
        Db::Sqlite(support::fresh_db(name))
    }

    async fn pg(url: &'static str) -> Db {
        Db::Pg {
            url,
            schema: pg::create_schema(url).await,
        }
    }

    /// The `--db` argument.
    fn arg(&self) -> String {
        match self {
            Db::Sqlite(path) => sqlite_db(path),
            Db::Pg { url, schema } => pg_db(url, schema),
        }
    }

    async fn open(&self, namespace: &str) -> Durable<Value> {
        match self {
            Db::Sqlite(path) => {
                sqlite::open(SqliteOptions::new(path, namespace), StoreOptions::new()).unwrap()
            }
            Db::Pg { url, schema } => postgres::open(
                PgOptions::new(*url, namespace).schema(schema.as_str()),
                StoreOptions::new(),
            )
            .await
            .unwrap(),
        }
    }

    async fn drop(self) {
        if let Db::Pg { url, schema } = self {
            pg::drop_schema(url, &schema).await;
        }
    }
}

/// Runs `sync-server ARGS…` off the runtime's threads.
async fn cli(args: &[&str], succeed: bool) -> String {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        if succeed { ok(&args) } else { fails(&args) }
    })
    .await
    .unwrap()
}

/// The export of `namespace` of `db`, as text.
async fn export(db: &Db, namespace: &str) -> String {
    let args = ["export", "--db", &db.arg(), "--namespace", namespace].map(str::to_owned);
    let out = tokio::task::spawn_blocking(move || process::run(&args.each_ref().map(String::as_str)))
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn file(name: &str, text: &str) -> PathBuf {
    let path = support::fresh_db(name).with_extension("ndjson");
    std::fs::write(&path, text).unwrap();
    path
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

const KINDS: [&str; 3] = ["task", "note", "tag"];

/// Writes a namespace with creates, updates, deletes, a batch and values
/// of every JSON type; and another namespace beside it.
async fn populate(db: &Db) {
    let store = db.open(NS).await;
    let set = |kind: &'static str, key: &'static str, value: Value| {
        let store = store.clone();
        async move { store.set(kind, key, value, SetOptions::default()).await.unwrap() }
    };
    set("task", "a", json!({"title": "ship", "nul": "a\u{0}b"})).await;
    set("task", "b", json!("ünïcödé ✓")).await;
    set("task", "c", json!([1, 2.5, null, true, u64::MAX, -7])).await;
    set("note", "line\nbreak", Value::Null).await;
    set("task", "a", json!({"title": "shipped"})).await;
    store.delete("task", "b", SetOptions::default()).await.unwrap();
    store
        .set_many(
            "tag",
            vec![
                ("x".into(), json!(1)),
                ("y".into(), json!({"deep": {"er": [{}]}})),
            ],
        )
        .await
        .unwrap();
    store
        .patch("task", "a", json!({"by": "kim"}), SetOptions::default())
        .await
        .unwrap();
    set("task", "", json!("an empty key")).await;
    store.close();
    let other = db.open("other").await;
    other
        .set("task", "z", json!(1), SetOptions::default())
        .await
        .unwrap();
    other.close();
}

/// Exports the namespace from `src`, imports it into an empty `dst`, and
/// compares: the same revision, entries, versions and revisions, and the
/// same export again.
async fn round_trip(src: &Db, dst: &Db) {
    populate(src).await;
    let text = export(src, NS).await;
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        header,
        json!({"format": "zestor-export", "version": 1, "namespace": NS, "rev": 10, "entries": 6})
    );
    let path = file("round-trip", &text);
    let stderr = cli(&["import", "--db", &dst.arg(), "--namespace", NS, s(&path)], true).await;
    assert!(
        stderr.contains("imported 6 entries into namespace \"team\" at revision 10"),
        "{stderr}"
    );

    let (from, to) = (src.open(NS).await, dst.open(NS).await);
    assert_eq!(to.rev().await.unwrap(), 10);
    for kind in KINDS {
        assert_eq!(
            to.get_all(kind).await.unwrap(),
            from.get_all(kind).await.unwrap(),
            "{kind}"
        );
    }
    assert_eq!(
        to.get("task", "a")
            .await
            .unwrap()
            .map(|e| (e.value, e.version, e.rev)),
        Some((json!({"title": "shipped", "by": "kim"}), 3, 9))
    );
    assert_eq!(export(dst, NS).await, text, "the same export again");
    // The imported namespace goes on from its revision; the change log
    // before it is not carried over, so watches resume from it only.
    let w = to
        .set("task", "new", json!(1), SetOptions::default())
        .await
        .unwrap();
    assert_eq!(w.rev, 11);
    let mut resumed = to.watch_all(WatchOptions::new().from_rev(10)).await.unwrap();
    assert_eq!(resumed.next().await.unwrap().unwrap().rev, 11);
    let mut before = to.watch_all(WatchOptions::new().from_rev(9)).await.unwrap();
    assert!(
        matches!(
            before.next().await,
            Some(Err(store_core::Error::Compacted { oldest: 10 }))
        ),
        "a watch from before the import is told to re-list"
    );
    from.close();
    to.close();
    // Only the namespace named was imported.
    let stderr = cli(&["export", "--db", &dst.arg(), "--namespace", "other"], false).await;
    assert!(stderr.contains("namespace \"other\" holds nothing"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_sqlite() {
    round_trip(&Db::sqlite("rt-src"), &Db::sqlite("rt-dst")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_postgres_and_across_backends() {
    let Some(url) = pg::url("postgres_to_postgres_and_across_backends") else {
        return;
    };
    let (src, dst) = (Db::pg(url).await, Db::pg(url).await);
    round_trip(&src, &dst).await;
    // SQLite to PostgreSQL, and back.
    let (lite, pg) = (Db::sqlite("rt-lite"), Db::pg(url).await);
    round_trip(&lite, &pg).await;
    let (pg2, lite2) = (Db::pg(url).await, Db::sqlite("rt-lite2"));
    round_trip(&pg2, &lite2).await;
    for db in [src, dst, pg, pg2] {
        db.drop().await;
    }
}

/// Everything `import` and `export` refuse, on `db`: each time with a
/// clear error, and the namespace as it was.
async fn refusals(db: &Db) {
    let store = db.open(NS).await;
    store
        .set("task", "a", json!(1), SetOptions::default())
        .await
        .unwrap();
    store
        .set("task", "b", json!(2), SetOptions::default())
        .await
        .unwrap();
    let older = export(db, NS).await;
    store
        .set("task", "c", json!(3), SetOptions::default())
        .await
        .unwrap();
    store.close();
    let other = db.open("other").await;
    other
        .set("task", "z", json!(1), SetOptions::default())
        .await
        .unwrap();
    other.close();
    let now = export(db, NS).await;
    let other_now = export(db, "other").await;
    let import = |path: PathBuf, replace: bool| {
        let dbarg = db.arg();
        async move {
            let mut args = vec!["import", "--db", &dbarg, "--namespace", NS];
            if replace {
                args.push("--replace");
            }
            args.push(s(&path));
            cli(&args, false).await
        }
    };

    let stderr = import(file("older", &older), false).await;
    assert!(
        stderr.contains("namespace \"team\" is not empty (revision 3, 3 entries); pass --replace"),
        "{stderr}"
    );
    let lines: Vec<&str> = older.lines().collect();
    let broken = format!(
        "{}\n{}\n{}\n",
        lines[0], lines[1], r#"{"kind":"task","key":"b","value":2,"version":1}"#
    );
    let stderr = import(file("broken", &broken), true).await;
    assert!(
        stderr.contains("line 3: rev is missing; nothing was imported"),
        "{stderr}"
    );
    let elsewhere = older.replacen("\"namespace\":\"team\"", "\"namespace\":\"elsewhere\"", 1);
    let stderr = import(file("elsewhere", &elsewhere), true).await;
    assert!(
        stderr.contains("the export is of namespace \"elsewhere\", not \"team\""),
        "{stderr}"
    );
    let truncated = format!("{}\n{}\n", lines[0], lines[1]);
    let stderr = import(file("truncated", &truncated), true).await;
    assert!(
        stderr.contains("the file ends after 1 of the header's 2 entries: it is truncated"),
        "{stderr}"
    );
    let headless = format!("{}\n", lines[1]);
    let stderr = import(file("headless", &headless), true).await;
    assert!(stderr.contains("line 1: not a Zestor export"), "{stderr}");
    let stderr = import(PathBuf::from("/nonexistent/export.ndjson"), true).await;
    assert!(
        stderr.contains("/nonexistent/export.ndjson: No such file"),
        "{stderr}"
    );
    assert_eq!(export(db, NS).await, now, "nothing was imported");

    // Replacing, when asked.
    let stderr = cli(
        &[
            "import",
            "--db",
            &db.arg(),
            "--namespace",
            NS,
            "--replace",
            s(&file("older", &older)),
        ],
        true,
    )
    .await;
    assert!(
        stderr.contains(
            "at revision 4 (replaced revision 3 with 3 entries; \
             the file is of revision 2, and revisions never go back)"
        ),
        "{stderr}"
    );
    // The older entries, at a revision past the replaced one: every
    // cursor a client holds is older than the history, never resumed from.
    let older_at_4 = older.replacen("\"rev\":2,", "\"rev\":4,", 1);
    assert_ne!(older_at_4, older);
    assert_eq!(export(db, NS).await, older_at_4);
    let store = db.open(NS).await;
    assert_eq!(store.rev().await.unwrap(), 4);
    let mut from_3 = store.watch_all(WatchOptions::new().from_rev(3)).await.unwrap();
    assert!(
        matches!(
            from_3.next().await,
            Some(Err(store_core::Error::Compacted { oldest: 4 }))
        ),
        "a watch from the replaced revision is told to re-list"
    );
    drop(from_3);
    store.close();
    assert_eq!(
        export(db, "other").await,
        other_now,
        "other namespaces are left alone"
    );

    // Exports refuse to overwrite, and to invent a namespace.
    let out = file("existing", "keep me");
    let stderr = cli(
        &["export", "--db", &db.arg(), "--namespace", NS, "--out", s(&out)],
        false,
    )
    .await;
    assert!(
        stderr.contains("exists; choose another path, or pass --force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    cli(
        &[
            "export",
            "--db",
            &db.arg(),
            "--namespace",
            NS,
            "--out",
            s(&out),
            "--force",
        ],
        true,
    )
    .await;
    assert_eq!(std::fs::read_to_string(&out).unwrap(), older_at_4);
    let stderr = cli(&["export", "--db", &db.arg(), "--namespace", "nope"], false).await;
    assert!(
        stderr.contains("namespace \"nope\" holds nothing") && stderr.contains("\"other\", \"team\""),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_refusals() {
    refusals(&Db::sqlite("refusals")).await;
    let missing = support::fresh_db("missing");
    let stderr = cli(
        &["export", "--db", &sqlite_db(&missing), "--namespace", NS],
        false,
    )
    .await;
    assert!(stderr.contains("no such file"), "{stderr}");
    assert!(!missing.exists(), "an export creates nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_refusals() {
    let Some(url) = pg::url("postgres_refusals") else {
        return;
    };
    let db = Db::pg(url).await;
    refusals(&db).await;
    db.drop().await;
    let stderr = cli(
        &[
            "export",
            "--db",
            &pg_db(url, "zt_no_such_schema"),
            "--namespace",
            NS,
        ],
        false,
    )
    .await;
    assert!(
        stderr.contains("schema \"zt_no_such_schema\" holds no Zestor data"),
        "{stderr}"
    );
    let created: bool = pg::connect(url)
        .await
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'zt_no_such_schema')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!created, "an export creates nothing");
}

/// An op id answered in the history an import replaces is applied again
/// on the imported state: its change went with that history.
async fn replacing_forgets_recorded_answers(db: &Db) {
    let op = |value: i64| Op {
        op_id: "dev:0".into(),
        kind: "task".into(),
        key: "x".into(),
        action: OpAction::Set,
        value: Some(json!(value)),
        if_version: None,
    };
    let store = db.open(NS).await;
    store
        .set("task", "a", json!(1), SetOptions::default())
        .await
        .unwrap();
    let older = file("answers", &export(db, NS).await);
    let first = store.apply_ops("dev", vec![op(1)]).await;
    assert_eq!(
        first[0].as_ref().map(|a| (a.result, a.rev)),
        Ok((OpResult::Created, 2))
    );
    let retried = store.apply_ops("dev", vec![op(1)]).await;
    assert_eq!(retried, first, "answered from the record");
    store.close();

    cli(
        &[
            "import",
            "--db",
            &db.arg(),
            "--namespace",
            NS,
            "--replace",
            s(&older),
        ],
        true,
    )
    .await;
    let store = db.open(NS).await;
    assert_eq!(store.get("task", "x").await.unwrap(), None);
    // At revision 3: past the replaced one, 2.
    let again = store.apply_ops("dev", vec![op(1)]).await;
    assert_eq!(
        again[0].as_ref().map(|a| (a.result, a.rev)),
        Ok((OpResult::Created, 4))
    );
    assert_eq!(
        store.get("task", "x").await.unwrap().map(|e| e.value),
        Some(json!(1))
    );
    store.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_replacing_forgets_recorded_answers() {
    replacing_forgets_recorded_answers(&Db::sqlite("answers")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replacing_forgets_recorded_answers() {
    let Some(url) = pg::url("postgres_replacing_forgets_recorded_answers") else {
        return;
    };
    let db = Db::pg(url).await;
    replacing_forgets_recorded_answers(&db).await;
    db.drop().await;
}
