//! Keeping the database's disk use bounded: what both backends' maintainers
//! share. A maintainer holds a connection of its own and, in a round,
//! prunes the recorded answers of op ids older than their time to live (and,
//! on SQLite, gives free pages back and checkpoints the WAL), in small
//! transactions with pauses between them so that writers are not held up.
//! It never touches entries, heads or the change log.

use std::time::Duration;

/// How long the answer of an op id is kept, by default: a retry of an op id
/// older than this is applied again as a new op (see `docs/protocol.md`,
/// "Writes: ordering and idempotency").
pub const DEFAULT_OP_IDS_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Recorded answers deleted per transaction.
pub(crate) const PRUNE_BATCH: usize = 500;

/// Transactions of one kind (pruning, vacuuming) in one round; a round that
/// reaches it says [`Report::more`].
pub(crate) const MAX_STEPS: usize = 200;

/// What one maintenance round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Recorded answers deleted for being older than the op ids' time to
    /// live.
    pub op_ids_pruned: u64,
    /// Free pages given back to the file system (SQLite files with
    /// incremental auto-vacuum).
    pub pages_vacuumed: u64,
    /// The round stopped at its budget with work left: run the next soon.
    pub more: bool,
    /// PostgreSQL: another process was pruning the schema, and this round
    /// left it to that process.
    pub pruned_elsewhere: bool,
    /// SQLite: the WAL file's size after the round's checkpoint, in bytes.
    pub wal_bytes: u64,
    /// SQLite: WAL frames the round's checkpoint could not copy into the
    /// database, because a read transaction (of another connection) still
    /// needs them. While that lasts the WAL cannot start over and grows.
    pub wal_frames_behind: u64,
}

/// Sleeps between two transactions of a round as long as the last one
/// took, and at least a few milliseconds, so that the round holds the write
/// lock at most half of the time and a waiting writer gets in.
pub(crate) fn pause_after(busy: Duration) -> Duration {
    busy.max(Duration::from_millis(5))
}
