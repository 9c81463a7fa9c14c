//! Cases that race OS threads (native targets only). Each thread drives the
//! store with a blocking executor, so these also prove that a backend's
//! futures need no particular runtime.

use std::collections::BTreeMap;
use std::thread;

use futures_executor::block_on;
use serde_json::{Value, json};

use super::{Backend, apply, next_event, options, state};
use crate::{Error, SetOptions, Store, WatchOptions};

const NONE: SetOptions = SetOptions { if_version: None };

/// Four threads write concurrently; a watcher sees every revision exactly
/// once, in order, and converges on the store.
pub fn racing_writers_watch_order<B: Backend>(b: &B) {
    let s = block_on(b.open(options()));
    let mut w = block_on(s.watch("t", WatchOptions::new().buffer_size(100_000))).unwrap();
    thread::scope(|scope| {
        for id in 0..4 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..250 {
                    let key = format!("k{}", (i * 7 + id) % 13);
                    if i % 11 == 0 {
                        block_on(s.delete("t", &key, NONE)).unwrap();
                    } else {
                        block_on(s.set("t", &key, json!([id, i]), NONE)).unwrap();
                    }
                }
            });
        }
    });
    block_on(async {
        let head = s.rev().await.unwrap();
        let mut model = BTreeMap::new();
        for rev in 1..=head {
            let e = next_event(&mut w, "racing writers").await;
            assert_eq!(e.rev, rev, "revisions arrive gap-free, in commit order");
            apply(&mut model, &e);
        }
        assert_eq!(model, state(&s, "t").await);
    });
}

/// Racing read-modify-writes lose no update.
pub fn racing_set_fn_no_lost_update<B: Backend>(b: &B) {
    let s = block_on(b.open(options()));
    block_on(s.set("c", "n", json!(0), NONE)).unwrap();
    thread::scope(|scope| {
        for _ in 0..4 {
            let s = &s;
            scope.spawn(move || {
                for _ in 0..100 {
                    block_on(s.set_fn(
                        "c",
                        "n",
                        |v: &Value| Ok::<_, Error>(json!(v.as_i64().unwrap() + 1)),
                        NONE,
                    ))
                    .unwrap();
                }
            });
        }
    });
    let e = block_on(s.get("c", "n")).unwrap().unwrap();
    assert_eq!((e.value, e.version), (json!(400), 401));
}

/// Subscribing with replay while another thread writes, many times: the
/// replayed snapshot and the live events neither overlap nor leave a gap.
pub fn replay_races_writer_thread<B: Backend>(b: &B) {
    for round in 0..50 {
        let s = block_on(b.open(options()));
        let w = thread::scope(|scope| {
            let s = &s;
            let writer = scope.spawn(move || {
                for i in 0..200 {
                    block_on(s.set("t", &format!("k{}", i % 17), json!(i), NONE)).unwrap();
                    if i % 9 == 0 {
                        block_on(s.delete("t", &format!("k{}", (i + 3) % 17), NONE)).unwrap();
                    }
                }
            });
            // Subscribe somewhere in the middle of the writer's run.
            for _ in 0..round * 3 {
                std::hint::spin_loop();
                thread::yield_now();
            }
            let w = block_on(s.watch("t", WatchOptions::new().replay().buffer_size(100_000))).unwrap();
            writer.join().expect("writer thread");
            w
        });
        let mut w = w;
        block_on(async {
            let marker = "~end";
            s.set("t", marker, json!(null), NONE).await.unwrap();
            let mut model = BTreeMap::new();
            let mut seen = BTreeMap::new();
            loop {
                let e = next_event(&mut w, "replay race").await;
                if e.key == marker {
                    break;
                }
                if let Some(prev) = seen.insert(e.key.clone(), e.rev) {
                    assert!(
                        e.rev > prev,
                        "round {round}: {} went back from rev {prev} to {}",
                        e.key,
                        e.rev
                    );
                }
                apply(&mut model, &e);
            }
            let mut got = state(&s, "t").await;
            got.remove(marker);
            assert_eq!(
                model, got,
                "round {round}: replay + live must converge on the store"
            );
        });
    }
}
