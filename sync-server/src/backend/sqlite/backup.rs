//! An online backup of a SQLite file, with SQLite's backup API.
//!
//! The copy is read in one read transaction of the source: in WAL mode a
//! reader neither waits for the server's writers nor holds them up, and it
//! sees the database as of one commit, so the copy is the database at one
//! revision of each namespace, whatever is written meanwhile. It is
//! written to a temporary file next to the target, checked
//! (`PRAGMA integrity_check`), switched out of WAL mode so that it is one
//! self-contained file, flushed, and only then moved into place.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::backup::{Backup, StepResult};

use super::dump::open_existing;
use super::{sql, u64_of};
use crate::backend::dump::DumpError;

/// Pages copied per step of the backup: the granularity of its progress.
const PAGES_PER_STEP: i32 = 1024;

/// How far a backup got, as reported after each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupProgress {
    /// Pages copied so far.
    pub copied: u64,
    /// Pages in the database.
    pub total: u64,
}

/// What a backup wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackedUp {
    /// The database's pages.
    pub pages: u64,
    /// The copy's size in bytes.
    pub bytes: u64,
    /// Each namespace with its revision in the copy, sorted by name.
    pub namespaces: Vec<(String, u64)>,
}

/// Why a backup failed. The target is left as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The target exists and replacing it was not asked for.
    #[error("{0} exists; choose another path, or replace it explicitly")]
    Exists(PathBuf),
    /// A WAL or shared-memory file sits next to the target: a process may
    /// have it open, or did not close it cleanly, and SQLite would pair that
    /// file with the copy.
    #[error(
        "{0} exists: the target may be open in a running process, or was not closed cleanly; \
         stop what uses it, or choose another path"
    )]
    InUse(PathBuf),
    /// The target is the source.
    #[error("{0} is the database being backed up")]
    SameFile(PathBuf),
    /// The source is not a database a store wrote, or cannot be read.
    #[error(transparent)]
    Source(#[from] DumpError),
    /// Copying failed.
    #[error("backup failed: {0}")]
    Copy(String),
    /// The copy failed its integrity check.
    #[error("the copy failed its integrity check: {0}")]
    Check(String),
    /// A file operation failed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |e| BackupError::Io {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

fn copy_error(e: impl std::fmt::Display) -> BackupError {
    BackupError::Copy(e.to_string())
}

/// `path` with `suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(suffix);
    path.with_file_name(name)
}

/// Removes the temporary copy unless it was moved into place.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            for suffix in ["", "-journal", "-wal", "-shm"] {
                let _ = fs::remove_file(with_suffix(&path, suffix));
            }
        }
    }
}

/// Copies the SQLite database at `source` to `out`, safely while servers
/// write to it, and checks the copy; `progress` hears of each step.
/// Refuses an `out` that exists unless `replace`, and always one with a
/// `-wal` or `-shm` file next to it. The copy is a database file of its
/// own (not in WAL mode; a store switches it back when it opens it).
pub fn backup(
    source: impl AsRef<Path>,
    out: impl AsRef<Path>,
    replace: bool,
    mut progress: impl FnMut(BackupProgress),
) -> Result<BackedUp, BackupError> {
    let (source, out) = (source.as_ref(), out.as_ref());
    let src = open_existing(source)?;
    check_target(source, out, replace)?;
    let partial = with_suffix(out, &format!(".partial-{}", std::process::id()));
    let mut guard = Partial(Some(partial.clone()));
    for suffix in ["", "-journal"] {
        let stale = with_suffix(&partial, suffix);
        if stale.exists() {
            fs::remove_file(&stale).map_err(io(&stale))?;
        }
    }
    let mut dst = Connection::open(&partial).map_err(|e| BackupError::Io {
        path: partial.clone(),
        message: e.to_string(),
    })?;
    // One read transaction for the whole copy: every step reads the same
    // snapshot, and no write of the server restarts the backup.
    src.execute_batch("BEGIN").map_err(copy_error)?;
    src.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
        .map_err(copy_error)?;
    let pages = copy(&src, &mut dst, &mut progress)?;
    src.execute_batch("COMMIT").map_err(copy_error)?;
    drop(src);
    let namespaces = check_copy(&dst)?;
    // One file, without a WAL to go with it.
    let mode: String = dst
        .query_row("PRAGMA journal_mode=DELETE", [], |r| r.get(0))
        .map_err(copy_error)?;
    if !mode.eq_ignore_ascii_case("delete") {
        return Err(BackupError::Copy(format!(
            "the copy stayed in journal mode {mode}"
        )));
    }
    dst.close().map_err(|(_, e)| copy_error(e))?;
    let file = fs::File::open(&partial).map_err(io(&partial))?;
    file.sync_all().map_err(io(&partial))?;
    let bytes = file.metadata().map_err(io(&partial))?.len();
    drop(file);
    place(&partial, out, replace)?;
    guard.0 = None;
    Ok(BackedUp {
        pages,
        bytes,
        namespaces,
    })
}

fn check_target(source: &Path, out: &Path, replace: bool) -> Result<(), BackupError> {
    if out.is_dir() {
        return Err(BackupError::Io {
            path: out.to_owned(),
            message: "is a directory; name the file to write".to_owned(),
        });
    }
    if out.exists() {
        let same = fs::canonicalize(source).ok() == fs::canonicalize(out).ok();
        if same {
            return Err(BackupError::SameFile(out.to_owned()));
        }
        if !replace {
            return Err(BackupError::Exists(out.to_owned()));
        }
    }
    for suffix in ["-wal", "-shm"] {
        let beside = with_suffix(out, suffix);
        if beside.exists() {
            return Err(BackupError::InUse(beside));
        }
    }
    Ok(())
}

/// Runs the backup to its end; returns the pages copied.
fn copy(
    src: &Connection,
    dst: &mut Connection,
    progress: &mut impl FnMut(BackupProgress),
) -> Result<u64, BackupError> {
    let backup = Backup::new(src, dst).map_err(copy_error)?;
    loop {
        let step = backup.step(PAGES_PER_STEP).map_err(copy_error)?;
        let p = backup.progress();
        let total = u64::try_from(p.pagecount).unwrap_or(0);
        let copied = total.saturating_sub(u64::try_from(p.remaining).unwrap_or(0));
        match step {
            StepResult::Done => {
                progress(BackupProgress { copied, total });
                return Ok(total);
            }
            StepResult::More => progress(BackupProgress { copied, total }),
            // Only the copy's own file could be locked: wait for it.
            StepResult::Busy | StepResult::Locked => std::thread::sleep(Duration::from_millis(20)),
            _ => return Err(BackupError::Copy("an unknown step result".to_owned())),
        }
    }
}

/// Checks the copy's integrity; returns its namespaces and revisions.
fn check_copy(dst: &Connection) -> Result<Vec<(String, u64)>, BackupError> {
    let problems: Vec<String> = dst
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| BackupError::Check(e.to_string()))?;
    if problems != ["ok"] {
        return Err(BackupError::Check(problems.join("; ")));
    }
    dst.prepare("SELECT ns, rev FROM zestor_heads ORDER BY ns")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, u64_of(r.get(1)?))))?.collect())
        .map_err(|e| BackupError::Check(sql(e).to_string()))
}

/// Moves the finished copy to `out`: atomically, and without replacing a
/// file that appeared meanwhile unless `replace`.
fn place(partial: &Path, out: &Path, replace: bool) -> Result<(), BackupError> {
    if replace {
        fs::rename(partial, out).map_err(io(out))?;
    } else {
        match fs::hard_link(partial, out) {
            Ok(()) => fs::remove_file(partial).map_err(io(partial))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(BackupError::Exists(out.to_owned()));
            }
            // A file system without hard links.
            Err(_) if !out.exists() => fs::rename(partial, out).map_err(io(out))?,
            Err(_) => return Err(BackupError::Exists(out.to_owned())),
        }
    }
    sync_dir(out);
    Ok(())
}

/// Flushes the directory entry of `path` (best effort).
fn sync_dir(path: &Path) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
