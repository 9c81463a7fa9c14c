//! The native client against a real WebSocket: a minimal shell in the test
//! (tokio-tungstenite's `accept_async` on a port-0 listener) carries the text
//! frames of each connection to and from the testkit's simulated server
//! (`store_core::testkit::world::SimServer`: one `MemStore`, a `ServerSession`
//! per connection, ops applied idempotently by `(client_id, op_id)`), the
//! server of the in-memory sync tests in `store-core/tests/sync_sessions.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use store_core::sync::codec::decode_server;
use store_core::sync::session::{ClientEvent, ClientState, ServerConfig};
use store_core::sync::{ErrorCode, ServerMessage};
use store_core::testkit::world::{ConnId, NAMESPACE as NS, SimServer};
use store_core::{Entry, MemStore, SetOptions, StoreOptions, WatchOptions};
use sync_server::client::{Client, ClientError, ClientOptions, Events, Link, Update, WriteError};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const WAIT: Duration = Duration::from_secs(10);

struct TestServer {
    addr: SocketAddr,
    sim: Mutex<SimServer>,
    /// The simulated server's store.
    store: MemStore<Value>,
    /// New connections are dropped before the WebSocket handshake.
    refuse: AtomicBool,
    /// The next connection about to answer an op drops its socket instead
    /// (the write is durable, the answer is lost).
    drop_before_ack: AtomicBool,
}

impl TestServer {
    async fn start() -> Arc<TestServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = ServerConfig {
            heartbeat_ms: 5_000,
            ..ServerConfig::default()
        };
        // Kind `strict` has a schema the server sends in `welcome`.
        let schema = json!({"type": "object", "required": ["title"]});
        let sim =
            SimServer::new(StoreOptions::new(), config).with_schemas([("strict".to_owned(), schema)].into());
        let server = Arc::new(TestServer {
            addr: listener.local_addr().unwrap(),
            store: sim.store().clone(),
            sim: Mutex::new(sim),
            refuse: AtomicBool::new(false),
            drop_before_ack: AtomicBool::new(false),
        });
        let s = Arc::clone(&server);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if s.refuse.load(Ordering::SeqCst) {
                    continue;
                }
                tokio::spawn(Arc::clone(&s).serve(tcp));
            }
        });
        server
    }

    fn url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    fn options(&self, token: &str, client_id: &str) -> ClientOptions {
        let mut o = ClientOptions::new(self.url(), NS, token, client_id);
        o.backoff_min = Duration::from_millis(10);
        o.backoff_max = Duration::from_millis(100);
        o
    }

    fn applied_count(&self, op_id: &str) -> usize {
        self.sim.lock().applied_count(op_id)
    }

    /// One connection: the shell that carries its frames to and from the
    /// simulated server.
    async fn serve(self: Arc<Self>, tcp: TcpStream) {
        let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
            return;
        };
        let (mut sink, mut stream) = ws.split();
        let start = Instant::now();
        let now = || u64::try_from(start.elapsed().as_millis()).unwrap();
        // Wakes the shell on every commit, so that the server relays it.
        let mut commits = self.store.watch_all(WatchOptions::new()).unwrap();
        let conn = Open {
            server: Arc::clone(&self),
            id: self.sim.lock().connect(now()),
        };
        loop {
            let (frames, close, deadline) = {
                let mut sim = self.sim.lock();
                let frames: Vec<String> = std::iter::from_fn(|| sim.poll_transmit(conn.id)).collect();
                let close = sim.poll_close(conn.id);
                (frames, close, sim.poll_timeout(conn.id))
            };
            let answers = frames.iter().any(|f| {
                matches!(
                    decode_server(f.as_bytes(), usize::MAX),
                    Ok(ServerMessage::Ack(_) | ServerMessage::Reject(_))
                )
            });
            if answers && self.drop_before_ack.swap(false, Ordering::SeqCst) {
                return; // the socket drops: no changes, no answer
            }
            for frame in frames {
                if sink.send(Message::text(frame)).await.is_err() {
                    return;
                }
            }
            if let Some(code) = close {
                let frame = CloseFrame {
                    code: code.code().into(),
                    reason: "".into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                return;
            }
            let deadline = start + Duration::from_millis(deadline.unwrap_or(3_600_000));
            tokio::select! {
                message = stream.next() => match message {
                    Some(Ok(Message::Text(text))) => self.sim.lock().receive(conn.id, &text, now()),
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
                Some(_) = commits.next() => {
                    while let Some(Some(_)) = commits.next().now_or_never() {}
                }
                () = tokio::time::sleep_until(deadline.into()) => {
                    self.sim.lock().handle_timeout(conn.id, now());
                }
            }
        }
    }
}

/// A connection of the simulated server, disconnected when its shell ends.
struct Open {
    server: Arc<TestServer>,
    id: ConnId,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.server.sim.lock().disconnect(self.id);
    }
}

/// The next update matching `pred`, failing the test after [`WAIT`].
async fn expect(events: &mut Events, mut pred: impl FnMut(&Update) -> bool) -> Update {
    tokio::time::timeout(WAIT, async {
        loop {
            let update = events.next().await.expect("the event stream ended");
            if pred(&update) {
                return update;
            }
        }
    })
    .await
    .expect("timed out waiting for an update")
}

async fn until(mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("timed out waiting for a condition");
}

#[tokio::test]
async fn put_get_and_watch_from_a_second_client() {
    let server = TestServer::start().await;
    let watcher = Client::connect(server.options("rw", "watcher"));
    let mut watched = watcher.events();
    expect(&mut watched, |u| {
        matches!(u, Update::Session(ClientEvent::Synced { .. }))
    })
    .await;

    let writer = Client::connect(server.options("rw", "writer"));
    let write = writer
        .set("task", "t1", json!({"title": "ship"}))
        .unwrap()
        .expect("a change to send");
    assert_eq!(
        writer.get("task", "t1"),
        Some(json!({"title": "ship"})),
        "optimistic"
    );
    assert_eq!(writer.status().pending, 1);
    let ack = write.acked().await.unwrap();
    assert_eq!((ack.version, ack.rev), (1, 1));
    assert_eq!(writer.status().pending, 0);
    assert_eq!(writer.status().link, Link::Online);

    let Update::Session(ClientEvent::Changed { events }) = expect(&mut watched, |u| {
        matches!(u, Update::Session(ClientEvent::Changed { .. }))
    })
    .await
    else {
        unreachable!()
    };
    assert_eq!(
        (events[0].key.as_str(), &events[0].value),
        ("t1", &json!({"title": "ship"}))
    );
    assert_eq!(watcher.get("task", "t1"), Some(json!({"title": "ship"})));
    assert_eq!(watcher.entry("task", "t1"), Some((json!({"title": "ship"}), 1)));
    assert_eq!(watcher.status().cursor, Some(1));

    let deleted = writer
        .delete("task", "t1")
        .unwrap()
        .expect("a change to send")
        .acked()
        .await
        .unwrap();
    assert_eq!(deleted.rev, 2);
    until(|| watcher.list("task").is_empty()).await;
    assert_eq!(server.store.get("task", "t1").unwrap(), None);

    writer.close().await;
    watcher.close().await;
    assert_eq!(writer.status().link, Link::Stopped);
    assert!(matches!(
        writer.set("task", "t2", json!(1)),
        Err(ClientError::Closed)
    ));
}

/// `status().synced` never runs ahead of the view: once a client says it is
/// synced, `get` shows what the snapshot held. (The CLI's `get` reads right
/// after that; the view used to be updated a step after the session.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_synced_client_shows_the_snapshot_at_once() {
    let server = TestServer::start().await;
    let writer = Client::connect(server.options("rw", "writer"));
    let write = writer
        .set("task", "t1", json!({"title": "ship"}))
        .unwrap()
        .expect("a change to send");
    write.acked().await.unwrap();
    writer.close().await;
    for i in 0..100 {
        let reader = Client::connect(server.options("rw", &format!("reader{i}")));
        tokio::time::timeout(WAIT, async {
            while !reader.status().synced {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("timed out waiting to be synced");
        assert_eq!(
            reader.get("task", "t1"),
            Some(json!({"title": "ship"})),
            "reader {i}"
        );
        reader.close().await;
    }
}

#[tokio::test]
async fn reconnects_resumes_and_resends_a_pending_op_once() {
    let server = TestServer::start().await;
    server
        .store
        .set("task", "old", json!(0), SetOptions::default())
        .unwrap();
    let client = Client::connect(server.options("rw", "c1"));
    let mut events = client.events();
    expect(&mut events, |u| {
        matches!(u, Update::Session(ClientEvent::Synced { .. }))
    })
    .await;
    assert_eq!(client.status().cursor, Some(1));

    // The server applies the op, then the socket drops before the ack.
    server.drop_before_ack.store(true, Ordering::SeqCst);
    let write = client
        .set("task", "t1", json!("once"))
        .unwrap()
        .expect("a change to send");
    expect(&mut events, |u| matches!(u, Update::Disconnected { .. })).await;
    // Another writer moves the namespace on while the client is away.
    server
        .store
        .set("note", "n1", json!("meanwhile"), SetOptions::default())
        .unwrap();

    let ack = write.acked().await.unwrap();
    assert_eq!(ack.rev, 2, "the original answer, not a second write");
    assert_eq!(server.applied_count(&ack.op_id), 1);
    until(|| client.get("note", "n1").is_some() && client.status().cursor == Some(3)).await;
    assert_eq!(client.get("task", "t1"), Some(json!("once")));
    assert_eq!(client.status().pending, 0);

    // Writes made while the server is unreachable are sent once it is back.
    server.refuse.store(true, Ordering::SeqCst);
    server.drop_before_ack.store(true, Ordering::SeqCst);
    let offline = client
        .set("task", "t2", json!("offline"))
        .unwrap()
        .expect("a change to send");
    expect(&mut events, |u| matches!(u, Update::Disconnected { .. })).await;
    expect(
        &mut events,
        |u| matches!(u, Update::Disconnected { reason } if reason.starts_with("cannot connect")),
    )
    .await;
    assert_ne!(client.status().link, Link::Online);
    assert_eq!(client.get("task", "t2"), Some(json!("offline")));
    server.refuse.store(false, Ordering::SeqCst);
    let ack = offline.acked().await.unwrap();
    assert_eq!(server.applied_count(&ack.op_id), 1);
    assert_eq!(
        server.store.get("task", "t2").unwrap().unwrap().value,
        json!("offline")
    );

    // The persisted state resumes a new client from the cursor.
    until(|| client.status().cursor == Some(4)).await;
    let state = client.state();
    client.close().await;
    let mut options = server.options("rw", "c1");
    options.state = Some(state);
    let resumed = Client::connect(options);
    let mut events = resumed.events();
    let synced = expect(&mut events, |u| {
        matches!(
            u,
            Update::Session(ClientEvent::Synced { .. } | ClientEvent::SnapshotApplied { .. })
        )
    })
    .await;
    assert_eq!(
        synced,
        Update::Session(ClientEvent::Synced { rev: 4 }),
        "changes, not a snapshot"
    );
    assert_eq!(resumed.list("task").len(), 3);
    resumed.close().await;
}

#[tokio::test]
async fn a_reject_reaches_the_caller_and_rolls_back() {
    let server = TestServer::start().await;
    // The server holds t1 at version 2; the client resumes from a state
    // that saw version 1, and writes on it before it hears of version 2.
    for value in ["v1", "v2"] {
        let set = server
            .store
            .set("task", "t1", json!(value), SetOptions::default());
        set.unwrap();
    }
    let seen = Entry {
        value: json!("v1"),
        version: 1,
        rev: 1,
    };
    let mut options = server.options("rw", "c1");
    options.state = Some(ClientState {
        cursor: Some(1),
        entries: vec![("task".into(), "t1".into(), seen)],
        pending: Vec::new(),
        next_op_seq: 0,
    });
    let client = Client::connect(options);
    let mut events = client.events();
    // A version the client does not show is refused before it is queued.
    let refused = client.set_if_version("task", "t1", json!("cas"), 5).unwrap_err();
    assert!(
        matches!(refused, ClientError::Invalid { code: "conflict", .. }),
        "{refused:?}"
    );
    assert_eq!(client.status().pending, 0);
    let write = client
        .set_if_version("task", "t1", json!("cas"), 1)
        .unwrap()
        .expect("a change to send");
    assert_eq!(client.get("task", "t1"), Some(json!("cas")));
    assert_eq!(
        client.entry("task", "t1"),
        Some((json!("cas"), 2)),
        "the version it will have"
    );
    let err = write.acked().await.unwrap_err();
    assert!(
        matches!(
            &err,
            WriteError::Rejected {
                code: ErrorCode::Conflict,
                ..
            }
        ),
        "{err:?}"
    );
    until(|| client.entry("task", "t1") == Some((json!("v2"), 2))).await;
    expect(&mut events, |u| {
        matches!(
            u,
            Update::Session(ClientEvent::Rejected {
                code: ErrorCode::Conflict,
                ..
            })
        )
    })
    .await;

    // A read-only token gets `forbidden` per write, and stays connected.
    let reader = Client::connect(server.options("ro", "r1"));
    let err = reader
        .set("task", "t1", json!(1))
        .unwrap()
        .expect("a change to send")
        .acked()
        .await
        .unwrap_err();
    assert!(
        matches!(
            &err,
            WriteError::Rejected {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(reader.status().link, Link::Online);
    client.close().await;
    reader.close().await;
}

#[tokio::test]
async fn an_unauthorized_token_stops_the_client() {
    let server = TestServer::start().await;
    let client = Client::connect(server.options("bad", "c1"));
    let mut events = client.events();
    let write = client
        .set("task", "t1", json!(1))
        .unwrap()
        .expect("a change to send");
    let stopped = expect(&mut events, |u| matches!(u, Update::Stopped(_))).await;
    let Update::Stopped(ClientError::Refused { code, message }) = stopped else {
        panic!("{stopped:?}")
    };
    assert_eq!(code, Some(ErrorCode::Unauthorized));
    assert!(message.starts_with("unauthorized"), "{message}");
    assert_eq!(client.status().link, Link::Stopped);
    assert!(matches!(
        write.acked().await,
        Err(WriteError::Stopped(ClientError::Refused { .. }))
    ));
    assert_eq!(client.status().pending, 1, "kept in the state");
    assert_eq!(server.store.get("task", "t1").unwrap(), None);
    // A subscriber arriving late still learns why.
    let late = client.events().next().await;
    assert!(matches!(late, Some(Update::Stopped(ClientError::Refused { .. }))));
}

#[tokio::test]
async fn the_cli_puts_gets_and_reports_rejects() {
    let server = TestServer::start().await;
    let args = |words: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
        v.extend(["--url".to_owned(), server.url(), "--namespace=ns".to_owned()]);
        v
    };
    let run = |words: &[&str], token: &str| {
        let mut a = args(words);
        a.extend([
            "--token".to_owned(),
            token.to_owned(),
            "--timeout".to_owned(),
            "5".to_owned(),
        ]);
        sync_server::client::run_cli(a)
    };
    run(&["put", "task", "t1", r#"{"title":"ship"}"#], "rw")
        .await
        .unwrap();
    assert_eq!(
        server.store.get("task", "t1").unwrap().unwrap().value,
        json!({"title": "ship"})
    );
    run(&["get", "task", "t1"], "rw").await.unwrap();
    let missing = run(&["get", "task", "nope"], "rw").await.unwrap_err();
    assert!(missing.contains("not found"), "{missing}");
    let refused = run(&["put", "task", "t1", "1"], "ro").await.unwrap_err();
    assert!(refused.contains("forbidden"), "{refused}");
    let unauthorized = run(&["delete", "task", "t1"], "bad").await.unwrap_err();
    assert!(unauthorized.contains("unauthorized"), "{unauthorized}");
    let unauthorized = run(&["get", "task", "t1"], "bad").await.unwrap_err();
    assert!(unauthorized.contains("unauthorized"), "{unauthorized}");
    let missing = run(&["delete", "task", "nope"], "rw").await.unwrap_err();
    assert!(missing.contains("not found"), "{missing}");
    let bad = run(&["put", "task", "t1", "{oops"], "rw").await.unwrap_err();
    assert!(bad.contains("not JSON"), "{bad}");
    run(&["patch", "task", "t1", r#"{"owner":"kim"}"#], "rw")
        .await
        .unwrap();
    assert_eq!(
        server.store.get("task", "t1").unwrap().unwrap().value,
        json!({"title": "ship", "owner": "kim"}),
        "the patch merged into the server's value"
    );
    let missing = run(&["patch", "task", "nope", r#"{"a":1}"#], "rw")
        .await
        .unwrap_err();
    assert!(missing.contains("key not found"), "{missing}");
    let bad = run(&["patch", "task", "t1", "{oops"], "rw").await.unwrap_err();
    assert!(bad.contains("not JSON"), "{bad}");
    run(&["delete", "task", "t1"], "rw").await.unwrap();
    assert_eq!(server.store.get("task", "t1").unwrap(), None);
}

#[tokio::test]
async fn a_silent_server_is_dropped_and_retried() {
    // Accepts WebSockets and never answers (nor reads).
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                counter.fetch_add(1, Ordering::SeqCst);
                held.push(ws);
            }
        }
    });
    let mut options = ClientOptions::new(format!("ws://{addr}/sync"), NS, "rw", "c1");
    options.heartbeat = Duration::from_millis(50);
    options.backoff_min = Duration::from_millis(10);
    let client = Client::connect(options);
    let mut events = client.events();
    expect(&mut events, |u| {
        matches!(u, Update::Session(ClientEvent::TimedOut))
    })
    .await;
    expect(
        &mut events,
        |u| matches!(u, Update::Disconnected { reason } if reason.contains("stopped answering")),
    )
    .await;
    until(|| accepted.load(Ordering::SeqCst) >= 2).await;
    client.close().await;
}

#[tokio::test]
async fn a_write_the_server_would_refuse_is_refused_before_it_is_queued() {
    let server = TestServer::start().await;
    let client = Client::connect(server.options("rw", "c1"));
    // Before any welcome: the stores' key rules.
    let long = "k".repeat(store_core::MAX_KEY_BYTES + 1);
    let err = client.set("task", &long, json!(1)).unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::Invalid {
                code: "key_too_long",
                ..
            }
        ),
        "{err:?}"
    );
    let mut events = client.events();
    expect(&mut events, |u| {
        matches!(u, Update::Session(ClientEvent::Synced { .. }))
    })
    .await;
    // After it: the kind's schema from the server.
    let err = client
        .set("strict", "a", json!({"note": "no title"}))
        .unwrap_err();
    assert!(
        matches!(
            &err,
            ClientError::Invalid {
                code: "validation",
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(client.get("strict", "a"), None, "nothing shown");
    assert_eq!(client.state().pending.len(), 0, "nothing queued");
    let ok = client
        .set("strict", "a", json!({"title": "t"}))
        .unwrap()
        .expect("a change to send");
    let ack = ok.acked().await.unwrap();
    assert_eq!(ack.version, 1);
    client.close().await;
}
