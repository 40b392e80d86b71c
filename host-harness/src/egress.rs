//! Egress policy: the one place that decides where a component's HTTP requests may go and with
//! which credentials. The runtime plumbing (stores, linkers) lives in [`crate::runtime`]; this
//! module only implements wasi-http's `send_request` hook, in the way wasmtime-wasi-http
//! separates the view (where state lives) from hooks (policy).
//!
//! The rules, per call and account:
//! - the guest may address only `https://a.klaviyo.com` (any other scheme, host or port is
//!   answered with wasi-http's `HTTP-request-denied`);
//! - the request is routed to the account's base URL and given the account's
//!   `Authorization: Klaviyo-API-Key ...`; a guest can never set `Authorization` itself;
//! - timeouts are clamped to the host's limits, and the response body is cut at a size cap.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::pool::{self, Pools};
use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::uri::{Authority, Scheme, Uri};
use http::{HeaderName, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

/// The origin the component addresses (see `wit/klaviyo.wit`): the only one it may reach.
pub const KLAVIYO_HOST: &str = "a.klaviyo.com";

/// Klaviyo's production base URL.
pub const DEFAULT_BASE_URL: &str = "https://a.klaviyo.com";

/// A Klaviyo private API key. Held by the host only; it never enters a component, and its
/// `Debug` and `Display` print `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BaseUrl {
    scheme: Scheme,
    authority: Authority,
    prefix: String,
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

/// One Klaviyo account: a name, its key and where its API lives.
#[derive(Clone, Debug)]
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

/// Limits the host puts on every request, whatever the guest asks.
#[derive(Clone, Debug)]
pub struct EgressLimits {
    /// Longest wait for a connection.
    pub connect_timeout: Duration,
    /// Longest wait for the response head.
    pub first_byte_timeout: Duration,
    /// Longest pause inside the response body.
    pub between_bytes_timeout: Duration,
    /// Largest response body passed to the guest.
    pub max_response_bytes: u64,
}

impl Default for EgressLimits {
    fn default() -> Self {
        EgressLimits {
            connect_timeout: Duration::from_secs(10),
            first_byte_timeout: Duration::from_secs(30),
            between_bytes_timeout: Duration::from_secs(30),
            max_response_bytes: 16 * 1024 * 1024,
        }
    }
}

/// One HTTP exchange a call made, as the host saw it.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// Method.
    pub method: String,
    /// Path and query the guest asked for.
    pub path: String,
    /// Response status, when a response came.
    pub status: Option<u16>,
    /// Why there was no response (denied, connect error, timeout).
    pub error: Option<String>,
    /// Time to the response head.
    pub duration: Duration,
}

/// The exchanges of one call, shared with the hook's futures.
pub type ExchangeLog = Arc<Mutex<Vec<Exchange>>>;

/// The wasi-http hooks of one call: bound to one account.
pub struct EgressHooks {
    account: Account,
    limits: EgressLimits,
    log: ExchangeLog,
    pools: Arc<Pools>,
}

impl EgressHooks {
    /// Hooks for a call made for `account`, sending on that account's pooled connections.
    pub fn new(
        account: Account,
        limits: EgressLimits,
        log: ExchangeLog,
        pools: Arc<Pools>,
    ) -> Self {
        EgressHooks {
            account,
            limits,
            log,
            pools,
        }
    }
}

/// Whether a guest request addresses the one origin it may: `https://a.klaviyo.com[:443]`.
fn addresses_klaviyo(uri: &Uri) -> bool {
    uri.scheme() == Some(&Scheme::HTTPS)
        && uri
            .host()
            .is_some_and(|h| h.eq_ignore_ascii_case(KLAVIYO_HOST))
        && matches!(uri.port_u16(), None | Some(443))
}

fn clamp(asked: Option<Duration>, limit: Duration) -> Duration {
    asked.map_or(limit, |d| d.min(limit))
}

/// The headers a guest may not set: wasi-http's defaults plus `Authorization`, which is the
/// host's to add (a guest-set one is refused outright).
pub fn forbidden_headers() -> ForbiddenHeaderFilter {
    Arc::new(|name: &HeaderName| *name == AUTHORIZATION || DEFAULT_FORBIDDEN_HEADERS.contains(name))
}

/// What a wasi-http `send_request` hook returns.
pub type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                Response<WasiBody>,
                Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for EgressHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        forbidden_headers()
    }

    fn send_request(
        &mut self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
    ) -> SendFuture {
        let method = request.method().to_string();
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let log = self.log.clone();
        if !addresses_klaviyo(request.uri()) {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Exchange {
                    method,
                    path,
                    status: None,
                    error: Some(format!(
                        "denied: {} is not {KLAVIYO_HOST}",
                        request.uri().host().unwrap_or("?")
                    )),
                    duration: Duration::ZERO,
                });
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }

        let base = &self.account.base_url;
        let target = Uri::builder()
            .scheme(base.scheme.clone())
            .authority(base.authority.clone())
            .path_and_query(format!("{}{}", base.prefix, path))
            .build();
        let Ok(target) = target else {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestUriInvalid) });
        };
        *request.uri_mut() = target;
        let headers = request.headers_mut();
        headers.remove(AUTHORIZATION);
        if let Ok(host) = HeaderValue::from_str(base.authority.as_str()) {
            headers.insert(HOST, host);
        }
        let Ok(mut credentials) = HeaderValue::from_str(&format!(
            "Klaviyo-API-Key {}",
            self.account.api_key.expose()
        )) else {
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        };
        credentials.set_sensitive(true);
        headers.insert(AUTHORIZATION, credentials);

        // The guest's timeouts are honoured up to the host's limits. The pooled client
        // connects only when it has no idle connection, so the first-byte deadline runs from
        // the send and covers a connect too (which the connector caps at `connect_timeout`).
        let asked = options.unwrap_or_default();
        let limits = &self.limits;
        let first_byte = clamp(asked.first_byte_timeout, limits.first_byte_timeout);
        let between = clamp(asked.between_bytes_timeout, limits.between_bytes_timeout);
        let max_bytes = limits.max_response_bytes;
        let client = self.pools.client(&self.account, limits.connect_timeout);
        Box::new(async move {
            let started = Instant::now();
            let sent = pool::send(client, request, first_byte, between).await;
            let mut exchange = Exchange {
                method,
                path,
                status: None,
                error: None,
                duration: started.elapsed(),
            };
            let result = match sent {
                Ok(response) => {
                    exchange.status = Some(response.status().as_u16());
                    let response = response.map(|b| {
                        CappedBody {
                            inner: b.boxed_unsync(),
                            left: max_bytes,
                        }
                        .boxed_unsync()
                    });
                    // The pooled client drives its connections itself: no I/O future to hand back.
                    let io = async { Ok(()) };
                    Ok((response, Box::new(io) as Box<dyn Future<Output = _> + Send>))
                }
                Err(e) => {
                    exchange.error = Some(e.to_string());
                    Err(e)
                }
            };
            log.lock().unwrap_or_else(|p| p.into_inner()).push(exchange);
            result
        })
    }
}

/// A response body that fails with `HTTP-response-body-size` past a byte budget, so a huge
/// or endless response cannot fill the guest's memory.
struct CappedBody {
    inner: WasiBody,
    left: u64,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    let len = data.len() as u64;
                    if len > self.left {
                        return Poll::Ready(Some(Err(
                            wasmtime_wasi_http::Error::HttpResponseBodySize(None),
                        )));
                    }
                    self.left -= len;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
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
    fn only_klaviyo_over_https_is_addressable() {
        assert!(addresses_klaviyo(
            &"https://a.klaviyo.com/api/profiles".parse().unwrap()
        ));
        assert!(addresses_klaviyo(
            &"https://A.KLAVIYO.COM:443/api".parse().unwrap()
        ));
        for denied in [
            "http://a.klaviyo.com/api",
            "https://a.klaviyo.com:8443/api",
            "https://evil.example/api",
            "https://a.klaviyo.com.evil.example/api",
        ] {
            assert!(!addresses_klaviyo(&denied.parse().unwrap()), "{denied}");
        }
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
