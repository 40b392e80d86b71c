//! Egress: what happens to a component's HTTP request. Policy (where a request may go, with
//! which credentials) is one trait, [`EgressPolicy`], with Klaviyo's rules as the default
//! [`KlaviyoPolicy`]; the plumbing around it (wasi-http's `send_request` hook, clamped
//! timeouts, the response-size cap, the exchange log) is the runtime's and is the same for
//! every policy, in the way wasmtime-wasi-http separates the view (where state lives) from
//! hooks (policy).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, HOST};
use http::uri::{Scheme, Uri};
use http::{HeaderName, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use wasmtime_wasi_http::{
    DEFAULT_FORBIDDEN_HEADERS, ForbiddenHeaderFilter, RequestOptions, WasiBody, WasiHttpHooks,
};

use klaviyo_spec::ORIGIN_HOST;

use crate::account::Account;
use crate::error::{CallError, ErrorCode};
use crate::pool::{self, Pools};

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
    /// `host:port` the guest addressed (`a.klaviyo.com:443` for the Klaviyo component, which
    /// runs without an environment and so addresses Klaviyo's default origin).
    pub addressed: String,
    /// `host:port` the host sent the request to once the policy routed it (the account's base
    /// URL); `None` when the policy refused it.
    pub sent_to: Option<String>,
    /// Response status, when a response came.
    pub status: Option<u16>,
    /// Why there was no response (denied, connect error, timeout).
    pub error: Option<String>,
    /// Time to the response head.
    pub duration: Duration,
}

/// The exchanges of one call, shared with the hook's futures.
pub type ExchangeLog = Arc<Mutex<Vec<Exchange>>>;

/// Why a request was refused by an [`EgressPolicy`]; the guest sees `HTTP-request-denied`, the
/// call's [`Exchange`] log keeps the reason.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("denied: {0}")]
pub struct Denied(pub String);

/// The policy seam (as wasmtime-wasi-http's `WasiHttpHooks` separates policy from plumbing):
/// where a guest's request may go and with which credentials. [`KlaviyoPolicy`] is the
/// default; an embedder may supply its own (a proxy, extra headers, an audit) through
/// [`crate::RuntimeBuilder::egress_policy`]. Timeouts, the body cap and connection pooling
/// stay the runtime's, whatever the policy says.
pub trait EgressPolicy: Send + Sync + 'static {
    /// Whether the guest may set header `name` itself (checked by wasi-http when the guest
    /// builds the request). The default forbids wasi-http's hop-by-hop set and
    /// `Authorization`, which is the host's to add.
    fn forbidden_header(&self, name: &HeaderName) -> bool {
        *name == AUTHORIZATION || DEFAULT_FORBIDDEN_HEADERS.contains(name)
    }

    /// Admit one request the guest sends for `account`: rewrite it to where it really goes and
    /// add the credentials, or refuse it.
    fn admit(&self, account: &Account, request: &mut Request<WasiBody>) -> Result<(), Denied>;
}

/// Klaviyo's rules: the guest may address only `https://a.klaviyo.com` (the origin the WIT
/// package docs promise); the request is routed to the account's base URL and given
/// `Authorization: Klaviyo-API-Key <key>`, replacing anything the guest sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct KlaviyoPolicy;

impl EgressPolicy for KlaviyoPolicy {
    fn admit(&self, account: &Account, request: &mut Request<WasiBody>) -> Result<(), Denied> {
        if !addresses_klaviyo(request.uri()) {
            return Err(Denied(format!(
                "{} is not {ORIGIN_HOST}",
                request.uri().host().unwrap_or("?")
            )));
        }
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let base = &account.base_url;
        let target = Uri::builder()
            .scheme(base.scheme.clone())
            .authority(base.authority.clone())
            .path_and_query(format!("{}{}", base.prefix, path))
            .build()
            .map_err(|_| Denied("the routed URL is invalid".into()))?;
        *request.uri_mut() = target;
        let mut credentials =
            HeaderValue::from_str(&format!("Klaviyo-API-Key {}", account.api_key.expose()))
                .map_err(|_| Denied("the account's API key is not a valid header value".into()))?;
        credentials.set_sensitive(true);
        let headers = request.headers_mut();
        headers.remove(AUTHORIZATION);
        if let Ok(host) = HeaderValue::from_str(base.authority.as_str()) {
            headers.insert(HOST, host);
        }
        headers.insert(AUTHORIZATION, credentials);
        Ok(())
    }
}

/// The wasi-http hooks of one call: bound to one account, deciding by an [`EgressPolicy`] and
/// sending on that account's pooled connections.
pub(crate) struct EgressHooks {
    pub(crate) account: Account,
    pub(crate) policy: Arc<dyn EgressPolicy>,
    pub(crate) limits: EgressLimits,
    pub(crate) log: ExchangeLog,
    pub(crate) pools: Arc<Pools>,
}

/// Whether a guest request addresses the one origin it may: `https://a.klaviyo.com[:443]`.
fn addresses_klaviyo(uri: &Uri) -> bool {
    uri.scheme() == Some(&Scheme::HTTPS)
        && uri
            .host()
            .is_some_and(|h| h.eq_ignore_ascii_case(ORIGIN_HOST))
        && matches!(uri.port_u16(), None | Some(443))
}

/// `host:port` of a URI, the port written out (`a.klaviyo.com:443`), as messages name where a
/// request went: never its path, query or credentials.
pub(crate) fn host_port(uri: &Uri) -> Option<String> {
    let host = uri.host()?;
    let port = uri.port_u16().or_else(|| match uri.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    })?;
    Some(format!("{host}:{port}"))
}

/// The component's messages name the `host:port` it addressed; when the policy sent the
/// request elsewhere (an account's base URL), the message names where it really went, since
/// that is what a person must fix. Only `transport` and `timeout` errors are about a
/// connection.
pub(crate) fn name_where_it_went(error: &mut CallError, exchanges: &[Exchange]) {
    if !matches!(error.code, ErrorCode::Transport | ErrorCode::Timeout) {
        return;
    }
    let Some((addressed, sent_to)) = exchanges
        .iter()
        .rev()
        .find_map(|x| Some((&x.addressed, x.sent_to.as_ref()?)))
    else {
        return;
    };
    if !addressed.is_empty() && addressed != sent_to {
        error.message = error.message.replace(addressed.as_str(), sent_to);
    }
}

fn clamp(asked: Option<Duration>, limit: Duration) -> Duration {
    asked.map_or(limit, |d| d.min(limit))
}

/// What a wasi-http `send_request` hook returns.
type SendFuture = Box<
    dyn Future<
            Output = wasmtime_wasi_http::Result<(
                Response<WasiBody>,
                Box<dyn Future<Output = Result<(), wasmtime_wasi_http::Error>> + Send>,
            )>,
        > + Send,
>;

impl WasiHttpHooks for EgressHooks {
    fn forbidden_header_filter(&mut self) -> ForbiddenHeaderFilter {
        let policy = self.policy.clone();
        Arc::new(move |name: &HeaderName| policy.forbidden_header(name))
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
        let addressed = host_port(request.uri()).unwrap_or_default();
        if let Err(denied) = self.policy.admit(&self.account, &mut request) {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Exchange {
                    method,
                    path,
                    addressed,
                    sent_to: None,
                    status: None,
                    error: Some(denied.to_string()),
                    duration: Duration::ZERO,
                });
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }

        // The guest's timeouts are honoured up to the host's limits. The pooled client
        // connects only when it has no idle connection, so the first-byte deadline runs from
        // the send and covers a connect too (which the connector caps at `connect_timeout`).
        let asked = options.unwrap_or_default();
        let limits = &self.limits;
        let first_byte = clamp(asked.first_byte_timeout, limits.first_byte_timeout);
        let between = clamp(asked.between_bytes_timeout, limits.between_bytes_timeout);
        let max_bytes = limits.max_response_bytes;
        let client = self.pools.client(&self.account, limits.connect_timeout);
        let sent_to = host_port(request.uri());
        Box::new(async move {
            let started = Instant::now();
            let sent = pool::send(client, request, first_byte, between).await;
            let mut exchange = Exchange {
                method,
                path,
                addressed,
                sent_to,
                status: None,
                error: None,
                duration: started.elapsed(),
            };
            let result = match sent {
                // A body declared larger than the cap is refused with the head, before any
                // of it is read; the guest sees `HTTP-response-body-size` as the request's
                // error code. (A body error met while reading reaches the guest without its
                // code in wasmtime-wasi-http 48, indistinguishable from a cut connection.)
                Ok(response) if declared_over(&response, max_bytes) => {
                    exchange.status = Some(response.status().as_u16());
                    exchange.error = Some(format!("response body over {max_bytes} bytes"));
                    Err(wasmtime_wasi_http::Error::HttpResponseBodySize(
                        declared_length(&response),
                    ))
                }
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

/// Whether a response declares a body longer than `max_bytes` (a body of exactly the cap is
/// allowed, as `CappedBody` allows it).
fn declared_over<B>(response: &Response<B>, max_bytes: u64) -> bool {
    declared_length(response).is_some_and(|n| n > max_bytes)
}

/// The `Content-Length` a response declares, if any.
fn declared_length<B>(response: &Response<B>) -> Option<u64> {
    response
        .headers()
        .get(http::header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
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

    /// Guards: a default port left off, or the path or query leaking into a message.
    #[test]
    fn host_port_is_host_and_port_only() {
        let at = |u: &str| host_port(&u.parse().unwrap());
        assert_eq!(
            at("https://a.klaviyo.com/api/x?k=v").as_deref(),
            Some("a.klaviyo.com:443")
        );
        assert_eq!(at("http://127.0.0.1:1/p").as_deref(), Some("127.0.0.1:1"));
        assert_eq!(at("http://[::1]/").as_deref(), Some("[::1]:80"));
        assert_eq!(at("/relative"), None);
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

    /// A connection error names where the request really went; other errors, an exchange
    /// that was refused, or one the guest addressed without a host are left as they are
    /// (fails if the two conditions are joined by `||`: an empty `addressed` would put the
    /// host between every character).
    #[test]
    fn errors_name_where_the_request_went() {
        let exchange = |addressed: &str, sent_to: Option<&str>| Exchange {
            method: "GET".into(),
            path: "/api/lists".into(),
            addressed: addressed.into(),
            sent_to: sent_to.map(str::to_string),
            status: None,
            error: Some("refused".into()),
            duration: Duration::ZERO,
        };
        let named = |code: ErrorCode, exchanges: &[Exchange]| {
            let mut e = CallError::new(
                code,
                "list_lists",
                "could not reach Klaviyo at a.klaviyo.com:443 (connection refused)",
            );
            name_where_it_went(&mut e, exchanges);
            e.message
        };
        let routed = [
            exchange("other:1", Some("elsewhere:2")),
            exchange("a.klaviyo.com:443", Some("127.0.0.1:8080")),
        ];
        assert_eq!(
            named(ErrorCode::Transport, &routed),
            "could not reach Klaviyo at 127.0.0.1:8080 (connection refused)"
        );
        assert_eq!(
            named(ErrorCode::Timeout, &routed),
            "could not reach Klaviyo at 127.0.0.1:8080 (connection refused)"
        );
        let unchanged = "could not reach Klaviyo at a.klaviyo.com:443 (connection refused)";
        assert_eq!(named(ErrorCode::ServerError, &routed), unchanged);
        assert_eq!(named(ErrorCode::Transport, &[]), unchanged);
        assert_eq!(
            named(ErrorCode::Transport, &[exchange("a.klaviyo.com:443", None)]),
            unchanged
        );
        assert_eq!(
            named(
                ErrorCode::Transport,
                &[exchange("", Some("127.0.0.1:8080"))]
            ),
            unchanged
        );
        // The last exchange that went somewhere is the one named.
        assert_eq!(
            named(
                ErrorCode::Transport,
                &[
                    exchange("a.klaviyo.com:443", Some("127.0.0.1:1")),
                    exchange("a.klaviyo.com:443", None)
                ]
            ),
            "could not reach Klaviyo at 127.0.0.1:1 (connection refused)"
        );
    }

    /// The cap is inclusive, whether declared or counted (fails with `>=` for `>` in either).
    #[test]
    fn a_body_of_exactly_the_cap_passes() {
        let with_length = |value: &str| {
            Response::builder()
                .header(http::header::CONTENT_LENGTH, value)
                .body(())
                .unwrap()
        };
        assert!(!declared_over(&with_length("16"), 16));
        assert!(declared_over(&with_length("17"), 16));
        assert!(declared_over(&with_length(" 17 "), 16));
        assert!(!declared_over(&with_length("lots"), 16));
        assert!(!declared_over(&Response::new(()), 16));

        let body = |chunks: &[&'static str], cap: u64| CappedBody {
            inner: Chunks(
                chunks
                    .iter()
                    .map(|c| Bytes::from_static(c.as_bytes()))
                    .collect(),
            )
            .boxed_unsync(),
            left: cap,
        };
        let read = |mut capped: CappedBody| {
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            let mut got = Vec::new();
            loop {
                match Pin::new(&mut capped).poll_frame(&mut cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        got.extend_from_slice(frame.data_ref().unwrap())
                    }
                    Poll::Ready(Some(Err(e))) => return Err((got.len(), e.to_string())),
                    Poll::Ready(None) => return Ok(got.len()),
                    Poll::Pending => unreachable!("the frames are ready"),
                }
            }
        };
        // The end-of-stream hint is the inner body's, so readers stop when it has ended.
        assert!(!body(&["abcd"], 8).is_end_stream());
        let empty = CappedBody {
            inner: http_body_util::Empty::<Bytes>::new()
                .map_err(|never| match never {})
                .boxed_unsync(),
            left: 8,
        };
        assert!(empty.is_end_stream());
        assert_eq!(read(body(&["abcd", "efgh"], 8)), Ok(8));
        assert_eq!(
            read(body(&["abcd", "efgh", "i"], 8)),
            Err((
                8,
                wasmtime_wasi_http::Error::HttpResponseBodySize(None).to_string()
            ))
        );
        assert_eq!(
            read(body(&["abcd", "efgh"], 7)),
            Err((
                4,
                wasmtime_wasi_http::Error::HttpResponseBodySize(None).to_string()
            ))
        );
    }
}

/// A body of ready chunks, for the tests.
#[cfg(test)]
struct Chunks(std::collections::VecDeque<Bytes>);

#[cfg(test)]
impl Body for Chunks {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(Frame::data(c))))
    }
}
