//! The server's own TLS (https and wss): the certificate and key from PEM
//! files, re-read on demand, and a listener that does each TLS handshake
//! on a task of its own, so that a slow or failing client never holds up
//! the accepting of others.
//!
//! It must not decide anything about HTTP: the connections it hands out
//! are served by the same router as plain ones.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take over its TLS handshake by default.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's TLS: its certificate chain and private key, read from PEM
/// files. Clones share the certificate: [`Tls::reload`] on one changes it
/// for every new connection.
///
/// ```no_run
/// # async fn demo(state: std::sync::Arc<sync_server::server::AppState>) -> Result<(), String> {
/// use sync_server::server::{Tls, serve_tls};
///
/// let tls = Tls::from_pem_files("fullchain.pem", "privkey.pem")?;
/// let listener = tokio::net::TcpListener::bind("0.0.0.0:443").await.map_err(|e| e.to_string())?;
/// let (stop, _) = tokio::sync::watch::channel(false);
/// serve_tls(listener, tls, state, None, stop, std::future::pending()).await.map_err(|e| e.to_string())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: Arc<Current>,
    config: Arc<rustls::ServerConfig>,
    handshake_timeout: Duration,
}

impl Tls {
    /// Reads the certificate chain at `cert` (PEM, the server's own
    /// certificate first, then the intermediates) and its private key at
    /// `key` (PEM: PKCS#8, PKCS#1 or SEC1). The error says which file is
    /// wrong and how.
    pub fn from_pem_files(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<Tls, String> {
        let (cert, key) = (cert.into(), key.into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = Arc::new(Current(RwLock::new(read(&cert, &key, &provider)?)));
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&current) as Arc<dyn ResolvesServerCert>);
        // The server speaks HTTP/1.1 only (WebSockets upgrade from it).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            cert,
            key,
            current,
            config: Arc::new(config),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// Reads the files again (a renewed certificate): new connections get
    /// the new certificate, open ones keep theirs. On an error, the
    /// previous certificate stays.
    pub fn reload(&self) -> Result<(), String> {
        let provider = self.config.crypto_provider();
        let fresh = read(&self.cert, &self.key, provider)?;
        *self.current.0.write() = fresh;
        Ok(())
    }

    /// Sets how long a client may take over its TLS handshake before its
    /// connection is dropped (10 s by default).
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Tls {
        self.handshake_timeout = timeout;
        self
    }
}

/// The certificate every handshake gets: the one read last.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0.read()))
    }
}

fn read(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let cert_text = std::fs::read(cert)
        .map_err(|e| format!("TLS certificate {}: cannot read it: {e}", cert.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("TLS certificate {}: not PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in it (a PEM `BEGIN CERTIFICATE` block)",
            cert.display()
        ));
    }
    let key_text =
        std::fs::read(key).map_err(|e| format!("TLS key {}: cannot read it: {e}", key.display()))?;
    let private = PrivateKeyDer::from_pem_slice(&key_text).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => format!(
            "TLS key {}: no private key in it (a PEM `PRIVATE KEY`, `RSA PRIVATE KEY` or \
             `EC PRIVATE KEY` block)",
            key.display()
        ),
        e => format!("TLS key {}: not PEM: {e}", key.display()),
    })?;
    match CertifiedKey::from_der(chain, private, provider) {
        Ok(certified) => Ok(Arc::new(certified)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(format!(
            "TLS key {} is not the key of the certificate {}",
            key.display(),
            cert.display()
        )),
        Err(e) => Err(format!("TLS key {}: {e}", key.display())),
    }
}

/// Connections whose TLS handshake is done, for `axum::serve`.
pub(super) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

/// Accepts on `listener` and shakes hands on a task per connection (with
/// TCP_NODELAY set, within the handshake timeout); the connections that
/// made it come out of the returned listener. Accepting stops when the
/// returned listener is dropped.
pub(super) fn listen(listener: TcpListener, tls: &Tls) -> std::io::Result<TlsListener> {
    let local = listener.local_addr()?;
    let (tx, ready) = mpsc::channel(64);
    let acceptor = TlsAcceptor::from(Arc::clone(&tls.config));
    let timeout = tls.handshake_timeout;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = tx.closed() => return,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            };
            // Acks and changes are small frames: without TCP_NODELAY,
            // Nagle's algorithm holds each one back for tens of milliseconds.
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "cannot set TCP_NODELAY");
            }
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send((stream, peer)).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, ?timeout, "TLS handshake timed out"),
                }
            });
        }
    });
    Ok(TlsListener { ready, local })
}

/// After a failed accept: one connection's trouble is passed over; running
/// out of file descriptors or memory is waited out, as `axum::serve` does.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept a connection; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accepting task ended (the runtime is shutting down).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}
