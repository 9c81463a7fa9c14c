//! Copies taken while a real server process writes: `sync-server backup`
//! of a SQLite file, and `sync-server export` on both backends. Each copy
//! must be the namespace at one revision, with every entry of that
//! revision; and the backup's refusals leave everything as it was.

#[path = "support/pg.rs"]
mod pg;
#[path = "support/process.rs"]
mod process;
mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use store_core::{Entry, Store, StoreOptions};
use sync_server::backend::sqlite::{self, SqliteOptions};
use sync_server::client::{Client, ClientOptions};

use process::{ServerProcess, fails, ok, pg_db, sqlite_db};

const NS: &str = "busy";
/// Keys the writer cycles through.
const KEYS: u64 = 20;

/// A native client writing `task/k{i % KEYS} = {"i": i}`, one write after
/// the other's ack, until stopped: write `i` is revision `base + 1 + i`.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(server: &ServerProcess, base: u64) -> Writer {
        let client = Client::connect(ClientOptions::new(server.url(), NS, "any", "writer"));
        let (stop, acked) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (s, a) = (stop.clone(), acked.clone());
        let task = tokio::spawn(async move {
            let mut i = 0;
            while !s.load(Ordering::SeqCst) {
                let write = client.set("task", &format!("k{}", i % KEYS), json!({"i": i}));
                let ack = write.unwrap().expect("a change").acked().await.unwrap();
                assert_eq!(ack.rev, base + 1 + i, "the only writer");
                i += 1;
                a.store(i, Ordering::SeqCst);
            }
            client.close().await;
        });
        Writer { stop, acked, task }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until `n` more writes were acknowledged.
    async fn more(&self, n: u64) {
        let target = self.acked() + n;
        tokio::time::timeout(Duration::from_secs(30), async {
            while self.acked() < target {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the writer goes on");
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.task.await.unwrap();
        self.acked.load(Ordering::SeqCst)
    }
}

/// What the writer's keys hold at revision `rev`.
fn written_at(base: u64, rev: u64) -> BTreeMap<String, Entry<Value>> {
    let mut out = BTreeMap::new();
    for i in 0..rev - base {
        out.insert(
            format!("k{}", i % KEYS),
            Entry {
                value: json!({"i": i}),
                version: i / KEYS + 1,
                rev: base + 1 + i,
            },
        );
    }
    out
}

/// Large values under `blob`, so that a backup takes several steps.
fn blobs() -> Vec<(String, Value)> {
    (0..2_000)
        .map(|i| (format!("b{i:05}"), json!({"i": i, "pad": "x".repeat(4_000)})))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_while_a_server_writes_is_the_database_at_one_revision() {
    let db = support::fresh_db("backup-busy");
    let blobs = blobs();
    let store = sqlite::open(SqliteOptions::new(&db, NS), StoreOptions::new()).unwrap();
    store.set_many("blob", blobs.clone()).await.unwrap();
    let base = store.rev().await.unwrap();
    assert_eq!(base, 2_000);
    store.close();
    drop(store);

    let server = ServerProcess::start(&sqlite_db(&db));
    let writer = Writer::start(&server, base);
    let mut copies = Vec::new();
    let mut during = 0;
    for n in 0..3 {
        writer.more(5).await;
        let copy = db.with_extension(format!("copy{n}.db"));
        let before = writer.acked();
        let args = ["backup", "--db", &sqlite_db(&db), copy.to_str().unwrap()].map(str::to_owned);
        let stderr = tokio::task::spawn_blocking(move || ok(&args.each_ref().map(String::as_str)))
            .await
            .unwrap();
        during += writer.acked() - before;
        assert!(
            stderr.contains("backup: ") && stderr.contains("% ("),
            "progress: {stderr}"
        );
        assert!(stderr.contains("integrity ok"), "{stderr}");
        copies.push(copy);
    }
    let total = writer.stop().await;
    server.stop();
    assert!(during > 0, "the server went on writing during the backups");

    let mut revs = Vec::new();
    for copy in &copies {
        let conn = rusqlite::Connection::open(copy).unwrap();
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "delete", "a copy is one file, without a WAL");
        drop(conn);
        let restored = sqlite::open(SqliteOptions::new(copy, NS), StoreOptions::new()).unwrap();
        let rev = restored.rev().await.unwrap();
        assert!(rev > base && rev <= base + total, "{rev}");
        assert_eq!(restored.get_all("task").await.unwrap(), written_at(base, rev));
        let blob = restored.get_all("blob").await.unwrap();
        assert_eq!(blob.len(), blobs.len());
        for ((key, value), (i, (k, e))) in blobs.iter().zip(blob.iter().enumerate()) {
            assert_eq!((key, value, e.version, e.rev), (k, &e.value, 1, i as u64 + 1));
        }
        restored.close();
        revs.push(rev);
    }
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "later copies, later revisions: {revs:?}"
    );
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn partials(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter(|n| n.contains(".partial-"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_refuses_what_it_would_damage_and_leaves_it_as_it_was() {
    let db = support::fresh_db("backup-refusals");
    let store = sqlite::open(SqliteOptions::new(&db, NS), StoreOptions::new()).unwrap();
    store
        .set("task", "t1", json!(1), Default::default())
        .await
        .unwrap();
    store.close();
    drop(store);
    let src = sqlite_db(&db);
    let dir = db
        .parent()
        .unwrap()
        .join(format!("backup-refusals-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("out.db");
    let out_str = out.to_str().unwrap();

    // An existing target stays as it is, unless --force.
    std::fs::write(&out, "precious").unwrap();
    let stderr = fails(&["backup", "--db", &src, out_str]);
    assert!(
        stderr.contains("out.db exists; choose another path, or pass --force"),
        "{stderr}"
    );
    assert_eq!(read(&out), b"precious");
    let stderr = ok(&["backup", "--db", &src, "--force", out_str]);
    assert!(stderr.contains("\"busy\" at revision 1"), "{stderr}");
    let copy = sqlite::open(SqliteOptions::new(&out, NS), StoreOptions::new()).unwrap();
    assert_eq!(
        copy.get("task", "t1").await.unwrap().map(|e| e.value),
        Some(json!(1))
    );
    copy.close();
    drop(copy);

    // A WAL beside the target: a process may have it open.
    let other = dir.join("other.db");
    std::fs::write(dir.join("other.db-wal"), "someone's").unwrap();
    for force in [false, true] {
        let mut args = vec!["backup", "--db", &src, other.to_str().unwrap()];
        if force {
            args.push("--force");
        }
        let stderr = fails(&args);
        assert!(
            stderr.contains("other.db-wal exists: the target may be open"),
            "{stderr}"
        );
        assert!(!other.exists());
    }
    assert_eq!(read(&dir.join("other.db-wal")), b"someone's");

    // The source itself.
    let stderr = fails(&["backup", "--db", &src, "--force", db.to_str().unwrap()]);
    assert!(stderr.contains("is the database being backed up"), "{stderr}");

    // Sources that are not a store's database.
    let missing = dir.join("missing.db");
    let stderr = fails(&[
        "backup",
        "--db",
        &sqlite_db(&missing),
        dir.join("a.db").to_str().unwrap(),
    ]);
    assert!(stderr.contains("missing.db: no such file"), "{stderr}");
    assert!(!missing.exists(), "nothing is created");
    let text = dir.join("notes.txt");
    std::fs::write(
        &text,
        "not a database, but long enough to have a header's worth of bytes ...",
    )
    .unwrap();
    let stderr = fails(&[
        "backup",
        "--db",
        &sqlite_db(&text),
        dir.join("b.db").to_str().unwrap(),
    ]);
    assert!(stderr.contains("file is not a database"), "{stderr}");
    let foreign = dir.join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let stderr = fails(&[
        "backup",
        "--db",
        &sqlite_db(&foreign),
        dir.join("c.db").to_str().unwrap(),
    ]);
    assert!(stderr.contains("holds no Zestor data"), "{stderr}");
    let stderr = fails(&[
        "backup",
        "--db",
        "postgres://u@h/db",
        dir.join("d.db").to_str().unwrap(),
    ]);
    assert!(stderr.contains("for PostgreSQL use pg_dump"), "{stderr}");

    for name in ["a.db", "b.db", "c.db", "d.db"] {
        assert!(!dir.join(name).exists(), "{name}");
    }
    assert_eq!(partials(&dir), Vec::<String>::new());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `sync-server export` while the writer writes through a server on `db`:
/// each export is the namespace at the revision its header gives.
async fn exports_while_writing(db: &str) {
    let server = ServerProcess::start(db);
    let writer = Writer::start(&server, 0);
    for _ in 0..3 {
        writer.more(5).await;
        let args = ["export", "--db", db, "--namespace", NS].map(str::to_owned);
        let out = tokio::task::spawn_blocking(move || process::run(&args.each_ref().map(String::as_str)))
            .await
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap());
        let header = lines.next().unwrap();
        let rev = header["rev"].as_u64().unwrap();
        let entries: BTreeMap<String, Entry<Value>> = lines
            .map(|l| {
                assert_eq!(l["kind"], "task");
                let entry = Entry {
                    value: l["value"].clone(),
                    version: l["version"].as_u64().unwrap(),
                    rev: l["rev"].as_u64().unwrap(),
                };
                (l["key"].as_str().unwrap().to_owned(), entry)
            })
            .collect();
        assert_eq!(header["entries"].as_u64(), Some(entries.len() as u64));
        assert_eq!(entries, written_at(0, rev), "the export at revision {rev}");
    }
    writer.stop().await;
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_export_while_a_server_writes() {
    exports_while_writing(&sqlite_db(&support::fresh_db("export-busy"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_export_while_a_server_writes() {
    let Some(url) = pg::url("postgres_export_while_a_server_writes") else {
        return;
    };
    let schema = pg::create_schema(url).await;
    exports_while_writing(&pg_db(url, &schema)).await;
    pg::drop_schema(url, &schema).await;
}
