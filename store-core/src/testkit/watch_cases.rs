//! Cases of the watch contract.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use futures_util::future::join;
use serde_json::{Value, json};

use super::{Backend, Lcg, apply, expect_end, expect_quiet, next_event, options, state, yield_now};
use crate::{Error, EventType, SetOptions, Store, WatchOptions};

const NONE: SetOptions = SetOptions { if_version: None };

/// Events arrive in commit order with their type, value, version and revision;
/// a delete carries the removed value.
pub async fn live_events_in_commit_order<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let mut w = s.watch("t", WatchOptions::new()).await.unwrap();
    s.set("t", "a", json!(1), NONE).await.unwrap();
    s.set("t", "b", json!(2), NONE).await.unwrap();
    s.set("t", "a", json!(3), NONE).await.unwrap();
    s.delete("t", "b", NONE).await.unwrap();
    let want = [
        ("a", EventType::Create, json!(1), 1, 1),
        ("b", EventType::Create, json!(2), 1, 2),
        ("a", EventType::Update, json!(3), 2, 3),
        ("b", EventType::Delete, json!(2), 1, 4),
    ];
    for (key, ty, value, version, rev) in want {
        let e = next_event(&mut w, "live events").await;
        assert_eq!(
            (
                e.kind.as_str(),
                e.key.as_str(),
                e.event_type,
                &e.value,
                e.version,
                e.rev
            ),
            ("t", key, ty, &value, version, rev)
        );
    }
}

/// A watch sees only its kind.
pub async fn watch_isolates_kinds<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let mut w = s.watch("a", WatchOptions::new()).await.unwrap();
    s.set("b", "x", json!(1), NONE).await.unwrap();
    s.set("a", "x", json!(2), NONE).await.unwrap();
    let e = next_event(&mut w, "kind isolation").await;
    assert_eq!((e.kind.as_str(), e.rev), ("a", 2));
}

/// Type filters deliver only the chosen types.
pub async fn type_filter<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let mut deletes = s
        .watch("t", WatchOptions::new().types([EventType::Delete]))
        .await
        .unwrap();
    let mut writes = s
        .watch(
            "t",
            WatchOptions::new().types([EventType::Create, EventType::Update]),
        )
        .await
        .unwrap();
    s.set("t", "a", json!(1), NONE).await.unwrap();
    s.set("t", "a", json!(2), NONE).await.unwrap();
    s.delete("t", "a", NONE).await.unwrap();
    let e = next_event(&mut deletes, "delete filter").await;
    assert_eq!((e.event_type, e.rev), (EventType::Delete, 3));
    assert_eq!(next_event(&mut writes, "write filter").await.rev, 1);
    assert_eq!(next_event(&mut writes, "write filter").await.rev, 2);
    s.set("t", "z", json!(0), NONE).await.unwrap();
    assert_eq!(
        next_event(&mut writes, "write filter skips the delete").await.rev,
        4
    );
}

/// Replay delivers the current entries (in key order) before any live change.
pub async fn replay_precedes_live<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    s.set("t", "b", json!(1), NONE).await.unwrap();
    s.set("t", "a", json!(2), NONE).await.unwrap();
    s.set("t", "b", json!(3), NONE).await.unwrap();
    s.set("other", "x", json!(0), NONE).await.unwrap();
    let mut w = s.watch("t", WatchOptions::new().replay()).await.unwrap();
    s.set("t", "c", json!(4), NONE).await.unwrap();
    let e = next_event(&mut w, "replay").await;
    assert_eq!(
        (e.key.as_str(), e.event_type, &e.value, e.version, e.rev),
        ("a", EventType::Create, &json!(2), 1, 2)
    );
    let e = next_event(&mut w, "replay").await;
    assert_eq!(
        (e.key.as_str(), e.event_type, &e.value, e.version, e.rev),
        ("b", EventType::Create, &json!(3), 2, 3)
    );
    let e = next_event(&mut w, "live after replay").await;
    assert_eq!((e.key.as_str(), e.rev), ("c", 5));
    // A replay of an empty kind is just live.
    let mut empty = s.watch("none", WatchOptions::new().replay()).await.unwrap();
    expect_quiet(&s, &mut empty, "none", "empty replay").await;
}

/// Subscribing with replay while writers run: the consumer applying the
/// events converges, and no key's version ever goes backwards (a replayed
/// event after a live one would). Repeated with many schedules.
pub async fn replay_interleaved_with_writers<B: Backend>(b: &B) {
    for seed in 0..40u64 {
        let s = b.open(options()).await;
        let mut rng = Lcg::new(seed);
        let subscribe_after = rng.below(30);
        let plan: Vec<(u64, u64, bool)> = (0..60)
            .map(|_| (rng.below(6), rng.below(3), rng.below(5) == 0))
            .collect();
        let writer = async {
            for (key, pause, delete) in plan {
                for _ in 0..pause {
                    yield_now().await;
                }
                let key = format!("k{key}");
                if delete {
                    s.delete("t", &key, NONE).await.unwrap();
                } else {
                    s.set("t", &key, json!(rng_value(&key, pause)), NONE)
                        .await
                        .unwrap();
                }
            }
        };
        let subscriber = async {
            for _ in 0..subscribe_after {
                yield_now().await;
            }
            s.watch("t", WatchOptions::new().replay()).await.unwrap()
        };
        let ((), mut w) = join(writer, subscriber).await;
        drain_and_compare(&s, &mut w, seed).await;
    }
}

fn rng_value(key: &str, n: u64) -> Value {
    json!({"key": key, "n": n})
}

/// Drains every event up to the store's head, checks that they form a
/// replay (creates in key order) followed by live changes in revision order,
/// and that applying them converges on the store.
async fn drain_and_compare<S: Store<Value>>(s: &S, w: &mut crate::Watch<Value>, seed: u64) {
    let marker = format!("~end-{}", s.rev().await.unwrap());
    s.set("t", &marker, json!(null), NONE).await.unwrap();
    let mut events = Vec::new();
    loop {
        let e = next_event(w, "draining").await;
        if e.key == marker {
            break;
        }
        events.push(e);
    }
    let replayed = events
        .iter()
        .enumerate()
        .take_while(|(i, e)| e.event_type == EventType::Create && (*i == 0 || events[i - 1].key < e.key))
        .count();
    let mut last = events[..replayed].iter().map(|e| e.rev).max().unwrap_or(0);
    for e in &events[replayed..] {
        assert!(
            e.rev > last,
            "seed {seed}: {e:?} arrived after revision {last}: live events must follow the replay in order"
        );
        last = e.rev;
    }
    let mut model = BTreeMap::new();
    for e in &events {
        apply(&mut model, e);
    }
    let mut got = state(s, "t").await;
    got.remove(&marker);
    assert_eq!(
        model, got,
        "seed {seed}: a watcher applying its events must converge on the store"
    );
}

/// Falling `buffer_size` behind ends the watch with one `Overflow`, after
/// the buffered events.
pub async fn overflow_is_terminal<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let mut w = s.watch("t", WatchOptions::new().buffer_size(4)).await.unwrap();
    let mut healthy = s.watch("t", WatchOptions::new().buffer_size(100)).await.unwrap();
    for i in 0..10 {
        s.set("t", &format!("k{i}"), json!(i), NONE).await.unwrap();
    }
    for rev in 1..=4 {
        assert_eq!(next_event(&mut w, "buffered before overflow").await.rev, rev);
    }
    match w.next().await {
        Some(Err(Error::Overflow)) => {}
        other => panic!("expected one terminal Overflow, got {other:?}"),
    }
    expect_end(&mut w, "after overflow").await;
    for rev in 1..=10 {
        assert_eq!(
            next_event(&mut healthy, "another watcher is unaffected")
                .await
                .rev,
            rev
        );
    }
    s.set("t", "more", json!(1), NONE).await.unwrap();
    assert_eq!(next_event(&mut healthy, "writes go on").await.rev, 11);
}

/// A type filter never suppresses the overflow error.
pub async fn overflow_not_suppressed_by_type_filter<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    for i in 0..5 {
        s.set("t", &format!("k{i}"), json!(i), NONE).await.unwrap();
    }
    let mut w = s
        .watch("t", WatchOptions::new().types([EventType::Delete]).buffer_size(2))
        .await
        .unwrap();
    for i in 0..5 {
        s.delete("t", &format!("k{i}"), NONE).await.unwrap();
    }
    assert_eq!(next_event(&mut w, "buffered delete").await.rev, 6);
    assert_eq!(next_event(&mut w, "buffered delete").await.rev, 7);
    match w.next().await {
        Some(Err(Error::Overflow)) => {}
        other => panic!("a delete-only watch must still see Overflow: {other:?}"),
    }
    expect_end(&mut w, "after overflow").await;
}

/// Events a type filter drops do not count against the buffer.
pub async fn filtered_events_do_not_fill_buffer<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let mut w = s
        .watch("t", WatchOptions::new().types([EventType::Delete]).buffer_size(2))
        .await
        .unwrap();
    for i in 0..20 {
        s.set("t", "k", json!(i), NONE).await.unwrap();
    }
    s.delete("t", "k", NONE).await.unwrap();
    let e = next_event(&mut w, "the delete after many filtered writes").await;
    assert_eq!((e.event_type, e.rev), (EventType::Delete, 21));
}

/// Close ends every watch once, after what was already queued.
pub async fn close_ends_every_watch_once<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let mut a = s.watch("t", WatchOptions::new()).await.unwrap();
    let mut other = s.watch("u", WatchOptions::new().replay()).await.unwrap();
    s.set("t", "x", json!(1), NONE).await.unwrap();
    // Make sure the event reached the watch before closing.
    assert_eq!(next_event(&mut a, "before close").await.rev, 1);
    s.set("t", "y", json!(1), NONE).await.unwrap();
    let mut probe = s.watch("t", WatchOptions::new().from_rev(1)).await.unwrap();
    assert_eq!(next_event(&mut probe, "resumed").await.rev, 2);
    s.close().await;
    // What was delivered before close is still delivered, then the end.
    assert_eq!(next_event(&mut a, "queued before close").await.rev, 2);
    expect_end(&mut a, "after close").await;
    expect_end(&mut other, "idle watch after close").await;
    expect_end(&mut probe, "resumed watch after close").await;
    s.close().await;
    expect_end(&mut a, "after a second close").await;
}

/// Dropping a watch unsubscribes it without disturbing others.
pub async fn drop_unsubscribes<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let mut keep = s.watch("t", WatchOptions::new()).await.unwrap();
    for _ in 0..50 {
        let w = s.watch("t", WatchOptions::new().buffer_size(1)).await.unwrap();
        drop(w);
    }
    for i in 0..5 {
        s.set("t", "k", json!(i), NONE).await.unwrap();
    }
    for rev in 1..=5 {
        assert_eq!(next_event(&mut keep, "surviving watch").await.rev, rev);
    }
}

/// `from_rev` delivers exactly the kind's changes after the revision, then live.
pub async fn resume_from_rev<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    s.set("t", "a", json!(1), NONE).await.unwrap(); // 1
    s.set("u", "a", json!(1), NONE).await.unwrap(); // 2
    s.set("t", "a", json!(2), NONE).await.unwrap(); // 3
    s.delete("t", "a", NONE).await.unwrap(); // 4
    s.set("t", "b", json!(1), NONE).await.unwrap(); // 5
    let mut w = s.watch("t", WatchOptions::new().from_rev(1)).await.unwrap();
    s.set("t", "c", json!(1), NONE).await.unwrap(); // 6
    let revs = [3, 4, 5, 6];
    for rev in revs {
        assert_eq!(next_event(&mut w, "resume").await.rev, rev);
    }
    let mut all = s.watch("t", WatchOptions::new().from_rev(0)).await.unwrap();
    for rev in [1, 3, 4, 5, 6] {
        assert_eq!(next_event(&mut all, "resume from 0").await.rev, rev);
    }
    let mut head = s.watch("t", WatchOptions::new().from_rev(6)).await.unwrap();
    expect_quiet(&s, &mut head, "t", "resume from the head").await;
    let mut deletes = s
        .watch("t", WatchOptions::new().from_rev(0).types([EventType::Delete]))
        .await
        .unwrap();
    let e = next_event(&mut deletes, "resume with a type filter").await;
    assert_eq!((e.event_type, e.rev, &e.value), (EventType::Delete, 4, &json!(2)));
}

/// Resuming from before the retained history yields `Compacted { oldest }`.
pub async fn resume_compacted<B: Backend>(b: &B) {
    let s = b.open(options().retention(3)).await;
    for i in 0..10 {
        s.set("t", "k", json!(i), NONE).await.unwrap();
    }
    let mut w = s.watch("t", WatchOptions::new().from_rev(2)).await.unwrap();
    match w.next().await {
        Some(Err(Error::Compacted { oldest: 7 })) => {}
        other => panic!("expected Compacted {{ oldest: 7 }}, got {other:?}"),
    }
    expect_end(&mut w, "after compacted").await;
    let mut ok = s.watch("t", WatchOptions::new().from_rev(7)).await.unwrap();
    for rev in 8..=10 {
        assert_eq!(next_event(&mut ok, "resume at the oldest").await.rev, rev);
    }
}

/// Resuming from a revision the store never reached is an error, not silence.
pub async fn resume_ahead_of_head<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    s.set("t", "k", json!(1), NONE).await.unwrap();
    let mut w = s.watch("t", WatchOptions::new().from_rev(5)).await.unwrap();
    match w.next().await {
        Some(Err(Error::RevisionAhead {
            requested: 5,
            head: 1,
        })) => {}
        other => panic!("expected RevisionAhead, got {other:?}"),
    }
    expect_end(&mut w, "after revision ahead").await;
}

/// Interleaved writers: the watcher sees every revision once, in order.
pub async fn interleaved_writers_watch_order<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let mut w = s
        .watch("t", WatchOptions::new().buffer_size(10_000))
        .await
        .unwrap();
    let mut rng = Lcg::new(11);
    let writers = (0..6u64).map(|id| {
        let pauses: Vec<u64> = (0..40).map(|_| rng.below(3)).collect();
        let s = &s;
        async move {
            for (i, p) in pauses.into_iter().enumerate() {
                for _ in 0..p {
                    yield_now().await;
                }
                s.set("t", &format!("k{}", (id + i as u64) % 9), json!([id, i]), NONE)
                    .await
                    .unwrap();
            }
        }
    });
    futures_util::future::join_all(writers).await;
    let head = s.rev().await.unwrap();
    let mut model = BTreeMap::new();
    for rev in 1..=head {
        let e = next_event(&mut w, "interleaved writers").await;
        assert_eq!(e.rev, rev, "revisions arrive gap-free and in order");
        apply(&mut model, &e);
    }
    assert_eq!(model, state(&s, "t").await);
}

/// A watcher started at a random point (replay or resume) converges on the
/// store after random writes, deletes and batches.
pub async fn watcher_converges_under_interleaving<B: Backend>(b: &B) {
    for seed in 100..130u64 {
        let s = b.open(options()).await;
        let mut rng = Lcg::new(seed);
        for i in 0..rng.below(20) {
            s.set("t", &format!("k{}", rng.below(8)), json!(i), NONE)
                .await
                .unwrap();
        }
        let resume = rng.below(2) == 0;
        let start = if resume {
            let head = s.rev().await.unwrap();
            WatchOptions::new().from_rev(head)
        } else {
            WatchOptions::new().replay()
        };
        let mut w = s.watch("t", start).await.unwrap();
        let mut model = if resume {
            state(&s, "t").await
        } else {
            BTreeMap::new()
        };
        for i in 0..40 {
            let key = format!("k{}", rng.below(8));
            match rng.below(4) {
                0 => {
                    s.delete("t", &key, NONE).await.unwrap();
                }
                1 => {
                    let batch = (0..3).map(|j| (format!("k{}", rng.below(8)), json!(j))).collect();
                    s.set_many("t", batch).await.unwrap();
                }
                _ => {
                    s.set("t", &key, json!(i % 5), NONE).await.unwrap();
                }
            }
            if rng.below(3) == 0 {
                while w.ready() > 0 {
                    let e = next_event(&mut w, "drain").await;
                    apply(&mut model, &e);
                }
            }
        }
        let marker = "~end";
        s.set("t", marker, json!(null), NONE).await.unwrap();
        loop {
            let e = next_event(&mut w, "final drain").await;
            if e.key == marker {
                break;
            }
            apply(&mut model, &e);
        }
        let mut got = state(&s, "t").await;
        got.remove(marker);
        assert_eq!(model, got, "seed {seed}");
    }
}

/// `watch_all` sees every kind's changes, gap-free in commit order; its
/// replay is every entry (by kind, then key) as of `start_rev`.
pub async fn watch_all_kinds<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    s.set("b", "x", json!(1), NONE).await.unwrap(); // 1
    s.set("a", "y", json!(2), NONE).await.unwrap(); // 2
    s.set("a", "x", json!(3), NONE).await.unwrap(); // 3
    let mut replay = s.watch_all(WatchOptions::new().replay()).await.unwrap();
    assert_eq!(replay.start_rev(), 3);
    let mut live = s.watch_all(WatchOptions::new()).await.unwrap();
    s.delete("b", "x", NONE).await.unwrap(); // 4
    s.set("c", "z", json!(5), NONE).await.unwrap(); // 5
    let mut got = Vec::new();
    for _ in 0..5 {
        let e = next_event(&mut replay, "watch_all replay").await;
        got.push((e.kind.clone(), e.key.clone(), e.rev));
    }
    let want = [
        ("a", "x", 3),
        ("a", "y", 2),
        ("b", "x", 1),
        ("b", "x", 4),
        ("c", "z", 5),
    ];
    let want: Vec<(String, String, u64)> = want
        .iter()
        .map(|(k, key, r)| (k.to_string(), key.to_string(), *r))
        .collect();
    assert_eq!(got, want);
    for rev in [4, 5] {
        assert_eq!(next_event(&mut live, "watch_all live").await.rev, rev);
    }
    let mut resumed = s.watch_all(WatchOptions::new().from_rev(1)).await.unwrap();
    for rev in 2..=5 {
        assert_eq!(
            next_event(&mut resumed, "watch_all resume").await.rev,
            rev,
            "every kind, gap-free"
        );
    }
    s.close().await;
    expect_end(&mut live, "watch_all after close").await;
    assert!(matches!(
        s.watch_all(WatchOptions::new()).await,
        Err(Error::Closed)
    ));
}
