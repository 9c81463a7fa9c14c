//! [`Durable`]: the store type every durable backend hands out.

use std::collections::BTreeMap;
use std::future::{Future, ready};

use futures_channel::mpsc;
use store_core::sync::{self, Reject};
use store_core::{
    BoxError, Deleted, Entry, Filter, MaybeSend, MemStore, Result, SetOptions, Store, StoreValue, Watch,
    WatchOptions, Written,
};

use super::{Answer, Op, Outcome, Request, submit, unexpected};

/// A store whose writes are durable before they are acknowledged or
/// published. Reads are served from memory. Cheap to clone; clones share the
/// store. Futures it returns run on any executor.
///
/// A write is queued when its method is called: dropping the returned future
/// does not cancel it, it only discards the answer. Functions given to
/// `set_fn`, validators and the compare function run on the store's writer
/// and must not call the store; one that panics fails its own write only.
pub struct Durable<T> {
    mem: MemStore<T>,
    queue: mpsc::UnboundedSender<Request<T>>,
}

impl<T> Clone for Durable<T> {
    fn clone(&self) -> Self {
        Durable {
            mem: self.mem.clone(),
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for Durable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable").finish_non_exhaustive()
    }
}

/// A page of a kind's entries ([`Durable::page`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The entries, sorted by key.
    pub entries: Vec<(String, Entry<T>)>,
    /// Whether entries with larger keys follow the page.
    pub more: bool,
    /// The namespace revision the page was read at.
    pub rev: u64,
}

fn written<T>(outcome: Outcome<T>) -> Result<Written> {
    match outcome {
        Outcome::Written(w) => Ok(w),
        _ => Err(unexpected()),
    }
}

impl<T: StoreValue> Durable<T> {
    pub(crate) fn new(mem: MemStore<T>, queue: mpsc::UnboundedSender<Request<T>>) -> Self {
        Durable { mem, queue }
    }

    /// Writes `value`; resolves once it is durable.
    pub fn set(
        &self,
        kind: &str,
        key: &str,
        value: T,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Written>> + Send + use<T> {
        let op = Op::Set {
            kind: kind.to_owned(),
            key: key.to_owned(),
            value,
            opts,
        };
        let answer = submit(&self.queue, op);
        async move { answer.await.and_then(written) }
    }

    /// Atomic read-modify-write of an existing key, run by the writer.
    pub fn set_fn<F, E>(
        &self,
        kind: &str,
        key: &str,
        f: F,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Written>> + Send + use<T, F, E>
    where
        F: FnOnce(&T) -> std::result::Result<T, E> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        let f = Box::new(move |v: &T| f(v).map_err(Into::into));
        let op = Op::SetFn {
            kind: kind.to_owned(),
            key: key.to_owned(),
            f,
            opts,
        };
        let answer = submit(&self.queue, op);
        async move { answer.await.and_then(written) }
    }

    /// Atomic JSON Merge Patch of an existing key (see [`Store::patch`]).
    pub fn patch(
        &self,
        kind: &str,
        key: &str,
        patch: serde_json::Value,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Written>> + Send + use<T> {
        let op = Op::Patch {
            kind: kind.to_owned(),
            key: key.to_owned(),
            patch,
            opts,
        };
        let answer = submit(&self.queue, op);
        async move { answer.await.and_then(written) }
    }

    /// Merges many keys into `kind`, all or nothing.
    pub fn set_many(
        &self,
        kind: &str,
        items: Vec<(String, T)>,
    ) -> impl Future<Output = Result<Vec<(String, Written)>>> + Send + use<T> {
        let answer = submit(
            &self.queue,
            Op::SetMany {
                kind: kind.to_owned(),
                items,
            },
        );
        async move {
            match answer.await? {
                Outcome::Many(w) => Ok(w),
                _ => Err(unexpected()),
            }
        }
    }

    /// Removes `kind`/`key`; `None` if it did not exist.
    pub fn delete(
        &self,
        kind: &str,
        key: &str,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Option<Deleted<T>>>> + Send + use<T> {
        let answer = submit(
            &self.queue,
            Op::Delete {
                kind: kind.to_owned(),
                key: key.to_owned(),
                opts,
            },
        );
        async move {
            match answer.await? {
                Outcome::Deleted(d) => Ok(d),
                _ => Err(unexpected()),
            }
        }
    }

    /// Applies a sync client's ops in order, each at most once: an op whose
    /// `(client_id, op_id)` was applied before (through any process sharing
    /// the database) is answered with its recorded answer and not applied
    /// again. An answer is recorded in the same transaction as the op's
    /// change, and returned once durable; answers saying the server failed
    /// or was stopping (codes `internal`, `shutting_down`) are not recorded,
    /// so a retry applies the op. Answers are kept for the op ids' time to
    /// live ([`SqliteOptions::op_ids_ttl`](super::sqlite::SqliteOptions::op_ids_ttl),
    /// the [maintainers](super::maintenance)); a retry after that is applied
    /// again, as a new op.
    pub fn apply_ops(
        &self,
        client_id: &str,
        ops: Vec<sync::Op>,
    ) -> impl Future<Output = Vec<Answer>> + Send + use<T> {
        let answers: Vec<_> = ops
            .into_iter()
            .map(|op| {
                let op_id = op.op_id.clone();
                (
                    op_id,
                    submit(
                        &self.queue,
                        Op::Client {
                            client_id: client_id.to_owned(),
                            op,
                        },
                    ),
                )
            })
            .collect();
        async move {
            let mut out = Vec::with_capacity(answers.len());
            for (op_id, answer) in answers {
                out.push(match answer.await {
                    Ok(Outcome::Answer(answer)) => answer,
                    Ok(_) => Err(Reject::of(op_id, &unexpected())),
                    Err(e) => Err(Reject::of(op_id, &e)),
                });
            }
            out
        }
    }

    /// A page of `kind` in key order: up to `limit` entries whose keys sort
    /// after `after` (from the first key when `None`), read from memory at
    /// one revision. Only the page's values are copied.
    pub fn page(&self, kind: &str, after: Option<&str>, limit: usize) -> Result<Page<T>> {
        self.mem.read_engine(|engine| {
            let all = engine.list(kind, &[])?;
            let start = after.map_or(0, |after| all.partition_point(|(key, _)| *key <= after));
            let rest = &all[start..];
            Ok(Page {
                entries: rest
                    .iter()
                    .take(limit)
                    .map(|(key, entry)| ((*key).to_owned(), entry.cloned()))
                    .collect(),
                more: rest.len() > limit,
                rev: engine.rev(),
            })
        })
    }

    /// Closes the store: watches end (after what they have queued), later
    /// calls fail with `Closed`, writes still queued are answered with
    /// `Closed`, and the writer releases the database once the batch it is
    /// committing, if any, is done. A write already being committed completes
    /// and is answered with its result.
    pub fn close(&self) {
        self.mem.close();
        self.queue.close_channel();
    }
}

impl<T: StoreValue> Store<T> for Durable<T> {
    fn get(&self, kind: &str, key: &str) -> impl Future<Output = Result<Option<Entry<T>>>> + MaybeSend {
        ready(self.mem.get(kind, key))
    }

    fn list(
        &self,
        kind: &str,
        filters: &[Filter<T>],
    ) -> impl Future<Output = Result<Vec<(String, Entry<T>)>>> + MaybeSend {
        ready(self.mem.list(kind, filters))
    }

    fn count(&self, kind: &str) -> impl Future<Output = Result<usize>> + MaybeSend {
        ready(self.mem.count(kind))
    }

    fn keys(&self, kind: &str) -> impl Future<Output = Result<Vec<String>>> + MaybeSend {
        ready(self.mem.keys(kind))
    }

    fn values(&self, kind: &str) -> impl Future<Output = Result<Vec<T>>> + MaybeSend {
        ready(self.mem.values(kind))
    }

    fn get_all(&self, kind: &str) -> impl Future<Output = Result<BTreeMap<String, Entry<T>>>> + MaybeSend {
        ready(self.mem.get_all(kind))
    }

    fn set(
        &self,
        kind: &str,
        key: &str,
        value: T,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Written>> + MaybeSend {
        Durable::set(self, kind, key, value, opts)
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
        Durable::set_fn(self, kind, key, f, opts)
    }

    fn patch(
        &self,
        kind: &str,
        key: &str,
        patch: serde_json::Value,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Written>> + MaybeSend {
        Durable::patch(self, kind, key, patch, opts)
    }

    fn set_many(
        &self,
        kind: &str,
        items: Vec<(String, T)>,
    ) -> impl Future<Output = Result<Vec<(String, Written)>>> + MaybeSend {
        Durable::set_many(self, kind, items)
    }

    fn delete(
        &self,
        kind: &str,
        key: &str,
        opts: SetOptions,
    ) -> impl Future<Output = Result<Option<Deleted<T>>>> + MaybeSend {
        Durable::delete(self, kind, key, opts)
    }

    fn watch(&self, kind: &str, opts: WatchOptions) -> impl Future<Output = Result<Watch<T>>> + MaybeSend {
        ready(self.mem.watch(kind, opts))
    }

    fn watch_all(&self, opts: WatchOptions) -> impl Future<Output = Result<Watch<T>>> + MaybeSend {
        ready(self.mem.watch_all(opts))
    }

    fn rev(&self) -> impl Future<Output = Result<u64>> + MaybeSend {
        ready(self.mem.rev())
    }

    fn close(&self) -> impl Future<Output = ()> + MaybeSend {
        Durable::close(self);
        ready(())
    }
}
