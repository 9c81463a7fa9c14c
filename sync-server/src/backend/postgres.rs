//! The PostgreSQL backend, for deployments where several processes (server
//! replicas) share one database.
//!
//! The database is the source of truth. Each store serves reads from its
//! in-memory engine and writes through one writer task per store, which
//! batches everything queued into one transaction (group commit):
//!
//! 1. `BEGIN`, then `SELECT rev FROM zestor_heads WHERE ns = $1 FOR UPDATE`,
//!    then the lookups of the batch's client op ids among the recorded
//!    answers (pipelined, one round trip): the namespace's head row is its
//!    write lock, held until commit, so writers in every process are
//!    serialized and revisions are gap-free in commit order, and the
//!    lookups, run once it is held, see every op applied before;
//! 2. the engine catches up on changes other processes committed, then
//!    stages the batch (validation, compare, versions);
//! 3. one round trip: a single statement writing the whole batch (a
//!    data-modifying `WITH`: the change-log rows, the entry upserts and
//!    deletes, set-based through `unnest`, the head, trimming the log, and
//!    `pg_notify('zestor_changes', …)` — one notification per batch,
//!    delivered at commit), pipelined with `COMMIT`;
//! 4. only then is the batch published to this process's watchers and the
//!    callers answered.
//!
//! **Durability**: `synchronous_commit` is left at PostgreSQL's default
//! (`on`): an acknowledged write has been flushed by the server.
//!
//! **Cross-process watch**: every store also runs a listener task with its
//! own connection doing `LISTEN zestor_changes`. A notification for its
//! namespace (payload `<schema>.<namespace>`) makes it read the change log
//! after the engine's revision, in revision order, and apply it to the engine
//! ([`Engine::apply_committed`](store_core::Engine::apply_committed)), which
//! publishes those events to local watchers — in order, without gaps, and
//! never twice. Notifications sent by this store's own writer connection are
//! ignored (the writer already published those events). The listener drains
//! once right after `LISTEN`, and when its connection is lost it reconnects
//! with backoff and catches up from the engine's revision, so nothing is
//! skipped. Should the change log have been trimmed past the engine's
//! revision meanwhile (a listener down for longer than the retained log), it
//! logs an error; the store's next write reloads it from the tables (as does
//! the writer of a SQLite store that another process outran), and its
//! watches then end with `Compacted`, telling consumers to re-list.
//!
//! **Retention**: the change log keeps the last `max(retention,
//! min_log_retention)` revisions of each namespace, where `retention` is the
//! store's [`StoreOptions::retention`] and [`PgOptions::min_log_retention`]
//! (default [`DEFAULT_MIN_LOG_RETENTION`]) keeps enough for other processes
//! to catch up from even when watch history is configured short.
//!
//! **Runtime**: [`open`] must be called within a tokio runtime; the store's
//! connections, its writer and its listener run as tasks on that runtime.
//! The returned store's futures only wait on channels, so they can be awaited
//! on any executor — with a multi-threaded runtime, also from threads outside
//! it (with a current-thread runtime, only while that runtime is driven).
//!
//! **Answers of op ids** are dated by the database's clock (`applied_at`)
//! and pruned after their time to live by a [`Maintainer`], one process at
//! a time ([`PRUNE_LOCK`]).
//!
//! **Values** are stored as `json`: the text as written, so a string holding
//! the NUL character (`\u0000`) is stored as on every other backend
//! (`jsonb` cannot hold it; schema version 1 used `jsonb`, and migration 2
//! converts its tables). Kinds and keys are PostgreSQL text, which cannot
//! hold NUL either; the engine refuses NUL in them on every backend, and
//! keeps them under [`MAX_KEY_BYTES`](store_core::MAX_KEY_BYTES), so that
//! every write is refused or stored alone, never failing its batch at commit.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use futures_channel::mpsc;
use store_core::{Error, EventType, MemStore, Result, StoreOptions, StoreValue};
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Row, Statement};

use super::{
    AppliedOp, Durable, Snapshot, Storage, StoredEntry, StoredEvent, parse_type, run_writer, storage_error,
    type_name,
};

mod dump;
mod listener;
mod maintenance;

pub use maintenance::{Maintainer, PRUNE_LOCK};

pub use dump::{export, import};

/// The schema version this build writes; a database with a newer one is
/// refused.
pub const SCHEMA_VERSION: i64 = 3;

/// The channel every store NOTIFYs after a commit and LISTENs on. The
/// payload is `<schema>.<namespace>`.
pub const CHANNEL: &str = "zestor_changes";

/// How many revisions of each namespace's change log are kept at least, by
/// default (see [`PgOptions::min_log_retention`]).
pub const DEFAULT_MIN_LOG_RETENTION: u64 = 10_000;

/// The advisory lock a store holds while it migrates the schema and creates
/// its namespace's head: `pg_advisory_xact_lock(MIGRATION_LOCK,
/// hashtext(schema))`, so that processes opening at once migrate one at a
/// time. The migration is one transaction: a process killed while migrating
/// leaves the schema as it found it.
pub const MIGRATION_LOCK: i32 = 0x7a65_7374; // "zest"

/// `{s}` stands for the quoted schema name.
const MIGRATIONS: &[&str] = &[
    // 1: entries, per-namespace heads, the change log, applied client ops.
    // Text columns use the "C" collation: keys are compared bytewise, which
    // is faster, and ordering is the engine's business.
    "CREATE TABLE {s}.zestor_heads (
        ns TEXT COLLATE \"C\" PRIMARY KEY,
        rev BIGINT NOT NULL
    );
    CREATE TABLE {s}.zestor_entries (
        ns TEXT COLLATE \"C\" NOT NULL,
        kind TEXT COLLATE \"C\" NOT NULL,
        key TEXT COLLATE \"C\" NOT NULL,
        value JSONB NOT NULL,
        version BIGINT NOT NULL,
        rev BIGINT NOT NULL,
        PRIMARY KEY (ns, kind, key)
    );
    CREATE TABLE {s}.zestor_changes (
        ns TEXT COLLATE \"C\" NOT NULL,
        rev BIGINT NOT NULL,
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        type TEXT NOT NULL CHECK (type IN ('create', 'update', 'delete')),
        value JSONB NOT NULL,
        version BIGINT NOT NULL,
        PRIMARY KEY (ns, rev)
    );
    CREATE TABLE {s}.zestor_applied_ops (
        ns TEXT COLLATE \"C\" NOT NULL,
        client_id TEXT COLLATE \"C\" NOT NULL,
        op_id TEXT COLLATE \"C\" NOT NULL,
        response TEXT NOT NULL,
        PRIMARY KEY (ns, client_id, op_id)
    );",
    // 2: values as `json`, the text as written, since `jsonb` cannot hold a
    // string with the NUL character (`\u0000`), which every backend stores.
    "ALTER TABLE {s}.zestor_entries ALTER COLUMN value TYPE JSON USING value::json;
    ALTER TABLE {s}.zestor_changes ALTER COLUMN value TYPE JSON USING value::json;",
    // 3: when each answer was written, so that answers older than the op
    // ids' time to live can be pruned. `now()` is evaluated once here:
    // answers written before count as written at the migration, and the
    // rows are not rewritten (PostgreSQL 11 and later keep such a default
    // aside). The default also dates the answers a process still running
    // the previous version writes during a rolling upgrade.
    "ALTER TABLE {s}.zestor_applied_ops ADD COLUMN applied_at TIMESTAMPTZ NOT NULL DEFAULT now();
    CREATE INDEX zestor_applied_ops_applied_at ON {s}.zestor_applied_ops (applied_at);",
];

const _: () = assert!(
    SCHEMA_VERSION >= 0 && SCHEMA_VERSION as usize == MIGRATIONS.len(),
    "SCHEMA_VERSION must equal the number of MIGRATIONS"
);

/// Where and how to open a PostgreSQL store.
#[derive(Clone)]
pub struct PgOptions {
    conn: String,
    namespace: String,
    schema: String,
    min_log_retention: u64,
}

impl fmt::Debug for PgOptions {
    // The connection string may hold a password: left out.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOptions")
            .field("namespace", &self.namespace)
            .field("schema", &self.schema)
            .field("min_log_retention", &self.min_log_retention)
            .finish_non_exhaustive()
    }
}

impl PgOptions {
    /// The namespace `namespace` of the database at `conn` (a libpq-style
    /// `key=value` string or a `postgresql://` URL, as tokio-postgres
    /// parses it), with its tables in the schema `public`.
    ///
    /// The connection's `application_name` (default `zestor`) gets
    /// `/writer` or `/listener` appended, so each store's two connections
    /// can be told apart in `pg_stat_activity`.
    pub fn new(conn: impl Into<String>, namespace: impl Into<String>) -> Self {
        PgOptions {
            conn: conn.into(),
            namespace: namespace.into(),
            schema: "public".to_owned(),
            min_log_retention: DEFAULT_MIN_LOG_RETENTION,
        }
    }

    /// Puts the tables in the PostgreSQL schema `schema` (created if
    /// missing). Every process sharing a namespace must use the same schema.
    #[must_use]
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Keeps at least the last `revisions` revisions of the change log, so
    /// that other processes' listeners can catch up after a pause even if
    /// the store's watch retention is short.
    #[must_use]
    pub fn min_log_retention(mut self, revisions: u64) -> Self {
        self.min_log_retention = revisions;
        self
    }
}

/// What a store's tasks share about the database: immutable.
struct Target {
    config: Config,
    ns: String,
    /// The schema name as given.
    schema: String,
    /// The schema name quoted as an identifier.
    quoted: String,
    /// The NOTIFY payload of this namespace.
    payload: String,
    min_log_retention: u64,
}

impl Target {
    /// `sql` with `{s}` replaced by the quoted schema.
    fn sql(&self, sql: &str) -> String {
        sql.replace("{s}", &self.quoted)
    }

    async fn connect(&self, role: &str) -> Result<Client> {
        let mut config = self.config.clone();
        let name = format!("{}/{role}", config.get_application_name().unwrap_or("zestor"));
        config.application_name(name);
        let (client, connection) = config
            .connect(NoTls)
            .await
            .map_err(|e| pg_error(&format!("connecting the {role}"), &e))?;
        let role = role.to_owned();
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(role, error = %error_message(&e), "PostgreSQL connection ended");
            }
        });
        Ok(client)
    }
}

/// What the writer and the listener of one store share.
struct Shared {
    /// The last revision of the batch the writer is committing and may not
    /// yet have applied to the engine (0: none). The listener leaves those
    /// events to the writer.
    pending: AtomicU64,
    /// The backend pid of the writer's connection: its notifications are
    /// ignored by the listener.
    writer_pid: AtomicI32,
    /// Wakes the listener to drain the log (after a commit whose outcome is
    /// unknown).
    kick: Notify,
}

/// A tokio-postgres error as text that says what went wrong.
///
/// tokio-postgres' own `Display` prints only `db error` for an error the
/// server reported; the server's report is in its source. For such an error
/// this gives its severity, SQLSTATE code, message, detail and hint, e.g.
/// `ERROR 23505: duplicate key value violates unique constraint "t_pkey";
/// detail: Key (id)=(1) already exists.`; for any other error (connecting,
/// a closed connection, decoding a column), the error and its sources,
/// separated by `: `.
///
/// Every PostgreSQL error this crate reports or logs is formatted with it.
pub fn error_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => db_error_message(db),
        None => chain(e),
    }
}

fn db_error_message(db: &tokio_postgres::error::DbError) -> String {
    let mut out = format!("{} {}: {}", db.severity(), db.code().code(), db.message());
    if let Some(detail) = db.detail() {
        out.push_str("; detail: ");
        out.push_str(detail);
    }
    if let Some(hint) = db.hint() {
        out.push_str("; hint: ");
        out.push_str(hint);
    }
    out
}

/// The error and its sources on one line; a server's report among them is
/// given as [`error_message`] gives it.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(e);
    while let Some(e) = next {
        if !out.is_empty() {
            out.push_str(": ");
        }
        match e.downcast_ref::<tokio_postgres::error::DbError>() {
            Some(db) => out.push_str(&db_error_message(db)),
            None => out.push_str(&e.to_string()),
        }
        next = e.source();
    }
    out
}

fn pg_error(context: &str, e: &tokio_postgres::Error) -> Error {
    storage_error(format!("PostgreSQL: {context}: {}", error_message(e)))
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Opens (creating or migrating the schema as needed) one namespace of a
/// PostgreSQL database, loads it into memory, and starts its writer and its
/// listener on the current tokio runtime.
///
/// Must be called within a tokio runtime (see the [module
/// documentation](self)); without one it fails with a storage error.
pub async fn open<T: StoreValue>(options: PgOptions, store: StoreOptions<T>) -> Result<Durable<T>> {
    let handle = Handle::try_current().map_err(|_| {
        storage_error(
            "postgres::open must be called within a tokio runtime: the store's connections, \
             writer and listener run as tasks on it",
        )
    })?;
    handle
        .spawn(open_on_runtime(options, store))
        .await
        .map_err(|e| storage_error(format!("opening the PostgreSQL store failed: {e}")))?
}

async fn open_on_runtime<T: StoreValue>(options: PgOptions, store: StoreOptions<T>) -> Result<Durable<T>> {
    let config: Config = options
        .conn
        .parse()
        .map_err(|e| pg_error("invalid connection string", &e))?;
    let target = Arc::new(Target {
        config,
        quoted: quote_ident(&options.schema),
        payload: format!("{}.{}", options.schema, options.namespace),
        ns: options.namespace,
        schema: options.schema,
        min_log_retention: options.min_log_retention,
    });
    let mut client = target.connect("writer").await?;
    migrate(&mut client, &target, Some(&target.ns)).await?;
    let snapshot = load(&mut client, &target, store.retained_revisions() as u64).await?;
    let mem = MemStore::from_engine(snapshot.restore(store)?);
    let writer = Writer::new(client, &target).await?;
    let shared = Arc::new(Shared {
        pending: AtomicU64::new(0),
        writer_pid: AtomicI32::new(writer.pid),
        kick: Notify::new(),
    });
    let storage = PgStorage {
        target: target.clone(),
        shared: shared.clone(),
        conn: Some(writer),
        staged: None,
        applied: Vec::new(),
        trimmed: 0,
    };
    let (queue, requests) = mpsc::unbounded();
    // The listener stops when the writer does: when the store is closed or
    // every handle to it is dropped.
    let (stopped, stop) = oneshot::channel::<()>();
    let writer_mem = mem.clone();
    tokio::spawn(async move {
        run_writer(writer_mem, storage, requests).await;
        drop(stopped);
    });
    tokio::spawn(listener::run(mem.clone(), target, shared, stop));
    Ok(Durable::new(mem, queue))
}

/// Brings the schema to [`SCHEMA_VERSION`]; refuses a newer one. Also makes
/// sure the namespace `head` (if any) has its head row.
async fn migrate(client: &mut Client, t: &Target, head: Option<&str>) -> Result<()> {
    let e = |context: &'static str| move |e: tokio_postgres::Error| pg_error(context, &e);
    let tx = client.transaction().await.map_err(e("beginning the migration"))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext($2::text))",
        &[&MIGRATION_LOCK, &t.schema],
    )
    .await
    .map_err(e("taking the migration lock"))?;
    let schema_exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1::text)",
            &[&t.schema],
        )
        .await
        .map_err(e("looking up the schema"))?
        .get(0);
    if !schema_exists {
        tx.batch_execute(&format!("CREATE SCHEMA {}", t.quoted))
            .await
            .map_err(e("creating the schema"))?;
    }
    let meta = format!("{}.zestor_meta", t.quoted);
    let has_meta: bool = tx
        .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&meta])
        .await
        .map_err(e("looking up zestor_meta"))?
        .get(0);
    if !has_meta {
        tx.batch_execute(&format!(
            "CREATE TABLE {meta} (key TEXT PRIMARY KEY, value BIGINT NOT NULL)"
        ))
        .await
        .map_err(e("creating zestor_meta"))?;
    }
    let found: i64 = tx
        .query_opt(
            &format!("SELECT value FROM {meta} WHERE key = 'schema_version'"),
            &[],
        )
        .await
        .map_err(e("reading the schema version"))?
        .map_or(0, |r| r.get(0));
    if found > SCHEMA_VERSION {
        return Err(storage_error(format!(
            "the database schema {} is version {found}, newer than this build supports \
             ({SCHEMA_VERSION}); upgrade Zestor to open it",
            t.schema
        )));
    }
    for (i, migration) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(found).unwrap_or(0))
    {
        tx.batch_execute(&t.sql(migration))
            .await
            .map_err(e("migrating the schema"))?;
        tracing::info!(
            version = i + 1,
            schema = t.schema,
            "migrated the PostgreSQL schema"
        );
    }
    if found != SCHEMA_VERSION {
        tx.execute(
            &format!(
                "INSERT INTO {meta} (key, value) VALUES ('schema_version', $1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            &[&SCHEMA_VERSION],
        )
        .await
        .map_err(e("recording the schema version"))?;
    }
    if let Some(ns) = head {
        tx.execute(
            &t.sql("INSERT INTO {s}.zestor_heads (ns, rev) VALUES ($1, 0) ON CONFLICT DO NOTHING"),
            &[&ns],
        )
        .await
        .map_err(e("creating the namespace head"))?;
    }
    tx.commit().await.map_err(e("committing the migration"))
}

const CHANGES_SQL: &str = "SELECT rev, kind, key, type, value::text, version FROM {s}.zestor_changes
     WHERE ns = $1 AND rev > $2 AND rev <= $3 ORDER BY rev";

fn event_of(row: &Row) -> Result<StoredEvent> {
    let e = |e: tokio_postgres::Error| pg_error("reading the change log", &e);
    let t: &str = row.try_get(3).map_err(e)?;
    Ok(StoredEvent {
        rev: u64_of(row.try_get(0).map_err(e)?),
        kind: row.try_get(1).map_err(e)?,
        key: row.try_get(2).map_err(e)?,
        event_type: parse_type(t)?,
        value: row.try_get(4).map_err(e)?,
        version: u64_of(row.try_get(5).map_err(e)?),
    })
}

/// Reads the namespace — head, entries and the retained change log — in one
/// consistent snapshot.
async fn load(client: &mut Client, t: &Target, retention: u64) -> Result<Snapshot> {
    let e = |e: tokio_postgres::Error| pg_error("loading the namespace", &e);
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(e)?;
    let snapshot = read_snapshot(&tx, t, retention).await?;
    tx.commit().await.map_err(e)?;
    Ok(snapshot)
}

/// Reads the namespace: head, entries and the last `retention` revisions of
/// the change log. Call inside a transaction, for a consistent view.
async fn read_snapshot(c: &impl GenericClient, t: &Target, retention: u64) -> Result<Snapshot> {
    let e = |e: tokio_postgres::Error| pg_error("loading the namespace", &e);
    let rev = c
        .query_opt(&t.sql("SELECT rev FROM {s}.zestor_heads WHERE ns = $1"), &[&t.ns])
        .await
        .map_err(e)?
        .map_or(0, |r| u64_of(r.get(0)));
    let entries = c
        .query(
            &t.sql("SELECT kind, key, value::text, version, rev FROM {s}.zestor_entries WHERE ns = $1"),
            &[&t.ns],
        )
        .await
        .map_err(e)?
        .iter()
        .map(|r| {
            Ok(StoredEntry {
                kind: r.try_get(0)?,
                key: r.try_get(1)?,
                value: r.try_get(2)?,
                version: u64_of(r.try_get(3)?),
                rev: u64_of(r.try_get(4)?),
            })
        })
        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
        .map_err(e)?;
    let history = c
        .query(
            &t.sql(CHANGES_SQL),
            &[&t.ns, &i64_of(rev.saturating_sub(retention)), &i64_of(rev)],
        )
        .await
        .map_err(e)?
        .iter()
        .map(event_of)
        .collect::<Result<Vec<_>>>()?;
    Ok(Snapshot {
        rev,
        entries,
        history,
    })
}

/// A batch in one statement: the change-log rows, the entry upserts and
/// deletes (each key once: its last event), the head, trimming the log and
/// the notification. Sent with `COMMIT` in one round trip.
const WRITE_SQL: &str = "WITH log AS (
    INSERT INTO {s}.zestor_changes (ns, rev, kind, key, type, value, version)
    SELECT $1::text, r, k, y, t, v::json, n
    FROM unnest($2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
        AS u(r, k, y, t, v, n)
), up AS (
    INSERT INTO {s}.zestor_entries (ns, kind, key, value, version, rev)
    SELECT $1::text, k, y, v::json, n, r
    FROM unnest($8::text[], $9::text[], $10::text[], $11::bigint[], $12::bigint[]) AS u(k, y, v, n, r)
    ON CONFLICT (ns, kind, key) DO UPDATE
    SET value = excluded.value, version = excluded.version, rev = excluded.rev
), del AS (
    DELETE FROM {s}.zestor_entries e USING unnest($13::text[], $14::text[]) AS u(k, y)
    WHERE e.ns = $1::text AND e.kind = u.k AND e.key = u.y
), head AS (
    UPDATE {s}.zestor_heads SET rev = $15::bigint WHERE ns = $1::text
), trim AS (
    DELETE FROM {s}.zestor_changes WHERE ns = $1::text AND rev > $16::bigint AND rev <= $17::bigint
)
SELECT pg_notify($18::text, $19::text)";

/// The writer's connection and its prepared statements.
struct Writer {
    client: Client,
    pid: i32,
    head: Statement,
    changes: Statement,
    write: Statement,
    answer: Statement,
    record: Statement,
}

/// The recorded answer of a client op.
const ANSWER_SQL: &str =
    "SELECT response FROM {s}.zestor_applied_ops WHERE ns = $1 AND client_id = $2 AND op_id = $3";

/// Records the answers of client ops applied in a batch.
const RECORD_SQL: &str = "INSERT INTO {s}.zestor_applied_ops (ns, client_id, op_id, response, applied_at)
    SELECT $1::text, c, o, a, now() FROM unnest($2::text[], $3::text[], $4::text[]) AS u(c, o, a)";

impl Writer {
    async fn connect(t: &Target) -> Result<Writer> {
        Writer::new(t.connect("writer").await?, t).await
    }

    async fn new(client: Client, t: &Target) -> Result<Writer> {
        // An acknowledged write must be flushed, whatever the server's,
        // database's or role's default says.
        client
            .batch_execute("SET synchronous_commit = on")
            .await
            .map_err(|e| pg_error("setting synchronous_commit", &e))?;
        let sql = [
            "SELECT rev FROM {s}.zestor_heads WHERE ns = $1 FOR UPDATE",
            CHANGES_SQL,
            WRITE_SQL,
            ANSWER_SQL,
            RECORD_SQL,
        ]
        .map(|s| t.sql(s));
        let prepared = futures_util::future::try_join_all(sql.iter().map(|s| client.prepare(s)))
            .await
            .map_err(|e| pg_error("preparing the writer's statements", &e))?;
        let [head, changes, write, answer, record]: [Statement; 5] = prepared
            .try_into()
            .map_err(|_| storage_error("PostgreSQL: prepared the wrong number of statements"))?;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| pg_error("reading the writer's backend pid", &e))?
            .get(0);
        Ok(Writer {
            client,
            pid,
            head,
            changes,
            write,
            answer,
            record,
        })
    }
}

/// A batch written by [`Storage::write`], sent with the commit.
struct Staged {
    last: u64,
    log: LogColumns,
    upserts: EntryColumns,
    delete_kinds: Vec<String>,
    delete_keys: Vec<String>,
    /// Trim the log in `(from, to]`.
    trim: Option<(u64, u64)>,
}

#[derive(Default)]
struct LogColumns {
    revs: Vec<i64>,
    kinds: Vec<String>,
    keys: Vec<String>,
    types: Vec<&'static str>,
    values: Vec<String>,
    versions: Vec<i64>,
}

#[derive(Default)]
struct EntryColumns {
    kinds: Vec<String>,
    keys: Vec<String>,
    values: Vec<String>,
    versions: Vec<i64>,
    revs: Vec<i64>,
}

struct PgStorage {
    target: Arc<Target>,
    shared: Arc<Shared>,
    /// `None` after the connection was lost; the next `begin` reconnects.
    conn: Option<Writer>,
    staged: Option<Staged>,
    /// Client-op answers to record with the staged batch.
    applied: Vec<AppliedOp>,
    /// This store has trimmed the change log through this revision.
    trimmed: u64,
}

impl PgStorage {
    /// The writer's connection, reconnecting if it was lost.
    async fn writer(&mut self) -> Result<&Writer> {
        if self.conn.as_ref().is_none_or(|w| w.client.is_closed()) {
            self.conn = None;
            self.shared.writer_pid.store(0, Ordering::SeqCst);
            let writer = Writer::connect(&self.target).await?;
            self.shared.writer_pid.store(writer.pid, Ordering::SeqCst);
            tracing::info!(ns = self.target.ns, "the PostgreSQL writer reconnected");
            self.conn = Some(writer);
        }
        self.conn
            .as_ref()
            .ok_or_else(|| storage_error("PostgreSQL: no writer connection"))
    }

    fn connected(&self) -> Result<&Writer> {
        self.conn
            .as_ref()
            .ok_or_else(|| storage_error("PostgreSQL: the writer's connection was lost"))
    }
}

impl Storage for PgStorage {
    async fn begin(&mut self, ops: &[(String, String)]) -> Result<(u64, Vec<Option<String>>)> {
        // The previous batch, if any, is in the engine by now.
        self.shared.pending.store(0, Ordering::SeqCst);
        self.staged = None;
        let target = self.target.clone();
        let ns = &target.ns;
        let w = self.writer().await?;
        let e = |e: tokio_postgres::Error| pg_error("beginning a write", &e);
        // One round trip: the lookups run after the head row is locked, so
        // they see every op another process applied before it.
        let lookups =
            || {
                futures_util::future::try_join_all(ops.iter().map(|(client, op)| async move {
                    w.client.query_opt(&w.answer, &[ns, client, op]).await
                }))
            };
        let (began, head, found) = futures_util::future::join3(
            w.client.batch_execute("BEGIN"),
            w.client.query_opt(&w.head, &[ns]),
            lookups(),
        )
        .await;
        began.map_err(e)?;
        let answers = |rows: Vec<Option<tokio_postgres::Row>>| -> Vec<Option<String>> {
            rows.into_iter().map(|row| row.map(|r| r.get(0))).collect()
        };
        let read = |e: tokio_postgres::Error| pg_error("reading applied client ops", &e);
        let (head, found) = match head.map_err(e)? {
            Some(row) => (row, answers(found.map_err(read)?)),
            None => {
                // The head row is created at open; recreate it if it went.
                w.client
                    .execute(
                        &target.sql(
                            "INSERT INTO {s}.zestor_heads (ns, rev) VALUES ($1, 0) ON CONFLICT DO NOTHING",
                        ),
                        &[ns],
                    )
                    .await
                    .map_err(e)?;
                let head = w.client.query_one(&w.head, &[ns]).await.map_err(e)?;
                // Looked up again, now under the lock.
                (head, answers(lookups().await.map_err(read)?))
            }
        };
        Ok((u64_of(head.try_get(0).map_err(e)?), found))
    }

    async fn snapshot(&mut self, retention: u64) -> Result<Snapshot> {
        let target = self.target.clone();
        let w = self.writer().await?;
        read_snapshot(&w.client, &target, retention).await
    }

    async fn changes(&mut self, after: u64, to: u64) -> Result<Vec<StoredEvent>> {
        let w = self.connected()?;
        w.client
            .query(&w.changes, &[&self.target.ns, &i64_of(after), &i64_of(to)])
            .await
            .map_err(|e| pg_error("reading the change log", &e))?
            .iter()
            .map(event_of)
            .collect()
    }

    async fn write(
        &mut self,
        events: &[StoredEvent],
        applied: &[AppliedOp],
        trim_through: u64,
    ) -> Result<()> {
        self.applied = applied.to_vec();
        // Staged here, sent with the commit in one round trip.
        let Some(last) = events.last() else {
            self.staged = None;
            return Ok(());
        };
        let mut log = LogColumns::default();
        // The last event of each key decides its entry.
        let mut finals: std::collections::HashMap<(&str, &str), &StoredEvent> =
            std::collections::HashMap::with_capacity(events.len());
        for e in events {
            log.revs.push(i64_of(e.rev));
            log.kinds.push(e.kind.clone());
            log.keys.push(e.key.clone());
            log.types.push(type_name(e.event_type));
            log.values.push(e.value.clone());
            log.versions.push(i64_of(e.version));
            finals.insert((&e.kind, &e.key), e);
        }
        let mut upserts = EntryColumns::default();
        let (mut delete_kinds, mut delete_keys) = (Vec::new(), Vec::new());
        for e in finals.into_values() {
            if e.event_type == EventType::Delete {
                delete_kinds.push(e.kind.clone());
                delete_keys.push(e.key.clone());
            } else {
                upserts.kinds.push(e.kind.clone());
                upserts.keys.push(e.key.clone());
                upserts.values.push(e.value.clone());
                upserts.versions.push(i64_of(e.version));
                upserts.revs.push(i64_of(e.rev));
            }
        }
        let keep_from = last.rev.saturating_sub(self.target.min_log_retention);
        let through = trim_through.min(keep_from);
        self.staged = Some(Staged {
            last: last.rev,
            log,
            upserts,
            delete_kinds,
            delete_keys,
            trim: (through > self.trimmed).then_some((self.trimmed, through)),
        });
        Ok(())
    }

    async fn commit(&mut self) -> Result<()> {
        let staged = self.staged.take();
        let applied = std::mem::take(&mut self.applied);
        let w = self.connected()?;
        let t = &*self.target;
        let e = |e: tokio_postgres::Error| pg_error("committing a write", &e);
        // Pipelined ahead of the batch: the answers of the client ops in it.
        let columns = |f: fn(&AppliedOp) -> &String| applied.iter().map(f).cloned().collect::<Vec<String>>();
        let (clients, ops, answers) = (
            columns(|a| &a.client_id),
            columns(|a| &a.op_id),
            columns(|a| &a.answer),
        );
        let record = async {
            if applied.is_empty() {
                return Ok(0);
            }
            w.client
                .execute(&w.record, &[&t.ns, &clients, &ops, &answers])
                .await
        };
        let Some(s) = &staged else {
            let (recorded, committed) =
                futures_util::future::join(record, w.client.batch_execute("COMMIT")).await;
            recorded.map_err(e)?;
            return committed.map_err(e);
        };
        // From here until the engine has it, the listener leaves this batch
        // to the writer.
        self.shared.pending.store(s.last, Ordering::SeqCst);
        let (last, from, to) = (
            i64_of(s.last),
            i64_of(s.trim.map_or(0, |(from, _)| from)),
            i64_of(s.trim.map_or(0, |(_, to)| to)),
        );
        let (l, u) = (&s.log, &s.upserts);
        let params: [&(dyn ToSql + Sync); 19] = [
            &t.ns,
            &l.revs,
            &l.kinds,
            &l.keys,
            &l.types,
            &l.values,
            &l.versions,
            &u.kinds,
            &u.keys,
            &u.values,
            &u.versions,
            &u.revs,
            &s.delete_kinds,
            &s.delete_keys,
            &last,
            &from,
            &to,
            &CHANNEL,
            &t.payload,
        ];
        let (recorded, written, committed) = futures_util::future::join3(
            record,
            w.client.execute(&w.write, &params),
            w.client.batch_execute("COMMIT"),
        )
        .await;
        // A failed statement turns the COMMIT into a rollback: report it.
        recorded.map_err(e)?;
        written.map_err(e)?;
        committed.map_err(e)?;
        if let Some((_, to)) = s.trim {
            self.trimmed = to;
        }
        Ok(())
    }

    async fn rollback(&mut self) {
        self.staged = None;
        self.applied.clear();
        if let Some(w) = &self.conn {
            if w.client.is_closed() {
                self.conn = None;
                self.shared.writer_pid.store(0, Ordering::SeqCst);
            } else if let Err(e) = w.client.batch_execute("ROLLBACK").await {
                tracing::warn!(error = %error_message(&e), "PostgreSQL rollback failed");
            }
        }
        // A failed commit may still have committed (the connection broke
        // after the server did): let the listener find out.
        if self.shared.pending.swap(0, Ordering::SeqCst) != 0 {
            self.shared.kick.notify_one();
        }
    }
}
