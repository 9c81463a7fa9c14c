//! Cases of the store contract.

use futures_util::future::join_all;
use serde_json::{Value, json};

use super::{Backend, Lcg, expect_quiet, next_event, options, yield_now};
use crate::schema::Schema;
use crate::{Error, EventType, Filter, MAX_KEY_BYTES, SetOptions, SetResult, Store, WatchOptions};

const NONE: SetOptions = SetOptions { if_version: None };

/// Calls every operation that takes a kind, returning each outcome by name.
async fn every_operation<S: Store<Value>>(s: &S, kind: &str) -> Vec<(&'static str, Result<(), Error>)> {
    let same = |v: &Value| Ok::<_, Error>(v.clone());
    vec![
        ("get", s.get(kind, "k").await.map(drop)),
        ("list", s.list(kind, &[]).await.map(drop)),
        ("count", s.count(kind).await.map(drop)),
        ("keys", s.keys(kind).await.map(drop)),
        ("values", s.values(kind).await.map(drop)),
        ("get_all", s.get_all(kind).await.map(drop)),
        ("set", s.set(kind, "k", json!(1), NONE).await.map(drop)),
        ("set_fn", s.set_fn(kind, "k", same, NONE).await.map(drop)),
        ("patch", s.patch(kind, "k", json!({}), NONE).await.map(drop)),
        (
            "set_many",
            s.set_many(kind, vec![("k".into(), json!(1))]).await.map(drop),
        ),
        ("delete", s.delete(kind, "k", NONE).await.map(drop)),
        ("watch", s.watch(kind, WatchOptions::new()).await.map(drop)),
    ]
}

/// Calls every write of `kind`/`key`, returning each outcome by name.
async fn every_write<S: Store<Value>>(
    s: &S,
    kind: &str,
    key: &str,
) -> Vec<(&'static str, Result<(), Error>)> {
    let same = |v: &Value| Ok::<_, Error>(v.clone());
    vec![
        ("set", s.set(kind, key, json!(1), NONE).await.map(drop)),
        ("set_fn", s.set_fn(kind, key, same, NONE).await.map(drop)),
        ("patch", s.patch(kind, key, json!({}), NONE).await.map(drop)),
        (
            "set_many",
            s.set_many(kind, vec![(key.to_owned(), json!(1))]).await.map(drop),
        ),
        ("delete", s.delete(kind, key, NONE).await.map(drop)),
    ]
}

/// Text of exactly `bytes` bytes of UTF-8, mixing one- and two-byte
/// characters, that does not compress (a backend's index stores it whole).
fn noise(bytes: usize, seed: u64) -> String {
    const CHARS: [char; 12] = ['a', 'k', 'q', 'z', '0', '7', '-', 'é', 'ß', 'ø', 'ж', 'λ'];
    let mut rng = Lcg::new(seed);
    let mut out = String::with_capacity(bytes);
    while out.len() < bytes {
        let c = CHARS[rng.below(CHARS.len() as u64) as usize];
        out.push(if out.len() + c.len_utf8() > bytes { 'x' } else { c });
    }
    out
}

/// Kinds and keys are at most [`MAX_KEY_BYTES`] bytes of UTF-8 on every
/// backend: a longer one is refused by every write (`key_too_long`) before
/// anything is staged, and reads of it find nothing.
pub async fn key_size_limit<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let (kind, key) = (noise(MAX_KEY_BYTES, 1), noise(MAX_KEY_BYTES, 2));
    let w = s.set(&kind, &key, json!(1), NONE).await;
    assert!(
        matches!(w, Ok(ref w) if w.result == SetResult::Created),
        "a kind and a key of {MAX_KEY_BYTES} bytes each are stored: {w:?}"
    );
    assert_eq!(s.get(&kind, &key).await.unwrap().unwrap().value, json!(1));
    let over = format!("{}é", noise(MAX_KEY_BYTES - 1, 3));
    assert!(
        over.len() == MAX_KEY_BYTES + 1 && over.chars().count() < MAX_KEY_BYTES,
        "the limit counts bytes, not characters"
    );
    for (field, kind, key) in [("key", "t", over.as_str()), ("kind", over.as_str(), "k")] {
        for (op, r) in every_write(&s, kind, key).await {
            match r {
                Err(e @ Error::KeyTooLong { .. }) => {
                    assert_eq!(e.code(), "key_too_long");
                    assert!(
                        matches!(e, Error::KeyTooLong { field: f, len } if f == field && len == over.len())
                    );
                    assert!(e.to_string().contains(&MAX_KEY_BYTES.to_string()), "{e}");
                }
                other => panic!("{op} with a {field} over the limit: {other:?}"),
            }
        }
    }
    let r = s
        .set_many("t", vec![("a".into(), json!(1)), (over.clone(), json!(2))])
        .await;
    assert!(
        matches!(r, Err(Error::KeyTooLong { .. })),
        "one key over the limit refuses the batch: {r:?}"
    );
    assert!(s.get("t", "a").await.unwrap().is_none());
    assert!(s.get("t", &over).await.unwrap().is_none());
    assert_eq!(s.rev().await.unwrap(), 1, "refused writes spend no revision");
}

/// The NUL character: refused in a kind or key by every write
/// (`invalid_key`), stored in the strings of a value like any other.
pub async fn nul_character<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    for (field, kind, key) in [("key", "t", "a\0b"), ("kind", "t\0", "k")] {
        for (op, r) in every_write(&s, kind, key).await {
            match r {
                Err(e @ Error::InvalidKey { .. }) => {
                    assert_eq!(e.code(), "invalid_key");
                    assert!(matches!(e, Error::InvalidKey { field: f, .. } if f == field));
                }
                other => panic!("{op} with a NUL in the {field}: {other:?}"),
            }
        }
    }
    assert_eq!(s.rev().await.unwrap(), 0, "refused writes spend no revision");
    let value = json!({"text": "a\0b", "\0": ["\0", "\\u0000"]});
    let w = s.set("t", "k", value.clone(), NONE).await.unwrap();
    assert_eq!((w.result, w.rev), (SetResult::Created, 1));
    assert_eq!(s.get("t", "k").await.unwrap().unwrap().value, value);
    let again = s.set("t", "k", value, NONE).await.unwrap();
    assert_eq!(again.result, SetResult::Unchanged);
}

/// Versions count the changes of one life of a key: deleted and created
/// again, it starts over at version 1 (so `if_version` matches the new
/// life), with a new revision larger than any of the old life's — a
/// revision is never reused, so `rev` tells lives apart.
pub async fn recreate_restarts_version_with_a_new_rev<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    s.set("t", "k", json!("first"), NONE).await.unwrap();
    let w = s.set("t", "k", json!("second"), NONE).await.unwrap();
    assert_eq!((w.version, w.rev), (2, 2));
    let d = s.delete("t", "k", NONE).await.unwrap().expect("existed");
    assert_eq!((d.prev.version, d.prev.rev, d.rev), (2, 2, 3));
    let w = s
        .set("t", "k", json!("third"), SetOptions::if_version(0))
        .await
        .unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Created, 1, 4));
    let e = s.get("t", "k").await.unwrap().unwrap();
    assert_eq!((e.version, e.rev), (1, 4));
    assert!(
        e.rev > d.prev.rev && e.rev > d.rev,
        "a new life has a new, larger rev"
    );
    let w = s
        .set("t", "k", json!("fourth"), SetOptions::if_version(1))
        .await
        .unwrap();
    assert_eq!(
        (w.result, w.version, w.rev),
        (SetResult::Updated, 2, 5),
        "if_version 1 matches the new life's version 1"
    );
    let mut watch = s.watch("t", WatchOptions::new().from_rev(2)).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = next_event(&mut watch, "the changes after rev 2").await;
        seen.push((e.event_type, e.version, e.rev));
    }
    assert_eq!(
        seen,
        [
            (EventType::Delete, 2, 3),
            (EventType::Create, 1, 4),
            (EventType::Update, 2, 5)
        ]
    );
}

/// Every call with an empty kind fails with `KindRequired`.
pub async fn kind_required<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    for (op, r) in every_operation(&s, "").await {
        assert!(
            matches!(r, Err(Error::KindRequired)),
            "{op} with an empty kind: {r:?}"
        );
    }
    assert_eq!(s.rev().await.unwrap(), 0, "failed calls spend no revision");
}

/// Versions start at 1 and bump on change; revisions count commits.
pub async fn set_get_versions_revisions<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    assert_eq!(s.rev().await.unwrap(), 0);
    assert!(
        s.get("task", "a").await.unwrap().is_none(),
        "missing key reads as None"
    );
    let w = s.set("task", "a", json!({"t": 1}), NONE).await.unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Created, 1, 1));
    let w = s.set("task", "a", json!({"t": 2}), NONE).await.unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Updated, 2, 2));
    let w = s.set("task", "b", json!("x"), NONE).await.unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Created, 1, 3));
    let e = s.get("task", "a").await.unwrap().expect("a exists");
    assert_eq!((e.value, e.version, e.rev), (json!({"t": 2}), 2, 2));
    assert_eq!(s.rev().await.unwrap(), 3);
    // Delete and re-create starts a new life at version 1.
    s.delete("task", "b", NONE).await.unwrap().expect("b existed");
    let w = s.set("task", "b", json!("y"), NONE).await.unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Created, 1, 5));
}

/// An equal write is `Unchanged`: no version, no revision, no event.
pub async fn unchanged_spends_nothing<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    s.set("task", "a", json!({"t": 1}), NONE).await.unwrap();
    let mut w = s.watch("task", WatchOptions::new()).await.unwrap();
    let out = s.set("task", "a", json!({"t": 1}), NONE).await.unwrap();
    assert_eq!((out.result, out.version, out.rev), (SetResult::Unchanged, 1, 1));
    assert!(!out.changed());
    assert_eq!(s.rev().await.unwrap(), 1, "an unchanged write spends no revision");
    let many = s
        .set_many("task", vec![("a".into(), json!({"t": 1}))])
        .await
        .unwrap();
    assert_eq!(many[0].1.result, SetResult::Unchanged);
    let f = s
        .set_fn("task", "a", |v: &Value| Ok::<_, Error>(v.clone()), NONE)
        .await
        .unwrap();
    assert_eq!(f.result, SetResult::Unchanged);
    assert_eq!(s.rev().await.unwrap(), 1);
    expect_quiet(&s, &mut w, "task", "unchanged writes send no event").await;
}

/// The default compare is semantic JSON equality.
pub async fn semantic_json_equality<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let a: Value = serde_json::from_str(r#"{"a":1,"b":{"c":[1,2.5]}}"#).unwrap();
    let same: Value = serde_json::from_str(r#"{"b":{"c":[1.0,2.5]},"a":1.0}"#).unwrap();
    s.set("k", "x", a, NONE).await.unwrap();
    let out = s.set("k", "x", same, NONE).await.unwrap();
    assert_eq!(
        out.result,
        SetResult::Unchanged,
        "key order and 1 vs 1.0 are not changes"
    );
    let out = s
        .set("k", "x", json!({"a": 1, "b": {"c": [2.5, 1]}}), NONE)
        .await
        .unwrap();
    assert_eq!(out.result, SetResult::Updated, "array order is a change");
    let out = s
        .set("k", "x", json!({"a": 1, "b": {"c": [2.5, 1]}, "d": null}), NONE)
        .await
        .unwrap();
    assert_eq!(out.result, SetResult::Updated, "an added null field is a change");
}

/// A custom compare function decides what is unchanged.
pub async fn custom_compare<B: Backend>(b: &B) {
    let opts = options().compare(|a: &Value, b: &Value| a["title"] == b["title"]);
    let s = b.open(opts).await;
    s.set("task", "a", json!({"title": "x", "seen": 1}), NONE)
        .await
        .unwrap();
    let out = s
        .set("task", "a", json!({"title": "x", "seen": 2}), NONE)
        .await
        .unwrap();
    assert_eq!(out.result, SetResult::Unchanged);
    let e = s.get("task", "a").await.unwrap().unwrap();
    assert_eq!(e.value["seen"], 1, "an unchanged write keeps the stored value");
    let out = s
        .set("task", "a", json!({"title": "y", "seen": 2}), NONE)
        .await
        .unwrap();
    assert_eq!((out.result, out.version), (SetResult::Updated, 2));
}

/// Revisions are per namespace, shared by all kinds, gap-free.
pub async fn revisions_gap_free_across_kinds<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let mut revs = Vec::new();
    for i in 0..5 {
        revs.push(s.set("a", &format!("k{i}"), json!(i), NONE).await.unwrap().rev);
        revs.push(s.set("b", &format!("k{i}"), json!(i), NONE).await.unwrap().rev);
        s.set("a", &format!("k{i}"), json!(i), NONE).await.unwrap(); // unchanged
    }
    revs.push(s.delete("a", "k0", NONE).await.unwrap().unwrap().rev);
    assert!(s.delete("a", "k0", NONE).await.unwrap().is_none());
    let many = s
        .set_many("c", vec![("x".into(), json!(1)), ("y".into(), json!(2))])
        .await
        .unwrap();
    revs.extend(many.iter().map(|(_, w)| w.rev));
    assert_eq!(revs, (1..=13).collect::<Vec<u64>>());
    assert_eq!(s.rev().await.unwrap(), 13);
}

/// `keys`, `values`, `list` and `get_all` are sorted by key; `count` counts.
pub async fn reads_sorted_by_key<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    for k in ["m", "b", "z", "a", "k"] {
        s.set("t", k, json!(k.to_uppercase()), NONE).await.unwrap();
    }
    s.set("other", "c", json!("C"), NONE).await.unwrap();
    assert_eq!(s.count("t").await.unwrap(), 5);
    assert_eq!(s.count("empty").await.unwrap(), 0);
    assert_eq!(s.keys("t").await.unwrap(), ["a", "b", "k", "m", "z"]);
    assert_eq!(
        s.values("t").await.unwrap(),
        [json!("A"), json!("B"), json!("K"), json!("M"), json!("Z")]
    );
    let listed: Vec<String> = s
        .list("t", &[])
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(listed, ["a", "b", "k", "m", "z"]);
    let all = s.get_all("t").await.unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["a", "b", "k", "m", "z"]);
    assert_eq!(all["k"].version, 1);
    assert!(s.keys("empty").await.unwrap().is_empty());
    assert!(s.get_all("empty").await.unwrap().is_empty());
}

/// Filters of `list` compose with AND.
pub async fn list_filters_compose_with_and<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    for (k, n, done) in [
        ("a1", 1, true),
        ("a2", 2, false),
        ("a3", 3, true),
        ("b4", 4, true),
    ] {
        s.set("t", k, json!({"n": n, "done": done}), NONE).await.unwrap();
    }
    let done = Filter::new(|_, v: &Value| v["done"] == true);
    let a = Filter::key_prefix("a");
    let big = Filter::new(|_, v: &Value| v["n"].as_i64().unwrap_or(0) >= 2);
    let keys = |r: Vec<(String, crate::Entry<Value>)>| r.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list("t", std::slice::from_ref(&done)).await.unwrap()),
        ["a1", "a3", "b4"]
    );
    assert_eq!(
        keys(s.list("t", &[done.clone(), a.clone()]).await.unwrap()),
        ["a1", "a3"]
    );
    assert_eq!(keys(s.list("t", &[done, a, big]).await.unwrap()), ["a3"]);
}

/// `set_fn` reads, modifies and writes atomically.
pub async fn set_fn_read_modify_write<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    s.set("c", "n", json!({"count": 1}), NONE).await.unwrap();
    let bump = |v: &Value| Ok::<_, Error>(json!({"count": v["count"].as_i64().unwrap() + 1}));
    let w = s.set_fn("c", "n", bump, NONE).await.unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Updated, 2, 2));
    assert_eq!(s.get("c", "n").await.unwrap().unwrap().value, json!({"count": 2}));
    let w = s.set_fn("c", "n", bump, SetOptions::if_version(2)).await.unwrap();
    assert_eq!(w.version, 3);
    let r = s.set_fn("c", "n", bump, SetOptions::if_version(2)).await;
    assert!(
        matches!(
            r,
            Err(Error::Conflict {
                expected: 2,
                actual: 3
            })
        ),
        "{r:?}"
    );
}

/// `set_fn` on a missing key, or whose function fails or produces an invalid
/// value, writes nothing.
pub async fn set_fn_errors_write_nothing<B: Backend>(b: &B) {
    let opts = options().validator("c", |_, v: &Value| {
        if v["count"].as_i64().unwrap_or(0) < 0 {
            Err("count must not be negative".into())
        } else {
            Ok(())
        }
    });
    let s = b.open(opts).await;
    let r = s
        .set_fn("c", "missing", |v: &Value| Ok::<_, Error>(v.clone()), NONE)
        .await;
    assert!(matches!(r, Err(Error::KeyNotFound)), "{r:?}");
    s.set("c", "n", json!({"count": 1}), NONE).await.unwrap();
    let mut w = s.watch("c", WatchOptions::new()).await.unwrap();
    let r = s
        .set_fn(
            "c",
            "n",
            |_: &Value| Err::<Value, _>("refused by the function"),
            NONE,
        )
        .await;
    match r {
        Err(Error::Function(e)) => assert_eq!(e.to_string(), "refused by the function"),
        other => panic!("a failing function must propagate its error: {other:?}"),
    }
    let r = s
        .set_fn("c", "n", |_: &Value| Ok::<_, Error>(json!({"count": -1})), NONE)
        .await;
    assert!(matches!(r, Err(Error::Validation { .. })), "{r:?}");
    let e = s.get("c", "n").await.unwrap().unwrap();
    assert_eq!((e.value, e.version, e.rev), (json!({"count": 1}), 1, 1));
    assert_eq!(s.rev().await.unwrap(), 1);
    expect_quiet(&s, &mut w, "c", "failed set_fn sends no event").await;
}

/// `patch` merges a JSON Merge Patch into the stored value atomically: set
/// members, `null` removes, objects merge recursively, anything else
/// replaces; one `update` event with the merged value; `Unchanged` (no
/// event, no revision) when nothing changes; `if_version` honoured.
pub async fn patch_merges_into_the_stored_value<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let card = json!({"title": "draft", "owner": "ana", "meta": {"tags": ["a"], "color": "red"}});
    s.set("card", "c1", card, NONE).await.unwrap();
    let mut w = s.watch("card", WatchOptions::new()).await.unwrap();
    let patch = json!({"owner": "kim", "meta": {"color": null, "size": 2}, "done": false});
    let written = s.patch("card", "c1", patch, NONE).await.unwrap();
    assert_eq!(
        (written.result, written.version, written.rev),
        (SetResult::Updated, 2, 2)
    );
    let merged = json!({"title": "draft", "owner": "kim", "meta": {"tags": ["a"], "size": 2}, "done": false});
    let e = s.get("card", "c1").await.unwrap().unwrap();
    assert_eq!((e.value, e.version, e.rev), (merged.clone(), 2, 2));
    let ev = next_event(&mut w, "the patch").await;
    assert_eq!(
        (
            ev.event_type,
            ev.key.as_str(),
            ev.value.clone(),
            ev.version,
            ev.rev
        ),
        (EventType::Update, "c1", merged.clone(), 2, 2)
    );
    // Patching in what is there already changes nothing.
    let same = json!({"owner": "kim", "meta": {"size": 2.0, "gone": null}});
    let written = s.patch("card", "c1", same, NONE).await.unwrap();
    assert_eq!(
        (written.result, written.version, written.rev),
        (SetResult::Unchanged, 2, 2)
    );
    assert_eq!(s.rev().await.unwrap(), 2);
    expect_quiet(&s, &mut w, "card", "an unchanged patch sends no event").await;
    // Compare-and-set, and a patch that is not an object replaces the value.
    let r = s
        .patch("card", "c1", json!({"title": "x"}), SetOptions::if_version(1))
        .await;
    assert!(
        matches!(
            r,
            Err(Error::Conflict {
                expected: 1,
                actual: 2
            })
        ),
        "{r:?}"
    );
    let written = s
        .patch("card", "c1", json!(["whole"]), SetOptions::if_version(2))
        .await
        .unwrap();
    assert_eq!((written.result, written.version), (SetResult::Updated, 3));
    assert_eq!(
        s.get("card", "c1").await.unwrap().unwrap().value,
        json!(["whole"])
    );
}

/// `patch` of a missing key, or whose result the validators or the kind's
/// schema refuse, writes nothing.
pub async fn patch_errors_write_nothing<B: Backend>(b: &B) {
    // `null` passes too: the watch's marker writes it.
    let schema = Schema::compile(json!({
        "type": ["object", "null"],
        "required": ["title"],
        "properties": {"title": {"type": "string"}},
    }))
    .unwrap();
    let opts = options()
        .schema("card", schema)
        .validator("card", |_, v: &Value| {
            if v["title"] == "forbidden" {
                Err("that title is not allowed".into())
            } else {
                Ok(())
            }
        });
    let s = b.open(opts).await;
    let r = s.patch("card", "missing", json!({"title": "t"}), NONE).await;
    assert!(matches!(r, Err(Error::KeyNotFound)), "{r:?}");
    assert_eq!(r.unwrap_err().code(), "key_not_found");
    assert_eq!(
        s.get("card", "missing").await.unwrap(),
        None,
        "a patch creates nothing"
    );
    s.set("card", "c", json!({"title": "t", "n": 1}), NONE)
        .await
        .unwrap();
    let mut w = s.watch("card", WatchOptions::new()).await.unwrap();
    for (patch, what) in [
        (json!({"title": null}), "removes a required member"),
        (json!({"title": 7}), "makes a member the wrong type"),
        (
            json!({"title": "forbidden"}),
            "makes a value the validator refuses",
        ),
    ] {
        let r = s.patch("card", "c", patch, NONE).await;
        assert!(
            matches!(r, Err(Error::Validation { .. })),
            "a patch that {what}: {r:?}"
        );
    }
    let e = s.get("card", "c").await.unwrap().unwrap();
    assert_eq!((e.value, e.version, e.rev), (json!({"title": "t", "n": 1}), 1, 1));
    assert_eq!(s.rev().await.unwrap(), 1);
    expect_quiet(&s, &mut w, "card", "a refused patch sends no event").await;
}

/// `set_many` merges, skips unchanged keys and emits events in key order.
pub async fn set_many_merges_in_key_order<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    s.set("t", "keep", json!(0), NONE).await.unwrap();
    s.set("t", "b", json!("same"), NONE).await.unwrap();
    let mut w = s.watch("t", WatchOptions::new()).await.unwrap();
    let out = s
        .set_many(
            "t",
            vec![
                ("d".into(), json!(4)),
                ("b".into(), json!("same")),
                ("a".into(), json!(1)),
                ("c".into(), json!(3)),
            ],
        )
        .await
        .unwrap();
    let summary: Vec<(&str, SetResult, u64)> =
        out.iter().map(|(k, w)| (k.as_str(), w.result, w.rev)).collect();
    assert_eq!(
        summary,
        [
            ("a", SetResult::Created, 3),
            ("b", SetResult::Unchanged, 2),
            ("c", SetResult::Created, 4),
            ("d", SetResult::Created, 5)
        ]
    );
    for want in ["a", "c", "d"] {
        let e = next_event(&mut w, "set_many events").await;
        assert_eq!(e.key, want, "set_many emits its events in key order");
    }
    expect_quiet(&s, &mut w, "t", "the unchanged key sends no event").await;
    assert_eq!(
        s.keys("t").await.unwrap().len(),
        6,
        "existing keys outside the batch stay"
    );
}

/// One invalid value rejects the whole batch.
pub async fn set_many_all_or_nothing<B: Backend>(b: &B) {
    let schema = Schema::compile(json!({"type": "object", "required": ["title"]})).unwrap();
    let s = b.open(options().schema("t", schema)).await;
    s.set("t", "a", json!({"title": "old"}), NONE).await.unwrap();
    let mut w = s.watch("t", WatchOptions::new()).await.unwrap();
    let r = s
        .set_many(
            "t",
            vec![
                ("a".into(), json!({"title": "new"})),
                ("b".into(), json!({"nope": 1})),
                ("c".into(), json!({"title": "c"})),
            ],
        )
        .await;
    match r {
        Err(Error::Validation { kind, key, .. }) => assert_eq!((kind.as_str(), key.as_str()), ("t", "b")),
        other => panic!("an invalid item must reject the batch: {other:?}"),
    }
    assert_eq!(
        s.get("t", "a").await.unwrap().unwrap().value,
        json!({"title": "old"})
    );
    assert!(s.get("t", "c").await.unwrap().is_none());
    assert_eq!(s.rev().await.unwrap(), 1);
    s.set("t", "z", json!({"title": "after"}), NONE).await.unwrap();
    let e = next_event(&mut w, "a rejected batch sends no event").await;
    assert_eq!(
        (e.key.as_str(), e.rev),
        ("z", 2),
        "a rejected batch sends no event"
    );
}

/// `delete` returns the previous entry, or `None`.
pub async fn delete_reports_previous<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    assert!(s.delete("t", "a", NONE).await.unwrap().is_none());
    assert_eq!(
        s.rev().await.unwrap(),
        0,
        "deleting a missing key spends no revision"
    );
    s.set("t", "a", json!(1), NONE).await.unwrap();
    s.set("t", "a", json!(2), NONE).await.unwrap();
    let d = s.delete("t", "a", NONE).await.unwrap().expect("existed");
    assert_eq!(
        (d.prev.value, d.prev.version, d.prev.rev, d.rev),
        (json!(2), 2, 2, 3)
    );
    assert!(s.get("t", "a").await.unwrap().is_none());
    assert_eq!(s.count("t").await.unwrap(), 0);
}

/// `if_version` is compare-and-set; 0 means "must not exist".
pub async fn if_version_compare_and_set<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    let w = s
        .set("t", "a", json!(1), SetOptions::if_version(0))
        .await
        .unwrap();
    assert_eq!(w.result, SetResult::Created, "if_version 0 creates a missing key");
    let r = s.set("t", "a", json!(2), SetOptions::if_version(0)).await;
    assert!(
        matches!(
            r,
            Err(Error::Conflict {
                expected: 0,
                actual: 1
            })
        ),
        "{r:?}"
    );
    let r = s.set("t", "a", json!(2), SetOptions::if_version(7)).await;
    assert!(
        matches!(
            r,
            Err(Error::Conflict {
                expected: 7,
                actual: 1
            })
        ),
        "{r:?}"
    );
    let r = s.set("t", "a", json!(1), SetOptions::if_version(7)).await;
    assert!(
        matches!(r, Err(Error::Conflict { .. })),
        "a stale version conflicts even for an equal value: {r:?}"
    );
    let w = s
        .set("t", "a", json!(2), SetOptions::if_version(1))
        .await
        .unwrap();
    assert_eq!((w.result, w.version), (SetResult::Updated, 2));
    let r = s.delete("t", "a", SetOptions::if_version(1)).await;
    assert!(
        matches!(
            r,
            Err(Error::Conflict {
                expected: 1,
                actual: 2
            })
        ),
        "{r:?}"
    );
    assert!(
        s.get("t", "a").await.unwrap().is_some(),
        "a conflicting delete deletes nothing"
    );
    let r = s.set("t", "missing", json!(1), SetOptions::if_version(3)).await;
    assert!(
        matches!(
            r,
            Err(Error::Conflict {
                expected: 3,
                actual: 0
            })
        ),
        "{r:?}"
    );
    s.delete("t", "a", SetOptions::if_version(2))
        .await
        .unwrap()
        .expect("deleted");
    assert_eq!(s.rev().await.unwrap(), 3, "conflicts spend no revision");
}

/// Validators run per kind and reject with their message.
pub async fn validation_closures<B: Backend>(b: &B) {
    let opts = options()
        .validator("user", |key, v: &Value| {
            if v["name"].as_str().is_some_and(|n| !n.is_empty()) {
                Ok(())
            } else {
                Err(format!("user {key} needs a name"))
            }
        })
        .validator("user", |_, v: &Value| {
            if v["age"].as_i64().unwrap_or(0) < 0 {
                Err("age must not be negative".into())
            } else {
                Ok(())
            }
        });
    let s = b.open(opts).await;
    match s.set("user", "u1", json!({"name": ""}), NONE).await {
        Err(e @ Error::Validation { .. }) => {
            assert_eq!(e.code(), "validation");
            assert!(e.to_string().contains("user u1 needs a name"), "{e}");
        }
        other => panic!("invalid user accepted: {other:?}"),
    }
    let r = s.set("user", "u1", json!({"name": "ann", "age": -1}), NONE).await;
    assert!(
        matches!(&r, Err(Error::Validation { message, .. }) if message == "age must not be negative"),
        "{r:?}"
    );
    s.set("user", "u1", json!({"name": "ann", "age": 3}), NONE)
        .await
        .unwrap();
    s.set("other", "x", json!({}), NONE)
        .await
        .expect("validators apply to their kind only");
    assert_eq!(s.rev().await.unwrap(), 2);
}

/// A kind's JSON Schema is enforced on every write.
pub async fn validation_schema<B: Backend>(b: &B) {
    let schema = Schema::compile(json!({
        "type": "object",
        "properties": {"title": {"type": "string", "minLength": 1}, "state": {"enum": ["todo", "done"]}},
        "required": ["title"],
    }))
    .unwrap();
    let s = b.open(options().schema("task", schema)).await;
    s.set("task", "a", json!({"title": "ok", "state": "todo"}), NONE)
        .await
        .unwrap();
    for bad in [
        json!({"state": "todo"}),
        json!({"title": ""}),
        json!({"title": "x", "state": "later"}),
        json!("str"),
    ] {
        let r = s.set("task", "b", bad.clone(), NONE).await;
        assert!(
            matches!(r, Err(Error::Validation { .. })),
            "{bad} must be rejected: {r:?}"
        );
    }
    let r = s.set_many("task", vec![("c".into(), json!({}))]).await;
    assert!(matches!(r, Err(Error::Validation { .. })), "{r:?}");
    s.set("note", "n", json!(42), NONE)
        .await
        .expect("schemas apply to their kind only");
    assert_eq!(s.rev().await.unwrap(), 2);
}

/// After `close` every call fails with `Closed`; `close` is idempotent.
pub async fn close_is_final_and_idempotent<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    s.set("t", "a", json!(1), NONE).await.unwrap();
    s.close().await;
    s.close().await;
    for (op, r) in every_operation(&s, "t").await {
        assert!(matches!(r, Err(Error::Closed)), "{op} after close: {r:?}");
    }
    let r = s.rev().await;
    assert!(matches!(r, Err(Error::Closed)), "rev after close: {r:?}");
}

/// Interleaved read-modify-write futures lose no update.
pub async fn interleaved_writers_no_lost_update<B: Backend>(b: &B) {
    let s = b.open(options()).await;
    s.set("c", "n", json!(0), NONE).await.unwrap();
    let mut rng = Lcg::new(7);
    let writers = (0..8).map(|_| {
        let pauses: Vec<u64> = (0..25).map(|_| rng.below(3)).collect();
        let s = &s;
        async move {
            for p in pauses {
                for _ in 0..p {
                    yield_now().await;
                }
                s.set_fn(
                    "c",
                    "n",
                    |v: &Value| Ok::<_, Error>(json!(v.as_i64().unwrap() + 1)),
                    NONE,
                )
                .await
                .unwrap();
            }
        }
    });
    join_all(writers).await;
    let e = s.get("c", "n").await.unwrap().unwrap();
    assert_eq!((e.value, e.version, e.rev), (json!(200), 201, 201));
}
