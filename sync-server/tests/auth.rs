//! Tokens end to end: real JWTs signed in the tests with real keys
//! (`tests/keys/`), verified by a real server over real WebSockets; a JWKS
//! served over HTTP by the test and rotated; expiry mid-session; the
//! native client refreshing its token; SIGHUP revoking static tokens.

mod support;
#[path = "support/server.rs"]
mod test_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use store_core::StoreOptions;
use store_core::sync::session::ServerConfig;
use sync_server::backend::sqlite::Synchronous;
use sync_server::client::{Client, ClientOptions, TokenSource};
use sync_server::server::{AppState, Auth, Database, JwtConfig, JwtKeys, Metrics, Stores};
use test_server::{Server, Socket, recv, send, spawn};
use tokio_tungstenite::tungstenite::Message;

const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/keys");

fn pem(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}/{name}")).unwrap()
}

/// A signing key of the tests, with its algorithm and key id.
struct Signer {
    key: EncodingKey,
    algorithm: Algorithm,
    kid: Option<&'static str>,
}

impl Signer {
    fn rsa(file: &str, kid: &'static str) -> Signer {
        Signer {
            key: EncodingKey::from_rsa_pem(&pem(file)).unwrap(),
            algorithm: Algorithm::RS256,
            kid: Some(kid),
        }
    }

    fn ec(kid: &'static str) -> Signer {
        Signer {
            key: EncodingKey::from_ec_pem(&pem("ec.pem")).unwrap(),
            algorithm: Algorithm::ES256,
            kid: Some(kid),
        }
    }

    fn ed(kid: &'static str) -> Signer {
        Signer {
            key: EncodingKey::from_ed_pem(&pem("ed25519.pem")).unwrap(),
            algorithm: Algorithm::EdDSA,
            kid: Some(kid),
        }
    }

    fn hmac(secret: &[u8]) -> Signer {
        Signer {
            key: EncodingKey::from_secret(secret).unwrap(),
            algorithm: Algorithm::HS256,
            kid: None,
        }
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.algorithm);
        header.kid = self.kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }

    /// The public half, as a JWK.
    fn jwk(&self) -> Jwk {
        let mut jwk = Jwk::from_encoding_key(&self.key, self.algorithm).unwrap();
        jwk.common.key_id = self.kid.map(str::to_owned);
        jwk
    }
}

fn jwks(signers: &[&Signer]) -> String {
    serde_json::to_string(&JwkSet {
        keys: signers.iter().map(|s| s.jwk()).collect(),
    })
    .unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims granting `grants` (namespace → rights), valid for an hour, for
/// the tests' audience and issuer.
fn claims(grants: Value) -> Value {
    json!({
        "sub": "alice",
        "aud": "zestor-tests",
        "iss": "https://id.example",
        "iat": now(),
        "exp": now() + 3600,
        "zestor": {"ns": grants},
    })
}

fn with(mut claims: Value, field: &str, value: Value) -> Value {
    claims[field] = value;
    claims
}

fn without(mut claims: Value, field: &str) -> Value {
    claims.as_object_mut().unwrap().remove(field);
    claims
}

fn config(keys: JwtKeys) -> JwtConfig {
    JwtConfig {
        audience: Some("zestor-tests".into()),
        issuer: Some("https://id.example".into()),
        leeway: Duration::ZERO,
        ..JwtConfig::new(keys)
    }
}

async fn start(auth: Auth, name: &str) -> Server {
    let db = support::fresh_db(name);
    spawn(move |shutdown| AppState {
        stores: Stores::new(Database::Sqlite(db), Synchronous::Normal, StoreOptions::new()),
        auth,
        session: ServerConfig {
            heartbeat_ms: 60_000,
            ..ServerConfig::default()
        },
        metrics: Metrics::default(),
        allowed_origins: Vec::new(),
        send_timeout: Duration::from_secs(5),
        shutdown,
    })
    .await
}

async fn connect(address: std::net::SocketAddr) -> Socket {
    tokio_tungstenite::connect_async(format!("ws://{address}/sync"))
        .await
        .unwrap()
        .0
}

/// How a session with `token` on `namespace` starts.
#[derive(Debug, PartialEq)]
enum Answer {
    /// Welcomed with these rights.
    Welcome(String),
    /// Refused with this code, this message and this close code.
    Refused(String, String, Option<u16>),
}

/// A hello, and the server's answer; a welcomed socket is returned open.
async fn hello(address: std::net::SocketAddr, token: &str, namespace: &str) -> (Answer, Socket) {
    let mut socket = connect(address).await;
    let hello =
        json!({"type": "hello", "protocol": 2, "namespace": namespace, "token": token, "client_id": "c"});
    send(&mut socket, hello).await;
    let first = recv_or_close(&mut socket).await;
    let answer = match first {
        Some(m) if m["type"] == "welcome" => {
            assert_eq!(recv(&mut socket).await["type"], "snapshot");
            Answer::Welcome(m["rights"].as_str().unwrap().to_owned())
        }
        Some(m) if m["type"] == "error" => {
            assert_eq!(m["fatal"], true);
            Answer::Refused(
                m["code"].as_str().unwrap().to_owned(),
                m["message"].as_str().unwrap().to_owned(),
                close_code(&mut socket).await,
            )
        }
        other => panic!("unexpected answer {other:?}"),
    };
    (answer, socket)
}

/// The next message, or `None` when the socket closes first.
async fn recv_or_close(socket: &mut Socket) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("an answer within 10 s")
        {
            Some(Ok(Message::Text(text))) => {
                let v: Value = serde_json::from_str(&text).unwrap();
                if v["type"] != "ping" {
                    return Some(v);
                }
            }
            Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

async fn close_code(socket: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("closed within 10 s")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// Asserts the session was refused with `code` and a message holding `says`.
fn assert_refused(answer: &Answer, code: &str, says: &str) {
    let close = if code == "forbidden" { 4003 } else { 4001 };
    match answer {
        Answer::Refused(c, message, close_code) => {
            assert_eq!((c.as_str(), *close_code), (code, Some(close)), "{message}");
            assert!(message.contains(says), "{message:?} should say {says:?}");
        }
        other => panic!("expected {code} ({says}), got {other:?}"),
    }
}

/// A write by `socket` is acked; the bystander sees it.
async fn write_reaches(socket: &mut Socket, bystander: &mut Socket, key: &str) {
    let op = json!({"op_id": key, "kind": "note", "key": key, "action": "set", "value": {"by": key}});
    send(socket, json!({"type": "push", "ops": [op]})).await;
    let mut acked = false;
    while !acked {
        let m = recv(socket).await;
        assert_ne!(m["type"], "reject", "{m}");
        acked = m["type"] == "ack";
    }
    let change = recv(bystander).await;
    assert_eq!(change["events"][0]["key"], key, "{change}");
}

#[tokio::test]
async fn jwts_from_a_jwks_open_sessions_and_each_failure_gets_its_code() {
    let (rsa, ec, ed) = (
        Signer::rsa("rsa.pem", "rsa-1"),
        Signer::ec("ec-1"),
        Signer::ed("ed-1"),
    );
    let file = support::fresh_db("jwks").with_extension("json");
    std::fs::write(&file, jwks(&[&rsa, &ec, &ed])).unwrap();
    let auth = Auth::new(None, Some(config(JwtKeys::JwksFile(file))))
        .await
        .unwrap();
    let server = start(auth, "jwt-classes").await;
    let at = server.address;
    let rw = claims(json!({"team": "read_write", "other": "read_write"}));

    // A session that stays open through every refusal below.
    let (answer, mut bystander) = hello(at, &rsa.sign(&rw), "team").await;
    assert_eq!(answer, Answer::Welcome("read_write".into()));

    for signer in [&rsa, &ec, &ed] {
        let (answer, _) = hello(at, &signer.sign(&rw), "team").await;
        assert_eq!(
            answer,
            Answer::Welcome("read_write".into()),
            "{:?}",
            signer.algorithm
        );
    }
    let (answer, mut reader) = hello(at, &ec.sign(&claims(json!({"team": "read"}))), "team").await;
    assert_eq!(answer, Answer::Welcome("read".into()));

    let other_rsa = Signer::rsa("rsa2.pem", "rsa-1");
    let rsa_public_as_secret = Signer {
        kid: Some("rsa-1"),
        ..Signer::hmac(&pem("rsa.pub.pem"))
    };
    let unknown_kid = Signer::rsa("rsa.pem", "rsa-9");
    let no_kid = Signer {
        kid: None,
        ..Signer::rsa("rsa.pem", "")
    };
    let b64 = |v: Value| {
        use std::fmt::Write;
        // base64url without padding, by hand: the tests' own encoder.
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = v.to_string().into_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                let _ = out.write_char(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "kid": "rsa-1"})),
        b64(rw.clone())
    );

    let cases: Vec<(&str, String, &str, &str, &str)> = vec![
        (
            "bad signature",
            other_rsa.sign(&rw),
            "team",
            "unauthorized",
            "signature",
        ),
        ("alg none", alg_none, "team", "unauthorized", "not a JWT"),
        (
            "HS256 with the RSA public key",
            rsa_public_as_secret.sign(&rw),
            "team",
            "unauthorized",
            "algorithm",
        ),
        (
            "unknown kid",
            unknown_kid.sign(&rw),
            "team",
            "unauthorized",
            "unknown key id `rsa-9`",
        ),
        (
            "no kid among several keys",
            no_kid.sign(&rw),
            "team",
            "unauthorized",
            "names no key",
        ),
        (
            "expired",
            rsa.sign(&with(rw.clone(), "exp", json!(now() - 60))),
            "team",
            "unauthorized",
            "expired",
        ),
        (
            "in its last second",
            rsa.sign(&with(rw.clone(), "exp", json!(now()))),
            "team",
            "unauthorized",
            "expired",
        ),
        (
            "not yet valid",
            rsa.sign(&with(rw.clone(), "nbf", json!(now() + 600))),
            "team",
            "unauthorized",
            "not valid yet",
        ),
        (
            "wrong audience",
            rsa.sign(&with(rw.clone(), "aud", json!("billing"))),
            "team",
            "unauthorized",
            "audience",
        ),
        (
            "wrong issuer",
            rsa.sign(&with(rw.clone(), "iss", json!("https://evil.example"))),
            "team",
            "unauthorized",
            "issuer",
        ),
        (
            "malformed",
            "not-a-jwt".into(),
            "team",
            "unauthorized",
            "not a JWT",
        ),
        (
            "malformed parts",
            "a.b.c".into(),
            "team",
            "unauthorized",
            "not a JWT",
        ),
        (
            "no exp",
            rsa.sign(&without(rw.clone(), "exp")),
            "team",
            "unauthorized",
            "no `exp` claim",
        ),
        (
            "no grants claim",
            rsa.sign(&without(rw.clone(), "zestor")),
            "team",
            "unauthorized",
            "no `zestor` claim",
        ),
        (
            "malformed grants",
            rsa.sign(&with(rw.clone(), "zestor", json!({"ns": {"team": "admin"}}))),
            "team",
            "unauthorized",
            "`zestor` claim must be",
        ),
        (
            "namespace not granted",
            rsa.sign(&rw),
            "payroll",
            "forbidden",
            "namespace `payroll`",
        ),
    ];
    for (case, token, namespace, code, says) in &cases {
        let (answer, _) = hello(at, token, namespace).await;
        match &answer {
            Answer::Refused(..) => assert_refused(&answer, code, says),
            other => panic!("{case}: expected {code}, got {other:?}"),
        }
    }

    // An expiry past what the clock can hold is no expiry, not a crash.
    let (answer, _) = hello(at, &rsa.sign(&with(rw.clone(), "exp", json!(u64::MAX))), "team").await;
    assert_eq!(answer, Answer::Welcome("read_write".into()));

    // A read-only token's write is refused alone; the session stays.
    let op = json!({"op_id": "r1", "kind": "note", "key": "r1", "action": "set", "value": 1});
    send(&mut reader, json!({"type": "push", "ops": [op]})).await;
    let reject = recv(&mut reader).await;
    assert_eq!(
        (reject["type"].as_str(), reject["code"].as_str()),
        (Some("reject"), Some("forbidden"))
    );

    // The bystander was never affected: a write reaches it.
    let (_, mut writer) = hello(at, &ed.sign(&rw), "team").await;
    write_reaches(&mut writer, &mut bystander, "after-refusals").await;
    server.stop().await;
}

#[tokio::test]
async fn an_hs256_secret_and_grant_templates_over_sub() {
    let secret = b"0123456789abcdef0123456789abcdef-tests";
    let signer = Signer::hmac(secret);
    let auth = Auth::new(
        None,
        Some(JwtConfig {
            grants: vec![
                "user-{sub}=read_write".parse().unwrap(),
                "lobby=read".parse().unwrap(),
            ],
            ..config(JwtKeys::Secret(secret.to_vec()))
        }),
    )
    .await
    .unwrap();
    let server = start(auth, "jwt-hs256").await;
    let token = signer.sign(&without(claims(json!({})), "zestor"));
    let (answer, _) = hello(server.address, &token, "user-alice").await;
    assert_eq!(answer, Answer::Welcome("read_write".into()));
    let (answer, _) = hello(server.address, &token, "lobby").await;
    assert_eq!(answer, Answer::Welcome("read".into()));
    // The claim adds to the templates: the most of both.
    let token = signer.sign(&claims(json!({"lobby": "read_write"})));
    let (answer, _) = hello(server.address, &token, "lobby").await;
    assert_eq!(answer, Answer::Welcome("read_write".into()));
    let (answer, _) = hello(server.address, &token, "user-bob").await;
    assert_refused(&answer, "forbidden", "user-bob");
    // A token signed with another secret.
    let forged =
        Signer::hmac(b"another secret of at least 32 bytes!!").sign(&claims(json!({"lobby": "read"})));
    let (answer, _) = hello(server.address, &forged, "lobby").await;
    assert_refused(&answer, "unauthorized", "signature");
    // A secret too short to be safe is refused at start.
    let short = Auth::new(None, Some(config(JwtKeys::Secret(b"short".to_vec())))).await;
    assert!(short.unwrap_err().contains("32 bytes"));
    server.stop().await;
}

#[tokio::test]
async fn a_session_is_closed_when_its_token_expires() {
    let secret = b"0123456789abcdef0123456789abcdef-expiry";
    let signer = Signer::hmac(secret);
    let auth = Auth::new(None, Some(config(JwtKeys::Secret(secret.to_vec()))))
        .await
        .unwrap();
    let server = start(auth, "jwt-expiry").await;
    let long = signer.sign(&claims(json!({"team": "read_write"})));
    let (_, mut bystander) = hello(server.address, &long, "team").await;
    let short = signer.sign(&with(
        claims(json!({"team": "read_write"})),
        "exp",
        json!(now() + 2),
    ));
    let (answer, mut socket) = hello(server.address, &short, "team").await;
    assert_eq!(answer, Answer::Welcome("read_write".into()));
    let started = std::time::Instant::now();
    let error = recv(&mut socket).await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("unauthorized"))
    );
    assert!(error["message"].as_str().unwrap().contains("expired"), "{error}");
    assert_eq!(close_code(&mut socket).await, Some(4001));
    assert!(
        started.elapsed() <= Duration::from_secs(3),
        "closed at the expiry"
    );
    let (_, mut writer) = hello(server.address, &long, "team").await;
    write_reaches(&mut writer, &mut bystander, "after-expiry").await;
    // A fractional `exp` (a NumericDate may have one) is honoured as such.
    let fractional = signer.sign(&with(
        claims(json!({"team": "read_write"})),
        "exp",
        json!(now() as f64 + 3600.5),
    ));
    let (answer, mut writer) = hello(server.address, &fractional, "team").await;
    assert_eq!(answer, Answer::Welcome("read_write".into()));
    write_reaches(&mut writer, &mut bystander, "fractional-exp").await;
    server.stop().await;
}

/// A JWKS served over HTTP by the test: its text can be changed, and its
/// fetches are counted.
struct JwksServer {
    url: String,
    body: Arc<parking_lot::Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

async fn serve_jwks(body: String) -> JwksServer {
    let body = Arc::new(parking_lot::Mutex::new(body));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (b, f) = (body.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (b, f) = (b.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                b.lock().clone()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/.well-known/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    JwksServer { url, body, fetches }
}

#[tokio::test]
async fn a_jwks_url_is_fetched_again_for_an_unknown_kid_so_keys_rotate() {
    let (old, new) = (Signer::rsa("rsa.pem", "2026-11"), Signer::ed("2026-12"));
    let jwks_server = serve_jwks(jwks(&[&old])).await;
    let auth = Auth::new(
        None,
        Some(JwtConfig {
            jwks_min_refetch: Duration::ZERO,
            ..config(JwtKeys::JwksUrl(jwks_server.url.clone()))
        }),
    )
    .await
    .unwrap();
    assert_eq!(jwks_server.fetches.load(Ordering::SeqCst), 1, "fetched at start");
    let server = start(auth, "jwks-url").await;
    let rw = claims(json!({"team": "read_write"}));
    let (answer, _) = hello(server.address, &old.sign(&rw), "team").await;
    assert_eq!(answer, Answer::Welcome("read_write".into()));
    assert_eq!(
        jwks_server.fetches.load(Ordering::SeqCst),
        1,
        "a known kid is not fetched"
    );

    // The provider rotates: the new key is fetched on first sight.
    *jwks_server.body.lock() = jwks(&[&new]);
    let (answer, _) = hello(server.address, &new.sign(&rw), "team").await;
    assert_eq!(answer, Answer::Welcome("read_write".into()));
    assert_eq!(jwks_server.fetches.load(Ordering::SeqCst), 2);
    // The old key is gone from the set: its tokens are refused.
    let (answer, _) = hello(server.address, &old.sign(&rw), "team").await;
    assert_refused(&answer, "unauthorized", "unknown key id `2026-11`");
    server.stop().await;

    // With the default rate limit, an unknown kid right after a fetch does
    // not make the server fetch again.
    let auth = Auth::new(None, Some(config(JwtKeys::JwksUrl(jwks_server.url.clone()))))
        .await
        .unwrap();
    let server = start(auth, "jwks-url-limited").await;
    let fetched = jwks_server.fetches.load(Ordering::SeqCst);
    for _ in 0..3 {
        let (answer, _) = hello(server.address, &old.sign(&rw), "team").await;
        assert_refused(&answer, "unauthorized", "unknown key id");
    }
    assert_eq!(
        jwks_server.fetches.load(Ordering::SeqCst),
        fetched,
        "rate-limited"
    );
    // A JWKS that cannot be fetched at start is an error that says where.
    let missing = Auth::new(
        None,
        Some(config(JwtKeys::JwksUrl(format!("{}x", jwks_server.url)))),
    )
    .await;
    assert!(missing.unwrap_err().contains("cannot fetch the JWKS"));
    server.stop().await;
}

#[tokio::test]
async fn the_native_client_refreshes_an_expiring_token_and_its_writes_apply_once() {
    let secret = b"0123456789abcdef0123456789abcdef-native";
    let auth = Auth::new(None, Some(config(JwtKeys::Secret(secret.to_vec()))))
        .await
        .unwrap();
    let server = start(auth, "jwt-native").await;
    let issued = Arc::new(AtomicUsize::new(0));
    let source = {
        let issued = issued.clone();
        TokenSource::new(move || {
            issued.fetch_add(1, Ordering::SeqCst);
            // Each token lives 2 s: the session expires mid-test.
            let claims = with(claims(json!({"team": "read_write"})), "exp", json!(now() + 2));
            let token = Signer::hmac(secret).sign(&claims);
            async move { Ok(token) }
        })
    };
    let client = Client::connect(ClientOptions {
        token_source: Some(source),
        backoff_min: Duration::from_millis(20),
        ..ClientOptions::new(format!("ws://{}/sync", server.address), "team", "", "native-1")
    });
    // Writes every 100 ms for 4.5 s: across at least two expiries.
    let mut acks = Vec::new();
    for n in 1..=45 {
        let write = client
            .set("note", "counter", json!(n))
            .unwrap()
            .expect("a change");
        acks.push(write);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for write in acks {
        tokio::time::timeout(Duration::from_secs(20), write.acked())
            .await
            .expect("acked in time")
            .expect("acked");
    }
    assert!(issued.load(Ordering::SeqCst) >= 3, "a token per connection");
    // Every write applied exactly once: the counter's version is their count.
    let reader = Client::connect(ClientOptions::new(
        format!("ws://{}/sync", server.address),
        "team",
        Signer::hmac(secret).sign(&claims(json!({"team": "read"}))),
        "reader",
    ));
    let entry = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(entry) = reader.entry("note", "counter") {
                return entry;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(entry, (json!(45), 45));
    client.close().await;
    reader.close().await;
    server.stop().await;
}

/// The server binary on a free port with a tokens file; SIGHUP re-reads it.
#[cfg(unix)]
#[tokio::test]
async fn sighup_rereads_the_tokens_file_and_closes_revoked_sessions() {
    use std::io::BufRead;
    let tokens = support::fresh_db("tokens").with_extension("txt");
    std::fs::write(
        &tokens,
        "alice team read_write\nbob team read_write\ncarol team read_write\n",
    )
    .unwrap();
    let db = support::fresh_db("sighup");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sync-server"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(format!("sqlite://{}", db.display()))
        .arg("--tokens")
        .arg(&tokens)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address: std::net::SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    let hup = |child: &std::process::Child| {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };

    let (_, mut alice) = hello(address, "alice", "team").await;
    let (_, mut bob) = hello(address, "bob", "team").await;
    let (answer, mut carol) = hello(address, "carol", "team").await;
    assert_eq!(answer, Answer::Welcome("read_write".into()));

    // Alice is removed, Bob may only read now, Carol is unchanged.
    std::fs::write(&tokens, "bob team read\ncarol team read_write\n").unwrap();
    hup(&child);
    let error = recv(&mut alice).await;
    assert_eq!(error["code"], "unauthorized", "{error}");
    assert_eq!(close_code(&mut alice).await, Some(4001));
    let error = recv(&mut bob).await;
    assert_eq!(error["code"], "forbidden", "{error}");
    assert_eq!(close_code(&mut bob).await, Some(4003));
    let (answer, _) = hello(address, "bob", "team").await;
    assert_eq!(answer, Answer::Welcome("read".into()), "Bob comes back read-only");
    let (answer, _) = hello(address, "alice", "team").await;
    assert_refused(&answer, "unauthorized", "unknown token");

    // A broken file changes nothing: the previous tokens stay.
    std::fs::write(&tokens, "carol team admin\n").unwrap();
    hup(&child);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (answer, mut dave) = hello(address, "carol", "team").await;
    assert_eq!(answer, Answer::Welcome("read_write".into()));
    write_reaches(&mut dave, &mut carol, "after-reloads").await;
    child.kill().unwrap();
    child.wait().unwrap();
}
