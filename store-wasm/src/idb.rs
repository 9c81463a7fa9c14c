//! The IndexedDB layer: one database per store, three object stores.
//!
//! - `entries`: key `[kind, key]`, value a JSON string of [`StoredEntry`]:
//!   the store's entries (local store) or the server-confirmed entries
//!   (synced store).
//! - `pending`: key the op's place in the queue (a number from the store's
//!   key generator, so places are unique and ordered across tabs), value a
//!   JSON string of the protocol `Op`: ops written here and not yet
//!   answered.
//! - `meta`: key a name, value a JSON string: the store's head revision
//!   (a local store writes it only when needed: see `IdbStore`), for a
//!   synced store the sync cursor and the server's schemas; the database's
//!   client id ([`CLIENT_ID`]), set when the database is created.
//!
//! Values are stored as JSON text rather than structured-clone objects: it
//! is what the engine already holds, and cloning one string is cheaper than
//! cloning an object graph.
//!
//! Every write is one IndexedDB transaction whose requests are all issued
//! before anything is awaited, so nothing but IndexedDB ever runs inside
//! it. Reads at open are issued together in one read-only transaction.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures_channel::oneshot;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{IdbDatabase, IdbFactory, IdbObjectStore, IdbRequest, IdbTransaction, IdbTransactionMode};

use store_core::sync::Op;
use store_core::sync::replica::{Persisted, Plan};
use store_core::{Entry, Error};

use crate::js::{Code, JsError, JsResult, describe};

const VERSION: u32 = 1;
// The object stores' names (also spelled out in `issue` below).
pub(crate) const ENTRIES: &str = "entries";
pub(crate) const PENDING: &str = "pending";
pub(crate) const META: &str = "meta";
/// The `meta` record holding the database's client id (a JSON string): the
/// id a synced store says `hello` with, the same in every tab and after
/// every reload, since the server recognizes a re-sent op by client id and
/// op id.
const CLIENT_ID: &str = "client_id";

/// `name` and 53 random bits: a client id, or a prefix for op ids unique to
/// one open store.
pub(crate) fn unique_id(name: &str) -> String {
    format!("{name}-{:016x}", (js_sys::Math::random() * 2f64.powi(53)) as u64)
}

/// An entry as it is persisted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredEntry {
    pub value: Value,
    pub version: u64,
    pub rev: u64,
}

/// A [`StoredEntry`] to write, borrowing its value (the same JSON text).
#[derive(Serialize)]
pub(crate) struct StoredRef<'a> {
    pub value: &'a Value,
    pub version: u64,
    pub rev: u64,
}

/// An open database.
pub(crate) struct Db {
    db: IdbDatabase,
    /// Set when the database was closed under us (another tab upgraded or
    /// deleted it).
    lost: Rc<Cell<bool>>,
    _on_version_change: Closure<dyn FnMut()>,
}

/// Everything a store reads at open.
pub(crate) struct Loaded {
    pub entries: Vec<(String, String, StoredEntry)>,
    /// `(place in the queue, op JSON)`, in queue order.
    pub pending: Vec<(f64, String)>,
    pub meta: Vec<(String, String)>,
}

/// The `meta` records of a store's head revision, a synced store's cursor
/// (`{"cursor": n}`) and the server's schemas.
const HEAD: &str = "head";
const CURSOR: &str = "cursor";
const SCHEMAS: &str = "schemas";

#[derive(Serialize, Deserialize)]
struct CursorMeta {
    cursor: Option<u64>,
}

fn encoding(what: &str, e: serde_json::Error) -> JsError {
    JsError::storage(format!("{what} does not encode: {e}"))
}

impl Loaded {
    fn meta(&self, name: &str) -> Option<&str> {
        self.meta.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The database's client id, if it has one.
    pub(crate) fn client_id(&self) -> Option<String> {
        serde_json::from_str(self.meta(CLIENT_ID)?).ok()
    }

    /// What earlier plans persisted, for the replica. A cursor or schemas
    /// that do not decode read as absent (the server sends everything
    /// again); an entry or an op that does not decode is an error.
    pub(crate) fn persisted(self) -> store_core::Result<Persisted> {
        let mut pending = Vec::with_capacity(self.pending.len());
        for (place, text) in &self.pending {
            let op: Op = serde_json::from_str(text)
                .map_err(|e| Error::Storage(format!("a pending op does not decode: {e}").into()))?;
            pending.push((*place, op));
        }
        let cursor = self
            .meta(CURSOR)
            .and_then(|c| serde_json::from_str::<CursorMeta>(c).ok())
            .and_then(|c| c.cursor);
        Ok(Persisted {
            head: self.meta(HEAD).and_then(|h| h.parse().ok()).unwrap_or(0),
            cursor,
            schemas: self.meta(SCHEMAS).and_then(|s| serde_json::from_str(s).ok()),
            // Op ids start over under a prefix new to this open store.
            next_op_seq: 0,
            entries: self
                .entries
                .into_iter()
                .map(|(kind, key, e)| {
                    let entry = Entry {
                        value: e.value,
                        version: e.version,
                        rev: e.rev,
                    };
                    (kind, key, entry)
                })
                .collect(),
            pending,
        })
    }
}

impl Batch {
    /// The writes of a replica's plan.
    pub(crate) fn from_plan(plan: &Plan) -> JsResult<Batch> {
        let mut batch = Batch {
            clear_entries: plan.clear_entries,
            delete_entries: plan.delete_entries.clone(),
            delete_pending: plan.delete_pending.clone(),
            ..Batch::default()
        };
        for (kind, key, e) in &plan.put_entries {
            let stored = StoredRef {
                value: &e.value,
                version: e.version,
                rev: e.rev,
            };
            let text = serde_json::to_string(&stored).map_err(|e| encoding("an entry", e))?;
            batch.put_entries.push((kind.clone(), key.clone(), text));
        }
        for op in &plan.put_pending {
            let text = serde_json::to_string(op).map_err(|e| encoding("an op", e))?;
            batch.put_pending.push(text);
        }
        if let Some(head) = plan.head {
            batch.put_meta.push((HEAD, head.to_string()));
        }
        if let Some(cursor) = plan.cursor {
            let text =
                serde_json::to_string(&CursorMeta { cursor }).map_err(|e| encoding("the cursor", e))?;
            batch.put_meta.push((CURSOR, text));
        }
        if let Some(schemas) = &plan.schemas {
            let text = serde_json::to_string(schemas).map_err(|e| encoding("the schemas", e))?;
            batch.put_meta.push((SCHEMAS, text));
        }
        Ok(batch)
    }
}

/// The writes of one transaction; handed to [`issue`] as JSON text.
#[derive(Default, Serialize)]
pub(crate) struct Batch {
    pub clear_entries: bool,
    /// `(kind, key, StoredEntry JSON)`.
    pub put_entries: Vec<(String, String, String)>,
    pub delete_entries: Vec<(String, String)>,
    /// Ops to queue (JSON); their places are assigned by IndexedDB.
    pub put_pending: Vec<String>,
    pub delete_pending: Vec<f64>,
    pub put_meta: Vec<(&'static str, String)>,
}

#[wasm_bindgen(inline_js = r#"
// Issues every request of a batch (the JSON text of `Batch`) on `tx`, in
// one call from WebAssembly; returns the requests queuing ops, whose
// results are their places. Throws what a request throws.
export function issue(tx, text) {
  const b = JSON.parse(text);
  const queued = [];
  if (b.clear_entries || b.put_entries.length || b.delete_entries.length) {
    const entries = tx.objectStore('entries');
    if (b.clear_entries) entries.clear();
    const deletes = b.delete_entries;
    for (let i = 0; i < deletes.length; i++) entries.delete([deletes[i][0], deletes[i][1]]);
    const puts = b.put_entries;
    for (let i = 0; i < puts.length; i++) entries.put(puts[i][2], [puts[i][0], puts[i][1]]);
  }
  if (b.put_pending.length || b.delete_pending.length) {
    const pending = tx.objectStore('pending');
    for (let i = 0; i < b.delete_pending.length; i++) pending.delete(b.delete_pending[i]);
    for (let i = 0; i < b.put_pending.length; i++) queued.push(pending.add(b.put_pending[i]));
  }
  if (b.put_meta.length) {
    const meta = tx.objectStore('meta');
    for (let i = 0; i < b.put_meta.length; i++) meta.put(b.put_meta[i][1], b.put_meta[i][0]);
  }
  return queued;
}
// The results of `issue`'s requests once they succeeded (NaN for one that
// is not a number).
export function places(requests) {
  return Float64Array.from(requests, (r) => (typeof r.result === 'number' ? r.result : NaN));
}
"#)]
extern "C" {
    #[wasm_bindgen(catch)]
    fn issue(tx: &IdbTransaction, batch: &str) -> Result<js_sys::Array, JsValue>;
    fn places(requests: &js_sys::Array) -> js_sys::Float64Array;
}

fn factory() -> JsResult<IdbFactory> {
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &JsValue::from_str("indexedDB"))
        .ok()
        .and_then(|f| f.dyn_into::<IdbFactory>().ok())
        .ok_or_else(|| JsError::storage("IndexedDB is not available here"))
}

fn dom_error(what: &str, e: JsValue) -> JsError {
    JsError::storage(format!("{what}: {}", describe(&e)))
}

/// Resolves when `request` succeeds or fails.
async fn settle(request: &IdbRequest) -> JsResult<JsValue> {
    let (tx, rx) = oneshot::channel::<()>();
    let tx = Rc::new(RefCell::new(Some(tx)));
    let fire = {
        let tx = tx.clone();
        Closure::<dyn FnMut()>::new(move || {
            if let Some(tx) = tx.borrow_mut().take() {
                let _ = tx.send(());
            }
        })
    };
    request.set_onsuccess(Some(fire.as_ref().unchecked_ref()));
    request.set_onerror(Some(fire.as_ref().unchecked_ref()));
    let _ = rx.await;
    request.set_onsuccess(None);
    request.set_onerror(None);
    match request.error() {
        Ok(Some(e)) => Err(JsError::storage(format!("{}: {}", e.name(), e.message()))),
        Ok(None) => request.result().map_err(|e| dom_error("request", e)),
        Err(e) => Err(dom_error("request", e)),
    }
}

/// Resolves when `tx` commits; an abort or error is an `Err`.
async fn finish(tx: &IdbTransaction) -> JsResult<()> {
    let (sender, rx) = oneshot::channel::<bool>();
    let sender = Rc::new(RefCell::new(Some(sender)));
    let on = |ok: bool| {
        let sender = sender.clone();
        Closure::<dyn FnMut()>::new(move || {
            if let Some(s) = sender.borrow_mut().take() {
                let _ = s.send(ok);
            }
        })
    };
    let complete = on(true);
    let failed = on(false);
    tx.set_oncomplete(Some(complete.as_ref().unchecked_ref()));
    tx.set_onabort(Some(failed.as_ref().unchecked_ref()));
    tx.set_onerror(Some(failed.as_ref().unchecked_ref()));
    let ok = rx.await.unwrap_or(false);
    tx.set_oncomplete(None);
    tx.set_onabort(None);
    tx.set_onerror(None);
    if ok {
        Ok(())
    } else {
        let reason = tx
            .error()
            .map(|e| format!("{}: {}", e.name(), e.message()))
            .unwrap_or_else(|| "aborted".to_owned());
        Err(JsError::storage(format!(
            "IndexedDB transaction failed: {reason}"
        )))
    }
}

impl Db {
    /// Opens (or creates) database `name`.
    pub(crate) async fn open(name: &str) -> JsResult<Db> {
        let request = factory()?
            .open_with_u32(name, VERSION)
            .map_err(|e| dom_error("open", e))?;
        let upgrade = {
            let request = request.clone();
            let client_id = Value::String(unique_id(name)).to_string();
            Closure::<dyn FnMut()>::new(move || {
                let Ok(result) = request.result() else { return };
                let db: IdbDatabase = result.unchecked_into();
                let names = db.object_store_names();
                for store in [ENTRIES, PENDING, META] {
                    if !names.contains(store) {
                        // Failing here aborts the upgrade, which fails the open.
                        let created = if store == PENDING {
                            let params = web_sys::IdbObjectStoreParameters::new();
                            params.set_auto_increment(true);
                            db.create_object_store_with_optional_parameters(store, &params)
                        } else {
                            db.create_object_store(store)
                        };
                        // The upgrade runs once, in a transaction no other
                        // connection shares: every tab reads this one id.
                        if let (META, Ok(meta)) = (store, created) {
                            let _ = meta
                                .put_with_key(&JsValue::from_str(&client_id), &JsValue::from_str(CLIENT_ID));
                        }
                    }
                }
            })
        };
        request.set_onupgradeneeded(Some(upgrade.as_ref().unchecked_ref()));
        let blocked = Closure::<dyn FnMut()>::new(|| {
            web_sys::console::warn_1(&JsValue::from_str(
                "zestor: waiting for another tab to close this store's database",
            ));
        });
        request.set_onblocked(Some(blocked.as_ref().unchecked_ref()));
        let result = settle(&request).await;
        request.set_onupgradeneeded(None);
        request.set_onblocked(None);
        let db: IdbDatabase = result?.unchecked_into();
        let lost = Rc::new(Cell::new(false));
        // Another tab wants to upgrade or delete the database: step aside
        // (this store then fails its writes with `closed`).
        let on_version_change = {
            let db = db.clone();
            let lost = lost.clone();
            Closure::<dyn FnMut()>::new(move || {
                lost.set(true);
                db.close();
            })
        };
        db.set_onversionchange(Some(on_version_change.as_ref().unchecked_ref()));
        Ok(Db {
            db,
            lost,
            _on_version_change: on_version_change,
        })
    }

    /// Deletes database `name`.
    pub(crate) async fn delete(name: &str) -> JsResult<()> {
        let request = factory()?
            .delete_database(name)
            .map_err(|e| dom_error("delete", e))?;
        settle(&request).await.map(|_| ())
    }

    pub(crate) fn close(&self) {
        self.db.set_onversionchange(None);
        self.db.close();
    }

    fn transaction(&self, stores: &[&str], mode: IdbTransactionMode) -> JsResult<IdbTransaction> {
        if self.lost.get() {
            return Err(JsError::new(
                Code::Store("closed"),
                "the database was closed by another tab (upgraded or deleted); reopen the store",
            ));
        }
        let names = js_sys::Array::new();
        for s in stores {
            names.push(&JsValue::from_str(s));
        }
        self.db
            .transaction_with_str_sequence_and_mode(&names, mode)
            .map_err(|e| dom_error("transaction", e))
    }

    /// Gives a database created without a client id one.
    pub(crate) async fn put_client_id(&self, id: &str) -> JsResult<()> {
        let text = serde_json::to_string(id).map_err(|e| encoding("the client id", e))?;
        let batch = Batch {
            put_meta: vec![(CLIENT_ID, text)],
            ..Batch::default()
        };
        self.write(&batch).await.map(drop)
    }

    /// Reads everything, in one read-only transaction.
    pub(crate) async fn load(&self) -> JsResult<Loaded> {
        let tx = self.transaction(&[ENTRIES, PENDING, META], IdbTransactionMode::Readonly)?;
        let store = |name| tx.object_store(name).map_err(|e| dom_error("object store", e));
        let (entries, pending, meta) = (store(ENTRIES)?, store(PENDING)?, store(META)?);
        let all = |s: &IdbObjectStore| -> JsResult<(IdbRequest, IdbRequest)> {
            Ok((
                s.get_all_keys().map_err(|e| dom_error("getAllKeys", e))?,
                s.get_all().map_err(|e| dom_error("getAll", e))?,
            ))
        };
        let requests = [all(&entries)?, all(&pending)?, all(&meta)?];
        let mut arrays = Vec::with_capacity(3);
        for (keys, values) in &requests {
            let keys: js_sys::Array = settle(keys).await?.unchecked_into();
            let values: js_sys::Array = settle(values).await?.unchecked_into();
            arrays.push((keys, values));
        }
        finish(&tx).await?;
        let text = |v: JsValue, what: &str| {
            v.as_string()
                .ok_or_else(|| JsError::decode(format!("{what}: not a string record")))
        };
        let (keys, values) = &arrays[0];
        let mut loaded = Loaded {
            entries: Vec::with_capacity(keys.length() as usize),
            pending: Vec::new(),
            meta: Vec::new(),
        };
        for (k, v) in keys.iter().zip(values.iter()) {
            let pair: js_sys::Array = k.unchecked_into();
            let (kind, key) = (pair.get(0).as_string(), pair.get(1).as_string());
            let (Some(kind), Some(key)) = (kind, key) else {
                return Err(JsError::decode("an entry key is not [kind, key]"));
            };
            let stored: StoredEntry = serde_json::from_str(&text(v, "entry")?)
                .map_err(|e| JsError::decode(format!("entry {kind}/{key} does not decode: {e}")))?;
            loaded.entries.push((kind, key, stored));
        }
        let (keys, values) = &arrays[1];
        for (k, v) in keys.iter().zip(values.iter()) {
            let place = k
                .as_f64()
                .ok_or_else(|| JsError::decode("a pending op key is not a number"))?;
            loaded.pending.push((place, text(v, "pending op")?));
        }
        let (keys, values) = &arrays[2];
        for (k, v) in keys.iter().zip(values.iter()) {
            let name = k
                .as_string()
                .ok_or_else(|| JsError::decode("a meta key is not a string"))?;
            loaded.meta.push((name, text(v, "meta")?));
        }
        Ok(loaded)
    }

    /// Writes `batch` in one transaction and resolves once it committed,
    /// with the places IndexedDB gave the queued ops (in `put_pending`
    /// order).
    pub(crate) async fn write(&self, batch: &Batch) -> JsResult<Vec<f64>> {
        let mut names = Vec::with_capacity(3);
        if batch.clear_entries || !batch.put_entries.is_empty() || !batch.delete_entries.is_empty() {
            names.push(ENTRIES);
        }
        if !batch.put_pending.is_empty() || !batch.delete_pending.is_empty() {
            names.push(PENDING);
        }
        if !batch.put_meta.is_empty() {
            names.push(META);
        }
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let text = serde_json::to_string(batch).map_err(|e| JsError::storage(e.to_string()))?;
        let tx = self.transaction(&names, IdbTransactionMode::Readwrite)?;
        let queued = match issue(&tx, &text) {
            Ok(queued) => queued,
            Err(e) => {
                let _ = tx.abort();
                return Err(dom_error("write", e));
            }
        };
        finish(&tx).await?;
        if queued.length() == 0 {
            return Ok(Vec::new());
        }
        let placed = places(&queued).to_vec();
        if placed.iter().any(|p| p.is_nan()) {
            return Err(JsError::storage("IndexedDB gave a queued op no place"));
        }
        Ok(placed)
    }
}
