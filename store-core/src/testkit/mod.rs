//! The conformance suite: the store and watch contracts, written once, run
//! against every backend.
//!
//! A backend proves itself by invoking [`conformance_suite!`](crate::conformance_suite)
//! in its tests with a function that opens a fresh, empty store from
//! [`StoreOptions`]:
//!
//! ```
//! use store_core::MemStore;
//!
//! // Plain #[test]s driven by a blocking executor:
//! store_core::conformance_suite!(
//!     block_on: futures_executor::block_on,
//!     open: |options| async move { MemStore::new(options) },
//! );
//! ```
//!
//! With an async test attribute instead, write
//! `conformance_suite!(test: tokio::test, open: …)` (or
//! `wasm_bindgen_test::wasm_bindgen_test` in the browser).
//!
//! Every case is an `async fn` that only awaits the store and its watches, so
//! it runs on any executor, the browser's included. Cases that race OS
//! threads ([`threaded`]) are generated on native targets only; their
//! single-threaded twins interleave futures instead and run everywhere.
//! A case fails by panicking with a message saying which rule broke.
//!
//! The sync tests share two harnesses: [`sync`] (a seeded generator and the
//! frames a test server sends first) and [`world`] (a simulated sync server
//! that speaks text frames, and a world of client sessions wired to it with
//! virtual time).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::StreamExt;
use serde_json::Value;

use crate::{Event, EventType, Store, StoreOptions, Watch};

pub mod store_cases;
pub mod sync;
#[cfg(not(target_arch = "wasm32"))]
pub mod threaded;
pub mod watch_cases;
pub mod world;

/// Opens fresh, empty stores for the suite.
pub trait Backend {
    /// The store type under test.
    type Store: Store<Value>;
    /// Opens a new, empty store (its own namespace, file or database) with
    /// `options`.
    fn open(&self, options: StoreOptions<Value>) -> impl Future<Output = Self::Store>;
}

impl<F, Fut, S> Backend for F
where
    F: Fn(StoreOptions<Value>) -> Fut,
    Fut: Future<Output = S>,
    S: Store<Value>,
{
    type Store = S;
    fn open(&self, options: StoreOptions<Value>) -> impl Future<Output = S> {
        self(options)
    }
}

/// Generates one test per conformance case.
///
/// `block_on: path` makes plain `#[test]`s that drive each case with that
/// blocking executor; `test: attr` makes `#[attr] async fn` tests. `open` is
/// a [`Backend`](crate::testkit::Backend): usually a closure
/// `|options| async move { … }` returning a fresh store.
#[macro_export]
macro_rules! conformance_suite {
    (block_on: $block_on:path, open: $open:expr $(,)?) => {
        $crate::__conformance_cases!(@sync $block_on, $open);
        $crate::__conformance_threaded!($open);
    };
    (test: $attr:meta, open: $open:expr $(,)?) => {
        $crate::__conformance_cases!(@async $attr, $open);
        $crate::__conformance_threaded!($open);
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    (@sync $block_on:path, $open:expr) => {
        $crate::__conformance_cases!(@list blocking ($block_on, $open));
    };
    (@async $attr:meta, $open:expr) => {
        $crate::__conformance_cases!(@list attr ($attr, $open));
    };
    (@list $mode:tt $args:tt) => {
        $crate::__conformance_cases!(@each $mode $args store_cases: [
            kind_required, set_get_versions_revisions, unchanged_spends_nothing,
            semantic_json_equality, custom_compare, revisions_gap_free_across_kinds,
            reads_sorted_by_key, list_filters_compose_with_and, set_fn_read_modify_write,
            set_fn_errors_write_nothing, patch_merges_into_the_stored_value,
            patch_errors_write_nothing, set_many_merges_in_key_order, set_many_all_or_nothing,
            delete_reports_previous, if_version_compare_and_set, validation_closures,
            validation_schema, close_is_final_and_idempotent, interleaved_writers_no_lost_update,
            key_size_limit, nul_character, recreate_restarts_version_with_a_new_rev,
        ]);
        $crate::__conformance_cases!(@each $mode $args watch_cases: [
            live_events_in_commit_order, watch_isolates_kinds, type_filter,
            replay_precedes_live, replay_interleaved_with_writers, overflow_is_terminal,
            overflow_not_suppressed_by_type_filter, filtered_events_do_not_fill_buffer,
            close_ends_every_watch_once, drop_unsubscribes, resume_from_rev,
            resume_compacted, resume_ahead_of_head, interleaved_writers_watch_order,
            watcher_converges_under_interleaving, watch_all_kinds,
        ]);
    };
    (@each blocking ($block_on:path, $open:expr) $module:ident: [$($case:ident),* $(,)?]) => {
        $(
            #[test]
            fn $case() {
                $block_on($crate::testkit::$module::$case(&$open));
            }
        )*
    };
    (@each attr ($attr:meta, $open:expr) $module:ident: [$($case:ident),* $(,)?]) => {
        $(
            #[$attr]
            async fn $case() {
                $crate::testkit::$module::$case(&$open).await;
            }
        )*
    };
}

#[doc(hidden)]
#[cfg(not(target_arch = "wasm32"))]
#[macro_export]
macro_rules! __conformance_threaded {
    ($open:expr) => {
        $crate::__conformance_threaded!(@each $open; [
            racing_writers_watch_order, racing_set_fn_no_lost_update,
            replay_races_writer_thread,
        ]);
    };
    (@each $open:expr; [$($case:ident),* $(,)?]) => {
        $(
            #[test]
            fn $case() {
                $crate::testkit::threaded::$case(&$open);
            }
        )*
    };
}

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
#[macro_export]
macro_rules! __conformance_threaded {
    ($open:expr) => {};
}

// ---- helpers shared by the cases ----

/// Options with nothing configured.
pub fn options() -> StoreOptions<Value> {
    StoreOptions::new()
}

/// The next event of `watch`; panics on an error or the end of the stream.
pub async fn next_event(watch: &mut Watch<Value>, what: &str) -> Arc<Event<Value>> {
    match watch.next().await {
        Some(Ok(event)) => event,
        Some(Err(e)) => panic!("{what}: expected an event, got error {e}"),
        None => panic!("{what}: expected an event, the watch ended"),
    }
}

/// Asserts the stream has ended, and stays ended.
pub async fn expect_end(watch: &mut Watch<Value>, what: &str) {
    for _ in 0..2 {
        if let Some(item) = watch.next().await {
            panic!("{what}: expected the watch to have ended, got {item:?}");
        }
    }
}

/// Asserts that nothing is delivered before the next write: writes a marker
/// to `kind` and expects it to be the very next event.
pub async fn expect_quiet<S: Store<Value>>(store: &S, watch: &mut Watch<Value>, kind: &str, what: &str) {
    let marker = format!("~marker-{}", store.rev().await.expect("rev"));
    store
        .set(kind, &marker, Value::Null, Default::default())
        .await
        .expect("marker write");
    let e = next_event(watch, what).await;
    assert_eq!(
        e.key, marker,
        "{what}: an unexpected event arrived before the marker: {e:?}"
    );
}

/// Applies `event` to a model of one kind.
pub fn apply(model: &mut BTreeMap<String, (Value, u64)>, event: &Event<Value>) {
    match event.event_type {
        EventType::Create | EventType::Update => {
            model.insert(event.key.clone(), (event.value.clone(), event.version));
        }
        EventType::Delete => {
            model.remove(&event.key);
        }
    }
}

/// The state of `kind` as `(value, version)` by key.
pub async fn state<S: Store<Value>>(store: &S, kind: &str) -> BTreeMap<String, (Value, u64)> {
    store
        .get_all(kind)
        .await
        .expect("get_all")
        .into_iter()
        .map(|(k, e)| (k, (e.value, e.version)))
        .collect()
}

/// A future that yields once to the executor, so that interleaved futures
/// take turns.
pub fn yield_now() -> impl Future<Output = ()> {
    struct YieldNow(bool);
    impl Future for YieldNow {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
    YieldNow(false)
}

/// A deterministic pseudo-random sequence (xorshift), so the interleaving
/// cases vary their schedules without a clock or a RNG dependency.
pub struct Lcg(u64);

impl Lcg {
    /// A sequence from `seed`.
    pub fn new(seed: u64) -> Self {
        Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
