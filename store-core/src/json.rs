//! Semantic JSON equality, the default compare function, and the bridge from
//! a typed value to JSON (for schemas and the default compare).

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
    fn typed_values_use_their_json_form() {
        #[derive(Clone, serde::Serialize, serde::Deserialize)]
        struct P {
            x: f64,
        }
        assert!(default_equal(&P { x: 1.0 }, &P { x: 1.0 }));
        assert!(!default_equal(&P { x: 1.0 }, &P { x: 2.0 }));
    }
}
