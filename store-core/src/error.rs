//! The one error type of the store and watch contracts.
//!
//! Every variant has a stable [`Error::code`] that the sync protocol and the
//! JavaScript package expose, so applications can match on it.

use crate::schema::SchemaError;

/// A boxed error from a caller-supplied function (see `set_fn`) or from a
/// backend's storage layer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The result type of every store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a store or a watch can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store was closed; every later call fails with this.
    #[error("store closed")]
    Closed,
    /// The kind argument was empty.
    #[error("kind required")]
    KindRequired,
    /// A write named a kind or key longer than
    /// [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES); nothing was written.
    #[error(
        "{field} is {len} bytes long, over the limit of {} bytes",
        crate::MAX_KEY_BYTES
    )]
    KeyTooLong {
        /// `"kind"` or `"key"`.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// A write named a kind or key that no store holds (one with the NUL
    /// character); nothing was written.
    #[error("{field} {reason}")]
    InvalidKey {
        /// `"kind"` or `"key"`.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `set_fn` or `patch` was called on a key that does not exist.
    #[error("key not found")]
    KeyNotFound,
    /// A validator or the kind's JSON Schema rejected the value.
    #[error("invalid value for {kind}/{key}: {message}")]
    Validation {
        /// The kind written to.
        kind: String,
        /// The key written to.
        key: String,
        /// What the validator said.
        message: String,
    },
    /// `if_version` did not match the stored version (0 means "absent").
    #[error("version conflict: expected {expected}, found {actual}")]
    Conflict {
        /// The version the caller expected.
        expected: u64,
        /// The version in the store (0 when the key is absent).
        actual: u64,
    },
    /// The watcher fell `buffer_size` events behind; its stream ends here.
    #[error("watch overflowed its buffer")]
    Overflow,
    /// The requested revision is older than the retained history: re-list,
    /// then watch from the revision of that listing.
    #[error("revision compacted: oldest resumable revision is {oldest}")]
    Compacted {
        /// The oldest revision a watch can resume from.
        oldest: u64,
    },
    /// The requested revision is newer than anything this store committed
    /// (the consumer saw another store, or this store lost its data).
    #[error("revision {requested} is ahead of the store's revision {head}")]
    RevisionAhead {
        /// The revision asked for.
        requested: u64,
        /// The store's current revision.
        head: u64,
    },
    /// The update function given to `set_fn` failed; nothing was written.
    #[error("update function failed: {0}")]
    Function(#[source] BoxError),
    /// A value could not be converted to or from JSON.
    #[error("value encoding failed: {0}")]
    Encoding(String),
    /// A JSON Schema given to the store options is invalid.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A write transaction was committed after another one changed the
    /// engine (a shell must serialize its writers).
    #[error("stale transaction: begun at revision {base}, engine is at {head}")]
    StaleTransaction {
        /// The revision the transaction was begun at.
        base: u64,
        /// The engine's revision at commit.
        head: u64,
    },
    /// A stored value no longer decodes as the store's value type (corrupt
    /// or foreign data).
    #[error("stored value of {kind}/{key} does not decode: {message}")]
    Decode {
        /// The kind of the entry.
        kind: String,
        /// The key of the entry.
        key: String,
        /// What the decoder said.
        message: String,
    },
    /// A durable backend failed to read or write its storage.
    #[error("storage failed: {0}")]
    Storage(#[source] BoxError),
}

impl Error {
    /// A stable, lowercase identifier of the variant, for protocols and
    /// bindings (`"closed"`, `"conflict"`, …).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Error::Closed => "closed",
            Error::KindRequired => "kind_required",
            Error::KeyTooLong { .. } => "key_too_long",
            Error::InvalidKey { .. } => "invalid_key",
            Error::KeyNotFound => "key_not_found",
            Error::Validation { .. } => "validation",
            Error::Conflict { .. } => "conflict",
            Error::Overflow => "overflow",
            Error::Compacted { .. } => "compacted",
            Error::RevisionAhead { .. } => "revision_ahead",
            Error::Function(_) => "function",
            Error::Encoding(_) => "encoding",
            Error::Schema(_) => "schema",
            Error::StaleTransaction { .. } => "stale_transaction",
            Error::Decode { .. } => "decode",
            Error::Storage(_) => "storage",
        }
    }
}
