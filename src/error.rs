//! Building the WIT `error` record: one constructor per origin (bad argument, HTTP status,
//! transport), so every error carries a readable `message` and what Klaviyo said.

use serde_json::Value;

use crate::{Error, ErrorKind};

impl Error {
    /// An error of `kind` with only a message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            field: None,
            status: None,
            code: None,
            title: None,
            detail: None,
            pointer: None,
            parameter: None,
            error_id: None,
            duplicate_profile_id: None,
            retry_after: None,
            attempts: 0,
        }
    }

    /// `invalid-argument` for `field`, refused before any request.
    pub fn argument(field: &str, message: impl Into<String>) -> Self {
        let mut e = Error::new(ErrorKind::InvalidArgument, message);
        e.field = Some(field.to_string());
        e
    }

    /// The one-line message of an HTTP failure, from what Klaviyo said.
    pub fn summarize(&mut self) {
        let status = self.status.map(|s| s.to_string()).unwrap_or_default();
        let mut line = format!("Klaviyo answered HTTP {status}");
        if let Some(code) = &self.code {
            line.push_str(&format!(" {code}"));
        }
        match (&self.detail, &self.title) {
            (Some(d), _) | (None, Some(d)) => line.push_str(&format!(": {d}")),
            _ => {}
        }
        if let Some(p) = self.parameter.as_ref().or(self.pointer.as_ref()) {
            line.push_str(&format!(" (at {p})"));
        }
        if let Some(id) = &self.duplicate_profile_id {
            line.push_str(&format!(" (existing profile {id})"));
        }
        if let Some(s) = self.retry_after {
            line.push_str(&format!(" (retry after {s} s)"));
        }
        if self.attempts > 1 {
            line.push_str(&format!(" after {} attempts", self.attempts));
        }
        self.message = line;
    }
}

/// The kind for an HTTP status (Klaviyo's status table: 400, 401, 403, 404, 409, 429, 5xx).
pub fn kind_for_status(status: u16, code: Option<&str>) -> ErrorKind {
    match status {
        401 => ErrorKind::Unauthorized,
        403 => ErrorKind::Forbidden,
        404 => ErrorKind::NotFound,
        409 if code == Some("duplicate_profile") => ErrorKind::DuplicateProfile,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        500..=599 => ErrorKind::Server,
        _ => ErrorKind::BadRequest,
    }
}

/// A text field of a plain JSON object.
pub fn text_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The first error object of a JSON:API error body (`{"errors": [...]}`): the spec requires
/// id, code, title and detail; real bodies add status, links and meta
/// (`meta.duplicate_profile_id` on a 409).
pub fn first_error(body: &[u8]) -> Option<Value> {
    let mut doc: Value = serde_json::from_slice(body).ok()?;
    match doc.get_mut("errors")?.take() {
        Value::Array(errors) => errors.into_iter().next().filter(Value::is_object),
        _ => None,
    }
}
