//! The restricted Lua state: which libraries exist, what is removed from the base library,
//! a text-only `load`, the CPU hook, and the Lua-side helpers the host needs.
//!
//! Only `table`, `string`, `math`, `utf8` and `coroutine` are loaded: no `io`, `os`,
//! `package` or `debug`. From the base library, `dofile`, `loadfile`, `require`,
//! `collectgarbage` and `warn` are removed, `string.dump` too, and `load` only compiles text
//! (crafted bytecode can crash the VM).
//!
//! Scripts cannot register finalizers: Lua runs `__gc` with hooks disabled, so a looping one
//! escaped the CPU limit and kept the process alive forever (at exit, at the end of a REPL,
//! or whenever an embedder dropped the session). `setmetatable` refuses a metatable with a
//! `__gc` field, which closes the only door: Lua 5.4 marks an object for finalization only
//! when `setmetatable` gives it a metatable that has `__gc` at that moment (a field added
//! later is never run), `debug.setmetatable` is absent, and every metatable the host sets
//! (the string metatable, mlua's array marker and userdata metatables, the error tables')
//! is protected by `__metatable`, so scripts can neither reach nor change it.

use std::sync::Arc;

use mlua::{Function, HookTriggers, Lua, LuaOptions, StdLib, Table, Value as LuaValue, VmState};

use crate::limits::Budget;
use crate::location::locate;

/// How often (in VM instructions) the hook checks the CPU deadline.
const HOOK_EVERY: u32 = 4096;

/// Runs with the untouched base library, before any script, and keeps what the host needs in
/// upvalues no script can reach.
const PRELUDE: &str = r#"
local G, limit_hit, locate = ...
local raw_pcall, raw_xpcall, raw_error, raw_load = pcall, xpcall, error, load
local type, getmetatable, raw_setmetatable, rawget = type, getmetatable, setmetatable, rawget
local pack, unpack = table.pack, table.unpack
local co_resume, co_yield, isyieldable = coroutine.resume, coroutine.yield, coroutine.isyieldable

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

-- No finalizers (see the module's documentation): `rawget` because Lua reads `__gc` raw.
G.setmetatable = function(t, mt)
  if type(mt) == "table" and rawget(mt, "__gc") ~= nil then
    raw_error("setmetatable: metatables with __gc are not allowed (scripts cannot register finalizers)", 2)
  end
  return raw_setmetatable(t, mt)
end

-- Host functions written in Rust return `true, ...` or `false, message`: raise the message
-- from the caller's line, as Lua's own functions do.
local function lift(f)
  return function(...)
    local r = pack(f(...))
    if r[1] then return unpack(r, 2, r.n) end
    raw_error(r[2], 2)
  end
end

-- The Klaviyo functions: `__index` remembers where the script looks one up.
local app_functions = raw_setmetatable({}, {__mode = "k", __metatable = false})

-- A Klaviyo function (`target`: its account and name, as `start` knows them); errors are
-- raised as the error table itself. `start` checks the call and leaves it for the host,
-- giving `pending`; yielding that to the evaluation has the host make it, and `finish`
-- gives its outcome. A call refused at once gives its outcome from `start` (`true, result`
-- or `false, error table`). Every call runs this: `b` is tested before `type` is called.
local function make_call(start, finish, pending, target)
  local function call(a, b)
    if b ~= nil and type(a) == "userdata" then a = b end -- called with `:`
    local ok, r = start(target, a, isyieldable())
    if ok == pending then
      co_yield(pending)
      ok, r = finish()
    end
    if ok then return r end
    raw_error(r, 2)
  end
  app_functions[call] = true
  return call
end

-- A function bound to an async host function `invoke` (an MCP tool); errors are raised as
-- the error table itself. `invoke` gives exactly two values (no table to pack them in).
local function make_fn(invoke, account, name)
  return function(a, b)
    if type(a) == "userdata" and b ~= nil then a = b end -- called with `:`
    local ok, r = invoke(account, name, a)
    if ok then return r end
    raw_error(r, 2)
  end
end

-- What each app proxy holds (proxy -> its entries), for `__index` to find a name without
-- calling the host; only a missing name goes to `lookup`, for its error.
local node_entries = raw_setmetatable({}, {__mode = "k", __metatable = false})

-- `__index` of the app proxies: lookups that fail raise an error table. `remember` keeps
-- where the script is when it looks up a Klaviyo function (see
-- `location::remember_caller`; `lookup` does it for the other functions).
local function make_index(lookup, remember)
  return function(self, key)
    local entries = node_entries[self]
    if entries ~= nil then
      local v = entries[key]
      if v ~= nil then
        if app_functions[v] then remember(v) end
        return v
      end
    end
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

-- Protected: a script that could read it could dress its own tables as the host's errors.
local error_mt = {
  __tostring = function(e) return tostring(e.code) .. ": " .. tostring(e.message) end,
  __name = "kosmo.error",
  __metatable = false,
}

-- The error tables the host made, with the code it gave each: a script's table raised as an
-- error is the script's error whatever its `code` field says.
local host_errors = raw_setmetatable({}, {__mode = "k", __metatable = false})

-- Runs a script, keeping its error value as it is (tables stay tables), and where it was
-- raised (`where`: line, source, traceback), read while the stack is still there. `locate`
-- runs protected: should it fail (no memory left), the error itself must still come through.
local where
local function keep(e)
  local ok, w = raw_pcall(locate)
  where = ok and w or nil
  return e
end
local function runner(script, ...)
  where = nil
  local r = pack(raw_xpcall(script, keep, ...))
  r.where, where = where, nil
  return r
end

return {
  runner = runner, lift = lift, make_call = make_call, make_fn = make_fn, make_index = make_index,
  make_newindex = make_newindex, node_entries = node_entries, error_mt = error_mt,
  host_errors = host_errors, tostring = tostring, next = next,
}
"#;

/// The host's handles into the state, made by [`PRELUDE`].
#[derive(Clone)]
pub(crate) struct Prelude {
    /// `runner(script, ...) -> table.pack(xpcall(script, ...))`, plus `where` (a
    /// [`crate::location::Location`] table) when the script failed.
    pub runner: Function,
    /// `lift(f)`: wrap a `(ok, ...)`-returning Rust function into one that raises.
    pub lift: Function,
    /// `make_call(start, finish, pending, target)`: a Klaviyo function.
    pub make_call: Function,
    /// `make_fn(invoke, account, name)`: an MCP tool.
    pub make_fn: Function,
    /// `make_index(lookup, remember)`.
    pub make_index: Function,
    /// `make_newindex(describe)`.
    pub make_newindex: Function,
    /// Weak-keyed: each app proxy -> the table of what it holds.
    pub node_entries: Table,
    /// Metatable of error tables (`__tostring` gives `code: message`).
    pub error_mt: Table,
    /// Weak-keyed: each error table the host made -> the code it gave it.
    pub host_errors: Table,
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
    let locate =
        lua.create_function(|lua, ()| locate(lua).map(|at| at.to_table(lua)).transpose())?;
    let handles: Table =
        lua.load(PRELUDE)
            .set_name("=kosmo")
            .call((lua.globals(), limit_hit, locate))?;
    let prelude = Prelude {
        runner: handles.get("runner")?,
        lift: handles.get("lift")?,
        make_call: handles.get("make_call")?,
        make_fn: handles.get("make_fn")?,
        make_index: handles.get("make_index")?,
        make_newindex: handles.get("make_newindex")?,
        node_entries: handles.get("node_entries")?,
        error_mt: handles.get("error_mt")?,
        host_errors: handles.get("host_errors")?,
        tostring: handles.get("tostring")?,
        next: handles.get("next")?,
    };
    lua.set_named_registry_value(REGISTRY_ERROR_MT, prelude.error_mt.clone())?;
    lua.set_named_registry_value(REGISTRY_HOST_ERRORS, prelude.host_errors.clone())?;
    Ok((lua, prelude))
}

/// Where [`Prelude::error_mt`] and [`Prelude::host_errors`] are kept for host code that has no
/// [`Prelude`] at hand (the `app` proxies' `__index`).
const REGISTRY_ERROR_MT: &str = "kosmo.error_mt";
const REGISTRY_HOST_ERRORS: &str = "kosmo.host_errors";

/// A host error table (`code`, `message`, ...): protected `__tostring` metatable, and
/// recorded as the host's so that its code is believed when the script ends with it. Made
/// while the host function the script called runs, so it also says where the script was
/// (`line`, `source`, `traceback`: see [`crate::location`]).
pub(crate) fn error_table(lua: &Lua, error: &serde_json::Value) -> mlua::Result<Table> {
    let table = match crate::values::from_json(lua, error)? {
        LuaValue::Table(t) => t,
        _ => lua.create_table()?,
    };
    if let Some(at) = locate(lua) {
        at.add_to_table(&table)?;
    }
    table.set_metatable(Some(lua.named_registry_value::<Table>(REGISTRY_ERROR_MT)?))?;
    let code = error
        .get("code")
        .and_then(|c| c.as_str())
        .unwrap_or_default();
    lua.named_registry_value::<Table>(REGISTRY_HOST_ERRORS)?
        .raw_set(table.clone(), code)?;
    Ok(table)
}

/// The code the host gave `table`, if the host made it.
pub(crate) fn host_error_code(lua: &Lua, table: &Table) -> Option<String> {
    let errors: Table = lua.named_registry_value(REGISTRY_HOST_ERRORS).ok()?;
    errors
        .raw_get::<Option<String>>(table.clone())
        .ok()
        .flatten()
}
