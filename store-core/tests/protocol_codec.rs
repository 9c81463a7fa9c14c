//! The sync codec under arbitrary input: no bytes make it panic, and every
//! message survives a round trip.

use proptest::prelude::*;
use serde_json::{Value, json};
use store_core::sync::codec::{self, Limits};
use store_core::sync::{Ack, ChangeBatch, ClientMessage, Hello, Op, OpAction, OpResult, Push, ServerMessage};
use store_core::{Event, EventType};

fn id() -> impl Strategy<Value = String> {
    "[a-z0-9_-]{1,12}"
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[ -~]{0,10}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn op() -> impl Strategy<Value = Op> {
    (
        id(),
        id(),
        id(),
        any::<bool>(),
        json_value(),
        prop::option::of(0u64..5),
    )
        .prop_map(|(op_id, kind, key, set, value, if_version)| Op {
            op_id,
            kind,
            key,
            action: if set { OpAction::Set } else { OpAction::Delete },
            value: set.then_some(value),
            if_version,
        })
}

fn client_message() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        (
            id(),
            id(),
            id(),
            prop::option::of(any::<u64>()),
            prop::option::of(prop::collection::vec(id(), 0..3))
        )
            .prop_map(|(namespace, token, client_id, since, kinds)| {
                ClientMessage::Hello(Hello {
                    protocol: 1,
                    namespace,
                    token,
                    client_id,
                    since,
                    kinds,
                })
            }),
        prop::collection::vec(op(), 0..5).prop_map(|ops| ClientMessage::Push(Push { ops })),
        any::<u64>().prop_map(|nonce| ClientMessage::Ping { nonce }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode_client(&bytes, &Limits::default());
        let _ = codec::decode_server(&bytes, 1 << 20);
    }

    #[test]
    fn json_shaped_garbage_never_panics(value in json_value(), t in prop_oneof![Just("hello"), Just("push"), Just("ping"), Just("x")]) {
        let mut frame = json!({"type": t});
        frame["ops"] = json!([value.clone()]);
        frame["namespace"] = value;
        let _ = codec::decode_client(frame.to_string().as_bytes(), &Limits::default());
    }

    #[test]
    fn client_messages_round_trip(message in client_message()) {
        let text = codec::encode_client(&message);
        prop_assert_eq!(codec::decode_client(text.as_bytes(), &Limits::default()).unwrap(), message);
    }

    #[test]
    fn change_batches_round_trip(events in prop::collection::vec((id(), id(), json_value(), 1u64..9), 0..5)) {
        let events: Vec<Event<Value>> = events
            .into_iter()
            .enumerate()
            .map(|(i, (kind, key, value, version))| Event {
                kind, key, event_type: EventType::Update, value, version, rev: i as u64 + 1,
            })
            .collect();
        let message = ServerMessage::Changes(ChangeBatch { rev: events.len() as u64, events });
        let text = codec::encode_server(&message);
        prop_assert_eq!(codec::decode_server(text.as_bytes(), 1 << 20).unwrap(), message);
    }
}

#[test]
fn server_messages_have_the_documented_shape() {
    let ack = ServerMessage::Ack(Ack {
        op_id: "o1".into(),
        result: OpResult::Created,
        version: 1,
        rev: 9,
        value: None,
    });
    let text = codec::encode_server(&ack);
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        json!({"type": "ack", "op_id": "o1", "result": "created", "version": 1, "rev": 9})
    );
    let event = Event {
        kind: "task".into(),
        key: "t1".into(),
        event_type: EventType::Delete,
        value: json!({"a": 1}),
        version: 2,
        rev: 3,
    };
    let batch = ServerMessage::Changes(ChangeBatch {
        events: vec![event],
        rev: 3,
    });
    assert_eq!(
        serde_json::from_str::<Value>(&codec::encode_server(&batch)).unwrap(),
        json!({"type": "changes", "rev": 3, "events": [
            {"kind": "task", "key": "t1", "type": "delete", "value": {"a": 1}, "version": 2, "rev": 3}
        ]})
    );
}
