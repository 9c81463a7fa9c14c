//! Moving values and errors across the JavaScript boundary.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use store_core::sync::ErrorCode;
use store_core::{Entry, Error, Event, EventType, SetResult};
use wasm_bindgen::prelude::*;

/// Every `code` the package's errors and `status().error` carry: the
/// `ZestorErrorCode` type of `npm/zestor.d.ts` lists them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// The store's own (see `store_core::Error::code`).
    Store(&'static str),
    /// The server's, for a refused op or session (docs/protocol.md).
    Server(ErrorCode),
    /// A call the API does not accept.
    InvalidArgument,
    /// A local store is open in another tab.
    Locked,
    /// The connection closed with a code no retry can fix.
    ClosedWith(u16),
    /// The sync `token` function threw, rejected or gave no string.
    TokenFailed,
}

impl Code {
    /// The code as JavaScript sees it.
    pub fn as_str(self) -> std::borrow::Cow<'static, str> {
        match self {
            Code::Store(code) => code.into(),
            Code::Server(code) => code.as_str().into(),
            Code::InvalidArgument => "invalid_argument".into(),
            Code::Locked => "locked".into(),
            Code::ClosedWith(code) => format!("closed_{code}").into(),
            Code::TokenFailed => "token_failed".into(),
        }
    }
}

/// An error as the package throws it: a JS `Error` named `ZestorError`
/// with a stable `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsError {
    pub code: Code,
    pub message: String,
}

impl JsError {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        JsError {
            code,
            message: message.into(),
        }
    }

    /// A caller passed something the API does not accept.
    pub fn invalid(message: impl Into<String>) -> Self {
        JsError::new(Code::InvalidArgument, message)
    }

    /// A failure of IndexedDB (or of the browser around it).
    pub fn storage(message: impl Into<String>) -> Self {
        JsError::new(Code::Store("storage"), message)
    }

    /// IndexedDB holds data this version cannot read.
    pub fn decode(message: impl Into<String>) -> Self {
        JsError::new(Code::Store("decode"), message)
    }

    /// The store was called from inside one of its own callbacks (a
    /// validator, `compare` or a `setFn` function).
    pub fn reentrant() -> Self {
        JsError::invalid("the store cannot be called from a validator, compare or setFn function")
    }
}

impl From<Error> for JsError {
    fn from(e: Error) -> Self {
        JsError::new(Code::Store(e.code()), e.to_string())
    }
}

impl std::fmt::Display for JsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl From<JsError> for JsValue {
    fn from(e: JsError) -> Self {
        let error = js_sys::Error::new(&e.message);
        error.set_name("ZestorError");
        set(&error, "code", &JsValue::from_str(&e.code.as_str()));
        error.into()
    }
}

/// The result type of everything exported.
pub(crate) type JsResult<T> = std::result::Result<T, JsError>;

/// The text of a thrown JS value (an `Error`'s message, or its string form).
pub(crate) fn describe(value: &JsValue) -> String {
    if let Some(error) = value.dyn_ref::<js_sys::Error>() {
        return String::from(error.message());
    }
    value.as_string().unwrap_or_else(|| format!("{value:?}"))
}

pub(crate) fn set(target: &JsValue, key: &str, value: &JsValue) {
    // Setting a property on a plain object we created cannot fail.
    let _ = js_sys::Reflect::set(target, &JsValue::from_str(key), value);
}

pub(crate) fn get(target: &JsValue, key: &str) -> JsValue {
    js_sys::Reflect::get(target, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
}

#[wasm_bindgen(inline_js = r#"
// JSON.stringify's replacer: refuses what JSON cannot hold instead of
// dropping it (undefined, functions, symbols) or turning it into null (NaN,
// Infinity); BigInts and cycles make JSON.stringify throw by itself.
function refuse(key, what) {
  throw new TypeError(key === '' ? what : `${what} at ${JSON.stringify(String(key))}`);
}
function check(key, value) {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return value;
    case 'number':
      return value - value === 0 ? value : refuse(key, String(value));
    case 'object': {
      if (value === null || Array.isArray(value)) return value;
      const proto = Object.getPrototypeOf(value);
      return proto === Object.prototype || proto === null ? value : unusual(key, value);
    }
    case 'undefined':
      return refuse(key, 'undefined');
    default:
      return refuse(key, `a ${typeof value}`);
  }
}
// An object that is not plain: a Map with string keys is an object (as
// before); other collections and binary data are refused rather than
// written as {}; boxed primitives are their value; anything else (a class
// instance) is its own enumerable properties. (A Date arrives here already
// as its toJSON() text.)
function unusual(key, value) {
  if (value instanceof Map) {
    const out = Object.create(null);
    for (const [k, v] of value) {
      if (typeof k !== 'string') refuse(key, 'a Map with a key that is not a string');
      out[k] = v;
    }
    return out;
  }
  if (value instanceof Number || value instanceof String || value instanceof Boolean) {
    return check(key, value.valueOf());
  }
  if (Symbol.iterator in value || value instanceof ArrayBuffer || ArrayBuffer.isView(value)) {
    refuse(key, `a ${(value.constructor && value.constructor.name) || 'collection'}`);
  }
  return value;
}
function message(e) {
  return e instanceof Error ? e.message : String(e);
}
// Whether JSON.stringify writes `value` as it is, so that the replacer
// above has nothing to refuse: JSON's own types and plain objects, not too
// deep (which also bounds a cycle). Much cheaper than a replacer; what it
// does not vouch for goes through the replacer.
function plain(value, depth) {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return value - value === 0;
    case 'object': {
      if (value === null) return true;
      if (depth > 64) return false;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) if (!plain(value[i], depth + 1)) return false;
        return true;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const key in value) if (!plain(value[key], depth + 1)) return false;
      return true;
    }
    default:
      return false;
  }
}
// The JSON text of `value`, or [message] if it is not JSON.
export function json_text(value) {
  try {
    return plain(value, 0) ? JSON.stringify(value) : JSON.stringify(value, check);
  } catch (e) {
    return [message(e)];
  }
}
// setMany's items as the JSON text [[key, …], [value, …]], or [code,
// message]: code 0 for a value that is not JSON, 1 for a malformed item.
// Items are checked in order, each's shape then its value, so the first
// bad one decides.
export function items_text(items) {
  let pairs;
  if (Array.isArray(items)) pairs = items;
  else if (typeof items === 'object' && items !== null) pairs = Object.entries(items);
  else return [1, 'items must be an object or an array of [key, value]'];
  const n = pairs.length;
  const keys = new Array(n);
  const values = new Array(n);
  // While every value is plain, one JSON.stringify writes them all; from
  // the first that is not, each is written on its own through the replacer.
  let fast = true;
  try {
    for (let i = 0; i < n; i++) {
      const pair = pairs[i];
      if (!Array.isArray(pair)) return [1, 'items must be an array of [key, value] pairs'];
      const key = pair[0];
      if (typeof key !== 'string') return [1, "an item's key must be a string"];
      keys[i] = key;
      const value = pair[1];
      if (fast && !plain(value, 0)) {
        fast = false;
        for (let j = 0; j < i; j++) values[j] = JSON.stringify(values[j]);
      }
      values[i] = fast ? value : JSON.stringify(value, check);
    }
  } catch (e) {
    return [0, message(e)];
  }
  return fast ? JSON.stringify([keys, values]) : `[${JSON.stringify(keys)},[${values.join(',')}]]`;
}
export function parse(text) {
  return JSON.parse(text);
}
"#)]
extern "C" {
    fn json_text(value: &JsValue) -> JsValue;
    fn items_text(items: &JsValue) -> JsValue;
    /// `JSON.parse` of a text Rust wrote.
    fn parse(text: &str) -> JsValue;
    /// The same, of a text kept as a JS string.
    #[wasm_bindgen(js_name = parse)]
    fn parse_string(text: &JsValue) -> JsValue;
}

fn not_json(what: &str, detail: impl std::fmt::Display) -> JsError {
    JsError::new(
        Code::Store("encoding"),
        format!("{what} is not a JSON value: {detail}"),
    )
}

/// A JS value as JSON, through one `JSON.stringify`: `undefined`,
/// functions, symbols, BigInts, `NaN`, `Infinity`, cycles, `Set`s and
/// binary data are refused, wherever they are.
pub(crate) fn to_json(value: &JsValue, what: &str) -> JsResult<Value> {
    let text = json_text(value);
    match text.as_string() {
        Some(text) => serde_json::from_str(&text).map_err(|e| not_json(what, e)),
        None => Err(not_json(
            what,
            describe(&js_sys::Reflect::get_u32(&text, 0).unwrap_or_default()),
        )),
    }
}

/// `setMany`'s items, an object or an array of `[key, value]` pairs, as
/// keys and JSON values.
pub(crate) fn items_json(items: &JsValue) -> JsResult<Vec<(String, Value)>> {
    let text = items_text(items);
    let Some(text) = text.as_string() else {
        let failure: js_sys::Array = text.unchecked_into();
        let message = failure.get(1).as_string().unwrap_or_default();
        return Err(if failure.get(0).as_f64() == Some(1.0) {
            JsError::invalid(message)
        } else {
            not_json("an item's value", message)
        });
    };
    let (keys, values): (Vec<String>, Vec<Value>) =
        serde_json::from_str(&text).map_err(|e| not_json("an item's value", e))?;
    Ok(keys.into_iter().zip(values).collect())
}

/// JSON as a plain JS value (objects, not `Map`s).
pub(crate) fn from_json(value: &Value) -> JsValue {
    let mut out = Vec::with_capacity(64);
    write(&mut out, value);
    parse_text(out)
}

/// Appends `value`'s JSON text to `out`.
pub(crate) fn write<S: Serialize + ?Sized>(out: &mut Vec<u8>, value: &S) {
    // Writing JSON into a Vec cannot fail (every map key here is a string).
    let _ = serde_json::to_writer(out, value);
}

/// The JS value of JSON text written by [`write`] (and the punctuation
/// around it).
pub(crate) fn parse_text(text: Vec<u8>) -> JsValue {
    match String::from_utf8(text) {
        Ok(text) => parse(&text),
        Err(_) => JsValue::UNDEFINED,
    }
}

pub(crate) fn result_name(result: SetResult) -> &'static str {
    match result {
        SetResult::Created => "created",
        SetResult::Updated => "updated",
        SetResult::Unchanged => "unchanged",
    }
}

pub(crate) fn event_type_name(t: EventType) -> &'static str {
    match t {
        EventType::Create => "create",
        EventType::Update => "update",
        EventType::Delete => "delete",
    }
}

/// `{value, version, rev, pending}`.
#[derive(Serialize)]
pub(crate) struct EntryOut<'a> {
    pub value: &'a Value,
    pub version: u64,
    pub rev: u64,
    pub pending: bool,
}

impl<'a> EntryOut<'a> {
    pub(crate) fn new(entry: &Entry<&'a Value>, pending: bool) -> Self {
        EntryOut {
            value: entry.value,
            version: entry.version,
            rev: entry.rev,
            pending,
        }
    }
}

/// `{value, version, rev, pending}`.
pub(crate) fn entry(entry: &Entry<&Value>, pending: bool) -> JsValue {
    let mut out = Vec::with_capacity(128);
    write(&mut out, &EntryOut::new(entry, pending));
    parse_text(out)
}

/// `{kind, key, type, value, version, rev, pending}`.
#[derive(Serialize)]
struct EventOut<'a> {
    kind: &'a str,
    key: &'a str,
    #[serde(rename = "type")]
    event_type: &'static str,
    value: &'a Value,
    version: u64,
    rev: u64,
    pending: bool,
}

/// An event converted lately: its JSON text as a JS string.
struct Converted {
    /// Keeps the event alive, so its address is not reused while cached.
    _event: Arc<Event<Value>>,
    pending: bool,
    text: JsValue,
    bytes: usize,
}

/// Events converted lately: every watch of a store converts the same
/// events, so each is written once and each callback parses its own copy.
/// Keyed by the event's address.
#[derive(Default)]
struct EventCache {
    map: HashMap<usize, Converted>,
    order: VecDeque<usize>,
    bytes: usize,
}

/// At most this many events, and this much JSON text, are kept.
const EVENTS_CACHED: usize = 4096;
const EVENT_BYTES_CACHED: usize = 1 << 20;

thread_local! {
    static EVENTS: RefCell<EventCache> = RefCell::new(EventCache::default());
}

impl EventCache {
    fn insert(&mut self, id: usize, converted: Converted) {
        self.bytes += converted.bytes;
        match self.map.insert(id, converted) {
            Some(old) => self.bytes -= old.bytes,
            None => self.order.push_back(id),
        }
        while self.order.len() > EVENTS_CACHED || (self.bytes > EVENT_BYTES_CACHED && self.order.len() > 1) {
            let Some(old) = self.order.pop_front() else { break };
            if let Some(old) = self.map.remove(&old) {
                self.bytes -= old.bytes;
            }
        }
    }
}

/// `{kind, key, type, value, version, rev, pending}`: a new object for
/// every call, parsed from text written once per event.
pub(crate) fn event(event: &Arc<Event<Value>>, pending: bool) -> JsValue {
    let id = Arc::as_ptr(event) as usize;
    let cached = EVENTS.with(|c| {
        c.borrow()
            .map
            .get(&id)
            .filter(|c| c.pending == pending)
            .map(|c| c.text.clone())
    });
    if let Some(text) = cached {
        return parse_string(&text);
    }
    let mut out = Vec::with_capacity(128);
    write(
        &mut out,
        &EventOut {
            kind: &event.kind,
            key: &event.key,
            event_type: event_type_name(event.event_type),
            value: &event.value,
            version: event.version,
            rev: event.rev,
            pending,
        },
    );
    let bytes = out.len();
    let Ok(text) = String::from_utf8(out) else {
        return JsValue::UNDEFINED;
    };
    let text = JsValue::from_str(&text);
    let converted = Converted {
        _event: event.clone(),
        pending,
        text: text.clone(),
        bytes,
    };
    EVENTS.with(|c| c.borrow_mut().insert(id, converted));
    parse_string(&text)
}

/// A non-negative integer argument (a version or a revision).
pub(crate) fn to_u64(value: &JsValue, what: &str) -> JsResult<u64> {
    match value.as_f64() {
        Some(n) if n >= 0.0 && n.fract() == 0.0 && n <= 9_007_199_254_740_991.0 => Ok(n as u64),
        _ => Err(JsError::invalid(format!("{what} must be a non-negative integer"))),
    }
}

/// An optional field that must be a non-negative integer when present.
pub(crate) fn opt_u64(object: &JsValue, key: &str) -> JsResult<Option<u64>> {
    if object.is_undefined() || object.is_null() {
        return Ok(None);
    }
    let value = get(object, key);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    to_u64(&value, key).map(Some)
}
