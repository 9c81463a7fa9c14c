//! The `sync-server` binary as the tests run it: server processes, and the
//! `backup`, `restore`, `export` and `import` commands.
//!
//! Include it with `#[path = "support/process.rs"] mod process;`.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use sync_server::server::Database;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sync-server");

/// A server process, killed when dropped.
pub struct ServerProcess {
    child: Option<Child>,
    pub address: SocketAddr,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `sync-server --db DB --insecure-open` on a free port.
    pub fn start(db: &str) -> ServerProcess {
        Self::start_at(db, "127.0.0.1:0".parse().unwrap())
    }

    /// Starts it at `address`, retrying for a while when the port is still
    /// taken (by the previous server on it).
    pub fn start_at(db: &str, address: SocketAddr) -> ServerProcess {
        let started = Instant::now();
        loop {
            match Self::try_start(db, address) {
                Ok(server) => return server,
                Err(log) if started.elapsed() < Duration::from_secs(20) && address.port() != 0 => {
                    eprintln!("the server did not start, retrying: {log}");
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(log) => panic!("the server did not start: {log}"),
            }
        }
    }

    fn try_start(db: &str, address: SocketAddr) -> Result<ServerProcess, String> {
        let log = crate::support::fresh_db("server-log").with_extension("log");
        let mut child = Command::new(BIN)
            .args(["--insecure-open", "--heartbeat-ms", "2000", "--listen"])
            .arg(address.to_string())
            .arg("--db")
            .arg(db)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
        let address = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok());
        match (read, address) {
            (Ok(_), Some(address)) => Ok(ServerProcess {
                child: Some(child),
                address,
                log,
            }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(std::fs::read_to_string(&log).unwrap_or_default())
            }
        }
    }

    /// The sync endpoint.
    pub fn url(&self) -> String {
        format!("ws://{}/sync", self.address)
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it as an operator does (SIGTERM) and waits for it to exit.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the server exited with {status}: {}",
                    self.log()
                );
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the server did not stop on SIGTERM: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `sync-server ARGS…` to its end.
pub fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Runs `sync-server ARGS…`, which must succeed; returns its stderr.
pub fn ok(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "sync-server {args:?} failed: {stderr}");
    stderr
}

/// Runs `sync-server ARGS…`, which must fail with exit code 1; returns its
/// stderr.
pub fn fails(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "sync-server {args:?} should fail: {stderr}"
    );
    stderr
}

/// `sqlite://PATH`.
pub fn sqlite_db(path: &Path) -> String {
    Database::Sqlite(path.to_owned()).url()
}

/// The `--db` URL of schema `schema` of the PostgreSQL database at `conn`
/// (a URL, or libpq `key=value` pairs as the tests' database is given).
pub fn pg_db(conn: &str, schema: &str) -> String {
    Database::Postgres {
        conn: conn.to_owned(),
        schema: schema.to_owned(),
    }
    .url()
}
