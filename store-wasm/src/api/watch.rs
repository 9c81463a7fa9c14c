//! `WatchHandle`: the pull side of `watchIter`.

use super::*;

pub(super) struct HandleState {
    pub(super) watch: Option<Watch<Value>>,
    pub(super) waker: Option<Waker>,
}

/// The pull side of `watchIter`: one `next()` at a time, so the watch's
/// buffer (and its overflow) applies to a slow consumer.
#[wasm_bindgen(skip_typescript)]
pub struct WatchHandle {
    pub(super) inner: Rc<RefCell<HandleState>>,
    pub(super) store: IdbStore,
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
