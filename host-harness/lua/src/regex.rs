//! `regex.match`, `regex.match_all` and `regex.gsub`: Rust `regex` syntax (no delimiters),
//! linear time whatever the pattern, so a script cannot hang the host with backtracking.
//!
//! - `regex.match(text, pattern)`: like `string.match`: nil without a match; the captures
//!   (one value each) when the pattern has groups, else the whole match.
//! - `regex.match_all(text, pattern)`: an array of matches: strings without groups, else
//!   tables of the captures (by position, and by name for named groups).
//! - `regex.gsub(text, pattern, replacement [, n])`: `(new text, count)`; the replacement is a
//!   string with `$1` / `${name}`, a table looked up by the whole match, or a function given
//!   the whole match and the captures (nil or false keeps the match).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mlua::{Lua, MultiValue, Value as LuaValue};
use regex::{Captures, Regex, RegexBuilder};

use crate::globals::{Lifted, lifted, one};
use crate::sandbox::Prelude;

/// Compiled patterns kept for loops; beyond this many, the cache starts over.
const CACHE_SIZE: usize = 64;

/// Largest compiled pattern, so a pattern cannot take the host's memory.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

#[derive(Default)]
struct Cache(Mutex<HashMap<String, Regex>>);

impl Cache {
    fn get(&self, pattern: &str, function: &str) -> Result<Regex, String> {
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = cache.get(pattern) {
            return Ok(r.clone());
        }
        let r = RegexBuilder::new(pattern)
            .size_limit(PATTERN_SIZE_LIMIT)
            .dfa_size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(|e| {
                format!(
                    "{function}: invalid pattern: {}",
                    e.to_string().replace('\n', " ")
                )
            })?;
        if cache.len() >= CACHE_SIZE {
            cache.clear();
        }
        cache.insert(pattern.to_string(), r.clone());
        Ok(r)
    }
}

fn text_arg(args: &MultiValue, i: usize, function: &str) -> Result<String, String> {
    match args.get(i) {
        Some(LuaValue::String(s)) => Ok(s.to_string_lossy()),
        Some(LuaValue::Integer(n)) => Ok(n.to_string()),
        Some(LuaValue::Number(n)) => Ok(n.to_string()),
        other => Err(format!(
            "bad argument #{} to '{function}' (string expected, got {})",
            i + 1,
            other.map_or("no value", |v| v.type_name())
        )),
    }
}

fn lua_str(lua: &Lua, s: Option<&str>) -> Result<LuaValue, String> {
    match s {
        Some(s) => lua
            .create_string(s)
            .map(LuaValue::String)
            .map_err(|e| e.to_string()),
        None => Ok(LuaValue::Nil),
    }
}

/// Captures as a table: by position, and by name for named groups.
fn captures_table(lua: &Lua, re: &Regex, caps: &Captures<'_>) -> Result<LuaValue, String> {
    let t = lua.create_table().map_err(|e| e.to_string())?;
    for i in 1..caps.len() {
        t.raw_set(i, lua_str(lua, caps.get(i).map(|m| m.as_str()))?)
            .map_err(|e| e.to_string())?;
    }
    for name in re.capture_names().flatten() {
        t.raw_set(name, lua_str(lua, caps.name(name).map(|m| m.as_str()))?)
            .map_err(|e| e.to_string())?;
    }
    Ok(LuaValue::Table(t))
}

/// Install the `regex` table. `max_len` bounds what `gsub` may build.
pub(crate) fn install(lua: &Lua, prelude: &Prelude, max_len: usize) -> mlua::Result<()> {
    let cache = Arc::new(Cache::default());
    let table = lua.create_table()?;

    let c = cache.clone();
    table.raw_set(
        "match",
        lifted(lua, prelude, move |lua, args| {
            let text = text_arg(&args, 0, "regex.match")?;
            let re = c.get(&text_arg(&args, 1, "regex.match")?, "regex.match")?;
            let Some(caps) = re.captures(&text) else {
                return Ok(MultiValue::from_vec(vec![LuaValue::Nil]));
            };
            if caps.len() == 1 {
                return one(lua, lua_str(lua, caps.get(0).map(|m| m.as_str()))?);
            }
            let values = (1..caps.len())
                .map(|i| lua_str(lua, caps.get(i).map(|m| m.as_str())))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(MultiValue::from_vec(values))
        })?,
    )?;

    let c = cache.clone();
    table.raw_set(
        "match_all",
        lifted(lua, prelude, move |lua, args| {
            let text = text_arg(&args, 0, "regex.match_all")?;
            let re = c.get(&text_arg(&args, 1, "regex.match_all")?, "regex.match_all")?;
            let list = lua.create_table().map_err(|e| e.to_string())?;
            for (i, caps) in re.captures_iter(&text).enumerate() {
                let item = if caps.len() == 1 {
                    lua_str(lua, caps.get(0).map(|m| m.as_str()))?
                } else {
                    captures_table(lua, &re, &caps)?
                };
                list.raw_set(i + 1, item).map_err(|e| e.to_string())?;
            }
            list.set_metatable(Some(mlua::LuaSerdeExt::array_metatable(lua)))
                .map_err(|e| e.to_string())?;
            one(lua, list)
        })?,
    )?;

    table.raw_set(
        "gsub",
        lifted(lua, prelude, move |lua, args| {
            gsub(lua, &cache, &args, max_len)
        })?,
    )?;
    lua.globals().raw_set("regex", table)
}

fn gsub(lua: &Lua, cache: &Cache, args: &MultiValue, max_len: usize) -> Lifted {
    let text = text_arg(args, 0, "regex.gsub")?;
    let re = cache.get(&text_arg(args, 1, "regex.gsub")?, "regex.gsub")?;
    let limit = match args.get(3) {
        Some(LuaValue::Integer(n)) if *n >= 0 => *n as usize,
        Some(LuaValue::Number(n)) if *n >= 0.0 => *n as usize,
        None | Some(LuaValue::Nil) => 0,
        Some(_) => return Err("bad argument #4 to 'regex.gsub' (a count >= 0 expected)".into()),
    };
    let replacement = args.get(2).cloned().unwrap_or(LuaValue::Nil);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    let mut count = 0usize;
    for caps in re.captures_iter(&text) {
        if limit > 0 && count == limit {
            break;
        }
        let whole = caps.get(0).expect("group 0 always matches");
        out.push_str(&text[last..whole.start()]);
        let new = match &replacement {
            LuaValue::String(s) => {
                let mut expanded = String::new();
                caps.expand(&s.to_string_lossy(), &mut expanded);
                Some(expanded)
            }
            LuaValue::Integer(_) | LuaValue::Number(_) => Some(text_arg(args, 2, "regex.gsub")?),
            LuaValue::Table(t) => to_text(
                t.get::<LuaValue>(whole.as_str())
                    .map_err(|e| e.to_string())?,
            )?,
            LuaValue::Function(f) => {
                let mut call_args = vec![lua_str(lua, Some(whole.as_str()))?];
                for i in 1..caps.len() {
                    call_args.push(lua_str(lua, caps.get(i).map(|m| m.as_str()))?);
                }
                let v: LuaValue = f
                    .call(MultiValue::from_vec(call_args))
                    .map_err(|e| crate::globals::first_line(&e.to_string()))?;
                to_text(v)?
            }
            other => {
                return Err(format!(
                    "bad argument #3 to 'regex.gsub' (string, table or function expected, got {})",
                    other.type_name()
                ));
            }
        };
        out.push_str(new.as_deref().unwrap_or(whole.as_str()));
        if out.len() > max_len {
            return Err(format!(
                "regex.gsub: the result would exceed {max_len} bytes"
            ));
        }
        last = whole.end();
        count += 1;
    }
    out.push_str(&text[last..]);
    let result = lua.create_string(&out).map_err(|e| e.to_string())?;
    Ok(MultiValue::from_vec(vec![
        LuaValue::String(result),
        LuaValue::Integer(count as i64),
    ]))
}

/// A replacement value: text, or `None` (nil/false) to keep the match.
fn to_text(v: LuaValue) -> Result<Option<String>, String> {
    match v {
        LuaValue::Nil | LuaValue::Boolean(false) => Ok(None),
        LuaValue::String(s) => Ok(Some(s.to_string_lossy())),
        LuaValue::Integer(n) => Ok(Some(n.to_string())),
        LuaValue::Number(n) => Ok(Some(n.to_string())),
        other => Err(format!(
            "regex.gsub: invalid replacement value (a {})",
            other.type_name()
        )),
    }
}
