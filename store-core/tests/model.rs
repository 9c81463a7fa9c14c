//! Property tests: `MemStore` against a plain model, and watchers that
//! converge on the store under random operations.

use std::collections::BTreeMap;

use futures_util::FutureExt;
use futures_util::StreamExt;
use proptest::prelude::*;
use serde_json::{Value, json};
use store_core::{Error, EventType, MemStore, SetOptions, SetResult, StoreOptions, WatchOptions};

#[derive(Debug, Clone)]
enum Op {
    Set {
        kind: u8,
        key: u8,
        value: u8,
        if_version: Option<u64>,
    },
    SetFn {
        kind: u8,
        key: u8,
        add: u8,
    },
    SetMany {
        kind: u8,
        items: Vec<(u8, u8)>,
    },
    Delete {
        kind: u8,
        key: u8,
        if_version: Option<u64>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let kind = 0u8..2;
    let key = 0u8..5;
    let value = 0u8..5;
    let if_version = prop::option::weighted(0.3, 0u64..4);
    prop_oneof![
        4 => (kind.clone(), key.clone(), value.clone(), if_version.clone())
            .prop_map(|(kind, key, value, if_version)| Op::Set { kind, key, value, if_version }),
        1 => (kind.clone(), key.clone(), 0u8..3).prop_map(|(kind, key, add)| Op::SetFn { kind, key, add }),
        1 => (kind.clone(), prop::collection::vec((key.clone(), value), 0..4))
            .prop_map(|(kind, items)| Op::SetMany { kind, items }),
        2 => (kind, key, if_version).prop_map(|(kind, key, if_version)| Op::Delete { kind, key, if_version }),
    ]
}

/// Value 4 is invalid (a validator rejects it), to exercise all-or-nothing.
fn v(n: u8) -> Value {
    json!({ "n": n })
}

fn options() -> StoreOptions<Value> {
    StoreOptions::new()
        .validator(
            "k0",
            |_, v: &Value| if v["n"] == 4 { Err("four".into()) } else { Ok(()) },
        )
        .validator(
            "k1",
            |_, v: &Value| if v["n"] == 4 { Err("four".into()) } else { Ok(()) },
        )
}

#[derive(Default)]
struct Model {
    rev: u64,
    entries: BTreeMap<(String, String), (Value, u64, u64)>,
}

impl Model {
    fn put(&mut self, kind: &str, key: &str, value: Value) -> (SetResult, u64, u64) {
        let k = (kind.to_owned(), key.to_owned());
        match self.entries.get(&k) {
            Some((old, version, rev)) if *old == value => (SetResult::Unchanged, *version, *rev),
            Some((_, version, _)) => {
                let version = version + 1;
                self.rev += 1;
                self.entries.insert(k, (value, version, self.rev));
                (SetResult::Updated, version, self.rev)
            }
            None => {
                self.rev += 1;
                self.entries.insert(k, (value, 1, self.rev));
                (SetResult::Created, 1, self.rev)
            }
        }
    }

    fn version(&self, kind: &str, key: &str) -> u64 {
        self.entries
            .get(&(kind.to_owned(), key.to_owned()))
            .map_or(0, |e| e.1)
    }
}

fn check_version(model: &Model, kind: &str, key: &str, if_version: Option<u64>) -> Option<(u64, u64)> {
    let actual = model.version(kind, key);
    if_version.filter(|&e| e != actual).map(|e| (e, actual))
}

fn run_op(store: &MemStore<Value>, model: &mut Model, op: &Op) {
    let none = SetOptions::default();
    match op {
        Op::Set {
            kind,
            key,
            value,
            if_version,
        } => {
            let (kind, key) = (format!("k{kind}"), format!("{key}"));
            let opts = SetOptions {
                if_version: *if_version,
            };
            let got = store.set(&kind, &key, v(*value), opts);
            if *value == 4 {
                assert!(matches!(got, Err(Error::Validation { .. })), "{got:?}");
            } else if let Some((expected, actual)) = check_version(model, &kind, &key, *if_version) {
                assert!(
                    matches!(got, Err(Error::Conflict { expected: e, actual: a }) if e == expected && a == actual),
                    "{got:?}"
                );
            } else {
                let w = got.unwrap();
                assert_eq!((w.result, w.version, w.rev), model.put(&kind, &key, v(*value)));
            }
        }
        Op::SetFn { kind, key, add } => {
            let (kind, key) = (format!("k{kind}"), format!("{key}"));
            let add = u64::from(*add);
            let got = store.set_fn(
                &kind,
                &key,
                move |old: &Value| Ok::<_, Error>(json!({"n": old["n"].as_u64().unwrap() + add})),
                none,
            );
            match model.entries.get(&(kind.clone(), key.clone())) {
                None => assert!(matches!(got, Err(Error::KeyNotFound)), "{got:?}"),
                Some((old, ..)) => {
                    let new = json!({"n": old["n"].as_u64().unwrap() + add});
                    if new["n"] == 4 {
                        assert!(matches!(got, Err(Error::Validation { .. })), "{got:?}");
                    } else {
                        let w = got.unwrap();
                        assert_eq!((w.result, w.version, w.rev), model.put(&kind, &key, new));
                    }
                }
            }
        }
        Op::SetMany { kind, items } => {
            let kind = format!("k{kind}");
            let batch: Vec<(String, Value)> = items.iter().map(|(k, n)| (format!("{k}"), v(*n))).collect();
            let got = store.set_many(&kind, batch.clone());
            let merged: BTreeMap<String, Value> = batch.into_iter().collect();
            if merged.values().any(|x| x["n"] == 4) {
                assert!(matches!(got, Err(Error::Validation { .. })), "{got:?}");
            } else {
                let got = got.unwrap();
                let want: Vec<(String, (SetResult, u64, u64))> = merged
                    .into_iter()
                    .map(|(k, val)| {
                        let r = model.put(&kind, &k, val);
                        (k, r)
                    })
                    .collect();
                let got: Vec<(String, (SetResult, u64, u64))> = got
                    .into_iter()
                    .map(|(k, w)| (k, (w.result, w.version, w.rev)))
                    .collect();
                assert_eq!(got, want);
            }
        }
        Op::Delete {
            kind,
            key,
            if_version,
        } => {
            let (kind, key) = (format!("k{kind}"), format!("{key}"));
            let opts = SetOptions {
                if_version: *if_version,
            };
            let got = store.delete(&kind, &key, opts);
            if let Some((expected, actual)) = check_version(model, &kind, &key, *if_version) {
                assert!(
                    matches!(got, Err(Error::Conflict { expected: e, actual: a }) if e == expected && a == actual),
                    "{got:?}"
                );
            } else {
                match model.entries.remove(&(kind, key)) {
                    None => assert!(got.unwrap().is_none()),
                    Some((value, version, rev)) => {
                        model.rev += 1;
                        let d = got.unwrap().expect("existed");
                        assert_eq!(
                            (d.prev.value, d.prev.version, d.prev.rev, d.rev),
                            (value, version, rev, model.rev)
                        );
                    }
                }
            }
        }
    }
}

fn store_state(store: &MemStore<Value>) -> BTreeMap<(String, String), (Value, u64, u64)> {
    let mut out = BTreeMap::new();
    for kind in ["k0", "k1"] {
        for (key, e) in store.get_all(kind).unwrap() {
            out.insert((kind.to_owned(), key), (e.value, e.version, e.rev));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every operation's outcome and the final state match the model.
    #[test]
    fn memstore_matches_model(ops in prop::collection::vec(op(), 0..60)) {
        let store = MemStore::new(options());
        let mut model = Model::default();
        for op in &ops {
            run_op(&store, &mut model, op);
            prop_assert_eq!(store.rev().unwrap(), model.rev);
        }
        prop_assert_eq!(store_state(&store), model.entries);
    }

    /// A watcher that subscribes at a random point (replay, resume or live
    /// from the start), drains at random moments, and applies its events in
    /// order converges on the store's state.
    #[test]
    fn watcher_converges(
        ops in prop::collection::vec(op(), 0..60),
        subscribe_at in 0usize..60,
        start in 0u8..3,
        drains in prop::collection::vec(any::<bool>(), 60),
    ) {
        let store = MemStore::new(options());
        let mut model = Model::default();
        let mut watch = None;
        let mut seen: BTreeMap<String, (Value, u64)> = BTreeMap::new();
        let drain = |w: &mut store_core::Watch<Value>, seen: &mut BTreeMap<String, (Value, u64)>| {
            while let Some(Some(item)) = w.next().now_or_never() {
                let e = item.expect("no overflow with a large buffer");
                match e.event_type {
                    EventType::Delete => { seen.remove(&e.key); }
                    _ => { seen.insert(e.key.clone(), (e.value.clone(), e.version)); }
                }
            }
        };
        for (i, op) in ops.iter().enumerate() {
            if i == subscribe_at.min(ops.len()) && watch.is_none() {
                let opts = match start {
                    0 => WatchOptions::new().replay(),
                    1 => WatchOptions::new().from_rev(0),
                    _ => WatchOptions::new().from_rev(store.rev().unwrap()),
                };
                if start == 2 {
                    seen = store.get_all("k0").unwrap().into_iter().map(|(k, e)| (k, (e.value, e.version))).collect();
                }
                watch = Some(store.watch("k0", opts.buffer_size(1_000)).unwrap());
            }
            run_op(&store, &mut model, op);
            if let (Some(w), true) = (watch.as_mut(), drains[i]) {
                drain(w, &mut seen);
            }
        }
        let mut w = match watch {
            Some(w) => w,
            None => {
                seen.clear();
                store.watch("k0", WatchOptions::new().replay()).unwrap()
            }
        };
        drain(&mut w, &mut seen);
        let want: BTreeMap<String, (Value, u64)> =
            store.get_all("k0").unwrap().into_iter().map(|(k, e)| (k, (e.value, e.version))).collect();
        prop_assert_eq!(seen, want);
    }
}
