//! Accounts: a name, a private API key and where the account's API lives. The key is held by
//! the host only; it never enters a component and never prints.

use std::fmt;
use std::sync::Arc;

use http::uri::{Authority, Scheme, Uri};

/// Shortest API key accepted. Klaviyo's private keys are `pk_` and 34 more characters; a key of
/// 1-3 characters could not be redacted from output without garbling ordinary text, so such keys
/// are refused where they are configured (finding 8/9), and every accepted key is redacted.
pub const MIN_API_KEY_LEN: usize = 8;

/// Longest API key accepted (a key is sent in every request's `Authorization` header).
pub const MAX_API_KEY_LEN: usize = 256;

/// The environment variable that allows `http://` base URLs to hosts other than loopback
/// (`KOSMO_ALLOW_INSECURE_HTTP=1`): the key would cross the network in clear text.
pub const ALLOW_INSECURE_HTTP_ENV: &str = "KOSMO_ALLOW_INSECURE_HTTP";

/// A Klaviyo private API key. Its `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wrap a key as it is (embedders that validated it themselves, tests). Keys a person
    /// configures go through [`ApiKey::parse`].
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(Arc::from(key.into()))
    }

    /// Check a configured key: the one rule for every place a key comes from (the environment,
    /// `integrations:configure`, `accounts.json`), so a key one accepts the others accept too
    /// (finding 9). Surrounding whitespace is trimmed; what is left must be
    /// [`MIN_API_KEY_LEN`] to [`MAX_API_KEY_LEN`] printable ASCII characters without spaces,
    /// which is also exactly what an HTTP header value can carry, so a bad key fails here and
    /// not after a request was attempted. The error never contains the key.
    pub fn parse(text: &str) -> Result<ApiKey, String> {
        let key = text.trim();
        let rule = format!(
            "a key is {MIN_API_KEY_LEN} to {MAX_API_KEY_LEN} printable ASCII characters without spaces"
        );
        if key.is_empty() {
            return Err(format!("the API key is empty ({rule})"));
        }
        if let Some(i) = key.chars().position(|c| !c.is_ascii_graphic()) {
            return Err(format!(
                "the API key contains a space, a control character or a non-ASCII character at position {} ({rule})",
                i + 1
            ));
        }
        if !(MIN_API_KEY_LEN..=MAX_API_KEY_LEN).contains(&key.len()) {
            return Err(format!("the API key has {} characters ({rule})", key.len()));
        }
        Ok(ApiKey::new(key))
    }

    /// The key itself, for the `Authorization` header and for redaction.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where an account's requests go: scheme, host, port and an optional path prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BaseUrl {
    pub(crate) scheme: Scheme,
    pub(crate) authority: Authority,
    pub(crate) prefix: String,
}

impl BaseUrl {
    /// Parse `https://host[:port][/prefix]`, or `http://` to a loopback host (`localhost`,
    /// `127.x.x.x`, `[::1]`): the one check of every base URL, wherever it comes from
    /// (finding 9). Plain `http://` elsewhere would send the key in clear text, so it needs
    /// `KOSMO_ALLOW_INSECURE_HTTP=1` ([`ALLOW_INSECURE_HTTP_ENV`]). The port must be 1-65535;
    /// credentials (`user:pass@`), a query and a fragment are refused. Errors never repeat the
    /// URL's credentials.
    pub fn parse(text: &str) -> Result<Self, String> {
        BaseUrl::parse_with(text, insecure_http_allowed())
    }

    /// [`BaseUrl::parse`] with the `http://` opt-in given rather than read from the
    /// environment.
    pub fn parse_with(text: &str, allow_insecure_http: bool) -> Result<Self, String> {
        let text = text.trim();
        let shown = without_userinfo(text);
        let bad = |why: &str| format!("base URL `{shown}` {why}");
        let uri: Uri = text
            .parse()
            .map_err(|e| bad(&format!("is not a valid URL: {e}")))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| bad("has no scheme: write https://host"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(bad("must be https (or http to a loopback host)"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| bad("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("must not carry credentials (user:password@)"));
        }
        if authority.host().is_empty() {
            return Err(bad("has no host"));
        }
        check_port(&authority).map_err(|why| bad(&why))?;
        if uri.query().is_some() || text.contains('#') {
            return Err(bad("must not have a query or a fragment"));
        }
        if scheme == Scheme::HTTP && !is_loopback(authority.host()) && !allow_insecure_http {
            return Err(bad(&format!(
                "uses plain http to a host that is not loopback, which would send the API key in clear \
                 text: use https, or set {ALLOW_INSECURE_HTTP_ENV}=1 to allow it"
            )));
        }
        let prefix = uri.path().trim_end_matches('/').to_string();
        Ok(BaseUrl {
            scheme,
            authority,
            prefix,
        })
    }

    /// The URL as text.
    pub fn as_string(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.prefix)
    }
}

/// Whether `KOSMO_ALLOW_INSECURE_HTTP=1` is set.
pub fn insecure_http_allowed() -> bool {
    std::env::var(ALLOW_INSECURE_HTTP_ENV).is_ok_and(|v| v.trim() == "1")
}

/// `http::Authority` keeps a port it cannot represent (`:99999`, `:`) as text and reports
/// none; a base URL must have no port or one in 1-65535.
fn check_port(authority: &Authority) -> Result<(), String> {
    let text = authority.as_str();
    // The port follows the last `:` after the host (an IPv6 host is bracketed).
    let host_end = text.rfind(']').map_or(0, |i| i + 1);
    let Some(colon) = text[host_end..].rfind(':') else {
        return Ok(());
    };
    let port = &text[host_end + colon + 1..];
    match port.parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) && port.bytes().all(|b| b.is_ascii_digit()) => Ok(()),
        _ => Err(format!(
            "has port `{port}`: a port is a number from 1 to 65535"
        )),
    }
}

/// `localhost`, `127.0.0.0/8` or `[::1]`: traffic that never leaves the machine.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `text` with any `user:password@` before its host removed, for messages: a proxy password in
/// a URL must never be echoed (finding 8), even when the URL is otherwise invalid.
pub fn without_userinfo(text: &str) -> String {
    let (scheme, rest) = match text.find("://") {
        Some(i) => text.split_at(i + 3),
        None => ("", text),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}{}", &rest[at + 1..]),
        None => text.to_string(),
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_string())
    }
}

/// One Klaviyo account: a name, its key and where its API lives. Two accounts are the same
/// tenant only when all three are equal (connection pools and concurrency limits are keyed
/// by the whole account, never by a hash of it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Account {
    /// The account's name (`default` for the one from `KLAVIYO_API_KEY`).
    pub name: String,
    /// Its private API key.
    pub api_key: ApiKey,
    /// Its API base URL (Klaviyo's, or an emulator's).
    pub base_url: BaseUrl,
}

impl Account {
    /// An account at `base_url`.
    pub fn new(name: impl Into<String>, api_key: ApiKey, base_url: &str) -> Result<Self, String> {
        Ok(Account {
            name: name.into(),
            api_key,
            base_url: BaseUrl::parse(base_url)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_redacted() {
        let key = ApiKey::new("pk_secret_123");
        assert_eq!(format!("{key:?} {key}"), "ApiKey(<redacted>) <redacted>");
        let account = Account::new("a", key, "http://127.0.0.1:1").unwrap();
        assert!(!format!("{account:?}").contains("pk_secret_123"));
    }

    #[test]
    fn base_urls() {
        let b = BaseUrl::parse("http://127.0.0.1:8080/prefix/").unwrap();
        assert_eq!(b.as_string(), "http://127.0.0.1:8080/prefix");
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("https://user:pw@x").is_err());
        assert!(BaseUrl::parse("not a url").is_err());
    }

    #[test]
    fn base_url_rules() {
        for ok in [
            "https://a.klaviyo.com",
            "https://a.klaviyo.com:443/api",
            "http://localhost:8080",
            "http://127.0.0.1:65535",
            "http://[::1]:1/x",
        ] {
            assert!(BaseUrl::parse_with(ok, false).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com",
            "http://10.0.0.1:80",
            "https://host:99999",
            "https://host:0",
            "https://host:",
            "https://host:8a",
            "https://host/#frag",
            "https://host/?q=1",
            "https://:443",
        ] {
            assert!(BaseUrl::parse_with(bad, false).is_err(), "{bad}");
        }
        assert!(BaseUrl::parse_with("http://example.com", true).is_ok());
    }

    #[test]
    fn url_credentials_never_show_in_errors() {
        for text in [
            "http://user:s3cretpw@example.com",
            "http://user:s3cretpw@example.com:99999/x",
            "http://user:s3cret pw@exa mple.com",
            "user:s3cretpw@host",
        ] {
            let e = BaseUrl::parse_with(text, false).unwrap_err();
            assert!(!e.contains("s3cret"), "{e}");
        }
        assert_eq!(without_userinfo("https://u:p@h:1/a@b"), "https://h:1/a@b");
        assert_eq!(without_userinfo("https://h/a@b"), "https://h/a@b");
    }

    #[test]
    fn api_key_rules() {
        assert_eq!(
            ApiKey::parse(" pk_abcdef12 \n").unwrap().expose(),
            "pk_abcdef12"
        );
        for bad in [
            "",
            "pk_1",
            "pk_abc def123",
            "pk_abc\ndef123",
            "pk_abcdéf123",
        ] {
            let e = ApiKey::parse(bad).unwrap_err();
            assert!(e.contains("printable ASCII"), "{e}");
        }
        assert!(ApiKey::parse(&"k".repeat(MAX_API_KEY_LEN + 1)).is_err());
        // The error names the problem, never the key.
        assert!(
            !ApiKey::parse("pk_secret value")
                .unwrap_err()
                .contains("secret")
        );
    }
}
