//! The streamable-HTTP client transport, with kosmo's own HTTP stack.
//!
//! rmcp implements the protocol side of streamable HTTP (sessions, SSE resumption,
//! `initialize` re-runs) in `StreamableHttpClientTransport` and leaves the HTTP requests to a
//! [`StreamableHttpClient`]. Its built-in one is reqwest; using it would compile a second HTTP
//! client stack (reqwest, its TLS glue) next to the hyper/hyper-util/rustls one kosmo
//! already has for Klaviyo. [`HyperClient`] is that trait over the existing stack instead:
//! HTTP/1.1, rustls with the webpki roots, one keep-alive pool per server.
//!
//! What the spec (basic/transports, "Streamable HTTP") asks of the client and where it is
//! done: `Accept: application/json, text/event-stream` on every POST, `text/event-stream`
//! on the GET stream, the `Mcp-Session-Id` header once the server gave one, `202 Accepted`
//! for notifications and responses, 404 on a session meaning it expired (the transport
//! starts a new one), and `DELETE` to end the session.
//!
//! Limits: JSON bodies are capped (rmcp's 16 MiB default) and error bodies too (64 KiB); an
//! SSE event's size is not capped below the parser (`sse-stream` buffers a line until its
//! end), which is acceptable for servers the user configured but is not hardened.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rmcp::model::{ClientJsonRpcMessage, JsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, SseError, StreamableHttpClient, StreamableHttpClientTransportConfig,
    StreamableHttpError, StreamableHttpPostResponse, StreamableHttpResponseLimits,
};
use sse_stream::{Sse, SseStream};

const SESSION_ID: &str = "mcp-session-id";
const LAST_EVENT_ID: &str = "last-event-id";
const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

/// Headers the transport sets itself; a configured header may not replace them.
const RESERVED: &[&str] = &["accept", "content-type", SESSION_ID, LAST_EVENT_ID, "host"];

/// Why an HTTP exchange failed below the MCP layer.
#[derive(Debug)]
pub struct HttpError(String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// [`StreamableHttpClient`] over hyper-util's pooled client and rustls.
#[derive(Clone)]
pub struct HyperClient {
    client: Client<Connector, Full<Bytes>>,
}

impl HyperClient {
    /// A client trusting the webpki roots, for `http://` and `https://` URLs.
    pub fn new() -> HyperClient {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            })
            .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        HyperClient {
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    async fn send(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<http::Response<hyper::body::Incoming>, StreamableHttpError<HttpError>> {
        self.client
            .request(request)
            .await
            .map_err(|e| StreamableHttpError::Client(HttpError(error_chain(&e))))
    }
}

impl Default for HyperClient {
    fn default() -> Self {
        HyperClient::new()
    }
}

/// An error with its sources, on one line (hyper-util's own message is only "client error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn request(
    method: Method,
    uri: &str,
    session_id: Option<&str>,
    auth_header: Option<String>,
    custom_headers: HashMap<HeaderName, HeaderValue>,
) -> Result<http::request::Builder, StreamableHttpError<HttpError>> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in custom_headers {
        if RESERVED
            .iter()
            .any(|r| name.as_str().eq_ignore_ascii_case(r))
        {
            return Err(StreamableHttpError::ReservedHeaderConflict(
                name.to_string(),
            ));
        }
        builder = builder.header(name, value);
    }
    if let Some(auth) = auth_header {
        builder = builder.header(http::header::AUTHORIZATION, format!("Bearer {auth}"));
    }
    if let Some(sid) = session_id {
        builder = builder.header(SESSION_ID, sid);
    }
    Ok(builder)
}

fn content_type_is(response: &http::Response<hyper::body::Incoming>, wanted: &str) -> bool {
    response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(wanted))
}

/// Read at most `max` bytes of a body; `Err` past that.
async fn read_bounded(
    body: hyper::body::Incoming,
    max: usize,
) -> Result<Vec<u8>, StreamableHttpError<HttpError>> {
    let mut out = Vec::new();
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| StreamableHttpError::Client(HttpError(error_chain(&e))))?;
        if out.len() + chunk.len() > max {
            return Err(StreamableHttpError::ResponseBodyTooLarge { max_size: max });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The `WWW-Authenticate` of a 401, as rmcp's transport expects it.
fn auth_required(
    response: &http::Response<hyper::body::Incoming>,
) -> Option<StreamableHttpError<HttpError>> {
    if response.status() != StatusCode::UNAUTHORIZED {
        return None;
    }
    let header = response.headers().get(http::header::WWW_AUTHENTICATE)?;
    Some(StreamableHttpError::AuthRequired(AuthRequiredError::new(
        String::from_utf8_lossy(header.as_bytes()).into_owned(),
    )))
}

fn sse(body: hyper::body::Incoming) -> BoxStream<'static, Result<Sse, SseError>> {
    SseStream::new(body).boxed()
}

impl StreamableHttpClient for HyperClient {
    type Error = HttpError;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        let body = serde_json::to_vec(&message)?;
        let had_session = session_id.is_some();
        let request = request(
            Method::POST,
            &uri,
            session_id.as_deref(),
            auth_header,
            custom_headers,
        )?
        .header(http::header::CONTENT_TYPE, JSON)
        .header(http::header::ACCEPT, format!("{JSON}, {EVENT_STREAM}"))
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| StreamableHttpError::Client(HttpError(e.to_string())))?;
        let response = self.send(request).await?;
        let status = response.status();
        if let Some(e) = auth_required(&response) {
            return Err(e);
        }
        if matches!(status, StatusCode::ACCEPTED | StatusCode::NO_CONTENT) {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        if status == StatusCode::NOT_FOUND && had_session {
            return Err(StreamableHttpError::SessionExpired);
        }
        let new_session = response
            .headers()
            .get(SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let awaits_nothing = !matches!(message, JsonRpcMessage::Request(_));
        if !status.is_success() {
            let is_json = content_type_is(&response, JSON);
            let body = read_bounded(response.into_body(), limits.max_error_response_size)
                .await
                .unwrap_or_default();
            if is_json
                && let Ok(error @ JsonRpcMessage::Error(_)) =
                    serde_json::from_slice::<ServerJsonRpcMessage>(&body)
            {
                return Ok(StreamableHttpPostResponse::Json(error, new_session));
            }
            return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                format!("HTTP {status}: {}", String::from_utf8_lossy(&body).trim()),
            )));
        }
        if content_type_is(&response, EVENT_STREAM) {
            return Ok(StreamableHttpPostResponse::Sse(
                sse(response.into_body()),
                new_session,
            ));
        }
        if content_type_is(&response, JSON) {
            let body = read_bounded(response.into_body(), limits.max_json_response_size).await?;
            return match serde_json::from_slice::<ServerJsonRpcMessage>(&body) {
                Ok(parsed) => Ok(StreamableHttpPostResponse::Json(parsed, new_session)),
                // Some servers answer a notification with an empty or odd 200.
                Err(_) if awaits_nothing => Ok(StreamableHttpPostResponse::Accepted),
                Err(e) => Err(StreamableHttpError::Deserialize(e)),
            };
        }
        if awaits_nothing {
            return Ok(StreamableHttpPostResponse::Accepted);
        }
        Err(StreamableHttpError::UnexpectedContentType(
            response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
        ))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let request = request(
            Method::DELETE,
            &uri,
            Some(&session_id),
            auth_header,
            custom_headers,
        )?
        .body(Full::new(Bytes::new()))
        .map_err(|e| StreamableHttpError::Client(HttpError(e.to_string())))?;
        let response = self.send(request).await?;
        // 405: the server does not let clients end sessions (allowed by the spec).
        if response.status().is_success() || response.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Ok(());
        }
        Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
            format!("DELETE of the session answered {}", response.status()),
        )))
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let mut builder = request(
            Method::GET,
            &uri,
            session_id.as_deref(),
            auth_header,
            custom_headers,
        )?
        .header(http::header::ACCEPT, EVENT_STREAM);
        if let Some(id) = last_event_id {
            builder = builder.header(LAST_EVENT_ID, id);
        }
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|e| StreamableHttpError::Client(HttpError(e.to_string())))?;
        let response = self.send(request).await?;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED {
            return Err(StreamableHttpError::ServerDoesNotSupportSse);
        }
        if let Some(e) = auth_required(&response) {
            return Err(e);
        }
        if !response.status().is_success() {
            return Err(StreamableHttpError::UnexpectedServerResponse(Cow::Owned(
                format!("the GET stream answered {}", response.status()),
            )));
        }
        if !content_type_is(&response, EVENT_STREAM) {
            return Err(StreamableHttpError::UnexpectedContentType(
                response
                    .headers()
                    .get(http::header::CONTENT_TYPE)
                    .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            ));
        }
        Ok(sse(response.into_body()))
    }
}

/// The transport for a configured HTTP server: its URL and headers (already expanded).
pub(crate) fn transport(
    url: &str,
    headers: &BTreeMap<String, String>,
) -> Result<StreamableHttpClientTransport<HyperClient>, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("`{}` is not a URL: {e}", crate::config::redact_url(url)))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(format!(
            "`{}` is not an http:// or https:// URL",
            crate::config::redact_url(url)
        ));
    }
    let mut custom = HashMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("`{k}` is not an HTTP header name"))?;
        let mut value = HeaderValue::from_str(v)
            .map_err(|_| format!("the value of header `{k}` is not a valid header value"))?;
        value.set_sensitive(true);
        custom.insert(name, value);
    }
    let config = StreamableHttpClientTransportConfig::with_uri(url).custom_headers(custom);
    Ok(StreamableHttpClientTransport::with_client(
        HyperClient::new(),
        config,
    ))
}
