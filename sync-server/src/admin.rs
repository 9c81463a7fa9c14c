//! `sync-server backup|export|import|restore|vacuum …`: the operator's commands
//! for copying data out of a database and back in, and for giving a SQLite
//! file's space back.
//!
//! - `backup` copies a SQLite file while servers write to it
//!   ([`sqlite::backup`]);
//! - `export` writes one namespace, of either backend, as an NDJSON file
//!   ([`ndjson`]);
//! - `import` writes such a file into a namespace, all or nothing, into an
//!   empty namespace or replacing one;
//! - `restore` writes namespaces of a `backup` file back into the live
//!   database, each as `import --replace` does;
//! - `vacuum` rebuilds a SQLite file made before incremental auto-vacuum
//!   ([`sqlite::vacuum`]).
//!
//! This module parses arguments, moves files and prints; the backends do
//! the reading and writing.

pub mod ndjson;

use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::backend::dump::{Dump, DumpError, ImportMode, Imported};
use crate::backend::postgres::{self, PgOptions};
use crate::backend::sqlite::{self, BackupProgress, SqliteOptions};
use crate::server::Database;

/// The subcommands this module runs.
pub const COMMANDS: [&str; 5] = ["backup", "export", "import", "restore", "vacuum"];

#[derive(Debug, Parser)]
#[command(name = "sync-server", bin_name = "sync-server")]
enum Command {
    /// Copy a SQLite database to a new file, safely while servers write to
    /// it (SQLite's online backup API): the copy holds each namespace as of
    /// one revision, and is checked with `PRAGMA integrity_check`. To
    /// restore, use `restore`. For PostgreSQL, use pg_dump
    /// (sync-server/README.md), or `export`.
    #[command(
        after_help = "Example: sync-server backup --db sqlite://zestor.db backups/zestor-2024-06-01.db"
    )]
    Backup {
        /// The database to copy: `sqlite://PATH`.
        #[arg(long, env = "ZESTOR_DB", default_value = "sqlite://zestor.db")]
        db: String,
        /// Replace OUT if it exists.
        #[arg(long)]
        force: bool,
        /// The file to write (refused if it exists, unless --force).
        #[arg(value_name = "OUT")]
        out: PathBuf,
    },
    /// Write one namespace (its revision, and every entry with its value,
    /// version and revision) as NDJSON: a header line, then one line per
    /// entry. Reads one consistent snapshot; servers may be writing.
    #[command(
        after_help = "Example: sync-server export --db postgres://zestor@db/zestor --namespace team-7 --out team-7.ndjson"
    )]
    Export {
        /// The database: `sqlite://PATH` or `postgres://…[?schema=NAME]`.
        #[arg(long, env = "ZESTOR_DB", default_value = "sqlite://zestor.db")]
        db: String,
        /// The namespace to export.
        #[arg(long)]
        namespace: String,
        /// The file to write (refused if it exists, unless --force);
        /// standard output without it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace the --out file if it exists.
        #[arg(long, requires = "out")]
        force: bool,
    },
    /// Write an export file into a namespace, in one transaction: every
    /// line is checked before anything is written, and a namespace that
    /// holds data is refused unless --replace. The namespace gets the
    /// file's entries, and the file's revision or, if it had reached that,
    /// its own plus one: a revision never goes back, so every client gets a
    /// full snapshot when it reconnects, and keeps its pending writes. Stop
    /// the servers first, and start them after.
    #[command(
        after_help = "Example: sync-server import --db postgres://zestor@db/zestor --namespace team-7 --replace team-7.ndjson"
    )]
    Import {
        /// The database: `sqlite://PATH` (created if missing) or
        /// `postgres://…[?schema=NAME]`.
        #[arg(long, env = "ZESTOR_DB", default_value = "sqlite://zestor.db")]
        db: String,
        /// The namespace to write; the file must be an export of it.
        #[arg(long)]
        namespace: String,
        /// Replace what the namespace holds (its entries, change log and
        /// the recorded answers of its clients' ops).
        #[arg(long)]
        replace: bool,
        /// The export file; `-` reads standard input.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Put namespaces of a file `backup` wrote back into the live
    /// database: each one as `import --replace` of its export would, in
    /// one transaction per namespace (its entries, with their versions and
    /// revisions; a revision that never goes back, so every client gets a
    /// full snapshot when it reconnects, and keeps its pending writes).
    /// Namespaces of the live database not restored are left alone. Every
    /// namespace is read from the file before anything is written. Stop
    /// the servers first, and start them after.
    #[command(
        after_help = "Example: sync-server restore --db sqlite://zestor.db backups/zestor-2024-06-01.db --namespace team-7"
    )]
    Restore {
        /// The live database: `sqlite://PATH` (created if missing) or
        /// `postgres://…[?schema=NAME]`.
        #[arg(long, env = "ZESTOR_DB", default_value = "sqlite://zestor.db")]
        db: String,
        /// A namespace to restore (repeatable); without it, every namespace
        /// of the backup file.
        #[arg(long = "namespace", value_name = "NS")]
        namespaces: Vec<String>,
        /// The file `sync-server backup` wrote.
        #[arg(value_name = "BACKUP")]
        backup: PathBuf,
    },
    /// Rebuild a SQLite file with incremental auto-vacuum, so that the
    /// server gives its free space back from then on. Files created since
    /// schema version 2 have it; older ones reuse the space of pruned rows
    /// but never shrink until vacuumed once. Stop the server first: the
    /// command refuses a file another process has open. It rewrites the
    /// live data (about as long as copying it twice) and needs free disk
    /// for two copies of it while it runs; run it after the server has
    /// pruned the old answers (one --op-ids-ttl after upgrading), when
    /// little is left to copy.
    #[command(after_help = "Example: sync-server vacuum --db sqlite://zestor.db")]
    Vacuum {
        /// The database: `sqlite://PATH`.
        #[arg(long, env = "ZESTOR_DB", default_value = "sqlite://zestor.db")]
        db: String,
    },
}

/// Runs one command; `args` are the words after `sync-server`, the first
/// one of [`COMMANDS`]. Reports on standard error (an export without
/// `--out` goes to standard output); the error is the message to show the
/// user. Bad arguments and `--help` end the process, as clap does.
pub async fn run_cli(args: Vec<String>) -> Result<(), String> {
    let command = Command::parse_from(std::iter::once("sync-server".to_owned()).chain(args));
    match command {
        Command::Backup { db, force, out } => {
            let Database::Sqlite(path) = db.parse::<Database>()? else {
                return Err("backup copies a SQLite file; for PostgreSQL use pg_dump \
                            (see sync-server/README.md), or export each namespace"
                    .into());
            };
            tokio::task::spawn_blocking(move || backup(&path, &out, force))
                .await
                .map_err(|e| e.to_string())?
        }
        Command::Export {
            db,
            namespace,
            out,
            force,
        } => {
            let dump = export(db.parse()?, &namespace).await?;
            let (rev, entries) = (dump.rev, dump.entries.len());
            match &out {
                Some(path) => write_file(path, force, |file| ndjson::write(&dump, file))?,
                None => ndjson::write(&dump, std::io::BufWriter::new(std::io::stdout().lock()))
                    .map_err(|e| format!("writing to standard output: {e}"))?,
            }
            let to = out.map_or(String::new(), |p| format!(" to {}", p.display()));
            eprintln!("exported namespace {namespace:?} at revision {rev}: {entries} entries{to}");
            Ok(())
        }
        Command::Import {
            db,
            namespace,
            replace,
            file,
        } => {
            let database: Database = db.parse()?;
            let dump = read_export(&file)?;
            let mode = if replace {
                ImportMode::Replace
            } else {
                ImportMode::IntoEmpty
            };
            let imported = import(database, &namespace, &dump, mode)
                .await
                .map_err(|e| match e {
                    DumpError::NotEmpty { namespace, held } => format!(
                        "namespace {namespace:?} is not empty (revision {}, {} entries); \
                         pass --replace to replace it",
                        held.rev, held.entries
                    ),
                    e => e.to_string(),
                })?;
            eprintln!(
                "imported {} entries into namespace {namespace:?}{}",
                imported.entries,
                at_revision(&dump, &imported)
            );
            Ok(())
        }
        Command::Restore {
            db,
            namespaces,
            backup,
        } => restore(db.parse()?, namespaces, backup).await,
        Command::Vacuum { db } => tokio::task::spawn_blocking(move || vacuum(&db))
            .await
            .map_err(|e| e.to_string())?,
    }
}

/// Where an import left the namespace, and what it replaced.
fn at_revision(dump: &Dump, imported: &Imported) -> String {
    let mut at = format!(" at revision {}", imported.rev);
    if let Some(h) = imported.replaced {
        at.push_str(&format!(
            " (replaced revision {} with {} entries",
            h.rev, h.entries
        ));
        if imported.rev != dump.rev {
            at.push_str(&format!(
                "; the file is of revision {}, and revisions never go back",
                dump.rev
            ));
        }
        at.push(')');
    }
    at
}

async fn restore(database: Database, namespaces: Vec<String>, backup: PathBuf) -> Result<(), String> {
    let source = backup.clone();
    let dumps = tokio::task::spawn_blocking(move || {
        let namespaces = if namespaces.is_empty() {
            sqlite::namespaces(&source)?
        } else {
            namespaces
        };
        namespaces
            .iter()
            .map(|ns| sqlite::export(&source, ns))
            .collect::<Result<Vec<Dump>, DumpError>>()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| format!("{}: {e}; nothing was restored", backup.display()))?;
    if dumps.is_empty() {
        return Err(format!(
            "{}: no namespace holds anything; nothing was restored",
            backup.display()
        ));
    }
    for (done, dump) in dumps.iter().enumerate() {
        let imported = import(database.clone(), &dump.namespace, dump, ImportMode::Replace)
            .await
            .map_err(|e| {
                let restored: Vec<String> = dumps[..done]
                    .iter()
                    .map(|d| format!("{:?}", d.namespace))
                    .collect();
                let restored = if restored.is_empty() {
                    "nothing was restored".to_owned()
                } else {
                    format!("restored before it: {}", restored.join(", "))
                };
                format!("namespace {:?}: {e}; {restored}", dump.namespace)
            })?;
        eprintln!(
            "restored {} entries of namespace {:?} from {}{}",
            imported.entries,
            dump.namespace,
            backup.display(),
            at_revision(dump, &imported)
        );
    }
    Ok(())
}

fn vacuum(db: &str) -> Result<(), String> {
    let Database::Sqlite(path) = db.parse::<Database>()? else {
        return Err(
            "vacuum is for SQLite files: PostgreSQL reuses the space of pruned rows \
                    through its autovacuum"
                .into(),
        );
    };
    let done = sqlite::vacuum(&path).map_err(|e| e.to_string())?;
    let size = |bytes: u64| {
        if bytes < 1 << 20 {
            format!("{:.1} KiB", bytes as f64 / 1024.0)
        } else {
            format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
        }
    };
    eprintln!(
        "vacuumed {}: {} before, {} after, in {:.1} s; free pages are given back from now on",
        path.display(),
        size(done.bytes_before),
        size(done.bytes_after),
        done.took.as_secs_f64()
    );
    Ok(())
}

fn backup(source: &Path, out: &Path, force: bool) -> Result<(), String> {
    let mut shown = None;
    let report = |p: BackupProgress| {
        // Only a backup of more than one step (a large file) reports
        // progress, each percent once.
        if p.copied == p.total && shown.is_none() {
            return;
        }
        let percent = (p.copied * 100).checked_div(p.total).unwrap_or(100);
        if shown != Some(percent) {
            shown = Some(percent);
            eprintln!("backup: {percent}% ({} of {} pages)", p.copied, p.total);
        }
    };
    let done = sqlite::backup(source, out, force, report).map_err(|e| match e {
        sqlite::BackupError::Exists(path) => {
            format!(
                "{} exists; choose another path, or pass --force to replace it",
                path.display()
            )
        }
        e => e.to_string(),
    })?;
    let mut namespaces: Vec<String> = done
        .namespaces
        .iter()
        .take(10)
        .map(|(ns, rev)| format!("{ns:?} at revision {rev}"))
        .collect();
    if done.namespaces.len() > 10 {
        namespaces.push(format!("and {} more", done.namespaces.len() - 10));
    }
    eprintln!(
        "backed up {} to {}: {} pages, {:.1} MiB, integrity ok; namespaces: {}",
        source.display(),
        out.display(),
        done.pages,
        done.bytes as f64 / (1 << 20) as f64,
        if namespaces.is_empty() {
            "none".to_owned()
        } else {
            namespaces.join(", ")
        }
    );
    Ok(())
}

async fn export(database: Database, namespace: &str) -> Result<Dump, String> {
    match database {
        Database::Sqlite(path) => {
            let namespace = namespace.to_owned();
            tokio::task::spawn_blocking(move || sqlite::export(path, &namespace))
                .await
                .map_err(|e| e.to_string())?
        }
        Database::Postgres { conn, schema } => {
            postgres::export(&PgOptions::new(conn, namespace).schema(schema)).await
        }
    }
    .map_err(|e| e.to_string())
}

async fn import(
    database: Database,
    namespace: &str,
    dump: &Dump,
    mode: ImportMode,
) -> Result<Imported, DumpError> {
    match database {
        Database::Sqlite(path) => {
            let (options, dump) = (SqliteOptions::new(path, namespace), dump.clone());
            tokio::task::spawn_blocking(move || sqlite::import(&options, &dump, mode))
                .await
                .map_err(|e| DumpError::Database(e.to_string()))?
        }
        Database::Postgres { conn, schema } => {
            postgres::import(&PgOptions::new(conn, namespace).schema(schema), dump, mode).await
        }
    }
}

fn read_export(file: &Path) -> Result<Dump, String> {
    let read = |input: Box<dyn Read>| ndjson::read(BufReader::new(input));
    let dump = if file == Path::new("-") {
        read(Box::new(std::io::stdin().lock()))
    } else {
        let f = fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
        read(Box::new(f))
    };
    dump.map_err(|e| format!("{}: {e}; nothing was imported", file.display()))
}

/// Writes `path` through a temporary file next to it, moved into place
/// once complete and flushed; refuses an existing `path` unless `replace`.
fn write_file(
    path: &Path,
    replace: bool,
    write: impl FnOnce(&mut std::io::BufWriter<&fs::File>) -> std::io::Result<()>,
) -> Result<(), String> {
    let exists = || {
        format!(
            "{} exists; choose another path, or pass --force to replace it",
            path.display()
        )
    };
    if path.exists() && !replace {
        return Err(exists());
    }
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".partial-{}", std::process::id()));
    let partial = path.with_file_name(name);
    let failed = |e: std::io::Error| {
        let _ = fs::remove_file(&partial);
        format!("{}: {e}", path.display())
    };
    let file = fs::File::create(&partial).map_err(failed)?;
    let mut out = std::io::BufWriter::new(&file);
    write(&mut out).and_then(|()| out.flush()).map_err(failed)?;
    drop(out);
    file.sync_all().map_err(failed)?;
    if replace {
        fs::rename(&partial, path).map_err(failed)?;
    } else {
        // Not over a file that appeared meanwhile.
        fs::hard_link(&partial, path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                let _ = fs::remove_file(&partial);
                exists()
            } else {
                failed(e)
            }
        })?;
        fs::remove_file(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
    }
    Ok(())
}
