//! The conformance suite against the SQLite backend: every case on a fresh
//! database file.

mod support;

use sync_server::backend::sqlite::{self, SqliteOptions};

store_core::conformance_suite!(
    block_on: futures_executor::block_on,
    open: |options| async move {
        sqlite::open(SqliteOptions::new(support::fresh_db("conformance"), "ns"), options).expect("open sqlite")
    },
);
