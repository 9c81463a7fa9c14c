//! A namespace as a whole, out of a backend and into one: what `export`
//! reads and `import` writes ([`sqlite::export`](super::sqlite::export),
//! [`postgres::import`](super::postgres::import), …), and the rules an
//! import is checked against before anything is written.
//!
//! A dump holds the namespace's revision and its entries with their
//! versions and revisions, as the store holds them; not the change log
//! (a store opened on an imported namespace resumes no watch from before
//! it: clients behind its revision get a snapshot) nor the recorded
//! answers of clients' op ids. The file format is
//! [`admin::ndjson`](crate::admin::ndjson).
//!
//! An import never moves a namespace's revision back ([`imported_rev`]):
//! a client's cursor names a revision of the history it saw, and a
//! revision reused by the restored history would let it resume from there
//! as if nothing was replaced.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use store_core::sync::codec::Limits;
use store_core::{Engine, Entry, StoreOptions};

/// One namespace: its revision and every entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Dump {
    /// The namespace.
    pub namespace: String,
    /// The namespace's revision: the revision of its last change.
    pub rev: u64,
    /// The entries, sorted by kind then key.
    pub entries: Vec<DumpEntry>,
}

/// One entry of a [`Dump`].
#[derive(Debug, Clone, PartialEq)]
pub struct DumpEntry {
    /// The kind.
    pub kind: String,
    /// The key.
    pub key: String,
    /// The value.
    pub value: Value,
    /// The entry's version (1 on create, +1 on every change).
    pub version: u64,
    /// The revision of its last change.
    pub rev: u64,
}

/// What an import does with a namespace that holds data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportMode {
    /// Refuse it ([`DumpError::NotEmpty`]).
    IntoEmpty,
    /// Replace it: its entries, change log and the recorded answers of its
    /// clients' op ids are deleted, in the import's transaction.
    Replace,
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The entries written.
    pub entries: usize,
    /// The namespace's revision after it ([`imported_rev`]).
    pub rev: u64,
    /// What the namespace held before, when it held anything.
    pub replaced: Option<Held>,
}

/// What a namespace holds, in brief.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Its revision.
    pub rev: u64,
    /// How many entries.
    pub entries: u64,
}

impl Held {
    /// Whether the namespace holds nothing at all: no revision, no entry.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.rev == 0 && self.entries == 0
    }
}

/// The revision a namespace at revision `held` gets from an import of a
/// dump at revision `dump`: the dump's, when that is past every revision
/// the namespace had (a namespace never written is at 0); else `held + 1`.
/// The entries keep their revisions and the change log is empty, so every
/// cursor a client can hold is older than the namespace's history: it gets
/// a full snapshot (`compacted`) and never resumes from a revision that
/// now names another change.
#[must_use]
pub fn imported_rev(dump: u64, held: u64) -> u64 {
    if held == 0 || dump > held { dump } else { held + 1 }
}

/// Why an export or an import failed. An import that fails writes nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DumpError {
    /// An entry breaks a rule (its index in [`Dump::entries`]).
    #[error("entry {index}: {message}")]
    Entry {
        /// Its index.
        index: usize,
        /// What is wrong, for people.
        message: String,
    },
    /// A line of an export file is malformed or breaks a rule.
    #[error("line {line}: {message}")]
    Line {
        /// The line's number, from 1.
        line: usize,
        /// What is wrong, for people.
        message: String,
    },
    /// The dump breaks a rule as a whole.
    #[error("{0}")]
    Invalid(String),
    /// The dump is of another namespace than the one written.
    #[error("the export is of namespace {found:?}, not {expected:?}")]
    WrongNamespace {
        /// The namespace to write.
        expected: String,
        /// The dump's.
        found: String,
    },
    /// The namespace to import into holds data, and replacing it was not
    /// asked for.
    #[error(
        "namespace {namespace:?} is not empty (revision {}, {} entries); replace it explicitly",
        held.rev,
        held.entries
    )]
    NotEmpty {
        /// The namespace.
        namespace: String,
        /// What it holds.
        held: Held,
    },
    /// The namespace to export holds nothing (it was never written).
    #[error("namespace {namespace:?} holds nothing in {database}{}", known_list(.known))]
    NoData {
        /// The namespace.
        namespace: String,
        /// Where it was looked for.
        database: String,
        /// The namespaces that hold something there.
        known: Vec<String>,
    },
    /// The database is not one a store wrote, or a newer one.
    #[error("{0}")]
    Database(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] store_core::Error),
}

fn known_list(known: &[String]) -> String {
    const SHOWN: usize = 20;
    if known.is_empty() {
        return " (no namespace does)".to_owned();
    }
    let mut names: Vec<String> = known.iter().take(SHOWN).map(|n| format!("{n:?}")).collect();
    if known.len() > SHOWN {
        names.push(format!("and {} more", known.len() - SHOWN));
    }
    format!(" (namespaces there: {})", names.join(", "))
}

/// Checks a namespace name: 1 to 256 bytes without NUL, what a sync client
/// can name in `hello`.
pub fn check_namespace(namespace: &str) -> Result<(), String> {
    let max = Limits::default().max_id_bytes;
    if namespace.is_empty() {
        Err("the namespace is empty".to_owned())
    } else if namespace.len() > max {
        Err(format!(
            "the namespace is {} bytes long, over the limit of {max}",
            namespace.len()
        ))
    } else if namespace.contains('\0') {
        Err("the namespace contains the nul character (\\0)".to_owned())
    } else {
        Ok(())
    }
}

/// Checks one entry alone, against the dump's revision `head`.
pub(crate) fn check_entry(e: &DumpEntry, head: u64) -> Result<(), String> {
    store_core::check_key(&e.kind, &e.key).map_err(|err| err.to_string())?;
    if e.version == 0 {
        return Err("version must be at least 1".to_owned());
    }
    if e.rev == 0 || e.rev > head {
        return Err(format!(
            "rev must be from 1 to the namespace's revision {head}, got {}",
            e.rev
        ));
    }
    // Every change of the key's life took a revision of its own.
    if e.version > e.rev {
        return Err(format!(
            "version {} is larger than rev {}: a key's changes each take a revision",
            e.version, e.rev
        ));
    }
    Ok(())
}

impl Dump {
    /// The dump of `namespace` as a backend read it: entries decoded from
    /// their stored JSON, sorted by kind and key.
    pub(crate) fn from_snapshot(namespace: String, snapshot: super::Snapshot) -> Result<Dump, DumpError> {
        let mut entries = snapshot
            .entries
            .into_iter()
            .map(|e| {
                let value: Value = serde_json::from_str(&e.value).map_err(|err| {
                    DumpError::Database(format!(
                        "{}/{}: the stored value is not JSON: {err}",
                        e.kind, e.key
                    ))
                })?;
                Ok(DumpEntry {
                    kind: e.kind,
                    key: e.key,
                    value,
                    version: e.version,
                    rev: e.rev,
                })
            })
            .collect::<Result<Vec<_>, DumpError>>()?;
        entries.sort_by(|a, b| (&a.kind, &a.key).cmp(&(&b.kind, &b.key)));
        Ok(Dump {
            namespace,
            rev: snapshot.rev,
            entries,
        })
    }

    /// Checks the dump before anything is written: a valid namespace name;
    /// each entry with a kind and key a store accepts
    /// ([`store_core::check_key`]), a version from 1, a revision from 1 up
    /// to the namespace's and not below its version; no key twice; no
    /// revision twice (a revision is one change of one key).
    pub fn validate(&self) -> Result<(), DumpError> {
        check_namespace(&self.namespace).map_err(DumpError::Invalid)?;
        let mut keys = HashSet::with_capacity(self.entries.len());
        let mut revs: HashMap<u64, usize> = HashMap::with_capacity(self.entries.len());
        for (index, e) in self.entries.iter().enumerate() {
            let invalid = |message: String| DumpError::Entry { index, message };
            check_entry(e, self.rev).map_err(invalid)?;
            if !keys.insert((e.kind.as_str(), e.key.as_str())) {
                return Err(invalid(format!("{}/{} appears twice", e.kind, e.key)));
            }
            if let Some(first) = revs.insert(e.rev, index) {
                return Err(invalid(format!(
                    "rev {} is also the rev of entry {first}: a revision is one change of one key",
                    e.rev
                )));
            }
        }
        // What a store checks when it opens on the result.
        Engine::<Value>::restore(
            StoreOptions::new(),
            self.rev,
            self.entries.iter().map(|e| {
                let entry = Entry {
                    value: e.value.clone(),
                    version: e.version,
                    rev: e.rev,
                };
                (e.kind.clone(), e.key.clone(), entry)
            }),
            [],
        )
        .map(drop)
        .map_err(|e| DumpError::Invalid(format!("a store would not open on it: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(kind: &str, key: &str, version: u64, rev: u64) -> DumpEntry {
        DumpEntry {
            kind: kind.into(),
            key: key.into(),
            value: json!({"k": key}),
            version,
            rev,
        }
    }

    fn dump(entries: Vec<DumpEntry>) -> Dump {
        Dump {
            namespace: "ns".into(),
            rev: 10,
            entries,
        }
    }

    fn error(d: &Dump) -> String {
        d.validate().unwrap_err().to_string()
    }

    #[test]
    fn an_import_never_moves_the_revision_back() {
        assert_eq!(imported_rev(7, 0), 7, "a namespace never written");
        assert_eq!(imported_rev(0, 0), 0);
        assert_eq!(imported_rev(7, 3), 7, "past every revision it had");
        assert_eq!(imported_rev(4, 7), 8, "an older state");
        assert_eq!(imported_rev(7, 7), 8, "the same revision");
    }

    #[test]
    fn a_consistent_dump_is_valid() {
        dump(vec![entry("task", "a", 2, 7), entry("task", "b", 1, 10)])
            .validate()
            .unwrap();
        dump(Vec::new()).validate().unwrap();
    }

    #[test]
    fn each_rule_names_the_entry_and_what_is_wrong() {
        let cases = [
            (entry("", "a", 1, 1), "entry 1: kind required"),
            (
                entry("task", "a\0", 1, 1),
                "entry 1: key contains the nul character",
            ),
            (
                entry("task", &"k".repeat(1025), 1, 1),
                "entry 1: key is 1025 bytes long",
            ),
            (entry("task", "b", 0, 1), "entry 1: version must be at least 1"),
            (
                entry("task", "b", 1, 0),
                "entry 1: rev must be from 1 to the namespace's revision 10, got 0",
            ),
            (
                entry("task", "b", 1, 11),
                "entry 1: rev must be from 1 to the namespace's revision 10, got 11",
            ),
            (
                entry("task", "b", 4, 3),
                "entry 1: version 4 is larger than rev 3",
            ),
            (entry("task", "a", 1, 2), "entry 1: task/a appears twice"),
            (
                entry("task", "b", 1, 5),
                "entry 1: rev 5 is also the rev of entry 0",
            ),
        ];
        for (bad, expected) in cases {
            let message = error(&dump(vec![entry("task", "a", 1, 5), bad]));
            assert!(
                message.starts_with(expected),
                "{message:?} should start with {expected:?}"
            );
        }
    }

    #[test]
    fn the_namespace_must_be_one_a_client_can_name() {
        for (namespace, expected) in [
            ("", "the namespace is empty"),
            ("a\0b", "the namespace contains the nul character"),
        ] {
            let d = Dump {
                namespace: namespace.into(),
                ..dump(Vec::new())
            };
            assert!(error(&d).starts_with(expected), "{}", error(&d));
        }
        let long = Dump {
            namespace: "n".repeat(257),
            ..dump(Vec::new())
        };
        assert_eq!(
            error(&long),
            "the namespace is 257 bytes long, over the limit of 256"
        );
    }
}
