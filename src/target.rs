//! Where requests go and with which credentials: the two modes of the WIT package docs.
//!
//! - **Egress injection** (kosmo, and the recommended mode): the environment holds no
//!   `KLAVIYO_API_KEY`; the component addresses `https://a.klaviyo.com` with no credentials and
//!   the host routes the request and adds `Authorization` on the way out.
//! - **Environment**: hosts that configure components through `wasi:cli/environment` (the
//!   wasmtime CLI's `--env`, jco's `process.env`) give `KLAVIYO_API_KEY` and optionally
//!   `KLAVIYO_BASE_URL`; the component then sends `Authorization` itself, to that base URL.

use wasip2::http::types::Scheme;

use crate::Error;

/// The environment variable holding a private API key (environment mode).
pub const API_KEY_VAR: &str = "KLAVIYO_API_KEY";

/// The environment variable holding the API's base URL (default [`klaviyo_spec::DEFAULT_BASE_URL`]).
pub const BASE_URL_VAR: &str = "KLAVIYO_BASE_URL";

/// Where one call's requests go.
pub struct Target {
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `host[:port]`.
    pub authority: String,
    /// A path the base URL adds before `/api/...` (a proxy's mount point), or empty.
    pub prefix: String,
    /// `Klaviyo-API-Key <key>` in environment mode; none when the host adds it.
    pub authorization: Option<String>,
}

impl Target {
    /// The target from the component's environment (empty in kosmo: egress injection),
    /// read once per instance: `wasi:cli/environment` gives an instance the same variables
    /// for its whole life, and a host may keep an instance for many calls.
    pub fn from_environment() -> Result<&'static Target, Error> {
        static TARGET: std::sync::OnceLock<Target> = std::sync::OnceLock::new();
        if let Some(target) = TARGET.get() {
            return Ok(target);
        }
        // A refused variable is not kept: every call reports it.
        let target = Target::read_environment()?;
        Ok(TARGET.get_or_init(|| target))
    }

    fn read_environment() -> Result<Target, Error> {
        let env = wasip2::cli::environment::get_environment();
        let var = |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim())
                .filter(|v| !v.is_empty())
        };
        Target::new(var(API_KEY_VAR), var(BASE_URL_VAR))
    }

    /// The target for an optional key and base URL.
    pub fn new(api_key: Option<&str>, base_url: Option<&str>) -> Result<Target, Error> {
        let authorization = match api_key {
            Some(key) => Some(format!("Klaviyo-API-Key {}", checked_key(key)?)),
            None => None,
        };
        let (scheme, authority, prefix) =
            parse_base_url(base_url.unwrap_or(klaviyo_spec::DEFAULT_BASE_URL))?;
        Ok(Target {
            scheme,
            authority,
            prefix,
            authorization,
        })
    }
}

/// A key goes into a header as it is: printable ASCII without spaces (Klaviyo's private keys
/// are `pk_` and hex), so a stray newline cannot split the header.
fn checked_key(key: &str) -> Result<&str, Error> {
    if key.bytes().all(|b| b.is_ascii_graphic()) && key.len() <= 256 {
        Ok(key)
    } else {
        Err(Error::argument(
            API_KEY_VAR,
            format!(
                "{API_KEY_VAR} must be printable ASCII without spaces (at most 256 characters)"
            ),
        ))
    }
}

/// `scheme://host[:port][/prefix]`. Plain `http` only to a loopback host: anywhere else the key
/// would cross the network in clear text.
fn parse_base_url(url: &str) -> Result<(Scheme, String, String), Error> {
    let bad = |why: &str| Error::argument(BASE_URL_VAR, format!("{BASE_URL_VAR} {why}"));
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(bad(
            "must start with https:// (or http:// for a loopback host)",
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad("must name a host, without user or password"));
    }
    if path.contains(['?', '#']) {
        return Err(bad("must not have a query or fragment"));
    }
    // `[v6]:port` or `host:port` (RFC 3986 §3.2.2-3.2.3).
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, rest)) => (host, rest.strip_prefix(':')),
            None => return Err(bad("has an unclosed IPv6 address")),
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() || port.is_some_and(|p| !p.parse::<u16>().is_ok_and(|p| p > 0)) {
        return Err(bad("has an invalid host or port"));
    }
    let loopback = host == "localhost" || host == "::1" || host.starts_with("127.");
    if matches!(scheme, Scheme::Http) && !loopback {
        return Err(bad(
            "must use https:// unless the host is loopback (the key would travel in clear text)",
        ));
    }
    Ok((
        scheme,
        authority.to_string(),
        path.trim_end_matches('/').to_string(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> Result<(String, String, String), String> {
        parse_base_url(url)
            .map(|(s, a, p)| (format!("{s:?}"), a, p))
            .map_err(|e| e.message)
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            parts("https://a.klaviyo.com").unwrap(),
            (
                "Scheme::Https".into(),
                "a.klaviyo.com".into(),
                String::new()
            )
        );
        assert_eq!(
            parts("http://127.0.0.1:8080/proxy/").unwrap(),
            (
                "Scheme::Http".into(),
                "127.0.0.1:8080".into(),
                "/proxy".into()
            )
        );
        assert!(parts("http://[::1]:9/").is_ok());
        for bad in [
            "http://example.com",
            "ftp://x",
            "https://user:pw@x",
            "https://x:99999",
            "https://x:0",
            "https://x/?q=1",
            "https://",
        ] {
            assert!(parts(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys() {
        assert!(
            Target::new(Some("pk_abc123"), None)
                .unwrap()
                .authorization
                .is_some()
        );
        assert!(Target::new(None, None).unwrap().authorization.is_none());
        let e = Target::new(Some("pk_a\nb"), None).err().unwrap();
        assert_eq!(e.field.as_deref(), Some(API_KEY_VAR));
        assert!(Target::new(Some("pk a"), None).is_err());
    }
}
