//! The sync sessions wired back to back, with no sockets: the testkit's
//! [`World`] (client sessions around a [`SimServer`], frames through queues
//! the tests can hold, drop or duplicate, virtual time), and the server
//! session alone.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use store_core::sync::codec;
use store_core::sync::reconnect::{self, Next};
use store_core::sync::session::{
    Authorized, ClientConfig, ClientEvent, ClientSession, ClientState, Denied, ServerConfig, ServerEffect,
    ServerSession, SyncStart,
};
use store_core::sync::{
    Ack, ClientMessage, CloseCode, ErrorCode, Hello, Op, OpAction, PROTOCOL_VERSION, Push, Rights,
    ServerMessage, SnapshotReason,
};
use store_core::testkit::sync::Rng;
use store_core::testkit::world::{NAMESPACE as NS, SimServer, World};
use store_core::{Entry, MemStore, SetOptions, StoreOptions};

const KINDS: &[&str] = &["task", "note"];

/// The server of these tests: it announces a schema for `task`.
fn server(options: StoreOptions<Value>, config: ServerConfig) -> SimServer {
    let schemas = BTreeMap::from([("task".to_owned(), json!({"type": "object"}))]);
    SimServer::new(options, config).with_schemas(schemas)
}

fn world(options: StoreOptions<Value>, config: ServerConfig) -> World {
    World::new(server(options, config))
}

fn simple() -> World {
    world(
        StoreOptions::new(),
        ServerConfig {
            heartbeat_ms: 10_000,
            ..ServerConfig::default()
        },
    )
}

fn authenticate(namespace: &str, token: &str) -> Result<Authorized, Denied> {
    server(StoreOptions::new(), ServerConfig::default()).authenticate(namespace, token)
}

fn put(store: &MemStore<Value>, kind: &str, key: &str, value: Value) {
    store.set(kind, key, value, SetOptions::default()).unwrap();
}

#[test]
fn first_sync_is_a_snapshot_in_parts_then_live_changes() {
    let mut w = world(
        StoreOptions::new(),
        ServerConfig {
            snapshot_part_entries: 2,
            ..ServerConfig::default()
        },
    );
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        put(w.store(), "task", key, json!({"n": i}));
    }
    put(w.store(), "note", "n1", json!("hello"));
    let c = w.add_client("c0", "rw");
    w.connect(c);
    w.pump();
    assert_eq!(
        w.snapshots(c),
        [
            (SnapshotReason::Initial, 2, false),
            (SnapshotReason::Initial, 2, true)
        ]
    );
    assert_eq!(w.clients[c].cursor(), Some(4));
    assert!(w.events[c].contains(&ClientEvent::Synced { rev: 4 }));
    assert_eq!(w.clients[c].schemas()["task"], json!({"type": "object"}));
    assert_eq!(w.clients[c].rights(), Some(Rights::ReadWrite));
    w.assert_converged();

    put(w.store(), "task", "d", json!({"n": 3}));
    w.store().delete("task", "a", SetOptions::default()).unwrap();
    w.pump();
    assert_eq!(w.clients[c].cursor(), Some(6));
    assert_eq!(w.snapshots(c).len(), 2, "live changes come as changes");
    w.assert_converged();
}

#[test]
fn resuming_within_history_sends_only_the_changes() {
    let mut w = simple();
    put(w.store(), "task", "a", json!(1));
    let c = w.add_client("c0", "rw");
    w.connect(c);
    w.pump();
    w.drop_connection(c);
    put(w.store(), "task", "b", json!(2));
    put(w.store(), "task", "a", json!(3));
    w.delivered[c].clear();
    w.connect(c);
    w.pump();
    assert!(w.snapshots(c).is_empty());
    let changes: Vec<u64> = w.delivered[c]
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Changes(b) => Some(b.rev),
            _ => None,
        })
        .collect();
    assert_eq!(changes, [3]);
    match &w.delivered[c][0] {
        ServerMessage::Welcome(_) => {}
        other => panic!("welcome comes first, got {other:?}"),
    }
    w.assert_converged();

    // Nothing changed: an empty batch still tells the client it is synced.
    w.drop_connection(c);
    w.delivered[c].clear();
    w.events[c].clear();
    w.connect(c);
    w.pump();
    assert!(matches!(&w.delivered[c][1], ServerMessage::Changes(b) if b.events.is_empty() && b.rev == 3));
    assert!(w.events[c].contains(&ClientEvent::Synced { rev: 3 }));
    assert!(w.clients[c].is_synced());
}

#[test]
fn resuming_after_compaction_gets_a_compacted_snapshot() {
    let mut w = world(StoreOptions::new().retention(2), ServerConfig::default());
    put(w.store(), "task", "a", json!(1));
    let c = w.add_client("c0", "rw");
    w.connect(c);
    w.pump();
    w.drop_connection(c);
    for i in 0..5 {
        put(w.store(), "task", &format!("k{i}"), json!(i));
    }
    w.store().delete("task", "a", SetOptions::default()).unwrap();
    w.delivered[c].clear();
    w.connect(c);
    w.pump();
    assert_eq!(w.snapshots(c), [(SnapshotReason::Compacted, 5, true)]);
    assert_eq!(w.clients[c].cursor(), Some(7));
    w.assert_converged();
}

#[test]
fn a_cursor_ahead_of_the_server_resets_the_confirmed_state() {
    let mut w = simple();
    put(w.store(), "task", "a", json!(1));
    let stale = ClientState {
        cursor: Some(100),
        entries: vec![(
            "task".into(),
            "ghost".into(),
            Entry {
                value: json!("gone"),
                version: 3,
                rev: 90,
            },
        )],
        pending: Vec::new(),
        next_op_seq: 0,
    };
    let c = w.add_client_with(ClientConfig::new(NS, "rw", "c0"), stale);
    assert_eq!(w.clients[c].get("task", "ghost"), Some(json!("gone")));
    w.connect(c);
    w.pump();
    assert_eq!(w.snapshots(c), [(SnapshotReason::Reset, 1, true)]);
    assert_eq!(w.clients[c].get("task", "ghost"), None);
    assert_eq!(w.clients[c].cursor(), Some(1));
    w.assert_converged();
}

#[test]
fn a_reset_forgets_deletes_acknowledged_ahead_in_the_replaced_history() {
    // The client's delete is acknowledged at revision 6 before the change
    // reaches it, and the connection drops. The server's data is then
    // restored to revision 3: revision 6 names nothing in the new history,
    // and the create of the key at revision 4 must reach the client.
    let mut s = ClientSession::new(ClientConfig::new(NS, "rw", "c0"));
    let feed = |s: &mut ClientSession, message: Value| {
        s.handle_frame(message.to_string().as_bytes(), 0).unwrap();
    };
    let welcome = json!({"type": "welcome", "protocol": PROTOCOL_VERSION, "namespace": NS,
        "rights": "read_write", "schemas": {}, "heartbeat_ms": 10_000, "max_frame_bytes": 1 << 20});
    s.connect(0);
    feed(&mut s, welcome.clone());
    feed(
        &mut s,
        json!({"type": "snapshot", "rev": 5, "reason": "initial", "done": true,
        "entries": [{"kind": "task", "key": "k", "value": 1, "version": 1, "rev": 5}]}),
    );
    let op_id = s.push_op("task", "k", OpAction::Delete, None, None);
    feed(
        &mut s,
        json!({"type": "ack", "op_id": op_id, "result": "deleted", "version": 0, "rev": 6}),
    );
    assert_eq!(s.confirmed("task", "k"), None);
    s.disconnected();

    s.connect(0);
    feed(&mut s, welcome);
    feed(
        &mut s,
        json!({"type": "snapshot", "rev": 3, "reason": "reset", "done": true, "entries": []}),
    );
    feed(
        &mut s,
        json!({"type": "changes", "rev": 4, "events": [
        {"kind": "task", "key": "k", "type": "create", "value": 2, "version": 1, "rev": 4}]}),
    );
    assert_eq!(s.cursor(), Some(4));
    assert_eq!(s.confirmed("task", "k").map(|e| &e.value), Some(&json!(2)));
}

#[test]
fn two_clients_converge_after_interleaved_writes() {
    let mut w = simple();
    let a = w.add_client("a", "rw");
    let b = w.add_client("b", "rw");
    w.connect(a);
    w.connect(b);
    w.pump();
    w.set(a, "task", "x", json!("a1"));
    w.set(b, "task", "x", json!("b1"));
    w.set(b, "note", "y", json!("b2"));
    w.pump();
    w.set(a, "note", "y", json!("a2"));
    w.delete(b, "task", "x");
    w.set(a, "task", "z", json!(1));
    assert_eq!(w.clients[a].get("task", "z"), Some(json!(1)), "optimistic view");
    assert_eq!(w.clients[b].get("task", "x"), None, "optimistic delete");
    w.pump();
    w.assert_converged();
    assert_eq!(w.server.state("note"), [("y".to_owned(), json!("a2"))]);
    let acked = w.events[a]
        .iter()
        .filter(|e| matches!(e, ClientEvent::Acked(_)))
        .count();
    assert_eq!(acked, 3);
}

#[test]
fn a_client_subscribed_to_some_kinds_sees_only_those() {
    let mut w = simple();
    let mut config = ClientConfig::new(NS, "rw", "t");
    config.kinds = Some(vec!["task".into()]);
    let t = w.add_client_with(config, ClientState::default());
    put(w.store(), "note", "n", json!(0));
    put(w.store(), "task", "a", json!(1));
    w.connect(t);
    w.pump();
    put(w.store(), "note", "n", json!(2));
    put(w.store(), "task", "a", json!(3));
    put(w.store(), "note", "n", json!(4));
    w.pump();
    assert_eq!(w.clients[t].list("note"), []);
    assert_eq!(w.clients[t].list("task"), [("a".to_owned(), json!(3))]);
    // The batch's rev is past its last event: a later note changed.
    assert_eq!(w.clients[t].cursor(), Some(5));
    // Resuming skips what the filter hid, and gaps are not an error.
    w.drop_connection(t);
    put(w.store(), "task", "b", json!(5));
    w.connect(t);
    w.pump();
    assert_eq!(w.clients[t].list("task").len(), 2);
    assert_eq!(w.clients[t].cursor(), Some(6));
}

#[test]
fn a_lost_ack_is_answered_again_on_retry_without_reapplying() {
    let mut w = simple();
    let c = w.add_client("c0", "rw");
    w.connect(c);
    w.pump();
    w.drop_acks[c] = true;
    let op = w.set(c, "task", "x", json!(1));
    w.pump();
    assert_eq!(w.server.applied_count(&op), 1);
    assert_eq!(w.clients[c].pending().len(), 1, "the ack was lost");
    assert_eq!(
        w.clients[c].confirmed("task", "x").unwrap().version,
        1,
        "the change arrived"
    );
    w.drop_acks[c] = false;
    w.drop_connection(c);
    w.connect(c);
    w.pump();
    assert_eq!(w.server.applied_count(&op), 1, "applied once");
    let acks: Vec<&Ack> = w.events[c]
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Acked(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(acks.len(), 1);
    assert_eq!(
        (acks[0].op_id.as_str(), acks[0].version, acks[0].rev),
        (op.as_str(), 1, 1)
    );
    w.assert_converged();
}

#[test]
fn a_reconnect_mid_batch_resends_pending_ops_in_order() {
    let mut w = simple();
    let c = w.add_client("c0", "rw");
    w.connect(c);
    w.pump();
    let mut ops = vec![w.set(c, "task", "x", json!(1)), w.set(c, "task", "x", json!(2))];
    w.pump_client_only(c);
    ops.push(w.delete(c, "task", "y"));
    ops.push(w.set(c, "task", "x", json!(3)));
    w.pump_client_only(c);
    // The first push reaches the server; the socket breaks before the second
    // push and before any answer.
    let link = w.link(c).unwrap();
    assert_eq!(link.to_server.len(), 2, "two pushes");
    let first = link.to_server.pop_front().unwrap();
    let conn = link.conn();
    w.server.receive(conn, &first, 0);
    assert_eq!(w.server.applied_ops().count(), 2, "the first push was applied");
    w.drop_connection(c);
    w.set(c, "task", "z", json!(0));
    assert_eq!(w.clients[c].pending().len(), 5);
    w.connect(c);
    w.pump();
    for op in &ops {
        assert_eq!(w.server.applied_count(op), 1, "{op} applied once");
    }
    assert_eq!(w.store().get("task", "x").unwrap().unwrap().version, 3);
    assert_eq!(w.store().rev().unwrap(), 4);
    w.assert_converged();
}

#[test]
fn duplicated_and_reordered_pushes_are_applied_once() {
    let mut w = simple();
    let c = w.add_client("c0", "rw");
    w.connect(c);
    w.pump();

    // Duplicated: the same push handled twice on one connection.
    let op = w.set(c, "task", "x", json!(1));
    w.pump_client_only(c);
    let link = w.link(c).unwrap();
    let frame = link.to_server.front().unwrap().clone();
    link.to_server.push_back(frame);
    w.pump();
    assert_eq!(w.server.applied_count(&op), 1);
    let acks = w.delivered[c]
        .iter()
        .filter(|m| matches!(m, ServerMessage::Ack(_)))
        .count();
    assert_eq!(acks, 2, "the duplicate gets the original answer");
    assert_eq!(w.clients[c].pending().len(), 0);

    // Reordered: the old connection's push is handled after the new
    // connection re-sent and applied it, and after a later op.
    let first = w.set(c, "task", "y", json!("old"));
    w.pump_client_only(c);
    w.link(c).unwrap().hold = true;
    w.abandon_connection(c);
    w.connect(c);
    w.pump();
    let second = w.set(c, "task", "y", json!("new"));
    w.pump();
    w.release_all();
    w.pump();
    assert_eq!(w.server.applied_count(&first), 1);
    assert_eq!(w.server.applied_count(&second), 1);
    assert_eq!(w.store().get("task", "y").unwrap().unwrap().value, json!("new"));
    assert!(w.links().all(|l| l.is_active()), "the old connection is done");
    w.assert_converged();
}

#[test]
fn a_read_only_token_gets_forbidden_rejects_and_rolls_back() {
    let mut w = simple();
    put(w.store(), "task", "x", json!(1));
    let c = w.add_client("reader", "ro");
    w.connect(c);
    w.pump();
    assert_eq!(w.clients[c].rights(), Some(Rights::Read));
    w.set(c, "task", "x", json!(2));
    let del = w.delete(c, "task", "x");
    assert_eq!(w.clients[c].get("task", "x"), None, "optimistic");
    w.pump();
    let rejects: Vec<(String, ErrorCode)> = w.events[c]
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Rejected { op, code, .. } => Some((op.op_id.clone(), *code)),
            _ => None,
        })
        .collect();
    assert_eq!(rejects.len(), 2);
    assert!(rejects.iter().all(|(_, code)| *code == ErrorCode::Forbidden));
    assert_eq!(rejects[1].0, del);
    assert_eq!(w.clients[c].get("task", "x"), Some(json!(1)), "rolled back");
    assert_eq!(w.store().rev().unwrap(), 1);
    assert!(w.is_connected(c), "a reject is not fatal");
}

#[test]
fn a_rejected_op_is_rolled_back_with_an_event() {
    let mut w = simple();
    put(w.store(), "task", "x", json!(1));
    let c = w.add_client("c0", "rw");
    w.connect(c);
    w.pump();
    let op = w.clients[c].push_op("task", "x", OpAction::Set, Some(json!(9)), Some(7));
    assert_eq!(w.clients[c].get("task", "x"), Some(json!(9)));
    w.pump();
    let rejected = w.events[c].iter().find_map(|e| match e {
        ClientEvent::Rejected { op, code, .. } => Some((op.op_id.clone(), *code)),
        _ => None,
    });
    assert_eq!(rejected, Some((op, ErrorCode::Conflict)));
    assert_eq!(w.clients[c].get("task", "x"), Some(json!(1)));
}

#[test]
fn a_pending_op_over_the_key_limit_is_rejected_alone_on_every_reconnect() {
    let mut w = simple();
    let c = w.add_client("c0", "rw");
    // Written offline, pending; then pushed on connect, as on every
    // reconnect.
    let long = "k".repeat(store_core::MAX_KEY_BYTES + 1);
    let before = w.set(c, "task", "x", json!(1));
    let bad = w.set(c, "task", &long, json!(2));
    let nul = w.set(c, "task", "a\0b", json!(3));
    let after = w.set(c, "task", "y", json!(4));
    w.connect(c);
    w.pump();
    assert!(w.closes.is_empty(), "no session ended: {:?}", w.closes);
    assert!(w.is_connected(c), "a bad op is not fatal");
    let answers: Vec<(String, Option<ErrorCode>)> = w.delivered[c]
        .iter()
        .filter_map(|m| match m {
            ServerMessage::Ack(a) => Some((a.op_id.clone(), None)),
            ServerMessage::Reject(r) => Some((r.op_id.clone(), Some(r.code))),
            _ => None,
        })
        .collect();
    assert_eq!(
        answers,
        [
            (before, None),
            (bad, Some(ErrorCode::KeyTooLong)),
            (nul, Some(ErrorCode::InvalidKey)),
            (after, None)
        ],
        "answered in op order"
    );
    assert_eq!(w.clients[c].get("task", &long), None, "rolled back");
    assert_eq!(w.clients[c].pending().len(), 0);
    w.drop_connection(c);
    w.connect(c);
    w.pump();
    assert!(w.closes.is_empty() && w.is_connected(c));
    w.assert_converged();
}

// ---- the server session alone ----

fn hello_frame(protocol: u32, token: &str) -> String {
    codec::encode_client(&ClientMessage::Hello(Hello {
        protocol,
        namespace: NS.into(),
        token: token.into(),
        client_id: "c".into(),
        since: None,
        kinds: None,
    }))
}

fn drain_out(s: &mut ServerSession) -> Vec<ServerMessage> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn fatal_code(s: &mut ServerSession) -> (ErrorCode, Option<CloseCode>) {
    let out = drain_out(s);
    match out.last() {
        Some(ServerMessage::Error(e)) if e.fatal => (e.code, s.poll_close()),
        other => panic!("expected a fatal error, got {other:?}"),
    }
}

/// A session welcomed and live, its output drained.
fn live_session(config: ServerConfig) -> ServerSession {
    live_session_speaking(config, PROTOCOL_VERSION)
}

/// A session of a client speaking `protocol`, welcomed and live.
fn live_session_speaking(config: ServerConfig, protocol: u32) -> ServerSession {
    let mut s = ServerSession::new(config, 0);
    s.handle_frame(hello_frame(protocol, "rw").as_bytes(), 0);
    assert!(matches!(s.poll_effect(), Some(ServerEffect::Authenticate { .. })));
    s.handle_auth(authenticate(NS, "rw"));
    assert!(matches!(
        s.poll_effect(),
        Some(ServerEffect::StartSync { since: None, .. })
    ));
    s.handle_sync_start(SyncStart::Snapshot {
        rev: 0,
        reason: SnapshotReason::Initial,
        entries: Vec::new(),
    });
    let out = drain_out(&mut s);
    assert!(
        matches!(out[0], ServerMessage::Welcome(ref w) if w.protocol == protocol),
        "welcomed in the client's protocol: {:?}",
        out[0]
    );
    assert!(matches!(out[1], ServerMessage::Snapshot(ref p) if p.done && p.entries.is_empty()));
    assert!(s.is_live());
    s
}

#[test]
fn a_protocol_1_client_is_served_and_its_patch_ops_refused_alone() {
    assert_eq!(store_core::sync::MIN_PROTOCOL_VERSION, 1);
    let mut s = live_session_speaking(ServerConfig::default(), 1);
    let frame = r#"{"type":"push","ops":[
        {"op_id":"1","kind":"t","key":"k","action":"patch","value":{"a":1}},
        {"op_id":"2","kind":"t","key":"k","action":"set","value":{"a":1}}]}"#;
    s.handle_frame(frame.as_bytes(), 0);
    let Some(ServerEffect::Apply { ops, .. }) = s.poll_effect() else {
        panic!("the set is applied")
    };
    assert_eq!(ops.iter().map(|o| o.op_id.as_str()).collect::<Vec<_>>(), ["2"]);
    s.handle_applied(vec![Ok(Ack::deleted::<Value>("2", None, 0))]);
    let out = drain_out(&mut s);
    let ServerMessage::Reject(reject) = &out[0] else {
        panic!("the patch is refused first: {out:?}")
    };
    assert_eq!((reject.op_id.as_str(), reject.code), ("1", ErrorCode::BadMessage));
    assert!(reject.message.contains("protocol 2"), "{}", reject.message);
    assert!(
        matches!(&out[1], ServerMessage::Ack(a) if a.op_id == "2"),
        "{out:?}"
    );

    // A protocol 2 client's patch goes to the store.
    let mut s = live_session(ServerConfig::default());
    s.handle_frame(frame.as_bytes(), 0);
    let Some(ServerEffect::Apply { ops, .. }) = s.poll_effect() else {
        panic!("the push is applied")
    };
    assert_eq!(ops.len(), 2);
    assert_eq!(ops[0].action, OpAction::Patch);
}

#[test]
fn bad_frames_are_fatal_with_their_close_codes() {
    let cases: Vec<(Vec<String>, ErrorCode, CloseCode)> = vec![
        (
            vec!["{not json".into()],
            ErrorCode::BadMessage,
            CloseCode::ProtocolError,
        ),
        (
            vec![r#"{"type":"subscribe"}"#.into()],
            ErrorCode::UnknownType,
            CloseCode::ProtocolError,
        ),
        (
            vec![r#"{"type":"ping","nonce":1}"#.into()],
            ErrorCode::HelloExpected,
            CloseCode::ProtocolError,
        ),
        (
            vec![
                hello_frame(PROTOCOL_VERSION, "rw"),
                hello_frame(PROTOCOL_VERSION, "rw"),
            ],
            ErrorCode::HelloExpected,
            CloseCode::ProtocolError,
        ),
        (
            vec![hello_frame(PROTOCOL_VERSION + 1, "rw")],
            ErrorCode::UnsupportedProtocol,
            CloseCode::UnsupportedProtocol,
        ),
        (
            vec![hello_frame(0, "rw")],
            ErrorCode::UnsupportedProtocol,
            CloseCode::UnsupportedProtocol,
        ),
        (
            vec![format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(2 << 20))],
            ErrorCode::TooLarge,
            CloseCode::TooBig,
        ),
    ];
    for (frames, code, close) in cases {
        let mut s = ServerSession::new(ServerConfig::default(), 0);
        for f in &frames {
            s.handle_frame(f.as_bytes(), 0);
            while let Some(ServerEffect::Authenticate { namespace, token, .. }) = s.poll_effect() {
                s.handle_auth(authenticate(&namespace, &token));
            }
        }
        assert_eq!(fatal_code(&mut s), (code, Some(close)), "{frames:.40?}");
        assert!(s.is_closed());
        assert_eq!(s.poll_close(), None, "the close code is given once");
        s.handle_frame(br#"{"type":"ping","nonce":1}"#, 0);
        assert!(s.poll_transmit().is_none(), "a closed session is silent");
    }

    let mut s = ServerSession::new(ServerConfig::default(), 0);
    s.handle_frame(hello_frame(PROTOCOL_VERSION, "nope").as_bytes(), 0);
    let Some(ServerEffect::Authenticate { namespace, token, .. }) = s.poll_effect() else {
        panic!("authenticate first")
    };
    s.handle_auth(authenticate(&namespace, &token));
    assert_eq!(
        fatal_code(&mut s),
        (ErrorCode::Unauthorized, Some(CloseCode::Unauthorized))
    );

    // A bad frame after the handshake is fatal too.
    let mut s = live_session(ServerConfig::default());
    s.handle_frame(br#"{"type":"push","ops":{"op_id":"1"}}"#, 0);
    assert_eq!(
        fatal_code(&mut s),
        (ErrorCode::BadMessage, Some(CloseCode::ProtocolError))
    );
}

#[test]
fn too_many_ops_in_flight_is_fatal() {
    let mut s = live_session(ServerConfig {
        max_in_flight_ops: 3,
        ..ServerConfig::default()
    });
    let push = |ids: &[&str]| {
        codec::encode_client(&ClientMessage::Push(Push {
            ops: ids
                .iter()
                .map(|id| Op {
                    op_id: (*id).into(),
                    kind: "task".into(),
                    key: "k".into(),
                    action: OpAction::Delete,
                    value: None,
                    if_version: None,
                })
                .collect(),
        }))
    };
    s.handle_frame(push(&["1", "2"]).as_bytes(), 0);
    assert!(matches!(s.poll_effect(), Some(ServerEffect::Apply { ops, .. }) if ops.len() == 2));
    s.handle_applied(vec![
        Ok(Ack::deleted::<Value>("1", None, 0)),
        Ok(Ack::deleted::<Value>("2", None, 0)),
    ]);
    s.handle_frame(push(&["3", "4"]).as_bytes(), 0);
    s.handle_frame(push(&["5", "6"]).as_bytes(), 0);
    let out = drain_out(&mut s);
    assert!(matches!(&out[0], ServerMessage::Ack(a) if a.op_id == "1"));
    assert!(matches!(&out[1], ServerMessage::Ack(a) if a.op_id == "2"));
    assert!(matches!(&out[2], ServerMessage::Error(e) if e.code == ErrorCode::TooManyInFlight && e.fatal));
    assert_eq!(s.poll_close(), Some(CloseCode::SlowConsumer));
}

#[test]
fn an_op_breaking_a_rule_of_its_own_is_rejected_alone_in_its_turn() {
    let mut s = live_session(ServerConfig::default());
    let op = |id: &str, key: &str| Op {
        op_id: id.into(),
        kind: "task".into(),
        key: key.into(),
        action: OpAction::Delete,
        value: None,
        if_version: None,
    };
    let push = |ops: Vec<Op>| codec::encode_client(&ClientMessage::Push(Push { ops }));
    let answers = |s: &mut ServerSession| -> Vec<(String, Option<ErrorCode>)> {
        drain_out(s)
            .into_iter()
            .map(|m| match m {
                ServerMessage::Ack(a) => (a.op_id, None),
                ServerMessage::Reject(r) => (r.op_id, Some(r.code)),
                other => panic!("expected answers, got {other:?}"),
            })
            .collect()
    };
    let long = "k".repeat(store_core::MAX_KEY_BYTES + 1);
    let long_id = "o".repeat(ServerConfig::default().limits.max_id_bytes + 1);
    s.handle_frame(
        push(vec![
            op("1", "a"),
            op("2", &long),
            op("3", "a\0"),
            op(&long_id, "b"),
            op("4", "b"),
        ])
        .as_bytes(),
        0,
    );
    // Only the ops that keep the rules go to the store.
    let Some(ServerEffect::Apply { ops, .. }) = s.poll_effect() else {
        panic!("the push is applied")
    };
    assert_eq!(
        ops.iter().map(|o| o.op_id.as_str()).collect::<Vec<_>>(),
        ["1", "4"]
    );
    // A push of bad ops only, while ops before it are in flight: answered
    // after them.
    s.handle_frame(push(vec![op("5", &long)]).as_bytes(), 0);
    assert_eq!(s.poll_effect(), None);
    assert_eq!(
        answers(&mut s),
        [],
        "nothing is answered before the ops sent before it"
    );
    s.handle_applied(vec![
        Ok(Ack::deleted::<Value>("1", None, 0)),
        Ok(Ack::deleted::<Value>("4", None, 0)),
    ]);
    assert_eq!(
        answers(&mut s),
        [
            ("1".to_owned(), None),
            ("2".to_owned(), Some(ErrorCode::KeyTooLong)),
            ("3".to_owned(), Some(ErrorCode::InvalidKey)),
            (long_id, Some(ErrorCode::BadMessage)),
            ("4".to_owned(), None),
            ("5".to_owned(), Some(ErrorCode::KeyTooLong)),
        ]
    );
    // With nothing in flight, it is answered at once; the session goes on.
    s.handle_frame(push(vec![op("6", &long)]).as_bytes(), 0);
    assert_eq!(s.poll_effect(), None);
    assert_eq!(answers(&mut s), [("6".to_owned(), Some(ErrorCode::KeyTooLong))]);
    s.handle_frame(push(vec![op("7", "c")]).as_bytes(), 0);
    assert!(matches!(s.poll_effect(), Some(ServerEffect::Apply { ops, .. }) if ops.len() == 1));
    assert!(!s.is_closed());
    assert_eq!(s.poll_close(), None);
}

#[test]
fn heartbeats_ping_a_silent_client_then_close_it() {
    let mut s = live_session(ServerConfig {
        heartbeat_ms: 1_000,
        ..ServerConfig::default()
    });
    assert_eq!(s.poll_timeout(), Some(1_000));
    s.handle_frame(br#"{"type":"ping","nonce":42}"#, 500);
    assert_eq!(drain_out(&mut s), [ServerMessage::Pong { nonce: 42 }]);
    assert_eq!(s.poll_timeout(), Some(1_500));
    s.handle_timeout(1_500);
    assert!(matches!(drain_out(&mut s)[..], [ServerMessage::Ping { .. }]));
    assert_eq!(s.poll_timeout(), Some(2_500));
    s.handle_timeout(2_000);
    assert!(drain_out(&mut s).is_empty(), "one ping per silence");
    s.handle_timeout(2_500);
    assert_eq!(fatal_code(&mut s), (ErrorCode::Timeout, Some(CloseCode::Timeout)));
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn a_silent_connection_is_closed_in_the_harness_and_resumed() {
    let mut w = world(
        StoreOptions::new(),
        ServerConfig {
            heartbeat_ms: 1_000,
            ..ServerConfig::default()
        },
    );
    let c = w.add_client("c0", "rw");
    w.connect(c);
    w.pump();
    // The client's frames are lost from now on.
    w.link(c).unwrap().hold = true;
    for _ in 0..3 {
        w.now += 1_000;
        w.fire_server_timers();
        w.pump();
    }
    assert_eq!(w.closes, [(c, CloseCode::Timeout)]);
    assert!(!w.is_connected(c));
    assert!(!w.clients[c].is_connected());
    put(w.store(), "task", "a", json!(1));
    w.connect(c);
    w.pump();
    w.assert_converged();
}

#[test]
fn the_client_pings_and_gives_up_on_a_silent_server() {
    let mut c = ClientSession::new(ClientConfig {
        heartbeat_ms: 1_000,
        ..ClientConfig::new(NS, "rw", "c")
    });
    c.connect(0);
    assert!(matches!(c.poll_transmit(), Some(ClientMessage::Hello(_))));
    assert_eq!(c.poll_timeout(), Some(1_000));
    c.handle_timeout(1_000);
    assert!(matches!(c.poll_transmit(), Some(ClientMessage::Ping { .. })));
    c.handle_timeout(2_000);
    assert_eq!(c.poll_event(), Some(ClientEvent::TimedOut));
    assert!(!c.is_connected());
    assert_eq!(c.poll_timeout(), None);
}

#[test]
fn a_slow_consumer_is_dropped_and_only_told_why() {
    let mut s = live_session(ServerConfig {
        max_queued_messages: 3,
        ..ServerConfig::default()
    });
    for rev in 1..=5 {
        let event = store_core::Event {
            kind: "task".into(),
            key: format!("k{rev}"),
            event_type: store_core::EventType::Create,
            value: json!(rev),
            version: 1,
            rev,
        };
        s.handle_events(vec![event], rev);
    }
    let out = drain_out(&mut s);
    assert_eq!(out.len(), 1);
    assert!(matches!(&out[0], ServerMessage::Error(e) if e.code == ErrorCode::SlowConsumer && e.fatal));
    assert_eq!(s.poll_close(), Some(CloseCode::SlowConsumer));
}

#[test]
fn a_token_expiring_mid_session_closes_it_at_its_expiry() {
    let mut s = ServerSession::new(
        ServerConfig {
            heartbeat_ms: 30_000,
            ..ServerConfig::default()
        },
        0,
    );
    s.handle_frame(hello_frame(PROTOCOL_VERSION, "rw@5000").as_bytes(), 0);
    assert!(matches!(s.poll_effect(), Some(ServerEffect::Authenticate { .. })));
    s.handle_auth(authenticate(NS, "rw@5000"));
    assert_eq!(
        s.poll_timeout(),
        Some(5_000),
        "the expiry comes before the heartbeat"
    );
    s.handle_timeout(4_999);
    assert!(!s.is_closed());
    s.handle_timeout(5_000);
    assert_eq!(
        fatal_code(&mut s),
        (ErrorCode::Unauthorized, Some(CloseCode::Unauthorized))
    );
    assert_eq!(s.poll_timeout(), None);
    // A refusal at `hello` carries the shell's reason.
    let mut s = ServerSession::new(ServerConfig::default(), 0);
    s.handle_frame(hello_frame(PROTOCOL_VERSION, "rw").as_bytes(), 0);
    let _ = s.poll_effect();
    s.handle_auth(Err(Denied::unauthorized("the token's signature is invalid")));
    match &drain_out(&mut s)[..] {
        [ServerMessage::Error(e)] => assert_eq!(e.message, "the token's signature is invalid"),
        other => panic!("expected the refusal, got {other:?}"),
    }
}

/// Whether the client's last event says to reconnect or to stop.
fn last_error_next(w: &World, c: usize) -> (ErrorCode, Next) {
    let event = w.events[c]
        .iter()
        .rev()
        .find(|e| matches!(e, ClientEvent::Error(_) | ClientEvent::AccessLost(_)))
        .expect("an error event");
    let (ClientEvent::Error(e) | ClientEvent::AccessLost(e)) = event else {
        unreachable!()
    };
    (e.code, reconnect::after_event(event))
}

#[test]
fn access_lost_mid_session_reconnects_with_a_fresh_token_and_pending_ops_apply_once() {
    let mut w = simple();
    let c = w.add_client("c0", "rw@1000");
    w.connect(c);
    w.pump();
    // The op reaches the server, its ack does not: the token expires first.
    w.drop_acks[c] = true;
    let op = w.set(c, "task", "x", json!({"title": "a"}));
    w.pump();
    w.drop_acks[c] = false;
    assert_eq!(w.clients[c].pending().len(), 1);
    w.now = 1_000;
    w.fire_server_timers();
    w.pump();
    assert_eq!(w.closes, [(c, CloseCode::Unauthorized)]);
    assert!(matches!(w.events[c].last(), Some(ClientEvent::AccessLost(_))));
    assert_eq!(last_error_next(&w, c), (ErrorCode::Unauthorized, Next::Reconnect));
    // A second op, written while the session is gone.
    let second = w.set(c, "task", "y", json!({"title": "b"}));
    w.clients[c].set_token("rw@60000");
    w.connect(c);
    w.pump();
    assert_eq!(w.server.applied_count(&op), 1, "answered again from the record");
    assert_eq!(w.server.applied_count(&second), 1);
    assert_eq!(w.clients[c].pending().len(), 0);
    w.assert_converged();

    // A revoked session is lost the same way; a token refused at `hello`
    // is final.
    let conn = w
        .links()
        .find(|l| l.client() == c && l.is_active())
        .unwrap()
        .conn();
    w.server.revoke(
        conn,
        Denied::forbidden("the token no longer grants this namespace"),
    );
    w.pump();
    assert_eq!(last_error_next(&w, c), (ErrorCode::Forbidden, Next::Reconnect));
    w.clients[c].set_token("stolen");
    w.connect(c);
    w.pump();
    assert!(matches!(w.events[c].last(), Some(ClientEvent::Error(_))));
    assert_eq!(last_error_next(&w, c), (ErrorCode::Unauthorized, Next::Stop));
}

#[test]
fn a_client_state_survives_a_restart() {
    let mut w = simple();
    let c = w.add_client("c0", "rw");
    w.connect(c);
    w.pump();
    w.set(c, "task", "a", json!(1));
    w.pump();
    w.drop_connection(c);
    let offline = w.set(c, "task", "b", json!(2));
    let state = w.clients[c].state();
    assert_eq!(state.pending.len(), 1);
    w.clients[c] = ClientSession::restore(ClientConfig::new(NS, "rw", "c0"), state);
    assert_eq!(w.clients[c].get("task", "a"), Some(json!(1)));
    let next = w.set(c, "task", "c", json!(3));
    assert_ne!(next, offline, "op ids are never reused");
    w.connect(c);
    w.pump();
    assert_eq!(w.server.applied_count(&offline), 1);
    w.assert_converged();
}

#[test]
fn random_clients_writing_and_reconnecting_converge() {
    let (mut compacted, mut dropped_acks, mut rejected) = (0, 0, 0);
    for seed in 1..=40u64 {
        let mut rng = Rng::new(seed);
        let retention = if seed % 3 == 0 { 4 } else { 1_000 };
        let mut w = world(
            StoreOptions::new().retention(retention),
            ServerConfig {
                snapshot_part_entries: 3,
                ..ServerConfig::default()
            },
        );
        let n = 2 + rng.below(3) as usize;
        for i in 0..n {
            w.add_client(&format!("c{i}"), "rw");
        }
        for _ in 0..300 {
            let c = rng.below(n as u64) as usize;
            let kind = KINDS[rng.below(2) as usize];
            let key = format!("k{}", rng.below(5));
            match rng.below(10) {
                0..=3 => {
                    w.set(c, kind, &key, json!(rng.below(4)));
                }
                4 => {
                    w.delete(c, kind, &key);
                }
                5 => w.drop_connection(c),
                6 => {
                    if !w.is_connected(c) {
                        w.connect(c);
                    }
                }
                7 => w.drop_acks[c] = rng.below(2) == 0,
                8 => {
                    if w.is_connected(c) {
                        w.pump_client_only(c);
                    }
                }
                _ => w.pump(),
            }
        }
        w.drop_acks.iter_mut().for_each(|d| *d = false);
        for c in 0..n {
            if !w.is_connected(c) {
                w.connect(c);
            }
        }
        w.pump();
        // Ops whose acks were dropped are still pending: a reconnect retries them.
        for c in 0..n {
            if w.clients[c].pending().len() > 0 {
                w.connect(c);
            }
        }
        w.pump();
        w.assert_converged();
        assert!(
            w.server.applied_ops().all(|(_, _, n)| n == 1),
            "seed {seed}: an op applied twice"
        );
        compacted += (0..n)
            .flat_map(|c| w.snapshots(c))
            .filter(|s| s.0 == SnapshotReason::Compacted)
            .count();
        dropped_acks += w.dropped_acks;
        rejected += w
            .events
            .iter()
            .flatten()
            .filter(|e| matches!(e, ClientEvent::Rejected { .. }))
            .count();
    }
    // The run exercised what it claims to.
    assert!(
        compacted > 0 && dropped_acks > 0,
        "{compacted} compactions, {dropped_acks} dropped acks"
    );
    assert_eq!(rejected, 0);
}

/// The server may answer an op before it relays the change the op made: the
/// acked value must stay in the client's view in between, at the server's
/// version, and the late change must not move anything.
#[test]
fn an_ack_before_its_change_keeps_the_value_in_view() {
    use store_core::sync::{Ack, ChangeBatch, OpResult, ServerMessage, Snapshot, SnapshotReason, Welcome};
    use store_core::{Event, EventType};

    let mut client = ClientSession::new(ClientConfig::new("ns", "t", "c1"));
    client.connect(0);
    let frame = |m: ServerMessage| codec::encode_server(&m);
    let welcome = ServerMessage::Welcome(Welcome {
        protocol: store_core::sync::PROTOCOL_VERSION,
        namespace: "ns".into(),
        rights: Rights::ReadWrite,
        schemas: BTreeMap::new(),
        heartbeat_ms: 30_000,
        max_frame_bytes: 1 << 20,
    });
    client.handle_frame(frame(welcome).as_bytes(), 0).unwrap();
    let snapshot = ServerMessage::Snapshot(Snapshot {
        rev: 7,
        reason: SnapshotReason::Initial,
        entries: Vec::new(),
        done: true,
    });
    client.handle_frame(frame(snapshot).as_bytes(), 0).unwrap();
    let op_id = client.push_op("task", "t1", OpAction::Set, Some(json!({"title": "a"})), None);
    let ack = ServerMessage::Ack(Ack {
        op_id,
        result: OpResult::Created,
        version: 1,
        rev: 8,
        value: None,
    });
    client.handle_frame(frame(ack).as_bytes(), 0).unwrap();
    assert_eq!(client.pending().len(), 0);
    assert_eq!(
        client.get("task", "t1"),
        Some(json!({"title": "a"})),
        "the acked value left the view"
    );
    assert_eq!(
        client.confirmed("task", "t1").map(|e| (e.version, e.rev)),
        Some((1, 8))
    );
    assert_eq!(client.cursor(), Some(7), "an ack does not move the cursor");
    let change = ServerMessage::Changes(ChangeBatch {
        rev: 8,
        events: vec![Event {
            kind: "task".into(),
            key: "t1".into(),
            event_type: EventType::Create,
            value: json!({"title": "a"}),
            version: 1,
            rev: 8,
        }],
    });
    client.handle_frame(frame(change).as_bytes(), 0).unwrap();
    assert_eq!(client.get("task", "t1"), Some(json!({"title": "a"})));
    assert_eq!(client.cursor(), Some(8));
}

#[test]
fn a_storage_failure_ends_a_session_as_internal_and_a_shutdown_as_going_away() {
    let mut s = live_session(ServerConfig::default());
    s.handle_internal_error("the change feed failed: disk I/O error");
    assert_eq!(
        fatal_code(&mut s),
        (ErrorCode::Internal, Some(CloseCode::InternalError))
    );
    let mut s = live_session(ServerConfig::default());
    s.handle_shutdown();
    assert_eq!(
        fatal_code(&mut s),
        (ErrorCode::ShuttingDown, Some(CloseCode::GoingAway))
    );
}

#[test]
fn offline_patches_of_different_members_both_survive_and_a_patch_after_a_delete_is_refused() {
    let mut w = simple();
    let a = w.add_client("a", "rw");
    let b = w.add_client("b", "rw");
    for c in [a, b] {
        w.connect(c);
    }
    w.set(a, "task", "card", json!({"title": "draft", "owner": "ana"}));
    w.pump();
    w.assert_converged();
    // Both offline: one renames the card, the other reassigns it.
    for c in [a, b] {
        w.drop_connection(c);
    }
    let patch = |w: &mut World, c: usize, key: &str, p: Value| {
        w.clients[c].push_op("task", key, OpAction::Patch, Some(p), None)
    };
    patch(&mut w, a, "card", json!({"title": "final"}));
    patch(&mut w, b, "card", json!({"owner": "kim"}));
    assert_eq!(
        w.clients[a].get("task", "card"),
        Some(json!({"title": "final", "owner": "ana"})),
        "a pending patch shows over the confirmed value"
    );
    for c in [a, b] {
        w.connect(c);
        w.pump();
    }
    w.pump();
    w.assert_converged();
    assert_eq!(
        w.store().get("task", "card").unwrap().unwrap().value,
        json!({"title": "final", "owner": "kim"}),
        "both edits survive"
    );

    // One deletes the card while the other patches it offline: the patch is
    // refused and rolled back.
    w.drop_connection(b);
    let op_id = patch(&mut w, b, "card", json!({"title": "late"}));
    w.delete(a, "task", "card");
    w.pump();
    w.connect(b);
    w.pump();
    let refused = w.events[b].iter().find_map(|e| match e {
        ClientEvent::Rejected { op, code, .. } if op.op_id == op_id => Some(*code),
        _ => None,
    });
    assert_eq!(refused, Some(ErrorCode::KeyNotFound));
    assert_eq!(w.clients[b].get("task", "card"), None);
    w.assert_converged();
}
