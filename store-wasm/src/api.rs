//! The JavaScript API: `open`, `deleteStore` and the `ZestorStore` class.
//!
//! Every export returns a `Result`, so a failure reaches JavaScript as a
//! thrown (or rejected) `ZestorError` with a stable `code`. The TypeScript
//! declarations are written by hand in `types.d.ts` (emitted into the
//! package's `.d.ts`), since they carry generics and unions wasm-bindgen
//! cannot infer.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use futures_util::{FutureExt, Stream, StreamExt, future};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use store_core::schema::Schema;
use store_core::sync::{Ack, ErrorCode, OpResult, Rights};
use store_core::{BoxError, Error, EventType, StoreOptions, Watch, WatchOptions, Written};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

use crate::idb::Db;
use crate::js::{self, Code, JsError, JsResult, describe, from_json, get, set, to_json, write};
use crate::store::{IdbStore, LocalOp, Notice, Outcome, SyncSetup};
use crate::sync::{Driver, DriverOptions};
use crate::tabs::{self, TabMessage};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = include_str!("types.d.ts");

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
        let list: Vec<String> = serde_wasm_bindgen::from_value(types)
            .map_err(|_| JsError::invalid("types must be an array of \"create\", \"update\", \"delete\""))?;
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SyncIn {
    url: String,
    namespace: String,
    token: String,
    #[serde(default)]
    kinds: Option<Vec<String>>,
    #[serde(default)]
    backoff_min_ms: Option<f64>,
    #[serde(default)]
    backoff_max_ms: Option<f64>,
}

fn store_options(options: &JsValue) -> JsResult<StoreOptions<Value>> {
    let mut opts = StoreOptions::new();
    let schemas = get(options, "schemas");
    if !schemas.is_undefined() && !schemas.is_null() {
        let schemas: BTreeMap<String, Value> = serde_wasm_bindgen::from_value(schemas)
            .map_err(|e| JsError::invalid(format!("schemas must map kinds to JSON Schemas: {e}")))?;
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

/// Listeners of `status`, `acked` and `rejected`.
#[derive(Default)]
struct Listeners {
    next_id: Cell<u32>,
    list: RefCell<Vec<(u32, String, js_sys::Function)>>,
}

impl Listeners {
    fn emit(&self, event: &str, payload: &JsValue) {
        let targets: Vec<js_sys::Function> = self
            .list
            .borrow()
            .iter()
            .filter(|(_, e, _)| e == event)
            .map(|(_, _, f)| f.clone())
            .collect();
        for f in targets {
            if let Err(e) = f.call1(&JsValue::NULL, payload) {
                web_sys::console::error_2(&JsValue::from_str("zestor: an event listener threw"), &e);
            }
        }
    }
}

struct Shared {
    store: IdbStore,
    driver: RefCell<Option<Driver>>,
    /// The store's Web Lock: held by the tab syncing (or using a local
    /// store), awaited by the other tabs of a synced store.
    lock: RefCell<Option<tabs::Lock>>,
    listeners: Listeners,
    last_status: RefCell<String>,
}

impl Shared {
    fn status(&self) -> JsValue {
        let object = js_sys::Object::new();
        let leader = self.driver.borrow().is_some();
        let (connection, error) = match self.driver.borrow().as_ref() {
            Some(d) => (d.connection().as_str().to_owned(), d.error()),
            None => match self.store.sync() {
                None => ("local".to_owned(), None),
                // Another tab holds the connection: show what it posted.
                Some(s) => s
                    .leader_status()
                    .unwrap_or_else(|| ("connecting".to_owned(), None)),
            },
        };
        let (pending, cursor) = self
            .store
            .sync()
            .map_or((0, None), |s| (s.pending_count(), s.synced_rev()));
        set(&object, "connection", &JsValue::from_str(&connection));
        set(&object, "pending", &JsValue::from_f64(pending as f64));
        let cursor = cursor.map_or(JsValue::NULL, |c| JsValue::from_f64(c as f64));
        set(&object, "lastSyncedRev", &cursor);
        set(&object, "leader", &JsValue::from_bool(leader));
        let rights = match self.store.sync().and_then(|s| s.rights()) {
            Some(Rights::Read) => JsValue::from_str("read"),
            Some(Rights::ReadWrite) => JsValue::from_str("read_write"),
            None => JsValue::NULL,
        };
        set(&object, "rights", &rights);
        let error = match error {
            Some((code, message)) => {
                let e = js_sys::Object::new();
                set(&e, "code", &JsValue::from_str(&code));
                set(&e, "message", &JsValue::from_str(&message));
                e.into()
            }
            None => JsValue::NULL,
        };
        set(&object, "error", &error);
        object.into()
    }

    /// Emits `status` if anything in it changed.
    fn status_changed(&self) {
        let status = self.status();
        let text = js_sys::JSON::stringify(&status)
            .map(String::from)
            .unwrap_or_default();
        if *self.last_status.borrow() == text {
            return;
        }
        *self.last_status.borrow_mut() = text;
        if let Some(d) = self.driver.borrow().as_ref() {
            let rights = self.store.sync().and_then(|s| s.session.rights());
            self.store.post(&TabMessage::Status {
                connection: d.connection().as_str().to_owned(),
                error: d.error(),
                rights,
            });
        }
        self.listeners.emit("status", &status);
    }

    /// Takes the connection: this tab syncs for every tab of the store.
    fn lead(self: &Rc<Self>, options: DriverOptions) {
        self.store.set_leader(true);
        let weak = Rc::downgrade(self);
        let driver = Driver::start(self.store.clone(), options, move || {
            if let Some(shared) = weak.upgrade() {
                shared.status_changed();
            }
        });
        *self.driver.borrow_mut() = Some(driver);
        self.store.post(&TabMessage::Leading);
        self.status_changed();
    }

    fn notices(&self, notices: Vec<Notice>) {
        for notice in notices {
            match notice {
                Notice::Queued => {
                    if let Some(d) = self.driver.borrow().as_ref() {
                        d.flush();
                    }
                }
                // Tell the new tab where the connection stands.
                Notice::TabJoined => self.last_status.borrow_mut().clear(),
                Notice::Acked { ack, kind, key } => {
                    let ack = ack_js(&ack);
                    set(&ack, "kind", &JsValue::from_str(&kind));
                    set(&ack, "key", &JsValue::from_str(&key));
                    self.listeners.emit("acked", &ack);
                }
                Notice::Rejected { op, code, message } => {
                    let object = js_sys::Object::new();
                    set(&object, "opId", &JsValue::from_str(&op.op_id));
                    set(&object, "kind", &JsValue::from_str(&op.kind));
                    set(&object, "key", &JsValue::from_str(&op.key));
                    set(&object, "code", &JsValue::from_str(code.as_str()));
                    set(&object, "message", &JsValue::from_str(&message));
                    self.listeners.emit("rejected", &object.into());
                }
            }
        }
        self.status_changed();
    }
}

/// A store, as JavaScript sees it (see `ZestorStore` in `types.d.ts`).
#[wasm_bindgen(js_name = ZestorStore, skip_typescript)]
pub struct JsStore {
    shared: Rc<Shared>,
}

/// Opens (or creates) a store, restored from IndexedDB before it resolves.
#[wasm_bindgen(skip_typescript)]
pub async fn open(options: JsValue) -> Result<JsStore, JsValue> {
    console_error_panic_hook::set_once();
    Ok(open_store(options).await?)
}

async fn open_store(options: JsValue) -> JsResult<JsStore> {
    if !options.is_object() {
        return Err(JsError::invalid("open() takes an options object with a name"));
    }
    let name = string_arg(&get(&options, "name"), "name")?;
    if name.is_empty() {
        return Err(JsError::invalid("name must not be empty"));
    }
    let sync_in = get(&options, "sync");
    let sync: Option<SyncIn> = if sync_in.is_undefined() || sync_in.is_null() {
        None
    } else {
        Some(serde_wasm_bindgen::from_value(sync_in).map_err(|e| {
            JsError::invalid(format!("sync must be {{ url, namespace, token, kinds? }}: {e}"))
        })?)
    };
    let store_opts = store_options(&options)?;
    let setup = sync.as_ref().map(|s| SyncSetup {
        namespace: s.namespace.clone(),
        token: s.token.clone(),
        kinds: s.kinds.clone(),
    });
    let store = IdbStore::open(&name, store_opts, setup).await?;
    let lock_name = format!("zestor:{name}");
    // Whether the lock is free now; a local store needs it for itself.
    let (granted_tx, granted_rx) = futures_channel::oneshot::channel();
    let lock = tabs::request(&lock_name, true, move |granted| {
        let _ = granted_tx.send(granted);
    });
    let leading = granted_rx.await.unwrap_or(false);
    if !leading && sync.is_none() {
        store.close().await;
        return Err(JsError::new(
            Code::Locked,
            format!(
                "store {name:?} is open in another tab; a local store serves one tab (sync it to share it)"
            ),
        ));
    }
    let shared = Rc::new(Shared {
        store: store.clone(),
        driver: RefCell::new(None),
        lock: RefCell::new(leading.then_some(lock)),
        listeners: Listeners::default(),
        last_status: RefCell::new(String::new()),
    });
    let weak = Rc::downgrade(&shared);
    store.on_notice(move |notices| {
        if let Some(shared) = weak.upgrade() {
            shared.notices(notices);
        }
    });
    if let Some(s) = sync {
        store.join_tabs(&name);
        let options = DriverOptions {
            url: s.url,
            backoff_min_ms: s.backoff_min_ms.unwrap_or(250.0).max(10.0),
            backoff_max_ms: s.backoff_max_ms.unwrap_or(30_000.0).max(10.0),
        };
        if leading {
            shared.lead(options);
        } else {
            // Another tab syncs; take over when it lets go of the lock,
            // after reading what it left in IndexedDB.
            store.set_leader(false);
            let weak = Rc::downgrade(&shared);
            let waiting = tabs::request(&lock_name, false, move |_| {
                let Some(shared) = weak.upgrade() else { return };
                wasm_bindgen_futures::spawn_local(async move {
                    if shared.store.is_closed() {
                        return;
                    }
                    if let Err(e) = shared.store.reload().await {
                        web_sys::console::error_1(&format!("zestor: taking over sync failed: {e}").into());
                        return;
                    }
                    shared.lead(options);
                });
            });
            *shared.lock.borrow_mut() = Some(waiting);
        }
    }
    Ok(JsStore { shared })
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

impl JsStore {
    fn store(&self) -> &IdbStore {
        &self.shared.store
    }

    fn check_writable(&self) -> JsResult<()> {
        if let Some(sync) = self.store().sync()
            && sync.rights() == Some(Rights::Read)
        {
            return Err(JsError::new(
                Code::Server(ErrorCode::Forbidden),
                "this store's token may only read",
            ));
        }
        Ok(())
    }

    fn submit(&self, op: JsResult<LocalOp>) -> js_sys::Promise {
        let store = self.store().clone();
        let writable = self.check_writable();
        promise(async move {
            writable?;
            let outcome = store.submit(op?).await?;
            let mut out = Vec::with_capacity(128);
            match &outcome {
                Outcome::Written(w, op_id) => write(&mut out, &WrittenOut::new(w, op_id.as_deref(), None)),
                Outcome::Many(items) => {
                    out.push(b'[');
                    for (i, (key, w, op_id)) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        write(&mut out, &WrittenOut::new(w, op_id.as_deref(), Some(key)));
                    }
                    out.push(b']');
                }
                Outcome::Deleted(None) => return Ok(JsValue::NULL),
                Outcome::Deleted(Some((d, op_id))) => write(
                    &mut out,
                    &DeletedOut {
                        value: &d.prev.value,
                        version: d.prev.version,
                        rev: d.rev,
                        op_id: op_id.as_deref(),
                    },
                ),
            }
            Ok(js::parse_text(out))
        })
    }

    /// The JSON text of an array (or, with `braces`, an object) holding
    /// what `item` writes for each entry of `kind`.
    fn collect(
        &self,
        kind: &JsValue,
        braces: bool,
        mut item: impl FnMut(&mut Vec<u8>, &str, &store_core::Entry<&Value>, bool),
    ) -> JsResult<JsValue> {
        let kind = kind_arg(kind)?;
        let engine = self.store().engine()?;
        let entries = engine.list(&kind, &[])?;
        let mut out = Vec::with_capacity(64 + 64 * entries.len());
        out.push(if braces { b'{' } else { b'[' });
        for (i, (key, entry)) in entries.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            item(&mut out, key, entry, self.store().is_pending(&kind, key));
        }
        out.push(if braces { b'}' } else { b']' });
        drop(engine);
        Ok(js::parse_text(out))
    }

    fn subscribe(&self, kind: &JsValue, options: &JsValue) -> JsResult<Watch<Value>> {
        let opts = watch_options(options)?;
        let mut engine = self.store().engine_mut()?;
        Ok(if kind.is_null() || kind.is_undefined() {
            engine.watch_all(opts)?
        } else {
            engine.watch(&kind_arg(kind)?, opts)?
        })
    }
}

#[wasm_bindgen(js_class = ZestorStore)]
impl JsStore {
    pub fn get(&self, kind: JsValue, key: JsValue) -> Result<JsValue, JsValue> {
        let (kind, key) = (kind_arg(&kind)?, string_arg(&key, "key")?);
        let engine = self.store().engine().map_err(JsError::from)?;
        Ok(match engine.get(&kind, &key).map_err(JsError::from)? {
            Some(entry) => js::entry(&entry, self.store().is_pending(&kind, &key)),
            None => JsValue::UNDEFINED,
        })
    }

    pub fn list(&self, kind: JsValue, filter: JsValue) -> Result<js_sys::Array, JsValue> {
        let filter = if filter.is_undefined() || filter.is_null() {
            None
        } else {
            Some(
                filter
                    .dyn_into::<js_sys::Function>()
                    .map_err(|_| JsError::invalid("filter must be a function"))?,
            )
        };
        let all = self.collect(&kind, false, |out, key, entry, pending| {
            let item = ListItem {
                value: entry.value,
                version: entry.version,
                rev: entry.rev,
                pending,
                key,
            };
            write(out, &item);
        })?;
        match filter {
            None => Ok(all.unchecked_into()),
            Some(f) => keep(&all, &f),
        }
    }

    pub fn count(&self, kind: JsValue) -> Result<f64, JsValue> {
        let kind = kind_arg(&kind)?;
        let engine = self.store().engine().map_err(JsError::from)?;
        Ok(engine.count(&kind).map_err(JsError::from)? as f64)
    }

    pub fn keys(&self, kind: JsValue) -> Result<js_sys::Array, JsValue> {
        let all = self.collect(&kind, false, |out, key, _, _| write(out, key))?;
        Ok(all.unchecked_into())
    }

    pub fn values(&self, kind: JsValue) -> Result<js_sys::Array, JsValue> {
        let all = self.collect(&kind, false, |out, _, entry, _| write(out, entry.value))?;
        Ok(all.unchecked_into())
    }

    #[wasm_bindgen(js_name = getAll)]
    pub fn get_all(&self, kind: JsValue) -> Result<js_sys::Object, JsValue> {
        let all = self.collect(&kind, true, |out, key, entry, pending| {
            write(out, key);
            out.push(b':');
            write(out, &js::EntryOut::new(entry, pending));
        })?;
        Ok(all.unchecked_into())
    }

    pub fn kinds(&self) -> Result<js_sys::Array, JsValue> {
        let engine = self.store().engine().map_err(JsError::from)?;
        let kinds = engine.kinds().map_err(JsError::from)?;
        Ok(kinds.into_iter().map(JsValue::from_str).collect())
    }

    pub fn rev(&self) -> Result<f64, JsValue> {
        let engine = self.store().engine().map_err(JsError::from)?;
        if engine.is_closed() {
            return Err(JsError::from(Error::Closed).into());
        }
        Ok(engine.rev() as f64)
    }

    pub fn set(&self, kind: JsValue, key: JsValue, value: JsValue, options: JsValue) -> js_sys::Promise {
        let op = (|| {
            Ok(LocalOp::Set {
                kind: kind_arg(&kind)?,
                key: string_arg(&key, "key")?,
                value: to_json(&value, "value")?,
                if_version: write_options(&options)?,
            })
        })();
        self.submit(op)
    }

    #[wasm_bindgen(js_name = setMany)]
    pub fn set_many(&self, kind: JsValue, items: JsValue) -> js_sys::Promise {
        let op = (|| {
            let kind = kind_arg(&kind)?;
            let out = js::items_json(&items)?;
            Ok(LocalOp::SetMany { kind, items: out })
        })();
        self.submit(op)
    }

    #[wasm_bindgen(js_name = setFn)]
    pub fn set_fn(&self, kind: JsValue, key: JsValue, f: JsValue, options: JsValue) -> js_sys::Promise {
        let op = (|| {
            let f: js_sys::Function = f
                .dyn_into()
                .map_err(|_| JsError::invalid("setFn takes a function"))?;
            let f = move |old: &Value| -> Result<Value, BoxError> {
                let new = f
                    .call1(&JsValue::NULL, &from_json(old))
                    .map_err(|e| BoxError::from(describe(&e)))?;
                to_json(&new, "the function's result").map_err(|e| BoxError::from(e.message))
            };
            Ok(LocalOp::SetFn {
                kind: kind_arg(&kind)?,
                key: string_arg(&key, "key")?,
                f: Box::new(f),
                if_version: write_options(&options)?,
            })
        })();
        self.submit(op)
    }

    pub fn delete(&self, kind: JsValue, key: JsValue, options: JsValue) -> js_sys::Promise {
        let op = (|| {
            Ok(LocalOp::Delete {
                kind: kind_arg(&kind)?,
                key: string_arg(&key, "key")?,
                if_version: write_options(&options)?,
            })
        })();
        self.submit(op)
    }

    pub fn confirmed(&self, op_id: JsValue) -> js_sys::Promise {
        let store = self.store().clone();
        promise(async move {
            let op_id = string_arg(&op_id, "opId")?;
            let rx = store
                .answer(&op_id)
                .ok_or_else(|| JsError::invalid(format!("no pending or recent op {op_id:?}")))?;
            match rx.await {
                Ok(Ok(ack)) => Ok(ack_js(&ack)),
                Ok(Err((code, message))) => Err(JsError::new(Code::Server(code), message)),
                Err(_) => Err(JsError::from(Error::Closed)),
            }
        })
    }

    pub fn watch(
        &self,
        kind: JsValue,
        options: JsValue,
        callback: JsValue,
    ) -> Result<js_sys::Function, JsValue> {
        let callback: js_sys::Function = callback
            .dyn_into()
            .map_err(|_| JsError::invalid("watch takes a callback function"))?;
        let mut watch = self.subscribe(&kind, &options)?;
        let store = self.store().clone();
        let (cancel, cancelled) = futures_channel::oneshot::channel::<()>();
        // Only calling the unsubscribe function ends the watch: an app that
        // drops it (the garbage collector frees it) keeps watching.
        let cancelled = async move {
            if cancelled.await.is_err() {
                future::pending::<()>().await;
            }
        };
        wasm_bindgen_futures::spawn_local(async move {
            let mut cancelled = Box::pin(cancelled.fuse());
            loop {
                let next = future::select(watch.next(), &mut cancelled).await;
                let item = match next {
                    future::Either::Left((item, _)) => item,
                    future::Either::Right(_) => return,
                };
                let (event, error) = match item {
                    // The store closed (an unsubscribe ends the loop above).
                    None => (JsValue::NULL, JsValue::from(JsError::from(Error::Closed))),
                    Some(Ok(e)) => (js::event(&e, store.is_pending_rev(e.rev)), JsValue::UNDEFINED),
                    Some(Err(e)) => (JsValue::NULL, JsValue::from(JsError::from(e))),
                };
                let ended = event.is_null();
                if let Err(e) = callback.call2(&JsValue::NULL, &event, &error) {
                    web_sys::console::error_2(&JsValue::from_str("zestor: a watch callback threw"), &e);
                }
                if ended {
                    return;
                }
            }
        });
        let cancel = RefCell::new(Some(cancel));
        let unsubscribe = Closure::<dyn Fn()>::new(move || {
            if let Some(c) = cancel.borrow_mut().take() {
                let _ = c.send(());
            }
        });
        Ok(unsubscribe.into_js_value().unchecked_into())
    }

    #[wasm_bindgen(js_name = watchIter)]
    pub fn watch_iter(&self, kind: JsValue, options: JsValue) -> Result<JsValue, JsValue> {
        let watch = self.subscribe(&kind, &options)?;
        let signal = get(&options, "signal");
        let handle = WatchHandle {
            inner: Rc::new(RefCell::new(HandleState {
                watch: Some(watch),
                waker: None,
            })),
            store: self.store().clone(),
        };
        Ok(iterate(handle, signal))
    }

    pub fn status(&self) -> JsValue {
        self.shared.status()
    }

    pub fn on(&self, event: JsValue, callback: JsValue) -> Result<js_sys::Function, JsValue> {
        let event = string_arg(&event, "event")?;
        if !matches!(event.as_str(), "status" | "acked" | "rejected") {
            return Err(
                JsError::invalid(format!("unknown event {event:?}: status, acked or rejected")).into(),
            );
        }
        let callback: js_sys::Function = callback
            .dyn_into()
            .map_err(|_| JsError::invalid("on() takes a callback function"))?;
        let listeners = &self.shared.listeners;
        let id = listeners.next_id.get();
        listeners.next_id.set(id + 1);
        listeners.list.borrow_mut().push((id, event, callback));
        let weak = Rc::downgrade(&self.shared);
        let off = Closure::<dyn Fn()>::new(move || {
            if let Some(shared) = weak.upgrade() {
                shared.listeners.list.borrow_mut().retain(|(i, _, _)| *i != id);
            }
        });
        Ok(off.into_js_value().unchecked_into())
    }

    pub fn close(&self) -> js_sys::Promise {
        let shared = self.shared.clone();
        promise(async move {
            // Taken out first: stopping reports a status change, which
            // reads the driver.
            let driver = shared.driver.borrow_mut().take();
            if let Some(d) = driver {
                d.stop();
            }
            shared.store.close().await;
            // Lets the next tab take over.
            shared.lock.borrow_mut().take();
            shared.listeners.list.borrow_mut().clear();
            Ok(JsValue::UNDEFINED)
        })
    }
}

struct HandleState {
    watch: Option<Watch<Value>>,
    waker: Option<Waker>,
}

/// The pull side of `watchIter`: one `next()` at a time, so the watch's
/// buffer (and its overflow) applies to a slow consumer.
#[wasm_bindgen(skip_typescript)]
pub struct WatchHandle {
    inner: Rc<RefCell<HandleState>>,
    store: IdbStore,
}

struct NextEvent(Rc<RefCell<HandleState>>);

impl Future for NextEvent {
    type Output = Option<store_core::Result<std::sync::Arc<store_core::Event<Value>>>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.0.borrow_mut();
        let Some(watch) = state.watch.as_mut() else {
            return Poll::Ready(None);
        };
        match Pin::new(watch).poll_next(cx) {
            Poll::Ready(item) => Poll::Ready(item),
            Poll::Pending => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

#[wasm_bindgen]
impl WatchHandle {
    /// The next event; `undefined` once the watch ended or was closed.
    pub fn next(&self) -> js_sys::Promise {
        let next = NextEvent(self.inner.clone());
        let store = self.store.clone();
        let state = self.inner.clone();
        promise(async move {
            match next.await {
                None => Ok(JsValue::UNDEFINED),
                Some(Ok(e)) => Ok(js::event(&e, store.is_pending_rev(e.rev))),
                Some(Err(e)) => {
                    state.borrow_mut().watch = None;
                    Err(JsError::from(e))
                }
            }
        })
    }

    /// Ends the watch; a pending `next()` resolves with `undefined`.
    pub fn close(&self) {
        let mut state = self.inner.borrow_mut();
        state.watch = None;
        if let Some(w) = state.waker.take() {
            w.wake();
        }
    }
}
