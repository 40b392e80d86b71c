//! The HTTP side: accept loop (hyper http1 + `service_fn` per connection) and the request
//! pipeline: auth → fault → route → rate limit → validation → semantic checks → handler.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

use super::errors::{ApiError, envelope};
use super::faults::{self, FaultQueues};
use super::ratelimit::{RateLimiter, Verdict};
use super::render::Urls;
use super::routes::{self, Ctx};
use super::spec::{self, Route};
use super::state::Account;
use super::{EmulatorOptions, Fault, RecordedRequest, time};

/// Largest request body read (Klaviyo caps profile payloads at 100 KB; this is generous).
const MAX_BODY: usize = 10 * 1024 * 1024;
/// `RateLimit-*` numbers for requests that match no operation (the "L" tier, notes §4).
const DEFAULT_LIMITS: (u32, u32) = (75, 750);

/// State shared by the handle and every connection.
pub(crate) struct Shared {
    pub options: EmulatorOptions,
    pub addr: SocketAddr,
    pub accounts: Mutex<HashMap<String, Account>>,
    pub faults: FaultQueues,
    /// Per key, the requests kept for inspection in arrival order.
    records: Mutex<HashMap<String, KeyLog>>,
    next_seq: AtomicU64,
    pub rates: RateLimiter,
}

/// One key's requests: how many came, and the latest ones.
#[derive(Default)]
struct KeyLog {
    seen: usize,
    kept: std::collections::VecDeque<(u64, RecordedRequest)>,
}

impl Shared {
    pub fn new(options: EmulatorOptions, addr: SocketAddr) -> Shared {
        Shared {
            options,
            addr,
            accounts: Mutex::new(HashMap::new()),
            faults: FaultQueues::default(),
            records: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(0),
            rates: RateLimiter::default(),
        }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, KeyLog>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a request on arrival (so records keep arrival order); returns its sequence.
    fn arrived(&self, key: &str, rec: &RecordedRequest) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let cap = self.options.max_recorded_per_key.max(1);
        let mut records = self.records();
        let log = records.entry(key.to_string()).or_default();
        log.seen += 1;
        if log.kept.len() >= cap {
            log.kept.pop_front();
        }
        log.kept.push_back((seq, rec.clone()));
        seq
    }

    /// Replace the arrival record with the final one (unless it was cleared meanwhile).
    fn answered(&self, key: &str, seq: u64, rec: RecordedRequest) {
        let mut records = self.records();
        let slot = records
            .get_mut(key)
            .and_then(|log| log.kept.iter_mut().rev().find(|(s, _)| *s == seq));
        if let Some((_, stored)) = slot {
            *stored = rec;
        }
    }

    /// The recorded requests of a key (at most `max_recorded_per_key`, the latest).
    pub fn requests(&self, key: &str) -> Vec<RecordedRequest> {
        self.records()
            .get(key)
            .map(|log| log.kept.iter().map(|(_, r)| r.clone()).collect())
            .unwrap_or_default()
    }

    /// Forget the recorded requests of a key.
    pub fn clear_requests(&self, key: &str) {
        self.records().remove(key);
    }

    /// How many requests a key has sent since it was last cleared.
    pub fn request_count(&self, key: &str) -> usize {
        self.records().get(key).map_or(0, |log| log.seen)
    }
}

/// Returned by the service to make hyper close the connection without answering.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for DropConnection {}

/// Accept connections forever, serving each on its own task (over TLS when `tls` is given).
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // E.g. too many open files: back off briefly instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                Some(acceptor) => {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        serve_connection(stream, shared).await;
                    }
                }
                None => serve_connection(stream, shared).await,
            }
        });
    }
}

async fn serve_connection<S>(stream: S, shared: Arc<Shared>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(shared.clone(), req));
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// What the pipeline answers.
struct Answer {
    status: u16,
    body: AnswerBody,
    headers: Vec<(&'static str, String)>,
    /// Steady-window numbers for `RateLimit-*` (absent on 429s and HTML pages).
    rate: Option<Verdict>,
}

enum AnswerBody {
    Empty,
    Json(Value),
    Text(&'static str, String),
}

impl Answer {
    fn error(errors: Vec<ApiError>, rate: Option<Verdict>) -> Answer {
        let status = errors.first().map_or(400, |e| e.status);
        let headers = errors.iter().flat_map(|e| e.headers.clone()).collect();
        let rate = if status == 429 { None } else { rate };
        Answer {
            status,
            body: AnswerBody::Json(envelope(&errors)),
            headers,
            rate,
        }
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let (content_type, bytes) = match self.body {
            AnswerBody::Empty => (None, Bytes::new()),
            AnswerBody::Json(v) => (
                Some("application/vnd.api+json"),
                Bytes::from(serde_json::to_vec(&v).unwrap_or_default()),
            ),
            AnswerBody::Text(ct, text) => (Some(ct), Bytes::from(text)),
        };
        let mut resp = Response::new(Full::new(bytes));
        *resp.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::OK);
        let h = resp.headers_mut();
        if let Some(ct) = content_type {
            h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        if let Some(v) = self.rate {
            h.insert("ratelimit-limit", HeaderValue::from(v.limit));
            h.insert("ratelimit-remaining", HeaderValue::from(v.remaining));
            h.insert("ratelimit-reset", HeaderValue::from(v.reset));
        }
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}

/// The private key of `Authorization: Klaviyo-API-Key <key>`, if well-formed.
fn api_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let key = value.strip_prefix("Klaviyo-API-Key ")?.trim();
    (!key.is_empty() && !key.contains(char::is_whitespace)).then(|| key.to_string())
}

/// Decoded query pairs (`+` is a space, as for any form-encoded query).
pub(crate) fn parse_query(raw: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// `http://<Host>` for links, falling back to the bound address for odd Host values.
fn base_url(headers: &HeaderMap, addr: SocketAddr) -> String {
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        });
    match host {
        Some(h) => format!("http://{h}"),
        None => format!("http://{addr}"),
    }
}

/// Headers as recorded: lowercase names, the Authorization value redacted.
fn recorded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let v = if name == http::header::AUTHORIZATION {
                "<redacted>".to_string()
            } else {
                String::from_utf8_lossy(value.as_bytes()).into_owned()
            };
            (name.as_str().to_string(), v)
        })
        .collect()
}

/// Where a client of a standalone emulator reads back what it sent under its key (outside
/// Klaviyo's `/api/` namespace, so no real path is shadowed). Not recorded itself.
pub(crate) const INSPECT_PATH: &str = "/_emulator/requests";

/// `GET /_emulator/requests` with the key's `Authorization`: `{"count", "requests": [...]}`.
fn inspect(shared: &Shared, headers: &HeaderMap) -> Response<Full<Bytes>> {
    let body = match api_key(headers) {
        Some(key) => serde_json::json!({
            "count": shared.request_count(&key),
            "requests": shared.requests(&key).iter().map(RecordedRequest::to_json).collect::<Vec<_>>(),
        }),
        None => serde_json::json!({"error": "send the key's Authorization: Klaviyo-API-Key <key>"}),
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = if body.get("error").is_some() {
        http::StatusCode::UNAUTHORIZED
    } else {
        http::StatusCode::OK
    };
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A response body: whole, or (for `Fault::SlowBody`) stalled half-way.
pub(crate) type EmuBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

/// Serve one request (the `service_fn` body).
async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<EmuBody>, DropConnection> {
    let mut slow = None;
    let response = answer(shared, req, &mut slow).await?;
    Ok(match slow {
        Some(pause) => {
            let (parts, body) = response.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Response::from_parts(parts, faults::SlowBody::new(bytes, pause).boxed())
        }
        None => response.map(BodyExt::boxed),
    })
}

/// The answer to one request; `slow` is set when a `Fault::SlowBody` asks for its body to
/// stall.
async fn answer(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    slow: &mut Option<std::time::Duration>,
) -> Result<Response<Full<Bytes>>, DropConnection> {
    let (parts, body) = req.into_parts();
    let bytes = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            let e = ApiError::new(
                413,
                "request_too_large",
                "Request entity too large.",
                format!("The request body exceeds {MAX_BODY} bytes."),
            );
            return Ok(Answer::error(vec![e], None).into_response());
        }
        // The client went away mid-body: nothing to answer.
        Err(_) => return Err(DropConnection),
    };
    let query = parse_query(parts.uri.query());
    let path = parts.uri.path().to_string();
    if path == INSPECT_PATH && parts.method == Method::GET {
        return Ok(inspect(&shared, &parts.headers));
    }
    let body: Option<Result<Value, ()>> = if bytes.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        Some(serde_json::from_slice(&bytes).map_err(|_| ()))
    };
    let mut rec = RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        headers: recorded_headers(&parts.headers),
        body: body.as_ref().and_then(|b| b.as_ref().ok().cloned()),
        status: 0,
        operation: None,
        validated: false,
        violations: Vec::new(),
        fault: None,
    };

    // Requests without a usable key are recorded under "" (no account can be chosen).
    let Some(key) = api_key(&parts.headers) else {
        let seq = shared.arrived("", &rec);
        let (burst, steady) = DEFAULT_LIMITS;
        let rate = shared.rates.hit(
            "",
            "_unauthenticated",
            burst,
            steady,
            time::now_unix(),
            false,
        );
        let answer = Answer::error(vec![ApiError::not_authenticated()], Some(rate));
        rec.status = answer.status;
        shared.answered("", seq, rec);
        return Ok(answer.into_response());
    };

    let route = spec::route(&parts.method, &path);
    if let Route::Found(op, _) = &route {
        rec.operation = Some(op.id.to_string());
    }
    let seq = shared.arrived(&key, &rec);

    let mut pad_to = None;
    if let Some(fault) = shared.faults.pop(&key) {
        rec.fault = Some(faults::label(&fault));
        let limits = match &route {
            Route::Found(op, _) => (op.id, op.burst_per_sec, op.steady_per_min),
            _ => ("_unrouted", DEFAULT_LIMITS.0, DEFAULT_LIMITS.1),
        };
        let rate = || {
            shared
                .rates
                .hit(&key, limits.0, limits.1, limits.2, time::now_unix(), false)
        };
        let answer = match fault {
            Fault::Delay(d) => {
                tokio::time::sleep(d).await;
                None
            }
            Fault::SlowBody(d) => {
                *slow = Some(d);
                None
            }
            Fault::Padded(total) => {
                pad_to = Some(total);
                None
            }
            Fault::DropConnection => {
                shared.answered(&key, seq, rec);
                return Err(DropConnection);
            }
            Fault::Status {
                status,
                code,
                retry_after,
            } => Some(Answer::error(
                vec![faults::status_error(status, &code, retry_after)],
                Some(rate()),
            )),
            Fault::Html { status } => Some(Answer {
                status,
                body: AnswerBody::Text("text/html", faults::html_page(status)),
                headers: Vec::new(),
                rate: None,
            }),
            Fault::MalformedJson => Some(Answer {
                status: 200,
                body: AnswerBody::Text("application/vnd.api+json", faults::MALFORMED_JSON.into()),
                headers: Vec::new(),
                rate: Some(rate()),
            }),
        };
        if let Some(answer) = answer {
            rec.status = answer.status;
            shared.answered(&key, seq, rec);
            return Ok(answer.into_response());
        }
    }

    let view = RequestParts {
        method: &parts.method,
        path: &path,
        query: &query,
        headers: &parts.headers,
        body: body.as_ref().map(|b| b.as_ref().map_err(|_| ())),
    };
    let answer = process(&shared, &key, &route, &view, &mut rec);
    rec.status = answer.status;
    shared.answered(&key, seq, rec);
    let response = answer.into_response();
    Ok(match pad_to {
        Some(total) => padded(response, total).await,
        None => response,
    })
}

/// `response` with its body padded by trailing spaces to `total` bytes.
async fn padded(response: Response<Full<Bytes>>, total: usize) -> Response<Full<Bytes>> {
    let (parts, body) = response.into_parts();
    let mut bytes = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(never) => match never {},
    };
    if bytes.len() < total {
        bytes.resize(total, b' ');
    }
    Response::from_parts(parts, Full::new(Bytes::from(bytes)))
}

/// The parts of a request the pipeline reads.
struct RequestParts<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a [(String, String)],
    headers: &'a HeaderMap,
    body: Option<Result<&'a Value, ()>>,
}

/// Everything after auth and faults. Synchronous: the account lock is never held across
/// an await.
fn process(
    shared: &Shared,
    key: &str,
    route: &Route,
    req: &RequestParts<'_>,
    rec: &mut RecordedRequest,
) -> Answer {
    let now = time::now_unix();
    let unrouted = || {
        let (burst, steady) = DEFAULT_LIMITS;
        Some(
            shared
                .rates
                .hit(key, "_unrouted", burst, steady, now, false),
        )
    };
    let (op, id) = match route {
        Route::Found(op, id) => (*op, id.as_deref()),
        Route::NotFound => {
            let e = ApiError::not_found(format!("No API endpoint matches {}.", req.path));
            return Answer::error(vec![e], unrouted());
        }
        Route::WrongMethod(allow) => {
            let e = ApiError::method_not_allowed(req.method.as_str(), allow);
            return Answer::error(vec![e], unrouted());
        }
    };
    // get_list with `additional-fields[list]=profile_count` has its own, lower limits.
    let additional = op.additional_rate.as_ref().filter(|r| {
        req.query
            .iter()
            .any(|(k, v)| *k == r.param && v.split(',').any(|item| item.trim() == r.value))
    });
    let (bucket, burst, steady) = match additional {
        Some(r) => (r.bucket, r.burst_per_sec, r.steady_per_min),
        None => (op.id, op.burst_per_sec, op.steady_per_min),
    };
    let rate = shared.rates.hit(
        key,
        bucket,
        burst,
        steady,
        now,
        shared.options.enforce_rate_limits,
    );
    if let Some(retry_after) = rate.throttled {
        return Answer::error(vec![ApiError::throttled(retry_after)], None);
    }
    let rate = Some(rate);

    if shared.options.validate_requests {
        let view = spec::RequestView {
            query: req.query,
            headers: req.headers,
            body: req.body,
        };
        let violations = spec::validate(op, &view);
        rec.validated = true;
        if !violations.is_empty() {
            rec.violations = violations.iter().map(|v| v.message.clone()).collect();
            let errors = violations
                .into_iter()
                .map(|v| {
                    ApiError::new(400, "invalid", "Invalid input.", v.message).with_source(v.source)
                })
                .collect();
            return Answer::error(errors, rate);
        }
    }

    // Semantic checks that hold whether or not schema validation is on.
    match req.headers.get("revision").map(|v| v.to_str()) {
        None => {
            let e = ApiError::invalid_param("revision", "Missing required header \"revision\".");
            return Answer::error(vec![e], rate);
        }
        Some(Ok(v)) if spec::is_revision(v) => {}
        Some(_) => {
            let e = ApiError::invalid_param(
                "revision",
                "The \"revision\" header must be a date such as 2026-07-15.",
            );
            return Answer::error(vec![e], rate);
        }
    }
    if op.has_body()
        && let Some(Err(())) = req.body
    {
        // Django REST framework's ParseError, which Klaviyo's API is built on (⚠ unverified).
        let e = ApiError::new(
            400,
            "parse_error",
            "Malformed request body.",
            "JSON parse error - the request body is not valid JSON.",
        );
        return Answer::error(vec![e], rate);
    }

    let ctx = Ctx {
        op,
        id,
        query: req.query,
        body: req.body.and_then(Result::ok),
        urls: Urls {
            base: base_url(req.headers, shared.addr),
        },
        path: req.path,
        now,
    };
    let mut accounts = shared.accounts.lock().unwrap_or_else(|e| e.into_inner());
    let account = accounts
        .entry(key.to_string())
        .or_insert_with(Account::seeded);
    match routes::dispatch(&ctx, account) {
        Ok(reply) => Answer {
            status: reply.status,
            body: reply.body.map_or(AnswerBody::Empty, AnswerBody::Json),
            headers: Vec::new(),
            rate,
        },
        Err(e) => Answer::error(vec![e], rate),
    }
}
