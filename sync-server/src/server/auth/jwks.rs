//! The keys JWTs are verified with: a shared secret, or a JWKS read from a
//! file or fetched from a URL, kept current.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::{Mutex, RwLock};

use super::jwt::{JwtConfig, JwtKeys};

/// One verification key: its id, the algorithm it verifies, the key.
pub(super) struct Key {
    pub kid: Option<String>,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

pub(super) type KeySet = Vec<Key>;

/// A timeout for fetching a JWKS.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The current keys, and how to get them again.
#[derive(Debug)]
pub(super) struct Keys {
    source: JwtKeys,
    max_age: Duration,
    min_refetch: Duration,
    current: RwLock<Arc<KeySet>>,
    /// When the current keys were read, and when a read was last tried.
    fetched: Mutex<(Instant, Instant)>,
    /// One fetch at a time; the others wait for its keys.
    fetching: tokio::sync::Mutex<()>,
    client: Option<reqwest::Client>,
}

impl Keys {
    /// Reads the keys once; an error names what is wrong.
    pub(super) async fn load(config: &JwtConfig) -> Result<Keys, String> {
        let client = match &config.keys {
            JwtKeys::JwksUrl(url) => {
                if !url.starts_with("https://") {
                    tracing::warn!(
                        url,
                        "the JWKS is fetched without TLS: anyone on the path can replace its keys"
                    );
                }
                // reqwest's TLS needs a process-wide crypto provider; another
                // part of the process may have installed one already.
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
                Some(client)
            }
            _ => None,
        };
        let now = Instant::now();
        let keys = Keys {
            source: config.keys.clone(),
            max_age: config.jwks_max_age,
            min_refetch: config.jwks_min_refetch,
            current: RwLock::new(Arc::new(Vec::new())),
            fetched: Mutex::new((now, now)),
            fetching: tokio::sync::Mutex::new(()),
            client,
        };
        *keys.current.write() = Arc::new(keys.read().await?);
        Ok(keys)
    }

    /// The keys to verify with; a fetched JWKS older than its maximum age is
    /// fetched again first (on failure the old keys stay).
    pub(super) async fn current(&self) -> Arc<KeySet> {
        let stale =
            matches!(self.source, JwtKeys::JwksUrl(_)) && self.fetched.lock().0.elapsed() >= self.max_age;
        if stale {
            return self.refetch().await;
        }
        self.current.read().clone()
    }

    /// Reads the keys again for a token naming an unknown key, unless they
    /// were read less than the minimum interval ago; returns the keys.
    pub(super) async fn refetch(&self) -> Arc<KeySet> {
        let waited_from = Instant::now();
        let _one = self.fetching.lock().await;
        let (_, tried) = *self.fetched.lock();
        // Another check fetched while this one waited, or a fetch was tried
        // too recently: use what is there.
        if tried >= waited_from || tried.elapsed() < self.min_refetch {
            return self.current.read().clone();
        }
        let _ = self.reread().await;
        self.current.read().clone()
    }

    /// Reads the keys again now (a reload).
    pub(super) async fn reload(&self) -> Result<(), String> {
        let _one = self.fetching.lock().await;
        self.reread().await
    }

    async fn reread(&self) -> Result<(), String> {
        let now = Instant::now();
        let result = self.read().await;
        let mut fetched = self.fetched.lock();
        fetched.1 = now;
        match result {
            Ok(set) => {
                *self.current.write() = Arc::new(set);
                fetched.0 = now;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the JWT keys; keeping the previous ones");
                Err(e)
            }
        }
    }

    async fn read(&self) -> Result<KeySet, String> {
        match &self.source {
            JwtKeys::Secret(secret) => hmac(secret.clone()),
            JwtKeys::SecretFile(path) => {
                let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
                let end = text
                    .iter()
                    .rposition(|b| !b.is_ascii_whitespace())
                    .map_or(0, |i| i + 1);
                hmac(text[..end].to_vec()).map_err(|e| format!("{}: {e}", path.display()))
            }
            JwtKeys::JwksFile(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
                parse_jwks(&text).map_err(|e| format!("{}: {e}", path.display()))
            }
            JwtKeys::JwksUrl(url) => {
                let client = self.client.as_ref().expect("a client for a JWKS URL");
                let response = client
                    .get(url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| format!("cannot fetch the JWKS at {url}: {e}"))?;
                let text = response
                    .text()
                    .await
                    .map_err(|e| format!("cannot fetch the JWKS at {url}: {e}"))?;
                parse_jwks(&text).map_err(|e| format!("{url}: {e}"))
            }
        }
    }
}

/// The key set of an HS256 secret.
fn hmac(secret: Vec<u8>) -> Result<KeySet, String> {
    if secret.len() < 32 {
        return Err("a JWT secret must have at least 32 bytes".into());
    }
    Ok(vec![Key {
        kid: None,
        algorithm: Algorithm::HS256,
        key: DecodingKey::from_secret(&secret).map_err(|e| e.to_string())?,
    }])
}

/// The signing keys of a JWKS; keys for encryption, or of a type or
/// algorithm not supported, are skipped (and logged).
pub(super) fn parse_jwks(text: &str) -> Result<KeySet, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        match key(jwk) {
            Ok(Some(key)) => keys.push(key),
            Ok(None) => {}
            Err(e) => tracing::warn!(kid = jwk.common.key_id, error = %e, "skipping a JWKS key"),
        }
    }
    if keys.is_empty() {
        return Err("the JWKS holds no usable signing key".into());
    }
    Ok(keys)
}

fn key(jwk: &Jwk) -> Result<Option<Key>, String> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return Ok(None);
    }
    // The key's own algorithm, or the one its type implies.
    let algorithm = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(alg), _) => alg
            .to_string()
            .parse::<Algorithm>()
            .map_err(|_| format!("unsupported algorithm {alg}"))?,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            ref other => return Err(format!("unsupported curve {other:?}")),
        },
        (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
        (None, AlgorithmParameters::OctetKey(_)) => Algorithm::HS256,
        (None, _) => return Err("unsupported key type".into()),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    if key.family() != algorithm.family() {
        return Err(format!("a {:?} key cannot verify {algorithm:?}", key.family()));
    }
    Ok(Some(Key {
        kid: jwk.common.key_id.clone(),
        algorithm,
        key,
    }))
}
