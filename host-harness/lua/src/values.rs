//! Lua values <-> JSON, and `dump`'s readable form.
//!
//! Lua has one table type for arrays and maps; JSON needs to know which. A table is an array
//! when its keys are exactly `1..n`, or when it carries mlua's array marker (which tables made
//! from JSON arrays get, so an empty array survives a round trip); an empty table is an
//! object. Integral floats (`10 / 2`) become JSON integers, since Lua users mean 5, not 5.0.

use std::collections::HashSet;
use std::ffi::c_void;

use mlua::{Lua, LuaSerdeExt, Table, Value as LuaValue};
use serde_json::{Map, Number, Value};

/// Deepest nesting converted; deeper means a mistake (or a cycle through metatables).
const MAX_DEPTH: usize = 100;

/// Largest float that is still an exact integer (2^53).
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Make an error table (`code`, `message`, ...) with the `__tostring` metatable `error_mt`.
pub(crate) fn error_table(lua: &Lua, error_mt: &Table, error: &Value) -> mlua::Result<Table> {
    let table = match from_json(lua, error)? {
        LuaValue::Table(t) => t,
        _ => lua.create_table()?,
    };
    table.set_metatable(Some(error_mt.clone()))?;
    Ok(table)
}

/// A Lua value as JSON; errors name what could not be converted.
pub fn to_json(lua: &Lua, value: &LuaValue) -> Result<Value, String> {
    Converter {
        lua,
        seen: HashSet::new(),
        lossy: false,
    }
    .value(value, 0)
}

/// Like [`to_json`], but values JSON cannot hold become descriptive strings (`<function>`)
/// instead of errors: for showing a script's results.
pub fn to_json_lossy(lua: &Lua, value: &LuaValue) -> Value {
    Converter {
        lua,
        seen: HashSet::new(),
        lossy: true,
    }
    .value(value, 0)
    .unwrap_or_else(|e| Value::String(format!("<{e}>")))
}

struct Converter<'a> {
    lua: &'a Lua,
    seen: HashSet<*const c_void>,
    lossy: bool,
}

impl Converter<'_> {
    fn value(&mut self, value: &LuaValue, depth: usize) -> Result<Value, String> {
        Ok(match value {
            LuaValue::Nil => Value::Null,
            LuaValue::LightUserData(p) if p.0.is_null() => Value::Null,
            LuaValue::Boolean(b) => Value::Bool(*b),
            LuaValue::Integer(i) => Value::from(*i),
            LuaValue::Number(n) => number(*n)?,
            LuaValue::String(s) => Value::String(s.to_string_lossy()),
            LuaValue::Table(t) => self.table(t, depth)?,
            other if self.lossy => Value::String(format!("<{}>", other.type_name())),
            other => {
                return Err(format!(
                    "a {} cannot be converted to JSON",
                    other.type_name()
                ));
            }
        })
    }

    fn table(&mut self, t: &Table, depth: usize) -> Result<Value, String> {
        if depth >= MAX_DEPTH {
            return Err(format!(
                "tables nested deeper than {MAX_DEPTH} levels cannot be converted to JSON"
            ));
        }
        let ptr = t.to_pointer();
        if !self.seen.insert(ptr) {
            if self.lossy {
                return Ok(Value::String("<cycle>".into()));
            }
            return Err("a table that contains itself cannot be converted to JSON".into());
        }
        let result = if is_array(self.lua, t) {
            let len = t.raw_len();
            let mut items = Vec::with_capacity(len);
            for i in 1..=len {
                let v: LuaValue = t.raw_get(i).map_err(|e| e.to_string())?;
                items.push(self.value(&v, depth + 1)?);
            }
            Value::Array(items)
        } else {
            let mut entries: Vec<(String, Value)> = Vec::new();
            for pair in t.pairs::<LuaValue, LuaValue>() {
                let (k, v) = pair.map_err(|e| e.to_string())?;
                let key = match &k {
                    LuaValue::String(s) => s.to_string_lossy(),
                    LuaValue::Integer(i) => i.to_string(),
                    LuaValue::Number(n) if n.fract() == 0.0 && n.abs() < EXACT_INT => {
                        (*n as i64).to_string()
                    }
                    LuaValue::Number(n) => n.to_string(),
                    other if self.lossy => format!("<{}>", other.type_name()),
                    other => {
                        return Err(format!(
                            "a table key of type {} cannot be converted to JSON",
                            other.type_name()
                        ));
                    }
                };
                entries.push((key, self.value(&v, depth + 1)?));
            }
            // Lua's iteration order is arbitrary: sort for stable output.
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect::<Map<_, _>>())
        };
        self.seen.remove(&ptr);
        Ok(result)
    }
}

fn number(n: f64) -> Result<Value, String> {
    if !n.is_finite() {
        return Err(format!("the number {n} cannot be converted to JSON"));
    }
    if n.fract() == 0.0 && n.abs() < EXACT_INT {
        return Ok(Value::from(n as i64));
    }
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| format!("the number {n} cannot be converted to JSON"))
}

/// Whether a table is a sequence `1..n` (n >= 1) or is marked as an array.
fn is_array(lua: &Lua, t: &Table) -> bool {
    if t.metatable()
        .is_some_and(|m| m.to_pointer() == lua.array_metatable().to_pointer())
    {
        return true;
    }
    let len = t.raw_len();
    if len == 0 {
        return false;
    }
    let mut count = 0usize;
    for pair in t.pairs::<LuaValue, LuaValue>() {
        match pair {
            Ok((LuaValue::Integer(i), _)) if i >= 1 && (i as usize) <= len => count += 1,
            _ => return false,
        }
    }
    count == len
}

/// A JSON value as Lua: `null` is nil, arrays are tables marked as arrays.
pub fn from_json(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    Ok(match value {
        Value::Null => LuaValue::Nil,
        Value::Bool(b) => LuaValue::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => LuaValue::Integer(i),
            None => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => LuaValue::String(lua.create_string(s)?),
        Value::Array(items) => {
            let t = lua.create_table_with_capacity(items.len(), 0)?;
            for (i, item) in items.iter().enumerate() {
                t.raw_set(i + 1, from_json(lua, item)?)?;
            }
            t.set_metatable(Some(lua.array_metatable()))?;
            LuaValue::Table(t)
        }
        Value::Object(m) => {
            let t = lua.create_table_with_capacity(0, m.len())?;
            for (k, v) in m {
                t.raw_set(k.as_str(), from_json(lua, v)?)?;
            }
            LuaValue::Table(t)
        }
    })
}

/// `dump`'s readable form: Lua table syntax, keys sorted, nested tables indented, cycles
/// shown as `<cycle>`.
pub fn dump(lua: &Lua, value: &LuaValue) -> String {
    Dumper {
        lua,
        seen: HashSet::new(),
    }
    .value(value, 0)
}

struct Dumper<'a> {
    lua: &'a Lua,
    seen: HashSet<*const c_void>,
}

/// Tables whose one-line form is at most this long are shown on one line.
const INLINE_WIDTH: usize = 72;

impl Dumper<'_> {
    fn value(&mut self, value: &LuaValue, indent: usize) -> String {
        match value {
            LuaValue::Nil => "nil".into(),
            LuaValue::LightUserData(p) if p.0.is_null() => "null".into(),
            LuaValue::Boolean(b) => b.to_string(),
            LuaValue::Integer(i) => i.to_string(),
            LuaValue::Number(n) if n.fract() == 0.0 && n.is_finite() => format!("{n:.1}"),
            LuaValue::Number(n) => n.to_string(),
            LuaValue::String(s) => format!("{:?}", s.to_string_lossy()),
            LuaValue::Table(t) => self.table(t, indent),
            // The `app` proxies describe themselves through `__tostring`.
            LuaValue::UserData(_) => match value.to_string() {
                Ok(text) => format!("<{text}>"),
                Err(_) => "<userdata>".into(),
            },
            other => format!("<{}>", other.type_name()),
        }
    }

    fn table(&mut self, t: &Table, indent: usize) -> String {
        let ptr = t.to_pointer();
        if indent > 40 || !self.seen.insert(ptr) {
            return "<cycle>".into();
        }
        let mut parts = Vec::new();
        if is_array(self.lua, t) {
            for i in 1..=t.raw_len() {
                let v: LuaValue = t.raw_get(i).unwrap_or(LuaValue::Nil);
                parts.push(self.value(&v, indent + 2));
            }
        } else {
            let mut entries: Vec<(String, String)> = Vec::new();
            for (k, v) in t.pairs::<LuaValue, LuaValue>().flatten() {
                let key = match &k {
                    LuaValue::String(s) => {
                        let s = s.to_string_lossy();
                        if is_identifier(&s) {
                            s
                        } else {
                            format!("[{s:?}]")
                        }
                    }
                    other => format!("[{}]", self.value(other, indent + 2)),
                };
                entries.push((key, self.value(&v, indent + 2)));
            }
            entries.sort();
            parts = entries
                .into_iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect();
        }
        self.seen.remove(&ptr);
        if parts.is_empty() {
            return "{}".into();
        }
        let inline = format!("{{ {} }}", parts.join(", "));
        if inline.len() <= INLINE_WIDTH && !inline.contains('\n') {
            return inline;
        }
        let pad = " ".repeat(indent + 2);
        format!(
            "{{\n{pad}{}\n{}}}",
            parts.join(&format!(",\n{pad}")),
            " ".repeat(indent)
        )
    }
}

fn is_identifier(s: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
        "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
    ];
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_become_arrays_or_objects() {
        let lua = Lua::new();
        let v: LuaValue = lua
            .load("return {1, 2.0, 2.5, {a = 1, [2] = true}, {}, {n = 1}}")
            .eval()
            .unwrap();
        assert_eq!(
            to_json(&lua, &v).unwrap(),
            json!([1, 2, 2.5, {"a": 1, "2": true}, {}, {"n": 1}])
        );
        let bad: LuaValue = lua.load("return {f = print}").eval().unwrap();
        assert!(to_json(&lua, &bad).unwrap_err().contains("function"));
        assert_eq!(to_json_lossy(&lua, &bad), json!({"f": "<function>"}));
        let cyclic: LuaValue = lua.load("local t = {} t.t = t return t").eval().unwrap();
        assert!(to_json(&lua, &cyclic).is_err());
    }

    #[test]
    fn json_round_trips_keep_empty_arrays() {
        let lua = Lua::new();
        let value = json!({"items": [], "next_cursor": null, "n": 3, "x": 1.5, "s": "é"});
        let lua_value = from_json(&lua, &value).unwrap();
        assert_eq!(
            to_json(&lua, &lua_value).unwrap(),
            json!({"items": [], "n": 3, "x": 1.5, "s": "é"})
        );
    }

    #[test]
    fn dumps_read_like_lua() {
        let lua = Lua::new();
        let v: LuaValue = lua
            .load(r#"return {b = 1, a = "x", ["not id"] = {1, 2}}"#)
            .eval()
            .unwrap();
        assert_eq!(
            dump(&lua, &v),
            r#"{ ["not id"] = { 1, 2 }, a = "x", b = 1 }"#
        );
        let long: LuaValue = lua
            .load("return {text = string.rep('y', 80)}")
            .eval()
            .unwrap();
        assert!(dump(&lua, &long).starts_with("{\n  text = \"yyy"));
    }
}
