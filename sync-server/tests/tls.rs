//! TLS end to end, with certificates the test makes (rcgen): a CA, and a
//! server certificate it signed for `localhost` and 127.0.0.1. The server
//! serves https and wss itself (`serve_tls`); the native client syncs over
//! `wss://` when it trusts the CA, and otherwise says why it cannot, and
//! keeps trying.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::json;
use store_core::StoreOptions;
use store_core::sync::Rights;
use store_core::sync::session::{ClientEvent, ServerConfig};
use sync_server::backend::sqlite::Synchronous;
use sync_server::client::{CaCerts, Client, ClientOptions, Events, Link, Update};
use sync_server::server::{AppState, Database, Metrics, Stores, Tls, Tokens, serve_tls};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(10);

/// A certificate authority of the test's own.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn certs(&self) -> CaCerts {
        CaCerts::from_pem(self.pem.as_bytes()).unwrap()
    }

    /// A server certificate for `names` and its key, as PEM.
    fn sign(&self, names: &[&str]) -> (String, String) {
        self.sign_with(
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap(),
        )
    }

    fn sign_with(&self, mut params: CertificateParams) -> (String, String) {
        params
            .distinguished_name
            .push(DnType::CommonName, "zestor test server");
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// PEM files in a folder of their own.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// The server's files for a certificate from `ca` for `names`.
    fn server(&self, ca: &Ca, names: &[&str]) -> Tls {
        let (cert, key) = ca.sign(names);
        self.tls(&cert, &key)
    }

    fn tls(&self, cert: &str, key: &str) -> Tls {
        let cert = self.write("cert.pem", cert);
        let key = self.write("key.pem", key);
        Tls::from_pem_files(cert, key).unwrap()
    }
}

struct Server {
    address: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

impl Server {
    /// A sync server over TLS on a free port; token `rw` may write `ns`.
    async fn start(tls: Tls) -> Server {
        let mut tokens = Tokens::default();
        tokens.grant("rw", "ns", Rights::ReadWrite);
        let (stop_tx, shutdown) = tokio::sync::watch::channel(false);
        let state = Arc::new(AppState {
            stores: Stores::new(
                Database::Sqlite(support::fresh_db("tls")),
                Synchronous::Full,
                StoreOptions::new(),
            ),
            auth: tokens.into(),
            session: ServerConfig::default(),
            metrics: Metrics::default(),
            allowed_origins: vec![],
            send_timeout: Duration::from_secs(1),
            shutdown,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(async move {
            serve_tls(listener, tls, state, None, stop_tx, async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Server {
            address,
            stop: Some(stop),
            done,
        }
    }

    fn url(&self, host: &str) -> String {
        format!("wss://{host}:{}/sync", self.address.port())
    }

    fn options(&self, client_id: &str, ca: Option<&Ca>) -> ClientOptions {
        let mut o = ClientOptions::new(self.url("localhost"), "ns", "rw", client_id);
        o.ca = ca.map(Ca::certs);
        o.backoff_min = Duration::from_millis(20);
        o.backoff_max = Duration::from_millis(200);
        o
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), self.done)
            .await
            .expect("graceful shutdown")
            .unwrap();
    }
}

/// An HTTPS client trusting `ca` alone.
fn https(ca: &Ca) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(
        rustls::pki_types::pem::PemObject::pem_slice_iter(ca.pem.as_bytes()).map(Result::unwrap),
    );
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .timeout(WAIT)
        .build()
        .unwrap()
}

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

/// The reason of the next disconnect.
async fn disconnected(events: &mut Events) -> String {
    let update = expect(events, |u| {
        assert!(
            !matches!(u, Update::Session(ClientEvent::Connected { .. })),
            "connected: {u:?}"
        );
        matches!(u, Update::Disconnected { .. })
    })
    .await;
    let Update::Disconnected { reason } = update else {
        unreachable!()
    };
    reason
}

#[tokio::test]
async fn a_client_trusting_the_ca_syncs_over_wss() {
    let ca = Ca::new("zestor test CA");
    let files = Files::new();
    let server = Server::start(files.server(&ca, &["localhost", "127.0.0.1"])).await;

    let watcher = Client::connect(server.options("watcher", Some(&ca)));
    let mut watched = watcher.events();
    expect(&mut watched, |u| {
        matches!(u, Update::Session(ClientEvent::Synced { .. }))
    })
    .await;

    // By IP address too: the certificate names 127.0.0.1.
    let mut options = server.options("writer", Some(&ca));
    options.url = server.url("127.0.0.1");
    let writer = Client::connect(options);
    let write = writer
        .set("task", "t1", json!({"title": "ship"}))
        .unwrap()
        .expect("a change to send");
    let ack = tokio::time::timeout(WAIT, write.acked()).await.unwrap().unwrap();
    assert_eq!((ack.version, ack.rev), (1, 1));
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

    // The other routes are served over https as well.
    let client = https(&ca);
    let base = format!("https://localhost:{}", server.address.port());
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok\n");
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("zestor_ops_acked_total 1"), "{metrics}");

    writer.close().await;
    watcher.close().await;
    server.stop().await;
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_disconnect_that_says_why_and_is_retried() {
    let ca = Ca::new("zestor test CA");
    let files = Files::new();
    let server = Server::start(files.server(&ca, &["localhost", "127.0.0.1"])).await;

    // Another CA: the server's certificate is not signed by it.
    let stranger = Ca::new("another CA");
    let client = Client::connect(server.options("c1", Some(&stranger)));
    let mut events = client.events();
    let write = client
        .set("task", "t1", json!(1))
        .unwrap()
        .expect("a change to send");
    let reason = disconnected(&mut events).await;
    assert!(
        reason.starts_with(&format!("cannot connect to {}: ", server.url("localhost"))),
        "{reason}"
    );
    assert!(reason.contains("not signed by a trusted CA"), "{reason}");
    assert!(reason.contains("UnknownIssuer"), "{reason}");
    // Retried, and refused again: nothing reaches the server.
    let again = disconnected(&mut events).await;
    assert_eq!(again, reason);
    assert_ne!(client.status().link, Link::Online);
    assert_eq!(client.status().pending, 1);
    client.close().await;
    assert!(write.acked().await.is_err(), "never acked");

    // The system's roots do not hold the test CA either.
    let client = Client::connect(server.options("c2", None));
    let mut events = client.events();
    let reason = disconnected(&mut events).await;
    assert!(reason.contains("certificate"), "{reason}");
    disconnected(&mut events).await;
    client.close().await;

    // What the server holds is untouched.
    let reader = Client::connect(server.options("reader", Some(&ca)));
    let mut events = reader.events();
    expect(&mut events, |u| {
        matches!(u, Update::Session(ClientEvent::Synced { .. }))
    })
    .await;
    assert_eq!(reader.get("task", "t1"), None);
    assert_eq!(reader.status().cursor, Some(0));
    reader.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_certificate_for_another_name_or_out_of_date_is_named_as_such() {
    let ca = Ca::new("zestor test CA");
    let files = Files::new();
    let server = Server::start(files.server(&ca, &["sync.example.com"])).await;
    let client = Client::connect(server.options("c1", Some(&ca)));
    let reason = disconnected(&mut client.events()).await;
    assert!(reason.contains("not for this host name"), "{reason}");
    client.close().await;
    server.stop().await;

    let files = Files::new();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let (cert, key) = ca.sign_with(params);
    let server = Server::start(files.tls(&cert, &key)).await;
    let client = Client::connect(server.options("c1", Some(&ca)));
    let reason = disconnected(&mut client.events()).await;
    assert!(reason.contains("outside its validity period"), "{reason}");
    client.close().await;
    server.stop().await;

    // A self-signed CA certificate as the server's own, and as the CA.
    let files = Files::new();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap().pem();
    let server = Server::start(files.tls(&cert, &key.serialize_pem())).await;
    let mut options = server.options("c1", None);
    options.ca = Some(CaCerts::from_pem(cert.as_bytes()).unwrap());
    let client = Client::connect(options);
    let reason = disconnected(&mut client.events()).await;
    assert!(reason.contains("is a CA certificate"), "{reason}");
    client.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_stalled_handshake_holds_up_no_one_and_is_dropped() {
    let ca = Ca::new("zestor test CA");
    let files = Files::new();
    let tls = files
        .server(&ca, &["localhost"])
        .with_handshake_timeout(Duration::from_secs(5));
    let server = Server::start(tls).await;

    // Connects and never starts its handshake.
    let mut stalled = tokio::net::TcpStream::connect(server.address).await.unwrap();
    // Speaks plain HTTP to the TLS port.
    let mut plain = tokio::net::TcpStream::connect(server.address).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();

    let client = https(&ca);
    let health = client
        .get(format!("https://localhost:{}/healthz", server.address.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok\n");
    // Served while the stalled handshake was still waiting: had the server
    // waited for it, its timeout would have closed it first.
    let mut byte = [0u8; 1];
    assert!(
        matches!(stalled.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the stalled connection is still open"
    );

    // The plain HTTP request gets no HTTP answer: a TLS alert, then the end.
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, plain.read_to_end(&mut answer))
        .await
        .unwrap();
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // And the stalled one is dropped after the handshake timeout.
    let n = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut byte))
        .await
        .expect("closed within the handshake timeout");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_reload_serves_a_new_certificate_and_a_broken_one_changes_nothing() {
    let old_ca = Ca::new("old CA");
    let new_ca = Ca::new("new CA");
    let files = Files::new();
    let tls = files.server(&old_ca, &["localhost"]);
    let server = Server::start(tls.clone()).await;
    let base = format!("https://localhost:{}/healthz", server.address.port());
    https(&old_ca).get(&base).send().await.unwrap();
    assert!(https(&new_ca).get(&base).send().await.is_err());

    let (cert, key) = new_ca.sign(&["localhost"]);
    files.write("cert.pem", &cert);
    files.write("key.pem", &key);
    tls.reload().unwrap();
    https(&new_ca).get(&base).send().await.unwrap();
    assert!(https(&old_ca).get(&base).send().await.is_err());

    // A key that is not the certificate's: refused, the served one stays.
    let (_, other_key) = new_ca.sign(&["localhost"]);
    files.write("key.pem", &other_key);
    let e = tls.reload().unwrap_err();
    assert!(e.contains("is not the key of the certificate"), "{e}");
    https(&new_ca).get(&base).send().await.unwrap();
    server.stop().await;
}

#[test]
fn bad_certificate_or_key_files_are_named_errors() {
    let ca = Ca::new("zestor test CA");
    let files = Files::new();
    let (cert, key) = ca.sign(&["localhost"]);
    let cert = files.write("cert.pem", &cert);
    let key = files.write("key.pem", &key);
    let missing = files.dir.path().join("missing.pem");
    let load = |c: &Path, k: &Path| Tls::from_pem_files(c, k).map(drop).unwrap_err();
    Tls::from_pem_files(&cert, &key).unwrap();

    let e = load(&cert, &missing);
    assert!(
        e.starts_with(&format!("TLS key {}: cannot read it: ", missing.display())),
        "{e}"
    );
    let e = load(&missing, &key);
    assert!(
        e.starts_with(&format!(
            "TLS certificate {}: cannot read it: ",
            missing.display()
        )),
        "{e}"
    );
    // The files swapped: no certificate in the key file, no key in the certificate's.
    let e = load(&key, &cert);
    assert!(e.contains("no certificate in it"), "{e}");
    let e = load(&cert, &cert);
    assert!(e.contains("no private key in it"), "{e}");
    let broken = files.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
    );
    let e = load(&broken, &key);
    assert!(e.contains("not PEM"), "{e}");
    let (_, other_key) = ca.sign(&["localhost"]);
    let other_key = files.write("other-key.pem", &other_key);
    let e = load(&cert, &other_key);
    assert_eq!(
        e,
        format!(
            "TLS key {} is not the key of the certificate {}",
            other_key.display(),
            cert.display()
        )
    );
}

/// The binary: `--tls-cert`/`--tls-key` (SIGHUP re-reads them), and
/// `sync-server client --ca-file`.
#[cfg(unix)]
#[tokio::test]
async fn the_binary_serves_tls_and_its_client_trusts_a_ca_file() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let ca = Ca::new("zestor test CA");
    let files = Files::new();
    let (cert, key) = ca.sign(&["localhost"]);
    let cert = files.write("cert.pem", &cert);
    let key = files.write("key.pem", &key);
    let ca_file = files.write("ca.pem", &ca.pem);
    let db = support::fresh_db("tls-binary");
    let server = |extra: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sync-server"));
        command
            .args(["--listen", "127.0.0.1:0", "--insecure-open", "--db"])
            .arg(format!("sqlite://{}", db.display()))
            .args(extra);
        command
    };

    let missing = files.dir.path().join("missing.pem");
    let out = server(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        missing.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("TLS key {}: cannot read it", missing.display())),
        "{stderr}"
    );
    let out = server(&["--tls-cert", cert.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));

    let mut child = server(&[])
        .env("ZESTOR_TLS_CERT", &cert)
        .env("ZESTOR_TLS_KEY", &key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address: SocketAddr = line
        .split("https://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no https:// in {line:?}"))
        .parse()
        .unwrap();
    assert!(line.contains(&format!("wss://{address}/sync")), "{line}");

    let url = format!("wss://localhost:{}/sync", address.port());
    let client = |words: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_sync-server"));
        command
            .arg("client")
            .args(words)
            .args([
                "--url",
                &url,
                "--namespace",
                "ns",
                "--token",
                "t",
                "--timeout",
                "3",
            ])
            .env_remove("ZESTOR_CA_FILE");
        command
    };
    let out = client(&[
        "put",
        "task",
        "t1",
        r#"{"title":"ship"}"#,
        "--ca-file",
        ca_file.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ack: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ack["version"], 1, "{ack}");
    let out = client(&["get", "task", "t1"])
        .env("ZESTOR_CA_FILE", &ca_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), r#"{"title":"ship"}"#);

    // Without the CA: told at once, then the command gives up.
    let out = client(&["put", "task", "t2", "1"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("disconnected (cannot connect to wss://localhost"),
        "{stderr}"
    );
    assert!(stderr.contains("certificate"), "{stderr}");
    assert!(stderr.contains("not connected within 3s (last: "), "{stderr}");
    assert!(stderr.contains("nothing was written"), "{stderr}");
    let out = client(&["get", "task", "t1", "--ca-file", missing.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("the CA file: cannot read {}", missing.display())),
        "{stderr}"
    );

    // A renewed certificate, from another CA: SIGHUP reads it.
    let renewed = Ca::new("renewed CA");
    let renewed_file = files.write("renewed-ca.pem", &renewed.pem);
    let (cert_pem, key_pem) = renewed.sign(&["localhost"]);
    files.write("cert.pem", &cert_pem);
    files.write("key.pem", &key_pem);
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let base = format!("https://localhost:{}/healthz", address.port());
    let mut served = Err(String::new());
    for _ in 0..50 {
        served = https(&renewed).get(&base).send().await.map_err(|e| e.to_string());
        if served.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    served.expect("the renewed certificate is served");
    let out = client(&["get", "task", "t1", "--ca-file", renewed_file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    child.kill().unwrap();
    child.wait().unwrap();
}
