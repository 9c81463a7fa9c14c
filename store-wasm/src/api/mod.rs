//! The JavaScript API: `open`, `deleteStore` and the `ZestorStore` class.
//!
//! One file per exported class: [`store`] (`ZestorStore` and `open`),
//! [`watch`] (the pull side of `watchIter`); this one holds what they share:
//! the TypeScript section, the JS helpers and the conversions of arguments
//! and results.
//!
//! Every export returns a `Result`, so a failure reaches JavaScript as a
//! thrown (or rejected) `ZestorError` with a stable `code`. The TypeScript
//! declarations are written by hand in `npm/zestor.d.ts` (the package's
//! types), since they carry generics and unions wasm-bindgen cannot infer;
//! the exports here skip wasm-bindgen's own.

use std::cell::{Cell, RefCell};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_util::{FutureExt, Stream, StreamExt, future};
use serde::Serialize;
use serde_json::Value;
use store_core::schema::Schema;
use store_core::sync::{Ack, ErrorCode, OpResult, Rights};
use store_core::{BoxError, Error, EventType, StoreOptions, Watch, WatchOptions, Written};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::idb::Db;
use crate::js::{self, Code, JsError, JsResult, describe, from_json, get, set, to_json, write};
use store_core::sync::replica::{Answered, LocalOp, Outcome, TabMessage};

use crate::store::{IdbStore, Notice, SyncSetup};
use crate::sync::{Driver, DriverOptions};
use crate::tabs;

#[wasm_bindgen(inline_js = r#"
export function keep(entries, filter) {
  return entries.filter((e) => filter.call(null, e.value, e.key));
}
export function iterate(handle, signal) {
  const done = () => ({ done: true, value: undefined });
  if (signal) signal.addEventListener('abort', () => handle.close(), { once: true });
  return {
    next() {
      if (signal && signal.aborted) { handle.close(); return Promise.resolve(done()); }
      return handle.next().then((value) => (value === undefined ? done() : { done: false, value }));
    },
    return() { handle.close(); return Promise.resolve(done()); },
    [Symbol.asyncIterator]() { return this; },
  };
}
"#)]
extern "C" {
    /// `list`'s entries for which `filter(value, key)` is truthy; throws
    /// what `filter` throws.
    #[wasm_bindgen(catch)]
    fn keep(entries: &JsValue, filter: &js_sys::Function) -> Result<js_sys::Array, JsValue>;
    fn iterate(handle: WatchHandle, signal: JsValue) -> JsValue;
}

mod store;
mod watch;

pub use store::{JsStore, open};
pub use watch::WatchHandle;

fn string_arg(value: &JsValue, what: &str) -> JsResult<String> {
    value
        .as_string()
        .ok_or_else(|| JsError::invalid(format!("{what} must be a string")))
}

fn kind_arg(value: &JsValue) -> JsResult<String> {
    let kind = string_arg(value, "kind")?;
    if kind.is_empty() {
        return Err(Error::KindRequired.into());
    }
    Ok(kind)
}

fn write_options(options: &JsValue) -> JsResult<Option<u64>> {
    js::opt_u64(options, "ifVersion")
}

/// A write's answer: `{result, version, rev, opId?}`, and `key` in
/// `setMany`'s.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WrittenOut<'a> {
    result: &'static str,
    version: u64,
    rev: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    op_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key: Option<&'a str>,
}

impl<'a> WrittenOut<'a> {
    fn new(w: &Written, op_id: Option<&'a str>, key: Option<&'a str>) -> Self {
        WrittenOut {
            result: js::result_name(w.result),
            version: w.version,
            rev: w.rev,
            op_id,
            key,
        }
    }
}

/// A delete's answer: `{value, version, rev, opId?}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeletedOut<'a> {
    value: &'a Value,
    version: u64,
    rev: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    op_id: Option<&'a str>,
}

/// An entry of `list`: `{value, version, rev, pending, key}`.
#[derive(Serialize)]
struct ListItem<'a> {
    value: &'a Value,
    version: u64,
    rev: u64,
    pending: bool,
    key: &'a str,
}

fn ack_js(ack: &Ack) -> JsValue {
    let result = match ack.result {
        OpResult::Created => "created",
        OpResult::Updated => "updated",
        OpResult::Unchanged => "unchanged",
        OpResult::Deleted => "deleted",
        OpResult::Absent => "absent",
    };
    let object = js_sys::Object::new();
    set(&object, "opId", &JsValue::from_str(&ack.op_id));
    set(&object, "result", &JsValue::from_str(result));
    set(&object, "version", &JsValue::from_f64(ack.version as f64));
    set(&object, "rev", &JsValue::from_f64(ack.rev as f64));
    object.into()
}

fn watch_options(options: &JsValue) -> JsResult<WatchOptions> {
    let mut opts = WatchOptions::new();
    if options.is_undefined() || options.is_null() {
        return Ok(opts);
    }
    if get(options, "replay").is_truthy() {
        opts = opts.replay();
    }
    if let Some(rev) = js::opt_u64(options, "fromRev")? {
        opts = opts.from_rev(rev);
    }
    if let Some(n) = js::opt_u64(options, "bufferSize")? {
        if n == 0 {
            return Err(JsError::invalid("bufferSize must be at least 1"));
        }
        opts = opts.buffer_size(n as usize);
    }
    let types = get(options, "types");
    if !types.is_undefined() && !types.is_null() {
        let list = strings(&types).ok_or_else(|| {
            JsError::invalid("types must be an array of \"create\", \"update\", \"delete\"")
        })?;
        let mut parsed = Vec::with_capacity(list.len());
        for t in list {
            parsed.push(match t.as_str() {
                "create" => EventType::Create,
                "update" => EventType::Update,
                "delete" => EventType::Delete,
                other => return Err(JsError::invalid(format!("unknown event type {other:?}"))),
            });
        }
        opts = opts.types(parsed);
    }
    Ok(opts)
}

/// An array of strings.
fn strings(value: &JsValue) -> Option<Vec<String>> {
    if !js_sys::Array::is_array(value) {
        return None;
    }
    value
        .unchecked_ref::<js_sys::Array>()
        .iter()
        .map(|v| v.as_string())
        .collect()
}

/// `sync` but its token: `{ url, namespace, kinds?, backoffMinMs?, backoffMaxMs? }`.
struct SyncIn {
    url: String,
    namespace: String,
    kinds: Option<Vec<String>>,
    backoff_min_ms: Option<f64>,
    backoff_max_ms: Option<f64>,
}

impl SyncIn {
    fn read(sync: &JsValue) -> JsResult<SyncIn> {
        let invalid = |what: &str| {
            JsError::invalid(format!(
                "sync must be {{ url, namespace, token, kinds? }}: {what}"
            ))
        };
        let string = |key: &str| {
            get(sync, key)
                .as_string()
                .ok_or_else(|| invalid(&format!("{key} must be a string")))
        };
        // `null` and `undefined` are absent.
        let optional = |key: &str| Some(get(sync, key)).filter(|v| !v.is_undefined() && !v.is_null());
        let number = |key: &str| match optional(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| invalid(&format!("{key} must be a number"))),
        };
        let kinds = match optional("kinds") {
            None => None,
            Some(v) => Some(strings(&v).ok_or_else(|| invalid("kinds must be an array of strings"))?),
        };
        Ok(SyncIn {
            url: string("url")?,
            namespace: string("namespace")?,
            kinds,
            backoff_min_ms: number("backoffMinMs")?,
            backoff_max_ms: number("backoffMaxMs")?,
        })
    }
}

fn store_options(options: &JsValue) -> JsResult<StoreOptions<Value>> {
    let mut opts = StoreOptions::new();
    let schemas = get(options, "schemas");
    if !schemas.is_undefined() && !schemas.is_null() {
        let invalid = |e: &str| JsError::invalid(format!("schemas must map kinds to JSON Schemas: {e}"));
        let schemas = match to_json(&schemas, "schemas").map_err(|e| invalid(&e.message))? {
            Value::Object(schemas) => schemas,
            _ => return Err(invalid("not an object")),
        };
        for (kind, source) in schemas {
            let schema = Schema::compile(source).map_err(Error::Schema)?;
            opts = opts.schema(kind, schema);
        }
    }
    let validate = get(options, "validate");
    if !validate.is_undefined() && !validate.is_null() {
        let entries = js_sys::Object::entries(validate.unchecked_ref());
        for pair in entries.iter() {
            let pair: js_sys::Array = pair.unchecked_into();
            let kind = string_arg(&pair.get(0), "a validate key")?;
            let f = pair
                .get(1)
                .dyn_into::<js_sys::Function>()
                .map_err(|_| JsError::invalid(format!("validate.{kind} must be a function")))?;
            opts = opts.validator(kind, move |key: &str, value: &Value| {
                match f.call2(&JsValue::NULL, &from_json(value), &JsValue::from_str(key)) {
                    Err(thrown) => Err(describe(&thrown)),
                    Ok(v) if v.is_undefined() || v.is_null() || v.as_bool() == Some(true) => Ok(()),
                    Ok(v) if v.as_bool() == Some(false) => Err("refused by the validator".to_owned()),
                    Ok(v) => Err(v
                        .as_string()
                        .unwrap_or_else(|| "refused by the validator".to_owned())),
                }
            });
        }
    }
    let compare = get(options, "compare");
    if !compare.is_undefined() && !compare.is_null() {
        let f = compare
            .dyn_into::<js_sys::Function>()
            .map_err(|_| JsError::invalid("compare must be a function"))?;
        opts = opts.compare(move |a: &Value, b: &Value| {
            f.call2(&JsValue::NULL, &from_json(a), &from_json(b))
                .is_ok_and(|v| v.is_truthy())
        });
    }
    if let Some(retention) = js::opt_u64(options, "retention")? {
        opts = opts.retention(retention as usize);
    }
    Ok(opts)
}

/// Deletes a store's IndexedDB database.
#[wasm_bindgen(js_name = deleteStore, skip_typescript)]
pub async fn delete_store(name: JsValue) -> Result<(), JsValue> {
    let name = string_arg(&name, "name")?;
    Ok(Db::delete(&name).await?)
}

fn promise(f: impl Future<Output = JsResult<JsValue>> + 'static) -> js_sys::Promise {
    future_to_promise(f.map(|r| r.map_err(JsValue::from)))
}
