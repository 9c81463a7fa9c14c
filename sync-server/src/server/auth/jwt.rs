//! JWTs: verified against the server's keys, granted from their claims.
//!
//! The algorithm is the key's, never the token's: a token whose header
//! names another algorithm than its key's is refused (so `alg: none` and
//! HS256 tokens signed with an RSA public key are). `exp` is required;
//! `exp` and `nbf` are checked with a leeway; `aud` and `iss` when
//! configured.
//!
//! Grants come from the token's `zestor` claim (its name is configurable),
//! `{"ns": {"NAMESPACE": "read" | "read_write", …}}`, and from the server's
//! own grant templates over `sub` (`user-{sub}=read_write`): a token gets
//! the most its claim and the templates give it in a namespace.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use store_core::sync::Rights;
use store_core::sync::session::Denied;

use super::Grant;
use super::jwks::{KeySet, Keys};

/// Where a server's JWT keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtKeys {
    /// An HS256 shared secret, given as is.
    Secret(Vec<u8>),
    /// An HS256 shared secret in a file (re-read on reload; a trailing
    /// newline is not part of it).
    SecretFile(PathBuf),
    /// A JWKS (`{"keys": [...]}`) in a file, re-read on reload and when a
    /// token names a key it does not hold.
    JwksFile(PathBuf),
    /// A JWKS at an `http(s)://` URL, fetched at start, cached, and fetched
    /// again when the cache is older than [`JwtConfig::jwks_max_age`] or a
    /// token names a key it does not hold (at most once per
    /// [`JwtConfig::jwks_min_refetch`]).
    JwksUrl(String),
}

/// A namespace granted to every valid token by the server: `{sub}` in the
/// namespace is replaced with the token's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceGrant {
    /// The namespace, or a template over `{sub}` (`user-{sub}`).
    pub namespace: String,
    /// What a token may do there.
    pub rights: Rights,
}

impl std::str::FromStr for NamespaceGrant {
    type Err = String;

    /// Parses `NAMESPACE=read|read_write`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (namespace, rights) = s
            .rsplit_once('=')
            .ok_or_else(|| format!("{s:?}: expected NAMESPACE=read|read_write"))?;
        Ok(NamespaceGrant {
            namespace: namespace.to_owned(),
            rights: parse_rights(rights).ok_or_else(|| format!("{s:?}: unknown rights {rights:?}"))?,
        })
    }
}

fn parse_rights(s: &str) -> Option<Rights> {
    match s {
        "read" => Some(Rights::Read),
        "read_write" => Some(Rights::ReadWrite),
        _ => None,
    }
}

/// How the server verifies JWTs and reads their grants.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The keys.
    pub keys: JwtKeys,
    /// The `aud` a token must have (one of its audiences); unchecked when `None`.
    pub audience: Option<String>,
    /// The `iss` a token must have; unchecked when `None`.
    pub issuer: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// The claim holding a token's grants.
    pub claim: String,
    /// Namespaces every valid token is granted.
    pub grants: Vec<NamespaceGrant>,
    /// How long a fetched JWKS is used before it is fetched again.
    pub jwks_max_age: Duration,
    /// The least time between two fetches of the JWKS for an unknown `kid`.
    pub jwks_min_refetch: Duration,
}

impl JwtConfig {
    /// Verification with `keys`: a 30 s leeway, grants in the `zestor`
    /// claim, a JWKS kept 5 minutes and fetched again for an unknown key at
    /// most every 10 s.
    #[must_use]
    pub fn new(keys: JwtKeys) -> JwtConfig {
        JwtConfig {
            keys,
            audience: None,
            issuer: None,
            leeway: Duration::from_secs(30),
            claim: "zestor".into(),
            grants: Vec::new(),
            jwks_max_age: Duration::from_secs(300),
            jwks_min_refetch: Duration::from_secs(10),
        }
    }
}

/// Verifies JWTs against the keys of a [`JwtConfig`].
#[derive(Debug)]
pub(super) struct Verifier {
    config: JwtConfig,
    keys: Keys,
}

impl Verifier {
    pub(super) async fn new(config: JwtConfig) -> Result<Verifier, String> {
        let keys = Keys::load(&config).await?;
        Ok(Verifier { config, keys })
    }

    pub(super) async fn reload(&self) -> Result<(), String> {
        self.keys.reload().await
    }

    /// What `token` grants in `namespace`.
    pub(super) async fn check(&self, token: &str, namespace: &str) -> Result<Grant, Denied> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| {
            Denied::unauthorized(format!(
                "not a JWT, or its header names an unsupported algorithm: {e}"
            ))
        })?;
        let set = self.keys.current().await;
        let (algorithm, key) = match find(&set, header.kid.as_deref()) {
            Ok(found) => found,
            Err(Missing::Kid(kid)) => {
                // Keys may have rotated: fetch them again (rate-limited).
                let set = self.keys.refetch().await;
                let (algorithm, key) = find(&set, Some(&kid)).map_err(Missing::denied)?;
                return self.verify(token, algorithm, key, namespace);
            }
            Err(missing) => return Err(missing.denied()),
        };
        self.verify(token, algorithm, key, namespace)
    }

    fn verify(
        &self,
        token: &str,
        algorithm: Algorithm,
        key: &DecodingKey,
        namespace: &str,
    ) -> Result<Grant, Denied> {
        let mut validation = Validation::new(algorithm);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(aud) = &self.config.audience {
            validation.set_audience(&[aud]);
        } else {
            validation.validate_aud = false;
        }
        if let Some(iss) = &self.config.issuer {
            validation.set_issuer(&[iss]);
        }
        let claims = jsonwebtoken::decode::<Value>(token, key, &validation)
            .map_err(|e| refused(e.kind(), algorithm))?
            .claims;
        let rights = self.rights(&claims, namespace)?;
        // An `exp` too far in the future for the clock is a token that
        // does not expire while the server runs.
        let exp = &claims["exp"];
        let exp = exp
            .as_u64()
            .or_else(|| exp.as_f64().map(|f| f as u64))
            .unwrap_or(0);
        let expires_at =
            SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(exp.saturating_add(validation.leeway)));
        // `exp` counts whole seconds and the library compares it with the
        // current second: a token in its last second would be welcomed
        // and its session closed at once.
        if expires_at.is_some_and(|at| at <= SystemTime::now()) {
            return Err(refused(&ErrorKind::ExpiredSignature, algorithm));
        }
        Ok(Grant { rights, expires_at })
    }

    /// The most the token's claim and the server's templates grant in
    /// `namespace`.
    fn rights(&self, claims: &Value, namespace: &str) -> Result<Rights, Denied> {
        let name = &self.config.claim;
        let mut best: Option<Rights> = None;
        let mut grant = |rights: Rights| {
            best = Some(match best {
                Some(Rights::ReadWrite) => Rights::ReadWrite,
                _ => rights,
            });
        };
        match claims.get(name) {
            Some(claim) => {
                let malformed = || {
                    Denied::unauthorized(format!(
                        "the `{name}` claim must be {{\"ns\": {{NAMESPACE: \"read\" | \"read_write\"}}}}"
                    ))
                };
                let ns = claim.get("ns").and_then(Value::as_object).ok_or_else(malformed)?;
                for (granted, rights) in ns {
                    let rights = rights.as_str().and_then(parse_rights).ok_or_else(malformed)?;
                    if granted == namespace {
                        grant(rights);
                    }
                }
            }
            None if self.config.grants.is_empty() => {
                return Err(Denied::unauthorized(format!("the token has no `{name}` claim")));
            }
            None => {}
        }
        let sub = claims.get("sub").and_then(Value::as_str);
        for template in &self.config.grants {
            let expanded = match (template.namespace.contains("{sub}"), sub) {
                (false, _) => template.namespace.clone(),
                (true, Some(sub)) => template.namespace.replace("{sub}", sub),
                (true, None) => continue,
            };
            if expanded == namespace {
                grant(template.rights);
            }
        }
        best.ok_or_else(|| Denied::forbidden(format!("the token does not grant namespace `{namespace}`")))
    }
}

/// Why no key was found for a token.
enum Missing {
    /// The token names a key the set does not hold.
    Kid(String),
    /// The token names none and the set holds several.
    NoKid,
    /// The set is empty.
    NoKeys,
}

impl Missing {
    fn denied(self) -> Denied {
        Denied::unauthorized(match self {
            Missing::Kid(kid) => format!("unknown key id `{kid}`"),
            Missing::NoKid => "the token names no key (`kid`) and the server has several".into(),
            Missing::NoKeys => "the server has no key to verify tokens with".into(),
        })
    }
}

/// The key a token names (or the only one) and its algorithm.
fn find<'a>(set: &'a KeySet, kid: Option<&str>) -> Result<(Algorithm, &'a DecodingKey), Missing> {
    let key = match kid {
        Some(kid) => set
            .iter()
            .find(|k| k.kid.as_deref() == Some(kid))
            .ok_or_else(|| Missing::Kid(kid.to_owned()))?,
        None => match set.as_slice() {
            [] => return Err(Missing::NoKeys),
            [only] => only,
            _ => return Err(Missing::NoKid),
        },
    };
    Ok((key.algorithm, &key.key))
}

/// A verification failure, for people.
fn refused(kind: &ErrorKind, algorithm: Algorithm) -> Denied {
    Denied::unauthorized(match kind {
        ErrorKind::InvalidSignature => "the token's signature is invalid".into(),
        ErrorKind::ExpiredSignature => "the token expired".into(),
        ErrorKind::ImmatureSignature => "the token is not valid yet (`nbf`)".into(),
        ErrorKind::InvalidAudience => "the token is for another audience (`aud`)".into(),
        ErrorKind::InvalidIssuer => "the token is from another issuer (`iss`)".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("the token has no `{claim}` claim"),
        ErrorKind::InvalidClaimFormat(claim) => format!("the token's `{claim}` claim is malformed"),
        ErrorKind::InvalidAlgorithm => format!("the token's algorithm is not its key's ({algorithm:?})"),
        other => format!("the token is malformed: {other:?}"),
    })
}
