//! Zestor in the browser: the store-core engine compiled to WebAssembly,
//! persisted in IndexedDB, usable offline and synced through `sync-server`.
//!
//! The JavaScript API is in [`api`]; its TypeScript declarations are
//! `npm/zestor.d.ts`. [`IdbStore`] is the same store for Rust code compiled
//! to `wasm32` (it implements [`store_core::Store`]).
#![warn(missing_docs, unreachable_pub)]
#![forbid(unsafe_code)]
#![cfg(target_arch = "wasm32")]

pub mod api;
mod idb;
mod js;
mod store;
mod store_trait;
mod sync;
mod tabs;

pub use store::{IdbStore, SyncSetup};
