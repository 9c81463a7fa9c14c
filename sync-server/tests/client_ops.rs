//! Sync clients' ops are applied at most once per `(client_id, op_id)`, on
//! both durable backends: a retried op id gets its original answer, across
//! reopening and across processes sharing a database.

#[path = "support/pg.rs"]
mod pg;
mod support;

use futures_executor::block_on;
use serde_json::{Value, json};
use store_core::sync::{Ack, ErrorCode, Op, OpAction, OpResult};
use store_core::{Store, StoreOptions};
use sync_server::backend::Durable;
use sync_server::backend::postgres::{self, PgOptions};
use sync_server::backend::sqlite::{self, SqliteOptions};

fn set(op_id: &str, key: &str, value: Value, if_version: Option<u64>) -> Op {
    Op {
        op_id: op_id.into(),
        kind: "task".into(),
        key: key.into(),
        action: OpAction::Set,
        value: Some(value),
        if_version,
    }
}

fn delete(op_id: &str, key: &str) -> Op {
    Op {
        op_id: op_id.into(),
        kind: "task".into(),
        key: key.into(),
        action: OpAction::Delete,
        value: None,
        if_version: None,
    }
}

fn ack(op_id: &str, result: OpResult, version: u64, rev: u64) -> Result<Ack, store_core::sync::Reject> {
    Ok(Ack {
        op_id: op_id.into(),
        result,
        version,
        rev,
        value: None,
    })
}

/// The cases, against a store and a way to open it again.
fn retried_ops_are_answered_not_reapplied(store: &Durable<Value>, reopen: &dyn Fn() -> Durable<Value>) {
    let first = block_on(store.apply_ops(
        "c1",
        vec![
            set("o1", "a", json!({"t": 1}), None),
            set("o2", "a", json!({"t": 2}), Some(1)),
            set("o3", "a", json!({"t": 3}), Some(1)),
            delete("o4", "missing"),
            set("o1", "a", json!({"t": "dup"}), None),
        ],
    ));
    assert_eq!(first[0], ack("o1", OpResult::Created, 1, 1));
    assert_eq!(first[1], ack("o2", OpResult::Updated, 2, 2));
    let reject = first[2].clone().unwrap_err();
    assert_eq!((reject.op_id.as_str(), reject.code), ("o3", ErrorCode::Conflict));
    assert_eq!(first[3], ack("o4", OpResult::Absent, 0, 2));
    assert_eq!(
        first[4], first[0],
        "a repeated op id in one push gets the first answer"
    );
    assert_eq!(block_on(store.rev()).unwrap(), 2);

    // The client lost the answers and retries everything, even o3, which
    // would succeed now: each gets its original answer, nothing is applied.
    let retried = block_on(store.apply_ops(
        "c1",
        vec![
            set("o1", "a", json!({"t": 1}), None),
            set("o2", "a", json!({"t": 2}), Some(1)),
            set("o3", "a", json!({"t": 3}), Some(2)),
            delete("o4", "missing"),
        ],
    ));
    assert_eq!(retried, first[..4]);
    assert_eq!(block_on(store.rev()).unwrap(), 2);
    // Another client's op ids are its own.
    let other = block_on(store.apply_ops("c2", vec![set("o1", "b", json!(1), None)]));
    assert_eq!(other[0], ack("o1", OpResult::Created, 1, 3));

    store.close();
    let again = reopen();
    let after = block_on(again.apply_ops(
        "c1",
        vec![set("o2", "a", json!({"t": 2}), Some(1)), delete("o5", "a")],
    ));
    assert_eq!(after[0], first[1], "answers survive a restart");
    assert_eq!(after[1], ack("o5", OpResult::Deleted, 0, 4));
    assert_eq!(block_on(again.get("task", "a")).unwrap(), None);
    again.close();
}

#[test]
fn sqlite_applies_client_ops_once() {
    let path = support::fresh_db("client-ops");
    let open = || sqlite::open::<Value>(SqliteOptions::new(&path, "ns"), StoreOptions::new()).unwrap();
    retried_ops_are_answered_not_reapplied(&open(), &open);
}

#[test]
fn postgres_applies_client_ops_once_across_processes() {
    let Some(url) = pg::url("postgres_applies_client_ops_once_across_processes") else {
        return;
    };
    let schema = pg::run(pg::create_schema(url));
    let open = || {
        pg::run(postgres::open::<Value>(
            PgOptions::new(url, "ns").schema(schema.clone()),
            StoreOptions::new(),
        ))
        .unwrap()
    };
    retried_ops_are_answered_not_reapplied(&open(), &open);
    // A retry through another store (another server replica) is answered too.
    let (a, b) = (open(), open());
    let first = block_on(a.apply_ops("c9", vec![set("x1", "k", json!(1), None)]));
    let retried = block_on(b.apply_ops("c9", vec![set("x1", "k", json!(1), None)]));
    assert_eq!(first, retried);
    assert_eq!(block_on(b.get("task", "k")).unwrap().unwrap().version, 1);
    a.close();
    b.close();
    pg::run(pg::drop_schema(url, &schema));
}
