//! Which web pages may open `/sync`: the browser says which page asks in
//! the handshake's `Origin` header; other clients send none.

/// Whether a handshake with this `Origin` and `Host` may open `/sync`,
/// given the `--allow-origin` list:
///
/// - no `Origin`: yes (not a browser: the native client, scripts);
/// - an `Origin` whose host name is the `Host` header's: yes (a page of the
///   host the server is reached at; schemes and ports are not compared);
/// - an `Origin` in the list (`scheme://host[:port]`), or any when the
///   list holds `*`: yes;
/// - anything else (another site, `null`, no `Host`): no.
pub(crate) fn allowed(origin: Option<&str>, host: Option<&str>, list: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    if list
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
    {
        return true;
    }
    match (origin_host(origin), host.map(host_name)) {
        (Some(origin), Some(host)) => !host.is_empty() && origin.eq_ignore_ascii_case(host),
        _ => false,
    }
}

/// The host name of an origin (`scheme://host[:port]`), if it is one.
fn origin_host(origin: &str) -> Option<&str> {
    let (_, authority) = origin.split_once("://")?;
    Some(host_name(authority))
}

/// The host name of `host[:port]` (an IPv6 address keeps its brackets).
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').map_or(authority, |end| &authority[..=end]);
    }
    authority.split(':').next().unwrap_or(authority)
}

/// Checks the values of `--allow-origin`: each is `*`, `null` or an origin
/// (`scheme://host[:port]`, no path).
///
/// # Errors
///
/// The first value that is none of these, said why.
pub fn check_allowed_origins(list: &[String]) -> Result<(), String> {
    for value in list {
        if value == "*" || value == "null" {
            continue;
        }
        let origin = value.trim_end_matches('/');
        let ok = origin.split_once("://").is_some_and(|(scheme, authority)| {
            !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
                && !authority.is_empty()
                && !authority.contains(['/', '?', '#', '@'])
        });
        if !ok {
            return Err(format!(
                "--allow-origin {value:?} is not an origin: write `scheme://host[:port]` (for example \
                 `https://app.example`), `null` or `*`"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_own_host_and_listed_origins_are_allowed() {
        let none: Vec<String> = Vec::new();
        let host = Some("127.0.0.1:8787");
        // Not a browser.
        assert!(allowed(None, host, &none));
        // The server's own host, whatever the scheme and port.
        assert!(allowed(Some("http://127.0.0.1:8787"), host, &none));
        assert!(allowed(Some("https://127.0.0.1"), host, &none));
        assert!(allowed(Some("http://APP.example"), Some("app.example"), &none));
        assert!(allowed(Some("http://[::1]:3000"), Some("[::1]:8787"), &none));
        // Another host, or none to compare with.
        assert!(!allowed(Some("http://localhost:8787"), host, &none));
        assert!(!allowed(Some("https://127.0.0.1.evil.example"), host, &none));
        assert!(!allowed(Some("null"), host, &none));
        assert!(!allowed(Some("http://127.0.0.1:8787"), None, &none));
        assert!(!allowed(Some("http://[::1]:3000"), Some("[::2]:8787"), &none));
        // Listed ones, and `*`.
        let list = vec!["https://app.example/".to_owned(), "null".to_owned()];
        assert!(allowed(Some("https://app.example"), host, &list));
        assert!(allowed(Some("null"), host, &list));
        assert!(!allowed(Some("http://app.example"), host, &list));
        assert!(allowed(Some("https://evil.example"), host, &["*".to_owned()]));
    }

    #[test]
    fn allow_origin_values_are_checked() {
        let ok = [
            "*",
            "null",
            "https://app.example",
            "http://127.0.0.1:5173",
            "https://app.example/",
        ];
        assert_eq!(check_allowed_origins(&ok.map(String::from)), Ok(()));
        for bad in [
            "app.example",
            "https://app.example/page",
            "://x",
            "https://",
            "*.example",
        ] {
            assert!(check_allowed_origins(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
