//! What the write benchmarks share: the keys, the values, and the loop that
//! writes to a store directly.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::{Value, json};
use store_core::SetOptions;
use sync_server::backend::Durable;

/// Writes cycle over this many keys of one kind.
pub const KEYS: u64 = 1_000;

/// The value of write `i`.
pub fn value(i: u64) -> Value {
    json!({"title": format!("task {i}"), "done": i.is_multiple_of(2), "n": i})
}

/// `writers` concurrent writers on `store`, each awaiting its write before
/// the next, until `budget` has passed: (writes, elapsed).
pub async fn write_loops(store: &Durable<Value>, writers: u64, budget: Duration) -> (u64, Duration) {
    let start = Instant::now();
    let loops = (0..writers).map(|w| async move {
        let mut i = w;
        let mut done = 0u64;
        while start.elapsed() < budget {
            let key = format!("k{}", i % KEYS);
            store
                .set("task", &key, value(i), SetOptions::default())
                .await
                .unwrap();
            done += 1;
            i += writers;
        }
        done
    });
    let done = join_all(loops).await.into_iter().sum();
    (done, start.elapsed())
}
