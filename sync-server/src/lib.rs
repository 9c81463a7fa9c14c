//! Zestor's native side: durable homes for the store ([`backend`]: SQLite,
//! the embedded default, and PostgreSQL, shared by several processes), the
//! WebSocket sync [`server`] built on them, and a native sync [`client`].
//!
//! Every backend is a [`store_core::Store`] and passes the same conformance
//! suite as `MemStore`: validation, the compare function, versions and
//! `if_version` behave identically everywhere.
//!
//! ```
//! use serde_json::{json, Value};
//! use store_core::{SetOptions, StoreOptions};
//! use sync_server::backend::{Durable, sqlite::{self, SqliteOptions}};
//!
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("zestor.db");
//! let store: Durable<Value> = sqlite::open(SqliteOptions::new(&path, "tenant-1"), StoreOptions::new())?;
//! let written = futures_executor::block_on(store.set("task", "t1", json!({"title": "ship"}), SetOptions::default()))?;
//! assert_eq!(written.rev, 1); // durable when it returns
//! # Ok::<(), store_core::Error>(())
//! ```
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]

#[cfg(feature = "server")]
pub mod admin;
#[cfg(feature = "server")]
pub mod backend;
pub mod client;
#[cfg(feature = "server")]
pub mod server;
