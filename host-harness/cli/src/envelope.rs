//! What a run prints: with `--json`, one object (`success`, `output`, `error`, `result`,
//! `execution_time_ms`, `memory_usage`, `integration_calls`, `meta`); without, the output,
//! then the results, and errors on stderr in one line starting with their code.
//!
//! On its way out an envelope is first redacted, value by value ([`Redactor`]), then held to
//! [`MAX_ENVELOPE_BYTES`] by cutting its largest parts structurally: long strings keep their
//! beginning and end with a `[kosmo: truncated ...]` marker, long arrays and tables keep their
//! first items and end with a marker item, and `meta.truncated` is `true`. The JSON printed is
//! always valid and never cut as text (security review, findings 1d/4 and 8).

use std::io::Write;

use serde_json::{Map, Value, json};

use kosmo_lua::EvalOutcome;
use kosmo_runtime::{CallRecord, ErrorCode};

use crate::redact::Redactor;

/// Most bytes an envelope may print (its JSON form; the text form is cut the same way).
pub const MAX_ENVELOPE_BYTES: usize = 8 << 20;

/// Most traceback lines shown under an error in text mode.
pub const TRACEBACK_LINES: usize = 16;

/// Room kept for the envelope's fixed fields and for markers beyond a part's share.
const SLACK_BYTES: usize = 64 << 10;

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
    /// Every Klaviyo call made (the first [`kosmo_runtime::host::MAX_CALL_RECORDS`]; how many
    /// more there were is `meta.integration_calls_dropped`).
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

    /// The error as one line, `code: message`, led by where it happened (`fail.lua:3: `)
    /// when the error says and its message does not already.
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
        if let (Some(source), Some(at)) = (
            e.get("source").and_then(Value::as_str),
            e.get("line").and_then(Value::as_u64),
        ) {
            let place = format!("{source}:{at}:");
            if !message.contains(&place) {
                line = format!("{place} {line}");
            }
        }
        Some(line)
    }

    /// The error's traceback lines (at most [`TRACEBACK_LINES`]), when it has one.
    pub fn traceback(&self) -> Vec<&str> {
        self.error
            .as_ref()
            .and_then(|e| e.get("traceback"))
            .and_then(Value::as_str)
            .map(|t| {
                t.lines()
                    .filter(|l| !l.trim().is_empty())
                    .take(TRACEBACK_LINES)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// On stderr: `error: <line>`, then the traceback when it says more than that line's
    /// location (two frames or more: one frame is the location again). Call on a sanitized
    /// envelope.
    pub fn print_error(&self) {
        let Some(line) = self.error_line() else {
            return;
        };
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "error: {line}");
        let frames = self.traceback();
        if frames.len() >= 2 {
            let _ = writeln!(stderr, "stack traceback:");
            for frame in frames {
                let _ = writeln!(stderr, "  {}", frame.trim());
            }
        }
    }

    /// The envelope as it may be shown: redacted, then held to [`MAX_ENVELOPE_BYTES`].
    pub fn sanitized(mut self, redactor: &Redactor) -> Self {
        self.redact(redactor);
        self.cap(MAX_ENVELOPE_BYTES);
        self
    }

    /// Redact every string a script, a call or an error could have put a key into, before
    /// anything is serialised. The output is redacted with its tail checked, since the output
    /// cap may have cut a key short.
    fn redact(&mut self, redactor: &Redactor) {
        self.output = redactor.cut_text(&self.output);
        if let Some(e) = &mut self.error {
            redactor.value(e);
        }
        self.result.iter_mut().for_each(|v| redactor.value(v));
        self.integration_calls
            .iter_mut()
            .for_each(|v| redactor.value(v));
        redactor.values_of(&mut self.meta);
    }

    /// Shrink the envelope to at most `max` bytes of JSON, structurally: each variable part
    /// keeps at most its share (error 1/32, calls 1/8, output 1/4 of what the parts before
    /// left), and the results share the rest equally.
    fn cap(&mut self, max: usize) {
        if json_len(&self.to_json()) <= max {
            return;
        }
        let fixed = self.clone_fixed();
        let mut room = max.saturating_sub(json_len(&fixed.to_json()) + SLACK_BYTES);
        // Each part may take `room / divisor` of what the parts before it left.
        let mut take = |value: Value, divisor: usize| -> Value {
            let fitted = fit(&value, room / divisor);
            room = room.saturating_sub(json_len(&fitted));
            fitted
        };
        self.error = self.error.take().map(|e| take(e, 32));
        let calls = take(Value::Array(std::mem::take(&mut self.integration_calls)), 8);
        let output = take(Value::String(std::mem::take(&mut self.output)), 4);
        let results = std::mem::take(&mut self.result);
        self.integration_calls = into_array(calls);
        self.output = match output {
            Value::String(s) => s,
            other => other.to_string(),
        };
        self.result = fit_each(results, room);
        if json_len(&self.to_json()) > max {
            // Not expected (the slack covers the markers), but the cap is hard regardless.
            self.output = String::new();
            self.result = vec![json!("[kosmo: truncated: the results were too large]")];
            self.integration_calls = Vec::new();
            self.error = self.error.take().map(|e| fit(&e, 4096));
        }
        self.meta.insert("truncated".into(), json!(true));
        self.meta
            .insert("envelope_max_bytes".into(), json!(MAX_ENVELOPE_BYTES));
    }

    /// A copy of the small fields only.
    fn clone_fixed(&self) -> Envelope {
        Envelope {
            success: self.success,
            output: String::new(),
            error: None,
            result: Vec::new(),
            execution_time_ms: self.execution_time_ms,
            memory_usage: self.memory_usage,
            integration_calls: Vec::new(),
            meta: self.meta.clone(),
        }
    }

    /// Print it (JSON or text), redacted and capped, and give the exit code: 0 on success,
    /// 1 otherwise.
    pub fn print(self, json_mode: bool, redactor: &Redactor) -> i32 {
        let shown = self.sanitized(redactor);
        let mut stdout = std::io::stdout().lock();
        if json_mode {
            let _ = serde_json::to_writer(&mut stdout, &shown.to_json());
            let _ = writeln!(stdout);
        } else {
            shown.print_text(&mut stdout, "\n");
        }
        let _ = stdout.flush();
        if !json_mode {
            shown.print_error();
        }
        i32::from(!shown.success)
    }

    /// The text form of a sanitized envelope: the output, then the results in `dump`'s form
    /// ([`kosmo_lua::show`], the REPL's echo too: one format) separated by `separator` and
    /// ended by a newline. Shown results can be far longer than their JSON (indentation), so
    /// the text too stops at [`MAX_ENVELOPE_BYTES`], with a marker.
    pub fn print_text(&self, out: &mut impl Write, separator: &str) {
        let mut capped = CappedWriter {
            inner: out,
            left: MAX_ENVELOPE_BYTES,
            cut: false,
        };
        let _ = capped.write_all(self.output.as_bytes());
        for (i, value) in self.result.iter().enumerate() {
            if i > 0 {
                let _ = capped.write_all(separator.as_bytes());
            }
            if capped.write_all(kosmo_lua::show(value).as_bytes()).is_err() {
                break;
            }
        }
        if !self.result.is_empty() {
            let _ = capped.write_all(b"\n");
        }
        if capped.cut {
            let _ = writeln!(
                capped.inner,
                "\n[kosmo: truncated: the text is longer than {MAX_ENVELOPE_BYTES} bytes]"
            );
        }
    }
}

/// Passes at most `left` bytes on (cut on a UTF-8 boundary), then refuses, remembering it cut.
struct CappedWriter<'a, W: Write> {
    inner: &'a mut W,
    left: usize,
    cut: bool,
}

impl<W: Write> Write for CappedWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() <= self.left {
            self.inner.write_all(buf)?;
            self.left -= buf.len();
            return Ok(buf.len());
        }
        let mut end = self.left;
        while end > 0 && (buf[end] & 0xC0) == 0x80 {
            end -= 1;
        }
        self.inner.write_all(&buf[..end])?;
        self.left = 0;
        self.cut = true;
        Err(std::io::Error::other("the text cap was reached"))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn into_array(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items,
        other => vec![other],
    }
}

/// Bytes of `value` as compact JSON, without building the text.
pub(crate) fn json_len(value: &Value) -> usize {
    struct Count(usize);
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A copy of `value` whose JSON takes about `budget` bytes at most: items are kept in order,
/// whole, while the budget lasts; the first that does not fit is cut (a string) or shrunk the
/// same way, and one marker says how many items after it were left out.
fn fit(value: &Value, budget: usize) -> Value {
    let mut left = budget as isize;
    fit_into(value, &mut left)
}

/// Each value fitted into an equal share of what is left (the results of a script: one huge
/// value must not crowd out the others).
fn fit_each(values: Vec<Value>, budget: usize) -> Vec<Value> {
    let mut left = budget;
    let count = values.len();
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let fitted = fit(v, left / (count - i));
            left = left.saturating_sub(json_len(&fitted) + 1);
            fitted
        })
        .collect()
}

/// Room a marker needs.
const MARKER_ROOM: isize = 64;

fn fit_into(value: &Value, left: &mut isize) -> Value {
    let size = json_len(value) as isize;
    if size <= *left {
        *left -= size;
        return value.clone();
    }
    match value {
        Value::String(s) => {
            let kept = Value::String(cut_string(s, (*left).max(0) as usize));
            *left -= json_len(&kept) as isize;
            kept
        }
        Value::Array(items) => {
            *left -= 2;
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if *left <= MARKER_ROOM {
                    let more = items.len() - i;
                    out.push(json!(format!("[kosmo: truncated: {more} more items]")));
                    break;
                }
                out.push(fit_into(item, left));
                *left -= 1;
            }
            Value::Array(out)
        }
        Value::Object(map) => {
            *left -= 2;
            let mut out = Map::new();
            for (i, (key, item)) in map.iter().enumerate() {
                let key_len = json_len(&Value::String(key.clone())) as isize + 2;
                if *left <= MARKER_ROOM + key_len {
                    let more = map.len() - i;
                    out.insert(
                        "[kosmo: truncated]".into(),
                        json!(format!("{more} more entries")),
                    );
                    break;
                }
                *left -= key_len;
                out.insert(key.clone(), fit_into(item, left));
            }
            Value::Object(out)
        }
        // Scalars are short: kept even past the budget (the slack covers them).
        other => {
            *left -= size;
            other.clone()
        }
    }
}

/// `s` cut to about `budget` bytes of JSON, keeping its beginning, with a marker saying how
/// much was left out. It is cut after redaction, so it cannot leave part of a key.
fn cut_string(s: &str, budget: usize) -> String {
    let marker_room = 64;
    let mut room = budget.saturating_sub(marker_room);
    let mut end = 0;
    for (i, c) in s.char_indices() {
        let cost = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if cost > room {
            break;
        }
        room -= cost;
        end = i + c.len_utf8();
    }
    format!(
        "{}[kosmo: truncated: {} of {} bytes omitted]",
        &s[..end],
        s.len() - end,
        s.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(output: &str, result: Vec<Value>) -> Envelope {
        Envelope {
            success: true,
            output: output.into(),
            error: None,
            result,
            execution_time_ms: 1,
            memory_usage: 2,
            integration_calls: Vec::new(),
            meta: Map::new(),
        }
    }

    #[test]
    fn small_envelopes_are_unchanged() {
        let mut e = envelope("hi\n", vec![json!({"a": [1, 2]})]);
        e.cap(MAX_ENVELOPE_BYTES);
        assert_eq!(e.output, "hi\n");
        assert_eq!(e.result, vec![json!({"a": [1, 2]})]);
        assert!(!e.meta.contains_key("truncated"));
    }

    #[test]
    fn big_parts_are_cut_structurally() {
        let max = 200_000;
        let big = "é\"x".repeat(400_000);
        let many: Vec<Value> = (0..100_000).map(|i| json!({"i": i})).collect();
        let mut e = envelope(&big, vec![json!(big), Value::Array(many)]);
        e.error = Some(json!({"code": "script_error", "message": big}));
        e.cap(max);
        let text = serde_json::to_string(&e.to_json()).unwrap();
        assert!(text.len() <= max, "{}", text.len());
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["meta"]["truncated"], true);
        assert_eq!(back["error"]["code"], "script_error");
        assert!(
            e.output.ends_with("bytes omitted]"),
            "{}",
            &e.output[e.output.len() - 80..]
        );
        assert!(text.contains("[kosmo: truncated"));
    }

    #[test]
    fn text_mode_results_follow_the_same_cap() {
        let big = "y".repeat(MAX_ENVELOPE_BYTES * 2);
        let e = envelope("", vec![json!(big)]).sanitized(&Redactor::default());
        assert!(json_len(&e.to_json()) <= MAX_ENVELOPE_BYTES);
        // Shown tables are longer than their JSON (`{ a = 1 },` on a line of its own against
        // `{"a":1},`): the text is capped too.
        let rows = || json!((0..500_000).map(|_| json!({"a": 1})).collect::<Vec<_>>());
        let e = envelope("out\n", vec![json!("a"), rows(), rows()]).sanitized(&Redactor::default());
        let mut text = Vec::new();
        e.print_text(&mut text, "\t");
        assert!(text.len() < MAX_ENVELOPE_BYTES + 100, "{}", text.len());
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with("out\n\"a\"\t{"), "{}", &text[..20]);
        assert!(
            text.ends_with("bytes]\n"),
            "{}",
            &text[text.len().saturating_sub(300)..]
        );
    }
}
