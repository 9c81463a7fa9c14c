//! A bad write fails alone: a panicking function, a value that cannot be
//! encoded, a key over the limit or with a NUL, in the middle of a group
//! commit; a NUL in a value is stored by every backend. And a store's
//! watches end when the store goes away.

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

/// NUL follows one rule on every backend: a string of a value may hold it
/// (it is stored, and read back after a reopen), a kind or key may not
/// (`invalid_key`), and such a write is refused alone, not failing its batch.
fn nul_is_stored_in_values_and_refused_alone_in_keys(open: &dyn Fn() -> Durable<Value>) {
    let s = open();
    block_on(s.set("blocker", "b", json!(0), NONE)).unwrap();
    let value = json!({"text": "a\u{0}b", "k\u{0}": ["\u{0}"]});
    let hold = hold_writer(&s);
    let writes = vec![
        s.set("t", "k1", json!(1), NONE),
        s.set("t", "k2", value.clone(), NONE),
        s.set("t", "k\u{0}", json!(3), NONE),
        s.set("t\u{0}", "k", json!(3), NONE),
        // An escaped backslash before "u0000" is text, not a NUL.
        s.set("t", "k4", json!("\\u0000"), NONE),
    ];
    block_on(hold).unwrap();
    let results = block_on(join_all(writes));
    for (i, r) in results.iter().enumerate() {
        if i == 2 || i == 3 {
            assert!(
                matches!(r, Err(e @ Error::InvalidKey { .. }) if e.code() == "invalid_key"),
                "write {i} names a NUL: {r:?}"
            );
        } else {
            assert!(r.is_ok(), "write {i}: {r:?}");
        }
    }
    s.close();
    drop(s);
    let s = open();
    assert_eq!(block_on(s.get("t", "k2")).unwrap().unwrap().value, value);
    assert_eq!(
        block_on(s.get("t", "k4")).unwrap().unwrap().value,
        json!("\\u0000")
    );
    assert_eq!(block_on(s.count("t")).unwrap(), 3);
    assert_eq!(block_on(s.rev()).unwrap(), 4);
    s.close();
}

#[test]
fn sqlite_stores_nul_in_values_and_refuses_it_in_keys_alone() {
    let path = support::fresh_db("nul");
    nul_is_stored_in_values_and_refused_alone_in_keys(&|| {
        sqlite::open(SqliteOptions::new(path.clone(), "ns"), StoreOptions::new()).unwrap()
    });
}

#[test]
fn postgres_stores_nul_in_values_and_refuses_it_in_keys_alone() {
    let Some(url) = pg::url("postgres_stores_nul_in_values_and_refuses_it_in_keys_alone") else {
        return;
    };
    let schema = pg::run(pg::create_schema(url));
    nul_is_stored_in_values_and_refused_alone_in_keys(&|| {
        pg::run(postgres::open(
            PgOptions::new(url, "ns").schema(schema.clone()),
            StoreOptions::new(),
        ))
        .unwrap()
    });
    pg::run(pg::drop_schema(url, &schema));
}

/// Text that does not compress, so PostgreSQL stores it at full length
/// (an index compresses what it can).
fn noise(bytes: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..bytes)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize])
        })
        .collect()
}

#[test]
fn postgres_refuses_an_over_long_key_alone() {
    let Some(url) = pg::url("postgres_refuses_an_over_long_key_alone") else {
        return;
    };
    let schema = pg::run(pg::create_schema(url));
    let s: Durable<Value> = pg::run(postgres::open(
        PgOptions::new(url, "ns").schema(schema.clone()),
        StoreOptions::new(),
    ))
    .unwrap();
    block_on(s.set("blocker", "b", json!(0), NONE)).unwrap();
    // Over the limit: a key PostgreSQL's index could not hold, one it
    // could, and a kind. Each is queued among writes that are fine, and all
    // are committed as one batch.
    let too_long = [
        ("t".to_owned(), noise(10_000, 1)),
        ("t".to_owned(), noise(store_core::MAX_KEY_BYTES + 1, 2)),
        (noise(store_core::MAX_KEY_BYTES + 1, 3), "k".to_owned()),
    ];
    let hold = hold_writer(&s);
    let mut writes = Vec::new();
    for (i, (kind, key)) in too_long.iter().enumerate() {
        writes.push(s.set("t", &format!("before-{i}"), json!(i), NONE));
        writes.push(s.set(kind, key, json!("too long"), NONE));
        writes.push(s.set("t", &format!("after-{i}"), json!(i), NONE));
    }
    block_on(hold).unwrap();
    let results = block_on(join_all(writes));
    let count = block_on(s.count("t"));
    let rev = block_on(s.rev());
    s.close();
    pg::run(pg::drop_schema(url, &schema));
    for (i, r) in results.iter().enumerate() {
        if i % 3 == 1 {
            assert!(
                matches!(r, Err(e @ Error::KeyTooLong { .. }) if e.code() == "key_too_long"),
                "write {i} is over the limit: {r:?}"
            );
        } else {
            assert!(r.is_ok(), "write {i} shares the batch of an over-long key: {r:?}");
        }
    }
    assert_eq!(count.unwrap(), 6);
    assert_eq!(rev.unwrap(), 7, "the refused writes spent no revision");
}

#[test]
fn watches_end_when_the_store_is_dropped() {
    let s: Durable<Value> = open("drop");
    let mut w = block_on(s.watch("t", WatchOptions::new())).unwrap();
    drop(s);
    // The writer thread notices its queue is gone and closes the store.
    assert!(block_on(w.next()).is_none());
}
