//! How the PostgreSQL tests get a database.
//!
//! In order:
//! 1. `DATABASE_URL`, when set (and not empty), is used as is;
//! 2. else `host=127.0.0.1 port=5432 user=postgres dbname=test` (the project
//!    machines and CI have it, trust auth), when it answers;
//! 3. else, when `initdb` is on `PATH`, a throwaway cluster is started in a
//!    temporary directory (Unix socket only, no TCP port), once per test
//!    process, and stopped and removed by a watchdog when the process exits
//!    (as root, initdb and pg_ctl run as the `postgres` user via `runuser`).
//!    `ZESTOR_PG_THROWAWAY=1` skips step 2, to exercise this path;
//! 4. else the tests skip, loudly — unless `ZESTOR_REQUIRE_ALL=1` (CI sets
//!    it), which turns a skip into a panic.
//!
//! Each test works in its own schema `zt_<pid>_<counter>` ([`create_schema`]),
//! so tests run in parallel, and drops it at the end ([`drop_schema`]).
//! Tests that open very many stores (the conformance suite) share one
//! schema per process ([`process_schema`]) with a fresh namespace per
//! store. Schemas left behind (by those, or by failed tests) are dropped by
//! the first test process that runs more than two hours later (each
//! schema's comment records its creation time).
//!
//! Include it with `#[path = "support/pg.rs"] mod pg;`.
#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sync_server::backend::postgres::error_message;
use tokio_postgres::{Client, NoTls};

/// The tokio runtime the tests run PostgreSQL stores on.
pub static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("build the test runtime")
});

/// The project machines' PostgreSQL.
pub const LOCAL: &str = "host=127.0.0.1 port=5432 user=postgres dbname=test";

/// How old a leftover test schema must be before it is dropped.
const STALE_AFTER: Duration = Duration::from_secs(2 * 3600);

static FOUND: LazyLock<Result<String, String>> = LazyLock::new(find);

fn find() -> Result<String, String> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.is_empty()
    {
        return Ok(url);
    }
    let mut why = Vec::new();
    if std::env::var("ZESTOR_PG_THROWAWAY").as_deref() != Ok("1") {
        match probe(LOCAL) {
            Ok(()) => return Ok(LOCAL.to_owned()),
            Err(e) => why.push(format!("{LOCAL}: {e}")),
        }
    }
    match throwaway() {
        Ok(url) => Ok(url),
        Err(e) => {
            why.push(format!("throwaway cluster: {e}"));
            Err(why.join("; "))
        }
    }
}

/// Connects once, on a private runtime (so it works from any context).
fn probe(url: &str) -> Result<(), String> {
    let url = url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(5), tokio_postgres::connect(&url, NoTls)).await {
                Ok(Ok((client, connection))) => {
                    tokio::spawn(connection);
                    client
                        .simple_query("SELECT 1")
                        .await
                        .map(drop)
                        .map_err(|e| error_message(&e))
                }
                Ok(Err(e)) => Err(error_message(&e)),
                Err(_) => Err("timed out".to_owned()),
            }
        })
    })
    .join()
    .map_err(|_| "the probe panicked".to_owned())?
}

fn run_ok(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Starts a private cluster; returns its connection string.
fn throwaway() -> Result<String, String> {
    Command::new("initdb")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|_| "initdb is not on PATH".to_owned())?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("zestor-pg-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let root = is_root();
    // PostgreSQL refuses to run as root: run it as `postgres`.
    let as_owner = |program: &str| {
        if root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--", program]);
            c
        } else {
            Command::new(program)
        }
    };
    if root {
        run_ok(Command::new("chown").arg("postgres").arg(&dir), "chown postgres")?;
    }
    let data = dir.join("data");
    run_ok(
        as_owner("initdb").arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
        ]),
        "initdb",
    )?;
    let server_opts = format!(
        "-k {} -p 5432 -c listen_addresses='' -c max_connections=200",
        dir.display()
    );
    run_ok(
        as_owner("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-w", "-o", &server_opts, "start"]),
        "pg_ctl start",
    )?;
    watchdog(&dir, &data, root)?;
    eprintln!(
        "PostgreSQL tests: started a throwaway cluster in {}",
        dir.display()
    );
    Ok(format!(
        "host={} port=5432 user=postgres dbname=postgres",
        dir.display()
    ))
}

/// Stops the cluster and removes its directory once this process is gone.
fn watchdog(dir: &Path, data: &Path, root: bool) -> Result<(), String> {
    let stop = if root {
        "runuser -u postgres -- pg_ctl"
    } else {
        "pg_ctl"
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} -D '{data}' -m immediate stop; rm -rf '{dir}'",
        pid = std::process::id(),
        data = data.display(),
        dir = dir.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting the cluster's watchdog: {e}"))
}

/// The connection string of the test database, or `None` after printing a
/// loud skip banner for `test`. Panics instead of skipping when
/// `ZESTOR_REQUIRE_ALL=1`.
pub fn url(test: &str) -> Option<&'static str> {
    match &*FOUND {
        Ok(url) => Some(url),
        Err(why) => {
            if std::env::var("ZESTOR_REQUIRE_ALL").as_deref() == Ok("1") {
                panic!("{test}: no PostgreSQL available and ZESTOR_REQUIRE_ALL=1: {why}");
            }
            // Straight to the process's stderr: the test harness does not capture
            // it, so the skip shows even for a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "\n################################################################\n\
                 ## SKIPPED {test}: no PostgreSQL available\n\
                 ## ({why})\n\
                 ## Set DATABASE_URL, run PostgreSQL at 127.0.0.1:5432, or put\n\
                 ## initdb on PATH.\n\
                 ################################################################\n"
            );
            None
        }
    }
}

/// Connects to `url`; the connection runs on the current runtime.
pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to the test database: {}", error_message(&e)));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// Creates an empty schema `zt_<pid>_<counter>` and returns its name. Call
/// within a tokio runtime.
pub async fn create_schema(url: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static CLEANED: std::sync::Once = std::sync::Once::new();
    let client = connect(url).await;
    let mut clean = false;
    CLEANED.call_once(|| clean = true);
    if clean {
        drop_stale(&client).await;
    }
    let name = format!(
        "zt_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {name} CASCADE;
             CREATE SCHEMA {name};
             COMMENT ON SCHEMA {name} IS 'zestor test {now}';"
        ))
        .await
        .unwrap_or_else(|e| panic!("create schema {name}: {}", error_message(&e)));
    name
}

/// One schema shared by every caller in this process (created on first
/// use), for tests that open many stores and isolate them by namespace —
/// so a run leaves at most this one schema behind. Call within a tokio
/// runtime.
pub async fn process_schema(url: &str) -> &'static str {
    static SCHEMA: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    SCHEMA.get_or_init(|| create_schema(url)).await
}

/// A namespace name not used before in this process.
pub fn fresh_namespace(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Drops test schemas older than [`STALE_AFTER`].
async fn drop_stale(client: &Client) {
    let Ok(rows) = client
        .query(
            "SELECT nspname, obj_description(oid, 'pg_namespace') FROM pg_namespace
             WHERE nspname LIKE 'zt\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    for row in rows {
        let name: String = row.get(0);
        let created = row
            .get::<_, Option<String>>(1)
            .and_then(|c| c.strip_prefix("zestor test ")?.parse::<u64>().ok());
        if created.is_some_and(|t| now.saturating_sub(t) > STALE_AFTER.as_secs()) {
            let _ = client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))
                .await;
        }
    }
}

/// Drops a schema made by [`create_schema`]. Call within a tokio runtime.
pub async fn drop_schema(url: &str, name: &str) {
    let client = connect(url).await;
    if let Err(e) = client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
        .await
    {
        eprintln!("could not drop test schema {name}: {}", error_message(&e));
    }
}

/// Runs `f` to completion on [`RT`] (from a plain test thread).
pub fn run<F: Future>(f: F) -> F::Output {
    RT.block_on(f)
}

/// Drives a conformance case with a blocking executor, or skips it (see
/// [`url`]).
pub fn block_on_or_skip<F: Future<Output = ()>>(f: F) {
    if url("conformance case").is_some() {
        futures_executor::block_on(f);
    }
}
