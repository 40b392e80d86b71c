//! Where an error happened: the script's line, its chunk and a short traceback, for the error
//! tables the host raises (read from the stack while the host function runs, since Lua adds
//! a position only to string errors) and for whatever error ends an evaluation.
//!
//! Only the script's frames count: C functions and the host's own Lua glue (chunks named
//! `=kosmo...`, and mlua's `=__mlua_async_poll` wrapper of async functions) are skipped, so
//! `line` is the line of the script that made the call.

use mlua::{Lua, Table, Value as LuaValue};
use serde_json::{Map, Value, json};

/// Most frames a traceback shows (the innermost ones), like `fail.lua:3: in main chunk`.
const FRAMES: usize = 8;

/// Most stack levels looked at: the host's frames between the script's are few, and a deep
/// recursion must not make every error walk all of it.
const LEVELS: usize = 64;

/// Most bytes of a function name shown in a traceback line.
const NAME_BYTES: usize = 64;

/// Lua's `LUA_IDSIZE`: a `short_src` (the chunk as Lua shows it) is shorter than this.
const SOURCE_BYTES: usize = 60;

/// Where the script was.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Location {
    /// The line of the innermost script frame, when Lua knows it.
    pub line: Option<usize>,
    /// Its chunk as Lua shows it (`fail.lua` for `@fail.lua`, `eval` for `=eval`).
    pub source: String,
    /// At most [`FRAMES`] lines, innermost first, `...` when more were left out.
    pub traceback: String,
}

#[derive(Clone)]
struct Frame {
    source: String,
    line: Option<usize>,
    what: String,
}

/// A stack level as [`locate`] sees it.
enum Level {
    /// One of the script's frames; `tail` when it was tail-called (the frame that called it
    /// is gone).
    Script { frame: Frame, tail: bool },
    /// A host frame that was tail-called (`return app.integrations.klaviyo.f(x)`): it took
    /// the place of the script's frame, which only [`remember_caller`] kept.
    HostTail { function: usize },
    /// Another host frame.
    Host,
}

/// Where the script was when it last looked up an `app` function: a script writing
/// `return app.integrations.klaviyo.get_profile(x)` tail-calls the host's Lua wrapper, and
/// Lua drops the script's frame for it, so the line of the call is known only from the
/// lookup just before (kept per Lua state, and forgotten when an evaluation starts).
struct LookedUp {
    /// The function looked up (`Function::to_pointer`).
    function: usize,
    frame: Frame,
}

/// Whether a chunk is the host's: its frames are not the script's.
fn is_host_chunk(source: Option<&str>) -> bool {
    source.is_some_and(|s| s.starts_with("=kosmo") || s.starts_with("=__mlua"))
}

/// How Lua 5.4's traceback names a frame (`main chunk`, `local 'f'`, `function <x.lua:3>`).
fn describe(
    what: &str,
    name: Option<&str>,
    name_what: Option<&str>,
    src: &str,
    defined: Option<usize>,
) -> String {
    let mut out = String::new();
    describe_into(&mut out, what, name, name_what, src, defined);
    out
}

/// [`describe`], written over `out` (whose allocation is reused).
fn describe_into(
    out: &mut String,
    what: &str,
    name: Option<&str>,
    name_what: Option<&str>,
    src: &str,
    defined: Option<usize>,
) {
    use std::fmt::Write;
    fn cut(n: &str) -> &str {
        let mut end = n.len().min(NAME_BYTES);
        while !n.is_char_boundary(end) {
            end -= 1;
        }
        &n[..end]
    }
    out.clear();
    let _ = match (name, name_what) {
        (Some(name), Some("global") | None) => write!(out, "function '{}'", cut(name)),
        (Some(name), Some(kind)) if !kind.is_empty() => write!(out, "{kind} '{}'", cut(name)),
        _ if what == "main" => write!(out, "main chunk"),
        _ => write!(out, "function <{src}:{}>", defined.unwrap_or(0)),
    };
}

/// The stack level `level` of the running thread, `None` past its bottom.
fn level(lua: &Lua, level: usize) -> Option<Level> {
    lua.inspect_stack(level, |debug| {
        let source = debug.source();
        if source.what == "C" || is_host_chunk(source.source.as_deref()) {
            if debug.is_tail_call() {
                return Level::HostTail {
                    function: debug.function().to_pointer() as usize,
                };
            }
            return Level::Host;
        }
        let src = source.short_src.as_deref().unwrap_or("?").to_string();
        let names = debug.names();
        let what = describe(
            source.what,
            names.name.as_deref(),
            names.name_what,
            &src,
            source.line_defined,
        );
        Level::Script {
            frame: Frame {
                source: src,
                line: debug.current_line(),
                what,
            },
            tail: debug.is_tail_call(),
        }
    })
}

/// Keep where the script is as the place `function` (an `app` function it is looking up)
/// will be called from, should it be tail-called (see [`LookedUp`]). Called by the `app`
/// proxies' `__index` (a host Lua closure) through a host function: those two frames are
/// skipped unread. This runs on every call a script makes, so the last place is updated in
/// place (a loop looks its functions up from the same frame every time: no allocation).
pub(crate) fn remember_caller(lua: &Lua, function: &mlua::Function) {
    let function = function.to_pointer() as usize;
    for l in 2..LEVELS {
        let found = lua.inspect_stack(l, |debug| {
            let source = debug.source();
            if source.what == "C" || is_host_chunk(source.source.as_deref()) {
                return false;
            }
            let src = source.short_src.as_deref().unwrap_or("?");
            let names = debug.names();
            let line = debug.current_line();
            let (name, name_what) = (names.name.as_deref(), names.name_what);
            let (what, defined) = (source.what, source.line_defined);
            if let Some(mut kept) = lua.app_data_mut::<LookedUp>() {
                kept.function = function;
                kept.frame.line = line;
                kept.frame.source.clear();
                kept.frame.source.push_str(src);
                describe_into(&mut kept.frame.what, what, name, name_what, src, defined);
                return true;
            }
            lua.set_app_data(LookedUp {
                function,
                frame: Frame {
                    source: src.to_string(),
                    line,
                    what: describe(what, name, name_what, src, defined),
                },
            });
            true
        });
        match found {
            Some(true) | None => return,
            Some(false) => {}
        }
    }
}

/// Forget where `app` functions were looked up (an evaluation starts).
pub(crate) fn forget_callers(lua: &Lua) {
    lua.remove_app_data::<LookedUp>();
}

/// A tail call's mark in a traceback, as Lua writes it.
const TAIL_CALLS: &str = "(...tail calls...)";

/// The script's frames on the running thread's stack, from the innermost, as a [`Location`];
/// `None` when no script frame is on it.
pub(crate) fn locate(lua: &Lua) -> Option<Location> {
    let looked_up = lua
        .app_data_ref::<LookedUp>()
        .map(|l| (l.function, l.frame.clone()));
    let mut first: Option<Frame> = None;
    let mut lines: Vec<String> = Vec::new();
    let mut frames = 0;
    let mut more = false;
    for l in 0..LEVELS {
        let (frame, tail) = match level(lua, l) {
            None => break,
            Some(Level::Host) => continue,
            Some(Level::HostTail { function }) => match &looked_up {
                Some((f, frame)) if *f == function => (frame.clone(), false),
                _ => {
                    if lines.last().map(String::as_str) != Some(TAIL_CALLS) {
                        lines.push(TAIL_CALLS.into());
                    }
                    continue;
                }
            },
            Some(Level::Script { frame, tail }) => (frame, tail),
        };
        if frames == FRAMES {
            more = true;
            break;
        }
        frames += 1;
        lines.push(match frame.line {
            Some(line) => format!("{}:{line}: in {}", frame.source, frame.what),
            None => format!("{}: in {}", frame.source, frame.what),
        });
        if tail {
            lines.push(TAIL_CALLS.into());
        }
        first.get_or_insert(frame);
    }
    let first = first?;
    if more {
        lines.push("...".into());
    }
    Some(Location {
        line: first.line,
        source: first.source,
        traceback: lines.join("\n"),
    })
}

impl Location {
    /// Add `line`, `source` and `traceback` to an error table, each unless it has one.
    pub(crate) fn add_to_table(&self, table: &Table) -> mlua::Result<()> {
        if let Some(line) = self.line
            && table.raw_get::<LuaValue>("line")?.is_nil()
        {
            table.raw_set("line", line)?;
        }
        if table.raw_get::<LuaValue>("source")?.is_nil() {
            table.raw_set("source", self.source.as_str())?;
        }
        if table.raw_get::<LuaValue>("traceback")?.is_nil() {
            table.raw_set("traceback", self.traceback.as_str())?;
        }
        Ok(())
    }

    /// The same for an error's JSON; `line` and `source` go together (from one place).
    pub(crate) fn add_to_json(&self, error: &mut Map<String, Value>) {
        if !error.contains_key("line") && !error.contains_key("source") {
            if let Some(line) = self.line {
                error.insert("line".into(), json!(line));
            }
            error.insert("source".into(), json!(self.source));
        }
        error
            .entry("traceback")
            .or_insert_with(|| json!(self.traceback));
    }

    /// What [`locate`] gave, read back from the table the runner keeps it in.
    pub(crate) fn from_table(table: &Table) -> Option<Location> {
        Some(Location {
            line: table.raw_get::<Option<usize>>("line").ok().flatten(),
            source: table.raw_get::<String>("source").ok()?,
            traceback: table.raw_get::<String>("traceback").ok()?,
        })
    }

    /// As a table (for the runner, which keeps where the script's error was raised).
    pub(crate) fn to_table(&self, lua: &Lua) -> mlua::Result<Table> {
        let table = lua.create_table()?;
        table.raw_set("line", self.line)?;
        table.raw_set("source", self.source.as_str())?;
        table.raw_set("traceback", self.traceback.as_str())?;
        Ok(table)
    }
}

/// The `chunk:line:` prefix Lua puts on a string error (`fail.lua:3: boom` gives
/// `("fail.lua", 3)`). The chunk is a `short_src`, so at most [`SOURCE_BYTES`] bytes on one
/// line; a colon inside it (`C:\x.lua`, `[string "a:b"]`) is skipped over.
pub(crate) fn message_prefix(message: &str) -> Option<(String, u64)> {
    let head = &message[..message.len().min(SOURCE_BYTES + 24)];
    let head = head.split('\n').next().unwrap_or_default();
    for (i, _) in head.match_indices(':') {
        if i == 0 || i >= SOURCE_BYTES {
            continue;
        }
        let rest = &head[i + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 9 || rest.as_bytes().get(digits) != Some(&b':') {
            continue;
        }
        let line: u64 = rest[..digits].parse().ok()?;
        return (line > 0).then(|| (head[..i].to_string(), line));
    }
    None
}

/// Fill an uncaught error's `line` and `source` from its message's prefix, else from
/// `location` (where the error was raised), and its `traceback` from `location`: each only
/// when the error has none (a host error table has them from where the call was made).
pub(crate) fn complete(error: &mut Value, location: Option<&Location>) {
    let Value::Object(map) = error else {
        return;
    };
    if !map.contains_key("line") && !map.contains_key("source") {
        let parsed = map
            .get("message")
            .and_then(Value::as_str)
            .and_then(message_prefix);
        if let Some((source, line)) = parsed {
            map.insert("line".into(), json!(line));
            map.insert("source".into(), json!(source));
        }
    }
    if let Some(location) = location {
        location.add_to_json(map);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_prefixes_give_chunk_and_line() {
        let cases = [
            ("fail.lua:3: boom", Some(("fail.lua", 3))),
            ("eval:12: attempt to index a nil value", Some(("eval", 12))),
            (r"C:\work\x.lua:7: no", Some((r"C:\work\x.lua", 7))),
            (r#"[string "a:b"]:1: bad"#, Some((r#"[string "a:b"]"#, 1))),
            ("boom", None),
            ("time: 3 o'clock", None),
            (":3: empty chunk", None),
            ("x:0: no line 0", None),
            ("first line\nfail.lua:3: second", None),
        ];
        for (message, expected) in cases {
            let got = message_prefix(message);
            let expected = expected.map(|(s, l)| (s.to_string(), l));
            assert_eq!(got, expected, "{message}");
        }
        let long = format!("{}:3: too long for a chunk", "x".repeat(80));
        assert_eq!(message_prefix(&long), None);
    }

    /// Runs `code` as chunk `name`, with a host function `where_` (behind host glue) that
    /// records where the script called it.
    fn located(code: &str, name: &str) -> Location {
        let lua = Lua::new();
        let found = std::sync::Arc::new(std::sync::Mutex::new(None));
        let slot = found.clone();
        let where_ = lua
            .create_function(move |lua, ()| {
                *slot.lock().unwrap() = locate(lua);
                Ok(())
            })
            .unwrap();
        let glue: mlua::Function = lua
            .load("local f = ... return function() f() return 1 end")
            .set_name("=kosmo")
            .call(where_)
            .unwrap();
        lua.globals().set("glue", glue).unwrap();
        lua.load(code).set_name(name).exec().unwrap();
        found.lock().unwrap().take().expect("a script frame")
    }

    #[test]
    fn tracebacks_keep_the_script_frames_only() {
        let code = "local function inner() glue() return 1 end\n\
                    local function outer() inner() return 1 end\n\
                    outer()";
        let at = located(code, "@fail.lua");
        assert_eq!((at.line, at.source.as_str()), (Some(1), "fail.lua"));
        assert_eq!(
            at.traceback,
            "fail.lua:1: in upvalue 'inner'\nfail.lua:2: in local 'outer'\nfail.lua:3: in main chunk"
        );
        let deep = "local function r(n) if n == 0 then glue() else r(n - 1) end return n end r(50)";
        let at = located(deep, "=eval");
        assert_eq!(at.source, "eval");
        assert_eq!(at.traceback.lines().count(), FRAMES + 1, "{}", at.traceback);
        assert!(at.traceback.ends_with("\n..."), "{}", at.traceback);
    }
}
