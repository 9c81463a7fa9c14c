//! `MemStore` with a typed value: schemas, compare and watch work through
//! the value's JSON form.

use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use store_core::schema::Schema;
use store_core::{Error, EventType, MemStore, SetOptions, SetResult, StoreOptions, WatchOptions};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Task {
    title: String,
    #[serde(default)]
    tags: Vec<String>,
    estimate: f64,
}

fn task(title: &str, estimate: f64) -> Task {
    Task {
        title: title.into(),
        tags: vec![],
        estimate,
    }
}

#[test]
fn typed_values_are_validated_compared_and_watched() {
    let schema = Schema::compile(json!({
        "type": "object",
        "properties": {"title": {"type": "string", "minLength": 1}, "estimate": {"type": "number", "minimum": 0}},
    }))
    .unwrap();
    let store: MemStore<Task> = MemStore::new(StoreOptions::new().schema("task", schema));
    let mut watch = store.watch("task", WatchOptions::new()).unwrap();
    let none = SetOptions::default();

    assert_eq!(
        store.set("task", "a", task("plan", 1.0), none).unwrap().result,
        SetResult::Created
    );
    // 1.0 and 1 are the same JSON number: not a change.
    assert_eq!(
        store.set("task", "a", task("plan", 1.0), none).unwrap().result,
        SetResult::Unchanged
    );
    let r = store.set("task", "b", task("", 1.0), none);
    assert!(
        matches!(&r, Err(Error::Validation { key, .. }) if key == "b"),
        "{r:?}"
    );
    let r = store.set("task", "b", task("x", -2.0), none);
    assert!(matches!(r, Err(Error::Validation { .. })), "{r:?}");

    let e = watch.next().now_or_never().unwrap().unwrap().unwrap();
    assert_eq!((e.event_type, &e.value), (EventType::Create, &task("plan", 1.0)));
    assert!(
        watch.next().now_or_never().is_none(),
        "rejected and unchanged writes send nothing"
    );
    assert_eq!(store.values("task").unwrap(), [task("plan", 1.0)]);
}

#[test]
fn a_custom_compare_on_typed_values() {
    let store: MemStore<Task> =
        MemStore::new(StoreOptions::new().compare(|a: &Task, b: &Task| a.title == b.title));
    let none = SetOptions::default();
    store.set("task", "a", task("plan", 1.0), none).unwrap();
    let w = store.set("task", "a", task("plan", 5.0), none).unwrap();
    assert_eq!((w.result, w.version), (SetResult::Unchanged, 1));
    assert_eq!(store.get("task", "a").unwrap().unwrap().value.estimate, 1.0);
}
