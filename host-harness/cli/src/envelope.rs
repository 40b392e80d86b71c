//! What a run prints: with `--json`, one object (`success`, `output`, `error`, `result`,
//! `execution_time_ms`, `memory_usage`, `integration_calls`, `meta`); without, the output,
//! then the results, and errors on stderr in one line starting with their code. Everything
//! goes through the [`Redactor`] on its way out.

use std::io::Write;

use serde_json::{Map, Value, json};

use kosmo_lua::EvalOutcome;
use kosmo_runtime::{CallRecord, ErrorCode};

use crate::redact::Redactor;

/// The result of one run, ready to print.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// Whether the run succeeded.
    pub success: bool,
    /// What the script printed.
    pub output: String,
    /// The error table, when it failed.
    pub error: Option<Value>,
    /// The returned values.
    pub result: Vec<Value>,
    /// Wall-clock time.
    pub execution_time_ms: u64,
    /// Bytes the Lua state held at the end.
    pub memory_usage: usize,
    /// Every Klaviyo call made.
    pub integration_calls: Vec<Value>,
    /// `permission_bypassed`, `sandbox`, ...
    pub meta: Map<String, Value>,
}

impl Envelope {
    /// From a Lua evaluation.
    pub fn from_outcome(outcome: EvalOutcome, meta: Map<String, Value>) -> Self {
        Envelope {
            success: outcome.success,
            output: outcome.output,
            error: outcome.error,
            result: outcome.result,
            execution_time_ms: outcome.duration.as_millis() as u64,
            memory_usage: outcome.memory_usage,
            integration_calls: outcome.calls.iter().map(CallRecord::to_json).collect(),
            meta,
        }
    }

    /// A failure before anything ran (e.g. a bad configuration).
    pub fn failure(code: ErrorCode, message: &str, meta: Map<String, Value>) -> Self {
        Envelope {
            success: false,
            output: String::new(),
            error: Some(json!({"code": code.as_str(), "message": message})),
            result: Vec::new(),
            execution_time_ms: 0,
            memory_usage: 0,
            integration_calls: Vec::new(),
            meta,
        }
    }

    /// The `--json` object.
    pub fn to_json(&self) -> Value {
        json!({
            "success": self.success,
            "output": self.output,
            "error": self.error,
            "result": self.result,
            "execution_time_ms": self.execution_time_ms,
            "memory_usage": self.memory_usage,
            "integration_calls": self.integration_calls,
            "meta": self.meta,
        })
    }

    /// The error as one line, `code: message`.
    pub fn error_line(&self) -> Option<String> {
        let e = self.error.as_ref()?;
        let code = e.get("code").and_then(Value::as_str).unwrap_or("error");
        let message = match e.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => e.to_string(),
        };
        let mut line = format!("{code}: {}", message.replace('\n', " "));
        if let Some(status) = e.get("status").and_then(Value::as_u64) {
            line.push_str(&format!(" (HTTP {status})"));
        }
        Some(line)
    }

    /// Print it (JSON or text) and give the exit code: 0 on success, 1 otherwise.
    pub fn print(&self, json_mode: bool, redactor: &Redactor) -> i32 {
        let mut stdout = std::io::stdout().lock();
        if json_mode {
            let text = serde_json::to_string(&self.to_json()).unwrap_or_else(|_| "{}".into());
            let _ = writeln!(stdout, "{}", redactor.text(&text));
        } else {
            let _ = stdout.write_all(redactor.text(&self.output).as_bytes());
            for value in &self.result {
                let _ = writeln!(stdout, "{}", redactor.text(&show(value)));
            }
        }
        let _ = stdout.flush();
        if !json_mode && let Some(line) = self.error_line() {
            eprintln!("error: {}", redactor.text(&line));
        }
        i32::from(!self.success)
    }
}

/// A returned value as text: strings as they are, anything else as pretty JSON.
pub fn show(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "nil".into(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}
