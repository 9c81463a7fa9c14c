//! Semantic JSON equality, the default compare function, JSON Merge Patch,
//! and the bridge from a typed value to JSON (for schemas, the default
//! compare and patches).

use std::any::Any;
use std::borrow::Cow;

use serde_json::Value;

use crate::schema::num_eq;
use crate::{Error, Result, StoreValue};

/// Semantic JSON equality: object key order is ignored (as everywhere in
/// JSON) and numbers compare by value, so `1`, `1.0` and `1e0` are equal.
#[must_use]
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => num_eq(x, y),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Borrows `value` as JSON when it already is a [`serde_json::Value`],
/// otherwise serializes it.
pub(crate) fn to_json<T: StoreValue>(value: &T) -> Result<Cow<'_, Value>> {
    if let Some(v) = (value as &dyn Any).downcast_ref::<Value>() {
        return Ok(Cow::Borrowed(v));
    }
    serde_json::to_value(value)
        .map(Cow::Owned)
        .map_err(|e| Error::Encoding(e.to_string()))
}

/// Applies a JSON Merge Patch ([RFC 7396]) to `target`: an object patch
/// sets each of its members in `target` (recursively for objects) and
/// removes those whose value is `null`; any other patch replaces `target`.
/// Arrays are replaced whole, never merged.
///
/// [RFC 7396]: https://www.rfc-editor.org/rfc/rfc7396
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(members) = patch else {
        target.clone_from(patch);
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(fields) = target {
        for (name, value) in members {
            if value.is_null() {
                fields.remove(name);
            } else {
                merge_patch(fields.entry(name.as_str()).or_insert(Value::Null), value);
            }
        }
    }
}

/// `value` with `patch` applied ([`merge_patch`]), as the store's type; an
/// error says why the patched JSON is not a `T`.
pub(crate) fn patched<T: StoreValue>(value: &T, patch: &Value) -> std::result::Result<T, String> {
    let mut json = to_json(value).map_err(|e| e.to_string())?.into_owned();
    merge_patch(&mut json, patch);
    // A `Value` store takes the JSON as it is.
    let mut slot = Some(json);
    if let Some(same) = (&mut slot as &mut dyn Any).downcast_mut::<Option<T>>()
        && let Some(value) = same.take()
    {
        return Ok(value);
    }
    let json = slot.unwrap_or_default();
    serde_json::from_value(json).map_err(|e| format!("the patched value is not of the store's type: {e}"))
}

/// The default compare function: semantic JSON equality of the two values.
/// A value that cannot be serialized is never equal (the write proceeds).
pub(crate) fn default_equal<T: StoreValue>(a: &T, b: &T) -> bool {
    match (to_json(a), to_json(b)) {
        (Ok(a), Ok(b)) => json_eq(&a, &b),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_compare_by_value() {
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(json_eq(&json!(-3), &json!(-3.0)));
        assert!(!json_eq(&json!(1), &json!(1.5)));
        assert!(json_eq(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!json_eq(&json!(u64::MAX), &json!(i64::MAX)));
    }

    #[test]
    fn objects_ignore_key_order_and_recurse() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":[1,{"c":2.0}]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":[1.0,{"c":2}],"a":1}"#).unwrap();
        assert!(json_eq(&a, &b));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": null})));
        assert!(!json_eq(&json!([1, 2]), &json!([2, 1])));
        assert!(!json_eq(&json!("1"), &json!(1)));
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        // The examples of RFC 7396, appendix A.
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (json!({"a": [{"b": "c"}]}), json!({"a": [1]}), json!({"a": [1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a": "b"}), json!(["c"]), json!(["c"])),
            (json!({"a": "foo"}), json!(null), json!(null)),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
            (json!({"e": null}), json!({"a": 1}), json!({"e": null, "a": 1})),
            (json!([1, 2]), json!({"a": "b", "c": null}), json!({"a": "b"})),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
        ];
        for (mut target, patch, expected) in cases {
            merge_patch(&mut target, &patch);
            assert_eq!(target, expected, "patch {patch}");
        }
    }

    #[test]
    fn a_typed_value_is_patched_in_its_json_form() {
        #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Card {
            title: String,
            owner: Option<String>,
        }
        let card = Card {
            title: "a".into(),
            owner: None,
        };
        assert_eq!(
            patched(&card, &json!({"owner": "kim"})),
            Ok(Card {
                title: "a".into(),
                owner: Some("kim".into())
            })
        );
        let err = patched(&card, &json!({"title": null})).unwrap_err();
        assert!(err.contains("title"), "{err}");
        assert_eq!(
            patched(&json!({"a": 1}), &json!({"b": 2})),
            Ok(json!({"a": 1, "b": 2}))
        );
    }

    #[test]
    fn typed_values_use_their_json_form() {
        #[derive(Clone, serde::Serialize, serde::Deserialize)]
        struct P {
            x: f64,
        }
        assert!(default_equal(&P { x: 1.0 }, &P { x: 1.0 }));
        assert!(!default_equal(&P { x: 1.0 }, &P { x: 2.0 }));
    }
}
