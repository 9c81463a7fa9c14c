//! `MemStore`: the in-memory backend, and the reference for the others.

use std::collections::BTreeMap;
use std::future::{Future, ready};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::store::MaybeSend;
use crate::{
    BoxError, Deleted, Engine, Entry, Filter, Result, SetOptions, Store, StoreOptions, StoreValue, Watch,
    WatchOptions, Written,
};

/// A thread-safe in-memory store of one namespace.
///
/// Cloning is cheap and shares the store. The inherent methods are
/// synchronous; the [`Store`] implementation wraps them in ready futures for
/// code that is generic over backends.
///
/// ```
/// use store_core::{MemStore, SetOptions, SetResult, StoreOptions};
///
/// #[derive(Clone, serde::Serialize, serde::Deserialize)]
/// struct Task { title: String, done: bool }
///
/// let store = MemStore::new(StoreOptions::new());
/// let w = store.set("task", "t1", Task { title: "ship".into(), done: false }, SetOptions::default())?;
/// assert_eq!(w.result, SetResult::Created);
/// store.set_fn("task", "t1", |t: &Task| Ok::<_, std::convert::Infallible>(Task { done: true, ..t.clone() }), SetOptions::default())?;
/// assert!(store.get("task", "t1")?.unwrap().value.done);
/// # Ok::<(), store_core::Error>(())
/// ```
pub struct MemStore<T> {
    engine: Arc<RwLock<Engine<T>>>,
}

impl<T> Clone for MemStore<T> {
    fn clone(&self) -> Self {
        MemStore {
            engine: self.engine.clone(),
        }
    }
}

impl<T> std::fmt::Debug for MemStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemStore").finish_non_exhaustive()
    }
}

impl<T: StoreValue> Default for MemStore<T> {
    fn default() -> Self {
        Self::new(StoreOptions::new())
    }
}

impl<T: StoreValue> MemStore<T> {
    /// An empty store.
    #[must_use]
    pub fn new(options: StoreOptions<T>) -> Self {
        Self::from_engine(Engine::new(options))
    }

    /// A store around an engine, for example one made by [`Engine::restore`].
    #[must_use]
    pub fn from_engine(engine: Engine<T>) -> Self {
        MemStore {
            engine: Arc::new(RwLock::new(engine)),
        }
    }

    /// Runs `f` with shared access to the engine; for shells that stage
    /// writes before persisting them.
    pub fn read_engine<R>(&self, f: impl FnOnce(&Engine<T>) -> R) -> R {
        f(&self.engine.read())
    }

    /// Runs `f` with exclusive access to the engine; for shells that commit
    /// persisted transactions or apply changes committed elsewhere.
    pub fn write_engine<R>(&self, f: impl FnOnce(&mut Engine<T>) -> R) -> R {
        f(&mut self.engine.write())
    }

    /// The entry at `kind`/`key`, if any.
    pub fn get(&self, kind: &str, key: &str) -> Result<Option<Entry<T>>> {
        Ok(self.engine.read().get(kind, key)?.map(|e| e.cloned()))
    }

    /// The entries of `kind` passing every filter, sorted by key.
    pub fn list(&self, kind: &str, filters: &[Filter<T>]) -> Result<Vec<(String, Entry<T>)>> {
        let engine = self.engine.read();
        Ok(engine
            .list(kind, filters)?
            .into_iter()
            .map(|(k, e)| (k.to_owned(), e.cloned()))
            .collect())
    }

    /// The number of keys of `kind`.
    pub fn count(&self, kind: &str) -> Result<usize> {
        self.engine.read().count(kind)
    }

    /// The keys of `kind`, sorted.
    pub fn keys(&self, kind: &str) -> Result<Vec<String>> {
        let engine = self.engine.read();
        Ok(engine
            .list(kind, &[])?
            .into_iter()
            .map(|(k, _)| k.to_owned())
            .collect())
    }

    /// The values of `kind`, sorted by key.
    pub fn values(&self, kind: &str) -> Result<Vec<T>> {
        let engine = self.engine.read();
        Ok(engine
            .list(kind, &[])?
            .into_iter()
            .map(|(_, e)| e.value.clone())
            .collect())
    }

    /// Every entry of `kind`, by key.
    pub fn get_all(&self, kind: &str) -> Result<BTreeMap<String, Entry<T>>> {
        let engine = self.engine.read();
        Ok(engine
            .list(kind, &[])?
            .into_iter()
            .map(|(k, e)| (k.to_owned(), e.cloned()))
            .collect())
    }

    /// The namespace revision of the last committed change.
    pub fn rev(&self) -> Result<u64> {
        let engine = self.engine.read();
        if engine.is_closed() {
            return Err(crate::Error::Closed);
        }
        Ok(engine.rev())
    }

    fn write<R>(&self, op: impl FnOnce(&Engine<T>, &mut crate::WriteTxn<T>) -> Result<R>) -> Result<R> {
        let mut engine = self.engine.write();
        let mut txn = engine.begin();
        let out = op(&engine, &mut txn)?;
        engine.commit(txn)?;
        Ok(out)
    }

    /// Writes `value` at `kind`/`key`.
    pub fn set(&self, kind: &str, key: &str, value: T, opts: SetOptions) -> Result<Written> {
        self.write(|e, txn| e.set(txn, kind, key, value, opts))
    }

    /// Atomic read-modify-write; `f` runs under the store's write lock and
    /// must not call the store.
    pub fn set_fn<F, E>(&self, kind: &str, key: &str, f: F, opts: SetOptions) -> Result<Written>
    where
        F: FnOnce(&T) -> std::result::Result<T, E>,
        E: Into<BoxError>,
    {
        self.write(|e, txn| e.set_fn(txn, kind, key, f, opts))
    }

    /// Atomic JSON Merge Patch of an existing key (see [`Store::patch`]).
    pub fn patch(
        &self,
        kind: &str,
        key: &str,
        patch: &serde_json::Value,
        opts: SetOptions,
    ) -> Result<Written> {
        self.write(|e, txn| e.patch(txn, kind, key, patch, opts))
    }

    /// Merges many keys into `kind`, all or nothing.
    pub fn set_many(
        &self,
        kind: &str,
        items: impl IntoIterator<Item = (String, T)>,
    ) -> Result<Vec<(String, Written)>> {
        self.write(|e, txn| e.set_many(txn, kind, items))
    }

    /// Removes `kind`/`key`; `None` if it did not exist.
    pub fn delete(&self, kind: &str, key: &str, opts: SetOptions) -> Result<Option<Deleted<T>>> {
        self.write(|e, txn| e.delete(txn, kind, key, opts))
    }

    /// Subscribes to the changes of `kind`.
    pub fn watch(&self, kind: &str, opts: WatchOptions) -> Result<Watch<T>> {
        self.engine.write().watch(kind, opts)
    }

    /// Subscribes to the changes of every kind.
    pub fn watch_all(&self, opts: WatchOptions) -> Result<Watch<T>> {
        self.engine.write().watch_all(opts)
    }

    /// The number of live watchers.
    #[must_use]
    pub fn watcher_count(&self) -> usize {
        self.engine.read().watcher_count()
    }

    /// Closes the store; idempotent.
    pub fn close(&self) {
        self.engine.write().close();
    }
}

impl<T: StoreValue> Store<T> for MemStore<T> {
    fn get(&self, kind: &str, key: &str) -> impl Future<Output = Result<Option<Entry<T>>>> + MaybeSend {
        ready(MemStore::get(self, kind, key))
    }

    fn list(
        &self,
        kind: &str,
        filters: &[Filter<T>],
    ) -> impl Future<Output = Result<Vec<(String, Entry<T>)>>> + MaybeSend {
        ready(MemStore::list(self, kind, filters))
    }

    fn count(&self, kind: &str) -> impl Future<Output = Result<usize>> + MaybeSend {
        ready(MemStore::count(self, kind))
    }

    fn keys(&self, kind: &str) -> impl Future<Output = Result<Vec<String>>> + MaybeSend {
        ready(MemStore::keys(self, kind))
    }

    fn values(&self, kind: &str) -> impl Future<Output = Result<Vec<T>>> + MaybeSend {
        ready(MemStore::values(self, kind))
    }

    fn get_all(&self, kind: &str) -> impl Future<Output = Result<BTreeMap<String, Entry<T>>>> + MaybeSend {
        ready(MemStore::get_all(self, kind))
    }

    fn set(
        &self,
        kind: &str,
        key: &str,
        value: T,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Written>> + MaybeSend {
        ready(MemStore::set(self, kind, key, value, opts))
    }

    fn set_fn<F, E>(
        &self,
        kind: &str,
        key: &str,
        f: F,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Written>> + MaybeSend
    where
        F: FnOnce(&T) -> std::result::Result<T, E> + MaybeSend + 'static,
        E: Into<BoxError> + 'static,
    {
        ready(MemStore::set_fn(self, kind, key, f, opts))
    }

    fn patch(
        &self,
        kind: &str,
        key: &str,
        patch: serde_json::Value,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Written>> + MaybeSend {
        ready(MemStore::patch(self, kind, key, &patch, opts))
    }

    fn set_many(
        &self,
        kind: &str,
        items: Vec<(String, T)>,
    ) -> impl Future<Output = Result<Vec<(String, Written)>>> + MaybeSend {
        ready(MemStore::set_many(self, kind, items))
    }

    fn delete(
        &self,
        kind: &str,
        key: &str,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Option<Deleted<T>>>> + MaybeSend {
        ready(MemStore::delete(self, kind, key, opts))
    }

    fn watch(&self, kind: &str, opts: WatchOptions) -> impl Future<Output = Result<Watch<T>>> + MaybeSend {
        ready(MemStore::watch(self, kind, opts))
    }

    fn watch_all(&self, opts: WatchOptions) -> impl Future<Output = Result<Watch<T>>> + MaybeSend {
        ready(MemStore::watch_all(self, opts))
    }

    fn rev(&self) -> impl Future<Output = Result<u64>> + MaybeSend {
        ready(MemStore::rev(self))
    }

    fn close(&self) -> impl Future<Output = ()> + MaybeSend {
        MemStore::close(self);
        ready(())
    }
}
