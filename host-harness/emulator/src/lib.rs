//! A stateful emulator of the Klaviyo REST API (revision 2026-07-15) for tests and
//! `kosmo --sandbox`.
//!
//! It serves the operations of the vendored OpenAPI slices (`openapi/`, one per function) over
//! plain HTTP/1.1 on loopback. Each API key is an independent account, created on first use
//! with a deterministic seed of flows and campaigns. Requests are validated against the spec
//! (switchable), answers are shaped as the spec's response schemas, errors use the envelope
//! Klaviyo really sends, and faults (throttling, HTML gateway pages, delays, dropped
//! connections, malformed JSON) can be injected per key.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use kosmo_emulator::{Emulator, Fault};
//! let emu = Emulator::start().await?;
//! emu.inject_fault("pk_test", Fault::Status { status: 429, code: "throttled".into(), retry_after: Some(1) });
//! println!("Klaviyo at {}", emu.base_url());
//! # Ok(()) }
//! ```

mod errors;
mod faults;
mod filter;
mod ids;
mod paging;
mod ratelimit;
mod render;
mod routes;
mod server;
mod spec;
mod state;
mod time;

#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use server::Shared;

/// A handle to a running emulator. Cloning is cheap (an `Arc` inside); every clone talks to
/// the same server. The server runs on the tokio runtime it was started on until that
/// runtime shuts down.
#[derive(Clone)]
pub struct Emulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    https: bool,
}

impl std::fmt::Debug for Emulator {
    // API keys are never printed: only the address is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// How an emulator behaves.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Validate every request against the OpenAPI slices (parameters, headers, content type
    /// and body schema); a violation answers 400 and is recorded. Default `true`. When off,
    /// only the semantic checks (auth, revision, page sizes, cursors, filters, …) remain.
    pub validate_requests: bool,
    /// Answer 429 `throttled` once an operation's burst (per second) or steady (per minute)
    /// limit from `x-klaviyo-ratelimit` is exceeded for a key. Default `false`, since tests
    /// fire bursts; the `RateLimit-*` headers are sent either way.
    pub enforce_rate_limits: bool,
    /// Port to bind on 127.0.0.1; `0` (the default) picks a free one.
    pub port: u16,
    /// Serve HTTPS with this certificate instead of plain HTTP (for end-to-end TLS tests;
    /// the base URL is then `https://localhost:PORT`).
    pub tls: Option<TlsIdentity>,
    /// Requests kept per key for inspection (the oldest go first); the count of requests
    /// seen is kept regardless. Bounds the memory of a long-running emulator.
    pub max_recorded_per_key: usize,
}

/// A server certificate chain and its private key, both PEM.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate chain, leaf first.
    pub cert_chain_pem: String,
    /// The leaf's private key.
    pub key_pem: String,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsIdentity(<certificate and key>)")
    }
}

impl TlsIdentity {
    fn acceptor(&self) -> std::io::Result<tokio_rustls::TlsAcceptor> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let chain = CertificateDer::pem_slice_iter(self.cert_chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes())
            .map_err(|e| invalid(e.to_string()))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| invalid(e.to_string()))?;
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        EmulatorOptions {
            validate_requests: true,
            enforce_rate_limits: false,
            port: 0,
            tls: None,
            max_recorded_per_key: 10_000,
        }
    }
}

impl EmulatorOptions {
    /// The defaults: validation on, rate limits reported but not enforced, any free port.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A fault to answer one request with, instead of (or before) the normal handling.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status and a JSON:API error body (the real envelope: `errors[0]` with
    /// id, status (integer), code, title, detail, source, links, meta). `retry_after` adds a
    /// `Retry-After` header (seconds). Status 429 with code `throttled` gives Klaviyo's
    /// verbatim throttled body.
    Status {
        /// HTTP status code.
        status: u16,
        /// The error's `code`, e.g. `throttled`.
        code: String,
        /// Seconds for the `Retry-After` header, if any.
        retry_after: Option<u32>,
    },
    /// Answer with this status and an HTML body (like a Cloudflare 502 page), content-type
    /// `text/html`.
    Html {
        /// HTTP status code.
        status: u16,
    },
    /// Wait this long before handling the request normally.
    Delay(Duration),
    /// Handle the request normally, but send the response head and the first half of the
    /// body at once, then pause this long before the rest (a stall mid-body, which only a
    /// between-bytes timeout catches).
    SlowBody(Duration),
    /// Close the connection without answering.
    DropConnection,
    /// Answer 200 with content-type `application/vnd.api+json` and a truncated JSON body.
    MalformedJson,
    /// Handle the request normally, then pad the body with trailing spaces to this many bytes
    /// (JSON allows whitespace after the value, RFC 8259 §2): a large, still valid response,
    /// for testing size caps.
    Padded(usize),
}

/// A request the emulator received, as recorded for inspection by tests.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Request path without the query, e.g. `/api/profiles/`.
    pub path: String,
    /// Decoded query pairs in order.
    pub query: Vec<(String, String)>,
    /// Headers with lowercase names; the `authorization` value is `<redacted>`.
    pub headers: Vec<(String, String)>,
    /// The JSON body, if one was sent and parsed.
    pub body: Option<serde_json::Value>,
    /// The status answered (0 while in flight or when the connection was dropped).
    pub status: u16,
    /// The `operationId` the request matched, e.g. `get_profiles`.
    pub operation: Option<String>,
    /// Whether the request was checked against its operation's OpenAPI slice (false when
    /// validation is off, the route is unknown, or a fault answered first).
    pub validated: bool,
    /// How the request departed from the spec; empty when it validated or was not checked
    /// (see `validated`).
    pub violations: Vec<String>,
    /// The injected fault that answered (or delayed) the request, if any.
    pub fault: Option<String>,
}

impl RecordedRequest {
    /// The value of a header (names are lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The record as JSON (what `GET /_emulator/requests` answers).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "method": self.method,
            "path": self.path,
            "query": self.query,
            "headers": self.headers,
            "body": self.body,
            "status": self.status,
            "operation": self.operation,
            "validated": self.validated,
            "violations": self.violations,
            "fault": self.fault,
        })
    }
}

impl Emulator {
    /// Bind 127.0.0.1:0 and serve on the current tokio runtime (`tokio::spawn`).
    pub async fn start() -> std::io::Result<Emulator> {
        Self::start_with(EmulatorOptions::default()).await
    }

    /// Like [`Emulator::start`], with options (request validation is on by default).
    pub async fn start_with(options: EmulatorOptions) -> std::io::Result<Emulator> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, options.port)).await?;
        let addr = listener.local_addr()?;
        let tls = options
            .tls
            .as_ref()
            .map(TlsIdentity::acceptor)
            .transpose()?;
        let https = tls.is_some();
        let shared = Arc::new(Shared::new(options, addr));
        tokio::spawn(server::serve(listener, shared.clone(), tls));
        Ok(Emulator {
            addr,
            shared,
            https,
        })
    }

    /// The base URL: `http://127.0.0.1:PORT`, or `https://localhost:PORT` when serving TLS
    /// (certificates name hosts, and the test certificate names `localhost`).
    pub fn base_url(&self) -> String {
        if self.https {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queue a fault for the next request(s) made with this API key (FIFO; each fault is
    /// consumed by one request).
    pub fn inject_fault(&self, api_key: &str, fault: Fault) {
        self.shared.faults.push(api_key, fault);
    }

    /// Every request received with this key (in arrival order), with what validation said.
    /// Requests without a usable `Authorization` header are recorded under `""`. A request
    /// still in flight (or dropped by a fault) has status 0.
    pub fn requests(&self, api_key: &str) -> Vec<RecordedRequest> {
        self.shared.requests(api_key)
    }

    /// Forget the recorded requests of this key (its account state stays).
    pub fn clear_requests(&self, api_key: &str) {
        self.shared.clear_requests(api_key);
    }

    /// Number of requests received for this key.
    pub fn request_count(&self, api_key: &str) -> usize {
        self.shared.request_count(api_key)
    }
}
