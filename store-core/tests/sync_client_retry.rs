//! A client checks a write as the server would before queueing it; and an
//! op the server failed to apply without recording an answer (`internal`,
//! `shutting_down`) is not dropped: it stays queued and the whole queue is
//! sent again, in order, on a new connection (docs/protocol.md: "retry the op
//! with the same `op_id`").

use std::collections::BTreeMap;

use serde_json::json;
use store_core::sync::codec::encode_server;
use store_core::sync::session::{ClientConfig, ClientEvent, ClientSession};
use store_core::sync::{ClientMessage, ErrorCode, OpAction, Reject, ServerMessage};
use store_core::testkit::sync::welcome_frame;

fn welcome(session: &mut ClientSession) {
    session
        .handle_frame(welcome_frame("ns", BTreeMap::new()).as_bytes(), 0)
        .unwrap();
}

fn pushed(session: &mut ClientSession) -> Vec<String> {
    let mut ids = Vec::new();
    while let Some(message) = session.poll_transmit() {
        if let ClientMessage::Push(push) = message {
            ids.extend(push.ops.into_iter().map(|op| op.op_id));
        }
    }
    ids
}

fn reject(session: &mut ClientSession, op_id: &str, code: ErrorCode) {
    let reject = ServerMessage::Reject(Reject {
        op_id: op_id.into(),
        code,
        message: "it failed".into(),
    });
    session
        .handle_frame(encode_server(&reject).as_bytes(), 0)
        .unwrap();
}

#[test]
fn an_op_the_server_failed_to_apply_is_sent_again_in_its_place() {
    for code in [ErrorCode::Internal, ErrorCode::ShuttingDown] {
        let mut session = ClientSession::new(ClientConfig::new("ns", "token", "c1"));
        session.connect(0);
        welcome(&mut session);
        let first = session.push_op("t", "x", OpAction::Set, Some(json!(1)), None);
        let second = session.push_op("t", "x", OpAction::Set, Some(json!(2)), None);
        assert_eq!(pushed(&mut session).len(), 2, "both ops pushed");
        reject(&mut session, &first, code);
        let events: Vec<ClientEvent> = std::iter::from_fn(|| session.poll_event()).collect();
        assert!(
            matches!(events.last(), Some(ClientEvent::Retry { op_id, code: c, .. }) if *op_id == first && *c == code),
            "{events:?}"
        );
        assert!(!session.is_connected(), "the session let the connection go");
        let queued: Vec<&str> = session.pending().map(|op| op.op_id.as_str()).collect();
        assert_eq!(
            queued,
            [first.as_str(), second.as_str()],
            "{code}: nothing dropped"
        );
        assert_eq!(session.get("t", "x"), Some(json!(2)), "nothing rolled back");
        session.connect(1);
        welcome(&mut session);
        assert_eq!(
            pushed(&mut session),
            [first.clone(), second.clone()],
            "{code}: sent again, in order"
        );
    }
}

#[test]
fn a_refusal_still_rolls_the_op_back() {
    let mut session = ClientSession::new(ClientConfig::new("ns", "token", "c1"));
    session.connect(0);
    welcome(&mut session);
    let op = session.push_op("t", "x", OpAction::Set, Some(json!(1)), None);
    let _ = pushed(&mut session);
    reject(&mut session, &op, ErrorCode::Validation);
    let events: Vec<ClientEvent> = std::iter::from_fn(|| session.poll_event()).collect();
    assert!(
        matches!(events.last(), Some(ClientEvent::Rejected { .. })),
        "{events:?}"
    );
    assert_eq!(session.pending().len(), 0);
    assert!(session.is_connected());
}

#[test]
fn writes_are_checked_against_the_servers_schemas_and_the_key_rules() {
    let mut session = ClientSession::new(ClientConfig::new("ns", "token", "c1"));
    let value = json!({"note": "no title"});
    assert!(session.check("task", "t1", Some(&value)).is_ok(), "no schema yet");
    let long = "k".repeat(store_core::MAX_KEY_BYTES + 1);
    assert_eq!(
        session.check("task", &long, None).unwrap_err().code(),
        "key_too_long"
    );
    assert_eq!(session.check("", "t1", None).unwrap_err().code(), "kind_required");
    // The schemas a persisted client restores, then the welcome's.
    let schemas: BTreeMap<String, serde_json::Value> = [(
        "task".to_owned(),
        json!({"type": "object", "required": ["title"]}),
    )]
    .into();
    assert!(session.set_schemas(schemas.clone()));
    assert!(!session.set_schemas(schemas), "unchanged");
    assert_eq!(
        session.check("task", "t1", Some(&value)).unwrap_err().code(),
        "validation"
    );
    assert!(session.check("task", "t1", Some(&json!({"title": "t"}))).is_ok());
    assert!(
        session.check("task", "t1", None).is_ok(),
        "a delete has no value to check"
    );
    session.connect(0);
    welcome(&mut session);
    assert!(
        session.check("task", "t1", Some(&value)).is_ok(),
        "the welcome had none"
    );
}
