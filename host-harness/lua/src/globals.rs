//! The globals a script gets besides `app`: `print`, `dump`, `log`, `json`, `docs` and
//! `lua_read_doc` (`regex` lives in [`crate::regex`], `time` in [`crate::clock`]).
//!
//! `log` is `print` for progress: the embedder may send it elsewhere than the output (the CLI
//! sends it to stderr, even with `--json`, where stdout holds only the envelope).
//!
//! They are Rust functions that return `true, ...` or `false, message`, lifted by the prelude
//! so that errors are raised from the script's line like those of Lua's own functions.

use std::sync::Arc;

use mlua::{Function, IntoLuaMulti, Lua, MultiValue, Value as LuaValue};

use crate::limits::{Budget, Limits, Output, VALUE_OVERHEAD, show_bytes};
use crate::sandbox::Prelude;
use crate::values::{self, ConvertError};
use kosmo_runtime::catalog;

/// Why a lifted Rust function failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Raised as a message from the caller's line, like the errors of Lua's own functions.
    Message(String),
    /// Raised as it is: Lua ran out of memory, which the host must report as `memory_limit`
    /// (as a message it would read as the script's own error).
    Lua(mlua::Error),
}

impl From<String> for Failure {
    fn from(message: String) -> Self {
        Failure::Message(message)
    }
}

impl From<mlua::Error> for Failure {
    fn from(e: mlua::Error) -> Self {
        if is_memory_error(&e) {
            Failure::Lua(e)
        } else {
            Failure::Message(first_line(&e.to_string()))
        }
    }
}

impl Failure {
    /// A conversion's failure, its message naming `function`.
    pub(crate) fn convert(function: &str, e: ConvertError) -> Self {
        match e {
            ConvertError::Lua(e) => Failure::from(e),
            other => Failure::Message(format!("{function}: {other}")),
        }
    }
}

/// Whether an mlua error is (or wraps) Lua running out of memory.
pub(crate) fn is_memory_error(e: &mlua::Error) -> bool {
    let mut cause = e;
    while let mlua::Error::CallbackError { cause: inner, .. }
    | mlua::Error::WithContext { cause: inner, .. } = cause
    {
        cause = inner;
    }
    matches!(cause, mlua::Error::MemoryError(_))
}

/// What a lifted Rust function returns: values, or why it failed.
pub(crate) type Lifted = Result<MultiValue, Failure>;

/// A Rust function as a Lua function that raises its error message.
pub(crate) fn lifted<F>(lua: &Lua, prelude: &Prelude, f: F) -> mlua::Result<Function>
where
    F: Fn(&Lua, MultiValue) -> Lifted + Send + 'static,
{
    let raw = lua.create_function(move |lua, args: MultiValue| match f(lua, args) {
        Ok(mut values) => {
            values.push_front(LuaValue::Boolean(true));
            Ok(values)
        }
        Err(Failure::Message(message)) => (false, message).into_lua_multi(lua),
        Err(Failure::Lua(e)) => Err(e),
    })?;
    prelude.lift.call(raw)
}

/// One value as a multi-value.
pub(crate) fn one(lua: &Lua, v: impl mlua::IntoLua) -> Lifted {
    Ok(MultiValue::from_vec(vec![v.into_lua(lua)?]))
}

fn arg(args: &MultiValue, i: usize) -> LuaValue {
    args.get(i).cloned().unwrap_or(LuaValue::Nil)
}

fn string_arg(args: &MultiValue, i: usize, function: &str) -> Result<String, String> {
    match arg(args, i) {
        LuaValue::String(s) => Ok(s.to_string_lossy()),
        LuaValue::Integer(n) => Ok(n.to_string()),
        LuaValue::Number(n) => Ok(n.to_string()),
        other => Err(format!(
            "bad argument #{} to '{function}' (string expected, got {})",
            i + 1,
            other.type_name()
        )),
    }
}

/// Install `print`, `dump`, `log`, `json`, `docs` and `lua_read_doc`. `log` writes to `log`
/// (the same [`Output`] as `output` when the embedder has no sink of its own for it).
pub(crate) fn install(
    lua: &Lua,
    prelude: &Prelude,
    output: Arc<Output>,
    log: Arc<Output>,
    budget: Arc<Budget>,
    limits: &Limits,
) -> mlua::Result<()> {
    let globals = lua.globals();

    let tostring = prelude.tostring.clone();
    let b = budget.clone();
    globals.raw_set(
        "log",
        lifted(lua, prelude, move |_, args| {
            let line = print_line(&tostring, &args, log.room())?;
            write(&log, &b, &line)?;
            Ok(MultiValue::new())
        })?,
    )?;

    let tostring = prelude.tostring.clone();
    let (out, b) = (output.clone(), budget.clone());
    globals.raw_set(
        "print",
        lifted(lua, prelude, move |_, args| {
            let line = print_line(&tostring, &args, out.room())?;
            write(&out, &b, &line)?;
            Ok(MultiValue::new())
        })?,
    )?;

    globals.raw_set(
        "dump",
        lifted(lua, prelude, move |lua, args| {
            // Render at most about twice what still fits (the count is generous); `write`
            // then cuts at the exact cap.
            let allowance = output.room().saturating_mul(2).saturating_add(1024);
            let mut shown = Vec::with_capacity(args.len());
            for v in args.iter() {
                match values::dump(lua, v, allowance) {
                    Ok(text) => shown.push(text),
                    Err(ConvertError::TooLarge(_)) => {
                        budget.set_hit(output.kind());
                        return Err(output.refusal().into());
                    }
                    Err(e) => return Err(Failure::convert("dump", e)),
                }
            }
            write(&output, &budget, &(shown.join("\t") + "\n"))?;
            Ok(args)
        })?,
    )?;

    let json = lua.create_table()?;
    let text_cap = limits.text_cap();
    json.raw_set(
        "encode",
        lifted(lua, prelude, move |lua, args| {
            let pretty = match arg(&args, 1) {
                LuaValue::Boolean(b) => b,
                LuaValue::Table(t) => t.raw_get::<bool>("pretty").unwrap_or(false),
                _ => false,
            };
            let text = values::encode_json(lua, &arg(&args, 0), pretty, text_cap)
                .map_err(|e| Failure::convert("json.encode", e))?;
            one(lua, lua.create_string(&text)?)
        })?,
    )?;
    json.raw_set(
        "decode",
        lifted(lua, prelude, move |lua, args| {
            let value = match arg(&args, 0) {
                LuaValue::String(s) => values::decode_json(lua, &s.as_bytes(), text_cap),
                _ => {
                    let text = string_arg(&args, 0, "json.decode")?;
                    values::decode_json(lua, text.as_bytes(), text_cap)
                }
            };
            let value = value.map_err(|e| match e {
                ConvertError::TooLarge(max) => Failure::Message(format!(
                    "json.decode: the document is too large: decoded, it would take more than {} \
                     (its text plus {VALUE_OVERHEAD} bytes per value)",
                    show_bytes(max)
                )),
                other => Failure::convert("json.decode", other),
            })?;
            one(lua, value)
        })?,
    )?;
    globals.raw_set("json", json)?;

    let docs_table = lua.create_table()?;
    docs_table.raw_set(
        "list",
        lifted(lua, prelude, |lua, _| {
            let topics: Vec<serde_json::Value> = catalog()
                .list()
                .into_iter()
                .map(|t| serde_json::json!({"topic": t.topic, "summary": t.summary}))
                .collect();
            one(
                lua,
                values::from_json(lua, &serde_json::Value::Array(topics))?,
            )
        })?,
    )?;
    docs_table.raw_set(
        "search",
        lifted(lua, prelude, |lua, args| {
            let query = string_arg(&args, 0, "docs.search")?;
            let hits: Vec<serde_json::Value> = catalog()
                .search(&query)
                .into_iter()
                .map(|t| {
                    serde_json::json!({
                        "topic": t.topic,
                        "summary": t.summary,
                        "score": t.score,
                        "snippet": t.snippet,
                    })
                })
                .collect();
            one(
                lua,
                values::from_json(lua, &serde_json::Value::Array(hits))?,
            )
        })?,
    )?;
    docs_table.raw_set(
        "read",
        lifted(lua, prelude, |lua, args| {
            let topic = match arg(&args, 0) {
                LuaValue::Nil => "klaviyo".to_string(),
                _ => string_arg(&args, 0, "docs.read")?,
            };
            one(lua, catalog().read(&topic)?)
        })?,
    )?;
    globals.raw_set("docs", docs_table)?;

    globals.raw_set(
        "lua_read_doc",
        lifted(lua, prelude, |lua, args| {
            let name = match arg(&args, 0) {
                LuaValue::Nil => "integrations.klaviyo".to_string(),
                _ => string_arg(&args, 0, "lua_read_doc")?,
            };
            let trimmed = name.trim();
            let whole = [
                "integrations.klaviyo",
                "app.integrations.klaviyo",
                "klaviyo",
                "integrations",
            ];
            let text = if whole.contains(&trimmed) {
                catalog().full_reference()
            } else {
                catalog().read(trimmed)?
            };
            one(lua, text)
        })?,
    )?;
    Ok(())
}

/// `print`'s line: its arguments through `tostring`, tab-separated. A 10 MiB string printed
/// 200 times once made a 2 GiB line: each argument is copied only up to just past `room`
/// (what still fits), so that [`write`] then cuts it and stops the script.
fn print_line(tostring: &Function, args: &MultiValue, room: usize) -> Result<String, Failure> {
    let mut line = String::new();
    for (i, v) in args.iter().enumerate() {
        if i > 0 {
            line.push('\t');
        }
        let s: mlua::LuaString = tostring.call(v.clone())?;
        let bytes = s.as_bytes();
        // Lossy decoding never shortens, so a cut string still ends past `room`.
        let want = room.saturating_sub(line.len()).saturating_add(4);
        line.push_str(&String::from_utf8_lossy(&bytes[..bytes.len().min(want)]));
        if line.len() > room {
            break;
        }
    }
    line.push('\n');
    Ok(line)
}

/// Append to the output; past the cap the script stops (`output_limit`).
fn write(output: &Output, budget: &Budget, text: &str) -> Result<(), String> {
    output
        .push(text)
        .inspect_err(|_| budget.set_hit(output.kind()))
}

/// The first line of an error (mlua adds a traceback).
pub(crate) fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("runtime error: ")
        .unwrap_or(line)
        .to_string()
}
