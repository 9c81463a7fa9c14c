#![cfg(target_arch = "wasm32")]
//! What [`IdbStore`] keeps in IndexedDB, and how it behaves when IndexedDB
//! fails under it or its database is deleted by someone else.

use std::cell::Cell;

use serde_json::{Value, json};
use store_core::sync::codec::encode_server;
use store_core::sync::{Ack, ClientMessage, Op, OpAction, OpResult, Rights, ServerMessage, Welcome};
use store_core::testkit::next_event;
use store_core::{Error, EventType, SetOptions, SetResult, Store, StoreOptions, WatchOptions};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};
use zestor::{IdbStore, SyncSetup};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen(inline_js = r#"
export function break_put(mode) {
    const proto = IDBObjectStore.prototype;
    if (!proto.__zestorOriginalPut) {
        proto.__zestorOriginalPut = proto.put;
    }
    const original = proto.__zestorOriginalPut;
    proto.put = function (...args) {
        if (mode === "throw") {
            throw new DOMException("put failure injected by the test", "UnknownError");
        }
        // Let the request succeed, then abort its transaction: the write
        // fails after every request was issued, as a quota error at commit
        // would.
        const tx = this.transaction;
        const request = original.apply(this, args);
        request.addEventListener("success", () => tx.abort(), { once: true });
        return request;
    };
}

export function restore_put() {
    const proto = IDBObjectStore.prototype;
    if (proto.__zestorOriginalPut) {
        proto.put = proto.__zestorOriginalPut;
        delete proto.__zestorOriginalPut;
    }
}

// Resolves with "deleted" once the database is gone, or with "blocked" if
// the delete is still blocked by an open connection after `ms`.
export function delete_database(name, ms) {
    return new Promise((resolve, reject) => {
        const request = indexedDB.deleteDatabase(name);
        const timer = setTimeout(() => resolve("blocked"), ms);
        request.onsuccess = () => { clearTimeout(timer); resolve("deleted"); };
        request.onerror = () => { clearTimeout(timer); reject(request.error); };
    });
}

export function database_names() {
    return indexedDB.databases().then((dbs) => dbs.map((d) => d.name));
}
"#)]
extern "C" {
    fn break_put(mode: &str);
    fn restore_put();
    fn delete_database(name: &str, ms: u32) -> js_sys::Promise;
    fn database_names() -> js_sys::Promise;
}

thread_local! {
    static OPENED: Cell<u32> = const { Cell::new(0) };
}

/// A database name used by no other test of this run or of an earlier one.
fn fresh_name(what: &str) -> String {
    let n = OPENED.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    let suffix = (js_sys::Math::random() * 2f64.powi(48)) as u64;
    format!("zestor-{what}-{n}-{suffix:012x}")
}

async fn open(name: &str) -> IdbStore {
    IdbStore::open(name, StoreOptions::new(), None)
        .await
        .expect("open a local IdbStore")
}

fn setup() -> Option<SyncSetup> {
    Some(SyncSetup {
        namespace: "ns".to_owned(),
        token: "token".to_owned(),
        kinds: None,
    })
}

/// A synced store holding the connection (as the tab with the lock does).
async fn open_synced(name: &str) -> IdbStore {
    let store = IdbStore::open(name, StoreOptions::new(), setup())
        .await
        .expect("open a synced IdbStore");
    store.set_leader(true);
    store
}

fn set_opts() -> SetOptions {
    SetOptions::default()
}

/// `(value, version, rev)` of `kind`/`key`, or `None`.
async fn entry(store: &IdbStore, kind: &str, key: &str) -> Option<(Value, u64, u64)> {
    store
        .get(kind, key)
        .await
        .expect("get")
        .map(|e| (e.value, e.version, e.rev))
}

fn pending_ops(store: &IdbStore) -> Vec<Op> {
    let replica = store.replica().expect("the replica");
    let session = replica.session().expect("a synced store");
    session.pending().cloned().collect()
}

fn pending_count(store: &IdbStore) -> usize {
    store.replica().expect("the replica").pending_count()
}

/// The client id the session says `hello` with.
fn hello_client_id(store: &IdbStore) -> String {
    let mut replica = store.replica_mut().expect("the replica");
    let session = replica.session_mut().expect("a synced store");
    session.connect(0);
    let hello = session.poll_transmit();
    session.disconnected();
    match hello {
        Some(ClientMessage::Hello(h)) => h.client_id,
        other => panic!("expected hello, got {other:?}"),
    }
}

// ---- (a) a local store survives a reopen ----

#[wasm_bindgen_test]
async fn reopen_restores_entries_versions_revisions_and_head() {
    let name = fresh_name("reopen");
    let store = open(&name).await;
    let w = store
        .set("task", "t1", json!({"n": 1}), set_opts())
        .await
        .unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Created, 1, 1));
    let w = store
        .set("task", "t1", json!({"n": 2}), set_opts())
        .await
        .unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Updated, 2, 2));
    store.set("note", "x", json!("text"), set_opts()).await.unwrap();
    store.set("task", "t2", json!([1, 2]), set_opts()).await.unwrap();
    let d = store
        .delete("task", "t2", set_opts())
        .await
        .unwrap()
        .expect("t2 existed");
    assert_eq!(d.rev, 5);
    // The last change is a delete: the head is newer than any stored entry.
    assert_eq!(store.rev().await.unwrap(), 5);
    store.close().await;
    assert!(matches!(
        store.set("task", "t3", json!(0), set_opts()).await,
        Err(Error::Closed)
    ));

    let store = open(&name).await;
    assert_eq!(entry(&store, "task", "t1").await, Some((json!({"n": 2}), 2, 2)));
    assert_eq!(entry(&store, "note", "x").await, Some((json!("text"), 1, 3)));
    assert_eq!(entry(&store, "task", "t2").await, None);
    assert_eq!(store.keys("task").await.unwrap(), vec!["t1"]);
    assert_eq!(
        store.rev().await.unwrap(),
        5,
        "the head revision survives a reopen"
    );

    // New writes continue the revision sequence, and versions go on.
    let mut watch = store.watch("task", WatchOptions::new()).await.unwrap();
    let w = store
        .set("task", "t1", json!({"n": 3}), set_opts())
        .await
        .unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Updated, 3, 6));
    let w = store.set("task", "t2", json!("again"), set_opts()).await.unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Created, 1, 7));
    let e = next_event(&mut watch, "first write after reopen").await;
    assert_eq!(
        (e.key.as_str(), e.event_type, e.version, e.rev),
        ("t1", EventType::Update, 3, 6)
    );
    let e = next_event(&mut watch, "second write after reopen").await;
    assert_eq!(
        (e.key.as_str(), e.event_type, e.version, e.rev),
        ("t2", EventType::Create, 1, 7)
    );
    // An unchanged write spends no revision, before or after a reopen.
    let w = store.set("note", "x", json!("text"), set_opts()).await.unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Unchanged, 1, 3));
    store.close().await;

    let store = open(&name).await;
    assert_eq!(entry(&store, "task", "t1").await, Some((json!({"n": 3}), 3, 6)));
    assert_eq!(entry(&store, "task", "t2").await, Some((json!("again"), 1, 7)));
    assert_eq!(entry(&store, "note", "x").await, Some((json!("text"), 1, 3)));
    assert_eq!(store.rev().await.unwrap(), 7);
    store.close().await;
}

/// A local store persists its head revision only when a transaction ends
/// with a delete; otherwise the head is the newest entry's revision. Every
/// way a transaction can end, then a reopen: the revisions go on.
#[wasm_bindgen_test]
async fn reopen_continues_the_revisions_however_the_last_write_ended() {
    let name = fresh_name("reopen-head");
    let store = open(&name).await;
    store.set("task", "a", json!(1), set_opts()).await.unwrap();
    // Deleting the only entry: nothing but the head records revision 2.
    let d = store.delete("task", "a", set_opts()).await.unwrap().unwrap();
    assert_eq!(d.rev, 2);
    store.close().await;

    let store = open(&name).await;
    assert_eq!(store.rev().await.unwrap(), 2, "after deleting every entry");
    let w = store.set("task", "b", json!(2), set_opts()).await.unwrap();
    assert_eq!(w.rev, 3);
    store.close().await;

    let store = open(&name).await;
    assert_eq!(store.rev().await.unwrap(), 3, "after a set following a delete");
    // One transaction (both queued before the writer runs) ending with a
    // delete of an older entry.
    let (w, d) = futures_util::future::join(
        store.set("task", "c", json!(3), set_opts()),
        store.delete("task", "b", set_opts()),
    )
    .await;
    assert_eq!((w.unwrap().rev, d.unwrap().unwrap().rev), (4, 5));
    store.close().await;

    let store = open(&name).await;
    assert_eq!(
        store.rev().await.unwrap(),
        5,
        "after a transaction ending with a delete"
    );
    assert_eq!(entry(&store, "task", "c").await, Some((json!(3), 1, 4)));
    // One transaction ending with a set after a delete.
    let (d, w) = futures_util::future::join(
        store.delete("task", "c", set_opts()),
        store.set("task", "d", json!(4), set_opts()),
    )
    .await;
    assert_eq!((d.unwrap().unwrap().rev, w.unwrap().rev), (6, 7));
    store.close().await;

    let store = open(&name).await;
    assert_eq!(
        store.rev().await.unwrap(),
        7,
        "after a transaction ending with a set"
    );
    assert_eq!(store.keys("task").await.unwrap(), vec!["d"]);
    // An unchanged write and a delete of an absent key write nothing.
    store.set("task", "d", json!(4), set_opts()).await.unwrap();
    assert!(store.delete("task", "zz", set_opts()).await.unwrap().is_none());
    let w = store.set("task", "e", json!(5), set_opts()).await.unwrap();
    assert_eq!(w.rev, 8);
    store.close().await;

    let store = open(&name).await;
    assert_eq!(store.rev().await.unwrap(), 8);
    store.close().await;
}

#[wasm_bindgen_test]
async fn reopen_restores_set_many_and_set_fn() {
    let name = fresh_name("reopen-many");
    let store = open(&name).await;
    let items = vec![
        ("b".to_owned(), json!(2)),
        ("a".to_owned(), json!(1)),
        ("c".to_owned(), json!(3)),
    ];
    let written = store.set_many("n", items).await.unwrap();
    assert_eq!(
        written
            .iter()
            .map(|(k, w)| (k.as_str(), w.rev))
            .collect::<Vec<_>>(),
        [("a", 1), ("b", 2), ("c", 3)]
    );
    let w = store
        .set_fn(
            "n",
            "b",
            |v: &Value| Ok::<_, Error>(json!(v.as_i64().unwrap() * 10)),
            set_opts(),
        )
        .await
        .unwrap();
    assert_eq!((w.version, w.rev), (2, 4));
    store.close().await;

    let store = open(&name).await;
    let all: Vec<_> = store
        .get_all("n")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, e)| (k, e.value, e.version, e.rev))
        .collect();
    assert_eq!(
        all,
        [
            ("a".to_owned(), json!(1), 1, 1),
            ("b".to_owned(), json!(20), 2, 4),
            ("c".to_owned(), json!(3), 1, 3),
        ]
    );
    assert_eq!(store.rev().await.unwrap(), 4);
    store.close().await;
}

// ---- (b) a synced store, offline, across a reload ----

#[wasm_bindgen_test]
async fn synced_offline_writes_stay_queued_across_a_reload() {
    let name = fresh_name("synced");
    let store = open_synced(&name).await;
    assert!(store.replica().expect("the replica").is_synced());
    assert_eq!(pending_count(&store), 0);

    store
        .set("task", "t1", json!({"title": "a"}), set_opts())
        .await
        .unwrap();
    assert_eq!(pending_count(&store), 1);
    assert!(store.is_pending("task", "t1"));
    assert!(!store.is_pending("task", "t2"));
    store
        .set("task", "t2", json!({"title": "b"}), set_opts())
        .await
        .unwrap();
    let w = store
        .set("task", "t1", json!({"title": "a2"}), set_opts())
        .await
        .unwrap();
    assert_eq!((w.result, w.version), (SetResult::Updated, 2));
    // An unchanged write queues nothing.
    let w = store
        .set("task", "t2", json!({"title": "b"}), set_opts())
        .await
        .unwrap();
    assert_eq!(w.result, SetResult::Unchanged);
    store.set("note", "n1", json!(null), set_opts()).await.unwrap();
    assert_eq!(pending_count(&store), 4);

    // A delete of a pending key queues a delete op; of an absent key, nothing.
    let d = store.delete("task", "t2", set_opts()).await.unwrap();
    assert_eq!(d.map(|d| d.prev.value), Some(json!({"title": "b"})));
    assert!(store.delete("task", "nope", set_opts()).await.unwrap().is_none());
    assert_eq!(pending_count(&store), 5);
    assert!(store.is_pending("task", "t2"), "the delete of t2 is pending");
    assert_eq!(entry(&store, "task", "t2").await, None);

    let ops = pending_ops(&store);
    let shape: Vec<_> = ops
        .iter()
        .map(|op| (op.kind.as_str(), op.key.as_str(), op.action, op.value.clone()))
        .collect();
    assert_eq!(
        shape,
        [
            ("task", "t1", OpAction::Set, Some(json!({"title": "a"}))),
            ("task", "t2", OpAction::Set, Some(json!({"title": "b"}))),
            ("task", "t1", OpAction::Set, Some(json!({"title": "a2"}))),
            ("note", "n1", OpAction::Set, Some(json!(null))),
            ("task", "t2", OpAction::Delete, None),
        ]
    );
    let ids: std::collections::BTreeSet<_> = ops.iter().map(|op| op.op_id.clone()).collect();
    assert_eq!(ids.len(), ops.len(), "op ids are unique: {ops:?}");
    let client_id = hello_client_id(&store);
    let rev = store.rev().await.unwrap();
    assert_eq!(rev, 5);
    store.close().await;

    // "After a reload": a new store object over the same database.
    let store = open_synced(&name).await;
    assert_eq!(pending_count(&store), 5, "every op is still pending");
    assert_eq!(pending_ops(&store), ops, "the same ops, ids and order");
    assert!(store.is_pending("task", "t1"));
    assert!(store.is_pending("task", "t2"));
    assert!(store.is_pending("note", "n1"));
    let t1 = store.get("task", "t1").await.unwrap().expect("t1 is visible");
    assert_eq!((t1.value, t1.version), (json!({"title": "a2"}), 2));
    assert_eq!(
        entry(&store, "task", "t2").await,
        None,
        "the pending delete still shows"
    );
    assert_eq!(
        store.get("note", "n1").await.unwrap().map(|e| e.value),
        Some(json!(null))
    );
    assert_eq!(store.rev().await.unwrap(), rev);
    // Each entry keeps a revision of its own, and the pending ones say so
    // (a watch replay marks them pending).
    let n1 = store.get("note", "n1").await.unwrap().unwrap();
    let t1 = store.get("task", "t1").await.unwrap().unwrap();
    assert_ne!(n1.rev, t1.rev, "entries restored at distinct revisions");
    assert!(store.is_pending_rev(n1.rev) && store.is_pending_rev(t1.rev));
    assert_eq!(
        hello_client_id(&store),
        client_id,
        "the client id survives a reload"
    );

    // New writes queue after the restored ops, under new op ids.
    let w = store
        .set("task", "t1", json!({"title": "a3"}), set_opts())
        .await
        .unwrap();
    assert_eq!((w.version, w.rev), (3, rev + 1));
    let after = pending_ops(&store);
    assert_eq!(after.len(), 6);
    assert_eq!(after[..5], ops[..]);
    assert!(
        !ids.contains(&after[5].op_id),
        "op id {} reused after a reload",
        after[5].op_id
    );
    store.close().await;

    let store = open_synced(&name).await;
    assert_eq!(pending_ops(&store), after);
    assert_eq!(
        entry(&store, "task", "t1").await.map(|(v, ver, _)| (v, ver)),
        Some((json!({"title": "a3"}), 3))
    );
    store.close().await;
}

/// Feeds the session a `welcome` and an `ack` for `op_id`, as the connection
/// driver would, and waits until the store persisted the answer.
async fn ack(store: &IdbStore, op_id: &str, version: u64, rev: u64) {
    let ack = Ack {
        op_id: op_id.to_owned(),
        result: OpResult::Created,
        version,
        rev,
        value: None,
    };
    {
        let mut replica = store.replica_mut().expect("the replica");
        let session = replica.session_mut().expect("a synced store");
        session.connect(0);
        while session.poll_transmit().is_some() {}
        let welcome = ServerMessage::Welcome(Welcome {
            protocol: 1,
            namespace: "ns".to_owned(),
            rights: Rights::ReadWrite,
            schemas: Default::default(),
            heartbeat_ms: 30_000,
            max_frame_bytes: 1 << 20,
        });
        session
            .handle_frame(encode_server(&welcome).as_bytes(), 0)
            .unwrap();
        session
            .handle_frame(encode_server(&ServerMessage::Ack(ack)).as_bytes(), 0)
            .unwrap();
        session.disconnected();
        // What the connection driver does: the replica notes the answer.
        while replica.poll_event().is_some() {}
    }
    let answered = store.answer(op_id).expect("the op is known");
    store.sync_changed();
    let answer = answered.await.expect("answered");
    assert!(answer.is_ok(), "{answer:?}");
}

#[wasm_bindgen_test]
async fn op_ids_are_never_reused_across_reloads() {
    let name = fresh_name("op-ids");
    let store = open_synced(&name).await;
    store.set("task", "t1", json!(1), set_opts()).await.unwrap();
    store.set("task", "t2", json!(2), set_opts()).await.unwrap();
    let first = pending_ops(&store);
    let client_id = hello_client_id(&store);
    // The server answers the first op; it leaves the queue.
    ack(&store, &first[0].op_id, 1, 1).await;
    assert_eq!(pending_ops(&store), first[1..]);
    store.close().await;

    let store = open_synced(&name).await;
    assert_eq!(pending_ops(&store), first[1..], "the answered op stays answered");
    store.set("task", "t3", json!(3), set_opts()).await.unwrap();
    let ops = pending_ops(&store);
    let new = &ops.last().unwrap().op_id;
    // The server remembers answers by (client id, op id): a new op under an
    // answered op's id would get that op's answer instead of being applied.
    assert!(
        first.iter().all(|op| &op.op_id != new),
        "op id {new} reused after a reload: {first:?}"
    );
    // ... and the server would not recognize a re-sent op under a new
    // client id, so it stays the same.
    assert_eq!(hello_client_id(&store), client_id);
    store.close().await;
}

#[wasm_bindgen_test]
async fn tabs_opening_a_new_database_together_share_its_client_id() {
    let name = fresh_name("two-tabs");
    let (a, b) = futures_util::future::join(open_synced(&name), open_synced(&name)).await;
    let id = hello_client_id(&a);
    assert_eq!(
        hello_client_id(&b),
        id,
        "two stores on one database say hello as different clients"
    );
    a.close().await;
    b.close().await;
    let c = open_synced(&name).await;
    assert_eq!(hello_client_id(&c), id);
    c.close().await;
}

// ---- (c) an IndexedDB failure is an error, and changes nothing ----

/// Breaks `IDBObjectStore.prototype.put` in `mode`, writes, restores it.
async fn failing_write(store: &IdbStore, mode: &str) -> Result<store_core::Written, Error> {
    break_put(mode);
    let result = store.set("task", "t1", json!("new"), set_opts()).await;
    restore_put();
    result
}

async fn check_failed_write_changes_nothing(mode: &str) {
    let name = fresh_name(&format!("failure-{mode}"));
    let store = open(&name).await;
    store.set("task", "t1", json!("old"), set_opts()).await.unwrap();
    store.set("task", "t2", json!("other"), set_opts()).await.unwrap();
    let mut watch = store.watch("task", WatchOptions::new()).await.unwrap();
    let mut all = store.watch_all(WatchOptions::new()).await.unwrap();

    let result = failing_write(&store, mode).await;
    // Each mode fails where it should: the injected exception when the
    // request is issued, the abort when the transaction ends.
    let expected = if mode == "throw" {
        "put failure injected"
    } else {
        "transaction failed"
    };
    match &result {
        Err(e @ Error::Storage(message)) => {
            assert_eq!(e.code(), "storage");
            assert!(message.to_string().contains(expected), "{mode}: {message}");
        }
        other => panic!("{mode}: expected a storage error, got {other:?}"),
    }
    assert_eq!(entry(&store, "task", "t1").await, Some((json!("old"), 1, 1)));
    assert_eq!(
        store.rev().await.unwrap(),
        2,
        "{mode}: the failed write spent a revision"
    );
    assert_eq!(watch.ready(), 0, "{mode}: the failed write was published");
    assert_eq!(
        all.ready(),
        0,
        "{mode}: the failed write was published to watch_all"
    );

    // The next write works, takes the next revision and is the next event.
    let w = store.set("task", "t1", json!("newer"), set_opts()).await.unwrap();
    assert_eq!((w.result, w.version, w.rev), (SetResult::Updated, 2, 3));
    let e = next_event(&mut watch, "after the failure").await;
    assert_eq!((e.key.as_str(), &e.value, e.rev), ("t1", &json!("newer"), 3));
    let e = next_event(&mut all, "after the failure, watch_all").await;
    assert_eq!(e.rev, 3);
    store.close().await;

    let store = open(&name).await;
    assert_eq!(entry(&store, "task", "t1").await, Some((json!("newer"), 2, 3)));
    assert_eq!(entry(&store, "task", "t2").await, Some((json!("other"), 1, 2)));
    assert_eq!(store.rev().await.unwrap(), 3);
    store.close().await;
}

#[wasm_bindgen_test]
async fn aborted_transaction_is_a_storage_error_and_changes_nothing() {
    check_failed_write_changes_nothing("abort").await;
}

#[wasm_bindgen_test]
async fn throwing_put_is_a_storage_error_and_changes_nothing() {
    check_failed_write_changes_nothing("throw").await;
}

#[wasm_bindgen_test]
async fn failed_synced_write_queues_nothing() {
    let name = fresh_name("failure-synced");
    let store = open_synced(&name).await;
    store.set("task", "t1", json!("old"), set_opts()).await.unwrap();
    let before = pending_ops(&store);
    let mut watch = store.watch("task", WatchOptions::new()).await.unwrap();

    break_put("abort");
    let failed = store.set("task", "t2", json!("new"), set_opts()).await;
    let failed_delete = store.delete("task", "t1", set_opts()).await;
    restore_put();
    assert!(matches!(failed, Err(Error::Storage(_))), "{failed:?}");
    assert!(
        matches!(failed_delete, Err(Error::Storage(_))),
        "{failed_delete:?}"
    );
    assert_eq!(pending_ops(&store), before, "a failed write queued an op");
    assert!(!store.is_pending("task", "t2"));
    assert_eq!(entry(&store, "task", "t2").await, None);
    assert_eq!(entry(&store, "task", "t1").await.map(|e| e.0), Some(json!("old")));
    assert_eq!(store.rev().await.unwrap(), 1);
    assert_eq!(watch.ready(), 0);

    store.set("task", "t2", json!("new"), set_opts()).await.unwrap();
    assert_eq!(pending_count(&store), 2);
    assert_eq!(next_event(&mut watch, "after the failure").await.rev, 2);
    store.close().await;

    let store = open_synced(&name).await;
    let ops = pending_ops(&store);
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0], before[0]);
    assert_eq!(
        (ops[1].key.as_str(), ops[1].value.clone()),
        ("t2", Some(json!("new")))
    );
    assert_eq!(entry(&store, "task", "t2").await.map(|e| e.0), Some(json!("new")));
    store.close().await;
}

// ---- (d) another tab deletes the database ----

#[wasm_bindgen_test]
async fn deleting_the_database_makes_the_store_step_aside() {
    let name = fresh_name("versionchange");
    let store = open(&name).await;
    store.set("task", "t1", json!(1), set_opts()).await.unwrap();

    let outcome = JsFuture::from(delete_database(&name, 5_000))
        .await
        .expect("deleteDatabase");
    assert_eq!(
        outcome.as_string().as_deref(),
        Some("deleted"),
        "the open store blocked deleteDatabase"
    );
    let result = store.set("task", "t2", json!(2), set_opts()).await;
    assert!(
        matches!(result, Err(Error::Closed)),
        "expected Closed, got {result:?}"
    );
    let result = store.delete("task", "t1", set_opts()).await;
    assert!(
        matches!(result, Err(Error::Closed)),
        "expected Closed, got {result:?}"
    );
    let names = JsFuture::from(database_names())
        .await
        .expect("indexedDB.databases()");
    let names: Vec<String> = js_sys::Array::from(&names)
        .iter()
        .filter_map(|n| n.as_string())
        .collect();
    assert!(!names.contains(&name), "{name} is still listed: {names:?}");
    store.close().await;

    // The name opens afresh, empty.
    let store = open(&name).await;
    assert_eq!(store.rev().await.unwrap(), 0);
    assert_eq!(entry(&store, "task", "t1").await, None);
    store.close().await;
}
