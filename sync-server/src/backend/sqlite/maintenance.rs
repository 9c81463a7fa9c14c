//! A SQLite file's disk use, kept bounded: the answers of old op ids
//! pruned, free pages given back, the WAL checkpointed; and
//! [`vacuum`], which switches a file made before incremental auto-vacuum.
//!
//! The maintainer has a connection of its own and takes the write lock
//! only for short transactions, pausing between them; the stores' writers
//! wait for it as for each other (the busy timeout).

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, params};
use store_core::Result;

use super::{AUTO_VACUUM_INCREMENTAL, BUSY_TIMEOUT, Synchronous, now_millis, prepare, sql};
use crate::backend::maintenance::{MAX_STEPS, PRUNE_BATCH, Report, pause_after};
use crate::backend::storage_error;

/// Pages given back per transaction (1 MiB of 4 KiB pages).
const VACUUM_STEP: i64 = 256;

/// Deletes one batch of answers recorded before a time (Unix ms), oldest
/// first, through the `applied_at` index; the stores' writers run it too.
pub(super) const PRUNE_SQL: &str = "DELETE FROM zestor_applied_ops WHERE (ns, client_id, op_id) IN (
    SELECT ns, client_id, op_id FROM zestor_applied_ops
    WHERE applied_at < ?1 ORDER BY applied_at LIMIT ?2)";

/// Keeps one SQLite file's size bounded; see [`Maintainer::run`].
#[derive(Debug)]
pub struct Maintainer {
    conn: Connection,
    path: PathBuf,
}

impl Maintainer {
    /// A connection of its own to the file at `path`, created or migrated
    /// as a store's open does.
    pub fn open(path: impl AsRef<Path>) -> Result<Maintainer> {
        let path = path.as_ref().to_owned();
        // Losing what a maintenance transaction did (on power loss) loses
        // nothing: it is done again.
        let conn = super::connect_path(&path, Synchronous::Normal)?;
        Ok(Maintainer { conn, path })
    }

    /// Whether the file gives free pages back to the file system
    /// (incremental auto-vacuum). A file created before this version of
    /// the schema does not until [`vacuum`] rebuilds it; it still reuses
    /// its free pages for new rows, so it stops growing, but never shrinks.
    pub fn gives_space_back(&self) -> Result<bool> {
        let mode: i64 = self
            .conn
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .map_err(sql)?;
        Ok(mode == AUTO_VACUUM_INCREMENTAL)
    }

    /// One round:
    ///
    /// 1. deletes the answers of op ids recorded more than `op_ids_ttl` ago
    ///    (`None`: keeps them), 500 per transaction;
    /// 2. gives the file's free pages back to the file system (incremental
    ///    auto-vacuum), 1 MiB per transaction;
    /// 3. checkpoints the WAL without waiting for anyone (`PASSIVE`), and
    ///    reports what it could not copy ([`Report::wal_frames_behind`]).
    ///
    /// It takes the write lock only when there is something to do, and
    /// after each transaction it pauses as long as it held the lock, so
    /// writers are held up by one small transaction at most. At most 200
    /// transactions of each kind run; [`Report::more`] then says to run the
    /// next round soon.
    pub fn run(&mut self, op_ids_ttl: Option<Duration>) -> Result<Report> {
        let mut report = Report::default();
        if let Some(ttl) = op_ids_ttl {
            let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
            let before = now_millis().saturating_sub(ttl);
            let (pruned, done) = self.steps(
                |c| {
                    c.prepare_cached("SELECT EXISTS (SELECT 1 FROM zestor_applied_ops WHERE applied_at < ?1)")
                        .and_then(|mut s| s.query_row([before], |r| r.get(0)))
                        .map_err(sql)
                },
                |c| {
                    let n = c
                        .prepare_cached(PRUNE_SQL)
                        .and_then(|mut s| s.execute(params![before, PRUNE_BATCH as i64]))
                        .map_err(sql)?;
                    Ok(n as u64)
                },
            )?;
            report.op_ids_pruned = pruned;
            report.more |= !done;
        }
        if self.gives_space_back()? {
            let free = |c: &Connection| {
                c.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0))
                    .map_err(sql)
            };
            let (freed, done) = self.steps(
                |c| Ok(free(c)? > 0),
                |c| {
                    let before = free(c)?;
                    c.execute_batch(&format!("PRAGMA incremental_vacuum({VACUUM_STEP})"))
                        .map_err(sql)?;
                    Ok(u64::try_from(before - free(c)?).unwrap_or(0))
                },
            )?;
            report.pages_vacuumed = freed;
            report.more |= !done;
        }
        let (log, copied): (i64, i64) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
            .map_err(sql)?;
        report.wal_frames_behind = u64::try_from(log - copied).unwrap_or(0);
        report.wal_bytes = std::fs::metadata(wal_path(&self.path)).map_or(0, |m| m.len());
        Ok(report)
    }

    /// While `needed` says so (asked outside any transaction), runs `step`
    /// in a write transaction and pauses, up to [`MAX_STEPS`] times;
    /// returns the sum of what the steps counted, and whether nothing was
    /// left to do.
    fn steps(
        &mut self,
        needed: impl Fn(&Connection) -> Result<bool>,
        mut step: impl FnMut(&Connection) -> Result<u64>,
    ) -> Result<(u64, bool)> {
        let mut total = 0;
        for _ in 0..MAX_STEPS {
            if !needed(&self.conn)? {
                return Ok((total, true));
            }
            let tx = self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(sql)?;
            let locked = Instant::now();
            total += step(&tx)?;
            tx.commit().map_err(sql)?;
            thread::sleep(pause_after(locked.elapsed()));
        }
        Ok((total, !needed(&self.conn)?))
    }
}

/// The WAL file of the database at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

/// What [`vacuum`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Vacuumed {
    /// The file's size before (database and WAL, once migrated to this
    /// version of the schema), in bytes.
    pub bytes_before: u64,
    /// Its size after, in bytes.
    pub bytes_after: u64,
    /// How long the rebuild took.
    pub took: Duration,
}

/// Rebuilds the file at `path` (`VACUUM`) with incremental auto-vacuum,
/// which a file created before schema version 2 lacks: from then on,
/// maintenance rounds give its free pages back. Also packs any file tight.
///
/// It must have the file to itself: with another connection open on it (a
/// running server), it fails at once and changes nothing; while it runs,
/// others cannot open the file. It takes about as long as reading and
/// writing the whole file twice, and needs free space for two copies of it
/// besides (a temporary copy, then the WAL); the WAL is emptied at the end.
pub fn vacuum(path: impl AsRef<Path>) -> Result<Vacuumed> {
    let path = path.as_ref();
    if !path.is_file() {
        return Err(storage_error(format!("{}: no such file", path.display())));
    }
    let size = || {
        [path.to_owned(), wal_path(path)]
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum::<u64>()
    };
    let mut conn = Connection::open(path).map_err(sql)?;
    // Exclusive locking: the lock is taken by the first transaction and
    // kept until the connection closes, and taking it fails while another
    // connection has the file open.
    conn.execute_batch("PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;")
        .map_err(|e| match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => storage_error(format!(
                "{} is in use by another process (a running sync-server?): stop it first",
                path.display()
            )),
            _ => sql(e),
        })?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    prepare(&mut conn, path, Synchronous::Full)?;
    // Measured once migrated, the WAL emptied.
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .map_err(sql)?;
    let bytes_before = size();
    let started = Instant::now();
    conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL; VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(sql)?;
    let took = started.elapsed();
    drop(conn);
    Ok(Vacuumed {
        bytes_before,
        bytes_after: size(),
        took,
    })
}
