//! Tokens: who may sync which namespace, with which rights.
//!
//! A token file has one grant per line, `TOKEN NAMESPACE RIGHTS`, where
//! RIGHTS is `read` or `read_write`; blank lines and lines starting with `#`
//! are ignored. A token may appear on several lines (several namespaces).

use std::collections::HashMap;
use std::path::Path;

use store_core::sync::Rights;
use store_core::sync::session::Denied;

/// The grants of every token.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    grants: HashMap<String, HashMap<String, Rights>>,
    /// Every token may read and write every namespace (development only).
    open: bool,
}

impl Tokens {
    /// Parses a token file's text; errors name the line.
    pub fn parse(text: &str) -> Result<Tokens, String> {
        let mut tokens = Tokens::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [token, namespace, rights] = fields[..] else {
                return Err(format!(
                    "line {}: expected `TOKEN NAMESPACE read|read_write`",
                    n + 1
                ));
            };
            let rights = match rights {
                "read" => Rights::Read,
                "read_write" => Rights::ReadWrite,
                other => return Err(format!("line {}: unknown rights {other:?}", n + 1)),
            };
            tokens.grant(token, namespace, rights);
        }
        Ok(tokens)
    }

    /// Reads a token file.
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Grants `token` `rights` on `namespace`.
    pub fn grant(&mut self, token: &str, namespace: &str, rights: Rights) {
        self.grants
            .entry(token.to_owned())
            .or_default()
            .insert(namespace.to_owned(), rights);
    }

    /// Tokens that let anyone read and write any namespace: for local
    /// development only.
    #[must_use]
    pub fn open_to_all() -> Tokens {
        Tokens {
            grants: HashMap::new(),
            open: true,
        }
    }

    /// What `token` may do in `namespace`.
    pub fn check(&self, token: &str, namespace: &str) -> Result<Rights, Denied> {
        if self.open {
            return Ok(Rights::ReadWrite);
        }
        let grants = self
            .grants
            .get(token)
            .ok_or_else(|| Denied::unauthorized("unknown token"))?;
        grants
            .get(namespace)
            .copied()
            .ok_or_else(|| Denied::forbidden(format!("the token does not grant namespace `{namespace}`")))
    }

    /// Whether `token` is one of these (any token is, when open to all).
    #[must_use]
    pub fn knows(&self, token: &str) -> bool {
        self.open || self.grants.contains_key(token)
    }

    /// Whether no token is configured.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use store_core::sync::ErrorCode;

    use super::*;

    #[test]
    fn grants_are_per_namespace() {
        let t = Tokens::parse("# comment\nalice team-1 read_write\n\nbob team-1 read\nalice team-2 read\n")
            .unwrap();
        assert_eq!(t.check("alice", "team-1"), Ok(Rights::ReadWrite));
        assert_eq!(t.check("alice", "team-2"), Ok(Rights::Read));
        assert_eq!(t.check("bob", "team-2").unwrap_err().code, ErrorCode::Forbidden);
        assert_eq!(
            t.check("carol", "team-1").unwrap_err().code,
            ErrorCode::Unauthorized
        );
        assert!(t.knows("bob") && !t.knows("carol"));
        assert!(
            Tokens::parse("alice team-1 admin")
                .unwrap_err()
                .contains("line 1")
        );
        assert!(Tokens::parse("alice").unwrap_err().contains("line 1"));
    }
}
