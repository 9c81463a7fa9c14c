//! The engine: one namespace's state and the rules of every write.
//!
//! The engine decides; it does no I/O. A write goes through three steps so
//! that a durable shell can persist between deciding and publishing:
//!
//! 1. [`Engine::begin`] opens a [`WriteTxn`]; [`Engine::set`],
//!    [`Engine::set_fn`], [`Engine::set_many`] and [`Engine::delete`] stage
//!    operations in it. Each staged operation is validated, compared and given
//!    its versions and revisions, or rejected whole, leaving the transaction
//!    as it was: a shell batching many clients' operations into one
//!    transaction (group commit) rejects only the offending one.
//! 2. The shell makes [`WriteTxn::events`] durable (the change records carry
//!    everything: kind, key, type, value, version, revision).
//! 3. [`Engine::commit`] applies the transaction, appends it to the retained
//!    history and publishes it to watchers.
//!
//! Staging reads the engine through `&self`, so readers may go on while a
//! shell persists; a shell must serialize writers (one open transaction at a
//! time), which [`Engine::commit`] checks.
//!
//! ```
//! use store_core::{Engine, SetOptions, StoreOptions, SetResult};
//! use serde_json::json;
//!
//! let mut engine = Engine::new(StoreOptions::new());
//! let mut txn = engine.begin();
//! let w = engine.set(&mut txn, "task", "t1", json!({"title": "write docs"}), SetOptions::default())?;
//! assert_eq!((w.result, w.version, w.rev), (SetResult::Created, 1, 1));
//! // A shell persists txn.events() here, then:
//! engine.commit(txn)?;
//! assert_eq!(engine.rev(), 1);
//! # Ok::<(), store_core::Error>(())
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use hashbrown::{Equivalent, HashMap};

use crate::hub::{self, Hub, Watch, WatchOptions};
use crate::schema::Schema;
use crate::{
    BoxError, Deleted, Entry, Error, Event, EventType, Filter, Result, SetOptions, SetResult, StoreOptions,
    StoreValue, Written,
};

/// The live entries: each key maps to the event that last wrote it, so one
/// allocation serves the entry, the retained history and every watcher.
type Kinds<T> = HashMap<String, Keys<T>>;
type Keys<T> = HashMap<String, Arc<Event<T>>>;

/// A transaction this long or longer finds its staged keys through an index
/// instead of scanning its events.
const INDEX_AFTER: usize = 16;

/// One namespace's entries, revision, retained history and watchers.
pub struct Engine<T> {
    options: StoreOptions<T>,
    kinds: Kinds<T>,
    rev: u64,
    history: VecDeque<Arc<Event<T>>>,
    hub: Hub<T>,
    closed: bool,
}

/// Operations staged against an engine, not yet applied.
#[derive(Debug)]
pub struct WriteTxn<T> {
    base_rev: u64,
    events: Vec<Arc<Event<T>>>,
    /// The last event of each `(kind, key)`, once there are many events.
    index: HashMap<(String, String), usize>,
}

/// Looks up a `(String, String)` index entry by borrowed parts; hashes as
/// the tuple does.
#[derive(Hash)]
struct KeyRef<'a>(&'a str, &'a str);

impl Equivalent<(String, String)> for KeyRef<'_> {
    fn equivalent(&self, key: &(String, String)) -> bool {
        self.0 == key.0 && self.1 == key.1
    }
}

impl<T> WriteTxn<T> {
    /// The change records staged so far, in commit order with consecutive
    /// revisions: what a shell must make durable before committing.
    #[must_use]
    pub fn events(&self) -> &[Arc<Event<T>>] {
        &self.events
    }

    /// Whether nothing would change on commit.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The revision the transaction was begun at.
    #[must_use]
    pub fn base_rev(&self) -> u64 {
        self.base_rev
    }

    fn next_rev(&self) -> u64 {
        self.base_rev + self.events.len() as u64 + 1
    }

    /// Marks the current end of the transaction, to undo later operations
    /// with [`WriteTxn::rollback_to`].
    #[must_use]
    pub fn savepoint(&self) -> usize {
        self.events.len()
    }

    /// Undoes every operation staged since `savepoint`, for a shell that
    /// rejects one operation of a batch after staging it (it could not be
    /// encoded or stored, or its function panicked).
    pub fn rollback_to(&mut self, savepoint: usize) {
        if savepoint >= self.events.len() {
            return;
        }
        self.events.truncate(savepoint);
        self.index.clear();
        if self.events.len() >= INDEX_AFTER {
            for (i, e) in self.events.iter().enumerate() {
                self.index.insert((e.kind.clone(), e.key.clone()), i);
            }
        }
    }

    /// The last staged event of `kind`/`key`.
    fn last(&self, kind: &str, key: &str) -> Option<&Arc<Event<T>>> {
        let i = if self.events.len() < INDEX_AFTER {
            self.events.iter().rposition(|e| e.key == key && e.kind == kind)
        } else {
            self.index.get(&KeyRef(kind, key)).copied()
        }?;
        Some(&self.events[i])
    }

    fn push(&mut self, event: Event<T>) {
        if self.events.len() + 1 == INDEX_AFTER {
            for (i, e) in self.events.iter().enumerate() {
                self.index.insert((e.kind.clone(), e.key.clone()), i);
            }
        }
        if self.events.len() + 1 >= INDEX_AFTER {
            self.index
                .insert((event.kind.clone(), event.key.clone()), self.events.len());
        }
        self.events.push(Arc::new(event));
    }
}

/// The entry view of the event that last wrote a key.
fn entry_of<T>(event: &Event<T>) -> Entry<&T> {
    Entry {
        value: &event.value,
        version: event.version,
        rev: event.rev,
    }
}

fn check_kind(kind: &str) -> Result<()> {
    if kind.is_empty() {
        Err(Error::KindRequired)
    } else {
        Ok(())
    }
}

/// The longest kind, and the longest key, a store accepts: in bytes of
/// UTF-8.
///
/// One limit for every backend, so that a write one backend takes is taken
/// by all: PostgreSQL indexes `(namespace, kind, key)` and refuses an index
/// row over about 2.7 KB, which two identifiers of this length and a
/// namespace of the protocol's 256 bytes stay under. Writes check it
/// ([`Error::KeyTooLong`]) before staging anything; reads of a longer key
/// find nothing. The sync protocol uses the same limit for the kind and key
/// of an op.
pub const MAX_KEY_BYTES: usize = 1024;

/// The identifier rules of a write, checked before anything is staged: a
/// kind (not empty) and a key of at most [`MAX_KEY_BYTES`], without the NUL
/// character, which PostgreSQL's text cannot hold. Public for what writes
/// a store's data by other paths (an import), to hold it to the same rules:
/// [`Error::KindRequired`], [`Error::KeyTooLong`] or [`Error::InvalidKey`].
pub fn check_key(kind: &str, key: &str) -> Result<()> {
    check_kind(kind)?;
    for (field, id) in [("kind", kind), ("key", key)] {
        if id.len() > MAX_KEY_BYTES {
            return Err(Error::KeyTooLong { field, len: id.len() });
        }
        if id.contains('\0') {
            return Err(Error::InvalidKey {
                field,
                reason: "contains the nul character (\\0)",
            });
        }
    }
    Ok(())
}

impl<T: StoreValue> Engine<T> {
    /// An empty engine at revision 0.
    #[must_use]
    pub fn new(options: StoreOptions<T>) -> Self {
        Engine {
            options,
            kinds: HashMap::new(),
            rev: 0,
            history: VecDeque::new(),
            hub: Hub::default(),
            closed: false,
        }
    }

    /// An engine restored from persisted state: its entries as of revision
    /// `rev`, and the tail of its change log (the events after some revision,
    /// up to and including `rev`, consecutive) to serve resuming watches.
    /// Only the last `retention` events are kept.
    pub fn restore(
        options: StoreOptions<T>,
        rev: u64,
        entries: impl IntoIterator<Item = (String, String, Entry<T>)>,
        history: impl IntoIterator<Item = Event<T>>,
    ) -> Result<Self> {
        let mut engine = Engine::new(options);
        engine.rev = rev;
        for (kind, key, entry) in entries {
            check_kind(&kind)?;
            if entry.rev > rev || entry.version == 0 {
                return Err(Error::Storage(
                    format!(
                        "entry {kind}/{key} has rev {} version {} beyond head {rev}",
                        entry.rev, entry.version
                    )
                    .into(),
                ));
            }
            let event_type = if entry.version == 1 {
                EventType::Create
            } else {
                EventType::Update
            };
            let event = Event {
                kind: kind.clone(),
                key: key.clone(),
                event_type,
                value: entry.value,
                version: entry.version,
                rev: entry.rev,
            };
            engine.kinds.entry(kind).or_default().insert(key, Arc::new(event));
        }
        for event in history {
            if event.rev > rev {
                return Err(Error::Storage(
                    format!("history holds revision {} beyond head {rev}", event.rev).into(),
                ));
            }
            engine.history.push_back(Arc::new(event));
            if engine.history.len() > engine.options.retention {
                engine.history.pop_front();
            }
        }
        let contiguous = engine
            .history
            .iter()
            .zip(engine.oldest_resumable() + 1..)
            .all(|(e, want)| e.rev == want);
        if !contiguous || engine.history.back().is_some_and(|e| e.rev != rev) {
            return Err(Error::Storage(
                format!("history does not end at revision {rev} without gaps").into(),
            ));
        }
        Ok(engine)
    }

    /// Replaces the engine's state with a persisted one (as
    /// [`Engine::restore`] reads it), for a shell that fell behind what its
    /// storage still holds. Every watch ends with [`Error::Compacted`], since
    /// changes it should have seen are gone; consumers re-list and watch
    /// again.
    pub fn reload(
        &mut self,
        rev: u64,
        entries: impl IntoIterator<Item = (String, String, Entry<T>)>,
        history: impl IntoIterator<Item = Event<T>>,
    ) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        let fresh = Engine::restore(self.options.clone(), rev, entries, history)?;
        self.hub.compact_all(fresh.oldest_resumable());
        self.kinds = fresh.kinds;
        self.rev = fresh.rev;
        self.history = fresh.history;
        Ok(())
    }

    /// The revision of the last committed change (0 for a new store).
    #[must_use]
    pub fn rev(&self) -> u64 {
        self.rev
    }

    /// The oldest revision a watch can resume from.
    #[must_use]
    pub fn oldest_resumable(&self) -> u64 {
        self.rev - self.history.len() as u64
    }

    /// The options the engine was made with.
    #[must_use]
    pub fn options(&self) -> &StoreOptions<T> {
        &self.options
    }

    /// The JSON Schemas by kind.
    #[must_use]
    pub fn schemas(&self) -> &BTreeMap<String, Schema> {
        &self.options.schemas
    }

    /// Whether [`Engine::close`] was called.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Closes the engine: every later call fails with [`Error::Closed`] and
    /// every watch ends after its queued events. Idempotent.
    pub fn close(&mut self) {
        self.closed = true;
        self.hub.close();
    }

    /// The number of live watchers.
    #[must_use]
    pub fn watcher_count(&self) -> usize {
        self.hub.len()
    }

    fn open(&self, kind: &str) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        check_kind(kind)
    }

    /// Whether a write to `kind`/`key` may be staged at all.
    fn writable(&self, kind: &str, key: &str) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        check_key(kind, key)
    }

    fn kind_map(&self, kind: &str) -> Result<Option<&Keys<T>>> {
        self.open(kind)?;
        Ok(self.kinds.get(kind))
    }

    // ---- reads ----

    /// The entry at `kind`/`key`.
    pub fn get(&self, kind: &str, key: &str) -> Result<Option<Entry<&T>>> {
        Ok(self.kind_map(kind)?.and_then(|m| m.get(key)).map(|e| entry_of(e)))
    }

    /// The number of keys of `kind`.
    pub fn count(&self, kind: &str) -> Result<usize> {
        Ok(self.kind_map(kind)?.map_or(0, HashMap::len))
    }

    /// The entries of `kind` that pass every filter, sorted by key.
    pub fn list(&self, kind: &str, filters: &[Filter<T>]) -> Result<Vec<(&str, Entry<&T>)>> {
        let mut out: Vec<(&str, Entry<&T>)> = self
            .kind_map(kind)?
            .into_iter()
            .flatten()
            .filter(|(k, e)| Filter::all(filters, k, &e.value))
            .map(|(k, e)| (k.as_str(), entry_of(e)))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Ok(out)
    }

    /// The kinds that hold at least one key, sorted.
    pub fn kinds(&self) -> Result<Vec<&str>> {
        if self.closed {
            return Err(Error::Closed);
        }
        let mut kinds: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
        kinds.sort_unstable();
        Ok(kinds)
    }

    // ---- writes ----

    /// Opens a write transaction at the current revision.
    #[must_use]
    pub fn begin(&self) -> WriteTxn<T> {
        WriteTxn {
            base_rev: self.rev,
            events: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The entry of `kind`/`key` as the transaction would leave it.
    fn current<'a>(&'a self, txn: &'a WriteTxn<T>, kind: &str, key: &str) -> Option<&'a Event<T>> {
        match txn.last(kind, key) {
            Some(e) => (e.event_type != EventType::Delete).then_some(&**e),
            None => self.kinds.get(kind)?.get(key).map(|e| &**e),
        }
    }

    fn check_version(current: Option<&Event<T>>, opts: SetOptions) -> Result<()> {
        let actual = current.map_or(0, |e| e.version);
        match opts.if_version {
            Some(expected) if expected != actual => Err(Error::Conflict { expected, actual }),
            _ => Ok(()),
        }
    }

    /// Stages `value` at `kind`/`key`. A value equal (per the compare
    /// function) to the stored one stages nothing and reports `Unchanged`.
    pub fn set(
        &self,
        txn: &mut WriteTxn<T>,
        kind: &str,
        key: &str,
        value: T,
        opts: SetOptions,
    ) -> Result<Written> {
        self.writable(kind, key)?;
        self.options.validate(kind, key, &value)?;
        let current = self.current(txn, kind, key);
        Self::check_version(current, opts)?;
        Ok(self.stage_put(txn, kind, key, value))
    }

    /// Atomic read-modify-write: stages `f(current value)`. Fails with
    /// [`Error::KeyNotFound`] for a missing key and [`Error::Function`] when
    /// `f` fails; either way nothing is staged.
    pub fn set_fn<F, E>(
        &self,
        txn: &mut WriteTxn<T>,
        kind: &str,
        key: &str,
        f: F,
        opts: SetOptions,
    ) -> Result<Written>
    where
        F: FnOnce(&T) -> std::result::Result<T, E>,
        E: Into<BoxError>,
    {
        self.writable(kind, key)?;
        let current = self.current(txn, kind, key).ok_or(Error::KeyNotFound)?;
        Self::check_version(Some(current), opts)?;
        let value = f(&current.value).map_err(|e| Error::Function(e.into()))?;
        self.options.validate(kind, key, &value)?;
        Ok(self.stage_put(txn, kind, key, value))
    }

    /// Atomic JSON Merge Patch ([`crate::json::merge_patch`]) of an existing
    /// key: stages its value with `patch` applied, validated as a whole.
    /// `Unchanged` when the result equals the stored value. Fails with
    /// [`Error::KeyNotFound`] for a missing key (a patch edits an entry; it
    /// never creates one) and [`Error::Validation`] when the patched value
    /// is invalid or not of the store's type; either way nothing is staged.
    pub fn patch(
        &self,
        txn: &mut WriteTxn<T>,
        kind: &str,
        key: &str,
        patch: &serde_json::Value,
        opts: SetOptions,
    ) -> Result<Written> {
        self.writable(kind, key)?;
        let current = self.current(txn, kind, key).ok_or(Error::KeyNotFound)?;
        Self::check_version(Some(current), opts)?;
        let value = crate::json::patched(&current.value, patch).map_err(|message| Error::Validation {
            kind: kind.to_owned(),
            key: key.to_owned(),
            message,
        })?;
        self.options.validate(kind, key, &value)?;
        Ok(self.stage_put(txn, kind, key, value))
    }

    /// Stages many keys of one kind: merged into the kind (other keys stay),
    /// unchanged values skipped, changes in key order. All or nothing: if any
    /// value is invalid, nothing is staged. A key given twice keeps its last value.
    pub fn set_many(
        &self,
        txn: &mut WriteTxn<T>,
        kind: &str,
        items: impl IntoIterator<Item = (String, T)>,
    ) -> Result<Vec<(String, Written)>> {
        self.writable(kind, "")?;
        let items: BTreeMap<String, T> = items.into_iter().collect();
        for (key, value) in &items {
            check_key(kind, key)?;
            self.options.validate(kind, key, value)?;
        }
        Ok(items
            .into_iter()
            .map(|(key, value)| {
                let w = self.stage_put(txn, kind, &key, value);
                (key, w)
            })
            .collect())
    }

    /// Stages the removal of `kind`/`key`; `None` if it does not exist
    /// (nothing staged).
    pub fn delete(
        &self,
        txn: &mut WriteTxn<T>,
        kind: &str,
        key: &str,
        opts: SetOptions,
    ) -> Result<Option<Deleted<T>>> {
        self.writable(kind, key)?;
        let current = self.current(txn, kind, key);
        Self::check_version(current, opts)?;
        let Some(prev) = current else {
            return Ok(None);
        };
        let prev = Entry {
            value: prev.value.clone(),
            version: prev.version,
            rev: prev.rev,
        };
        let rev = txn.next_rev();
        txn.push(Event {
            kind: kind.to_owned(),
            key: key.to_owned(),
            event_type: EventType::Delete,
            value: prev.value.clone(),
            version: prev.version,
            rev,
        });
        Ok(Some(Deleted { prev, rev }))
    }

    fn stage_put(&self, txn: &mut WriteTxn<T>, kind: &str, key: &str, value: T) -> Written {
        let (event_type, version) = match self.current(txn, kind, key) {
            Some(cur) if self.options.equal(&cur.value, &value) => {
                return Written {
                    result: SetResult::Unchanged,
                    version: cur.version,
                    rev: cur.rev,
                };
            }
            Some(cur) => (EventType::Update, cur.version + 1),
            None => (EventType::Create, 1),
        };
        let rev = txn.next_rev();
        txn.push(Event {
            kind: kind.to_owned(),
            key: key.to_owned(),
            event_type,
            value,
            version,
            rev,
        });
        let result = match event_type {
            EventType::Create => SetResult::Created,
            _ => SetResult::Updated,
        };
        Written { result, version, rev }
    }

    /// Applies a transaction begun on this engine, appends its events to the
    /// retained history and publishes them to watchers. Call it only once the
    /// events are durable. Fails with [`Error::StaleTransaction`] if another
    /// transaction was committed since this one began.
    pub fn commit(&mut self, txn: WriteTxn<T>) -> Result<()> {
        if self.closed {
            return Err(Error::Closed);
        }
        if txn.base_rev != self.rev {
            return Err(Error::StaleTransaction {
                base: txn.base_rev,
                head: self.rev,
            });
        }
        let Some(last) = txn.events.last() else {
            return Ok(());
        };
        self.rev = last.rev;
        for event in &txn.events {
            if event.event_type == EventType::Delete {
                if let Some(m) = self.kinds.get_mut(&event.kind) {
                    m.remove(&event.key);
                    if m.is_empty() {
                        self.kinds.remove(&event.kind);
                    }
                }
            } else {
                let keys = self.kinds.entry_ref(event.kind.as_str()).or_default();
                match keys.get_mut(&event.key) {
                    Some(slot) => *slot = event.clone(),
                    None => {
                        keys.insert(event.key.clone(), event.clone());
                    }
                }
            }
        }
        let events = txn.events;
        self.hub.publish(&events);
        let retention = self.options.retention;
        if retention > 0 {
            self.history.extend(events);
            let excess = self.history.len().saturating_sub(retention);
            self.history.drain(..excess);
        }
        Ok(())
    }

    /// Applies changes that were committed elsewhere (by another process
    /// sharing the same database), in revision order, and publishes them.
    /// Events at or below the engine's revision are skipped, so applying the
    /// same change twice is harmless; a gap is an error.
    pub fn apply_committed(&mut self, events: impl IntoIterator<Item = Event<T>>) -> Result<()> {
        let mut txn = self.begin();
        for event in events.into_iter().filter(|e| e.rev > self.rev) {
            if event.rev != txn.next_rev() {
                return Err(Error::Storage(
                    format!(
                        "change log gap: expected revision {}, found {}",
                        txn.next_rev(),
                        event.rev
                    )
                    .into(),
                ));
            }
            txn.push(event);
        }
        self.commit(txn)
    }

    // ---- watch ----

    /// Subscribes to the changes of `kind`. Registration and the replay (or
    /// resume) snapshot happen together under `&mut self`, so no change can
    /// fall between them or be delivered twice.
    pub fn watch(&mut self, kind: &str, opts: WatchOptions) -> Result<Watch<T>> {
        self.open(kind)?;
        self.subscribe(Some(kind), opts)
    }

    /// Subscribes to the changes of every kind, as [`Engine::watch`] does
    /// for one; a replay delivers every entry, by kind then key. This is
    /// what a sync server streams to a client.
    pub fn watch_all(&mut self, opts: WatchOptions) -> Result<Watch<T>> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.subscribe(None, opts)
    }

    fn subscribe(&mut self, kind: Option<&str>, opts: WatchOptions) -> Result<Watch<T>> {
        let of_kind = |e: &Event<T>| kind.is_none_or(|k| e.kind == k);
        let backlog: VecDeque<Arc<Event<T>>> = if let Some(from) = opts.resume_from() {
            if from > self.rev {
                return Ok(hub::revision_ahead(&opts, from, self.rev));
            }
            if from < self.oldest_resumable() {
                return Ok(hub::compacted(&opts, self.rev, self.oldest_resumable()));
            }
            let skip = (from - self.oldest_resumable()) as usize;
            self.history
                .iter()
                .skip(skip)
                .filter(|e| of_kind(e) && opts.wants(e.event_type))
                .cloned()
                .collect()
        } else if opts.is_replay() && opts.wants(EventType::Create) {
            let kinds = match kind {
                Some(k) => vec![k],
                None => self.kinds()?,
            };
            let mut backlog = VecDeque::new();
            for k in kinds {
                for (key, e) in self.list(k, &[])? {
                    backlog.push_back(Arc::new(Event {
                        kind: k.to_owned(),
                        key: key.to_owned(),
                        event_type: EventType::Create,
                        value: e.value.clone(),
                        version: e.version,
                        rev: e.rev,
                    }));
                }
            }
            backlog
        } else {
            VecDeque::new()
        };
        let key = kind.unwrap_or(hub::ALL_KINDS);
        Ok(self.hub.subscribe(key, &opts, self.rev, backlog))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::{FutureExt, StreamExt};
    use serde_json::{Value, json};

    use super::*;

    const NONE: SetOptions = SetOptions { if_version: None };

    fn event(
        kind: &str,
        key: &str,
        event_type: EventType,
        value: Value,
        version: u64,
        rev: u64,
    ) -> Event<Value> {
        Event {
            kind: kind.into(),
            key: key.into(),
            event_type,
            value,
            version,
            rev,
        }
    }

    fn take_ready(w: &mut Watch<Value>) -> Vec<u64> {
        let mut revs = Vec::new();
        while let Some(Some(Ok(e))) = w.next().now_or_never() {
            revs.push(e.rev);
        }
        revs
    }

    #[test]
    fn one_transaction_holds_many_operations_and_rejects_only_the_bad_one() {
        let options = StoreOptions::new().validator("t", |_, v: &Value| {
            if v.is_null() {
                Err("null is not a task".into())
            } else {
                Ok(())
            }
        });
        let mut engine = Engine::new(options);
        let mut w = engine.watch("t", WatchOptions::new()).unwrap();
        let mut txn = engine.begin();
        engine.set(&mut txn, "t", "a", json!(1), NONE).unwrap();
        assert!(matches!(
            engine.set(&mut txn, "t", "b", Value::Null, NONE),
            Err(Error::Validation { .. })
        ));
        // Later operations see the earlier ones of the same transaction.
        let w2 = engine
            .set(&mut txn, "t", "a", json!(2), SetOptions::if_version(1))
            .unwrap();
        assert_eq!((w2.result, w2.version, w2.rev), (SetResult::Updated, 2, 2));
        let d = engine.delete(&mut txn, "t", "a", NONE).unwrap().unwrap();
        assert_eq!((d.prev.version, d.rev), (2, 3));
        assert!(matches!(
            engine.set_fn(&mut txn, "t", "a", |v: &Value| Ok::<_, Error>(v.clone()), NONE),
            Err(Error::KeyNotFound)
        ));
        assert_eq!(txn.events().iter().map(|e| e.rev).collect::<Vec<_>>(), [1, 2, 3]);
        // Nothing is visible or published before commit.
        assert!(engine.get("t", "a").unwrap().is_none());
        assert_eq!(w.ready(), 0);
        engine.commit(txn).unwrap();
        assert_eq!(engine.rev(), 3);
        assert!(engine.get("t", "a").unwrap().is_none());
        assert_eq!(take_ready(&mut w), [1, 2, 3]);
    }

    #[test]
    fn a_long_transaction_equals_the_same_operations_one_by_one() {
        // Long enough to go through the transaction's key index.
        let ops: Vec<(bool, String, u64)> = (0..5 * INDEX_AFTER as u64)
            .map(|i| (i % 7 == 3, format!("k{}", (i * 5) % 11), i % 4))
            .collect();
        let mut batched: Engine<Value> = Engine::new(StoreOptions::new());
        let mut single: Engine<Value> = Engine::new(StoreOptions::new());
        let mut txn = batched.begin();
        for (delete, key, n) in &ops {
            let mut one = single.begin();
            if *delete {
                let a = batched.delete(&mut txn, "t", key, NONE).unwrap().map(|d| d.rev);
                let b = single.delete(&mut one, "t", key, NONE).unwrap().map(|d| d.rev);
                assert_eq!(a, b);
            } else {
                let a = batched.set(&mut txn, "t", key, json!(n), NONE).unwrap();
                let b = single.set(&mut one, "t", key, json!(n), NONE).unwrap();
                assert_eq!(a, b);
            }
            single.commit(one).unwrap();
        }
        batched.commit(txn).unwrap();
        assert_eq!(batched.rev(), single.rev());
        let state = |e: &Engine<Value>| -> Vec<(String, Entry<Value>)> {
            e.list("t", &[])
                .unwrap()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.cloned()))
                .collect()
        };
        assert_eq!(state(&batched), state(&single));
    }

    #[test]
    fn rolling_back_to_a_savepoint_undoes_later_operations() {
        let mut engine: Engine<Value> = Engine::new(StoreOptions::new());
        let mut txn = engine.begin();
        engine.set(&mut txn, "t", "a", json!(1), NONE).unwrap();
        for i in 0..2 * INDEX_AFTER {
            let sp = txn.savepoint();
            engine
                .set(&mut txn, "t", &format!("k{i}"), json!(i), NONE)
                .unwrap();
            engine.set(&mut txn, "t", "a", json!(100 + i), NONE).unwrap();
            txn.rollback_to(sp);
        }
        // Later operations see the state as of the savepoint.
        let w = engine.set(&mut txn, "t", "a", json!(2), NONE).unwrap();
        assert_eq!((w.version, w.rev), (2, 2));
        engine.commit(txn).unwrap();
        assert_eq!(engine.keys_for_test("t"), ["a"]);
        assert_eq!(engine.rev(), 2);
    }

    #[test]
    fn dropped_watchers_of_quiet_kinds_are_swept() {
        let mut engine: Engine<Value> = Engine::new(StoreOptions::new());
        let keep = engine.watch("kept", WatchOptions::new()).unwrap();
        for i in 0..1_000 {
            drop(engine.watch(&format!("quiet-{i}"), WatchOptions::new()).unwrap());
        }
        assert!(
            engine.hub.by_kind_len() <= 64,
            "{} kinds still held",
            engine.hub.by_kind_len()
        );
        assert_eq!(engine.watcher_count(), 1);
        drop(keep);
    }

    #[test]
    fn dropping_the_engine_ends_its_watches() {
        let mut engine: Engine<Value> = Engine::new(StoreOptions::new());
        let mut w = engine.watch("t", WatchOptions::new()).unwrap();
        drop(engine);
        assert!(matches!(w.next().now_or_never(), Some(None)));
    }

    #[test]
    fn a_transaction_begun_before_another_commit_is_stale() {
        let mut engine: Engine<Value> = Engine::new(StoreOptions::new());
        let mut first = engine.begin();
        let mut second = engine.begin();
        engine.set(&mut first, "t", "a", json!(1), NONE).unwrap();
        engine.set(&mut second, "t", "b", json!(1), NONE).unwrap();
        engine.commit(first).unwrap();
        assert!(matches!(
            engine.commit(second),
            Err(Error::StaleTransaction { base: 0, head: 1 })
        ));
        assert_eq!(engine.keys_for_test("t"), ["a"]);
    }

    #[test]
    fn restore_serves_entries_and_resumes_from_its_history() {
        let entries = vec![
            (
                "t".to_owned(),
                "a".to_owned(),
                Entry {
                    value: json!(2),
                    version: 2,
                    rev: 4,
                },
            ),
            (
                "t".to_owned(),
                "b".to_owned(),
                Entry {
                    value: json!(1),
                    version: 1,
                    rev: 5,
                },
            ),
        ];
        let history = vec![
            event("t", "a", EventType::Update, json!(2), 2, 4),
            event("t", "b", EventType::Create, json!(1), 1, 5),
        ];
        let mut engine = Engine::restore(StoreOptions::new(), 5, entries, history).unwrap();
        assert_eq!((engine.rev(), engine.oldest_resumable()), (5, 3));
        assert_eq!(engine.get("t", "a").unwrap().unwrap().version, 2);
        let mut resumed = engine.watch("t", WatchOptions::new().from_rev(3)).unwrap();
        assert_eq!(take_ready(&mut resumed), [4, 5]);
        let mut compacted = engine.watch("t", WatchOptions::new().from_rev(2)).unwrap();
        assert!(matches!(
            compacted.next().now_or_never(),
            Some(Some(Err(Error::Compacted { oldest: 3 })))
        ));
        let mut txn = engine.begin();
        let w = engine.set(&mut txn, "t", "a", json!(3), NONE).unwrap();
        assert_eq!((w.version, w.rev), (3, 6));
        engine.commit(txn).unwrap();
        assert_eq!(take_ready(&mut resumed), [6]);
    }

    #[test]
    fn restore_refuses_inconsistent_state() {
        let gap = vec![
            event("t", "a", EventType::Create, json!(1), 1, 3),
            event("t", "a", EventType::Update, json!(2), 2, 5),
        ];
        assert!(matches!(
            Engine::restore(StoreOptions::new(), 5, vec![], gap),
            Err(Error::Storage(_))
        ));
        let beyond: Vec<_> = (1..=3)
            .map(|r| event("t", "a", EventType::Update, json!(r), r, r))
            .collect();
        assert!(matches!(
            Engine::restore(StoreOptions::new(), 1, vec![], beyond),
            Err(Error::Storage(_))
        ));
        let short = vec![event("t", "a", EventType::Create, json!(1), 1, 3)];
        assert!(matches!(
            Engine::restore(StoreOptions::new(), 5, vec![], short),
            Err(Error::Storage(_))
        ));
        let future = vec![(
            "t".to_owned(),
            "a".to_owned(),
            Entry {
                value: json!(1),
                version: 1,
                rev: 9,
            },
        )];
        assert!(matches!(
            Engine::<Value>::restore(StoreOptions::new(), 5, future, vec![]),
            Err(Error::Storage(_))
        ));
        // Only the last `retention` events are kept.
        let long: Vec<_> = (1..=5)
            .map(|r| event("t", "a", EventType::Update, json!(r), r, r))
            .collect();
        let engine = Engine::restore(StoreOptions::new().retention(2), 5, vec![], long).unwrap();
        assert_eq!(engine.oldest_resumable(), 3);
    }

    #[test]
    fn changes_committed_elsewhere_apply_once_in_order() {
        let mut engine: Engine<Value> = Engine::new(StoreOptions::new());
        let mut w = engine.watch("t", WatchOptions::new()).unwrap();
        let remote = vec![
            event("t", "a", EventType::Create, json!(1), 1, 1),
            event("t", "a", EventType::Update, json!(2), 2, 2),
        ];
        engine.apply_committed(remote.clone()).unwrap();
        engine.apply_committed(remote).unwrap();
        assert_eq!(engine.rev(), 2);
        assert_eq!(take_ready(&mut w), [1, 2]);
        assert_eq!(engine.get("t", "a").unwrap().unwrap().cloned().version, 2);
        let gap = vec![event("t", "a", EventType::Delete, json!(2), 2, 4)];
        assert!(matches!(engine.apply_committed(gap), Err(Error::Storage(_))));
        assert_eq!(engine.rev(), 2);
    }

    #[test]
    fn reload_replaces_the_state_and_ends_watches_with_compacted() {
        let mut engine: Engine<Value> = Engine::new(StoreOptions::new());
        let mut txn = engine.begin();
        engine.set(&mut txn, "t", "old", json!(1), NONE).unwrap();
        engine.commit(txn).unwrap();
        let mut w = engine.watch("t", WatchOptions::new()).unwrap();
        let entries = vec![(
            "t".to_owned(),
            "new".to_owned(),
            Entry {
                value: json!(2),
                version: 3,
                rev: 9,
            },
        )];
        let history = vec![event("t", "new", EventType::Update, json!(2), 3, 9)];
        engine.reload(9, entries, history).unwrap();
        assert!(matches!(
            w.next().now_or_never(),
            Some(Some(Err(Error::Compacted { oldest: 8 })))
        ));
        assert!(matches!(w.next().now_or_never(), Some(None)));
        assert_eq!((engine.rev(), engine.keys_for_test("t")), (9, vec!["new"]));
        let mut txn = engine.begin();
        assert_eq!(
            engine.set(&mut txn, "t", "new", json!(3), NONE).unwrap().version,
            4
        );
    }

    #[test]
    fn retention_zero_keeps_no_history() {
        let mut engine: Engine<Value> = Engine::new(StoreOptions::new().retention(0));
        let mut txn = engine.begin();
        engine.set(&mut txn, "t", "a", json!(1), NONE).unwrap();
        engine.commit(txn).unwrap();
        assert_eq!(engine.oldest_resumable(), 1);
        let mut w = engine.watch("t", WatchOptions::new().from_rev(1)).unwrap();
        assert_eq!(take_ready(&mut w), Vec::<u64>::new());
        let mut old = engine.watch("t", WatchOptions::new().from_rev(0)).unwrap();
        assert!(matches!(
            old.next().now_or_never(),
            Some(Some(Err(Error::Compacted { oldest: 1 })))
        ));
    }

    impl<T: StoreValue> Engine<T> {
        fn keys_for_test(&self, kind: &str) -> Vec<&str> {
            self.list(kind, &[])
                .unwrap()
                .into_iter()
                .map(|(k, _)| k)
                .collect()
        }
    }
}
