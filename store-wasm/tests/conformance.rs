#![cfg(target_arch = "wasm32")]
//! The store-core conformance suite against [`IdbStore`], in a browser:
//! every case opens its stores in fresh IndexedDB databases.

use std::cell::Cell;

use wasm_bindgen_test::wasm_bindgen_test_configure;
use zestor::IdbStore;

wasm_bindgen_test_configure!(run_in_browser);

thread_local! {
    static OPENED: Cell<u32> = const { Cell::new(0) };
}

/// A database name no other store of this run (or an earlier run in the
/// same browser profile) uses.
fn fresh_name() -> String {
    let n = OPENED.with(|c| {
        let n = c.get();
        c.set(n + 1);
        n
    });
    let suffix = (js_sys::Math::random() * 2f64.powi(48)) as u64;
    format!("zestor-conformance-{n}-{suffix:012x}")
}

store_core::conformance_suite!(
    test: wasm_bindgen_test::wasm_bindgen_test,
    open: |options| async move {
        IdbStore::open(&fresh_name(), options, None)
            .await
            .expect("open a fresh IdbStore")
    },
);
