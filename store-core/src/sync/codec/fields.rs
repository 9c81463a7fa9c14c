//! The type of every field of the messages a client sends (the tables of
//! `docs/protocol.md`), to name the field of a refused message that is
//! wrong: serde's errors on an internally tagged enum do not.

use serde_json::Value;

use crate::sync::message::{ErrorCode, ProtocolError};

/// What a field holds.
#[derive(Debug, Clone, Copy)]
enum Type {
    /// A JSON string.
    String,
    /// An integer from 0 to the bound.
    Uint(u64),
    /// A list of strings.
    Strings,
    /// A list of ops.
    Ops,
    /// `"set"` or `"delete"`.
    Action,
    /// Any JSON value, `null` included.
    Any,
}

/// Whether a field must be there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presence {
    /// Present, and not `null`.
    Required,
    /// May be absent or `null` (both mean "not given").
    Optional,
    /// May be absent (a default applies), but not `null`.
    Defaulted,
}

use Presence::{Defaulted, Optional, Required};

type Fields = &'static [(&'static str, Type, Presence)];

const HELLO: Fields = &[
    ("protocol", Type::Uint(u32::MAX as u64), Required),
    ("namespace", Type::String, Required),
    ("token", Type::String, Required),
    ("client_id", Type::String, Required),
    ("since", Type::Uint(u64::MAX), Optional),
    ("kinds", Type::Strings, Optional),
];
const PUSH: Fields = &[("ops", Type::Ops, Required)];
const NONCE: Fields = &[("nonce", Type::Uint(u64::MAX), Defaulted)];
const OP: Fields = &[
    ("op_id", Type::String, Required),
    ("kind", Type::String, Required),
    ("key", Type::String, Required),
    ("action", Type::Action, Required),
    ("value", Type::Any, Optional),
    ("if_version", Type::Uint(u64::MAX), Optional),
];

/// `error`, a message of a known type refused by the parser, with the
/// field at fault named (`bad_message` errors only; others are returned as
/// they are).
pub(super) fn explained(error: ProtocolError, frame: &[u8]) -> ProtocolError {
    if error.code != ErrorCode::BadMessage {
        return error;
    }
    let Ok(message) = serde_json::from_slice::<Value>(frame) else {
        return error;
    };
    match message["type"].as_str().and_then(|t| explain(t, &message)) {
        Some(message) => ProtocolError::new(ErrorCode::BadMessage, message),
        None => error,
    }
}

/// What is wrong with the first field of `message` (a client message of
/// type `message_type`) that does not hold its type, as
/// `ping.nonce must be an integer from 0 to 18446744073709551615, got the
/// string "3"`; `None` when every field holds its type.
pub(super) fn explain(message_type: &str, message: &Value) -> Option<String> {
    let fields = match message_type {
        "hello" => HELLO,
        "push" => PUSH,
        "ping" | "pong" => NONCE,
        _ => return None,
    };
    check_object(message_type, message, fields)
}

fn check_object(path: &str, value: &Value, fields: Fields) -> Option<String> {
    let Some(object) = value.as_object() else {
        return Some(format!("{path} must be an object, got {}", describe(value)));
    };
    for &(name, ty, presence) in fields {
        let path = format!("{path}.{name}");
        match (object.get(name), presence) {
            (None, Required) => return Some(format!("{path} is missing")),
            (None, _) | (Some(Value::Null), Optional) => {}
            (Some(v), _) => {
                if let Some(wrong) = check(&path, v, ty) {
                    return Some(wrong);
                }
            }
        }
    }
    None
}

fn check(path: &str, value: &Value, ty: Type) -> Option<String> {
    let ok = match ty {
        Type::String => value.is_string(),
        Type::Uint(max) => value.as_u64().is_some_and(|n| n <= max),
        Type::Action => matches!(value.as_str(), Some("set" | "patch" | "delete")),
        Type::Any => true,
        Type::Strings => {
            let Some(list) = value.as_array() else {
                return Some(format!(
                    "{path} must be a list of strings, got {}",
                    describe(value)
                ));
            };
            return list
                .iter()
                .enumerate()
                .find_map(|(i, v)| check(&format!("{path}[{i}]"), v, Type::String));
        }
        Type::Ops => {
            let Some(list) = value.as_array() else {
                return Some(format!("{path} must be a list of ops, got {}", describe(value)));
            };
            return list
                .iter()
                .enumerate()
                .find_map(|(i, op)| check_object(&format!("{path}[{i}]"), op, OP));
        }
    };
    (!ok).then(|| format!("{path} must be {}, got {}", expected(ty), describe(value)))
}

fn expected(ty: Type) -> String {
    match ty {
        Type::String => "a string".into(),
        Type::Uint(max) => format!("an integer from 0 to {max}"),
        Type::Action => "\"set\", \"patch\" or \"delete\"".into(),
        Type::Strings => "a list of strings".into(),
        Type::Ops => "a list of ops".into(),
        Type::Any => "a JSON value".into(),
    }
}

/// A value as an error message shows it (long strings shortened).
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let mut shown: String = s.chars().take(32).collect();
            if shown.len() < s.len() {
                shown.push('…');
            }
            format!("the string {shown:?}")
        }
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_wrong_field_is_named_with_its_type_and_what_it_held() {
        let cases = [
            (
                json!({"type": "ping", "nonce": "3"}),
                "ping.nonce must be an integer from 0 to 18446744073709551615, got the string \"3\"",
            ),
            (
                json!({"type": "pong", "nonce": null}),
                "pong.nonce must be an integer",
            ),
            (json!({"type": "ping", "nonce": -1}), "got the number -1"),
            (json!({"type": "ping", "nonce": 1.5}), "got the number 1.5"),
            (
                json!({"type": "hello", "protocol": "1", "namespace": "n", "token": "t", "client_id": "c"}),
                "hello.protocol must be an integer from 0 to 4294967295, got the string \"1\"",
            ),
            (
                json!({"type": "hello", "protocol": 4_294_967_296_u64, "namespace": "n", "token": "t", "client_id": "c"}),
                "hello.protocol must be an integer from 0 to 4294967295, got the number 4294967296",
            ),
            (
                json!({"type": "hello", "protocol": 1, "namespace": "n", "token": "t"}),
                "hello.client_id is missing",
            ),
            (
                json!({"type": "hello", "protocol": 1, "namespace": "n", "token": null, "client_id": "c"}),
                "hello.token must be a string, got null",
            ),
            (
                json!({"type": "hello", "protocol": 1, "namespace": "n", "token": "t", "client_id": "c", "since": "4"}),
                "hello.since must be an integer",
            ),
            (
                json!({"type": "hello", "protocol": 1, "namespace": "n", "token": "t", "client_id": "c", "kinds": ["a", 2]}),
                "hello.kinds[1] must be a string, got the number 2",
            ),
            (
                json!({"type": "push", "ops": {}}),
                "push.ops must be a list of ops, got an object",
            ),
            (json!({"type": "push"}), "push.ops is missing"),
            (
                json!({"type": "push", "ops": [7]}),
                "push.ops[0] must be an object, got the number 7",
            ),
            (
                json!({"type": "push", "ops": [{"op_id": "1", "kind": "t", "key": "k", "action": "set", "value": 1}, {"op_id": "2", "kind": "t", "key": true, "action": "delete"}]}),
                "push.ops[1].key must be a string, got true",
            ),
            (
                json!({"type": "push", "ops": [{"op_id": "1", "kind": "t", "key": "k", "action": "upsert"}]}),
                "push.ops[0].action must be \"set\", \"patch\" or \"delete\", got the string \"upsert\"",
            ),
            (
                json!({"type": "push", "ops": [{"op_id": "1", "kind": "t", "key": "k", "action": "set", "value": 1, "if_version": "2"}]}),
                "push.ops[0].if_version must be an integer",
            ),
        ];
        for (message, wanted) in cases {
            let got = explain(message["type"].as_str().unwrap(), &message);
            assert!(
                got.as_deref()
                    .is_some_and(|g| g.starts_with(wanted) || g.contains(wanted)),
                "{message}: {got:?}"
            );
        }
    }

    #[test]
    fn valid_messages_and_nulls_where_allowed_are_not_explained() {
        for message in [
            json!({"type": "ping"}),
            json!({"type": "ping", "nonce": 3}),
            json!({"type": "hello", "protocol": 1, "namespace": "n", "token": "t", "client_id": "c", "since": null, "kinds": null}),
            json!({"type": "push", "ops": [{"op_id": "1", "kind": "t", "key": "k", "action": "set", "value": null, "if_version": null}]}),
            json!({"type": "push", "ops": []}),
        ] {
            assert_eq!(
                explain(message["type"].as_str().unwrap(), &message),
                None,
                "{message}"
            );
        }
    }
}
