//! `time`: a clock for scripts, which have no `os` (see [`crate::sandbox`]). Timestamps are
//! RFC 3339 text, as Klaviyo writes them (`2026-11-30T02:10:00Z`), and spans are seconds:
//!
//! - `time.now()`: now, UTC, whole seconds;
//! - `time.unix([ts])`: Unix seconds of `ts` (any offset, fractional seconds dropped) or of now;
//! - `time.format(seconds)`: Unix seconds as RFC 3339 UTC;
//! - `time.add(ts, seconds)`: `ts` moved by `seconds` (negative goes back), RFC 3339 UTC;
//! - `time.days(n)`, `time.hours(n)`, `time.minutes(n)`: spans in seconds.
//!
//! Every result is whole seconds in UTC, so results compare as strings. Times must lie in
//! the years 1970 to 9999 (what RFC 3339 can write, from the Unix epoch): anything else is an
//! error naming the argument, never a panic or a wrapped-around date.

use mlua::{Lua, MultiValue, Value as LuaValue};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::globals::{Lifted, lifted, one};
use crate::sandbox::Prelude;

/// The example every timestamp error shows.
const EXAMPLE: &str = "2026-11-30T02:10:00Z";

/// Unix seconds of 9999-12-31T23:59:59Z, the last second RFC 3339 can write.
const LAST_SECOND: i64 = 253_402_300_799;

/// Most characters of a bad argument repeated in an error.
const SHOWN_CHARS: usize = 40;

/// Install the `time` global.
pub(crate) fn install(lua: &Lua, prelude: &Prelude) -> mlua::Result<()> {
    let table = lua.create_table()?;
    table.raw_set(
        "now",
        lifted(lua, prelude, |lua, _| one(lua, format(now())?))?,
    )?;
    table.raw_set(
        "unix",
        lifted(lua, prelude, |lua, args| {
            let seconds = match arg(&args, 0) {
                LuaValue::Nil => now(),
                ts => parse("time.unix", "ts", &ts)?,
            };
            one(lua, seconds)
        })?,
    )?;
    table.raw_set(
        "format",
        lifted(lua, prelude, |lua, args| {
            let seconds = seconds_arg("time.format", "seconds", &arg(&args, 0))?;
            one(lua, in_range("time.format", seconds).and_then(format)?)
        })?,
    )?;
    table.raw_set(
        "add",
        lifted(lua, prelude, |lua, args| {
            let start = parse("time.add", "ts", &arg(&args, 0))?;
            let by = seconds_arg("time.add", "seconds", &arg(&args, 1))?;
            let end = in_range("time.add", start.saturating_add(by))?;
            one(lua, format(end)?)
        })?,
    )?;
    for (name, unit) in [("days", 86_400), ("hours", 3_600), ("minutes", 60)] {
        table.raw_set(
            name,
            lifted(lua, prelude, move |lua, args| {
                span(lua, &format!("time.{name}"), &arg(&args, 0), unit)
            })?,
        )?;
    }
    lua.globals().raw_set("time", table)
}

fn arg(args: &MultiValue, i: usize) -> LuaValue {
    args.get(i).cloned().unwrap_or(LuaValue::Nil)
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// A bad argument as an error repeats it: quoted, at most [`SHOWN_CHARS`] characters.
fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(SHOWN_CHARS).collect();
    if text.chars().count() > SHOWN_CHARS {
        out.push_str("...");
    }
    format!("{out:?}")
}

/// Unix seconds of an RFC 3339 timestamp, within the years 1970 to 9999.
fn parse(function: &str, name: &str, value: &LuaValue) -> Result<i64, String> {
    let LuaValue::String(s) = value else {
        return Err(format!(
            "{function}: {name} must be an RFC 3339 timestamp (a string, e.g. {EXAMPLE}), not {}",
            value.type_name()
        ));
    };
    let bytes = s.as_bytes();
    // No timestamp is longer than 64 bytes (nanoseconds and an offset included).
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(256)]).into_owned();
    let parsed = (bytes.len() <= 64)
        .then(|| OffsetDateTime::parse(text.trim(), &Rfc3339).ok())
        .flatten();
    let Some(at) = parsed else {
        return Err(format!(
            "{function}: {name} {} is not an RFC 3339 timestamp, e.g. {EXAMPLE}",
            shown(&text)
        ));
    };
    in_range(function, at.unix_timestamp())
}

/// Seconds given as a number: an integer, or a float (rounded down to whole seconds; one
/// beyond the integers saturates, and is then out of range).
fn seconds_arg(function: &str, name: &str, value: &LuaValue) -> Result<i64, String> {
    match value {
        LuaValue::Integer(i) => Ok(*i),
        LuaValue::Number(n) if n.is_finite() => Ok(n.floor() as i64),
        LuaValue::Number(n) => Err(format!("{function}: {name} {n} is not a number of seconds")),
        other => Err(format!(
            "{function}: {name} must be a number of seconds, not {}",
            other.type_name()
        )),
    }
}

/// `seconds` when it lies in the years 1970 to 9999.
fn in_range(function: &str, seconds: i64) -> Result<i64, String> {
    if (0..=LAST_SECOND).contains(&seconds) {
        return Ok(seconds);
    }
    Err(format!(
        "{function}: {seconds} seconds is outside the years 1970 to 9999 (0 to {LAST_SECOND} \
         Unix seconds)"
    ))
}

/// RFC 3339 UTC of Unix seconds already checked by [`in_range`].
fn format(seconds: i64) -> Result<String, String> {
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|at| at.format(&Rfc3339).ok())
        .ok_or_else(|| format!("{seconds} seconds cannot be written as RFC 3339"))
}

/// `n` units as seconds: an integer when whole, and never more than the span of the years
/// 1970 to 9999 either way.
fn span(lua: &Lua, function: &str, value: &LuaValue, unit: i64) -> Lifted {
    let seconds = match value {
        LuaValue::Integer(n) => n.checked_mul(unit).map(|s| s as f64),
        LuaValue::Number(n) if n.is_finite() => Some(n * unit as f64),
        LuaValue::Number(_) => None,
        other => {
            return Err(
                format!("{function}: n must be a number, not {}", other.type_name()).into(),
            );
        }
    };
    match seconds {
        Some(s) if s.abs() <= LAST_SECOND as f64 => {
            if s.fract() == 0.0 {
                one(lua, s as i64)
            } else {
                one(lua, s)
            }
        }
        _ => Err(format!(
            "{function}: the span is longer than the years 1970 to 9999 ({LAST_SECOND} seconds)"
        )
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::{Value, json};

    use crate::{Limits, Session};
    use kosmo_runtime::{Host, HostOptions};

    fn session() -> Session {
        Session::new(
            Arc::new(Host::new(Vec::new(), HostOptions::default())),
            Limits::default(),
        )
        .unwrap()
    }

    async fn result(s: &Session, code: &str) -> Vec<Value> {
        let out = s.eval(code, "=eval").await;
        assert!(out.success, "{code}: {out:?}");
        out.result
    }

    async fn error(s: &Session, code: &str) -> String {
        let out = s.eval(code, "=eval").await;
        assert!(!out.success, "{code}: {out:?}");
        out.error.unwrap()["message"].as_str().unwrap().to_string()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn timestamps_convert_both_ways() {
        let s = session();
        let r = result(
            &s,
            r#"return time.unix("2026-11-30T02:10:00Z"), time.unix("2026-11-30T03:10:00.75+01:00"),
                      time.format(1796004600), time.add("2026-11-30T02:10:00Z", time.days(-1) + 5),
                      time.add("2026-11-30T02:10:00.9Z", time.hours(1.5)), time.minutes(2),
                      time.days(0.5), time.format(0)"#,
        )
        .await;
        assert_eq!(
            r,
            vec![
                json!(1796004600),
                json!(1796004600),
                json!("2026-11-30T02:10:00Z"),
                json!("2026-11-29T02:10:05Z"),
                json!("2026-11-30T03:40:00Z"),
                json!(120),
                json!(43200),
                json!("1970-01-01T00:00:00Z"),
            ]
        );
        let r = result(
            &s,
            "local n = time.now() return n, time.unix(n) - time.unix(), math.type(time.unix())",
        )
        .await;
        let now = r[0].as_str().unwrap();
        assert!(
            now.len() == 20 && now.ends_with('Z') && now.as_bytes()[10] == b'T',
            "{now}"
        );
        assert!(r[1].as_i64().unwrap().abs() <= 1, "{r:?}");
        assert_eq!(r[2], json!("integer"));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn bad_or_absurd_input_is_an_error_naming_the_argument() {
        let s = session();
        let cases = [
            (
                r#"time.add("x", 1)"#,
                r#"time.add: ts "x" is not an RFC 3339 timestamp, e.g. 2026-11-30T02:10:00Z"#,
            ),
            (
                r#"time.add("2026-11-30T02:10:00Z", "1")"#,
                "time.add: seconds must be a number of seconds, not string",
            ),
            (
                "time.unix(5)",
                "time.unix: ts must be an RFC 3339 timestamp",
            ),
            ("time.format(-1)", "outside the years 1970 to 9999"),
            ("time.format(1e300)", "outside the years 1970 to 9999"),
            (
                "time.format(0/0)",
                "time.format: seconds NaN is not a number of seconds",
            ),
            (
                "time.format(math.maxinteger)",
                "outside the years 1970 to 9999",
            ),
            (
                r#"time.add("9999-12-31T23:59:59Z", 1)"#,
                "time.add: 253402300800 seconds is outside",
            ),
            (
                r#"time.add("2026-01-01T00:00:00Z", math.mininteger)"#,
                "outside the years 1970 to 9999",
            ),
            (
                r#"time.unix("1969-12-31T23:59:59Z")"#,
                "time.unix: -1 seconds is outside",
            ),
            ("time.days(1e30)", "time.days: the span is longer"),
            (
                "time.hours(math.maxinteger)",
                "time.hours: the span is longer",
            ),
            ("time.minutes(0/0)", "time.minutes: the span is longer"),
            ("time.days()", "time.days: n must be a number, not nil"),
            (
                "time.unix(string.rep('9', 1e6))",
                r#"ts "9999999999999999999999999999999999999999..." is not"#,
            ),
        ];
        for (code, expected) in cases {
            let message = error(&s, code).await;
            assert!(message.contains(expected), "{code}: {message}");
            assert!(message.starts_with("eval:1: time."), "{code}: {message}");
        }
    }
}
