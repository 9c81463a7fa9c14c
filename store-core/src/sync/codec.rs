//! The one seam between messages and bytes: JSON text frames.
//!
//! Decoding never panics, whatever the bytes: a frame is checked against the
//! [`Limits`], its `type` is read first (so an unknown type is told apart
//! from a malformed message), then the message is parsed and checked.
//!
//! A frame that is not a valid message is an error of the whole session.
//! An op that breaks a rule of its own (its op id, kind or key, a `set`
//! without a value) is not: [`check_op`] tells which ops of a well-formed
//! `push` to refuse, alone, with a `reject`.

use serde::Deserialize;
use serde_json::Value;

use super::message::{ClientMessage, ErrorCode, Op, OpAction, ProtocolError, Reject, ServerMessage};
use crate::Event;
use crate::engine::check_key;

mod fields;

/// What the decoder accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame, in bytes.
    pub max_frame_bytes: usize,
    /// The most ops in one `push`.
    pub max_ops_per_push: usize,
    /// The longest namespace, client id or op id, in bytes. Kinds and keys
    /// have the store's limit, [`MAX_KEY_BYTES`](crate::MAX_KEY_BYTES).
    pub max_id_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_bytes: 1 << 20,
            max_ops_per_push: 1_000,
            max_id_bytes: 256,
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    message_type: Option<String>,
}

fn bad(message: impl Into<String>) -> ProtocolError {
    ProtocolError::new(ErrorCode::BadMessage, message)
}

/// Checks size and type, then parses.
fn decode<'a, M: Deserialize<'a>>(
    frame: &'a [u8],
    max_bytes: usize,
    known: &[&str],
) -> Result<M, ProtocolError> {
    if frame.len() > max_bytes {
        return Err(ProtocolError::new(
            ErrorCode::TooLarge,
            format!("frame of {} bytes exceeds the limit of {max_bytes}", frame.len()),
        ));
    }
    let envelope: Envelope =
        serde_json::from_slice(frame).map_err(|e| bad(format!("not a JSON object: {e}")))?;
    let Some(message_type) = envelope.message_type else {
        return Err(bad("missing \"type\""));
    };
    if !known.contains(&message_type.as_str()) {
        let mut shown: String = message_type.chars().take(64).collect();
        if shown.len() < message_type.len() {
            shown.push('…');
        }
        return Err(ProtocolError::new(
            ErrorCode::UnknownType,
            format!("unknown message type {shown:?}"),
        ));
    }
    serde_json::from_slice(frame).map_err(|e| bad(format!("invalid {message_type} message: {e}")))
}

/// The rules of a namespace, client id or op id: not empty, at most
/// `max_id_bytes`, no NUL character (PostgreSQL's text cannot hold it).
fn check_required(what: &str, id: &str, limits: &Limits) -> Result<(), String> {
    if id.is_empty() {
        Err(format!("{what} must not be empty"))
    } else if id.len() > limits.max_id_bytes {
        Err(format!("{what} is longer than {} bytes", limits.max_id_bytes))
    } else if id.contains('\0') {
        Err(format!("{what} contains the nul character (\\0)"))
    } else {
        Ok(())
    }
}

/// Checks one op of a `push` on its own: its op id (as a namespace or
/// client id is checked), its kind and key (the store's rules:
/// `kind_required`, `key_too_long`, `invalid_key`) and that a `set` or a
/// `patch` has a value. An op that fails is refused alone, with the
/// returned `reject`; the other ops of its push are applied.
pub fn check_op(op: &Op, limits: &Limits) -> Result<(), Reject> {
    let reject = |code: ErrorCode, message: String| Reject {
        op_id: op.op_id.clone(),
        code,
        message,
    };
    check_required("op_id", &op.op_id, limits).map_err(|m| reject(ErrorCode::BadMessage, m))?;
    check_key(&op.kind, &op.key).map_err(|e| Reject::of(op.op_id.clone(), &e))?;
    match (op.action, &op.value) {
        (OpAction::Set | OpAction::Patch, None) => Err(reject(
            ErrorCode::BadMessage,
            format!("a {} needs a value", op.action.as_str()),
        )),
        _ => Ok(()),
    }
}

/// Decodes and checks a frame from a client (used by the server). The ops
/// of a `push` are checked one by one with [`check_op`], not here.
pub fn decode_client(frame: &[u8], limits: &Limits) -> Result<ClientMessage, ProtocolError> {
    let message: ClientMessage = decode(frame, limits.max_frame_bytes, ClientMessage::TYPES)
        .map_err(|e| fields::explained(e, frame))?;
    match &message {
        ClientMessage::Hello(h) => {
            check_required("namespace", &h.namespace, limits).map_err(bad)?;
            check_required("client_id", &h.client_id, limits).map_err(bad)?;
            for kind in h.kinds.iter().flatten() {
                check_key(kind, "").map_err(|e| bad(format!("a subscribed kind: {e}")))?;
            }
        }
        ClientMessage::Push(p) => {
            if p.ops.len() > limits.max_ops_per_push {
                return Err(ProtocolError::new(
                    ErrorCode::TooManyInFlight,
                    format!(
                        "{} ops in one push; the limit is {}",
                        p.ops.len(),
                        limits.max_ops_per_push
                    ),
                ));
            }
        }
        ClientMessage::Ping { .. } | ClientMessage::Pong { .. } => {}
    }
    Ok(message)
}

/// Decodes a frame from a server (used by clients).
pub fn decode_server(frame: &[u8], max_frame_bytes: usize) -> Result<ServerMessage, ProtocolError> {
    decode(frame, max_frame_bytes, ServerMessage::TYPES)
}

fn encode<M: serde::Serialize>(message: &M) -> String {
    // The message types hold only strings, numbers and JSON values, whose
    // serialization cannot fail.
    serde_json::to_string(message).unwrap_or_else(|e| {
        format!(r#"{{"type":"error","code":"internal","message":"encoding failed: {e}","fatal":false}}"#)
    })
}

/// Encodes a message to a client.
#[must_use]
pub fn encode_server(message: &ServerMessage) -> String {
    encode(message)
}

/// Encodes a message to the server.
#[must_use]
pub fn encode_client(message: &ClientMessage) -> String {
    encode(message)
}

/// Encodes one event as it appears in the `events` of a `changes` message.
///
/// With [`encode_changes`], a server encodes each committed event once and
/// builds every connection's `changes` frame from the shared encodings.
#[must_use]
pub fn encode_event(event: &Event<Value>) -> String {
    // An event holds only strings, numbers and a JSON value, whose
    // serialization cannot fail.
    serde_json::to_string(event).unwrap_or_else(|_| "null".to_owned())
}

/// Encodes a `changes` message from its events, each already encoded by
/// [`encode_event`]: the same text as [`encode_server`] gives for
/// `ServerMessage::Changes(ChangeBatch { events, rev })`.
#[must_use]
pub fn encode_changes<S: AsRef<str>>(events: &[S], rev: u64) -> String {
    const HEAD: &str = r#"{"type":"changes","events":["#;
    const TAIL: &str = r#"],"rev":"#;
    let bytes: usize = events.iter().map(|e| e.as_ref().len() + 1).sum();
    let mut frame = String::with_capacity(HEAD.len() + bytes + TAIL.len() + 21);
    frame.push_str(HEAD);
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            frame.push(',');
        }
        frame.push_str(event.as_ref());
    }
    frame.push_str(TAIL);
    frame.push_str(&rev.to_string());
    frame.push('}');
    frame
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::sync::{Hello, Op, PROTOCOL_VERSION, Push};

    fn code(frame: &str) -> ErrorCode {
        decode_client(frame.as_bytes(), &Limits::default())
            .unwrap_err()
            .code
    }

    #[test]
    fn the_type_lists_name_every_message() {
        let client = [
            r#"{"type":"hello","protocol":1,"namespace":"n","token":"t","client_id":"c"}"#,
            r#"{"type":"push","ops":[]}"#,
            r#"{"type":"ping","nonce":1}"#,
            r#"{"type":"pong","nonce":1}"#,
        ];
        let mut names: Vec<&str> = client
            .iter()
            .map(|f| {
                decode_client(f.as_bytes(), &Limits::default())
                    .unwrap()
                    .type_name()
            })
            .collect();
        names.sort_unstable();
        let mut listed = ClientMessage::TYPES.to_vec();
        listed.sort_unstable();
        assert_eq!(names, listed, "ClientMessage::TYPES");
        let server = [
            r#"{"type":"welcome","protocol":1,"namespace":"n","rights":"read","schemas":{},"heartbeat_ms":1,"max_frame_bytes":1}"#,
            r#"{"type":"snapshot","rev":0,"reason":"initial","entries":[],"done":true}"#,
            r#"{"type":"changes","events":[],"rev":0}"#,
            r#"{"type":"ack","op_id":"o","result":"created","version":1,"rev":1}"#,
            r#"{"type":"reject","op_id":"o","code":"conflict","message":"m"}"#,
            r#"{"type":"error","code":"internal","message":"m","fatal":false}"#,
            r#"{"type":"ping","nonce":1}"#,
            r#"{"type":"pong","nonce":1}"#,
        ];
        let mut names = Vec::new();
        for frame in server {
            let message = decode_server(frame.as_bytes(), 1 << 20).unwrap();
            let encoded: Value = serde_json::from_str(&encode_server(&message)).unwrap();
            assert_eq!(encoded["type"], message.type_name(), "{frame}");
            names.push(message.type_name());
        }
        names.sort_unstable();
        let mut listed = ServerMessage::TYPES.to_vec();
        listed.sort_unstable();
        assert_eq!(names, listed, "ServerMessage::TYPES");
    }

    #[test]
    fn a_hello_round_trips() {
        let hello = ClientMessage::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            namespace: "tenant-1".into(),
            token: "secret".into(),
            client_id: "c1".into(),
            since: Some(7),
            kinds: None,
        });
        let text = encode_client(&hello);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            json!({"type": "hello", "protocol": 2, "namespace": "tenant-1", "token": "secret", "client_id": "c1", "since": 7})
        );
        assert_eq!(decode_client(text.as_bytes(), &Limits::default()).unwrap(), hello);
    }

    #[test]
    fn numbers_round_trip_exactly() {
        // Shortest representations that a parser without correct rounding
        // reads one unit in the last place off.
        let numbers = [
            "1795677268272.6313",
            "0.1",
            "2.2250738585072014e-308",
            "1.7976931348623157e308",
        ];
        for n in numbers {
            let frame = format!(
                r#"{{"type":"push","ops":[{{"op_id":"1","kind":"t","key":"k","action":"set","value":{n}}}]}}"#
            );
            let ClientMessage::Push(push) = decode_client(frame.as_bytes(), &Limits::default()).unwrap()
            else {
                panic!("not a push");
            };
            let value = push.ops[0].value.clone().unwrap();
            assert_eq!(value.as_f64(), Some(n.parse::<f64>().unwrap()), "{n}");
            assert_eq!(
                value.as_f64().unwrap().to_bits(),
                n.parse::<f64>().unwrap().to_bits()
            );
            let again = encode_client(&ClientMessage::Push(push));
            assert_eq!(
                decode_client(again.as_bytes(), &Limits::default()).unwrap(),
                decode_client(frame.as_bytes(), &Limits::default()).unwrap()
            );
        }
    }

    #[test]
    fn a_changes_frame_from_encoded_events_is_the_encoded_message() {
        use crate::sync::ChangeBatch;
        use crate::{Event, EventType};

        let event = |key: &str, value: serde_json::Value, rev: u64| Event {
            kind: "task".into(),
            key: key.into(),
            event_type: EventType::Create,
            value,
            version: 1,
            rev,
        };
        let events = vec![
            event("a", json!({"title": "a \"quoted\" é", "n": 0.1}), 3),
            event("b", json!(null), 4),
        ];
        for (events, rev) in [(events.clone(), 9), (events[..1].to_vec(), 3), (Vec::new(), 0)] {
            let encoded: Vec<String> = events.iter().map(encode_event).collect();
            let frame = encode_changes(&encoded, rev);
            let message = ServerMessage::Changes(ChangeBatch { events, rev });
            assert_eq!(frame, encode_server(&message));
            assert_eq!(decode_server(frame.as_bytes(), 1 << 20).unwrap(), message);
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_unknown_types_named() {
        let frame = r#"{"type":"ping","nonce":3,"future_field":true}"#;
        assert_eq!(
            decode_client(frame.as_bytes(), &Limits::default()).unwrap(),
            ClientMessage::Ping { nonce: 3 }
        );
        let e = decode_client(br#"{"type":"subscribe"}"#, &Limits::default()).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownType);
        assert!(e.message.contains("subscribe"), "{e}");
    }

    #[test]
    fn malformed_frames_are_bad_messages() {
        for frame in [
            "",
            "{",
            "[]",
            "null",
            "42",
            r#"{"no_type":1}"#,
            r#"{"type":7}"#,
            r#"{"type":"push"}"#,
            r#"{"type":"push","ops":[{"op_id":"1","kind":"t","key":"k","action":"upsert","value":1}]}"#,
            r#"{"type":"hello","protocol":1,"namespace":"","token":"t","client_id":"c"}"#,
            r#"{"type":"hello","protocol":1,"namespace":"n\u0000","token":"t","client_id":"c"}"#,
            r#"{"type":"hello","protocol":1,"namespace":"n","token":"t","client_id":"c","kinds":[""]}"#,
            r#"{"type":"hello","protocol":"one","namespace":"n","token":"t","client_id":"c"}"#,
        ] {
            assert_eq!(code(frame), ErrorCode::BadMessage, "{frame:?}");
        }
    }

    #[test]
    fn null_is_a_value_to_set() {
        let frame =
            r#"{"type":"push","ops":[{"op_id":"1","kind":"t","key":"k","action":"set","value":null}]}"#;
        match decode_client(frame.as_bytes(), &Limits::default()).unwrap() {
            ClientMessage::Push(p) => assert_eq!(p.ops[0].value, Some(serde_json::Value::Null)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limits_are_enforced() {
        let limits = Limits {
            max_frame_bytes: 64,
            max_ops_per_push: 2,
            max_id_bytes: 4,
        };
        let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(100));
        assert_eq!(
            decode_client(big.as_bytes(), &limits).unwrap_err().code,
            ErrorCode::TooLarge
        );
        let op = |id: &str| Op {
            op_id: id.into(),
            kind: "t".into(),
            key: "k".into(),
            action: OpAction::Delete,
            value: None,
            if_version: None,
        };
        let three = encode_client(&ClientMessage::Push(Push {
            ops: vec![op("1"), op("2"), op("3")],
        }));
        let roomy = Limits {
            max_frame_bytes: 1 << 10,
            ..limits
        };
        assert_eq!(
            decode_client(three.as_bytes(), &roomy).unwrap_err().code,
            ErrorCode::TooManyInFlight
        );
        // An op breaking a rule of its own is the op's problem, not the
        // push's: the push decodes, and check_op refuses the op.
        let long = encode_client(&ClientMessage::Push(Push {
            ops: vec![op("12345"), op("1234")],
        }));
        let ClientMessage::Push(push) = decode_client(long.as_bytes(), &roomy).unwrap() else {
            panic!("not a push");
        };
        let reject = check_op(&push.ops[0], &roomy).unwrap_err();
        assert_eq!(
            (reject.op_id.as_str(), reject.code),
            ("12345", ErrorCode::BadMessage)
        );
        assert!(reject.message.contains("longer than 4 bytes"), "{reject:?}");
        assert_eq!(check_op(&push.ops[1], &roomy), Ok(()));
    }

    #[test]
    fn an_op_is_checked_on_its_own() {
        let limits = Limits::default();
        let op = |op_id: &str, kind: &str, key: &str, value: Option<serde_json::Value>| Op {
            op_id: op_id.into(),
            kind: kind.into(),
            key: key.into(),
            action: if value.is_some() {
                OpAction::Set
            } else {
                OpAction::Delete
            },
            value,
            if_version: None,
        };
        let at_limit = "k".repeat(crate::MAX_KEY_BYTES);
        let over = format!("{at_limit}k");
        // Kinds and keys have the store's limit, not the other identifiers'.
        assert!(crate::MAX_KEY_BYTES > limits.max_id_bytes);
        assert_eq!(check_op(&op("1", &at_limit, &at_limit, None), &limits), Ok(()));
        assert_eq!(check_op(&op("1", "t", "", Some(json!(1))), &limits), Ok(()));
        let cases = [
            (op("o", "t", &over, None), ErrorCode::KeyTooLong),
            (op("o", &over, "k", Some(json!(1))), ErrorCode::KeyTooLong),
            (op("o", "t", "a\0b", None), ErrorCode::InvalidKey),
            (op("o", "t\0", "k", None), ErrorCode::InvalidKey),
            (op("o", "", "k", None), ErrorCode::KindRequired),
            (op("", "t", "k", None), ErrorCode::BadMessage),
            (
                op(&"o".repeat(limits.max_id_bytes + 1), "t", "k", None),
                ErrorCode::BadMessage,
            ),
            (op("o\0", "t", "k", None), ErrorCode::BadMessage),
            (
                Op {
                    action: OpAction::Set,
                    ..op("o", "t", "k", None)
                },
                ErrorCode::BadMessage,
            ),
        ];
        for (op, code) in cases {
            let reject = check_op(&op, &limits).unwrap_err();
            assert_eq!((&reject.op_id, reject.code), (&op.op_id, code), "{reject:?}");
        }
        // The same codes as the store's own errors.
        let store = crate::Error::KeyTooLong {
            field: "key",
            len: 2_000,
        };
        assert_eq!(ErrorCode::of(&store).as_str(), store.code());
        let store = crate::Error::InvalidKey {
            field: "key",
            reason: "contains the nul character (\\0)",
        };
        assert_eq!(ErrorCode::of(&store).as_str(), store.code());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!(
            r#"{{"type":"push","ops":[{{"op_id":"1","kind":"t","key":"k","action":"set","value":{}{}}}]}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert_eq!(code(&deep), ErrorCode::BadMessage);
    }
}
