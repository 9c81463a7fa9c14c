//! The database's maintenance, in the background while the server serves:
//! a round every [`Maintenance::interval`] (sooner while a round leaves
//! work), started when the first namespace opens and stopped by
//! [`Stores::close_all`](super::Stores::close_all). See the backends'
//! maintainers for what a round does; a round that fails is logged and the
//! next one starts on a new connection.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::backend::maintenance::{DEFAULT_OP_IDS_TTL, Report};
use crate::backend::{postgres, sqlite};

use super::Database;

/// How the server keeps its database's disk use bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    /// How long the answer of an op id is kept, counted from when it was
    /// written; `None` keeps every answer.
    pub op_ids_ttl: Option<Duration>,
    /// How often a round runs.
    pub interval: Duration,
}

/// How often a maintenance round runs, by default.
pub const DEFAULT_MAINTENANCE_INTERVAL: Duration = Duration::from_secs(60);

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance {
            op_ids_ttl: Some(DEFAULT_OP_IDS_TTL),
            interval: DEFAULT_MAINTENANCE_INTERVAL,
        }
    }
}

/// The wait before the next round when a round left work.
const SOON: Duration = Duration::from_millis(100);

/// A WAL larger than this that a checkpoint cannot copy is worth a warning.
const WAL_WARNING_BYTES: u64 = 64 << 20;

/// Parses a duration: a whole number and a unit, `ms`, `s`, `m`, `h` or
/// `d` (`1500ms`, `30s`, `7d`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: ms, s, m, h or d (e.g. 7d)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a whole number and a unit (e.g. 7d)"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("{text:?}: unknown unit {unit:?} (ms, s, m, h or d)")),
    };
    let ms = n
        .checked_mul(unit_ms)
        .ok_or_else(|| format!("{text:?} is too long"))?;
    if ms == 0 {
        return Err(format!("{text:?} must be longer than zero"));
    }
    Ok(Duration::from_millis(ms))
}

/// A running maintenance loop; it stops when this is dropped (after the
/// transaction it is in, if any).
pub(crate) struct Running {
    stop: Option<StopOn>,
}

impl Drop for Running {
    fn drop(&mut self) {
        match self.stop.take() {
            Some(StopOn::Thread(stop)) => drop(stop.send(())),
            Some(StopOn::Task(stop)) => drop(stop.send(())),
            None => {}
        }
    }
}

enum StopOn {
    Thread(mpsc::Sender<()>),
    Task(tokio::sync::oneshot::Sender<()>),
}

/// Starts the maintenance loop of `database`. PostgreSQL's runs as a task
/// on the current tokio runtime, SQLite's on a thread of its own.
pub(crate) fn start(database: &Database, maintenance: Maintenance) -> std::io::Result<Running> {
    match database {
        Database::Sqlite(path) => {
            let (stop, stopped) = mpsc::channel();
            let path = path.clone();
            std::thread::Builder::new()
                .name("zestor-maintenance".into())
                .spawn(move || run_sqlite(&path, maintenance, &stopped))?;
            Ok(Running {
                stop: Some(StopOn::Thread(stop)),
            })
        }
        Database::Postgres { conn, schema } => {
            let (stop, stopped) = tokio::sync::oneshot::channel();
            tokio::spawn(run_postgres(conn.clone(), schema.clone(), maintenance, stopped));
            Ok(Running {
                stop: Some(StopOn::Task(stop)),
            })
        }
    }
}

fn run_sqlite(path: &std::path::Path, m: Maintenance, stopped: &mpsc::Receiver<()>) {
    let mut maintainer: Option<sqlite::Maintainer> = None;
    let mut wait = Duration::ZERO;
    loop {
        match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        if maintainer.is_none() {
            match sqlite::Maintainer::open(path) {
                Ok(opened) => {
                    if !opened.gives_space_back().unwrap_or(true) {
                        tracing::info!(
                            path = %path.display(),
                            "this SQLite file was created without incremental auto-vacuum: the space of \
                             pruned rows is reused but not given back to the file system; \
                             `sync-server vacuum` switches it (with the server stopped)"
                        );
                    }
                    maintainer = Some(opened);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open the database for maintenance; trying again later");
                    wait = m.interval;
                    continue;
                }
            }
        }
        let Some(current) = maintainer.as_mut() else {
            continue;
        };
        wait = match current.run(m.op_ids_ttl) {
            Ok(report) => {
                log(&report);
                if report.more { SOON } else { m.interval }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a maintenance round failed; trying again later");
                maintainer = None;
                m.interval
            }
        };
    }
}

async fn run_postgres(
    conn: String,
    schema: String,
    m: Maintenance,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let mut maintainer: Option<postgres::Maintainer> = None;
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            () = tokio::time::sleep(wait) => {}
        }
        if maintainer.as_ref().is_none_or(postgres::Maintainer::is_closed) {
            maintainer = match postgres::Maintainer::connect(&conn, &schema).await {
                Ok(connected) => Some(connected),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot connect for maintenance; trying again later");
                    wait = m.interval;
                    continue;
                }
            };
        }
        let Some(current) = maintainer.as_mut() else {
            continue;
        };
        let round = tokio::select! {
            _ = &mut stopped => return,
            round = current.run(m.op_ids_ttl) => round,
        };
        wait = match round {
            Ok(report) => {
                log(&report);
                if report.more { SOON } else { m.interval }
            }
            Err(e) => {
                tracing::warn!(error = %e, "a maintenance round failed; trying again later");
                maintainer = None;
                m.interval
            }
        };
    }
}

fn log(report: &Report) {
    if report.op_ids_pruned > 0 || report.pages_vacuumed > 0 {
        tracing::info!(
            op_ids_pruned = report.op_ids_pruned,
            pages_vacuumed = report.pages_vacuumed,
            more = report.more,
            "maintenance round"
        );
    }
    if report.wal_frames_behind > 0 && report.wal_bytes > WAL_WARNING_BYTES {
        tracing::warn!(
            wal_bytes = report.wal_bytes,
            frames_behind = report.wal_frames_behind,
            "the SQLite WAL cannot be checkpointed to its end and keeps growing: a long read \
             transaction on the file (another process?) holds it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("12h"), Ok(Duration::from_secs(12 * 3600)));
        for bad in [
            "7",
            "d",
            "7 d",
            "7w",
            "0s",
            "-1s",
            "1.5h",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
