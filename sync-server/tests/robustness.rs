//! A bad write fails alone: a panicking function, a value that cannot be
//! encoded or stored, in the middle of a group commit. And a store's watches
//! end when the store goes away.

#[path = "support/pg.rs"]
mod pg;
mod support;

use std::time::Duration;

use futures_executor::block_on;
use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use store_core::{Error, SetOptions, Store, StoreOptions, StoreValue, WatchOptions, Written};
use sync_server::backend::Durable;
use sync_server::backend::postgres::{self, PgOptions};
use sync_server::backend::sqlite::{self, SqliteOptions};

const NONE: SetOptions = SetOptions { if_version: None };

fn open<T: StoreValue>(name: &str) -> Durable<T> {
    sqlite::open(
        SqliteOptions::new(support::fresh_db(name), "ns"),
        StoreOptions::new(),
    )
    .unwrap()
}

/// Keeps the writer busy for a moment, so that what is queued next is
/// committed as one batch.
fn hold_writer<T: StoreValue>(s: &Durable<T>) -> impl Future<Output = store_core::Result<Written>> + use<T> {
    let hold = s.set_fn(
        "blocker",
        "b",
        |v: &T| {
            std::thread::sleep(Duration::from_millis(200));
            Ok::<_, Error>(v.clone())
        },
        NONE,
    );
    std::thread::sleep(Duration::from_millis(20));
    hold
}

#[test]
fn a_panicking_function_fails_only_its_own_write() {
    let s: Durable<Value> = open("panic");
    block_on(s.set("blocker", "b", json!(0), NONE)).unwrap();
    block_on(s.set("t", "x", json!(0), NONE)).unwrap();
    let mut w = block_on(s.watch("t", WatchOptions::new())).unwrap();
    let hold = hold_writer(&s);
    let a = s.set("t", "a", json!(1), NONE);
    let boom = s.set_fn(
        "t",
        "x",
        |_: &Value| -> Result<Value, Error> { panic!("a bug in the caller") },
        NONE,
    );
    let b = s.set("t", "b", json!(1), NONE);
    block_on(hold).unwrap();
    let (a, boom, b) = block_on(async { (a.await, boom.await, b.await) });
    match boom {
        Err(e @ Error::Function(_)) => assert!(e.to_string().contains("a bug in the caller"), "{e}"),
        other => panic!("the panicking write must fail with Function: {other:?}"),
    }
    assert!(a.is_ok() && b.is_ok(), "its batch mates are written: {a:?} {b:?}");
    let c = block_on(s.set("t", "c", json!(1), NONE)).expect("the store goes on");
    assert_eq!(c.rev, 5, "the panicking write spent no revision");
    let keys: Vec<String> = (0..3)
        .map(|_| w.next().now_or_never().unwrap().unwrap().unwrap().key.clone())
        .collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(block_on(s.get("t", "x")).unwrap().unwrap().value, json!(0));
}

/// A value whose serialization fails for negative numbers.
#[derive(Debug, Clone, Deserialize)]
struct Picky(i64);

impl Serialize for Picky {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0 < 0 {
            Err(serde::ser::Error::custom("negative numbers are not serializable"))
        } else {
            s.serialize_i64(self.0)
        }
    }
}

#[test]
fn a_value_that_cannot_be_encoded_fails_only_its_own_write() {
    let s: Durable<Picky> = open("encode");
    block_on(s.set("blocker", "b", Picky(0), NONE)).unwrap();
    let hold = hold_writer(&s);
    let writes: Vec<_> = (0..10)
        .map(|i| s.set("t", &format!("k{i}"), Picky(if i == 5 { -1 } else { i }), NONE))
        .collect();
    block_on(hold).unwrap();
    let results = block_on(join_all(writes));
    for (i, r) in results.iter().enumerate() {
        if i == 5 {
            assert!(matches!(r, Err(Error::Encoding(_))), "{r:?}");
        } else {
            assert!(r.is_ok(), "k{i}: {r:?}");
        }
    }
    assert_eq!(block_on(s.count("t")).unwrap(), 9);
}

#[test]
fn postgres_refuses_a_nul_character_alone() {
    let Some(url) = pg::url("postgres_refuses_a_nul_character_alone") else {
        return;
    };
    let schema = pg::run(pg::create_schema(url));
    let s: Durable<Value> = pg::run(postgres::open(
        PgOptions::new(url, "ns").schema(schema.clone()),
        StoreOptions::new(),
    ))
    .unwrap();
    block_on(s.set("blocker", "b", json!(0), NONE)).unwrap();
    let hold = hold_writer(&s);
    let writes = vec![
        s.set("t", "k1", json!(1), NONE),
        s.set("t", "k2", json!("a\u{0}b"), NONE),
        s.set("t", "k\u{0}", json!(3), NONE),
        // An escaped backslash before "u0000" is not a NUL.
        s.set("t", "k4", json!("\\u0000"), NONE),
    ];
    block_on(hold).unwrap();
    let results = block_on(join_all(writes));
    s.close();
    pg::run(pg::drop_schema(url, &schema));
    assert!(results[0].is_ok() && results[3].is_ok(), "{results:?}");
    assert!(
        matches!(&results[1], Err(Error::Encoding(m)) if m.contains("NUL")),
        "{:?}",
        results[1]
    );
    assert!(matches!(&results[2], Err(Error::Encoding(_))), "{:?}", results[2]);
}

#[test]
fn watches_end_when_the_store_is_dropped() {
    let s: Durable<Value> = open("drop");
    let mut w = block_on(s.watch("t", WatchOptions::new())).unwrap();
    drop(s);
    // The writer thread notices its queue is gone and closes the store.
    assert!(block_on(w.next()).is_none());
}
