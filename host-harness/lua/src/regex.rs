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
//!
//! A text that is valid UTF-8 is matched in place, where Lua holds it; any other is copied
//! with its invalid bytes replaced by U+FFFD, and only up to the text cap.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use mlua::{BorrowedStr, Lua, MultiValue, Table, Value as LuaValue};
use regex::{Captures, Regex, RegexBuilder};

use crate::globals::{Failure, Lifted, lifted, one};
use crate::limits::show_bytes;
use crate::sandbox::Prelude;

/// Compiled patterns kept for loops; beyond this many, the cache starts over. Each may hold
/// about a megabyte (its program and lazy DFA, see [`PATTERN_SIZE_LIMIT`]): 64 of them took
/// the host 64 MiB, whatever the script's memory limit.
const CACHE_SIZE: usize = 16;

/// Largest compiled pattern, so a pattern cannot take the host's memory.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Longest pattern text: the cache keeps the text of each pattern it holds, and a pattern
/// of comments (`(?x)#...`) compiles to almost nothing whatever its length.
const PATTERN_BYTES: usize = 64 * 1024;

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

/// A text argument: the Lua string in place when it is valid UTF-8, else a lossy copy (or a
/// number's digits).
enum Text {
    Lua(BorrowedStr),
    Owned(String),
}

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Text::Lua(s) => s,
            Text::Owned(s) => s,
        }
    }
}

/// Argument `i` as text. A copy (of a string that is not UTF-8) may take at most `max` bytes.
fn text_arg(args: &MultiValue, i: usize, function: &str, max: usize) -> Result<Text, String> {
    match args.get(i) {
        Some(LuaValue::String(s)) => match s.to_str() {
            Ok(text) => Ok(Text::Lua(text)),
            Err(_) if s.as_bytes().len() > max => Err(format!(
                "{function}: argument #{} is not valid UTF-8 and longer than {}",
                i + 1,
                show_bytes(max)
            )),
            Err(_) => Ok(Text::Owned(s.to_string_lossy())),
        },
        Some(LuaValue::Integer(n)) => Ok(Text::Owned(n.to_string())),
        Some(LuaValue::Number(n)) => Ok(Text::Owned(n.to_string())),
        other => Err(format!(
            "bad argument #{} to '{function}' (string expected, got {})",
            i + 1,
            other.map_or("no value", |v| v.type_name())
        )),
    }
}

/// The pattern argument, compiled (from the cache).
fn pattern_arg(cache: &Cache, args: &MultiValue, function: &str) -> Result<Regex, String> {
    let pattern = text_arg(args, 1, function, PATTERN_BYTES)?;
    if pattern.len() > PATTERN_BYTES {
        return Err(format!(
            "{function}: the pattern is longer than {}",
            show_bytes(PATTERN_BYTES)
        ));
    }
    cache.get(&pattern, function)
}

fn lua_str(lua: &Lua, s: Option<&str>) -> mlua::Result<LuaValue> {
    match s {
        Some(s) => lua.create_string(s).map(LuaValue::String),
        None => Ok(LuaValue::Nil),
    }
}

/// Captures as a table: by position, and by name for named groups.
fn captures_table(lua: &Lua, re: &Regex, caps: &Captures<'_>) -> mlua::Result<LuaValue> {
    let t = lua.create_table()?;
    for i in 1..caps.len() {
        t.raw_set(i, lua_str(lua, caps.get(i).map(|m| m.as_str()))?)?;
    }
    for name in re.capture_names().flatten() {
        t.raw_set(name, lua_str(lua, caps.name(name).map(|m| m.as_str()))?)?;
    }
    Ok(LuaValue::Table(t))
}

/// Install the `regex` table. `max_len` bounds what `gsub` may build, and a copy of a text
/// that is not UTF-8.
pub(crate) fn install(lua: &Lua, prelude: &Prelude, max_len: usize) -> mlua::Result<()> {
    let cache = Arc::new(Cache::default());
    let table = lua.create_table()?;

    let c = cache.clone();
    table.raw_set(
        "match",
        lifted(lua, prelude, move |lua, args| {
            let text = text_arg(&args, 0, "regex.match", max_len)?;
            let re = pattern_arg(&c, &args, "regex.match")?;
            let Some(caps) = re.captures(&text) else {
                return Ok(MultiValue::from_vec(vec![LuaValue::Nil]));
            };
            if caps.len() == 1 {
                return one(lua, lua_str(lua, caps.get(0).map(|m| m.as_str()))?);
            }
            let values = (1..caps.len())
                .map(|i| lua_str(lua, caps.get(i).map(|m| m.as_str())))
                .collect::<mlua::Result<Vec<_>>>()?;
            Ok(MultiValue::from_vec(values))
        })?,
    )?;

    let c = cache.clone();
    table.raw_set(
        "match_all",
        lifted(lua, prelude, move |lua, args| {
            let text = text_arg(&args, 0, "regex.match_all", max_len)?;
            let re = pattern_arg(&c, &args, "regex.match_all")?;
            let list = lua.create_table()?;
            for (i, caps) in re.captures_iter(&text).enumerate() {
                let item = if caps.len() == 1 {
                    lua_str(lua, caps.get(0).map(|m| m.as_str()))?
                } else {
                    captures_table(lua, &re, &caps)?
                };
                list.raw_set(i + 1, item)?;
            }
            list.set_metatable(Some(mlua::LuaSerdeExt::array_metatable(lua)))?;
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

/// What `gsub` replaces each match with.
enum Replacement {
    Template(Template),
    Table(Table),
    Function(mlua::Function),
}

impl Replacement {
    fn from_arg(args: &MultiValue, re: &Regex) -> Result<Replacement, String> {
        Ok(match args.get(2).cloned().unwrap_or(LuaValue::Nil) {
            LuaValue::String(s) => Replacement::Template(Template::parse(&s.as_bytes(), re)),
            // Numbers are used as they read, as before: no `$` to expand.
            LuaValue::Integer(n) => Replacement::Template(Template::literal(n.to_string())),
            LuaValue::Number(n) => Replacement::Template(Template::literal(n.to_string())),
            LuaValue::Table(t) => Replacement::Table(t),
            LuaValue::Function(f) => Replacement::Function(f),
            other => {
                return Err(format!(
                    "bad argument #3 to 'regex.gsub' (string, table or function expected, got {})",
                    other.type_name()
                ));
            }
        })
    }
}

/// The result of `gsub`, refusing to grow past its cap before it copies anything: a
/// template such as `$0` repeated 500 times over a 1 MiB match once expanded to 500 MiB
/// before the size was checked.
struct Output {
    buf: Vec<u8>,
    max: usize,
}

impl Output {
    fn fits(&self, n: usize) -> Result<(), Failure> {
        if self.buf.len().saturating_add(n) > self.max {
            return Err(Failure::Message(format!(
                "regex.gsub: the result would be larger than {}",
                show_bytes(self.max)
            )));
        }
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.fits(bytes.len())?;
        self.buf.extend_from_slice(bytes);
        Ok(())
    }
}

fn gsub(lua: &Lua, cache: &Cache, args: &MultiValue, max_len: usize) -> Lifted {
    let text = text_arg(args, 0, "regex.gsub", max_len)?;
    let re = pattern_arg(cache, args, "regex.gsub")?;
    let limit = match args.get(3) {
        Some(LuaValue::Integer(n)) if *n >= 0 => *n as usize,
        Some(LuaValue::Number(n)) if *n >= 0.0 => *n as usize,
        None | Some(LuaValue::Nil) => 0,
        Some(_) => {
            return Err(Failure::Message(
                "bad argument #4 to 'regex.gsub' (a count >= 0 expected)".into(),
            ));
        }
    };
    let replacement = Replacement::from_arg(args, &re)?;
    let mut out = Output {
        buf: Vec::with_capacity(text.len().min(max_len)),
        max: max_len,
    };
    let mut last = 0;
    let mut count = 0usize;
    for caps in re.captures_iter(&text) {
        if limit > 0 && count == limit {
            break;
        }
        let whole = caps.get(0).expect("group 0 always matches");
        out.push(text[last..whole.start()].as_bytes())?;
        match &replacement {
            Replacement::Template(template) => {
                out.fits(template.len(&caps))?;
                template.expand(&caps, &mut out.buf);
            }
            Replacement::Table(t) => {
                let v: LuaValue = t.get(whole.as_str())?;
                push_value(&mut out, v, whole.as_str().as_bytes())?;
            }
            Replacement::Function(f) => {
                let mut call_args = vec![lua_str(lua, Some(whole.as_str()))?];
                for i in 1..caps.len() {
                    call_args.push(lua_str(lua, caps.get(i).map(|m| m.as_str()))?);
                }
                let v: LuaValue = f.call(MultiValue::from_vec(call_args))?;
                push_value(&mut out, v, whole.as_str().as_bytes())?;
            }
        }
        last = whole.end();
        count += 1;
    }
    out.push(text[last..].as_bytes())?;
    let result = lua.create_string(&out.buf)?;
    Ok(MultiValue::from_vec(vec![
        LuaValue::String(result),
        LuaValue::Integer(count as i64),
    ]))
}

/// A table's or function's replacement: text, or nil/false to keep the match.
fn push_value(out: &mut Output, v: LuaValue, whole: &[u8]) -> Result<(), Failure> {
    match v {
        LuaValue::Nil | LuaValue::Boolean(false) => out.push(whole),
        LuaValue::String(s) => out.push(&s.as_bytes()),
        LuaValue::Integer(n) => out.push(n.to_string().as_bytes()),
        LuaValue::Number(n) => out.push(n.to_string().as_bytes()),
        other => Err(Failure::Message(format!(
            "regex.gsub: invalid replacement value (a {})",
            other.type_name()
        ))),
    }
}

/// A replacement string parsed once, so that each expansion's size is known before anything
/// is copied. The syntax is `regex`'s own (`Captures::expand`, ported from
/// `regex_automata::util::interpolate`): `$name` (longest run of `[_0-9A-Za-z]`), `${name}`,
/// `$$` for `$`; a `$` starting no reference is kept; an unknown group expands to nothing.
struct Template(Vec<Piece>);

enum Piece {
    Literal(Vec<u8>),
    Group(usize),
}

impl Template {
    fn literal(text: String) -> Template {
        Template(vec![Piece::Literal(text.into_bytes())])
    }

    fn parse(mut rep: &[u8], re: &Regex) -> Template {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        while let Some(i) = rep.iter().position(|&b| b == b'$') {
            literal.extend_from_slice(&rep[..i]);
            rep = &rep[i..];
            if rep.get(1) == Some(&b'$') {
                literal.push(b'$');
                rep = &rep[2..];
                continue;
            }
            let Some((name, end)) = group_ref(rep) else {
                literal.push(b'$');
                rep = &rep[1..];
                continue;
            };
            rep = &rep[end..];
            let index = match name.parse::<usize>() {
                Ok(i) => Some(i),
                Err(_) => re.capture_names().position(|n| n == Some(name)),
            };
            if let Some(index) = index {
                pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                pieces.push(Piece::Group(index));
            }
        }
        literal.extend_from_slice(rep);
        pieces.push(Piece::Literal(literal));
        Template(pieces)
    }

    /// The length of the expansion for `caps`.
    fn len(&self, caps: &Captures<'_>) -> usize {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Literal(l) => l.len(),
                Piece::Group(i) => caps.get(*i).map_or(0, |m| m.len()),
            })
            .fold(0usize, usize::saturating_add)
    }

    fn expand(&self, caps: &Captures<'_>, dst: &mut Vec<u8>) {
        for p in &self.0 {
            match p {
                Piece::Literal(l) => dst.extend_from_slice(l),
                Piece::Group(i) => {
                    if let Some(m) = caps.get(*i) {
                        dst.extend_from_slice(m.as_str().as_bytes());
                    }
                }
            }
        }
    }
}

/// The group a `$` at the start of `rep` names, and where the reference ends.
fn group_ref(rep: &[u8]) -> Option<(&str, usize)> {
    if rep.len() <= 1 || rep[0] != b'$' {
        return None;
    }
    if rep[1] == b'{' {
        let close = rep[2..].iter().position(|&b| b == b'}')? + 2;
        let name = std::str::from_utf8(&rep[2..close]).ok()?;
        return Some((name, close + 1));
    }
    let end = 1 + rep[1..]
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_')
        .count();
    if end == 1 {
        return None;
    }
    Some((std::str::from_utf8(&rep[1..end]).ok()?, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_like_regex_does() {
        let re = Regex::new(r"(?<first>\w+)\s+(\w+)(x)?").unwrap();
        let caps = re.captures("hello world").unwrap();
        for rep in [
            "$2 $1",
            "${first}!",
            "$first_x",
            "$$1",
            "$",
            "a$",
            "${2}x",
            "$9",
            "$nope-",
            "${unclosed",
            "$ 1",
            "${}",
            "$3",
            "$00",
            "${first}${2}$$$",
            "plain",
            "$99999999999999999999999",
        ] {
            let template = Template::parse(rep.as_bytes(), &re);
            let mut ours = Vec::new();
            template.expand(&caps, &mut ours);
            let mut theirs = String::new();
            caps.expand(rep, &mut theirs);
            assert_eq!(String::from_utf8_lossy(&ours), theirs, "{rep}");
            assert_eq!(template.len(&caps), theirs.len(), "{rep}");
        }
    }
}
