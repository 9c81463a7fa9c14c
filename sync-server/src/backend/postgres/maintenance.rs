//! The answers of old op ids, pruned from a PostgreSQL schema.
//!
//! Several processes sharing the schema may each run a maintainer: a batch
//! is deleted under the transaction-level advisory lock
//! `pg_try_advisory_xact_lock(PRUNE_LOCK, hashtext(schema))`, and a round
//! that finds it taken leaves the work to the process holding it. Writers
//! never wait for it: they insert answers and read them, and the pruned
//! rows are ones no writer inserts again while they exist. PostgreSQL's
//! autovacuum makes the space of the deleted rows reusable; the table stops
//! growing but its files do not shrink (that would take `VACUUM FULL`,
//! which locks the table).

use std::time::{Duration, Instant};

use store_core::Result;
use tokio_postgres::{Client, Config, Statement};

use super::{Target, migrate, pg_error, quote_ident};
use crate::backend::maintenance::{MAX_STEPS, PRUNE_BATCH, Report, pause_after};

/// The advisory lock a batch of pruning holds:
/// `pg_try_advisory_xact_lock(PRUNE_LOCK, hashtext(schema))`.
pub const PRUNE_LOCK: i32 = 0x7a65_7370; // "zesp"

/// Deletes one batch of answers recorded more than `$1` milliseconds ago,
/// oldest first, through the `applied_at` index.
const PRUNE_SQL: &str = "DELETE FROM {s}.zestor_applied_ops WHERE (ns, client_id, op_id) IN (
    SELECT ns, client_id, op_id FROM {s}.zestor_applied_ops
    WHERE applied_at < now() - $1::bigint * interval '1 millisecond'
    ORDER BY applied_at LIMIT $2)";

/// Prunes the answers of old op ids from one schema; see [`Maintainer::run`].
pub struct Maintainer {
    client: Client,
    schema: String,
    prune: Statement,
}

impl std::fmt::Debug for Maintainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maintainer")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl Maintainer {
    /// A connection of its own to the database at `conn` (as
    /// [`PgOptions::new`](super::PgOptions::new) takes it), whose schema
    /// `schema` is created or migrated as a store's open does. Must be
    /// called within a tokio runtime, which runs the connection.
    pub async fn connect(conn: &str, schema: &str) -> Result<Maintainer> {
        let config: Config = conn
            .parse()
            .map_err(|e| pg_error("invalid connection string", &e))?;
        let target = Target {
            config,
            ns: String::new(),
            schema: schema.to_owned(),
            quoted: quote_ident(schema),
            payload: String::new(),
            min_log_retention: 0,
        };
        let mut client = target.connect("maintenance").await?;
        migrate(&mut client, &target, None).await?;
        let prune = client
            .prepare(&target.sql(PRUNE_SQL))
            .await
            .map_err(|e| pg_error("preparing the pruning statement", &e))?;
        Ok(Maintainer {
            client,
            schema: target.schema,
            prune,
        })
    }

    /// One round: deletes the answers of op ids recorded more than
    /// `op_ids_ttl` ago by the database's clock (`None`: keeps them),
    /// 500 per transaction, pausing between transactions as long
    /// as the last one took. At most 200 transactions run; [`Report::more`]
    /// then says to run the next round soon. When another process holds
    /// [`PRUNE_LOCK`], the round stops and says
    /// [`Report::pruned_elsewhere`].
    pub async fn run(&mut self, op_ids_ttl: Option<Duration>) -> Result<Report> {
        let mut report = Report::default();
        let Some(ttl) = op_ids_ttl else {
            return Ok(report);
        };
        let ttl = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let batch = PRUNE_BATCH as i64;
        let e = |e: tokio_postgres::Error| pg_error("pruning op ids", &e);
        for _ in 0..MAX_STEPS {
            let started = Instant::now();
            let tx = self.client.transaction().await.map_err(e)?;
            let locked: bool = tx
                .query_one(
                    "SELECT pg_try_advisory_xact_lock($1, hashtext($2::text))",
                    &[&PRUNE_LOCK, &self.schema],
                )
                .await
                .map_err(e)?
                .get(0);
            if !locked {
                report.pruned_elsewhere = true;
                return Ok(report);
            }
            let n = tx.execute(&self.prune, &[&ttl, &batch]).await.map_err(e)?;
            tx.commit().await.map_err(e)?;
            report.op_ids_pruned += n;
            if n < PRUNE_BATCH as u64 {
                return Ok(report);
            }
            tokio::time::sleep(pause_after(started.elapsed())).await;
        }
        report.more = true;
        Ok(report)
    }

    /// Whether the connection is lost (connect a new maintainer).
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }
}
