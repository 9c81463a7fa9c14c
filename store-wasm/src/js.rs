//! Moving values and errors across the JavaScript boundary.

use serde::Serialize;
use serde_json::Value;
use store_core::{Entry, Error, Event, EventType, SetResult};
use wasm_bindgen::prelude::*;

/// An error as the package throws it: a JS `Error` named `ZestorError`
/// with a stable `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsError {
    pub code: String,
    pub message: String,
}

impl JsError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        JsError {
            code: code.into(),
            message: message.into(),
        }
    }

    /// A caller passed something the API does not accept.
    pub fn invalid(message: impl Into<String>) -> Self {
        JsError::new("invalid_argument", message)
    }

    /// A failure of IndexedDB (or of the browser around it).
    pub fn storage(message: impl Into<String>) -> Self {
        JsError::new("storage", message)
    }

    /// The store was called from inside one of its own callbacks (a
    /// validator, `compare` or a `setFn` function).
    pub fn reentrant() -> Self {
        JsError::invalid("the store cannot be called from a validator, compare or setFn function")
    }
}

impl From<Error> for JsError {
    fn from(e: Error) -> Self {
        JsError::new(e.code(), e.to_string())
    }
}

impl std::fmt::Display for JsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl From<JsError> for JsValue {
    fn from(e: JsError) -> Self {
        let error = js_sys::Error::new(&e.message);
        error.set_name("ZestorError");
        set(&error, "code", &JsValue::from_str(&e.code));
        error.into()
    }
}

/// The result type of everything exported.
pub type JsResult<T> = std::result::Result<T, JsError>;

/// The text of a thrown JS value (an `Error`'s message, or its string form).
pub fn describe(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

pub fn set(target: &JsValue, key: &str, value: &JsValue) {
    // Setting a property on a plain object we created cannot fail.
    let _ = js_sys::Reflect::set(target, &JsValue::from_str(key), value);
}

pub fn get(target: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

/// A JS value as JSON; `undefined`, functions, symbols and bigints are refused.
pub fn to_json(value: &JsValue, what: &str) -> JsResult<Value> {
    serde_wasm_bindgen::from_value(value.clone())
        .map_err(|e| JsError::new("encoding", format!("{what} is not a JSON value: {e}")))
}

/// JSON as a plain JS value (objects, not `Map`s).
pub fn from_json(value: &Value) -> JsValue {
    to_js(value)
}

/// Any serializable value as a plain JS value.
pub fn to_js<S: Serialize + ?Sized>(value: &S) -> JsValue {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .unwrap_or(JsValue::UNDEFINED)
}

pub fn result_name(result: SetResult) -> &'static str {
    match result {
        SetResult::Created => "created",
        SetResult::Updated => "updated",
        SetResult::Unchanged => "unchanged",
    }
}

pub fn event_type_name(t: EventType) -> &'static str {
    match t {
        EventType::Create => "create",
        EventType::Update => "update",
        EventType::Delete => "delete",
    }
}

/// `{value, version, rev, pending}`.
pub fn entry(entry: &Entry<&Value>, pending: bool) -> JsValue {
    let object = js_sys::Object::new();
    set(&object, "value", &from_json(entry.value));
    set(&object, "version", &JsValue::from_f64(entry.version as f64));
    set(&object, "rev", &JsValue::from_f64(entry.rev as f64));
    set(&object, "pending", &JsValue::from_bool(pending));
    object.into()
}

/// `{kind, key, type, value, version, rev, pending}`.
pub fn event(event: &Event<Value>, pending: bool) -> JsValue {
    let object = js_sys::Object::new();
    set(&object, "kind", &JsValue::from_str(&event.kind));
    set(&object, "key", &JsValue::from_str(&event.key));
    set(
        &object,
        "type",
        &JsValue::from_str(event_type_name(event.event_type)),
    );
    set(&object, "value", &from_json(&event.value));
    set(&object, "version", &JsValue::from_f64(event.version as f64));
    set(&object, "rev", &JsValue::from_f64(event.rev as f64));
    set(&object, "pending", &JsValue::from_bool(pending));
    object.into()
}

/// A non-negative integer argument (a version or a revision).
pub fn to_u64(value: &JsValue, what: &str) -> JsResult<u64> {
    match value.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 => Ok(n as u64),
        _ => Err(JsError::invalid(format!("{what} must be a non-negative integer"))),
    }
}

/// An optional field that must be a non-negative integer when present.
pub fn opt_u64(object: &JsValue, key: &str) -> JsResult<Option<u64>> {
    if object.is_undefined() || object.is_null() {
        return Ok(None);
    }
    let value = get(object, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    to_u64(&value, key).map(Some)
}
