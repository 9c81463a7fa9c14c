//! The data model: entries, change events and write outcomes.

use serde::{Deserialize, Serialize};

/// A stored value with its bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry<T> {
    /// The value.
    pub value: T,
    /// 1 when the key was created, +1 on every real change.
    pub version: u64,
    /// The namespace revision of the entry's last change.
    pub rev: u64,
}

impl<T: Clone> Entry<&T> {
    /// An owned copy of a borrowed entry.
    #[must_use]
    pub fn cloned(&self) -> Entry<T> {
        Entry {
            value: self.value.clone(),
            version: self.version,
            rev: self.rev,
        }
    }
}

/// What a change did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// The key did not exist before.
    Create,
    /// The key existed and its value changed.
    Update,
    /// The key was removed.
    Delete,
}

impl EventType {
    pub(crate) fn bit(self) -> u8 {
        match self {
            EventType::Create => 1,
            EventType::Update => 2,
            EventType::Delete => 4,
        }
    }
}

/// One committed change: the unit of persistence (a change-log row), of watch
/// delivery and of sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event<T> {
    /// The kind changed.
    pub kind: String,
    /// The key changed.
    pub key: String,
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The new value; for a delete, the value that was removed.
    pub value: T,
    /// The entry's version after the change; for a delete, the version removed.
    pub version: u64,
    /// The namespace revision this change was committed at.
    pub rev: u64,
}

/// What a `set` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SetResult {
    /// The key was created (version 1).
    Created,
    /// The key existed and its value changed.
    Updated,
    /// The value equalled the stored one: nothing was written.
    Unchanged,
}

/// The outcome of a `set`, `set_fn` or one key of a `set_many`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// What happened.
    pub result: SetResult,
    /// The entry's version now.
    pub version: u64,
    /// The revision of the entry's last change (for `Unchanged`, an older one).
    pub rev: u64,
}

impl Written {
    /// Whether anything was written.
    #[must_use]
    pub fn changed(&self) -> bool {
        self.result != SetResult::Unchanged
    }
}

/// The outcome of deleting a key that existed.
#[derive(Debug, Clone, PartialEq)]
pub struct Deleted<T> {
    /// The entry as it was before the delete.
    pub prev: Entry<T>,
    /// The revision of the delete.
    pub rev: u64,
}

/// Options of a single-key write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Compare-and-set: the write happens only if the stored version equals
    /// this one, with 0 meaning "the key must not exist"; otherwise the write
    /// fails with [`Error::Conflict`](crate::Error::Conflict).
    ///
    /// Versions count the changes of one life of a key: a key deleted and
    /// created again is at version 1 again, so a version read before the
    /// delete can match the new life. Its `rev` tells the lives apart (a
    /// revision is never reused); see the [crate docs](crate#versions-belong-to-one-life-of-a-key).
    pub if_version: Option<u64>,
}

impl SetOptions {
    /// Compare-and-set against `version` (0: the key must be absent).
    #[must_use]
    pub fn if_version(version: u64) -> Self {
        SetOptions {
            if_version: Some(version),
        }
    }
}
