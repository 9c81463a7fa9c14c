//! Export and import of one namespace of a PostgreSQL schema (see
//! [`backend::dump`](crate::backend::dump)).

use tokio_postgres::{Client, Config, IsolationLevel};

use super::{
    PgOptions, SCHEMA_VERSION, Target, i64_of, migrate, pg_error, quote_ident, read_snapshot, u64_of,
};
use crate::backend::dump::{Dump, DumpError, Held, ImportMode, Imported, imported_rev};

/// Entries written per statement of an import.
const ROWS_PER_INSERT: usize = 5_000;

fn target(options: &PgOptions) -> Result<Target, DumpError> {
    let config: Config = options
        .conn
        .parse()
        .map_err(|e| pg_error("invalid connection string", &e))?;
    Ok(Target {
        config,
        quoted: quote_ident(&options.schema),
        payload: format!("{}.{}", options.schema, options.namespace),
        ns: options.namespace.clone(),
        schema: options.schema.clone(),
        min_log_retention: options.min_log_retention,
    })
}

/// Refuses a schema that holds no Zestor tables, or newer ones.
async fn check_schema(client: &Client, t: &Target) -> Result<(), DumpError> {
    let e = |e: tokio_postgres::Error| pg_error("reading the schema version", &e);
    let meta = format!("{}.zestor_meta", t.quoted);
    let exists: bool = client
        .query_one("SELECT to_regclass($1::text) IS NOT NULL", &[&meta])
        .await
        .map_err(e)?
        .get(0);
    if !exists {
        return Err(DumpError::Database(format!(
            "schema {:?} holds no Zestor data (no zestor_meta table)",
            t.schema
        )));
    }
    let version: Option<i64> = client
        .query_opt(
            &format!("SELECT value FROM {meta} WHERE key = 'schema_version'"),
            &[],
        )
        .await
        .map_err(e)?
        .map(|r| r.get(0));
    match version {
        Some(v) if v > SCHEMA_VERSION => Err(DumpError::Database(format!(
            "the database schema {:?} is version {v}, newer than this build supports \
             ({SCHEMA_VERSION}); upgrade Zestor to read it",
            t.schema
        ))),
        Some(_) => Ok(()),
        None => Err(DumpError::Database(format!(
            "schema {:?} holds no Zestor data (no schema version)",
            t.schema
        ))),
    }
}

/// Reads the namespace of `options`: its revision and every entry, sorted
/// by kind and key, in one read-only repeatable-read transaction (servers
/// may be writing meanwhile). Creates nothing: a schema without Zestor
/// tables, or a namespace that holds nothing, is an error. Must be called
/// within a tokio runtime.
pub async fn export(options: &PgOptions) -> Result<Dump, DumpError> {
    let t = target(options)?;
    let mut client = t.connect("export").await?;
    check_schema(&client, &t).await?;
    let e = |e: tokio_postgres::Error| pg_error("exporting the namespace", &e);
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(e)?;
    let snapshot = read_snapshot(&tx, &t, 0).await?;
    if snapshot.rev == 0 && snapshot.entries.is_empty() {
        let known = tx
            .query(
                &t.sql(
                    "SELECT ns FROM {s}.zestor_heads WHERE rev > 0
                     UNION SELECT ns FROM {s}.zestor_entries ORDER BY ns",
                ),
                &[],
            )
            .await
            .map_err(e)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        return Err(DumpError::NoData {
            namespace: t.ns.clone(),
            database: format!("schema {:?}", t.schema),
            known,
        });
    }
    tx.commit().await.map_err(e)?;
    Dump::from_snapshot(t.ns, snapshot)
}

/// Writes `dump` into the namespace of `options` (creating or migrating
/// the schema as a store would), in one transaction that holds the
/// namespace's write lock (its head row): the dump is checked first
/// ([`Dump::validate`]) and must be of that namespace; a namespace that
/// holds anything is refused unless `mode` is [`ImportMode::Replace`]. The
/// namespace gets the dump's entries, an empty change log, and the dump's
/// revision or, when it had reached that already, its own plus one
/// ([`imported_rev`]). Must be called within a tokio runtime.
///
/// Stop the servers serving the namespace first: a running server keeps
/// serving what it loaded.
pub async fn import(options: &PgOptions, dump: &Dump, mode: ImportMode) -> Result<Imported, DumpError> {
    dump.validate()?;
    if dump.namespace != options.namespace {
        return Err(DumpError::WrongNamespace {
            expected: options.namespace.clone(),
            found: dump.namespace.clone(),
        });
    }
    let t = target(options)?;
    let mut client = t.connect("import").await?;
    let e = |e: tokio_postgres::Error| pg_error("importing the namespace", &e);
    client
        .batch_execute("SET synchronous_commit = on")
        .await
        .map_err(e)?;
    // Creates the schema, the tables and the namespace's head row.
    migrate(&mut client, &t, Some(&t.ns)).await?;
    let tx = client.transaction().await.map_err(e)?;
    let ns = &t.ns;
    let rev: i64 = tx
        .query_one(
            &t.sql("SELECT rev FROM {s}.zestor_heads WHERE ns = $1 FOR UPDATE"),
            &[ns],
        )
        .await
        .map_err(e)?
        .get(0);
    let entries: i64 = tx
        .query_one(
            &t.sql("SELECT count(*) FROM {s}.zestor_entries WHERE ns = $1"),
            &[ns],
        )
        .await
        .map_err(e)?
        .get(0);
    let before = Held {
        rev: u64_of(rev),
        entries: u64_of(entries),
    };
    if !before.is_empty() && mode == ImportMode::IntoEmpty {
        return Err(DumpError::NotEmpty {
            namespace: ns.clone(),
            held: before,
        });
    }
    for table in ["zestor_entries", "zestor_changes", "zestor_applied_ops"] {
        tx.execute(&t.sql(&format!("DELETE FROM {{s}}.{table} WHERE ns = $1")), &[ns])
            .await
            .map_err(e)?;
    }
    let insert = tx
        .prepare(&t.sql(
            "INSERT INTO {s}.zestor_entries (ns, kind, key, value, version, rev)
             SELECT $1::text, k, y, v::json, n, r
             FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::bigint[]) AS u(k, y, v, n, r)",
        ))
        .await
        .map_err(e)?;
    for chunk in dump.entries.chunks(ROWS_PER_INSERT) {
        let kinds: Vec<&str> = chunk.iter().map(|e| e.kind.as_str()).collect();
        let keys: Vec<&str> = chunk.iter().map(|e| e.key.as_str()).collect();
        let values = chunk
            .iter()
            .map(|e| serde_json::to_string(&e.value))
            .collect::<Result<Vec<String>, _>>()
            .map_err(|err| store_core::Error::Encoding(err.to_string()))?;
        let versions: Vec<i64> = chunk.iter().map(|e| i64_of(e.version)).collect();
        let revs: Vec<i64> = chunk.iter().map(|e| i64_of(e.rev)).collect();
        tx.execute(&insert, &[ns, &kinds, &keys, &values, &versions, &revs])
            .await
            .map_err(e)?;
    }
    let rev = imported_rev(dump.rev, before.rev);
    tx.execute(
        &t.sql("UPDATE {s}.zestor_heads SET rev = $2 WHERE ns = $1"),
        &[ns, &i64_of(rev)],
    )
    .await
    .map_err(e)?;
    tx.commit().await.map_err(e)?;
    Ok(Imported {
        entries: dump.entries.len(),
        rev,
        replaced: (!before.is_empty()).then_some(before),
    })
}
