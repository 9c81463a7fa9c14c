//! The sync server end to end: a real server on port 0 over a real SQLite
//! file, talked to through real WebSockets speaking the protocol by hand.

#[path = "support/pg.rs"]
mod pg;
mod support;
#[path = "support/server.rs"]
mod test_server;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use store_core::StoreOptions;
use store_core::schema::Schema;
use store_core::sync::session::ServerConfig;
use sync_server::backend::sqlite::Synchronous;
use sync_server::server::{AppState, Database, Metrics, Stores, Tokens};
use test_server::{Server, Socket, recv, send, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

async fn start(db: &std::path::Path) -> Server {
    start_on(Database::Sqlite(db.to_owned())).await
}

async fn start_on(database: Database) -> Server {
    start_with(database, vec![]).await
}

async fn start_with(database: Database, allowed_origins: Vec<String>) -> Server {
    let mut tokens = Tokens::default();
    tokens.grant("writer", "team", store_core::sync::Rights::ReadWrite);
    tokens.grant("reader", "team", store_core::sync::Rights::Read);
    tokens.grant("other", "elsewhere", store_core::sync::Rights::ReadWrite);
    let schema = Schema::compile(json!({"type": "object", "required": ["title"]})).unwrap();
    spawn(|shutdown| AppState {
        stores: Stores::new(
            database,
            Synchronous::Full,
            StoreOptions::new().schema("task", schema),
        ),
        auth: tokens.into(),
        session: ServerConfig {
            heartbeat_ms: 60_000,
            ..ServerConfig::default()
        },
        metrics: Metrics::default(),
        allowed_origins,
        send_timeout: Duration::from_millis(300),
        shutdown,
    })
    .await
}

async fn connect(server: &Server) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{}/sync", server.address))
        .await
        .unwrap();
    socket
}

/// Reads until the socket closes; returns the close code.
async fn closed(socket: &mut Socket) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

fn hello(token: &str, namespace: &str, client: &str, since: Option<u64>) -> Value {
    let mut h =
        json!({"type": "hello", "protocol": 1, "namespace": namespace, "token": token, "client_id": client});
    if let Some(since) = since {
        h["since"] = json!(since);
    }
    h
}

fn set(op_id: &str, key: &str, value: Value) -> Value {
    json!({"op_id": op_id, "kind": "task", "key": key, "action": "set", "value": value})
}

#[tokio::test]
async fn clients_sync_write_and_resume_across_a_restart() {
    let db = support::fresh_db("server");
    let server = start(&db).await;
    let mut a = connect(&server).await;
    send(&mut a, hello("writer", "team", "a", None)).await;
    let welcome = recv(&mut a).await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["rights"].as_str()),
        (Some("welcome"), Some("read_write"))
    );
    assert_eq!(welcome["schemas"]["task"]["required"], json!(["title"]));
    let snapshot = recv(&mut a).await;
    assert_eq!(
        (
            snapshot["type"].as_str(),
            snapshot["reason"].as_str(),
            snapshot["done"].as_bool()
        ),
        (Some("snapshot"), Some("initial"), Some(true))
    );

    let mut b = connect(&server).await;
    send(&mut b, hello("reader", "team", "b", None)).await;
    assert_eq!(recv(&mut b).await["type"], "welcome");
    assert_eq!(recv(&mut b).await["type"], "snapshot");

    send(&mut a, json!({"type": "push", "ops": [set("a1", "t1", json!({"title": "ship"})), set("a2", "t2", json!({"nope": 1}))]})).await;
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(recv(&mut a).await);
    }
    let ack = got.iter().find(|m| m["type"] == "ack").expect("an ack");
    assert_eq!(
        (ack["op_id"].as_str(), ack["result"].as_str(), ack["rev"].as_u64()),
        (Some("a1"), Some("created"), Some(1))
    );
    let reject = got.iter().find(|m| m["type"] == "reject").expect("a reject");
    assert_eq!(
        (reject["op_id"].as_str(), reject["code"].as_str()),
        (Some("a2"), Some("validation"))
    );
    // The other client sees the change; its writes are refused (read-only).
    let change = recv(&mut b).await;
    assert_eq!(
        (change["type"].as_str(), change["events"][0]["key"].as_str()),
        (Some("changes"), Some("t1"))
    );
    send(
        &mut b,
        json!({"type": "push", "ops": [set("b1", "t3", json!({"title": "no"}))]}),
    )
    .await;
    let refused = recv(&mut b).await;
    assert_eq!(
        (refused["type"].as_str(), refused["code"].as_str()),
        (Some("reject"), Some("forbidden"))
    );

    // Shutdown closes sessions with "going away"; the data is on disk.
    server.stop().await;
    assert_eq!(closed(&mut a).await, Some(CloseCode::Away));

    let server = start(&db).await;
    let mut a = connect(&server).await;
    send(&mut a, hello("writer", "team", "a", Some(0))).await;
    assert_eq!(recv(&mut a).await["type"], "welcome");
    let changes = recv(&mut a).await;
    assert_eq!(
        (changes["type"].as_str(), changes["rev"].as_u64()),
        (Some("changes"), Some(1))
    );
    assert_eq!(changes["events"][0]["value"], json!({"title": "ship"}));
    // A retried op id is answered, not applied again.
    send(
        &mut a,
        json!({"type": "push", "ops": [set("a1", "t1", json!({"title": "ship"}))]}),
    )
    .await;
    let again = recv(&mut a).await;
    assert_eq!(
        (
            again["type"].as_str(),
            again["rev"].as_u64(),
            again["result"].as_str()
        ),
        (Some("ack"), Some(1), Some("created"))
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_its_error_code_and_close_code() {
    let db = support::fresh_db("server-bad");
    let server = start(&db).await;
    let cases: [(Value, &str, CloseCode); 4] = [
        (
            json!({"type": "push", "ops": []}),
            "hello_expected",
            CloseCode::Protocol,
        ),
        (json!({"type": "subscribe"}), "unknown_type", CloseCode::Protocol),
        (
            hello("nobody", "team", "x", None),
            "unauthorized",
            CloseCode::from(4001),
        ),
        (
            hello("other", "team", "x", None),
            "forbidden",
            CloseCode::from(4003),
        ),
    ];
    for (message, code, close) in cases {
        let mut s = connect(&server).await;
        send(&mut s, message).await;
        let error = recv(&mut s).await;
        assert_eq!(
            (
                error["type"].as_str(),
                error["code"].as_str(),
                error["fatal"].as_bool()
            ),
            (Some("error"), Some(code), Some(true))
        );
        assert_eq!(closed(&mut s).await, Some(close), "{code}");
    }
    // A frame over the limit (1 MiB here) is refused with too_large / 1009.
    let mut s = connect(&server).await;
    send(&mut s, hello("writer", "team", "big", None)).await;
    assert_eq!(recv(&mut s).await["type"], "welcome");
    assert_eq!(recv(&mut s).await["type"], "snapshot");
    let huge = json!({"type": "push", "ops": [set("o1", "k", json!({"title": "x".repeat(1_100_000)}))]});
    send(&mut s, huge).await;
    assert_eq!(recv(&mut s).await["code"], "too_large");
    assert_eq!(closed(&mut s).await, Some(CloseCode::Size));
    let mut s = connect(&server).await;
    s.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(recv(&mut s).await["code"], "bad_message");
    assert_eq!(closed(&mut s).await, Some(CloseCode::Protocol));
    // Another client is unaffected throughout.
    let mut ok = connect(&server).await;
    send(&mut ok, hello("writer", "team", "ok", None)).await;
    assert_eq!(recv(&mut ok).await["type"], "welcome");
    server.stop().await;
}

async fn http_get(server: &Server, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn health_and_metrics() {
    let db = support::fresh_db("server-http");
    let server = start(&db).await;
    assert!(http_get(&server, "/healthz").await.ends_with("ok\n"));
    let mut s = connect(&server).await;
    send(&mut s, hello("writer", "team", "m", None)).await;
    let _ = recv(&mut s).await;
    let metrics = http_get(&server, "/metrics").await;
    assert!(metrics.contains("zestor_connections 1"), "{metrics}");
    assert!(
        metrics.contains("# TYPE zestor_frames_in_total counter"),
        "{metrics}"
    );
    assert!(metrics.contains("zestor_sync_lag_events_max 0"), "{metrics}");
    server.stop().await;
}

#[test]
fn two_servers_on_one_postgres_relay_each_others_writes() {
    let Some(url) = pg::url("two_servers_on_one_postgres_relay_each_others_writes") else {
        return;
    };
    pg::run(async {
        let schema = pg::create_schema(url).await;
        let database = || Database::Postgres {
            conn: url.to_owned(),
            schema: schema.clone(),
        };
        let (one, two) = (start_on(database()).await, start_on(database()).await);
        let mut a = connect(&one).await;
        let mut b = connect(&two).await;
        for (s, name) in [(&mut a, "a"), (&mut b, "b")] {
            send(s, hello("writer", "team", name, None)).await;
            assert_eq!(recv(s).await["type"], "welcome");
            assert_eq!(recv(s).await["type"], "snapshot");
        }
        send(
            &mut a,
            json!({"type": "push", "ops": [set("a1", "t1", json!({"title": "via one"}))]}),
        )
        .await;
        send(
            &mut b,
            json!({"type": "push", "ops": [set("b1", "t2", json!({"title": "via two"}))]}),
        )
        .await;
        // Each client sees both writes, in the same revision order.
        let mut seen = [Vec::new(), Vec::new()];
        for (i, s) in [&mut a, &mut b].into_iter().enumerate() {
            while seen[i].len() < 2 {
                let m = recv(s).await;
                if m["type"] == "changes" {
                    for e in m["events"].as_array().unwrap() {
                        seen[i].push((e["rev"].as_u64().unwrap(), e["key"].as_str().unwrap().to_owned()));
                    }
                }
            }
        }
        assert_eq!(seen[0], seen[1]);
        assert_eq!(seen[0].iter().map(|(r, _)| *r).collect::<Vec<_>>(), [1, 2]);
        one.stop().await;
        two.stop().await;
        pg::drop_schema(url, &schema).await;
    });
}

#[tokio::test]
async fn browsers_from_other_origins_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let db = support::fresh_db("server-origin");
    let server = start_with(Database::Sqlite(db), vec!["https://app.example".into()]).await;
    let request = |origin: &str| {
        let mut r = format!("ws://{}/sync", server.address)
            .into_client_request()
            .unwrap();
        r.headers_mut().insert("origin", origin.parse().unwrap());
        r
    };
    let refused = tokio_tungstenite::connect_async(request("https://evil.example")).await;
    assert!(refused.is_err(), "a foreign origin must not get a socket");
    let (mut ok, _) = tokio_tungstenite::connect_async(request("https://app.example"))
        .await
        .unwrap();
    send(&mut ok, hello("writer", "team", "o", None)).await;
    assert_eq!(recv(&mut ok).await["type"], "welcome");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_without_stalling_the_others() {
    let db = support::fresh_db("server-slow");
    let server = start(&db).await;
    let mut slow = connect(&server).await;
    let mut reader = connect(&server).await;
    let mut writer = connect(&server).await;
    for (s, name) in [
        (&mut slow, "slow"),
        (&mut reader, "reader"),
        (&mut writer, "writer"),
    ] {
        send(s, hello("writer", "team", name, None)).await;
        assert_eq!(recv(s).await["type"], "welcome");
        assert_eq!(recv(s).await["type"], "snapshot");
    }
    // `slow` never reads again. 40 MB of changes fill every buffer between
    // it and the server; the others must keep up regardless.
    let big = "x".repeat(100_000);
    for round in 0..400 {
        let op = set(
            &format!("w{round}"),
            &format!("k{}", round % 20),
            json!({"title": big, "n": round}),
        );
        send(&mut writer, json!({"type": "push", "ops": [op]})).await;
        loop {
            let m = recv(&mut writer).await;
            if m["type"] == "ack" {
                break;
            }
        }
        loop {
            let m = recv(&mut reader).await;
            if m["type"] == "changes" && m["events"][0]["value"]["n"] == round {
                break;
            }
        }
    }
    let metrics = http_get(&server, "/metrics").await;
    assert!(
        metrics.contains("zestor_connections 2"),
        "the slow client was cut off: {metrics}"
    );
    drop(slow);
    server.stop().await;
}

#[tokio::test]
async fn pushes_sent_back_to_back_are_applied_and_answered_in_order() {
    let db = support::fresh_db("server-pipelined");
    let server = start(&db).await;
    let mut a = connect(&server).await;
    send(&mut a, hello("writer", "team", "a", None)).await;
    assert_eq!(recv(&mut a).await["type"], "welcome");
    assert_eq!(recv(&mut a).await["type"], "snapshot");
    // Each push depends on the one before (compare-and-set on the version it
    // leaves), all sent before any answer is read: they are applied
    // together, in order. The bad one in the middle fails alone.
    const N: u64 = 200;
    let mut frames = Vec::new();
    for i in 0..N {
        let mut op = set(&format!("p{i}"), "counter", json!({"title": format!("v{i}")}));
        op["if_version"] = json!(i);
        frames.push(Message::Text(
            json!({"type": "push", "ops": [op]}).to_string().into(),
        ));
        if i == N / 2 {
            let bad = set("bad", "other", json!({"nope": 1}));
            frames.push(Message::Text(
                json!({"type": "push", "ops": [bad]}).to_string().into(),
            ));
        }
    }
    for frame in frames {
        a.feed(frame).await.unwrap();
    }
    a.flush().await.unwrap();
    let mut answers = Vec::new();
    while answers.len() < N as usize + 1 {
        let m = recv(&mut a).await;
        if m["type"] == "ack" || m["type"] == "reject" {
            answers.push(m);
        }
    }
    let ids: Vec<&str> = answers.iter().map(|m| m["op_id"].as_str().unwrap()).collect();
    let mut expected: Vec<String> = (0..N).map(|i| format!("p{i}")).collect();
    expected.insert(N as usize / 2 + 1, "bad".into());
    assert_eq!(ids, expected);
    for m in &answers {
        if m["op_id"] == "bad" {
            assert_eq!(
                (m["type"].as_str(), m["code"].as_str()),
                (Some("reject"), Some("validation"))
            );
        } else {
            assert_eq!(m["type"], "ack", "{m}");
        }
    }
    assert_eq!(answers.last().unwrap()["version"], json!(N));
    server.stop().await;
}

#[tokio::test]
async fn large_pushes_sent_back_to_back_are_all_answered() {
    let db = support::fresh_db("server-pipelined-large");
    let server = start(&db).await;
    let mut a = connect(&server).await;
    send(&mut a, hello("writer", "team", "a", None)).await;
    assert_eq!(recv(&mut a).await["type"], "welcome");
    assert_eq!(recv(&mut a).await["type"], "snapshot");
    // Five pushes of 1,000 ops each: their 5,000 answers do not fit the
    // session's queue of 1,024 messages at once, so they are sent in rounds.
    for p in 0..5 {
        let ops: Vec<Value> = (0..1_000)
            .map(|i| {
                set(
                    &format!("{p}-{i}"),
                    &format!("k{i}"),
                    json!({"title": format!("{p}")}),
                )
            })
            .collect();
        a.feed(Message::Text(
            json!({"type": "push", "ops": ops}).to_string().into(),
        ))
        .await
        .unwrap();
    }
    a.flush().await.unwrap();
    let mut acks = 0;
    while acks < 5_000 {
        let m = recv(&mut a).await;
        assert_ne!(m["type"], "error", "{m}");
        assert_ne!(m["type"], "reject", "{m}");
        if m["type"] == "ack" {
            acks += 1;
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn an_op_breaking_an_identifier_rule_is_rejected_alone_on_every_reconnect() {
    let db = support::fresh_db("server-identifiers");
    let server = start(&db).await;
    let long_key = "k".repeat(store_core::MAX_KEY_BYTES + 1);
    let long_id = "o".repeat(ServerConfig::default().limits.max_id_bytes + 1);
    let push = json!({"type": "push", "ops": [
        set("i1", "before", json!({"title": "a"})),
        set("i2", &long_key, json!({"title": "b"})),
        set(&long_id, "id", json!({"title": "c"})),
        set("i3", "a\u{0}b", json!({"title": "d"})),
        set("i4", "after", json!({"title": "e"})),
    ]});
    let expected = [
        ("i1", "ack", None),
        ("i2", "reject", Some("key_too_long")),
        (long_id.as_str(), "reject", Some("bad_message")),
        ("i3", "reject", Some("invalid_key")),
        ("i4", "ack", None),
    ];
    // A client re-pushes its pending ops on every new connection: each time
    // the bad ones are refused alone, and the session goes on.
    for round in 0..2 {
        let mut a = connect(&server).await;
        send(&mut a, hello("writer", "team", "a", None)).await;
        assert_eq!(recv(&mut a).await["type"], "welcome");
        assert_eq!(recv(&mut a).await["type"], "snapshot");
        send(&mut a, push.clone()).await;
        let mut answers = Vec::new();
        while answers.len() < expected.len() {
            let m = recv(&mut a).await;
            assert_ne!(m["type"], "error", "round {round}: {m}");
            if m["type"] == "ack" || m["type"] == "reject" {
                answers.push(m);
            }
        }
        let got: Vec<(&str, &str, Option<&str>)> = answers
            .iter()
            .map(|m| {
                (
                    m["op_id"].as_str().unwrap(),
                    m["type"].as_str().unwrap(),
                    m["code"].as_str(),
                )
            })
            .collect();
        assert_eq!(got, expected, "round {round}");
        send(&mut a, json!({"type": "ping", "nonce": 7})).await;
        let pong = loop {
            let m = recv(&mut a).await;
            if m["type"] != "changes" {
                break m;
            }
        };
        assert_eq!(
            (pong["type"].as_str(), pong["nonce"].as_u64()),
            (Some("pong"), Some(7))
        );
    }
    server.stop().await;
}

/// The next `n` acks and rejects.
async fn answers(a: &mut Socket, n: usize) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    while out.len() < n {
        let m = recv(a).await;
        assert_ne!(m["type"], "error", "{m}");
        if m["type"] == "ack" || m["type"] == "reject" {
            out.push(m);
        }
    }
    out
}

#[tokio::test]
async fn a_patch_merges_into_the_stored_value_and_its_ack_carries_the_result() {
    let db = support::fresh_db("server-patch");
    let server = start(&db).await;
    let patch = |op_id: &str, key: &str, value: Value| json!({"op_id": op_id, "kind": "task", "key": key, "action": "patch", "value": value});
    let mut a = connect(&server).await;
    let mut v2 = hello("writer", "team", "a", None);
    v2["protocol"] = json!(2);
    send(&mut a, v2).await;
    let welcome = recv(&mut a).await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["protocol"].as_u64()),
        (Some("welcome"), Some(2))
    );
    assert_eq!(recv(&mut a).await["type"], "snapshot");
    send(
        &mut a,
        json!({"type": "push", "ops": [
            set("p1", "k", json!({"title": "a", "owner": "x"})),
            patch("p2", "k", json!({"owner": null, "due": 1})),
            patch("p3", "k", json!({"due": 1})),
            patch("p4", "missing", json!({"title": "z"})),
            patch("p5", "k", json!({"title": null})),
        ]}),
    )
    .await;
    let got = answers(&mut a, 5).await;
    assert_eq!(got[0]["result"], "created");
    assert_eq!(
        (&got[1]["result"], got[1]["version"].as_u64(), &got[1]["value"]),
        (&json!("updated"), Some(2), &json!({"title": "a", "due": 1})),
        "the ack of a patch that changed the value carries it"
    );
    assert_eq!(got[2]["result"], "unchanged");
    assert!(got[2].get("value").is_none(), "{}", got[2]);
    assert_eq!(
        (&got[3]["type"], &got[3]["code"]),
        (&json!("reject"), &json!("key_not_found"))
    );
    assert_eq!(
        (&got[4]["type"], &got[4]["code"]),
        (&json!("reject"), &json!("validation")),
        "the merged value is validated: {}",
        got[4]
    );

    // A protocol 1 session is served, and refuses a patch alone.
    let mut b = connect(&server).await;
    send(&mut b, hello("writer", "team", "b", None)).await;
    assert_eq!(recv(&mut b).await["protocol"], 1);
    send(
        &mut b,
        json!({"type": "push", "ops": [patch("q1", "k", json!({"due": 2})), set("q2", "k2", json!({"title": "b"}))]}),
    )
    .await;
    let got = answers(&mut b, 2).await;
    assert_eq!(
        (&got[0]["op_id"], &got[0]["code"]),
        (&json!("q1"), &json!("bad_message"))
    );
    assert!(
        got[0]["message"].as_str().unwrap().contains("protocol 2"),
        "{}",
        got[0]
    );
    assert_eq!((&got[1]["op_id"], &got[1]["type"]), (&json!("q2"), &json!("ack")));
    server.stop().await;
}
