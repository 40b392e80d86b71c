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
        self.write_error(&mut std::io::stderr().lock());
    }

    /// What [`Envelope::print_error`] writes, to `out`.
    fn write_error(&self, out: &mut impl Write) {
        let Some(line) = self.error_line() else {
            return;
        };
        let _ = writeln!(out, "error: {line}");
        let frames = self.traceback();
        if frames.len() >= 2 {
            let _ = writeln!(out, "stack traceback:");
            for frame in frames {
                let _ = writeln!(out, "  {}", frame.trim());
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
        self.print_to(
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
            json_mode,
            redactor,
        )
    }

    /// What [`Envelope::print`] does, to `out` and `err`.
    fn print_to(
        self,
        out: &mut impl Write,
        err: &mut impl Write,
        json_mode: bool,
        redactor: &Redactor,
    ) -> i32 {
        let shown = self.sanitized(redactor);
        if json_mode {
            let _ = serde_json::to_writer(&mut *out, &shown.to_json());
            let _ = writeln!(out);
        } else {
            shown.print_text(out, "\n");
        }
        let _ = out.flush();
        if !json_mode {
            shown.write_error(err);
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

    /// Catches: the status or the place dropped, the place added twice, newlines kept (the
    /// line must stay one line), `error` for a missing code replaced.
    #[test]
    fn error_lines_lead_with_the_place_and_the_code() {
        let with = |error: Value| {
            let mut e = envelope("", Vec::new());
            e.error = Some(error);
            e.error_line().unwrap()
        };
        assert_eq!(envelope("", Vec::new()).error_line(), None);
        assert_eq!(
            with(json!({"code": "rate_limited", "message": "slow\ndown", "status": 429})),
            "rate_limited: slow down (HTTP 429)"
        );
        assert_eq!(
            with(
                json!({"code": "script_error", "message": "boom", "source": "fail.lua", "line": 3})
            ),
            "fail.lua:3: script_error: boom"
        );
        assert_eq!(
            with(
                json!({"code": "script_error", "message": "fail.lua:3: boom", "source": "fail.lua", "line": 3})
            ),
            "script_error: fail.lua:3: boom"
        );
        // Only both together say where.
        assert_eq!(
            with(json!({"code": "x", "message": "m", "source": "fail.lua"})),
            "x: m"
        );
        assert_eq!(with(json!({"message": 42})), "error: 42");
        assert_eq!(with(json!({"code": "x"})), r#"x: {"code":"x"}"#);
    }

    /// Catches: blank lines kept, no cap, or a cap other than [`TRACEBACK_LINES`].
    #[test]
    fn tracebacks_skip_blank_lines_and_stop_at_sixteen() {
        let mut e = envelope("", Vec::new());
        assert!(e.traceback().is_empty());
        let lines: Vec<String> = (0..40)
            .map(|i| {
                if i % 2 == 0 {
                    format!("frame {i}")
                } else {
                    "  ".into()
                }
            })
            .collect();
        e.error =
            Some(json!({"code": "script_error", "message": "m", "traceback": lines.join("\n")}));
        let frames = e.traceback();
        assert_eq!(frames.len(), TRACEBACK_LINES);
        assert_eq!(frames[0], "frame 0");
        assert_eq!(frames[15], "frame 30");
        e.error = Some(json!({"code": "x", "message": "m"}));
        assert!(e.traceback().is_empty());
    }

    /// Every part a key could reach is redacted, the envelope's own field names are kept.
    /// Catches: any one part (output, error, results, calls, meta) left out of `redact`, and
    /// the output redacted without its cut tail.
    #[test]
    fn every_part_is_redacted_before_it_is_shown() {
        let key = "pk_envelope_secret_0123";
        let r = Redactor::new([key.to_string()]);
        let mut e = envelope(
            &format!("a {key}\nb {}", &key[..10]),
            vec![json!({"k": key})],
        );
        e.error = Some(json!({"code": "x", "message": format!("bad {key}")}));
        e.integration_calls = vec![json!({"error": format!("unauthorized: {key}")})];
        e.meta.insert("account".into(), json!(key));
        let text = serde_json::to_string(&e.sanitized(&r).to_json()).unwrap();
        assert!(!text.contains(&key[..10]), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["output"], "a <redacted>\nb <redacted>");
        assert_eq!(back["error"]["message"], "bad <redacted>");
        assert_eq!(back["result"][0]["k"], "<redacted>");
        assert_eq!(
            back["integration_calls"][0]["error"],
            "unauthorized: <redacted>"
        );
        assert_eq!(back["meta"]["account"], "<redacted>");
    }

    /// On stderr: the error line, then the traceback only when it has two frames or more
    /// (one frame is the error line's place again). Catches `>=` changed, or nothing written.
    #[test]
    fn the_traceback_is_shown_from_two_frames() {
        let shown = |traceback: &str| {
            let mut e = envelope("", Vec::new());
            e.error = Some(json!({"code": "x", "message": "m", "traceback": traceback}));
            let mut out = Vec::new();
            e.write_error(&mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(shown("a.lua:1: in main chunk"), "error: x: m\n");
        assert_eq!(
            shown("a.lua:1: in f\n\t a.lua:3: in main chunk"),
            "error: x: m\nstack traceback:\n  a.lua:1: in f\n  a.lua:3: in main chunk\n"
        );
        let mut out = Vec::new();
        envelope("", Vec::new()).write_error(&mut out);
        assert!(out.is_empty());
    }

    /// `--json`: one redacted JSON line on stdout, nothing on stderr; text: the output and
    /// results on stdout, the error on stderr. Exit code 0 on success, 1 otherwise. Catches
    /// the modes swapped, the error printed in JSON mode or not in text mode, or a constant
    /// exit code.
    #[test]
    fn printing_follows_the_mode_and_gives_the_exit_code() {
        let r = Redactor::new(["pk_print_secret_01".to_string()]);
        let failed = || {
            let mut e = envelope("said pk_print_secret_01\n", Vec::new());
            e.success = false;
            e.error = Some(json!({"code": "x", "message": "m"}));
            e
        };
        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(failed().print_to(&mut out, &mut err, true, &r), 1);
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.ends_with("}\n") && line.matches('\n').count() == 1,
            "{line}"
        );
        let back: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["output"], "said <redacted>\n");
        assert_eq!(back["error"]["code"], "x");
        assert!(err.is_empty());

        let (mut out, mut err) = (Vec::new(), Vec::new());
        assert_eq!(failed().print_to(&mut out, &mut err, false, &r), 1);
        assert_eq!(String::from_utf8(out).unwrap(), "said <redacted>\n");
        assert_eq!(String::from_utf8(err).unwrap(), "error: x: m\n");

        let (mut out, mut err) = (Vec::new(), Vec::new());
        let ok = envelope("", vec![json!(1)]);
        assert_eq!(ok.print_to(&mut out, &mut err, false, &r), 0);
        assert_eq!(String::from_utf8(out).unwrap(), "1\n");
        assert!(err.is_empty());
    }

    /// When the parts cut to their shares still do not fit (the fixed fields alone nearly
    /// fill the cap), the last-resort form replaces them. Catches the check before it (`>`)
    /// changed to `==`.
    #[test]
    fn the_last_resort_form_when_the_shares_are_not_enough() {
        let max = 200_000;
        let mut e = envelope(&"o".repeat(1_000), vec![json!("r".repeat(1_000))]);
        e.meta.insert("note".into(), json!("m".repeat(max - 100)));
        e.cap(max);
        assert_eq!(e.output, "");
        assert_eq!(
            e.result,
            vec![json!("[kosmo: truncated: the results were too large]")]
        );
        assert_eq!(e.meta["truncated"], true);
    }

    /// A failure before anything ran: the code's string, the message, nothing else.
    #[test]
    fn failures_carry_the_code_and_the_message() {
        let e = Envelope::failure(ErrorCode::InvalidArgument, "bad", Map::new());
        let j = e.to_json();
        assert_eq!(j["success"], false);
        assert_eq!(
            j["error"],
            json!({"code": "invalid_argument", "message": "bad"})
        );
        assert_eq!(j["result"], json!([]));
        assert_eq!(j["output"], "");
        assert_eq!(j["execution_time_ms"], 0);
        let mut keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort();
        let mut expected = [
            "success",
            "output",
            "error",
            "result",
            "execution_time_ms",
            "memory_usage",
            "integration_calls",
            "meta",
        ];
        expected.sort();
        assert_eq!(keys, expected);
    }

    /// A string is cut to its budget with each character costing what it costs in JSON
    /// (escapes 2 bytes, other control characters 6), never inside a character, and the
    /// marker counts what was left out. Catches any cost or count changed.
    #[test]
    fn strings_are_cut_by_their_json_cost() {
        // (text, budget beyond the 64-byte marker room, what is kept)
        let cases = [
            ("abc", 2, "ab"),
            ("a\"bc", 3, "a\""),
            ("a\"bc", 2, "a"),
            ("a\u{1}b", 6, "a"),
            ("a\u{1}b", 7, "a\u{1}"),
            // A space is printable: one byte, not an escape.
            ("a b", 3, "a b"),
            ("éé", 3, "é"),
        ];
        for (text, room, kept) in cases {
            let omitted = text.len() - kept.len();
            assert_eq!(
                cut_string(text, 64 + room),
                format!(
                    "{kept}[kosmo: truncated: {omitted} of {} bytes omitted]",
                    text.len()
                ),
                "{text:?} in {room}"
            );
        }
        assert_eq!(
            cut_string("abc", 10),
            "[kosmo: truncated: 3 of 3 bytes omitted]"
        );
    }

    /// Arrays and tables keep their first items whole, then one marker counting the rest;
    /// what fits is kept as is. Catches the counts, the marker room and the budget
    /// bookkeeping changed.
    #[test]
    fn arrays_and_tables_keep_their_first_items_and_count_the_rest() {
        let items: Vec<Value> = (0..100).map(|i| json!(format!("item-{i:03}"))).collect();
        // 305 bytes: 2 for the brackets, 11 an item with its comma, and the marker is put
        // once no more than 64 are left: exactly 22 items (the brackets' 2 bytes added
        // instead of taken give 23, commas not taken 24).
        let fitted = fit(&Value::Array(items.clone()), 305);
        let out = fitted.as_array().unwrap();
        let kept = out.len() - 1;
        assert_eq!(kept, 22);
        assert_eq!(&out[..kept], &items[..kept]);
        assert_eq!(
            out[kept],
            json!(format!("[kosmo: truncated: {} more items]", 100 - kept))
        );
        assert!(json_len(&fitted) <= 305 + 64, "{}", json_len(&fitted));

        let map: Map<String, Value> = (0..100).map(|i| (format!("k{i:03}"), json!(i))).collect();
        // 304 bytes: 2 for the braces, 8 a key with its quotes, colon and comma, 1-2 its
        // value, and the marker once no more than 64 + 8 are left: exactly 24 entries (25
        // with the braces' 2 bytes added instead of taken).
        let fitted = fit(&Value::Object(map.clone()), 304);
        let out = fitted.as_object().unwrap();
        let kept = out.len() - 1;
        assert_eq!(kept, 24);
        for (k, v) in map.iter().take(kept) {
            assert_eq!(out.get(k), Some(v), "{k}");
        }
        assert_eq!(
            out["[kosmo: truncated]"],
            json!(format!("{} more entries", 100 - kept))
        );
        assert!(json_len(&fitted) <= 304 + 64, "{}", json_len(&fitted));

        // A cut string takes its room: the array's next item finds none and becomes the
        // marker. Catches the cut string's size not taken from what is left.
        let strings = json!(["x".repeat(1_000), "y".repeat(1_000), "z".repeat(1_000)]);
        let fitted = fit(&strings, 300);
        let out = fitted.as_array().unwrap();
        assert_eq!(out.len(), 2, "{fitted}");
        assert!(out[0].as_str().unwrap().starts_with("xxx"));
        assert_eq!(out[1], json!("[kosmo: truncated: 2 more items]"));

        let small = json!({"a": [1, "two", null], "b": true});
        assert_eq!(fit(&small, 1000), small);
        assert_eq!(
            fit(&small, json_len(&small)),
            small,
            "exactly the budget fits"
        );
    }

    /// The results share what is left equally: a huge first value does not crowd out the
    /// second. Catches the share computed from the wrong count or not shrinking.
    #[test]
    fn results_share_the_room_equally() {
        let big = || json!("z".repeat(10_000));
        let fitted = fit_each(vec![big(), big()], 2_000);
        let lens: Vec<usize> = fitted.iter().map(json_len).collect();
        // 1000 each at first; the second gets what the first left, its comma counted.
        assert_eq!(lens, [985, 999]);
        let fitted = fit_each(vec![json!("small"), big()], 2_000);
        assert_eq!(fitted[0], json!("small"));
        assert!(
            (1_800..=1_993).contains(&json_len(&fitted[1])),
            "{}",
            json_len(&fitted[1])
        );
        assert!(fit_each(Vec::new(), 10).is_empty());
    }

    /// The text cap never splits a character, and remembers it cut. Catches the boundary
    /// walk or the `<=` changed.
    #[test]
    fn the_text_cap_cuts_on_a_character_boundary() {
        let mut out = Vec::new();
        let mut w = CappedWriter {
            inner: &mut out,
            left: 5,
            cut: false,
        };
        w.write_all(b"ab").unwrap();
        assert!(!w.cut);
        assert!(w.write_all("cé".as_bytes()).is_ok(), "exactly the cap fits");
        assert!(w.write_all(b"x").is_err());
        assert!(w.cut);
        assert_eq!(out, "abcé".as_bytes());

        let mut out = Vec::new();
        let mut w = CappedWriter {
            inner: &mut out,
            left: 2,
            cut: false,
        };
        assert!(w.write_all("aé".as_bytes()).is_err());
        assert_eq!(out, b"a");
    }

    /// Text mode: the output, the results between separators, one newline after them, no
    /// marker when nothing was cut.
    #[test]
    fn text_mode_separates_the_results() {
        let mut text = Vec::new();
        envelope("out\n", vec![json!(1), json!("b")]).print_text(&mut text, "\t");
        assert_eq!(String::from_utf8(text).unwrap(), "out\n1\t\"b\"\n");
        let mut text = Vec::new();
        envelope("only\n", Vec::new()).print_text(&mut text, "\t");
        assert_eq!(String::from_utf8(text).unwrap(), "only\n");
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
        e.integration_calls = vec![json!({"path": "klaviyo.get_profile"})];
        e.cap(max);
        let text = serde_json::to_string(&e.to_json()).unwrap();
        assert!(text.len() <= max, "{}", text.len());
        // The cap is used, not dropped to the last-resort form: every part keeps its share.
        assert!(text.len() > (max - SLACK_BYTES) * 9 / 10, "{}", text.len());
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back["meta"]["truncated"], true);
        assert_eq!(back["meta"]["envelope_max_bytes"], MAX_ENVELOPE_BYTES);
        assert_eq!(back["error"]["code"], "script_error");
        assert_eq!(
            back["integration_calls"],
            json!([{"path": "klaviyo.get_profile"}]),
            "a small part is kept whole"
        );
        let room = (max - 64 * 1024) as f64;
        let error_len = json_len(&back["error"]) as f64;
        assert!(
            error_len <= room / 32.0 + 64.0 && error_len > room / 64.0,
            "{error_len}"
        );
        let output_len = json_len(&back["output"]) as f64;
        assert!(
            output_len <= room / 4.0 && output_len > room / 8.0,
            "{output_len}"
        );
        let first = back["result"][0].as_str().unwrap();
        assert!(first.starts_with("é\"x") && first.ends_with("bytes omitted]"));
        let rows = back["result"][1].as_array().unwrap();
        assert_eq!(rows[0], json!({"i": 0}));
        let marker = rows.last().unwrap().as_str().unwrap();
        assert_eq!(
            marker,
            format!(
                "[kosmo: truncated: {} more items]",
                100_000 - (rows.len() - 1)
            )
        );
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
