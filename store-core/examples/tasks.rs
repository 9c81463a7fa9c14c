//! A typed task list with a live watcher, a compare-and-set, a rejected
//! write and a watch resumed from a revision.
//!
//! Run with `cargo run -p store-core --example tasks`.

use std::thread;

use futures_executor::block_on_stream;
use serde::{Deserialize, Serialize};
use serde_json::json;
use store_core::schema::Schema;
use store_core::{Error, MemStore, SetOptions, StoreOptions, WatchOptions};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Task {
    title: String,
    done: bool,
}

fn main() -> Result<(), Error> {
    let schema = Schema::compile(json!({
        "type": "object",
        "properties": {"title": {"type": "string", "minLength": 1, "maxLength": 80}, "done": {"type": "boolean"}},
        "required": ["title", "done"],
    }))?;
    let store: MemStore<Task> = MemStore::new(StoreOptions::new().schema("task", schema));

    // A watcher on another thread prints every change as it is committed.
    let watch = store.watch("task", WatchOptions::new().replay())?;
    let printer = thread::spawn(move || {
        for event in block_on_stream(watch) {
            match event {
                Ok(e) => println!(
                    "  watch: rev {} {:?} {} v{} {:?}",
                    e.rev, e.event_type, e.key, e.version, e.value
                ),
                Err(e) => println!("  watch ended with error: {e} ({})", e.code()),
            }
        }
        println!("  watch: ended");
    });

    let none = SetOptions::default();
    let w = store.set(
        "task",
        "t1",
        Task {
            title: "write the docs".into(),
            done: false,
        },
        none,
    )?;
    println!("set t1 -> {:?} version {} rev {}", w.result, w.version, w.rev);
    store.set(
        "task",
        "t2",
        Task {
            title: "ship it".into(),
            done: false,
        },
        none,
    )?;

    // An equal value is not a change: no version, no revision, no event.
    let w = store.set(
        "task",
        "t2",
        Task {
            title: "ship it".into(),
            done: false,
        },
        none,
    )?;
    println!("set t2 again -> {:?} (rev stays {})", w.result, w.rev);

    // Compare-and-set: only if nobody changed t1 since version 1.
    let w = store.set_fn(
        "task",
        "t1",
        |t: &Task| {
            Ok::<_, Error>(Task {
                done: true,
                ..t.clone()
            })
        },
        SetOptions::if_version(1),
    )?;
    println!("finish t1 at version 1 -> {:?} version {}", w.result, w.version);
    match store.set(
        "task",
        "t1",
        Task {
            title: "stale".into(),
            done: false,
        },
        SetOptions::if_version(1),
    ) {
        Err(e) => println!("stale write refused: {e} ({})", e.code()),
        Ok(w) => println!("unexpected: {w:?}"),
    }

    // The schema refuses an empty title before anything is written.
    if let Err(e) = store.set(
        "task",
        "t3",
        Task {
            title: String::new(),
            done: false,
        },
        none,
    ) {
        println!("invalid write refused: {e}");
    }
    store.delete("task", "t2", none)?;

    // A consumer that saw up to revision 2 resumes exactly after it.
    let resumed: Vec<String> = block_on_stream(store.watch("task", WatchOptions::new().from_rev(2))?)
        .take(2)
        .map(|e| e.map(|e| format!("rev {} {:?} {}", e.rev, e.event_type, e.key)))
        .collect::<Result<_, _>>()?;
    println!("resumed after rev 2: {resumed:?}");

    store.close();
    printer.join().expect("printer thread");
    Ok(())
}
