//! Several tabs on one store: a Web Lock elects the tab that holds the
//! connection, a `BroadcastChannel` carries what each tab must tell the
//! others. What the tabs say and do about it is the replica's rule
//! (`store_core::sync::replica`); this module only carries it.
//!
//! Every tab persists its own writes (IndexedDB serializes transactions
//! across tabs) and posts the ops it queued; the leader sends them to the
//! server, persists what the server says and posts it, and every other tab
//! mirrors that into its session and rebases its view. A tab joins the
//! channel before it reads IndexedDB (what the leader posts during the read
//! is mirrored over it once open) and then posts the queue it read, in case
//! a tab persisted ops and closed before posting them. When the leader
//! closes, its lock passes to a waiting tab, which reloads the queue from
//! IndexedDB, connects and says so; every other tab then posts the ops it
//! still holds pending, in case the old leader had them answered without
//! telling. Ops in flight are re-sent with their op ids, so the server
//! applies each once and answers the rest from its record.
//!
//! Where the Web Locks API is missing (an insecure context), every tab leads
//! with its own connection; the server's op-id idempotency keeps that
//! correct, only less frugal.

use std::cell::RefCell;
use std::rc::Rc;

use store_core::sync::replica::TabMessage;
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{BroadcastChannel, MessageEvent};

/// The channel to the other tabs of one store.
pub(crate) struct Channel {
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

impl Channel {
    /// Joins the channel of store `name`; `None` where `BroadcastChannel`
    /// is missing.
    pub(crate) fn join(name: &str, on_message: impl Fn(TabMessage) + 'static) -> Option<Channel> {
        let channel = BroadcastChannel::new(&format!("zestor:{name}")).ok()?;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |m: MessageEvent| {
            let Some(text) = m.data().as_string() else { return };
            match serde_json::from_str(&text) {
                Ok(message) => on_message(message),
                Err(e) => web_sys::console::warn_1(&format!("zestor: an unreadable tab message: {e}").into()),
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Some(Channel {
            channel,
            _on_message: on_message,
        })
    }

    pub(crate) fn post(&self, message: &TabMessage) {
        if let Ok(text) = serde_json::to_string(message) {
            let _ = self.channel.post_message(&JsValue::from_str(&text));
        }
    }
}

impl Drop for Channel {
    fn drop(&mut self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

/// A held (or awaited) Web Lock; dropping it releases the lock or gives up
/// waiting for it.
pub(crate) struct Lock {
    release: Rc<RefCell<Option<js_sys::Function>>>,
    abort: Option<web_sys::AbortController>,
}

impl Drop for Lock {
    fn drop(&mut self) {
        if let Some(release) = self.release.borrow_mut().take() {
            let _ = release.call0(&JsValue::NULL);
        }
        if let Some(abort) = &self.abort {
            abort.abort();
        }
    }
}

fn lock_manager() -> Option<JsValue> {
    let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).ok()?;
    let locks = js_sys::Reflect::get(&navigator, &"locks".into()).ok()?;
    (!locks.is_undefined() && !locks.is_null()).then_some(locks)
}

/// Requests the Web Lock `name`. `on_granted` runs once it is held (at
/// once where Web Locks are missing); with `if_available`, it runs with
/// `false` instead of waiting when another tab holds the lock.
pub(crate) fn request(name: &str, if_available: bool, on_granted: impl FnOnce(bool) + 'static) -> Lock {
    let release: Rc<RefCell<Option<js_sys::Function>>> = Rc::new(RefCell::new(None));
    let Some(locks) = lock_manager() else {
        on_granted(true);
        return Lock { release, abort: None };
    };
    let abort = (!if_available)
        .then(|| web_sys::AbortController::new().ok())
        .flatten();
    let options = js_sys::Object::new();
    let _ = js_sys::Reflect::set(&options, &"ifAvailable".into(), &JsValue::from_bool(if_available));
    if let Some(a) = &abort {
        let _ = js_sys::Reflect::set(&options, &"signal".into(), &a.signal());
    }
    let held = release.clone();
    let mut on_granted = Some(on_granted);
    let callback = Closure::<dyn FnMut(JsValue) -> JsValue>::new(move |lock: JsValue| {
        let granted = !lock.is_null();
        if let Some(f) = on_granted.take() {
            f(granted);
        }
        if !granted {
            return JsValue::UNDEFINED;
        }
        // Held until `release` resolves this promise.
        let mut resolve_fn = None;
        let promise = js_sys::Promise::new(&mut |resolve, _| resolve_fn = Some(resolve));
        *held.borrow_mut() = resolve_fn;
        promise.into()
    });
    let request: Option<js_sys::Function> = js_sys::Reflect::get(&locks, &"request".into())
        .ok()
        .and_then(|f| f.dyn_into().ok());
    if let Some(request) = request {
        let args = js_sys::Array::of3(&JsValue::from_str(name), &options, callback.as_ref());
        if let Ok(p) = request.apply(&locks, &args)
            && let Ok(p) = p.dyn_into::<js_sys::Promise>()
        {
            // An aborted wait rejects; nothing to report.
            let ignore = Closure::<dyn FnMut(JsValue)>::new(|_| {});
            let _ = p.catch(&ignore);
            ignore.forget();
        }
    }
    callback.forget();
    Lock { release, abort }
}
