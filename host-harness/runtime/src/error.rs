//! The one error model of every surface (library, Lua, CLI envelope, MCP): a [`CallError`]
//! whose [`ErrorCode`] is the stable `code` string users match on. Each case's string is
//! declared once, in [`ErrorCode::as_str`]; the docs' error table is generated from
//! [`ErrorCode::ALL`], so a new case cannot be left undocumented.

use std::fmt;

use serde_json::{Map, Value};

/// Every code a failure can carry. The first group mirrors the component's WIT `error-kind`
/// (one case per kind, see [`ErrorCode::from_kind`]); the rest are raised by the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Bad input, refused before any request was sent (`field` names it).
    InvalidArgument,
    /// Klaviyo answered 400 or another unlisted 4xx.
    BadRequest,
    /// Klaviyo answered 401.
    Unauthorized,
    /// Klaviyo answered 403: the key lacks a scope.
    Forbidden,
    /// Klaviyo answered 404.
    NotFound,
    /// Klaviyo answered 409 `duplicate_profile`.
    DuplicateProfile,
    /// Klaviyo answered 409 for another reason.
    Conflict,
    /// Klaviyo answered 429 beyond the retries.
    RateLimited,
    /// Klaviyo (or a proxy) answered 5xx.
    ServerError,
    /// No response: refused, reset or denied connection, DNS, TLS.
    Transport,
    /// No response in time, or the call passed its deadline.
    Timeout,
    /// A success status with a body that is not the promised document.
    InvalidResponse,
    /// The name is not one of the functions.
    UnknownFunction,
    /// A name under `app` that does not exist.
    UnknownName,
    /// An MCP tool answered with an error result (`isError`).
    ToolError,
    /// The account's policy refused the call.
    PermissionDenied,
    /// The account has no API key.
    NotConfigured,
    /// The plugin or the script used more CPU than allowed.
    CpuLimit,
    /// The plugin or the script used more memory than allowed.
    MemoryLimit,
    /// The script printed more than the output cap.
    OutputLimit,
    /// A person stopped the evaluation (Ctrl-C in the REPL).
    Interrupted,
    /// Every instance slot is in use.
    Busy,
    /// The plugin trapped.
    PluginTrap,
    /// The script does not parse.
    SyntaxError,
    /// The script raised an error of its own.
    ScriptError,
    /// The operation is not possible where it was attempted.
    Unsupported,
    /// The command line was wrong.
    Usage,
    /// The run could not be set up (accounts file, emulator, component).
    Setup,
    /// A bug of the host; never expected.
    Internal,
}

impl ErrorCode {
    /// Every code, in the order the docs list them.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::InvalidArgument,
        ErrorCode::BadRequest,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::NotFound,
        ErrorCode::DuplicateProfile,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::ServerError,
        ErrorCode::Transport,
        ErrorCode::Timeout,
        ErrorCode::InvalidResponse,
        ErrorCode::UnknownFunction,
        ErrorCode::UnknownName,
        ErrorCode::ToolError,
        ErrorCode::PermissionDenied,
        ErrorCode::NotConfigured,
        ErrorCode::CpuLimit,
        ErrorCode::MemoryLimit,
        ErrorCode::OutputLimit,
        ErrorCode::Interrupted,
        ErrorCode::Busy,
        ErrorCode::PluginTrap,
        ErrorCode::SyntaxError,
        ErrorCode::ScriptError,
        ErrorCode::Unsupported,
        ErrorCode::Usage,
        ErrorCode::Setup,
        ErrorCode::Internal,
    ];

    /// The stable code string.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument => "invalid_argument",
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::DuplicateProfile => "duplicate_profile",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ServerError => "server_error",
            ErrorCode::Transport => "transport",
            ErrorCode::Timeout => "timeout",
            ErrorCode::InvalidResponse => "invalid_response",
            ErrorCode::UnknownFunction => "unknown_function",
            ErrorCode::UnknownName => "unknown_name",
            ErrorCode::ToolError => "tool_error",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotConfigured => "not_configured",
            ErrorCode::CpuLimit => "cpu_limit",
            ErrorCode::MemoryLimit => "memory_limit",
            ErrorCode::OutputLimit => "output_limit",
            ErrorCode::Interrupted => "interrupted",
            ErrorCode::Busy => "busy",
            ErrorCode::PluginTrap => "plugin_trap",
            ErrorCode::SyntaxError => "syntax_error",
            ErrorCode::ScriptError => "script_error",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::Usage => "usage",
            ErrorCode::Setup => "setup",
            ErrorCode::Internal => "internal",
        }
    }

    /// The code of a code string (`None` for a string no case has).
    pub fn parse(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.iter().copied().find(|c| c.as_str() == code)
    }

    /// The component's WIT `error-kind` case this code mirrors (`None` for host codes).
    pub fn wit_kind(self) -> Option<&'static str> {
        Some(match self {
            ErrorCode::InvalidArgument => "invalid-argument",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not-found",
            ErrorCode::DuplicateProfile => "duplicate-profile",
            ErrorCode::Conflict => "conflict",
            ErrorCode::RateLimited => "rate-limited",
            ErrorCode::ServerError => "server",
            ErrorCode::Transport => "transport",
            ErrorCode::Timeout => "timeout",
            ErrorCode::InvalidResponse => "invalid-response",
            _ => return None,
        })
    }

    /// The code of a WIT `error-kind` case.
    pub fn from_kind(kind: &str) -> Option<ErrorCode> {
        ErrorCode::ALL
            .iter()
            .copied()
            .find(|c| c.wit_kind() == Some(kind))
    }

    /// When the host raises this code (`None` for the component's kinds, whose docs are the
    /// WIT's `error-kind` comments).
    pub fn host_doc(self) -> Option<&'static str> {
        Some(match self {
            ErrorCode::UnknownFunction => {
                "The name is not one of the functions; the message suggests the closest one."
            }
            ErrorCode::UnknownName => {
                "A name under `app` (an integration, an account, a field) that does not exist; the \
                 message suggests the closest one."
            }
            ErrorCode::ToolError => {
                "An MCP tool answered with an error result (`isError`); its content is kept under \
                 `content`, with `server` and `tool`."
            }
            ErrorCode::PermissionDenied => {
                "The account's policy is `deny`, or `ask` with no terminal to ask on (or the person \
                 said no); `--force` lifts both for one run. Klaviyo's own 403 is `forbidden`."
            }
            ErrorCode::NotConfigured => {
                "No API key for that account: set `KLAVIYO_API_KEY`, or run `kosmo \
                 integrations:configure klaviyo --account NAME --set api_key=-` (it reads the key \
                 from standard input without echo, keeping it out of shell history)."
            }
            ErrorCode::CpuLimit => "The plugin or the script used more CPU time than allowed.",
            ErrorCode::MemoryLimit => "The plugin or the script used more memory than allowed.",
            ErrorCode::OutputLimit => "The script printed more than the output cap.",
            ErrorCode::Interrupted => {
                "A person stopped the evaluation (Ctrl-C in the REPL); the session and its globals \
                 remain, and a Klaviyo call in flight is abandoned (a write may still have landed)."
            }
            ErrorCode::Busy => "Every plugin instance slot of the host is in use; retry shortly.",
            ErrorCode::PluginTrap => {
                "The plugin failed (a WebAssembly trap); the host keeps serving."
            }
            ErrorCode::SyntaxError => "The script does not parse.",
            ErrorCode::ScriptError => {
                "The script raised an error itself (`error(...)`); a table it raised is kept under `value`."
            }
            ErrorCode::Unsupported => {
                "The operation cannot be done there (e.g. a Klaviyo call from inside a coroutine)."
            }
            ErrorCode::Usage => "The command line was wrong (exit code 2).",
            ErrorCode::Setup => {
                "The run could not start: the accounts file, the emulator or the component failed to load."
            }
            ErrorCode::Internal => "A fault of the host itself; please report it.",
            _ => return None,
        })
    }
}

/// A code compares equal to its string, so callers can match on `"not_found"`.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a call failed: `code`, `status`, `message`, `function`, plus what Klaviyo said. It never
/// contains the API key.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{function}: {message} ({code})")]
pub struct CallError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// HTTP status, when Klaviyo answered.
    pub status: Option<u16>,
    /// One readable line.
    pub message: String,
    /// The function's short name.
    pub function: String,
    /// The rest of what is known: `field`, `duplicate_profile_id`, `retry_after`,
    /// `klaviyo_code`, `title`, `detail`, `pointer`, `parameter`, `error_id`, `attempts`.
    pub details: Map<String, Value>,
}

impl CallError {
    /// An error with no details.
    pub fn new(code: ErrorCode, function: &str, message: impl Into<String>) -> Self {
        CallError {
            code,
            status: None,
            message: message.into(),
            function: function.into(),
            details: Map::new(),
        }
    }

    /// An `invalid_argument` naming `field`.
    pub fn invalid_argument(function: &str, field: &str, message: impl Into<String>) -> Self {
        CallError::new(ErrorCode::InvalidArgument, function, message).with("field", field)
    }

    /// The same error with one more detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }

    /// The error as one JSON object (the shape Lua, `--json` and MCP show).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), self.code.as_str().into());
        m.insert(
            "status".into(),
            self.status.map_or(Value::Null, Value::from),
        );
        m.insert("message".into(), self.message.clone().into());
        m.insert("function".into(), self.function.clone().into());
        for (k, v) in &self.details {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    /// Build from the component's `error` record (already converted to JSON).
    pub(crate) fn from_component(function: &str, record: Value) -> Self {
        let Value::Object(mut m) = record else {
            return CallError::new(
                ErrorCode::Internal,
                function,
                "the component returned a malformed error",
            );
        };
        let kind = m
            .remove("kind")
            .and_then(|k| k.as_str().map(str::to_owned))
            .unwrap_or_default();
        // The converter gives enum cases in snake_case; the WIT spells them kebab-case.
        let code = ErrorCode::from_kind(&kind.replace('_', "-")).unwrap_or(ErrorCode::Internal);
        let message = m
            .remove("message")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let status = m
            .remove("status")
            .and_then(|v| v.as_u64())
            .and_then(|s| u16::try_from(s).ok());
        // Klaviyo's own code would clash with ours: keep it under its own name.
        if let Some(k) = m.remove("code") {
            m.insert("klaviyo_code".into(), k);
        }
        m.retain(|_, v| !v.is_null());
        CallError {
            code,
            status,
            message,
            function: function.into(),
            details: m,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c.as_str()), "duplicate code {c}");
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert!(
                c.wit_kind().is_some() != c.host_doc().is_some(),
                "{c}: exactly one of a WIT kind or a host doc"
            );
            if let Some(kind) = c.wit_kind() {
                assert_eq!(ErrorCode::from_kind(kind), Some(c));
            }
        }
    }
}
