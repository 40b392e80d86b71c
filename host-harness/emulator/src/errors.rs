//! JSON:API error objects in the envelope Klaviyo really sends (notes §4): the spec's
//! `{id, code, title, detail, source}` plus an integer `status`, `links` and `meta`.

use serde_json::{Map, Value, json};

use super::ids;

/// Where an error points: a JSON pointer into the body or a query/header parameter name.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    /// `source.pointer`, e.g. `/data/attributes/email`.
    Pointer(String),
    /// `source.parameter`, e.g. `page[size]`.
    Parameter(String),
    /// `source: {}`.
    None,
}

/// One error, rendered as one element of `errors`. Boxed, so `Result<_, ApiError>` stays
/// small on the happy path.
#[derive(Clone, Debug)]
pub(crate) struct ApiError(Box<ErrorFields>);

/// The fields of an [`ApiError`] (reached through `Deref`).
#[derive(Clone, Debug)]
pub(crate) struct ErrorFields {
    pub status: u16,
    pub code: String,
    pub title: String,
    pub detail: String,
    pub source: Source,
    pub links: Map<String, Value>,
    pub meta: Map<String, Value>,
    /// Extra response headers (e.g. `Allow` on a 405, `Retry-After` on a 429).
    pub headers: Vec<(&'static str, String)>,
}

impl std::ops::Deref for ApiError {
    type Target = ErrorFields;
    fn deref(&self) -> &ErrorFields {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ErrorFields {
        &mut self.0
    }
}

impl ApiError {
    pub fn new(status: u16, code: &str, title: &str, detail: impl Into<String>) -> Self {
        ApiError(Box::new(ErrorFields {
            status,
            code: code.to_string(),
            title: title.to_string(),
            detail: detail.into(),
            source: Source::None,
            links: Map::new(),
            meta: Map::new(),
            headers: Vec::new(),
        }))
    }

    pub fn with_source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// 400 `invalid` / "Invalid input." (python#9, php#41) with a `source.parameter`.
    pub fn invalid_param(param: &str, detail: impl Into<String>) -> Self {
        Self::new(400, "invalid", "Invalid input.", detail)
            .with_source(Source::Parameter(param.to_string()))
    }

    /// 400 `invalid` / "Invalid input." with a `source.pointer` into the body.
    pub fn invalid_pointer(pointer: &str, detail: impl Into<String>) -> Self {
        Self::new(400, "invalid", "Invalid input.", detail)
            .with_source(Source::Pointer(pointer.to_string()))
    }

    /// 400 for a filter the endpoint does not support (notes §5, ruby#3).
    pub fn invalid_filter(reason: &str) -> Self {
        Self::invalid_param("filter", format!("Invalid filter provided: {reason}"))
    }

    /// 400 for a cursor we did not issue; verbatim from python#9 (notes §3).
    pub fn invalid_cursor() -> Self {
        Self::invalid_pointer("/data/", "Invalid cursor provided.")
    }

    /// 401 (notes §4, ⚠ third-party capture).
    pub fn not_authenticated() -> Self {
        Self::new(
            401,
            "not_authenticated",
            "Authentication credentials were not provided.",
            "Missing or invalid private key.",
        )
    }

    /// 404 `not_found` for an unknown resource or path.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(404, "not_found", "Not found.", detail)
    }

    /// 405 with an `Allow` header listing the methods the path supports.
    pub fn method_not_allowed(method: &str, allow: &[&str]) -> Self {
        let mut e = Self::new(
            405,
            "method_not_allowed",
            "Method not allowed.",
            format!("Method \"{method}\" not allowed."),
        );
        e.headers.push(("allow", allow.join(", ")));
        e
    }

    /// 409 `duplicate_profile`, verbatim from node#75 (notes §2).
    pub fn duplicate_profile(existing_id: &str) -> Self {
        let mut e = Self::new(
            409,
            "duplicate_profile",
            "Conflict.",
            "A profile already exists with one of these identifiers.",
        )
        .with_source(Source::Pointer("/data/attributes".into()));
        e.meta
            .insert("duplicate_profile_id".into(), json!(existing_id));
        e
    }

    /// 429 `throttled`, verbatim from node#66 / python#15 (notes §4), with `Retry-After`.
    pub fn throttled(retry_after: u32) -> Self {
        let unit = if retry_after == 1 {
            "second"
        } else {
            "seconds"
        };
        let mut e = Self::new(
            429,
            "throttled",
            "Request was throttled.",
            format!("Request was throttled. Expected available in {retry_after} {unit}."),
        )
        .with_source(Source::Pointer("/data".into()));
        e.links.insert(
            "type".into(),
            json!(
                "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling#rate-limits"
            ),
        );
        e.headers.push(("retry-after", retry_after.to_string()));
        e
    }

    /// One element of `errors`.
    pub fn to_json(&self) -> Value {
        let source = match &self.source {
            Source::Pointer(p) => json!({ "pointer": p }),
            Source::Parameter(p) => json!({ "parameter": p }),
            Source::None => json!({}),
        };
        json!({
            "id": ids::uuid(),
            "status": self.status,
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
            "source": source,
            "links": self.links,
            "meta": self.meta,
        })
    }
}

/// `{"errors": [...]}` for one or more errors (all share the first one's status).
pub(crate) fn envelope(errors: &[ApiError]) -> Value {
    json!({ "errors": errors.iter().map(ApiError::to_json).collect::<Vec<_>>() })
}

/// The title Klaviyo (Django REST framework) uses for a status, for injected faults.
pub(crate) fn title_for(status: u16) -> &'static str {
    match status {
        400 => "Invalid input.",
        401 => "Authentication credentials were not provided.",
        403 => "You do not have permission to perform this action.",
        404 => "Not found.",
        405 => "Method not allowed.",
        409 => "Conflict.",
        415 => "Unsupported media type.",
        429 => "Request was throttled.",
        500 => "A server error occurred.",
        502 => "Bad gateway.",
        503 => "Service unavailable.",
        504 => "Gateway timeout.",
        _ => "Error.",
    }
}
