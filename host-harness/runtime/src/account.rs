//! Accounts: a name, a private API key and where the account's API lives. The key is held by
//! the host only; it never enters a component and never prints.

use std::fmt;
use std::sync::Arc;

use http::uri::{Authority, Scheme, Uri};

/// A Klaviyo private API key. Its `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ApiKey(Arc<str>);

impl ApiKey {
    /// Wrap a key.
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(Arc::from(key.into()))
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
    /// Parse `http(s)://host[:port][/prefix]`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let uri: Uri = text
            .trim()
            .parse()
            .map_err(|e| format!("invalid base URL {text:?}: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("base URL {text:?} has no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!("base URL {text:?} must be http or https"));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("base URL {text:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("base URL {text:?} must not carry credentials"));
        }
        if uri.query().is_some() {
            return Err(format!("base URL {text:?} must not have a query"));
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
}
