//! Who may sync which namespace, with which rights, until when.
//!
//! Two kinds of credential, checked by one [`Auth`]:
//!
//! - **static tokens** from a file ([`Tokens`]), for development: they
//!   never expire, and the file is re-read on [`Auth::reload`] (SIGHUP);
//! - **JWTs** ([`JwtConfig`]) issued by the application's backend or its
//!   identity provider: verified against a shared secret (HS256) or a JWKS
//!   (RS256, ES256, EdDSA…), with their grants in a claim, and valid until
//!   their `exp`.
//!
//! A reload re-reads every file (tokens, secret, JWKS) and tells every
//! connection ([`Auth::reloads`]) to check its token again: a session whose
//! token is gone or no longer grants what it had is closed.

use std::path::PathBuf;
use std::time::SystemTime;

use parking_lot::RwLock;
use store_core::sync::Rights;
use store_core::sync::session::Denied;
use tokio::sync::watch;

mod jwks;
mod jwt;
mod tokens;

pub use jwt::{JwtConfig, JwtKeys, NamespaceGrant};
pub use tokens::Tokens;

/// What a token grants in one namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// What it may do there.
    pub rights: Rights,
    /// When it stops being valid (a JWT's `exp`, plus the leeway); `None`
    /// for a static token.
    pub expires_at: Option<SystemTime>,
}

/// Where the static tokens come from.
#[derive(Debug)]
enum StaticTokens {
    /// None: only JWTs are accepted.
    None,
    /// Given in code; never reloaded.
    Fixed(Tokens),
    /// A file, re-read on reload.
    File { path: PathBuf, tokens: RwLock<Tokens> },
}

/// The server's authority over tokens: static tokens, JWTs, or both.
#[derive(Debug)]
pub struct Auth {
    tokens: StaticTokens,
    jwt: Option<jwt::Verifier>,
    reloads: watch::Sender<u64>,
}

impl From<Tokens> for Auth {
    fn from(tokens: Tokens) -> Auth {
        Auth {
            tokens: StaticTokens::Fixed(tokens),
            jwt: None,
            reloads: watch::channel(0).0,
        }
    }
}

impl Auth {
    /// An authority over the static tokens of `tokens_file` (if any) and
    /// the JWTs `jwt` describes (if any); reads every file and fetches the
    /// JWKS once. At least one of the two is needed.
    pub async fn new(tokens_file: Option<PathBuf>, jwt: Option<JwtConfig>) -> Result<Auth, String> {
        let tokens = match tokens_file {
            Some(path) => StaticTokens::File {
                tokens: RwLock::new(Tokens::load(&path)?),
                path,
            },
            None => StaticTokens::None,
        };
        let jwt = match jwt {
            Some(config) => Some(jwt::Verifier::new(config).await?),
            None => None,
        };
        if matches!(tokens, StaticTokens::None) && jwt.is_none() {
            return Err("no tokens: give a tokens file or a JWT key".into());
        }
        Ok(Auth {
            tokens,
            jwt,
            reloads: watch::channel(0).0,
        })
    }

    /// What `token` grants in `namespace`, or why it is refused
    /// (`unauthorized`: not a valid token; `forbidden`: valid, but not for
    /// this namespace).
    pub async fn check(&self, token: &str, namespace: &str) -> Result<Grant, Denied> {
        if let Some(rights) = self.check_static(token, namespace) {
            return Ok(Grant {
                rights: rights?,
                expires_at: None,
            });
        }
        match &self.jwt {
            Some(jwt) => jwt.check(token, namespace).await,
            None => Err(Denied::unauthorized("unknown token")),
        }
    }

    /// The static tokens' answer, unless the token is not one of them and
    /// JWTs are accepted too.
    fn check_static(&self, token: &str, namespace: &str) -> Option<Result<Rights, Denied>> {
        let answer = |tokens: &Tokens| {
            (tokens.knows(token) || self.jwt.is_none()).then(|| tokens.check(token, namespace))
        };
        match &self.tokens {
            StaticTokens::None => None,
            StaticTokens::Fixed(tokens) => answer(tokens),
            StaticTokens::File { tokens, .. } => answer(&tokens.read()),
        }
    }

    /// Re-reads the tokens file, the JWT secret and the JWKS, then tells
    /// every connection to check its token again. On an error nothing
    /// changes (the previous tokens and keys stay in force).
    pub async fn reload(&self) -> Result<(), String> {
        let tokens = match &self.tokens {
            StaticTokens::File { path, .. } => Some(Tokens::load(path)?),
            _ => None,
        };
        if let Some(jwt) = &self.jwt {
            jwt.reload().await?;
        }
        if let (Some(new), StaticTokens::File { tokens, .. }) = (tokens, &self.tokens) {
            *tokens.write() = new;
        }
        self.reloads.send_modify(|n| *n += 1);
        Ok(())
    }

    /// Changes every time the tokens or keys were reloaded.
    #[must_use]
    pub fn reloads(&self) -> watch::Receiver<u64> {
        self.reloads.subscribe()
    }
}
