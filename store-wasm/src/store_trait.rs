//! [`IdbStore`] as a [`Store`], for Rust code compiled to `wasm32`: reads
//! from the engine in memory, writes through the store's writer.

use std::collections::BTreeMap;

use serde_json::Value;
use store_core::sync::replica::{LocalOp, Outcome};
use store_core::{
    BoxError, Deleted, Entry, Error, Filter, Result, SetOptions, Store, Watch, WatchOptions, Written,
};

use crate::store::IdbStore;

impl IdbStore {
    async fn written(&self, op: LocalOp) -> Result<Written> {
        match self.submit(op).await? {
            Outcome::Written(w, _) => Ok(w),
            _ => unreachable!("a set answers Written"),
        }
    }
}

impl Store<Value> for IdbStore {
    async fn get(&self, kind: &str, key: &str) -> Result<Option<Entry<Value>>> {
        Ok(self.engine()?.get(kind, key)?.map(|e| e.cloned()))
    }

    async fn list(&self, kind: &str, filters: &[Filter<Value>]) -> Result<Vec<(String, Entry<Value>)>> {
        let engine = self.engine()?;
        let list = engine.list(kind, filters)?;
        Ok(list
            .into_iter()
            .map(|(k, e)| (k.to_owned(), e.cloned()))
            .collect())
    }

    async fn count(&self, kind: &str) -> Result<usize> {
        self.engine()?.count(kind)
    }

    async fn keys(&self, kind: &str) -> Result<Vec<String>> {
        Ok(self.list(kind, &[]).await?.into_iter().map(|(k, _)| k).collect())
    }

    async fn values(&self, kind: &str) -> Result<Vec<Value>> {
        Ok(self
            .list(kind, &[])
            .await?
            .into_iter()
            .map(|(_, e)| e.value)
            .collect())
    }

    async fn get_all(&self, kind: &str) -> Result<BTreeMap<String, Entry<Value>>> {
        Ok(self.list(kind, &[]).await?.into_iter().collect())
    }

    async fn set(&self, kind: &str, key: &str, value: Value, opts: SetOptions) -> Result<Written> {
        let (kind, key, if_version) = (kind.to_owned(), key.to_owned(), opts.if_version);
        self.written(LocalOp::Set {
            kind,
            key,
            value,
            if_version,
        })
        .await
    }

    async fn set_fn<F, E>(&self, kind: &str, key: &str, f: F, opts: SetOptions) -> Result<Written>
    where
        F: FnOnce(&Value) -> std::result::Result<Value, E> + 'static,
        E: Into<BoxError> + 'static,
    {
        let (kind, key, if_version) = (kind.to_owned(), key.to_owned(), opts.if_version);
        let f = Box::new(move |v: &Value| f(v).map_err(Into::into));
        self.written(LocalOp::SetFn {
            kind,
            key,
            f,
            if_version,
        })
        .await
    }

    async fn patch(&self, kind: &str, key: &str, patch: Value, opts: SetOptions) -> Result<Written> {
        self.written(LocalOp::Patch {
            kind: kind.to_owned(),
            key: key.to_owned(),
            patch,
            if_version: opts.if_version,
        })
        .await
    }

    async fn set_many(&self, kind: &str, items: Vec<(String, Value)>) -> Result<Vec<(String, Written)>> {
        let kind = kind.to_owned();
        match self.submit(LocalOp::SetMany { kind, items }).await? {
            Outcome::Many(out) => Ok(out.into_iter().map(|(k, w, _)| (k, w)).collect()),
            _ => unreachable!("a set_many answers Many"),
        }
    }

    async fn delete(&self, kind: &str, key: &str, opts: SetOptions) -> Result<Option<Deleted<Value>>> {
        let (kind, key, if_version) = (kind.to_owned(), key.to_owned(), opts.if_version);
        match self
            .submit(LocalOp::Delete {
                kind,
                key,
                if_version,
            })
            .await?
        {
            Outcome::Deleted(d) => Ok(d.map(|(d, _)| d)),
            _ => unreachable!("a delete answers Deleted"),
        }
    }

    async fn watch(&self, kind: &str, opts: WatchOptions) -> Result<Watch<Value>> {
        self.engine_mut()?.watch(kind, opts)
    }

    async fn watch_all(&self, opts: WatchOptions) -> Result<Watch<Value>> {
        self.engine_mut()?.watch_all(opts)
    }

    async fn rev(&self) -> Result<u64> {
        let engine = self.engine()?;
        if engine.is_closed() {
            return Err(Error::Closed);
        }
        Ok(engine.rev())
    }

    async fn close(&self) {
        IdbStore::close(self).await;
    }
}
