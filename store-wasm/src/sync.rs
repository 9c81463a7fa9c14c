//! The connection driver: moves a synced store's [`ClientSession`] bytes
//! over a browser `WebSocket`.
//!
//! It sends what the session yields, feeds it every frame, drives its
//! heartbeat timer and reconnects with jittered exponential backoff. The
//! browser's `offline` event drops the socket at once and `online` retries
//! at once. With a `token` function, each attempt first asks it for the
//! token to send; one that fails counts as a failed attempt. A session
//! whose token expires or is revoked shows the error and reconnects (with a
//! fresh token, if a function gives one). A refusal at `hello` that
//! retrying cannot fix (bad token, forbidden namespace, protocol mismatch)
//! stops the driver with the error in the status. Everything the session
//! learns is handed to the store's writer ([`IdbStore::sync_changed`]),
//! which persists it before the app hears of it.
//!

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};

use store_core::sync::ErrorCode;
use store_core::sync::reconnect::{self, Backoff, Next};
use store_core::sync::session::{ClientEvent, ClientSession};
use wasm_bindgen::JsCast;
use wasm_bindgen::prelude::*;
use web_sys::{CloseEvent, MessageEvent, WebSocket};

use crate::js::Code;
use crate::store::IdbStore;

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connection {
    Offline,
    Connecting,
    Online,
}

impl Connection {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Connection::Offline => "offline",
            Connection::Connecting => "connecting",
            Connection::Online => "online",
        }
    }
}

/// How to reach the server.
pub(crate) struct DriverOptions {
    pub url: String,
    /// Called before each attempt for the token to send (else the one the
    /// session was opened with is sent).
    pub token: Option<js_sys::Function>,
    pub backoff_min_ms: f64,
    pub backoff_max_ms: f64,
}

struct Socket {
    ws: WebSocket,
    _on_open: Closure<dyn FnMut()>,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
    _on_close: Closure<dyn FnMut(CloseEvent)>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.ws.set_onopen(None);
        self.ws.set_onmessage(None);
        self.ws.set_onclose(None);
        self.ws.set_onerror(None);
        let _ = self.ws.close();
    }
}

type Listener = (String, Closure<dyn FnMut()>);

struct Inner {
    store: IdbStore,
    options: DriverOptions,
    socket: RefCell<Option<Socket>>,
    connection: Cell<Connection>,
    error: RefCell<Option<(String, String)>>,
    backoff: RefCell<Backoff>,
    timer: Cell<Option<i32>>,
    retry: Cell<Option<i32>>,
    stopped: Cell<bool>,
    /// The `token` function's answer is awaited.
    asking: Cell<bool>,
    on_change: Box<dyn Fn()>,
    /// The `online`/`offline` listeners, removed by [`Driver::stop`].
    _online: RefCell<Vec<Listener>>,
}

/// The connection of one synced store.
#[derive(Clone)]
pub(crate) struct Driver {
    inner: Rc<Inner>,
}

fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

fn global() -> web_sys::EventTarget {
    js_sys::global().unchecked_into()
}

fn set_timeout(f: &Closure<dyn FnMut()>, ms: f64) -> Option<i32> {
    let global = js_sys::global();
    let set: js_sys::Function = js_sys::Reflect::get(&global, &"setTimeout".into())
        .ok()?
        .dyn_into()
        .ok()?;
    set.call2(&global, f.as_ref(), &JsValue::from_f64(ms))
        .ok()?
        .as_f64()
        .map(|h| h as i32)
}

fn clear_timeout(handle: Option<i32>) {
    let Some(handle) = handle else { return };
    let global = js_sys::global();
    if let Ok(clear) = js_sys::Reflect::get(&global, &"clearTimeout".into())
        && let Ok(clear) = clear.dyn_into::<js_sys::Function>()
    {
        let _ = clear.call1(&global, &JsValue::from(handle));
    }
}

/// Runs `f` on the driver after `ms`, unless it was dropped meanwhile.
fn after(driver: &Weak<Inner>, ms: f64, f: fn(&Driver)) -> Option<i32> {
    let weak = driver.clone();
    let closure = Closure::once(move || {
        if let Some(inner) = weak.upgrade() {
            f(&Driver { inner });
        }
    });
    let handle = set_timeout(&closure, ms);
    closure.forget();
    handle
}

impl Driver {
    /// Starts connecting `store` (which must be synced); `on_change` is
    /// called whenever the status may have changed.
    pub(crate) fn start(store: IdbStore, options: DriverOptions, on_change: impl Fn() + 'static) -> Driver {
        let backoff = Backoff::new(options.backoff_min_ms as u64, options.backoff_max_ms as u64);
        let driver = Driver {
            inner: Rc::new(Inner {
                store,
                options,
                socket: RefCell::new(None),
                connection: Cell::new(Connection::Offline),
                error: RefCell::new(None),
                backoff: RefCell::new(backoff),
                timer: Cell::new(None),
                retry: Cell::new(None),
                stopped: Cell::new(false),
                asking: Cell::new(false),
                on_change: Box::new(on_change),
                _online: RefCell::new(Vec::new()),
            }),
        };
        let mut listeners = Vec::new();
        for (event, f) in [
            ("online", Driver::went_online as fn(&Driver)),
            ("offline", Driver::went_offline),
        ] {
            let weak = Rc::downgrade(&driver.inner);
            let closure = Closure::<dyn FnMut()>::new(move || {
                if let Some(inner) = weak.upgrade() {
                    f(&Driver { inner });
                }
            });
            let _ = global().add_event_listener_with_callback(event, closure.as_ref().unchecked_ref());
            listeners.push((event.to_owned(), closure));
        }
        *driver.inner._online.borrow_mut() = listeners;
        driver.connect();
        driver
    }

    pub(crate) fn connection(&self) -> Connection {
        self.inner.connection.get()
    }

    pub(crate) fn error(&self) -> Option<(String, String)> {
        self.inner.error.borrow().clone()
    }

    fn set_connection(&self, c: Connection) {
        if self.inner.connection.replace(c) != c {
            (self.inner.on_change)();
        }
    }

    fn set_error(&self, code: Code, message: &str) {
        *self.inner.error.borrow_mut() = Some((code.as_str().into_owned(), message.to_owned()));
        (self.inner.on_change)();
    }

    fn browser_offline() -> bool {
        let navigator = js_sys::Reflect::get(&js_sys::global(), &"navigator".into()).unwrap_or(JsValue::NULL);
        js_sys::Reflect::get(&navigator, &"onLine".into())
            .ok()
            .and_then(|v| v.as_bool())
            == Some(false)
    }

    /// Whether to connect now: not once stopped or closed, nor with a
    /// socket already, nor while the browser is offline (shown as such).
    fn may_connect(&self) -> bool {
        let inner = &self.inner;
        if inner.stopped.get() || inner.socket.borrow().is_some() || inner.store.is_closed() {
            return false;
        }
        clear_timeout(inner.retry.take());
        if Driver::browser_offline() {
            self.set_connection(Connection::Offline);
            return false;
        }
        true
    }

    /// Connects, asking the `token` function first if there is one.
    fn connect(&self) {
        let Some(token) = &self.inner.options.token else {
            return self.open();
        };
        if self.inner.asking.get() || !self.may_connect() {
            return;
        }
        self.inner.asking.set(true);
        self.set_connection(Connection::Connecting);
        let answer = match token.call0(&JsValue::NULL) {
            Ok(v) => js_sys::Promise::resolve(&v),
            Err(e) => js_sys::Promise::reject(&e),
        };
        let weak = Rc::downgrade(&self.inner);
        wasm_bindgen_futures::spawn_local(async move {
            let answer = wasm_bindgen_futures::JsFuture::from(answer).await;
            let Some(inner) = weak.upgrade() else { return };
            let driver = Driver { inner };
            driver.inner.asking.set(false);
            let failed = match answer.map(|v| v.as_string()) {
                Ok(Some(token)) => {
                    driver.with_session(|s| s.set_token(token));
                    // Stopped, closed or offline meanwhile: nothing opens.
                    return driver.open();
                }
                Ok(None) => "the token function returned no string".to_owned(),
                Err(e) => format!("the token function failed: {}", crate::js::describe(&e)),
            };
            if !driver.inner.stopped.get() {
                driver.set_error(Code::TokenFailed, &failed);
                driver.set_connection(Connection::Offline);
                driver.schedule_retry();
            }
        });
    }

    /// Opens the socket.
    fn open(&self) {
        if !self.may_connect() {
            return;
        }
        let inner = &self.inner;
        let ws = match WebSocket::new(&inner.options.url) {
            Ok(ws) => ws,
            Err(e) => {
                // A malformed URL: retrying cannot help.
                self.set_error(Code::InvalidArgument, &crate::js::describe(&e));
                inner.stopped.set(true);
                return;
            }
        };
        let weak = Rc::downgrade(inner);
        let on_open = {
            let weak = weak.clone();
            Closure::<dyn FnMut()>::new(move || {
                if let Some(inner) = weak.upgrade() {
                    let driver = Driver { inner };
                    driver.with_session(|s| s.connect(now_ms()));
                    driver.pump();
                }
            })
        };
        let on_message = {
            let weak = weak.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |m: MessageEvent| {
                if let Some(inner) = weak.upgrade() {
                    Driver { inner }.received(m);
                }
            })
        };
        let on_close = Closure::<dyn FnMut(CloseEvent)>::new(move |e: CloseEvent| {
            if let Some(inner) = weak.upgrade() {
                Driver { inner }.closed(Some(e.code()), &e.reason());
            }
        });
        ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
        ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
        *inner.socket.borrow_mut() = Some(Socket {
            ws,
            _on_open: on_open,
            _on_message: on_message,
            _on_close: on_close,
        });
        self.set_connection(Connection::Connecting);
    }

    fn with_session<R>(&self, f: impl FnOnce(&mut ClientSession) -> R) -> Option<R> {
        let mut replica = self.inner.store.replica_mut().ok()?;
        replica.session_mut().map(f)
    }

    fn received(&self, m: MessageEvent) {
        let Some(text) = m.data().as_string() else {
            self.set_error(
                Code::Server(ErrorCode::BadMessage),
                "the server sent a binary frame",
            );
            self.drop_socket();
            return;
        };
        let handled = self.with_session(|s| s.handle_frame(text.as_bytes(), now_ms()));
        if let Some(Err(e)) = handled {
            self.set_error(Code::Server(e.code), &e.to_string());
            self.drop_socket();
            return;
        }
        self.pump();
    }

    /// Drains the session's events and frames and re-arms its timer.
    fn pump(&self) {
        let mut fatal: Option<(Code, String, bool)> = None;
        let mut reconnect_now = false;
        let mut welcomed = false;
        let mut news = false;
        if let Ok(mut replica) = self.inner.store.replica_mut() {
            while let Some(event) = replica.poll_event() {
                let next = reconnect::after_event(&event);
                match event {
                    ClientEvent::Connected { .. } => welcomed = true,
                    ClientEvent::Error(e) => {
                        fatal = Some((Code::Server(e.code), e.message, next == Next::Stop))
                    }
                    ClientEvent::Retry { code, message, .. } => {
                        fatal = Some((Code::Server(code), message, false))
                    }
                    // Shown until the next session is welcomed.
                    ClientEvent::AccessLost(e) => fatal = Some((Code::Server(e.code), e.message, false)),
                    _ => {}
                }
                reconnect_now |= next != Next::Keep;
            }
            if let (Some(socket), Some(session)) =
                (self.inner.socket.borrow().as_ref(), replica.session_mut())
            {
                let now = now_ms();
                while let Some(frame) = session.poll_transmit_frame(now) {
                    if socket.ws.send_with_str(&frame).is_err() {
                        break;
                    }
                }
            }
            news = replica.has_news();
        }
        if welcomed {
            self.inner.backoff.borrow_mut().reset();
            *self.inner.error.borrow_mut() = None;
            self.set_connection(Connection::Online);
        }
        if let Some((code, message, stop)) = fatal {
            self.set_error(code, &message);
            if stop {
                self.inner.stopped.set(true);
            }
        }
        if news {
            self.inner.store.sync_changed();
        }
        if reconnect_now {
            self.drop_socket();
            return;
        }
        self.arm_timer();
        (self.inner.on_change)();
    }

    /// Sends the ops local writes just queued.
    pub(crate) fn flush(&self) {
        self.pump();
    }

    fn arm_timer(&self) {
        clear_timeout(self.inner.timer.take());
        let Some(deadline) = self.with_session(|s| s.poll_timeout()).flatten() else {
            return;
        };
        let wait = deadline.saturating_sub(now_ms()) as f64;
        let handle = after(&Rc::downgrade(&self.inner), wait, |d| {
            d.inner.timer.set(None);
            d.with_session(|s| s.handle_timeout(now_ms()));
            d.pump();
        });
        self.inner.timer.set(handle);
    }

    fn closed(&self, code: Option<u16>, reason: &str) {
        *self.inner.socket.borrow_mut() = None;
        self.with_session(|s| s.disconnected());
        clear_timeout(self.inner.timer.take());
        if let Some(code) = code
            && !reconnect::retry_after_close(Some(code))
        {
            if self.inner.error.borrow().is_none() {
                self.set_error(Code::ClosedWith(code), reason);
            }
            self.inner.stopped.set(true);
        }
        self.set_connection(Connection::Offline);
        self.schedule_retry();
    }

    fn drop_socket(&self) {
        let socket = self.inner.socket.borrow_mut().take();
        drop(socket);
        self.closed(None, "");
    }

    fn schedule_retry(&self) {
        let inner = &self.inner;
        if inner.stopped.get() || inner.store.is_closed() || Driver::browser_offline() {
            return;
        }
        let delay = inner.backoff.borrow_mut().next_delay_ms(js_sys::Math::random()) as f64;
        clear_timeout(inner.retry.take());
        inner.retry.set(after(&Rc::downgrade(inner), delay, |d| {
            d.inner.retry.set(None);
            d.connect();
        }));
    }

    fn went_online(&self) {
        self.inner.backoff.borrow_mut().reset();
        self.connect();
    }

    fn went_offline(&self) {
        if self.inner.socket.borrow().is_some() {
            self.drop_socket();
        }
    }

    /// Closes the connection for good.
    pub(crate) fn stop(&self) {
        self.inner.stopped.set(true);
        clear_timeout(self.inner.timer.take());
        clear_timeout(self.inner.retry.take());
        for (event, closure) in self.inner._online.borrow_mut().drain(..) {
            let _ = global().remove_event_listener_with_callback(&event, closure.as_ref().unchecked_ref());
        }
        let socket = self.inner.socket.borrow_mut().take();
        drop(socket);
        self.with_session(|s| s.disconnected());
        self.set_connection(Connection::Offline);
    }
}
