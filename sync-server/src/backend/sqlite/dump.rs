//! Export and import of one namespace of a SQLite file (see
//! [`backend::dump`](crate::backend::dump)).

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use super::{BUSY_TIMEOUT, SCHEMA_VERSION, SqliteOptions, connect, i64_of, read_snapshot, sql, u64_of};
use crate::backend::dump::{Dump, DumpError, Held, ImportMode, Imported, imported_rev};

/// Opens a database file a store wrote, without creating it or changing
/// its schema: refuses a missing file, a file that is not SQLite or holds
/// no Zestor tables, and a schema newer than this build's.
pub(super) fn open_existing(path: &Path) -> Result<Connection, DumpError> {
    if !path.is_file() {
        return Err(DumpError::Database(format!("{}: no such file", path.display())));
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| DumpError::Database(format!("{}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    let version: Option<i64> = conn
        .query_row(
            "SELECT value FROM zestor_meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(|e| match e {
            rusqlite::Error::SqliteFailure(_, Some(m)) if m.contains("no such table") => DumpError::Database(
                format!("{} holds no Zestor data (no zestor_meta table)", path.display()),
            ),
            e => DumpError::Database(format!("{}: {e}", path.display())),
        })?;
    match version {
        None => Err(DumpError::Database(format!(
            "{} holds no Zestor data (no schema version)",
            path.display()
        ))),
        Some(v) if v > SCHEMA_VERSION => Err(DumpError::Database(format!(
            "{}: the database schema is version {v}, newer than this build supports \
             ({SCHEMA_VERSION}); upgrade Zestor to read it",
            path.display()
        ))),
        Some(_) => Ok(conn),
    }
}

/// The namespaces that hold something.
fn held_namespaces(conn: &Connection) -> Result<Vec<String>, DumpError> {
    conn.prepare("SELECT ns FROM zestor_heads WHERE rev > 0 UNION SELECT ns FROM zestor_entries ORDER BY ns")
        .map_err(sql)?
        .query_map([], |r| r.get(0))
        .map_err(sql)?
        .collect::<rusqlite::Result<Vec<String>>>()
        .map_err(|e| sql(e).into())
}

/// The namespaces that hold something in the database file at `path`,
/// sorted. Creates nothing: a missing file is an error.
pub fn namespaces(path: impl AsRef<Path>) -> Result<Vec<String>, DumpError> {
    let mut conn = open_existing(path.as_ref())?;
    let tx = conn.transaction().map_err(sql)?;
    held_namespaces(&tx)
}

/// Reads `namespace` of the database file at `path`: its revision and every
/// entry, sorted by kind and key, in one read transaction (a server may be
/// writing meanwhile). Creates nothing: a missing file, or a namespace that
/// holds nothing, is an error.
pub fn export(path: impl AsRef<Path>, namespace: &str) -> Result<Dump, DumpError> {
    let path = path.as_ref();
    let mut conn = open_existing(path)?;
    let tx = conn.transaction().map_err(sql)?;
    let snapshot = read_snapshot(&tx, namespace, 0)?;
    if snapshot.rev == 0 && snapshot.entries.is_empty() {
        return Err(DumpError::NoData {
            namespace: namespace.to_owned(),
            database: path.display().to_string(),
            known: held_namespaces(&tx)?,
        });
    }
    tx.commit().map_err(sql)?;
    Dump::from_snapshot(namespace.to_owned(), snapshot)
}

/// What `namespace` holds.
fn held(conn: &Connection, namespace: &str) -> Result<Held, DumpError> {
    let rev: Option<i64> = conn
        .query_row("SELECT rev FROM zestor_heads WHERE ns = ?1", [namespace], |r| {
            r.get(0)
        })
        .optional()
        .map_err(sql)?;
    let entries: i64 = conn
        .query_row(
            "SELECT count(*) FROM zestor_entries WHERE ns = ?1",
            [namespace],
            |r| r.get(0),
        )
        .map_err(sql)?;
    Ok(Held {
        rev: rev.map_or(0, u64_of),
        entries: u64_of(entries),
    })
}

/// Writes `dump` into the namespace of `options` (the file is created or
/// migrated as a store would), in one transaction: the dump is checked
/// first ([`Dump::validate`]) and must be of that namespace; a namespace
/// that holds anything is refused unless `mode` is
/// [`ImportMode::Replace`]. The namespace gets the dump's entries, an
/// empty change log, and the dump's revision or, when it had reached that
/// already, its own plus one ([`imported_rev`]).
///
/// Stop the servers using the file first: a running server keeps serving
/// what it loaded.
pub fn import(options: &SqliteOptions, dump: &Dump, mode: ImportMode) -> Result<Imported, DumpError> {
    dump.validate()?;
    let ns = options.namespace.as_str();
    if dump.namespace != ns {
        return Err(DumpError::WrongNamespace {
            expected: ns.to_owned(),
            found: dump.namespace.clone(),
        });
    }
    let mut conn = connect(options)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql)?;
    let before = held(&tx, ns)?;
    if !before.is_empty() && mode == ImportMode::IntoEmpty {
        return Err(DumpError::NotEmpty {
            namespace: ns.to_owned(),
            held: before,
        });
    }
    for table in ["zestor_entries", "zestor_changes", "zestor_applied_ops"] {
        tx.execute(&format!("DELETE FROM {table} WHERE ns = ?1"), [ns])
            .map_err(sql)?;
    }
    {
        let mut insert = tx
            .prepare("INSERT INTO zestor_entries (ns, kind, key, value, version, rev) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .map_err(sql)?;
        for e in &dump.entries {
            let value = serde_json::to_string(&e.value)
                .map_err(|err| store_core::Error::Encoding(err.to_string()))?;
            insert
                .execute(params![
                    ns,
                    e.kind,
                    e.key,
                    value,
                    i64_of(e.version),
                    i64_of(e.rev)
                ])
                .map_err(sql)?;
        }
    }
    let rev = imported_rev(dump.rev, before.rev);
    tx.execute(
        "INSERT INTO zestor_heads (ns, rev) VALUES (?1, ?2) ON CONFLICT (ns) DO UPDATE SET rev = excluded.rev",
        params![ns, i64_of(rev)],
    )
    .map_err(sql)?;
    tx.commit().map_err(sql)?;
    Ok(Imported {
        entries: dump.entries.len(),
        rev,
        replaced: (!before.is_empty()).then_some(before),
    })
}
