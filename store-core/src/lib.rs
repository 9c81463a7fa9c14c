//! Zestor's engine: a typed, versioned key-value store with a guaranteed
//! watch, with no I/O of its own.
//!
//! This crate owns the rules; the shells around it (the SQLite and PostgreSQL
//! backends, the server, the browser package) own files, sockets and clocks.
//! It compiles for `wasm32-unknown-unknown` and for native targets, and
//! depends on no runtime: no tokio, no `js-sys`, no clock.
//!
//! # Data model
//!
//! A store holds one namespace: `kind → key → entry`. An [`Entry`] holds a
//! value (any `T: Serialize + DeserializeOwned + Clone`, or
//! [`serde_json::Value`] for dynamic use), its `version` (1 on create, +1 on
//! every real change) and `rev`, the namespace revision of its last change.
//! Every committed change takes the next revision: strictly increasing,
//! gap-free, in commit order.
//!
//! Kinds and keys are strings of at most [`MAX_KEY_BYTES`] (1024) bytes of
//! UTF-8 without the NUL character (`\0`); a value is any JSON, NUL in its
//! strings included. The same on every backend.
//!
//! ## Versions belong to one life of a key
//!
//! Deleting a key forgets it, and creating it again starts over at version
//! 1: no tombstone is kept. So a version alone does not tell two lives of a
//! key apart — an `if_version: 1` meant for the first life matches the
//! second. This is on purpose: a tombstone kept for every deleted key,
//! forever, would grow every store without bound, and a synced client could
//! no longer predict the version of a key it creates (its optimistic view
//! shows version 1 for a key it does not hold, though the server may have
//! seen that key live and die before the client synced).
//!
//! The remedy is the entry's `rev`: a revision is never reused, so a key
//! created again has a new `rev`, larger than any of its earlier lives'. To
//! be sure a write lands on the life you read, compare the `rev` you read
//! with the one `get` returns now, or watch the kind: a `delete` event ends
//! a life, and the next `create` begins another.
//!
//! # The store contract
//!
//! Every backend implements [`Store`] and passes the same conformance suite
//! (the `testkit` feature):
//!
//! - `set` reports [`SetResult::Created`], `Updated` or `Unchanged`. A value
//!   the compare function (default: semantic JSON equality, see
//!   [`json::json_eq`]) judges equal to the stored one is `Unchanged`:
//!   nothing is written, no version or revision is spent, no event is sent.
//! - `set_fn` is an atomic read-modify-write; a missing key is
//!   [`Error::KeyNotFound`], an error from the function is
//!   [`Error::Function`] and nothing is written.
//! - `patch` applies a JSON Merge Patch ([`json::merge_patch`], RFC 7396)
//!   to an existing key atomically: the merged value is validated as a
//!   whole ([`Error::Validation`]), `Unchanged` when it equals the stored
//!   one, [`Error::KeyNotFound`] for a missing key (a patch never creates).
//! - `set_many` merges into a kind, skips unchanged keys, emits events in key
//!   order, and is all or nothing: one invalid value rejects the batch.
//! - `delete` returns the previous entry, or `None` if there was none.
//! - [`SetOptions::if_version`] makes a write compare-and-set
//!   ([`Error::Conflict`]); version 0 means "must not exist". Versions
//!   restart at 1 when a key is deleted and created again (see above).
//! - Every write checks its kind and key before anything is staged: longer
//!   than [`MAX_KEY_BYTES`] is [`Error::KeyTooLong`], a NUL character is
//!   [`Error::InvalidKey`]; nothing is written, and in a batch of writes
//!   (a durable backend's group commit) the others go on. Reads of such a
//!   key find nothing.
//! - Validation runs per kind: closures, and declarative JSON Schemas
//!   ([`schema::Schema`]) that servers also ship to clients.
//! - An empty kind is [`Error::KindRequired`]; after `close` every call is
//!   [`Error::Closed`]; `close` is idempotent and ends every watch.
//!
//! # The watch contract
//!
//! A [`Watch`] is a `futures::Stream` of the [`Event`]s of one kind:
//!
//! 1. **Ordering** — events arrive in commit order; applying them in order
//!    converges on the store's state.
//! 2. **Replay precedes live** — [`WatchOptions::replay`] snapshots the kind
//!    atomically with the subscription; every replayed event precedes every
//!    live one.
//! 3. **No silent gaps** — a consumer `buffer_size` live events behind gets
//!    one terminal [`Error::Overflow`], then the stream ends. Type filters
//!    never suppress it.
//! 4. **Exactly-once end** — the stream ends once: on drop, overflow, or close.
//! 5. **Resumable** — [`WatchOptions::from_rev`] delivers exactly the changes
//!    after a revision if it is within the retained history, else one
//!    terminal [`Error::Compacted`] telling the consumer to re-list.
//!
//! # Persistence seam
//!
//! [`Engine`] splits every write into stage → persist → commit, so a durable
//! shell makes the change records ([`WriteTxn::events`]) durable before the
//! hub publishes them, and [`Engine::restore`] loads a persisted snapshot and
//! the tail of the change log at open. [`MemStore`] is the engine behind a
//! lock, with nothing to persist.
//!
//! # JSON Schema
//!
//! Per-kind schemas are validated by the crate's own [`schema`] module, a
//! documented subset of draft 2020-12 checked against the official
//! JSON-Schema-Test-Suite; its module docs say which keywords it supports
//! and why no general-purpose validator crate fit a wasm build.
//!
//! # Example
//!
//! ```
//! use futures_util::StreamExt;
//! use serde_json::{json, Value};
//! use store_core::{EventType, MemStore, SetOptions, StoreOptions, WatchOptions};
//!
//! let store: MemStore<Value> = MemStore::new(StoreOptions::new());
//! store.set("task", "t1", json!({"title": "write docs"}), SetOptions::default())?;
//! let mut watch = store.watch("task", WatchOptions::new().replay())?;
//! store.delete("task", "t1", SetOptions::default())?;
//!
//! futures_executor::block_on(async {
//!     let replayed = watch.next().await.unwrap()?;
//!     assert_eq!((replayed.event_type, replayed.rev), (EventType::Create, 1));
//!     let deleted = watch.next().await.unwrap()?;
//!     assert_eq!((deleted.event_type, deleted.rev), (EventType::Delete, 2));
//!     assert_eq!(deleted.value["title"], "write docs");
//!     Ok::<(), store_core::Error>(())
//! })?;
//! # Ok::<(), store_core::Error>(())
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

mod engine;
mod error;
mod hub;
pub mod json;
mod mem;
mod model;
mod options;
pub mod schema;
mod store;
pub mod sync;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use engine::{Engine, MAX_KEY_BYTES, WriteTxn, check_key};
pub use error::{BoxError, Error, Result};
pub use hub::{DEFAULT_BUFFER_SIZE, Watch, WatchOptions};
pub use mem::MemStore;
pub use model::{Deleted, Entry, Event, EventType, SetOptions, SetResult, Written};
pub use options::{DEFAULT_RETENTION, Filter, StoreOptions};
pub use store::{MaybeSend, MaybeSync, Store};

/// What a store can hold: any cloneable serde type. [`serde_json::Value`]
/// is the dynamic flavour used by the server and the browser.
pub trait StoreValue: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static {}

impl<T> StoreValue for T where
    T: serde::Serialize + serde::de::DeserializeOwned + Clone + Send + Sync + 'static
{
}
