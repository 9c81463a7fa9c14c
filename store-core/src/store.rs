//! The async store trait every backend implements.
//!
//! The same trait serves native backends, whose futures must be `Send` to run
//! on a multi-threaded runtime, and the browser's IndexedDB store, whose
//! futures hold JavaScript values and cannot be. [`MaybeSend`] is `Send` on
//! native targets and nothing on `wasm32`, so one trait and one conformance
//! suite cover both.

use std::collections::BTreeMap;
use std::future::Future;

use crate::{BoxError, Deleted, Entry, Filter, Result, SetOptions, StoreValue, Watch, WatchOptions, Written};

#[cfg(not(target_arch = "wasm32"))]
mod bounds {
    /// `Send` on native targets; no bound on `wasm32`.
    pub trait MaybeSend: Send {}
    impl<T: Send + ?Sized> MaybeSend for T {}
    /// `Sync` on native targets; no bound on `wasm32`.
    pub trait MaybeSync: Sync {}
    impl<T: Sync + ?Sized> MaybeSync for T {}
}

#[cfg(target_arch = "wasm32")]
mod bounds {
    /// `Send` on native targets; no bound on `wasm32`.
    pub trait MaybeSend {}
    impl<T: ?Sized> MaybeSend for T {}
    /// `Sync` on native targets; no bound on `wasm32`.
    pub trait MaybeSync {}
    impl<T: ?Sized> MaybeSync for T {}
}

pub use bounds::{MaybeSend, MaybeSync};

/// A typed, versioned key-value store of one namespace, with a guaranteed
/// watch. See the crate docs for the contract every implementation keeps.
///
/// Futures returned by a store do not depend on any particular executor.
pub trait Store<T: StoreValue>: MaybeSend + MaybeSync {
    /// The entry at `kind`/`key`, if any.
    fn get(&self, kind: &str, key: &str) -> impl Future<Output = Result<Option<Entry<T>>>> + MaybeSend;

    /// The entries of `kind` passing every filter (AND), sorted by key.
    fn list(
        &self,
        kind: &str,
        filters: &[Filter<T>],
    ) -> impl Future<Output = Result<Vec<(String, Entry<T>)>>> + MaybeSend;

    /// The number of keys of `kind`.
    fn count(&self, kind: &str) -> impl Future<Output = Result<usize>> + MaybeSend;

    /// The keys of `kind`, sorted.
    fn keys(&self, kind: &str) -> impl Future<Output = Result<Vec<String>>> + MaybeSend;

    /// The values of `kind`, sorted by key.
    fn values(&self, kind: &str) -> impl Future<Output = Result<Vec<T>>> + MaybeSend;

    /// Every entry of `kind`, by key.
    fn get_all(&self, kind: &str) -> impl Future<Output = Result<BTreeMap<String, Entry<T>>>> + MaybeSend;

    /// Writes `value`; `Unchanged` (nothing written, no event) when the compare
    /// function judges it equal to the stored value.
    fn set(
        &self,
        kind: &str,
        key: &str,
        value: T,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Written>> + MaybeSend;

    /// Atomic read-modify-write of an existing key; `f` must not call the store.
    fn set_fn<F, E>(
        &self,
        kind: &str,
        key: &str,
        f: F,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Written>> + MaybeSend
    where
        F: FnOnce(&T) -> std::result::Result<T, E> + MaybeSend + 'static,
        E: Into<BoxError> + 'static;

    /// Atomic JSON Merge Patch (RFC 7396) of an existing key: the stored
    /// value with `patch` applied, validated as a whole; `Unchanged` when
    /// the result equals the stored value. A missing key is
    /// [`Error::KeyNotFound`](crate::Error::KeyNotFound): a patch edits an
    /// entry, it never creates one. See [`crate::json::merge_patch`].
    fn patch(
        &self,
        kind: &str,
        key: &str,
        patch: serde_json::Value,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Written>> + MaybeSend;

    /// Merges many keys into `kind`, all or nothing; outcomes in key order.
    fn set_many(
        &self,
        kind: &str,
        items: Vec<(String, T)>,
    ) -> impl Future<Output = Result<Vec<(String, Written)>>> + MaybeSend;

    /// Removes `kind`/`key`; `None` if it did not exist.
    fn delete(
        &self,
        kind: &str,
        key: &str,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Option<Deleted<T>>>> + MaybeSend;

    /// Subscribes to the changes of `kind`.
    fn watch(&self, kind: &str, opts: WatchOptions) -> impl Future<Output = Result<Watch<T>>> + MaybeSend;

    /// Subscribes to the changes of every kind of the namespace.
    fn watch_all(&self, opts: WatchOptions) -> impl Future<Output = Result<Watch<T>>> + MaybeSend;

    /// The namespace revision of the last committed change.
    fn rev(&self) -> impl Future<Output = Result<u64>> + MaybeSend;

    /// Closes the store: every later call fails with `Closed`, every watch
    /// ends. Idempotent.
    fn close(&self) -> impl Future<Output = ()> + MaybeSend;
}
