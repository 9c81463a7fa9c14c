//! The conformance suite against `MemStore`.

use store_core::MemStore;

store_core::conformance_suite!(
    block_on: futures_executor::block_on,
    open: |options| async move { MemStore::new(options) },
);
