//! The SQLite backend, the embedded default.
//!
//! One file holds any number of namespaces. Writes go through one writer
//! thread per store, which batches everything queued into one transaction
//! (`BEGIN IMMEDIATE`), so throughput is not one fsync per write.
//!
//! Durability: WAL journal with `synchronous=FULL` by default: a write is
//! acknowledged only once it would survive a power loss.
//! [`Synchronous::Normal`] is an explicit opt-in that keeps the database
//! consistent after a crash but may lose the last acknowledged writes on
//! power loss (not on a process crash).
//!
//! Disk: the answers of op ids are pruned after their time to live (by the
//! writes that record answers, and by a [`Maintainer`]); files are created
//! with incremental auto-vacuum, so a [`Maintainer`] gives free pages back;
//! the WAL is cut back to [`JOURNAL_SIZE_LIMIT`] after it grew. [`vacuum`]
//! switches a file made before schema version 2.
//!
//! Watches are fed in-process. A second process writing to the same file is
//! seen by this store when it next writes (its writer catches up from the
//! change log); use PostgreSQL for several live processes.
//!
//! [`backup`] copies the file while servers write to it; [`export`] and
//! [`import`] move one namespace out of a file and into one.

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use futures_channel::mpsc;
use rusqlite::{Connection, OptionalExtension, params};
use store_core::{EventType, MemStore, Result, StoreOptions, StoreValue};

use super::{
    AppliedOp, Durable, Snapshot, Storage, StoredEntry, StoredEvent, parse_type, run_writer, storage_error,
    type_name,
};

mod backup;
mod dump;

pub use backup::{BackedUp, BackupError, BackupProgress, backup};
pub use dump::{export, import, namespaces};

/// The schema version this build writes; a database with a newer one is
/// refused.
pub const SCHEMA_VERSION: i64 = 3;

/// `{now}` stands for the time of the migration, in Unix milliseconds.
const MIGRATIONS: &[&str] = &[
    // 1: entries, per-namespace heads, the change log, applied client ops.
    "CREATE TABLE zestor_heads (
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
    ) WITHOUT ROWID;",
    // 2: when each answer was written (Unix milliseconds), so that answers
    // older than the op ids' time to live can be pruned. Answers written
    // before it count as written at the migration: SQLite's ADD COLUMN
    // takes only a constant default, and one that leaves the rows as they
    // are (no rewrite of a table that may be large); every insert names
    // the column.
    "ALTER TABLE zestor_applied_ops ADD COLUMN applied_at INTEGER NOT NULL DEFAULT {now};
    CREATE INDEX zestor_applied_ops_applied_at ON zestor_applied_ops (applied_at);",
    // 3: the change log's type check as comparisons, the same rule.
    // SQLite evaluates `IN` over more than two constants through a
    // temporary table built on every execution of the insert (about 15 %
    // of the writes/s at 32 writers). SQLite cannot alter a check, so the
    // table is rebuilt; it holds only the retained revisions.
    "CREATE TABLE zestor_changes_v3 (
        ns TEXT NOT NULL,
        rev INTEGER NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type = 'create' OR type = 'update' OR type = 'delete'),
        value TEXT NOT NULL,
        version INTEGER NOT NULL,
        PRIMARY KEY (ns, rev)
    ) WITHOUT ROWID;
    INSERT INTO zestor_changes_v3 (ns, rev, kind, key, type, value, version)
        SELECT ns, rev, kind, key, type, value, version FROM zestor_changes;
    DROP TABLE zestor_changes;
    ALTER TABLE zestor_changes_v3 RENAME TO zestor_changes;",
];

// The schema version is the number of migrations: a migration added
// without bumping it (or the reverse) does not build.
const _: () = assert!(
    SCHEMA_VERSION >= 0 && SCHEMA_VERSION as usize == MIGRATIONS.len(),
    "SCHEMA_VERSION must equal the number of MIGRATIONS"
);

/// SQLite's `synchronous` setting for the store's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// fsync on every commit: an acknowledged write survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a process crash, may lose the
    /// latest acknowledged writes on power loss.
    Normal,
}

/// Where and how to open a SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    path: PathBuf,
    namespace: String,
    synchronous: Synchronous,
    op_ids_ttl: Option<Duration>,
}

impl SqliteOptions {
    /// The namespace `namespace` of the database file at `path` (created if
    /// missing), with `synchronous=FULL` and the answers of op ids kept for
    /// [`DEFAULT_OP_IDS_TTL`](crate::backend::maintenance::DEFAULT_OP_IDS_TTL).
    pub fn new(path: impl AsRef<Path>, namespace: impl Into<String>) -> Self {
        SqliteOptions {
            path: path.as_ref().to_owned(),
            namespace: namespace.into(),
            synchronous: Synchronous::Full,
            op_ids_ttl: Some(crate::backend::maintenance::DEFAULT_OP_IDS_TTL),
        }
    }

    /// How long the answers of op ids are kept (`None`: for good). Each
    /// write transaction that records answers of client ops
    /// ([`Durable::apply_ops`]) also deletes up to twice as many answers
    /// (of any namespace of the file) recorded longer ago than this, so
    /// pruning keeps up with writing without taking the file's write lock
    /// for itself; a [`Maintainer`] prunes what writes leave (a namespace
    /// nobody writes to any more).
    #[must_use]
    pub fn op_ids_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.op_ids_ttl = ttl;
        self
    }

    /// Chooses the `synchronous` setting.
    #[must_use]
    pub fn synchronous(mut self, synchronous: Synchronous) -> Self {
        self.synchronous = synchronous;
        self
    }
}

mod maintenance;

pub use maintenance::{Maintainer, Vacuumed, vacuum};

/// Opens (creating or migrating the file as needed) one namespace of a
/// SQLite database, loads it into memory and starts its writer thread.
pub fn open<T: StoreValue>(options: SqliteOptions, store: StoreOptions<T>) -> Result<Durable<T>> {
    let conn = connect(&options)?;
    let mut storage = SqliteStorage {
        conn,
        ns: options.namespace,
        trimmed_through: 0,
        op_ids_ttl: options
            .op_ids_ttl
            .map(|ttl| i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)),
        oldest_answer: None,
    };
    let snapshot = storage.load(store.retained_revisions() as u64)?;
    let mem = MemStore::from_engine(snapshot.restore(store)?);
    let (queue, requests) = mpsc::unbounded();
    let writer = mem.clone();
    thread::Builder::new()
        .name(format!("zestor-sqlite-{}", storage.ns))
        .spawn(move || futures_executor::block_on(run_writer(writer, storage, requests)))
        .map_err(storage_error)?;
    Ok(Durable::new(mem, queue))
}

fn sql(e: rusqlite::Error) -> store_core::Error {
    storage_error(e)
}

fn connect(options: &SqliteOptions) -> Result<Connection> {
    connect_path(&options.path, options.synchronous)
}

/// Opens the file at `path` as every connection of this backend does, and
/// brings its schema to [`SCHEMA_VERSION`].
fn connect_path(path: &Path, synchronous: Synchronous) -> Result<Connection> {
    let mut conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    prepare(&mut conn, path, synchronous)?;
    Ok(conn)
}

/// Sets up a connection to the file at `path` (incremental auto-vacuum for
/// a new file, WAL, `synchronous`, the WAL's size limit) and brings the
/// file's schema to [`SCHEMA_VERSION`].
fn prepare(conn: &mut Connection, path: &Path, synchronous: Synchronous) -> Result<()> {
    let synchronous = match synchronous {
        Synchronous::Full => "FULL",
        Synchronous::Normal => "NORMAL",
    };
    // Before anything writes the file's first page: a file is created with
    // incremental auto-vacuum or never has it (short of a VACUUM). On a file
    // that has tables this does nothing.
    conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL")
        .map_err(sql)?;
    let mode = journal_mode_wal(conn)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(storage_error(format!(
            "could not switch {} to WAL (got {mode})",
            path.display()
        )));
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous={synchronous}; PRAGMA foreign_keys=ON; \
         PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT};"
    ))
    .map_err(sql)?;
    incremental_vacuum_if_empty(conn)?;
    migrate(conn)
}

/// The size the WAL file is cut back to when it starts over after a
/// checkpoint copied all of it (SQLite's `journal_size_limit`; by default
/// SQLite never shrinks the file). SQLite checkpoints after a commit that
/// takes the WAL past 1000 pages (4 MiB), and the WAL starts over at the
/// next write; it grows past that only while a read transaction keeps a
/// checkpoint from reaching its end, and this gives the space back after.
pub const JOURNAL_SIZE_LIMIT: u64 = 4 << 20;

/// Gives incremental auto-vacuum to a file that has no table yet but was
/// created without it (its first page written by another program, say
/// `sqlite3 FILE 'PRAGMA journal_mode=WAL'`). An empty file is rebuilt at
/// once; a file with tables is left alone (`sync-server vacuum` switches
/// those).
fn incremental_vacuum_if_empty(conn: &Connection) -> Result<()> {
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .map_err(sql)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(sql)?;
    if mode != AUTO_VACUUM_INCREMENTAL && tables == 0 {
        conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL; VACUUM")
            .map_err(sql)?;
    }
    Ok(())
}

/// `PRAGMA auto_vacuum`'s value for INCREMENTAL.
pub(crate) const AUTO_VACUUM_INCREMENTAL: i64 = 2;

/// How long a statement waits for another connection's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Switches the file to WAL; returns the journal mode it is in.
///
/// Switching takes the file to itself, and when another connection holds a
/// lock on it SQLite answers "database is locked" at once rather than wait
/// (its busy handler is not called there) — as when several processes open
/// the same new file at the same moment. So a busy file is retried, like any
/// other statement waits, for up to [`BUSY_TIMEOUT`]. Once the file is in
/// WAL mode the switch is a no-op that takes no such lock.
fn journal_mode_wal(conn: &Connection) -> Result<String> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && started.elapsed() < BUSY_TIMEOUT =>
            {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            mode => return mode.map_err(sql),
        }
    }
}

/// Brings the file's schema to [`SCHEMA_VERSION`]; refuses a newer one.
fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(sql)?;
    tx.execute_batch("CREATE TABLE IF NOT EXISTS zestor_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)")
        .map_err(sql)?;
    let found: i64 = tx
        .query_row(
            "SELECT value FROM zestor_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(sql)?
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(storage_error(format!(
            "the database schema is version {found}, newer than this build supports ({SCHEMA_VERSION}); \
             upgrade Zestor to open it"
        )));
    }
    let now = now_millis().to_string();
    for (i, migration) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(&migration.replace("{now}", &now)).map_err(sql)?;
        tracing::info!(version = i + 1, "migrated the SQLite schema");
    }
    tx.execute(
        "INSERT INTO zestor_meta (key, value) VALUES ('schema_version', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [SCHEMA_VERSION],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)
}

/// Change-log rows beyond the retention are deleted once this many pile up.
const TRIM_STEP: u64 = 256;

struct SqliteStorage {
    conn: Connection,
    ns: String,
    /// The change log holds nothing at or below this revision.
    trimmed_through: u64,
    /// How long answers of op ids are kept, in milliseconds.
    op_ids_ttl: Option<i64>,
    /// No recorded answer is dated before this (Unix milliseconds), as far
    /// as this writer knows: a write prunes only once the time to live
    /// reaches it. Answers are only ever added dated now, and deleted, so
    /// it stays true until this writer's next prune reads it again. `None`:
    /// not read yet, or forgotten by a rollback.
    oldest_answer: Option<i64>,
}

/// The wall clock in Unix milliseconds: when an answer is recorded, and
/// what the op ids' time to live is counted against.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqliteStorage {
    fn head(&self) -> Result<u64> {
        let rev: Option<i64> = self
            .conn
            .prepare_cached("SELECT rev FROM zestor_heads WHERE ns = ?1")
            .map_err(sql)?
            .query_row([&self.ns], |r| r.get(0))
            .optional()
            .map_err(sql)?;
        Ok(rev.map_or(0, u64_of))
    }

    fn run(&self, statement: &str) -> Result<()> {
        self.conn
            .prepare_cached(statement)
            .map_err(sql)?
            .execute([])
            .map(drop)
            .map_err(sql)
    }

    /// Reads the namespace in a transaction of its own (at open).
    fn load(&mut self, retention: u64) -> Result<Snapshot> {
        let tx = self.conn.transaction().map_err(sql)?;
        let snapshot = read_snapshot(&tx, &self.ns, retention)?;
        tx.commit().map_err(sql)?;
        Ok(snapshot)
    }
}

/// Reads the namespace: head, entries and the last `retention` revisions of
/// the change log. Call inside a transaction, for a consistent view.
fn read_snapshot(conn: &Connection, ns: &str, retention: u64) -> Result<Snapshot> {
    let rev: u64 = conn
        .query_row("SELECT rev FROM zestor_heads WHERE ns = ?1", [ns], |r| {
            r.get::<_, i64>(0)
        })
        .optional()
        .map_err(sql)?
        .map_or(0, u64_of);
    let entries = conn
        .prepare_cached("SELECT kind, key, value, version, rev FROM zestor_entries WHERE ns = ?1")
        .map_err(sql)?
        .query_map([ns], |r| {
            Ok(StoredEntry {
                kind: r.get(0)?,
                key: r.get(1)?,
                value: r.get(2)?,
                version: u64_of(r.get(3)?),
                rev: u64_of(r.get(4)?),
            })
        })
        .map_err(sql)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(sql)?;
    let history = changes(conn, ns, rev.saturating_sub(retention), rev)?;
    Ok(Snapshot {
        rev,
        entries,
        history,
    })
}

fn changes(conn: &Connection, ns: &str, after: u64, to: u64) -> Result<Vec<StoredEvent>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT rev, kind, key, type, value, version FROM zestor_changes
             WHERE ns = ?1 AND rev > ?2 AND rev <= ?3 ORDER BY rev",
        )
        .map_err(sql)?;
    let rows = stmt
        .query_map(params![ns, i64_of(after), i64_of(to)], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
            ))
        })
        .map_err(sql)?;
    let mut out = Vec::new();
    for row in rows {
        let (rev, kind, key, t, value, version) = row.map_err(sql)?;
        out.push(StoredEvent {
            kind,
            key,
            event_type: parse_type(&t)?,
            value,
            version: u64_of(version),
            rev: u64_of(rev),
        });
    }
    Ok(out)
}

impl Storage for SqliteStorage {
    async fn begin(&mut self, ops: &[(String, String)]) -> Result<(u64, Vec<Option<String>>)> {
        self.run("BEGIN IMMEDIATE")?;
        let head = self.head()?;
        if ops.is_empty() {
            return Ok((head, Vec::new()));
        }
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT response FROM zestor_applied_ops WHERE ns = ?1 AND client_id = ?2 AND op_id = ?3",
            )
            .map_err(sql)?;
        let found = ops
            .iter()
            .map(|(client, op)| {
                stmt.query_row(params![self.ns, client, op], |r| r.get(0))
                    .optional()
                    .map_err(sql)
            })
            .collect::<Result<_>>()?;
        Ok((head, found))
    }

    async fn snapshot(&mut self, retention: u64) -> Result<Snapshot> {
        read_snapshot(&self.conn, &self.ns, retention)
    }

    async fn changes(&mut self, after: u64, to: u64) -> Result<Vec<StoredEvent>> {
        changes(&self.conn, &self.ns, after, to)
    }

    async fn write(
        &mut self,
        events: &[StoredEvent],
        applied: &[AppliedOp],
        trim_through: u64,
    ) -> Result<()> {
        let ns = &self.ns;
        let c = &self.conn;
        let mut log = c
            .prepare_cached(
                "INSERT INTO zestor_changes (ns, rev, kind, key, type, value, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .map_err(sql)?;
        let mut upsert = c
            .prepare_cached(
                "INSERT INTO zestor_entries (ns, kind, key, value, version, rev) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (ns, kind, key) DO UPDATE
                 SET value = excluded.value, version = excluded.version, rev = excluded.rev",
            )
            .map_err(sql)?;
        let mut remove = c
            .prepare_cached("DELETE FROM zestor_entries WHERE ns = ?1 AND kind = ?2 AND key = ?3")
            .map_err(sql)?;
        for e in events {
            let (rev, version) = (i64_of(e.rev), i64_of(e.version));
            log.execute(params![
                ns,
                rev,
                e.kind,
                e.key,
                type_name(e.event_type),
                e.value,
                version
            ])
            .map_err(sql)?;
            if e.event_type == EventType::Delete {
                remove.execute(params![ns, e.kind, e.key]).map_err(sql)?;
            } else {
                upsert
                    .execute(params![ns, e.kind, e.key, e.value, version, rev])
                    .map_err(sql)?;
            }
        }
        if !applied.is_empty() {
            let mut record = c
                .prepare_cached(
                    "INSERT INTO zestor_applied_ops (ns, client_id, op_id, response, applied_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(sql)?;
            let now = now_millis();
            for a in applied {
                record
                    .execute(params![ns, a.client_id, a.op_id, a.answer, now])
                    .map_err(sql)?;
            }
            // Twice what it records: pruning outpaces writing, and the
            // table holds about what the time to live spans. Until the
            // oldest answer expires there is nothing to prune, and the
            // delete (which builds a temporary table for its `IN`) is
            // skipped.
            if let Some(ttl) = self.op_ids_ttl {
                let expired_before = now.saturating_sub(ttl);
                if self.oldest_answer.is_none_or(|oldest| oldest < expired_before) {
                    c.prepare_cached(maintenance::PRUNE_SQL)
                        .map_err(sql)?
                        .execute(params![expired_before, 2 * applied.len() as i64])
                        .map_err(sql)?;
                    // Never empty: this write just recorded its answers.
                    self.oldest_answer = c
                        .prepare_cached("SELECT min(applied_at) FROM zestor_applied_ops")
                        .map_err(sql)?
                        .query_row([], |r| r.get(0))
                        .map_err(sql)?;
                }
            }
        }
        if let Some(last) = events.last() {
            c.prepare_cached(
                "INSERT INTO zestor_heads (ns, rev) VALUES (?1, ?2)
                 ON CONFLICT (ns) DO UPDATE SET rev = excluded.rev",
            )
            .map_err(sql)?
            .execute(params![ns, i64_of(last.rev)])
            .map_err(sql)?;
        }
        // Trimming in steps keeps the delete off most commits.
        if trim_through >= self.trimmed_through + TRIM_STEP {
            c.prepare_cached("DELETE FROM zestor_changes WHERE ns = ?1 AND rev <= ?2")
                .map_err(sql)?
                .execute(params![ns, i64_of(trim_through)])
                .map_err(sql)?;
            self.trimmed_through = trim_through;
        }
        Ok(())
    }

    async fn commit(&mut self) -> Result<()> {
        self.run("COMMIT")
    }

    async fn rollback(&mut self) {
        // Read inside the transaction, after its prune: the pruned answers
        // are back.
        self.oldest_answer = None;
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            tracing::warn!(error = %e, "rollback failed");
        }
    }
}
