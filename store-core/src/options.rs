//! How a store is configured: validation per kind, the compare function and
//! history retention; plus the read filters of `list`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use crate::json::{default_equal, to_json};
use crate::schema::Schema;
use crate::{Error, MaybeSend, MaybeSync, Result, StoreValue};

// The functions a store keeps are shared across threads on native targets;
// in the browser (one thread) they may hold JavaScript values, as the
// `Store` trait's `MaybeSend`/`MaybeSync` bounds allow.
#[cfg(not(target_arch = "wasm32"))]
type ValidateFn<T> = dyn Fn(&str, &T) -> std::result::Result<(), String> + Send + Sync;
#[cfg(not(target_arch = "wasm32"))]
type CompareFn<T> = dyn Fn(&T, &T) -> bool + Send + Sync;
#[cfg(not(target_arch = "wasm32"))]
type FilterFn<T> = dyn Fn(&str, &T) -> bool + Send + Sync;
#[cfg(target_arch = "wasm32")]
type ValidateFn<T> = dyn Fn(&str, &T) -> std::result::Result<(), String>;
#[cfg(target_arch = "wasm32")]
type CompareFn<T> = dyn Fn(&T, &T) -> bool;
#[cfg(target_arch = "wasm32")]
type FilterFn<T> = dyn Fn(&str, &T) -> bool;

/// The default number of revisions of history kept for `watch from rev`.
pub const DEFAULT_RETENTION: usize = 10_000;

/// The configuration of a store, shared by every backend.
///
/// ```
/// use store_core::{schema::Schema, StoreOptions};
/// use serde_json::{json, Value};
///
/// let options = StoreOptions::<Value>::new()
///     .schema("task", Schema::compile(json!({"type": "object", "required": ["title"]})).unwrap())
///     .validator("task", |_key, v| match v["title"].as_str() {
///         Some(t) if t.trim().is_empty() => Err("title must not be blank".into()),
///         _ => Ok(()),
///     })
///     .retention(1_000);
/// ```
pub struct StoreOptions<T> {
    pub(crate) validators: HashMap<String, Vec<Arc<ValidateFn<T>>>>,
    pub(crate) schemas: BTreeMap<String, Schema>,
    pub(crate) compare: Option<Arc<CompareFn<T>>>,
    pub(crate) retention: usize,
}

impl<T> Default for StoreOptions<T> {
    fn default() -> Self {
        StoreOptions {
            validators: HashMap::new(),
            schemas: BTreeMap::new(),
            compare: None,
            retention: DEFAULT_RETENTION,
        }
    }
}

impl<T> Clone for StoreOptions<T> {
    fn clone(&self) -> Self {
        StoreOptions {
            validators: self.validators.clone(),
            schemas: self.schemas.clone(),
            compare: self.compare.clone(),
            retention: self.retention,
        }
    }
}

impl<T> fmt::Debug for StoreOptions<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("validated_kinds", &self.validators.keys().collect::<Vec<_>>())
            .field("schemas", &self.schemas.keys().collect::<Vec<_>>())
            .field("custom_compare", &self.compare.is_some())
            .field("retention", &self.retention)
            .finish()
    }
}

impl<T: StoreValue> StoreOptions<T> {
    /// Options with no validation, semantic JSON equality as the compare
    /// function and [`DEFAULT_RETENTION`] revisions of history.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a validator for `kind`, called with the key and the new value
    /// before every write; an `Err(message)` rejects the write with
    /// [`Error::Validation`]. Several validators of one kind all run.
    ///
    /// Validators run while the store is locked for the write: they must not
    /// call the store (that would deadlock).
    #[must_use]
    pub fn validator<F>(mut self, kind: impl Into<String>, f: F) -> Self
    where
        F: Fn(&str, &T) -> std::result::Result<(), String> + MaybeSend + MaybeSync + 'static,
    {
        self.validators.entry(kind.into()).or_default().push(Arc::new(f));
        self
    }

    /// Sets the JSON Schema that every value of `kind` must satisfy. Schemas
    /// are declarative, so servers enforce them and ship them to clients.
    #[must_use]
    pub fn schema(mut self, kind: impl Into<String>, schema: Schema) -> Self {
        self.schemas.insert(kind.into(), schema);
        self
    }

    /// Replaces the compare function: a write whose value it judges equal to
    /// the stored one is `Unchanged` (no version, no revision, no event).
    ///
    /// The default, semantic JSON equality, serializes both values of a typed
    /// `T` to compare them; a `T: PartialEq` whose equality means the same is
    /// much cheaper with `.compare(|a, b| a == b)`. Like validators, it runs
    /// under the store's write lock and must not call the store.
    #[must_use]
    pub fn compare<F>(mut self, f: F) -> Self
    where
        F: Fn(&T, &T) -> bool + MaybeSend + MaybeSync + 'static,
    {
        self.compare = Some(Arc::new(f));
        self
    }

    /// How many of the most recent revisions are kept for resuming watches;
    /// resuming from an older one yields [`Error::Compacted`].
    #[must_use]
    pub fn retention(mut self, revisions: usize) -> Self {
        self.retention = revisions;
        self
    }

    /// How many revisions of history are kept (see [`StoreOptions::retention`]).
    #[must_use]
    pub fn retained_revisions(&self) -> usize {
        self.retention
    }

    /// The schemas by kind.
    #[must_use]
    pub fn schemas(&self) -> &BTreeMap<String, Schema> {
        &self.schemas
    }

    pub(crate) fn equal(&self, a: &T, b: &T) -> bool {
        match &self.compare {
            Some(f) => f(a, b),
            None => default_equal(a, b),
        }
    }

    pub(crate) fn validate(&self, kind: &str, key: &str, value: &T) -> Result<()> {
        let invalid = |message: String| Error::Validation {
            kind: kind.to_owned(),
            key: key.to_owned(),
            message,
        };
        if let Some(schema) = self.schemas.get(kind) {
            schema
                .validate(to_json(value)?.as_ref())
                .map_err(|e| invalid(e.to_string()))?;
        }
        for f in self.validators.get(kind).into_iter().flatten() {
            f(key, value).map_err(invalid)?;
        }
        Ok(())
    }
}

/// A predicate over `(key, value)` for `list`; several filters compose with
/// AND. Filters run under the store's read lock and must not call the store.
pub struct Filter<T>(Arc<FilterFn<T>>);

impl<T> Filter<T> {
    /// A filter from a predicate on the key and the value.
    pub fn new(f: impl Fn(&str, &T) -> bool + MaybeSend + MaybeSync + 'static) -> Self {
        Filter(Arc::new(f))
    }

    /// Keeps keys starting with `prefix`.
    pub fn key_prefix(prefix: impl Into<String>) -> Self
    where
        T: 'static,
    {
        let prefix = prefix.into();
        Filter::new(move |key, _| key.starts_with(&prefix))
    }

    /// Whether `(key, value)` passes.
    #[must_use]
    pub fn matches(&self, key: &str, value: &T) -> bool {
        (self.0)(key, value)
    }

    /// Whether `(key, value)` passes every filter of `filters`.
    #[must_use]
    pub fn all(filters: &[Filter<T>], key: &str, value: &T) -> bool {
        filters.iter().all(|f| f.matches(key, value))
    }
}

impl<T> Clone for Filter<T> {
    fn clone(&self) -> Self {
        Filter(self.0.clone())
    }
}

impl<T> fmt::Debug for Filter<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Filter(..)")
    }
}
