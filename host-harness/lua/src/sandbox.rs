//! The restricted Lua state: which libraries exist, what is removed from the base library,
//! a text-only `load`, the CPU hook, and the Lua-side helpers the host needs.
//!
//! Only `table`, `string`, `math`, `utf8` and `coroutine` are loaded: no `io`, `os`,
//! `package` or `debug`. From the base library, `dofile`, `loadfile`, `require`,
//! `collectgarbage` and `warn` are removed, `string.dump` too, and `load` only compiles text
//! (crafted bytecode can crash the VM).

use std::sync::Arc;

use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, VmState};

use crate::limits::Budget;

/// How often (in VM instructions) the hook checks the CPU deadline.
const HOOK_EVERY: u32 = 4096;

/// Runs with the untouched base library, before any script, and keeps what the host needs in
/// upvalues no script can reach.
const PRELUDE: &str = r#"
local G, limit_hit = ...
local raw_pcall, raw_xpcall, raw_error, raw_load = pcall, xpcall, error, load
local type, getmetatable = type, getmetatable
local pack, unpack = table.pack, table.unpack
local co_resume = coroutine.resume

-- A limit (CPU, output) must end the script: a pcall in the script may not swallow it.
local function pass(ok, ...)
  if not ok and limit_hit() then raw_error((...), 0) end
  return ok, ...
end
G.pcall = function(f, ...) return pass(raw_pcall(f, ...)) end
G.xpcall = function(f, handler, ...)
  return pass(raw_xpcall(f, function(e)
    if limit_hit() then return e end
    return handler(e)
  end, ...))
end
coroutine.resume = function(co, ...) return pass(co_resume(co, ...)) end

G.load = function(chunk, name, mode, env)
  if type(chunk) == "string" and chunk:byte(1) == 27 then
    return nil, "binary chunks are not allowed"
  end
  return raw_load(chunk, name, "t", env or G)
end
G.dofile, G.loadfile, G.require, G.collectgarbage, G.warn = nil, nil, nil, nil, nil
string.dump = nil
getmetatable("").__metatable = false

-- Host functions written in Rust return `true, ...` or `false, message`: raise the message
-- from the caller's line, as Lua's own functions do.
local function lift(f)
  return function(...)
    local r = pack(f(...))
    if r[1] then return unpack(r, 2, r.n) end
    raw_error(r[2], 2)
  end
end

-- A Klaviyo function bound to an account; errors are raised as the error table itself.
local function make_fn(invoke, account, name)
  return function(a, b)
    if type(a) == "userdata" and b ~= nil then a = b end -- called with `:`
    local r = pack(invoke(account, name, a))
    if r[1] then return r[2] end
    raw_error(r[2], 2)
  end
end

-- `__index` of the app proxies: lookups that fail raise an error table.
local function make_index(lookup)
  return function(self, key)
    local v, err = lookup(self, key)
    if err ~= nil then raw_error(err, 2) end
    return v
  end
end

local function make_newindex(describe)
  return function(self, key)
    raw_error(describe(self) .. " is read-only (cannot set " .. tostring(key) .. ")", 2)
  end
end

local error_mt = {
  __tostring = function(e) return tostring(e.code) .. ": " .. tostring(e.message) end,
  __name = "kosmo.error",
}

-- Runs a script, keeping its error value as it is (tables stay tables).
local function keep(e) return e end
local function runner(script, ...) return pack(raw_xpcall(script, keep, ...)) end

return {
  runner = runner, lift = lift, make_fn = make_fn, make_index = make_index,
  make_newindex = make_newindex, error_mt = error_mt, tostring = tostring, next = next,
}
"#;

/// The host's handles into the state, made by [`PRELUDE`].
#[derive(Clone)]
pub(crate) struct Prelude {
    /// `runner(script, ...) -> table.pack(xpcall(script, ...))`.
    pub runner: Function,
    /// `lift(f)`: wrap a `(ok, ...)`-returning Rust function into one that raises.
    pub lift: Function,
    /// `make_fn(invoke, account, name)`.
    pub make_fn: Function,
    /// `make_index(lookup)`.
    pub make_index: Function,
    /// `make_newindex(describe)`.
    pub make_newindex: Function,
    /// Metatable of error tables (`__tostring` gives `code: message`).
    pub error_mt: Table,
    /// The original `tostring`.
    pub tostring: Function,
    /// The original `next`.
    pub next: Function,
}

/// A fresh restricted state with the CPU hook installed.
pub(crate) fn new_state(budget: Arc<Budget>) -> mlua::Result<(Lua, Prelude)> {
    let libs = StdLib::TABLE | StdLib::STRING | StdLib::MATH | StdLib::UTF8 | StdLib::COROUTINE;
    let lua = Lua::new_with(libs, LuaOptions::new())?;
    // A global hook reaches every thread, the async ones mlua makes and the script's
    // coroutines alike.
    let hook_budget = budget.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(HOOK_EVERY),
        move |_, _| {
            hook_budget
                .check()
                .map(|()| VmState::Continue)
                .map_err(mlua::Error::runtime)
        },
    )?;
    let limit_hit = lua.create_function(move |_, ()| Ok(budget.hit().is_some()))?;
    let handles: Table = lua
        .load(PRELUDE)
        .set_name("=kosmo")
        .call((lua.globals(), limit_hit))?;
    let prelude = Prelude {
        runner: handles.get("runner")?,
        lift: handles.get("lift")?,
        make_fn: handles.get("make_fn")?,
        make_index: handles.get("make_index")?,
        make_newindex: handles.get("make_newindex")?,
        error_mt: handles.get("error_mt")?,
        tostring: handles.get("tostring")?,
        next: handles.get("next")?,
    };
    Ok((lua, prelude))
}
