//! Whom the client trusts over `wss://`: the system's root certificates,
//! or the certificate authorities the app names ([`CaCerts`]).
//!
//! The rustls configuration is built here, on the ring provider, and
//! handed to each connection; nothing is installed process-wide, so an app
//! may use another rustls provider for its own connections.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// Certificate authorities to trust instead of the system's roots
/// ([`ClientOptions::ca`](super::ClientOptions::ca)): a `wss://` server's
/// certificate must chain to one of them. Read once, checked when read.
///
/// ```no_run
/// use sync_server::client::{CaCerts, ClientOptions};
///
/// # fn demo() -> Result<(), sync_server::client::CaError> {
/// let options = ClientOptions {
///     ca: Some(CaCerts::from_file("company-ca.pem")?),
///     ..ClientOptions::new("wss://sync.internal/sync", "team-1", "token", "laptop-1")
/// };
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct CaCerts {
    roots: Arc<RootCertStore>,
}

impl CaCerts {
    /// The certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks;
    /// anything else in it is skipped).
    pub fn from_pem(pem: &[u8]) -> Result<CaCerts, CaError> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| CaError::Pem(e.to_string()))?;
            roots.add(cert).map_err(|e| CaError::Certificate(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(CaError::NoCertificate);
        }
        Ok(CaCerts {
            roots: Arc::new(roots),
        })
    }

    /// The certificates in the PEM file at `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<CaCerts, CaError> {
        let path = path.as_ref();
        let pem = std::fs::read(path).map_err(|e| CaError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        CaCerts::from_pem(&pem).map_err(|e| match e {
            CaError::NoCertificate => CaError::NoCertificateIn(path.to_owned()),
            e => e,
        })
    }

    /// How many certificates there are.
    #[must_use]
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// Whether there are none (never, for a `CaCerts` that was read).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }
}

impl std::fmt::Debug for CaCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaCerts({} certificates)", self.roots.len())
    }
}

/// Why certificate authorities could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The file could not be read.
    #[error("cannot read {}: {message}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why, as the system says it.
        message: String,
    },
    /// The text is not well-formed PEM.
    #[error("not PEM: {0}")]
    Pem(String),
    /// A certificate cannot be a trust anchor (not DER, not X.509).
    #[error("bad CA certificate: {0}")]
    Certificate(String),
    /// The PEM holds no certificate.
    #[error("no certificate in the PEM")]
    NoCertificate,
    /// The file holds no certificate.
    #[error("no certificate in {}", .0.display())]
    NoCertificateIn(PathBuf),
}

/// The rustls configuration for `wss://`: the app's CAs, else the
/// system's roots (the files `SSL_CERT_FILE` or `SSL_CERT_DIR` name, if
/// set). The error says why no connection can be trusted.
pub(super) fn client_config(ca: Option<&CaCerts>) -> Result<Arc<ClientConfig>, String> {
    let roots = match ca {
        Some(ca) => Arc::clone(&ca.roots),
        None => Arc::new(system_roots()?),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn system_roots() -> Result<RootCertStore, String> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let mut why = String::from(
            "no trusted root certificates on this system (install the ca-certificates package, \
             set SSL_CERT_FILE, or give the client a CA file)",
        );
        for e in &found.errors {
            why.push_str(&format!("; {e}"));
        }
        return Err(why);
    }
    Ok(roots)
}

/// A TLS failure in words: what went wrong, then rustls' own reason.
pub(super) fn describe(error: &rustls::Error) -> String {
    use rustls::{CertificateError, Error};
    let what = match error {
        Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            "the server's certificate is not signed by a trusted CA"
        }
        Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "the server's certificate is not for this host name",
        Error::InvalidCertificate(
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. },
        ) => "the server's certificate is outside its validity period (or this clock is wrong)",
        // What `openssl req -x509` makes by default; webpki refuses it.
        Error::InvalidCertificate(CertificateError::Other(e))
            if format!("{e:?}").contains("CaUsedAsEndEntity") =>
        {
            "the server's certificate is a CA certificate (basicConstraints CA:TRUE), which cannot \
             be a server's own: sign a server certificate with that CA, or make the self-signed \
             one with CA:FALSE"
        }
        Error::InvalidCertificate(_) => "the server's certificate is not trusted",
        Error::AlertReceived(_) => "the server refused the TLS handshake",
        _ => "the TLS handshake failed",
    };
    format!("{what}: {error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_without_certificates_is_refused() {
        assert_eq!(CaCerts::from_pem(b"").unwrap_err(), CaError::NoCertificate);
        assert_eq!(
            CaCerts::from_pem(b"just some text\n").unwrap_err(),
            CaError::NoCertificate
        );
        let bad = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(
            matches!(CaCerts::from_pem(bad), Err(CaError::Pem(_))),
            "{:?}",
            CaCerts::from_pem(bad)
        );
        let not_x509 = b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
        assert!(
            matches!(CaCerts::from_pem(not_x509), Err(CaError::Certificate(_))),
            "{:?}",
            CaCerts::from_pem(not_x509)
        );
    }

    #[test]
    fn a_missing_file_names_itself() {
        let e = CaCerts::from_file("/nonexistent/ca.pem").unwrap_err();
        assert!(matches!(e, CaError::Read { .. }), "{e:?}");
        assert!(
            e.to_string().starts_with("cannot read /nonexistent/ca.pem: "),
            "{e}"
        );
    }
}
