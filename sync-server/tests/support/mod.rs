//! Shared helpers of the sync-server tests.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh database path under the target's temporary directory. The
/// first call of a test process removes what earlier runs left there (files
/// older than an hour), so a target directory kept between runs does not
/// fill the disk.
pub fn fresh_db(name: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    static SWEEP: std::sync::Once = std::sync::Once::new();
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sync-server-tests");
    std::fs::create_dir_all(&dir).expect("create the test directory");
    SWEEP.call_once(|| sweep(&dir, std::time::Duration::from_secs(3600)));
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = dir.join(format!("{name}-{}-{n}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    path
}

/// Removes the files in `dir` not modified for `age`.
fn sweep(dir: &std::path::Path, age: std::time::Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|e| e > age));
        if old && entry.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The tables of the SQLite backend's schema version 1, as it created
/// them, and its version: a file written by the previous version.
pub const SQLITE_SCHEMA_V1: &str = "CREATE TABLE zestor_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE zestor_heads (
        ns TEXT PRIMARY KEY,
        rev INTEGER NOT NULL
    );
    CREATE TABLE zestor_entries (
        ns TEXT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        version INTEGER NOT NULL,
        rev INTEGER NOT NULL,
        PRIMARY KEY (ns, kind, key)
    ) WITHOUT ROWID;
    CREATE TABLE zestor_changes (
        ns TEXT NOT NULL,
        rev INTEGER NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('create', 'update', 'delete')),
        value TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (ns, rev)
    ) WITHOUT ROWID;
    CREATE TABLE zestor_applied_ops (
        ns TEXT NOT NULL,
        client_id TEXT NOT NULL,
        op_id TEXT NOT NULL,
        response TEXT NOT NULL,
        PRIMARY KEY (ns, client_id, op_id)
    ) WITHOUT ROWID;
    INSERT INTO zestor_meta (key, value) VALUES ('schema_version', 1);";
