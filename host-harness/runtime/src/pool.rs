//! Keep-alive connections, one pool per account. wasmtime-wasi-http's default sender opens a
//! new connection (TCP and, for `https`, a TLS handshake) for every request; a pooled client
//! per account reuses them. Pools are keyed by the whole [`Account`] (name, key and base URL
//! compared in full, never a hash of them), so one tenant's connection never carries another
//! tenant's request; a pool unused for longer than its connections' idle timeout is dropped,
//! so a host serving many tenants over months does not grow without bound.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use wasmtime_wasi_http::{Error, WasiBody};

use crate::account::Account;

/// A pooled HTTP(S) client.
pub(crate) type PooledClient = Client<HttpsConnector<HttpConnector>, WasiBody>;

/// Idle connections kept per account.
const MAX_IDLE_PER_ACCOUNT: usize = 16;

/// The pools of the accounts a runtime has served recently.
pub(crate) struct Pools {
    tls: Arc<rustls::ClientConfig>,
    /// How long an idle connection, and then an unused pool, is kept.
    idle: Duration,
    clients: Mutex<Clients>,
}

/// Pools by account, with when each was last used.
struct Clients {
    by_account: HashMap<Account, (PooledClient, Instant)>,
    last_sweep: Instant,
}

impl Pools {
    /// Pools trusting the web's roots (webpki-roots) and, for tests or a private proxy, the
    /// PEM certificates in `extra_roots_pem`.
    pub fn new(extra_roots_pem: Option<&str>, idle: Duration) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        if let Some(pem) = extra_roots_pem {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                let cert = cert.map_err(|e| format!("invalid trusted root PEM: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("invalid trusted root: {e}"))?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Pools {
            tls: Arc::new(tls),
            idle,
            clients: Mutex::new(Clients {
                by_account: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        })
    }

    /// The client of this account (its name, key and base URL together name the pool).
    pub fn client(&self, account: &Account, connect_timeout: Duration) -> PooledClient {
        self.client_at(account, connect_timeout, Instant::now())
    }

    /// [`Pools::client`] at the instant `now` (tests pass their own, not sleeps).
    fn client_at(
        &self,
        account: &Account,
        connect_timeout: Duration,
        now: Instant,
    ) -> PooledClient {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        // Every connection of a pool idle this long is closed already: drop the pool itself.
        if now.duration_since(clients.last_sweep) >= self.idle {
            clients
                .by_account
                .retain(|_, (_, used)| now.duration_since(*used) < self.idle);
            clients.last_sweep = now;
        }
        if let Some((client, used)) = clients.by_account.get_mut(account) {
            *used = now;
            return client.clone();
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.idle)
            .pool_max_idle_per_host(MAX_IDLE_PER_ACCOUNT)
            .build(https);
        clients
            .by_account
            .insert(account.clone(), (client.clone(), now));
        client
    }

    /// How many accounts have a pool now.
    pub fn len(&self) -> usize {
        self.clients
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .by_account
            .len()
    }
}

/// Send `request` on `client`, with the first-byte deadline, and give the response body the
/// between-bytes deadline. Errors are wasi-http error codes, as the guest expects.
pub(crate) async fn send(
    client: PooledClient,
    request: http::Request<WasiBody>,
    first_byte: Duration,
    between_bytes: Duration,
) -> Result<http::Response<BetweenBytes>, Error> {
    let response = match tokio::time::timeout(first_byte, client.request(request)).await {
        Err(_) => return Err(Error::ConnectionReadTimeout),
        Ok(Err(e)) => return Err(client_error(&e)),
        Ok(Ok(response)) => response,
    };
    Ok(response.map(|incoming| BetweenBytes {
        inner: incoming,
        limit: between_bytes,
        timer: Box::pin(tokio::time::sleep(between_bytes)),
    }))
}

/// The wasi-http error code for a client failure.
fn client_error(e: &hyper_util::client::legacy::Error) -> Error {
    use std::error::Error as _;
    if e.is_connect() {
        if let Some(tls) = tls_error(e.source()) {
            return tls;
        }
        // hyper-util reports its connect timeout as an `io::Error` of kind `TimedOut`, under
        // its own `ConnectError`: look down the whole chain, not at the first cause only.
        let timed_out = std::iter::successors(e.source(), |s| (*s).source()).any(|s| {
            s.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        }) || format!("{e:?}").contains("timed out");
        return if timed_out {
            Error::ConnectionTimeout
        } else {
            Error::ConnectionRefused
        };
    }
    // hyper's own timeouts (`is_timeout`) need a timer this client is not given: the
    // first-byte deadline is `send`'s, and reads as `ConnectionReadTimeout`.
    match e.source().and_then(|s| s.downcast_ref::<hyper::Error>()) {
        Some(h) if h.is_incomplete_message() => Error::HttpResponseIncomplete,
        _ => Error::HttpProtocolError,
    }
}

/// The wasi-http code for a failed TLS handshake, so that a certificate nobody trusts (or one
/// for another host name) reads as `TLS certificate error`, not as a server that is down.
/// tokio-rustls wraps the `rustls::Error` in an `io::Error` (which hyper-rustls wraps in
/// another), and `io::Error::source()` skips the error it wraps: each link is opened with
/// `get_ref` as well as `source`.
fn tls_error(first: Option<&(dyn std::error::Error + 'static)>) -> Option<Error> {
    fn next<'a>(
        s: &'a (dyn std::error::Error + 'static),
    ) -> Option<&'a (dyn std::error::Error + 'static)> {
        match s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(wrapped) => Some(wrapped),
            None => s.source(),
        }
    }
    let rustls_error = std::iter::successors(first, |s| next(*s))
        .take(16)
        .find_map(|s| s.downcast_ref::<rustls::Error>())?;
    Some(match rustls_error {
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
            Error::TlsCertificateError
        }
        rustls::Error::AlertReceived(alert) => Error::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => Error::TlsProtocolError,
    })
}

/// A response body that fails with `connection-read-timeout` when no frame arrives within
/// the between-bytes deadline.
pub(crate) struct BetweenBytes<B = hyper::body::Incoming> {
    inner: B,
    limit: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<B> Body for BetweenBytes<B>
where
    B: Body<Data = Bytes, Error = hyper::Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.limit;
                self.timer.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(if e.is_incomplete_message() {
                Error::HttpResponseIncomplete
            } else {
                Error::HttpProtocolError
            }))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiKey;

    fn account(name: &str) -> Account {
        Account::new(name, ApiKey::new("pk_pool_test_key"), "http://127.0.0.1:1").unwrap()
    }

    /// A sweep drops the pools idle for the whole idle time and keeps the others, each
    /// account's pool is reused while it lives. Instants are given, not slept, so a busy
    /// machine cannot change the outcome. Catches: the sweep's `>=` or the idle test's `<`
    /// changed (every pool dropped, or none), and a pool not reused.
    /// The TLS failure is found however deep tokio-rustls and hyper-rustls wrap it (in
    /// `io::Error`s, whose `source()` skips what they wrap), and each kind keeps its own
    /// wasi-http code. Catches: an arm deleted (an alert read as a protocol error), or the
    /// wrapped error not opened.
    #[test]
    fn tls_failures_are_found_in_their_wrapping_and_keep_their_codes() {
        use rustls::AlertDescription;
        use std::io;
        let wrapped =
            |e: rustls::Error| io::Error::other(io::Error::new(io::ErrorKind::InvalidData, e));
        let code = |e: rustls::Error| {
            let outer = wrapped(e);
            tls_error(Some(&outer))
        };
        assert!(matches!(
            code(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
            )),
            Some(Error::TlsCertificateError)
        ));
        assert!(matches!(
            code(rustls::Error::NoCertificatesPresented),
            Some(Error::TlsCertificateError)
        ));
        match code(rustls::Error::AlertReceived(
            AlertDescription::HandshakeFailure,
        )) {
            Some(Error::TlsAlertReceived {
                alert_id,
                alert_message,
            }) => {
                assert_eq!(alert_id, Some(40));
                assert_eq!(alert_message.as_deref(), Some("HandshakeFailure"));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            code(rustls::Error::DecryptError),
            Some(Error::TlsProtocolError)
        ));
        let plain = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        assert!(tls_error(Some(&plain)).is_none());
        assert!(tls_error(None).is_none());
    }

    /// The end-of-stream hint is the inner body's, never a guess: an empty body ends at once,
    /// one with data does not (http-body: `is_end_stream` true means `poll_frame` gives
    /// `None`). Catches the hint made a constant.
    #[tokio::test]
    async fn the_end_of_stream_hint_is_the_inner_bodys() {
        use http_body_util::BodyExt;
        let wrap = |inner| BetweenBytes {
            inner,
            limit: Duration::from_secs(1),
            timer: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
        };
        let never = |e: std::convert::Infallible| -> hyper::Error { match e {} };
        let empty = wrap(
            http_body_util::Empty::<Bytes>::new()
                .map_err(never)
                .boxed_unsync(),
        );
        assert!(empty.is_end_stream());
        let full = wrap(
            http_body_util::Full::new(Bytes::from_static(b"{}"))
                .map_err(never)
                .boxed_unsync(),
        );
        assert!(!full.is_end_stream());
        let collected = full.collect().await.ok().unwrap().to_bytes();
        assert_eq!(&collected[..], b"{}");
    }

    #[tokio::test]
    async fn a_sweep_drops_only_pools_idle_for_the_whole_idle_time() {
        let idle = Duration::from_secs(60);
        let pools = Pools::new(None, idle).unwrap();
        let t0 = Instant::now();
        let timeout = Duration::from_secs(1);
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        pools.client_at(&account("a"), timeout, at(0));
        pools.client_at(&account("b"), timeout, at(40));
        pools.client_at(&account("b"), timeout, at(50));
        assert_eq!(pools.len(), 2, "no sweep before the idle time has passed");
        // At 61 s: `a` (used at 0) has been idle 61 s and goes; `b` (used at 50) stays.
        pools.client_at(&account("c"), timeout, at(61));
        let mut names: Vec<String> = {
            let clients = pools.clients.lock().unwrap();
            clients.by_account.keys().map(|a| a.name.clone()).collect()
        };
        names.sort();
        assert_eq!(names, ["b", "c"]);
        // Exactly the idle time unused is idle: at 121 s, `c` (used at 61) goes.
        pools.client_at(&account("b"), timeout, at(121));
        assert_eq!(pools.len(), 1);
    }
}
