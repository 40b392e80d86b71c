//! One place for talking to Klaviyo: request headers, retries with backoff, error mapping and
//! cursor extraction. Resource modules describe *what* to send; this module decides *how*.
//!
//! Requests go straight through `wasi:http/outgoing-handler` (the `wasip2` bindings): that lets
//! us set every `request-options` timeout, cap the body while reading it, and read the
//! `error-code` of a stream that failed half-way.

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingResponse, Method, OutgoingBody,
    OutgoingRequest, RequestOptions, Scheme,
};
use wasip2::io::streams::StreamError;

use crate::error::{first_error, kind_for_status, text_of};
use crate::target::Target;
use crate::{Error, ErrorKind};

/// The API revision every request pins (Klaviyo's required `revision` header). The vendored
/// OpenAPI slices and the emulator are of this revision.
pub use klaviyo_spec::REVISION;

/// Timeouts asked of the host per attempt (it may clamp them further).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
const BETWEEN_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// Who is calling, on every request (Klaviyo's SDKs identify themselves the same way).
const USER_AGENT: &str = concat!("kosmo-klaviyo/", env!("CARGO_PKG_VERSION"));

/// JSON:API media type (Klaviyo specs from 2024-10-15 on declare only this one).
const JSON_API: &str = "application/vnd.api+json";

/// At most this many attempts per call, the first included (Klaviyo SDKs: `max_retries=3`).
pub const MAX_ATTEMPTS: u8 = 3;

/// A `Retry-After` longer than this is not slept through: the caller gets `rate-limited` with
/// the wait Klaviyo asked for and decides.
const MAX_SINGLE_WAIT: Duration = Duration::from_secs(10);

/// Sleeping between attempts never adds up to more than this per call.
const MAX_TOTAL_WAIT: Duration = Duration::from_secs(15);

/// Responses larger than this are refused rather than buffered (a page of 1000 events with
/// large properties stays well under it).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Characters kept as-is in a path segment or query component: RFC 3986 unreserved only.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode one path segment or query component (RFC 3986 §2.1), so that an id such as
/// `../x` or `a b` can never change the path it is placed in.
pub fn encode(component: &str) -> String {
    utf8_percent_encode(component, COMPONENT).to_string()
}

/// HTTP methods the functions use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// Read.
    Get,
    /// Create.
    Post,
    /// Partial update.
    Patch,
}

impl Verb {
    /// Whether a request may be repeated after the connection dropped before a response.
    /// GET is safe (RFC 9110 §9.2.1); our PATCH bodies set absolute values, so repeating one
    /// leaves the same state. POST creates, so it is never repeated blindly.
    fn repeatable(self) -> bool {
        matches!(self, Verb::Get | Verb::Patch)
    }

    fn method(self) -> Method {
        match self {
            Verb::Get => Method::Get,
            Verb::Post => Method::Post,
            Verb::Patch => Method::Patch,
        }
    }
}

/// A request to Klaviyo, before credentials (which the host adds).
#[derive(Clone, Debug)]
pub struct Request {
    /// Method.
    pub verb: Verb,
    /// Path with every dynamic segment already passed through [`encode`].
    pub path: String,
    /// Query pairs, not yet encoded.
    pub query: Vec<(&'static str, String)>,
    /// JSON:API body.
    pub body: Option<serde_json::Value>,
}

impl Request {
    /// A GET of `path`.
    pub fn get(path: String) -> Self {
        Request {
            verb: Verb::Get,
            path,
            query: Vec::new(),
            body: None,
        }
    }

    /// A request with a JSON:API body.
    pub fn with_body(verb: Verb, path: String, body: serde_json::Value) -> Self {
        Request {
            verb,
            path,
            query: Vec::new(),
            body: Some(body),
        }
    }

    /// Add a query parameter.
    pub fn param(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    /// Add a query parameter when there is a value.
    pub fn param_opt(self, name: &'static str, value: Option<String>) -> Self {
        match value {
            Some(v) => self.param(name, v),
            None => self,
        }
    }

    /// Path and query, query components percent-encoded (so `page[size]` goes out as
    /// `page%5Bsize%5D`, as Klaviyo's own links spell it).
    pub fn path_and_query(&self) -> String {
        let mut url = self.path.clone();
        for (i, (name, value)) in self.query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(&encode(name));
            url.push('=');
            url.push_str(&encode(value));
        }
        url
    }
}

/// A successful answer.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status (2xx).
    pub status: u16,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Reply {
    /// Parse the body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::new(
                ErrorKind::InvalidResponse,
                format!(
                    "HTTP {} with a body that is not valid JSON: {e}",
                    self.status
                ),
            )
        })
    }
}

/// What one attempt gave.
enum Attempt {
    Answered {
        status: u16,
        retry_after: Option<u32>,
        body: Vec<u8>,
    },
    Failed(Error),
    /// A failure that repeating cannot change: the host's egress policy refused the request,
    /// or the server's certificate or TLS handshake was refused.
    Final(Error),
}

/// Send `req`, retrying what is worth retrying, and return the 2xx reply or the error that
/// keeps what Klaviyo said.
pub fn send(req: &Request) -> Result<Reply, Error> {
    let target = Target::from_environment()?;
    let url = format!("{}{}", target.prefix, req.path_and_query());
    let body = match &req.body {
        Some(b) => Some(b.to_string().into_bytes()),
        None => None,
    };
    let mut waited = Duration::ZERO;
    let mut attempt: u8 = 0;
    loop {
        attempt += 1;
        let outcome = send_once(&target, req.verb, &url, body.as_deref());
        let (retryable, retry_after) = worth_retrying(&outcome, req.verb);
        if retryable && let Some(wait) = next_wait(attempt, retry_after, waited, random_unit()) {
            waited += wait;
            wasip2::clocks::monotonic_clock::subscribe_duration(nanos(wait)).block();
            continue;
        }
        return match outcome {
            Attempt::Answered { status, body, .. } if (200..300).contains(&status) => {
                Ok(Reply { status, body })
            }
            Attempt::Answered {
                status,
                retry_after,
                body,
            } => Err(error_from_status(status, retry_after, &body, attempt)),
            Attempt::Failed(mut e) | Attempt::Final(mut e) => {
                e.attempts = attempt;
                Err(e)
            }
        };
    }
}

/// Whether an attempt's outcome may change on another try, and the `Retry-After` it asked for.
fn worth_retrying(outcome: &Attempt, verb: Verb) -> (bool, Option<u32>) {
    match outcome {
        // Klaviyo SDKs retry 429, 503, 504 and 524 only: 500 and 502 are not retried
        // (klaviyo-api-python#28), and no other 4xx will change by repeating it.
        Attempt::Answered {
            status,
            retry_after,
            ..
        } => (matches!(status, 429 | 503 | 504 | 524), *retry_after),
        Attempt::Failed(e) if e.kind == ErrorKind::Transport => (verb.repeatable(), None),
        Attempt::Failed(_) | Attempt::Final(_) => (false, None),
    }
}

/// The wait before another try after attempt `attempt`, having slept `waited` so far, or
/// None when the call ends now: out of attempts, a `Retry-After` over 10 s, or over 15 s of
/// waiting in all.
fn next_wait(
    attempt: u8,
    retry_after: Option<u32>,
    waited: Duration,
    unit: f64,
) -> Option<Duration> {
    if attempt >= MAX_ATTEMPTS {
        return None;
    }
    let wait = backoff(attempt, retry_after, unit);
    (wait <= MAX_SINGLE_WAIT && waited + wait <= MAX_TOTAL_WAIT).then_some(wait)
}

/// The wait before attempt `attempt + 1`: Klaviyo's SDK schedule `0.5 s * 1.5^n` with ±50 %
/// jitter (the rate-limit docs ask for exponential backoff with jitter), but never less than
/// what `Retry-After` asked for (as Klaviyo's Swift SDK does).
/// `unit` is a random number in [0, 1).
fn backoff(attempt: u8, retry_after: Option<u32>, unit: f64) -> Duration {
    let base = 0.5 * 1.5f64.powi(i32::from(attempt) - 1);
    let jittered = base * (0.5 + unit);
    let floor = f64::from(retry_after.unwrap_or(0));
    Duration::from_secs_f64(jittered.max(floor))
}

/// A number in [0, 1) from `wasi:random`, to spread the retries of many tenants apart.
fn random_unit() -> f64 {
    unit_from_bits(wasip2::random::random::get_random_u64())
}

/// A number in [0, 1) from 64 random bits: the top 53, an f64's whole mantissa.
fn unit_from_bits(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn failed(kind: ErrorKind, message: impl Into<String>) -> Attempt {
    Attempt::Failed(Error::new(kind, message))
}

/// One request and its whole response, through `wasi:http/outgoing-handler`.
fn send_once(target: &Target, verb: Verb, path_and_query: &str, body: Option<&[u8]>) -> Attempt {
    let mut entries: Vec<(String, Vec<u8>)> = vec![
        ("accept".into(), JSON_API.into()),
        ("revision".into(), REVISION.into()),
        ("user-agent".into(), USER_AGENT.into()),
    ];
    if let Some(bytes) = body {
        entries.push(("content-type".into(), JSON_API.into()));
        // A declared length: without it wasi-http hosts send the body chunked, which strict
        // proxies and WAFs refuse (Klaviyo's SDKs always send Content-Length).
        entries.push((
            "content-length".into(),
            bytes.len().to_string().into_bytes(),
        ));
    }
    if let Some(credentials) = &target.authorization {
        entries.push(("authorization".into(), credentials.clone().into_bytes()));
    }
    let Ok(headers) = Fields::from_list(&entries) else {
        return failed(ErrorKind::Transport, "the host refused the request headers");
    };
    let request = OutgoingRequest::new(headers);
    let set = request.set_method(&verb.method()).is_ok()
        && request.set_scheme(Some(&target.scheme)).is_ok()
        && request.set_authority(Some(&target.authority)).is_ok()
        && request.set_path_with_query(Some(path_and_query)).is_ok();
    if !set {
        return failed(ErrorKind::Transport, "the host refused the request line");
    }
    // A host may not support some timeouts; it then applies its own.
    let options = RequestOptions::new();
    let _ = options.set_connect_timeout(Some(nanos(CONNECT_TIMEOUT)));
    let _ = options.set_first_byte_timeout(Some(nanos(FIRST_BYTE_TIMEOUT)));
    let _ = options.set_between_bytes_timeout(Some(nanos(BETWEEN_BYTES_TIMEOUT)));
    // A request without a body never takes its body resource: wasi-http then sends it empty
    // (a GET carries no `content-length`), two host calls fewer per read.
    let outgoing_body = match body {
        Some(bytes) => match request.body() {
            Ok(outgoing_body) => Some((outgoing_body, bytes)),
            Err(()) => return failed(ErrorKind::Transport, "the request body was already taken"),
        },
        None => None,
    };
    let future = match outgoing_handler::handle(request, Some(options)) {
        Ok(f) => f,
        Err(code) => return from_code(&code, target),
    };
    if let Some((outgoing_body, bytes)) = outgoing_body {
        {
            let Ok(stream) = outgoing_body.write() else {
                return failed(ErrorKind::Transport, "the request body stream was refused");
            };
            // `blocking-write-and-flush` takes at most 4096 bytes per call (wasi:io/streams).
            for chunk in bytes.chunks(4096) {
                if stream.blocking_write_and_flush(chunk).is_err() {
                    // The body cannot go because the request failed underneath (a refused
                    // connection races the first write): its future says why. The body is
                    // dropped unfinished first, which tells the host the request is abandoned.
                    drop(stream);
                    drop(outgoing_body);
                    if let Some(Ok(Err(code))) = wait(&future) {
                        return from_code(&code, target);
                    }
                    return failed(
                        ErrorKind::Transport,
                        format!(
                            "the connection to Klaviyo at {} closed while sending the request",
                            host_port(target)
                        ),
                    );
                }
            }
        }
        if let Err(code) = OutgoingBody::finish(outgoing_body, None) {
            return from_code(&code, target);
        }
    }
    let response = match wait(&future) {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return from_code(&code, target),
        Some(Err(())) | None => {
            return failed(ErrorKind::Transport, "the response was already taken");
        }
    };
    let status = response.status();
    // Klaviyo sends `Retry-After` as integer seconds on 429 (rate-limit docs); only an error
    // reads it, so a success does not copy the response's headers into a `fields` resource.
    let retry_after = if (200..300).contains(&status) {
        None
    } else {
        response
            .headers()
            .get("retry-after")
            .first()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    let Ok(incoming) = response.consume() else {
        return failed(ErrorKind::Transport, "the response body was already taken");
    };
    let Ok(stream) = incoming.stream() else {
        return failed(ErrorKind::Transport, "the response body stream was refused");
    };
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => {
                if append_capped(&mut bytes, &chunk).is_err() {
                    return failed(
                        ErrorKind::InvalidResponse,
                        format!("HTTP {status} response body larger than {MAX_BODY_BYTES} bytes"),
                    );
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return match wasip2::http::types::http_error_code(&e) {
                    Some(code) => from_code(&code, target),
                    None => failed(
                        ErrorKind::Transport,
                        format!(
                            "the response body from Klaviyo at {} was cut off",
                            host_port(target)
                        ),
                    ),
                };
            }
        }
    }
    // Dropped rather than finished: no trailers are read (one host call fewer).
    drop(stream);
    drop(incoming);
    Attempt::Answered {
        status,
        retry_after,
        body: bytes,
    }
}

/// Appends `chunk` to a response body, refusing it once the body would pass
/// [`MAX_BODY_BYTES`]. The buffer's capacity doubles in powers of two and never past the cap:
/// left to `Vec`'s own growth it doubles from the first chunk's size, so a first chunk of,
/// say, 65,000 bytes gives a 33 MB buffer beside the 16.6 MB one it replaces, and the host's
/// 64 MiB memory limit was met before the cap (seen in CI, where TCP reads split the body
/// differently).
fn append_capped(bytes: &mut Vec<u8>, chunk: &[u8]) -> Result<(), ()> {
    let needed = bytes.len() + chunk.len();
    if needed > MAX_BODY_BYTES {
        return Err(());
    }
    if needed > bytes.capacity() {
        let grown = needed.next_power_of_two().min(MAX_BODY_BYTES);
        bytes.reserve_exact(grown - bytes.len());
    }
    bytes.extend_from_slice(chunk);
    Ok(())
}

/// The outcome of a sent request, once there is one (`future-incoming-response.get`, blocking
/// on its pollable until it is ready).
fn wait(
    future: &FutureIncomingResponse,
) -> Option<Result<Result<IncomingResponse, ErrorCode>, ()>> {
    // A request just handed over is never answered yet: wait first, then read it (asking
    // first would be one host call more per request).
    loop {
        future.subscribe().block();
        if let ready @ Some(_) = future.get() {
            return ready;
        }
    }
}

/// `host:port` of where the request went (the port written out: `a.klaviyo.com:443`), for
/// messages: a failure to connect is about a host, and naming it shows a wrong base URL at
/// once. Never the path, the query or a credential.
fn host_port(target: &Target) -> String {
    let authority = target.authority.as_str();
    // A port follows the last `:` after the host; an IPv6 host is bracketed (RFC 3986 §3.2.2).
    let host_end = authority.rfind(']').map_or(0, |i| i + 1);
    if authority[host_end..].contains(':') {
        return authority.to_string();
    }
    let port = match target.scheme {
        Scheme::Http => 80,
        _ => 443,
    };
    format!("{authority}:{port}")
}

/// The attempt a wasi-http `error-code` ends: a refusal by the egress policy or the TLS layer
/// is final, anything else about the connection may pass on a second try.
fn from_code(code: &ErrorCode, target: &Target) -> Attempt {
    let error = error_from_code(code, target);
    match code {
        ErrorCode::HttpRequestDenied
        | ErrorCode::TlsCertificateError
        | ErrorCode::TlsProtocolError
        | ErrorCode::TlsAlertReceived(_) => Attempt::Final(error),
        _ => Attempt::Failed(error),
    }
}

/// Map a wasi-http `error-code` onto `timeout`, `invalid-response` (a body over the host's
/// cap) or `transport`; connection failures name the `host:port` tried.
fn error_from_code(code: &ErrorCode, target: &Target) -> Error {
    match code {
        ErrorCode::ConnectionTimeout
        | ErrorCode::ConnectionReadTimeout
        | ErrorCode::ConnectionWriteTimeout
        | ErrorCode::HttpResponseTimeout
        | ErrorCode::DnsTimeout => Error::new(
            ErrorKind::Timeout,
            format!(
                "no response from Klaviyo at {} in time ({})",
                host_port(target),
                code_name(code)
            ),
        ),
        // The host cut the body at its size cap: repeating the request gets the same body
        // cut at the same place, so this is the response's fault, not the connection's.
        ErrorCode::HttpResponseBodySize(_) => Error::new(
            ErrorKind::InvalidResponse,
            "the response body is larger than the host allows",
        ),
        ErrorCode::HttpRequestDenied => Error::new(
            ErrorKind::Transport,
            "request denied by the host's egress policy (only https://a.klaviyo.com is allowed)",
        ),
        _ => Error::new(
            ErrorKind::Transport,
            format!(
                "could not reach Klaviyo at {} ({})",
                host_port(target),
                code_name(code)
            ),
        ),
    }
}

/// A short name for a wasi-http error code (no `Debug`: its derived formatting of every
/// payload costs the component kilobytes).
fn code_name(code: &ErrorCode) -> &'static str {
    match code {
        ErrorCode::DnsTimeout => "DNS timeout",
        ErrorCode::DnsError(_) => "DNS error",
        ErrorCode::DestinationNotFound => "destination not found",
        ErrorCode::DestinationUnavailable => "destination unavailable",
        ErrorCode::DestinationIpProhibited => "destination IP prohibited",
        ErrorCode::DestinationIpUnroutable => "destination IP unroutable",
        ErrorCode::ConnectionRefused => "connection refused",
        ErrorCode::ConnectionTerminated => "connection terminated",
        ErrorCode::ConnectionTimeout => "connect timeout",
        ErrorCode::ConnectionReadTimeout => "read timeout",
        ErrorCode::ConnectionWriteTimeout => "write timeout",
        ErrorCode::ConnectionLimitReached => "connection limit reached",
        ErrorCode::TlsProtocolError | ErrorCode::TlsAlertReceived(_) => "TLS error",
        ErrorCode::TlsCertificateError => "TLS certificate error",
        ErrorCode::HttpRequestDenied => "request denied",
        ErrorCode::HttpResponseIncomplete => "incomplete response",
        ErrorCode::HttpResponseTimeout => "response timeout",
        ErrorCode::HttpProtocolError => "HTTP protocol error",
        ErrorCode::HttpResponseBodySize(_) => "response body too large",
        _ => "HTTP error",
    }
}

/// Build the error for a non-2xx status from what Klaviyo said: the first JSON:API error, or
/// for a non-JSON body (an HTML page from a proxy) a short readable excerpt, so the caller
/// always learns something.
pub fn error_from_status(
    status: u16,
    retry_after: Option<u32>,
    body: &[u8],
    attempts: u8,
) -> Error {
    let mut e = Error::new(ErrorKind::BadRequest, "");
    e.status = Some(status);
    e.attempts = attempts;
    if status == 429 {
        e.retry_after = retry_after;
    }
    match first_error(body) {
        Some(first) => {
            e.code = text_of(&first, "code");
            e.title = text_of(&first, "title");
            e.detail = text_of(&first, "detail");
            e.error_id = text_of(&first, "id");
            if let Some(source) = first.get("source") {
                e.pointer = text_of(source, "pointer");
                e.parameter = text_of(source, "parameter");
            }
            e.duplicate_profile_id = first
                .get("meta")
                .and_then(|m| text_of(m, "duplicate_profile_id"));
        }
        None => e.detail = Some(excerpt(body)),
    }
    e.kind = kind_for_status(status, e.code.as_deref());
    e.summarize();
    e
}

/// A one-line summary of a non-JSON body: its HTML `<title>` when it has one, else its first
/// 200 characters of text.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if text.trim().is_empty() {
        return "empty response body".into();
    }
    let lower = text.to_ascii_lowercase();
    if let (Some(start), Some(end)) = (lower.find("<title>"), lower.find("</title>")) {
        if start + 7 <= end {
            let title = text[start + 7..end]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            return format!("non-JSON response: {title}");
        }
    }
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let cut: String = flat.chars().take(200).collect();
    format!("non-JSON response: {cut}")
}

/// The `page[cursor]` of a `links.next` URL, decoded. Klaviyo's links are full URLs that keep
/// the other query parameters, with the brackets either raw or percent-encoded.
pub fn next_cursor(next: Option<&str>) -> Option<String> {
    let query = next?.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        let key = percent_decode_str(key).decode_utf8().ok()?;
        if key != "page[cursor]" {
            return None;
        }
        let value = value.replace('+', " ");
        let value = percent_decode_str(&value).decode_utf8().ok()?.into_owned();
        (!value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Guards: the default port left off (`a.klaviyo.com` alone) or a given one doubled.
    #[test]
    fn connection_errors_name_the_host_and_port() {
        let at = |url: &str| host_port(&Target::new(None, Some(url)).unwrap());
        assert_eq!(at("https://a.klaviyo.com"), "a.klaviyo.com:443");
        assert_eq!(at("http://127.0.0.1:1/prefix"), "127.0.0.1:1");
        assert_eq!(at("http://localhost"), "localhost:80");
        assert_eq!(at("http://[::1]:9"), "[::1]:9");
        assert_eq!(at("http://[::1]"), "[::1]:80");
    }

    /// Every wasi-http error code gets its own short name and the right kind; connection
    /// messages name where they tried (cargo-mutants deleted match arms here unnoticed).
    #[test]
    fn every_error_code_has_its_name_and_kind() {
        use wasip2::http::types::{DnsErrorPayload, TlsAlertReceivedPayload};
        let dns = || DnsErrorPayload {
            rcode: None,
            info_code: None,
        };
        let alert = || TlsAlertReceivedPayload {
            alert_id: None,
            alert_message: None,
        };
        let cases = [
            (ErrorCode::DnsTimeout, "DNS timeout", ErrorKind::Timeout),
            (
                ErrorCode::DnsError(dns()),
                "DNS error",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::DestinationNotFound,
                "destination not found",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::DestinationUnavailable,
                "destination unavailable",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::DestinationIpProhibited,
                "destination IP prohibited",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::DestinationIpUnroutable,
                "destination IP unroutable",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::ConnectionRefused,
                "connection refused",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::ConnectionTerminated,
                "connection terminated",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::ConnectionTimeout,
                "connect timeout",
                ErrorKind::Timeout,
            ),
            (
                ErrorCode::ConnectionReadTimeout,
                "read timeout",
                ErrorKind::Timeout,
            ),
            (
                ErrorCode::ConnectionWriteTimeout,
                "write timeout",
                ErrorKind::Timeout,
            ),
            (
                ErrorCode::ConnectionLimitReached,
                "connection limit reached",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::TlsProtocolError,
                "TLS error",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::TlsAlertReceived(alert()),
                "TLS error",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::TlsCertificateError,
                "TLS certificate error",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::HttpResponseIncomplete,
                "incomplete response",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::HttpResponseTimeout,
                "response timeout",
                ErrorKind::Timeout,
            ),
            (
                ErrorCode::HttpProtocolError,
                "HTTP protocol error",
                ErrorKind::Transport,
            ),
            (
                ErrorCode::HttpRequestLengthRequired,
                "HTTP error",
                ErrorKind::Transport,
            ),
        ];
        let target = Target::new(None, Some("http://127.0.0.1:7")).unwrap();
        for (code, name, kind) in cases {
            assert_eq!(code_name(&code), name);
            let e = error_from_code(&code, &target);
            assert_eq!(e.kind, kind, "{name}");
            let expected = if kind == ErrorKind::Timeout {
                format!("no response from Klaviyo at 127.0.0.1:7 in time ({name})")
            } else {
                format!("could not reach Klaviyo at 127.0.0.1:7 ({name})")
            };
            assert_eq!(e.message, expected);
        }
        assert_eq!(code_name(&ErrorCode::HttpRequestDenied), "request denied");
        assert_eq!(
            code_name(&ErrorCode::HttpResponseBodySize(Some(9))),
            "response body too large"
        );
        let denied = error_from_code(&ErrorCode::HttpRequestDenied, &target);
        assert_eq!(denied.kind, ErrorKind::Transport);
        assert!(
            denied
                .message
                .starts_with("request denied by the host's egress policy")
        );
        let too_big = error_from_code(&ErrorCode::HttpResponseBodySize(None), &target);
        assert_eq!(too_big.kind, ErrorKind::InvalidResponse);
    }

    /// Refusals by the egress policy or TLS end the call; other connection failures may be
    /// retried.
    #[test]
    fn refusals_are_final() {
        let target = Target::new(None, Some("http://127.0.0.1:7")).unwrap();
        for code in [
            ErrorCode::HttpRequestDenied,
            ErrorCode::TlsCertificateError,
            ErrorCode::TlsProtocolError,
        ] {
            assert!(matches!(from_code(&code, &target), Attempt::Final(_)));
        }
        for code in [
            ErrorCode::ConnectionRefused,
            ErrorCode::ConnectionTerminated,
        ] {
            let attempt = from_code(&code, &target);
            assert!(matches!(attempt, Attempt::Failed(_)));
            assert_eq!(worth_retrying(&attempt, Verb::Get), (true, None));
        }
    }

    /// `retry_after` is kept for a 429 only (Klaviyo's rate limits); Klaviyo's error fields
    /// are kept; a title at the very start of an HTML page is found.
    #[test]
    fn status_errors_keep_what_klaviyo_said() {
        let body = br#"{"errors":[{"id":"e-1","status":429,"code":"throttled","title":"Request was throttled.","detail":"Retry later.","source":{"parameter":"page"}}]}"#;
        let e = error_from_status(429, Some(7), body, 2);
        assert_eq!(e.kind, ErrorKind::RateLimited);
        assert_eq!(e.retry_after, Some(7));
        assert_eq!(e.attempts, 2);
        assert_eq!(e.status, Some(429));
        assert_eq!(e.code.as_deref(), Some("throttled"));
        assert_eq!(e.title.as_deref(), Some("Request was throttled."));
        assert_eq!(e.detail.as_deref(), Some("Retry later."));
        assert_eq!(e.error_id.as_deref(), Some("e-1"));
        assert_eq!(e.parameter.as_deref(), Some("page"));
        assert_eq!(error_from_status(503, Some(7), b"", 3).retry_after, None);
        assert_eq!(excerpt(b"<title>502</title>"), "non-JSON response: 502");
        assert_eq!(excerpt(b"  \n"), "empty response body");
    }

    #[test]
    fn cursor_from_encoded_and_raw_links() {
        let encoded = "https://a.klaviyo.com/api/profiles?page%5Bsize%5D=1&page%5Bcursor%5D=bmV4dDo6aWQ6OjIw%3D%3D";
        assert_eq!(
            next_cursor(Some(encoded)).as_deref(),
            Some("bmV4dDo6aWQ6OjIw==")
        );
        let raw = "https://a.klaviyo.com/api/profiles/?page[cursor]=abc&filter=x";
        assert_eq!(next_cursor(Some(raw)).as_deref(), Some("abc"));
        assert_eq!(
            next_cursor(Some("https://a.klaviyo.com/api/profiles")),
            None
        );
        assert_eq!(next_cursor(None), None);
    }

    #[test]
    fn url_encodes_brackets_and_values() {
        let req = Request::get("/api/events".into())
            .param("filter", "equals(profile_id,\"A B\")")
            .param("page[size]", "20");
        assert_eq!(
            req.path_and_query(),
            "/api/events?filter=equals%28profile_id%2C%22A%20B%22%29&page%5Bsize%5D=20"
        );
        assert_eq!(encode("../x y"), "..%2Fx%20y");
    }

    #[test]
    fn html_error_pages_give_a_readable_detail() {
        let html =
            b"<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>";
        let e = error_from_status(502, None, html, 1);
        assert_eq!(e.kind, ErrorKind::Server);
        assert_eq!(
            e.detail.as_deref(),
            Some("non-JSON response: 502 Bad Gateway")
        );
        assert_eq!(e.status, Some(502));
        assert_eq!(
            e.message,
            "Klaviyo answered HTTP 502: non-JSON response: 502 Bad Gateway"
        );
    }

    #[test]
    fn duplicate_profile_keeps_the_existing_id() {
        let body = br#"{"errors":[{"id":"e1","status":409,"code":"duplicate_profile","title":"Conflict.","detail":"A profile already exists with one of these identifiers.","source":{"pointer":"/data/attributes"},"links":{},"meta":{"duplicate_profile_id":"01HXYZ"}}]}"#;
        let e = error_from_status(409, None, body, 1);
        assert_eq!(e.kind, ErrorKind::DuplicateProfile);
        assert_eq!(e.duplicate_profile_id.as_deref(), Some("01HXYZ"));
        assert_eq!(e.pointer.as_deref(), Some("/data/attributes"));
        assert_eq!(e.error_id.as_deref(), Some("e1"));
    }

    /// What is retried (cargo-mutants: the retry set, the verbs and the kinds were only
    /// checked through the component before).
    #[test]
    fn what_is_retried() {
        let answered = |status, retry_after| Attempt::Answered {
            status,
            retry_after,
            body: Vec::new(),
        };
        for status in [429, 503, 504, 524] {
            assert_eq!(
                worth_retrying(&answered(status, Some(2)), Verb::Post),
                (true, Some(2)),
                "{status}"
            );
        }
        for status in [200, 202, 400, 401, 403, 404, 409, 500, 502, 505] {
            assert_eq!(
                worth_retrying(&answered(status, Some(2)), Verb::Get),
                (false, Some(2)),
                "{status}"
            );
        }
        let dropped = || Attempt::Failed(Error::new(ErrorKind::Transport, "dropped"));
        assert_eq!(worth_retrying(&dropped(), Verb::Get), (true, None));
        assert_eq!(worth_retrying(&dropped(), Verb::Patch), (true, None));
        assert_eq!(worth_retrying(&dropped(), Verb::Post), (false, None));
        let timed_out = Attempt::Failed(Error::new(ErrorKind::Timeout, "slow"));
        assert_eq!(worth_retrying(&timed_out, Verb::Get), (false, None));
        let refused = Attempt::Final(Error::new(ErrorKind::Transport, "denied"));
        assert_eq!(worth_retrying(&refused, Verb::Get), (false, None));
    }

    /// Three attempts at most; a `Retry-After` of 10 s is slept, 11 s is not; at most 15 s of
    /// sleeping per call.
    #[test]
    fn waits_are_capped() {
        let secs = Duration::from_secs;
        assert_eq!(
            next_wait(1, None, Duration::ZERO, 0.5),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            next_wait(2, None, Duration::ZERO, 0.5),
            Some(Duration::from_millis(750))
        );
        assert_eq!(next_wait(3, None, Duration::ZERO, 0.5), None);
        assert_eq!(next_wait(1, Some(10), Duration::ZERO, 0.5), Some(secs(10)));
        assert_eq!(next_wait(1, Some(11), Duration::ZERO, 0.5), None);
        assert_eq!(next_wait(2, Some(10), secs(5), 0.5), Some(secs(10)));
        assert_eq!(
            next_wait(2, Some(10), secs(5) + Duration::from_millis(1), 0.5),
            None
        );
    }

    #[test]
    fn only_get_and_patch_are_repeated_after_a_drop() {
        assert!(Verb::Get.repeatable());
        assert!(Verb::Patch.repeatable());
        assert!(!Verb::Post.repeatable());
    }

    /// The body buffer never holds more than the cap, whatever sizes the chunks come in: a
    /// first chunk of 65,000 bytes (not a power of two) used to let `Vec` double to 33 MB.
    /// Catches `>=` for `>` (a body of exactly the cap refused), dropping the `min` (capacity
    /// past the cap), and appending after the refusal.
    #[test]
    fn the_body_buffer_stays_within_the_cap_whatever_the_chunks() {
        for first in [1, 65_000, 65_536, 100_003] {
            let mut bytes = Vec::new();
            append_capped(&mut bytes, &vec![b' '; first]).unwrap();
            // Bounded, so an append that does nothing fails instead of looping for ever.
            for _ in 0..MAX_BODY_BYTES / (64 * 1024 - 7) + 1 {
                if bytes.len() == MAX_BODY_BYTES {
                    break;
                }
                let n = (MAX_BODY_BYTES - bytes.len()).min(64 * 1024 - 7);
                append_capped(&mut bytes, &vec![b'x'; n]).unwrap();
                assert!(
                    bytes.capacity() <= MAX_BODY_BYTES,
                    "{first}: {}",
                    bytes.capacity()
                );
            }
            assert_eq!(bytes.len(), MAX_BODY_BYTES);
            assert_eq!(append_capped(&mut bytes, b"x"), Err(()));
            assert_eq!(
                bytes.len(),
                MAX_BODY_BYTES,
                "nothing appended after the refusal"
            );
            assert_eq!(bytes.capacity(), MAX_BODY_BYTES);
        }
        let mut small = Vec::new();
        append_capped(&mut small, b"{}").unwrap();
        assert_eq!(small, b"{}");
    }

    /// The jitter's unit spans [0, 1) evenly; timeouts go to the host in nanoseconds; the
    /// body cap is the README's 16 MiB.
    #[test]
    fn units_and_caps() {
        assert_eq!(unit_from_bits(0), 0.0);
        assert_eq!(unit_from_bits(1 << 63), 0.5);
        assert_eq!(unit_from_bits(3 << 62), 0.75);
        let top = unit_from_bits(u64::MAX);
        assert!(top < 1.0 && top > 0.999_999, "{top}");
        assert_eq!(nanos(Duration::from_millis(1500)), 1_500_000_000);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
        assert_eq!(MAX_BODY_BYTES, 16_777_216);
    }

    #[test]
    fn backoff_honours_retry_after_and_grows() {
        assert!(backoff(1, Some(3), 0.9) >= Duration::from_secs(3));
        for unit in [0.0, 0.5, 0.999] {
            let first = backoff(1, None, unit).as_secs_f64();
            assert!((0.25..0.75).contains(&first), "{first}");
            let second = backoff(2, None, unit).as_secs_f64();
            assert!((0.375..1.125).contains(&second), "{second}");
        }
    }
}
