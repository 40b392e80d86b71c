//! The globals a script gets besides `app`: `print`, `dump`, `json`, `docs` and
//! `lua_read_doc` (`regex` lives in [`crate::regex`]).
//!
//! They are Rust functions that return `true, ...` or `false, message`, lifted by the prelude
//! so that errors are raised from the script's line like those of Lua's own functions.

use std::sync::Arc;

use mlua::{Function, IntoLuaMulti, Lua, MultiValue, Value as LuaValue};

use crate::limits::{Budget, LimitHit, Output};
use crate::sandbox::Prelude;
use crate::values;
use kosmo_runtime::catalog;

/// What a lifted Rust function returns: values, or a message to raise.
pub(crate) type Lifted = Result<MultiValue, String>;

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
        Err(message) => (false, message).into_lua_multi(lua),
    })?;
    prelude.lift.call(raw)
}

/// One value as a multi-value.
pub(crate) fn one(lua: &Lua, v: impl mlua::IntoLua) -> Lifted {
    Ok(MultiValue::from_vec(vec![
        v.into_lua(lua).map_err(|e| e.to_string())?,
    ]))
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

/// Install `print`, `dump`, `json`, `docs` and `lua_read_doc`.
pub(crate) fn install(
    lua: &Lua,
    prelude: &Prelude,
    output: Arc<Output>,
    budget: Arc<Budget>,
) -> mlua::Result<()> {
    let globals = lua.globals();

    let tostring = prelude.tostring.clone();
    let (out, b) = (output.clone(), budget.clone());
    globals.raw_set(
        "print",
        lifted(lua, prelude, move |_, args| {
            let mut line = Vec::with_capacity(args.len());
            for v in args.iter() {
                let s: mlua::LuaString = tostring
                    .call(v.clone())
                    .map_err(|e| first_line(&e.to_string()))?;
                line.push(s.to_string_lossy());
            }
            write(&out, &b, &(line.join("\t") + "\n"))?;
            Ok(MultiValue::new())
        })?,
    )?;

    globals.raw_set(
        "dump",
        lifted(lua, prelude, move |lua, args| {
            let shown: Vec<String> = args.iter().map(|v| values::dump(lua, v)).collect();
            write(&output, &budget, &(shown.join("\t") + "\n"))?;
            Ok(args)
        })?,
    )?;

    let json = lua.create_table()?;
    json.raw_set(
        "encode",
        lifted(lua, prelude, |lua, args| {
            let value =
                values::to_json(lua, &arg(&args, 0)).map_err(|e| format!("json.encode: {e}"))?;
            let pretty = match arg(&args, 1) {
                LuaValue::Boolean(b) => b,
                LuaValue::Table(t) => t.get::<bool>("pretty").unwrap_or(false),
                _ => false,
            };
            let text = if pretty {
                serde_json::to_string_pretty(&value)
            } else {
                serde_json::to_string(&value)
            };
            one(lua, text.map_err(|e| format!("json.encode: {e}"))?)
        })?,
    )?;
    json.raw_set(
        "decode",
        lifted(lua, prelude, |lua, args| {
            let text = string_arg(&args, 0, "json.decode")?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| format!("json.decode: invalid JSON: {e}"))?;
            one(
                lua,
                values::from_json(lua, &value).map_err(|e| e.to_string())?,
            )
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
                values::from_json(lua, &serde_json::Value::Array(topics))
                    .map_err(|e| e.to_string())?,
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
                .map(|t| serde_json::json!({"topic": t.topic, "summary": t.summary, "score": t.score}))
                .collect();
            one(lua, values::from_json(lua, &serde_json::Value::Array(hits)).map_err(|e| e.to_string())?)
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

/// Append to the output; past the cap the script stops (`output_limit`).
fn write(output: &Output, budget: &Budget, text: &str) -> Result<(), String> {
    output
        .push(text)
        .inspect_err(|_| budget.set_hit(LimitHit::Output))
}

/// The first line of an error (mlua adds a traceback).
pub(crate) fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.strip_prefix("runtime error: ")
        .unwrap_or(line)
        .to_string()
}
