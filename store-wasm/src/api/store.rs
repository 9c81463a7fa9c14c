//! The `ZestorStore` class and `open`, which makes one.

use super::watch::{HandleState, WatchHandle};
use super::*;

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
        let Ok(replica) = self.store.replica() else {
            // Called from inside a write's callback: what it was before.
            return js_sys::JSON::parse(&self.last_status.borrow()).unwrap_or(JsValue::NULL);
        };
        let (connection, error) = match self.driver.borrow().as_ref() {
            Some(d) => (d.connection().as_str().to_owned(), d.error()),
            None if !replica.is_synced() => ("local".to_owned(), None),
            // Another tab holds the connection: show what it posted.
            None => replica.leader_status().map_or_else(
                || ("connecting".to_owned(), None),
                |s| (s.connection.clone(), s.error.clone()),
            ),
        };
        let (pending, cursor) = (replica.pending_count(), replica.synced_rev());
        set(&object, "connection", &JsValue::from_str(&connection));
        set(&object, "pending", &JsValue::from_f64(pending as f64));
        let cursor = cursor.map_or(JsValue::NULL, |c| JsValue::from_f64(c as f64));
        set(&object, "lastSyncedRev", &cursor);
        set(&object, "leader", &JsValue::from_bool(leader));
        let rights = match replica.rights() {
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
            let rights = self
                .store
                .replica()
                .ok()
                .and_then(|r| r.session().and_then(|s| s.rights()));
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
                Notice::Status => {}
                Notice::Answered(Answered::Acked { ack, kind, key }) => {
                    let ack = ack_js(&ack);
                    set(&ack, "kind", &JsValue::from_str(&kind));
                    set(&ack, "key", &JsValue::from_str(&key));
                    self.listeners.emit("acked", &ack);
                }
                Notice::Answered(Answered::Rejected { op, code, message }) => {
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

/// A store, as JavaScript sees it (see `ZestorStore` in `npm/zestor.d.ts`).
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
    let sync: Option<(SyncIn, JsValue)> = if sync_in.is_undefined() || sync_in.is_null() {
        None
    } else {
        let s = SyncIn::read(&sync_in)?;
        let token = get(&sync_in, "token");
        if !token.is_string() && !token.is_function() {
            return Err(JsError::invalid("sync.token must be a string or a function"));
        }
        Some((s, token))
    };
    let store_opts = store_options(&options)?;
    let setup = sync.as_ref().map(|(s, token)| SyncSetup {
        namespace: s.namespace.clone(),
        // A function's token is asked for before each connection.
        token: token.as_string().unwrap_or_default(),
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
    if let Some((s, token)) = sync {
        let options = DriverOptions {
            url: s.url,
            token: token.dyn_into().ok(),
            backoff_min_ms: s.backoff_min_ms.unwrap_or(250.0).max(10.0),
            backoff_max_ms: s.backoff_max_ms.unwrap_or(30_000.0).max(10.0),
        };
        if leading {
            // Read the storage again before leading, as a tab taking over
            // does: the read of the open may predate what a leader that just
            // closed persisted last.
            store.reload().await?;
            shared.lead(options);
        } else {
            // Another tab syncs; take over when it lets go of the lock,
            // after reading what it left in IndexedDB.
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

impl JsStore {
    fn store(&self) -> &IdbStore {
        &self.shared.store
    }

    fn check_writable(&self) -> JsResult<()> {
        if self
            .store()
            .replica()
            .is_ok_and(|r| r.rights() == Some(Rights::Read))
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
    /// `get(kind, key)`: the entry, or `undefined` (see `npm/zestor.d.ts`).
    pub fn get(&self, kind: JsValue, key: JsValue) -> Result<JsValue, JsValue> {
        let (kind, key) = (kind_arg(&kind)?, string_arg(&key, "key")?);
        let engine = self.store().engine().map_err(JsError::from)?;
        Ok(match engine.get(&kind, &key).map_err(JsError::from)? {
            Some(entry) => js::entry(&entry, self.store().is_pending(&kind, &key)),
            None => JsValue::UNDEFINED,
        })
    }

    /// `list(kind, filter?)`: the entries sorted by key, optionally filtered.
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

    /// `count(kind)`: how many entries the kind holds.
    pub fn count(&self, kind: JsValue) -> Result<f64, JsValue> {
        let kind = kind_arg(&kind)?;
        let engine = self.store().engine().map_err(JsError::from)?;
        Ok(engine.count(&kind).map_err(JsError::from)? as f64)
    }

    /// `keys(kind)`: the kind's keys, sorted.
    pub fn keys(&self, kind: JsValue) -> Result<js_sys::Array, JsValue> {
        let all = self.collect(&kind, false, |out, key, _, _| write(out, key))?;
        Ok(all.unchecked_into())
    }

    /// `values(kind)`: the kind's values, sorted by key.
    pub fn values(&self, kind: JsValue) -> Result<js_sys::Array, JsValue> {
        let all = self.collect(&kind, false, |out, _, entry, _| write(out, entry.value))?;
        Ok(all.unchecked_into())
    }

    /// `getAll(kind)`: the kind's entries by key.
    #[wasm_bindgen(js_name = getAll)]
    pub fn get_all(&self, kind: JsValue) -> Result<js_sys::Object, JsValue> {
        let all = self.collect(&kind, true, |out, key, entry, pending| {
            write(out, key);
            out.push(b':');
            write(out, &js::EntryOut::new(entry, pending));
        })?;
        Ok(all.unchecked_into())
    }

    /// `kinds()`: every kind that holds an entry, sorted.
    pub fn kinds(&self) -> Result<js_sys::Array, JsValue> {
        let engine = self.store().engine().map_err(JsError::from)?;
        let kinds = engine.kinds().map_err(JsError::from)?;
        Ok(kinds.into_iter().map(JsValue::from_str).collect())
    }

    /// `rev()`: the store's revision.
    pub fn rev(&self) -> Result<f64, JsValue> {
        let engine = self.store().engine().map_err(JsError::from)?;
        if engine.is_closed() {
            return Err(JsError::from(Error::Closed).into());
        }
        Ok(engine.rev() as f64)
    }

    /// `set(kind, key, value, { ifVersion? })`: resolves once durable in IndexedDB.
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

    /// `setMany(kind, items)`: all or nothing, in key order.
    #[wasm_bindgen(js_name = setMany)]
    pub fn set_many(&self, kind: JsValue, items: JsValue) -> js_sys::Promise {
        let op = (|| {
            let kind = kind_arg(&kind)?;
            let out = js::items_json(&items)?;
            Ok(LocalOp::SetMany { kind, items: out })
        })();
        self.submit(op)
    }

    /// `setFn(kind, key, fn, { ifVersion? })`: read-modify-write of an existing key.
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

    /// `patch(kind, key, partial, { ifVersion? })`: a JSON Merge Patch of an
    /// existing key; a synced store sends the patch.
    pub fn patch(&self, kind: JsValue, key: JsValue, partial: JsValue, options: JsValue) -> js_sys::Promise {
        let op = (|| {
            Ok(LocalOp::Patch {
                kind: kind_arg(&kind)?,
                key: string_arg(&key, "key")?,
                patch: to_json(&partial, "partial")?,
                if_version: write_options(&options)?,
            })
        })();
        self.submit(op)
    }

    /// `delete(kind, key, { ifVersion? })`: the entry deleted, or `null`.
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

    /// `confirmed(opId)`: the server's answer to an op.
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

    /// `watch(kind, options, callback)`: returns the unsubscribe function.
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

    /// `watchIter(kind, options)`: an async iterator of events.
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

    /// `status()`: the connection, pending ops and last synced revision.
    pub fn status(&self) -> JsValue {
        self.shared.status()
    }

    /// `on(event, callback)`: listens to `status`, `acked` or `rejected`; returns the unsubscribe function.
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

    /// `close()`: pending writes finish, then every call fails with `closed`.
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
