//! The WebSocket side of `docs/protocol.md`, checked the way an independent
//! client sees it: a real server on port 0 over a real SQLite file, real
//! sockets, and frames written byte by byte where a WebSocket library would
//! refuse to send them (invalid UTF-8, a frame larger than any limit).
//!
//! Each test asserts the `error` message and the close code the client
//! receives; a connection dropped without a close frame shows as `None`
//! (what a browser reports as 1006).

mod support;
#[path = "support/server.rs"]
mod test_server;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use store_core::StoreOptions;
use store_core::sync::session::ServerConfig;
use sync_server::backend::sqlite::Synchronous;
use sync_server::server::{AppState, Database, Metrics, Stores, Tokens};
use test_server::{Server, Socket, recv, send, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// A server with `--allow-origin` set to `allowed_origins` and
/// `--send-timeout-ms` to `send_timeout`.
async fn start(name: &str, allowed_origins: &[&str], send_timeout: Duration) -> Server {
    let mut tokens = Tokens::default();
    tokens.grant("writer", "team", store_core::sync::Rights::ReadWrite);
    spawn(|shutdown| AppState {
        stores: Stores::new(
            Database::Sqlite(support::fresh_db(name)),
            Synchronous::Normal,
            StoreOptions::new(),
        ),
        auth: tokens.into(),
        session: ServerConfig {
            heartbeat_ms: 600_000,
            ..ServerConfig::default()
        },
        metrics: Metrics::default(),
        allowed_origins: allowed_origins.iter().map(|o| (*o).to_owned()).collect(),
        send_timeout,
        shutdown,
    })
    .await
}

impl Server {
    fn url(&self) -> String {
        format!("ws://{}/sync", self.address)
    }
}

/// Opens a WebSocket, with an `Origin` header when given one.
async fn open(
    server: &Server,
    origin: Option<&str>,
) -> Result<Socket, tokio_tungstenite::tungstenite::Error> {
    let mut request = server.url().into_client_request().unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("origin", origin.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// Opens a session: `hello`, then its `welcome` and initial snapshot.
async fn join(socket: &mut Socket, client_id: &str) {
    send(
        socket,
        json!({"type": "hello", "protocol": 1, "namespace": "team", "token": "writer", "client_id": client_id}),
    )
    .await;
    assert_eq!(recv(socket).await["type"], "welcome");
    assert_eq!(recv(socket).await["type"], "snapshot");
}

/// How a connection ended, as the client saw it.
#[derive(Debug)]
struct Ending {
    /// The protocol messages received until the end, in order.
    messages: Vec<Value>,
    /// The code of the server's close frame; `None` when the connection
    /// ended without one (a browser's 1006).
    close: Option<u16>,
}

impl Ending {
    /// The last message must be a fatal `error` with `code`; returns its
    /// human-readable `message`.
    fn fatal_error(&self, code: &str) -> String {
        let last = self
            .messages
            .last()
            .unwrap_or_else(|| panic!("no error message: {self:?}"));
        assert_eq!(
            (
                last["type"].as_str(),
                last["code"].as_str(),
                last["fatal"].as_bool()
            ),
            (Some("error"), Some(code), Some(true)),
            "{self:?}"
        );
        last["message"].as_str().unwrap().to_owned()
    }
}

/// Reads until the connection ends.
async fn ending(socket: &mut Socket) -> Ending {
    let mut messages = Vec::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(60), socket.next())
            .await
            .expect("the connection ends within 60 s");
        match frame {
            Some(Ok(Message::Text(text))) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] != "ping" {
                    messages.push(v);
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Ending {
                    messages,
                    close: Some(frame.map_or(1005, |f| u16::from(f.code))),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                return Ending {
                    messages,
                    close: None,
                };
            }
        }
    }
}

/// A client frame as RFC 6455 lays it out (final, masked), written by hand
/// so that it can say what a WebSocket library would refuse to.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n <= 0xffff => {
            frame.push(0x80 | 126);
            frame.extend((n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend((n as u64).to_be_bytes());
        }
    }
    let mask = [0x5a, 0x13, 0xc4, 0x7e];
    frame.extend(mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Writes raw bytes on the socket's TCP stream, after the handshake.
/// Returns whether they were all written (the server may stop reading).
async fn write_raw(socket: &mut Socket, bytes: &[u8]) -> bool {
    let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = socket.get_mut() else {
        panic!("a plain TCP stream");
    };
    tcp.write_all(bytes).await.is_ok() && tcp.flush().await.is_ok()
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

/// The value of a metric at `/metrics`, if the server exports it.
async fn metric(server: &Server, name: &str) -> Option<u64> {
    http_get(server, "/metrics")
        .await
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

// ---- 1. a client that stops reading ----

#[tokio::test]
async fn a_client_that_stops_reading_is_sent_slow_consumer_and_4008() {
    // The server gives up on a client it could not write to for 3 s.
    let server = start("ws-slow", &[], Duration::from_secs(3)).await;
    let mut slow = open(&server, None).await.unwrap();
    let mut writer = open(&server, None).await.unwrap();
    join(&mut slow, "slow").await;
    join(&mut writer, "writer").await;
    // `slow` stops reading. Changes of 100 KB each fill every buffer between
    // it and the server, until the server gives up on it.
    let big = "x".repeat(100_000);
    let mut round = 0;
    loop {
        let op = json!({"op_id": format!("w{round}"), "kind": "task", "key": format!("k{}", round % 20),
            "action": "set", "value": {"title": big, "n": round}});
        send(&mut writer, json!({"type": "push", "ops": [op]})).await;
        while recv(&mut writer).await["type"] != "ack" {}
        round += 1;
        if metric(&server, "zestor_slow_consumers_total").await.unwrap_or(0) > 0 {
            break;
        }
        // (A server that cuts the client off without a word ends up here.)
        if metric(&server, "zestor_connections").await == Some(1) {
            break;
        }
        assert!(
            round < 2_000,
            "the server never gave up on the client that stopped reading"
        );
    }
    // The server has given up and waits (up to the send timeout) for the
    // client to take its last frames. `slow` reads again: the changes that
    // were already on their way, then the error and the close frame.
    let end = ending(&mut slow).await;
    let message = end.fatal_error("slow_consumer");
    assert!(message.contains("read"), "{message}");
    assert!(
        end.messages[..end.messages.len() - 1]
            .iter()
            .all(|m| m["type"] == "changes"),
        "only changes before the error"
    );
    assert_eq!(end.close, Some(4008));
    // The writer was not affected (it still has its own changes to read).
    send(&mut writer, json!({"type": "ping", "nonce": 7})).await;
    while recv(&mut writer).await["type"] != "pong" {}
    server.stop().await;
}

// ---- 2. the close handshake ----

#[tokio::test]
async fn a_close_frame_is_answered_after_what_was_pushed_before_it_is_applied() {
    let server = start("ws-close", &[], Duration::from_secs(10)).await;
    let mut a = open(&server, None).await.unwrap();
    join(&mut a, "a").await;
    // A push, then at once a normal close: the server applies the push, then
    // answers the close with 1000.
    let op = json!({"op_id": "o1", "kind": "task", "key": "before-close", "action": "set", "value": 1});
    send(&mut a, json!({"type": "push", "ops": [op]})).await;
    a.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    })))
    .await
    .unwrap();
    let end = ending(&mut a).await;
    assert_eq!(end.close, Some(1000), "{end:?}");
    // Once the close is answered, the write is durable.
    let mut b = open(&server, None).await.unwrap();
    send(
        &mut b,
        json!({"type": "hello", "protocol": 1, "namespace": "team", "token": "writer", "client_id": "b"}),
    )
    .await;
    assert_eq!(recv(&mut b).await["type"], "welcome");
    let snapshot = recv(&mut b).await;
    assert_eq!(snapshot["entries"][0]["key"], "before-close", "{snapshot}");
    // A close with another code is answered with that code.
    b.send(Message::Close(Some(CloseFrame {
        code: CloseCode::Away,
        reason: "".into(),
    })))
    .await
    .unwrap();
    assert_eq!(ending(&mut b).await.close, Some(1001));
    server.stop().await;
}

// ---- 3. invalid UTF-8 and frames over the limit ----

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_is_bad_message_and_1007() {
    let server = start("ws-utf8", &[], Duration::from_secs(10)).await;
    for joined in [false, true] {
        let mut s = open(&server, None).await.unwrap();
        if joined {
            join(&mut s, "u").await;
        }
        let mut payload = br#"{"type":"ping","nonce":1,"note":""#.to_vec();
        payload.extend([0xc3, 0x28, 0xff]);
        payload.extend(br#""}"#);
        assert!(write_raw(&mut s, &masked_frame(0x1, &payload)).await);
        let end = ending(&mut s).await;
        let message = end.fatal_error("bad_message");
        assert!(message.contains("UTF-8"), "{message}");
        assert_eq!(end.close, Some(1007), "{end:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_frame_of_10_mb_is_too_large_and_1009() {
    // The limit is 1 MiB (the default `max_frame_bytes`).
    let server = start("ws-large", &[], Duration::from_secs(10)).await;
    let mut s = open(&server, None).await.unwrap();
    join(&mut s, "l").await;
    let payload = format!(
        r#"{{"type":"push","ops":[{{"op_id":"1","kind":"t","key":"k","action":"set","value":"{}"}}]}}"#,
        "x".repeat(10_000_000)
    );
    // The server reads the frame's header, answers, and reads on (discarding)
    // until the client has seen its close frame; the client's write of the
    // whole frame may still fail where the server gives up reading first.
    let _ = write_raw(&mut s, &masked_frame(0x1, payload.as_bytes())).await;
    let end = ending(&mut s).await;
    let message = end.fatal_error("too_large");
    assert!(message.contains("1048576"), "{message}");
    assert_eq!(end.close, Some(1009), "{end:?}");
    // A message of many frames over the limit too (fragments of 600 KB).
    let mut s = open(&server, None).await.unwrap();
    join(&mut s, "m").await;
    let chunk = vec![b'x'; 600_000];
    let mut frames = Vec::new();
    for i in 0..4 {
        // Text first, then continuations; only the last one is final.
        let opcode = if i == 0 { 0x1 } else { 0x0 };
        let mut frame = masked_frame(opcode, &chunk);
        if i < 3 {
            frame[0] &= 0x7f;
        }
        frames.extend(frame);
    }
    let _ = write_raw(&mut s, &frames).await;
    let end = ending(&mut s).await;
    end.fatal_error("too_large");
    assert_eq!(end.close, Some(1009), "{end:?}");
    server.stop().await;
}

// ---- 4. binary frames ----

#[tokio::test]
async fn a_binary_frame_is_bad_message_and_1003() {
    let server = start("ws-binary", &[], Duration::from_secs(10)).await;
    // Even a binary frame holding a valid hello is refused: text only.
    let mut s = open(&server, None).await.unwrap();
    let hello =
        json!({"type": "hello", "protocol": 1, "namespace": "team", "token": "writer", "client_id": "b"});
    s.send(Message::Binary(hello.to_string().into_bytes().into()))
        .await
        .unwrap();
    let end = ending(&mut s).await;
    let message = end.fatal_error("bad_message");
    assert!(message.contains("binary"), "{message}");
    assert_eq!(end.close, Some(1003), "{end:?}");
    // In a session too.
    let mut s = open(&server, None).await.unwrap();
    join(&mut s, "b2").await;
    s.send(Message::Binary(
        json!({"type": "ping", "nonce": 1})
            .to_string()
            .into_bytes()
            .into(),
    ))
    .await
    .unwrap();
    let end = ending(&mut s).await;
    end.fatal_error("bad_message");
    assert_eq!(end.close, Some(1003), "{end:?}");
    server.stop().await;
}

// ---- 5. field types ----

#[tokio::test]
async fn a_field_of_the_wrong_type_is_named_in_the_error() {
    let server = start("ws-types", &[], Duration::from_secs(10)).await;
    let cases = [
        (
            json!({"type": "hello", "protocol": "1", "namespace": "team", "token": "writer", "client_id": "c"}),
            false,
            "protocol",
        ),
        (json!({"type": "ping", "nonce": "3"}), true, "nonce"),
        (
            json!({"type": "push", "ops": [{"op_id": "1", "kind": "task", "key": 5, "action": "set", "value": 1}]}),
            true,
            "ops[0].key",
        ),
    ];
    for (frame, joined, field) in cases {
        let mut s = open(&server, None).await.unwrap();
        if joined {
            join(&mut s, "c").await;
        }
        send(&mut s, frame.clone()).await;
        let end = ending(&mut s).await;
        let message = end.fatal_error("bad_message");
        assert!(message.contains(field), "{frame}: {message}");
        assert_eq!(end.close, Some(1002), "{end:?}");
    }
    server.stop().await;
}

// ---- 7. origins ----

#[tokio::test]
async fn by_default_only_pages_of_the_servers_own_host_may_connect() {
    let server = start("ws-origin", &[], Duration::from_secs(10)).await;
    let port = server.address.port();
    // Another site: refused at the handshake (HTTP 403).
    match open(&server, Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        other => panic!("a foreign origin must not get a socket: {:?}", other.map(|_| ())),
    }
    // The server's own host (any port: the page may come from a proxy or a
    // server on another port of the same host), and clients that send no
    // Origin (native clients): allowed.
    for origin in [
        Some(format!("http://127.0.0.1:{port}")),
        Some("http://127.0.0.1:1".to_owned()),
        None,
    ] {
        let mut s = open(&server, origin.as_deref())
            .await
            .unwrap_or_else(|e| panic!("{origin:?}: {e}"));
        join(&mut s, "o").await;
    }
    server.stop().await;

    // `--allow-origin` adds origins; the server's own host stays allowed.
    let server = start(
        "ws-origin-list",
        &["https://app.example"],
        Duration::from_secs(10),
    )
    .await;
    let port = server.address.port();
    for origin in ["https://app.example", &format!("http://127.0.0.1:{port}")] {
        join(&mut open(&server, Some(origin)).await.unwrap(), "o").await;
    }
    assert!(open(&server, Some("https://evil.example")).await.is_err());
    assert!(open(&server, Some("null")).await.is_err());
    server.stop().await;

    // `--allow-origin '*'`: any origin.
    let server = start("ws-origin-any", &["*"], Duration::from_secs(10)).await;
    join(
        &mut open(&server, Some("https://evil.example")).await.unwrap(),
        "o",
    )
    .await;
    server.stop().await;
}
