//! `kosmo-lua`: the Lua 5.4 surface (mlua) over [`kosmo_runtime`]: a restricted state in which
//! scripts call the Klaviyo functions as `app.integrations.klaviyo.<name>(args)`.
//!
//! - `sandbox`: which libraries exist, text-only `load`, the CPU hook, Lua-side helpers;
//! - `limits`: memory, CPU time and output caps, and the caps on every copy the host makes of
//!   script values ([`Limits`]);
//! - `values`: Lua <-> JSON and `dump`'s readable form;
//! - `globals`, `regex` and `clock`: `print`, `dump`, `log`, `json`, `docs`, `lua_read_doc`,
//!   `regex`, `time`;
//! - `proxy`: the read-only `app` tables;
//! - `location`: where an error happened (`line`, `source`, `traceback`);
//! - `repl`: the REPL's rewrite of top-level `local`s; `show`: results in `dump`'s form;
//! - `mcp` and `mcp_docs`: `app.mcp`, `mcp.*` and the `mcp` docs topics, over the embedder's
//!   [`ToolServers`] (no MCP library here).
//!
//! Accounts, permissions and call records are [`kosmo_runtime::Host`]'s: a session wraps one.
//!
//! ```no_run
//! # async fn demo() -> Result<(), String> {
//! use std::sync::Arc;
//! use kosmo_lua::{Limits, Session};
//! use kosmo_runtime::{Account, AccountConfig, ApiKey, Host, HostOptions, Policy};
//! let account = Account::new("default", ApiKey::new("pk_..."), "https://a.klaviyo.com")?;
//! let host = Host::new(vec![AccountConfig { account, policy: Policy::default() }], HostOptions::default());
//! let session = Session::new(Arc::new(host), Limits::default())?;
//! let outcome = session.eval("return #app.integrations.klaviyo.list_lists({}).items", "=eval").await;
//! println!("{:?} {:?}", outcome.result, outcome.error);
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod clock;
mod globals;
mod limits;
mod location;
mod mcp;
mod mcp_docs;
mod proxy;
mod regex;
mod repl;
mod sandbox;
mod show;
mod values;

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, Table, Value as LuaValue};
use serde_json::{Value, json};

use kosmo_runtime::{CallRecord, ErrorCode, Host};
pub use limits::{ARGUMENT_BYTES, Limits, RESULT_BYTES, TEXT_BYTES, VALUE_OVERHEAD};
pub use mcp::{BoxFuture, ToolServers};
pub use show::{SHOW_BYTES, show};
pub use values::{ConvertError, SORT_BYTES, dump, from_json, to_json, to_json_lossy};

use globals::{first_line, is_memory_error};
use limits::{Budget, INTERRUPTED_MESSAGE, LimitHit, Output, over_message, show_bytes};
use location::Location;
use proxy::{CallSlot, Calls, MainThread};
use sandbox::Prelude;

/// What one evaluation gave.
#[derive(Clone, Debug)]
pub struct EvalOutcome {
    /// Whether the script ran to its end.
    pub success: bool,
    /// What it printed (capped); empty when [`SessionOptions::live_output`] took it.
    pub output: String,
    /// Why it failed: an error table (`code`, `message`, ...), with where it happened when
    /// that is known: `line`, `source` (the chunk as Lua shows it) and `traceback`.
    pub error: Option<Value>,
    /// The values it returned.
    pub result: Vec<Value>,
    /// Wall-clock time of the evaluation.
    pub duration: Duration,
    /// Bytes the Lua state holds afterwards.
    pub memory_usage: usize,
    /// The Klaviyo calls it made.
    pub calls: Vec<CallRecord>,
    /// The code ended in the middle of a statement (a REPL reads another line).
    pub incomplete: bool,
}

/// Watches a session from another thread: a script stuck inside one long library call (a
/// pathological `string.find`) never reaches the CPU hook, so the embedder must stop it.
#[derive(Clone)]
pub struct Watchdog {
    budget: Arc<Budget>,
    output: Arc<Output>,
}

impl Watchdog {
    /// Whether the running evaluation is past its CPU deadline by more than `grace`.
    pub fn overdue(&self, grace: Duration) -> bool {
        self.budget.overdue(grace)
    }

    /// What the script has printed so far (taken).
    pub fn take_output(&self) -> String {
        self.output.take()
    }
}

/// Stops a session's running evaluation from anywhere (a Ctrl-C handler): see
/// [`Session::interrupter`].
#[derive(Clone)]
pub struct Interrupter {
    budget: Arc<Budget>,
}

impl Interrupter {
    /// Stop the evaluation running now; it ends with the error `interrupted`, which the
    /// script's `pcall` cannot catch. Lua code stops at the CPU hook's next check (every few
    /// thousand instructions); a wait for an `app.*` call is abandoned at once (the call's
    /// request may still reach the service). Made while nothing runs, it is forgotten when
    /// the next evaluation starts.
    pub fn interrupt(&self) {
        self.budget.interrupt();
    }
}

/// Where live text goes ([`SessionOptions::live_output`], [`SessionOptions::live_log`]):
/// called with each piece as it is written, from the thread running the script.
pub type LiveSink = Arc<dyn Fn(&str) + Send + Sync>;

/// What a session exposes besides the globals every session has.
#[derive(Clone)]
pub struct SessionOptions {
    /// `app.integrations.klaviyo` (off for `kosmo mcp:lua`, where `app.integrations` is then
    /// an unknown name).
    pub integrations: bool,
    /// MCP servers for `app.mcp.*`, `mcp.*` and the `mcp` docs topics (none: `app.mcp` and
    /// `mcp` do not exist).
    pub tools: Option<Arc<dyn ToolServers>>,
    /// Where `print` and `dump` write as they run (each call's text, newline included), for a
    /// REPL or a long script to show output as it comes; it is then not kept in
    /// [`EvalOutcome::output`]. The cap ([`Limits::output_bytes`]) counts it all the same.
    pub live_output: Option<LiveSink>,
    /// Where `log(...)` writes (progress, meant for stderr even with `--json`), under its own
    /// count of the same cap. Without one, `log` is `print`.
    pub live_log: Option<LiveSink>,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            integrations: true,
            tools: None,
            live_output: None,
            live_log: None,
        }
    }
}

/// A Lua state with the Klaviyo functions, globals and limits; its globals persist from one
/// evaluation to the next.
pub struct Session {
    lua: Lua,
    prelude: Prelude,
    host: Arc<Host>,
    budget: Arc<Budget>,
    output: Arc<Output>,
    /// Where `log` writes: `output` itself unless the embedder gave `live_log`.
    log: Arc<Output>,
    main: MainThread,
    /// Where the script's Klaviyo functions leave their calls for [`Session::drive`].
    slot: CallSlot,
    limits: Limits,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing the state runs finalizers. Scripts cannot register any (see `sandbox`); should
        // one slip through, it finds the deadline passed (though Lua runs finalizers unhooked).
        self.budget.expire();
    }
}

/// How far past the memory limit host-only work may allocate in the Lua state (mlua's
/// references to the values it reads): enough to read the results of a script that filled
/// its memory. Only host code runs meanwhile: the conversions read tables raw, invoke no
/// metamethod, and scripts have no finalizers a collection could run.
const HOST_SLACK_BYTES: usize = 1024 * 1024;

/// Most bytes of a script's error value (and of its message) shown in the error table.
const ERROR_VALUE_BYTES: usize = 64 * 1024;

impl Session {
    /// A fresh state for `host`'s accounts.
    pub fn new(host: Arc<Host>, limits: Limits) -> Result<Session, String> {
        Session::with_options(host, limits, SessionOptions::default())
    }

    /// A fresh state for `host`'s accounts, exposing what `options` say. MCP tool calls are
    /// recorded wherever the [`ToolServers`] put them: give them `host` (`Host::push_record`)
    /// to have them among [`EvalOutcome::calls`] in call order.
    pub fn with_options(
        host: Arc<Host>,
        limits: Limits,
        options: SessionOptions,
    ) -> Result<Session, String> {
        let budget = Arc::new(Budget::new());
        let output = Arc::new(Output::new(
            limits.output_bytes,
            options.live_output.clone(),
            LimitHit::Output,
        ));
        let log = match &options.live_log {
            Some(live) => Arc::new(Output::new(
                limits.output_bytes,
                Some(live.clone()),
                LimitHit::Log,
            )),
            None => output.clone(),
        };
        let main = MainThread::default();
        let slot = CallSlot::default();
        let setup = || -> mlua::Result<(Lua, Prelude)> {
            let (lua, prelude) = sandbox::new_state(budget.clone())?;
            globals::install(
                &lua,
                &prelude,
                output.clone(),
                log.clone(),
                budget.clone(),
                &limits,
            )?;
            regex::install(&lua, &prelude, limits.text_cap())?;
            clock::install(&lua, &prelude)?;
            proxy::register(&lua, &prelude)?;
            let calls = Calls {
                budget: budget.clone(),
                main: main.clone(),
                argument_bytes: limits.argument_bytes,
                slot: slot.clone(),
            };
            let mut others = Vec::new();
            if let Some(tools) = &options.tools {
                others.push(("mcp", mcp::install(&lua, &prelude, tools.clone(), &calls)?));
            }
            proxy::install(
                &lua,
                &prelude,
                host.clone(),
                &calls,
                options.integrations,
                others,
            )?;
            Ok((lua, prelude))
        };
        let (lua, prelude) = setup()
            .map_err(|e| format!("setting up Lua failed: {}", first_line(&e.to_string())))?;
        if lua.used_memory() >= limits.memory_bytes {
            return Err(format!(
                "the memory limit of {} bytes is too small: Lua itself needs {} bytes",
                limits.memory_bytes,
                lua.used_memory()
            ));
        }
        lua.set_memory_limit(limits.memory_bytes)
            .map_err(|e| e.to_string())?;
        budget.expire();
        Ok(Session {
            lua,
            prelude,
            host,
            budget,
            output,
            log,
            main,
            slot,
            limits,
        })
    }

    /// The Klaviyo host (accounts, records, `--force`).
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// A handle for a watchdog thread.
    pub fn watchdog(&self) -> Watchdog {
        Watchdog {
            budget: self.budget.clone(),
            output: self.output.clone(),
        }
    }

    /// A handle that stops the running evaluation (Ctrl-C): see [`Interrupter::interrupt`].
    /// The session and its globals stay usable after an interrupt.
    pub fn interrupter(&self) -> Interrupter {
        Interrupter {
            budget: self.budget.clone(),
        }
    }

    /// The limits evaluations run with.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Run a chunk of Lua. `chunk_name` follows Lua's convention: `=eval` shows as `eval`,
    /// `@path` as the path.
    pub async fn eval(&self, code: &str, chunk_name: &str) -> EvalOutcome {
        self.begin();
        let started = Instant::now();
        let outcome = match self.compile(code, chunk_name) {
            Ok(f) => self.run(f).await,
            Err((error, incomplete)) => Run {
                error: Some(error),
                incomplete,
                ..Run::default()
            },
        };
        self.finish(outcome, started)
    }

    /// Run a REPL line: as an expression when it is one (so `x` shows x), else as statements.
    ///
    /// As statements, the line's top-level `local` declarations become globals (`local x = 1`
    /// is run as `x = 1`, `local function f` as `function f`, `local x` as `x = nil`;
    /// attributes such as `<const>` are dropped): each line is its own chunk, so a local
    /// would be gone by the next line. Locals inside functions and blocks stay locals, and
    /// [`Session::eval`] never rewrites anything.
    pub async fn eval_interactive(&self, code: &str) -> EvalOutcome {
        match self.compile(&format!("return {code};"), "=stdin") {
            Ok(f) => {
                self.begin();
                let started = Instant::now();
                let run = self.run(f).await;
                self.finish(run, started)
            }
            Err(_) => self.eval(&repl::globalize_locals(code), "=stdin").await,
        }
    }

    fn begin(&self) {
        self.output.reset();
        self.log.reset();
        location::forget_callers(&self.lua);
        self.slot.clear();
        self.host.take_records();
        self.budget.arm(self.limits.cpu);
    }

    fn compile(&self, code: &str, chunk_name: &str) -> Result<Function, (Value, bool)> {
        // `#!` lines make scripts executable; Lua's loader skips them for files only.
        let code = match code.strip_prefix("#!") {
            Some(rest) => format!("--{rest}"),
            None => code.to_string(),
        };
        self.lua
            .load(code)
            .set_name(chunk_name)
            .set_mode(ChunkMode::Text)
            .into_function()
            .map_err(|e| match e {
                mlua::Error::SyntaxError {
                    message,
                    incomplete_input,
                } => (
                    error_json(ErrorCode::SyntaxError, first_line(&message)),
                    incomplete_input,
                ),
                mlua::Error::MemoryError(_) => (self.memory_error(), false),
                other => (
                    error_json(ErrorCode::SyntaxError, first_line(&other.to_string())),
                    false,
                ),
            })
    }

    async fn run(&self, script: Function) -> Run {
        let started = async {
            let thread = self.lua.create_thread(self.prelude.runner.clone())?;
            self.main.set(thread.to_pointer() as usize);
            thread.into_async::<Table>(script)
        };
        let future = match started.await {
            Ok(f) => f,
            Err(e) => {
                return Run {
                    error: Some(self.rust_error(&e)),
                    ..Run::default()
                };
            }
        };
        // An interrupt ends a wait for the host at once (dropping the thread abandons the
        // call); running Lua code it stops through the hook (`Budget::check`).
        let raced = tokio::select! {
            biased;
            done = tokio::time::timeout(self.limits.wall, self.drive(future)) => Some(done),
            () = self.budget.interrupted() => None,
        };
        let Some(done) = raced else {
            self.budget.set_hit(LimitHit::Interrupted);
            return Run {
                error: Some(self.limit_error(LimitHit::Interrupted)),
                ..Run::default()
            };
        };
        let packed = match done {
            Err(_) => {
                let message = format!(
                    "the script did not finish within its time limit of {} s",
                    self.limits.wall.as_secs_f64()
                );
                return Run {
                    error: Some(error_json(ErrorCode::Timeout, message)),
                    ..Run::default()
                };
            }
            Ok(Err(e)) => {
                return Run {
                    error: Some(self.rust_error(&e)),
                    ..Run::default()
                };
            }
            Ok(Ok(packed)) => packed,
        };
        let n: usize = packed.raw_get("n").unwrap_or(0);
        let ok = packed.raw_get::<bool>(1).unwrap_or(false);
        let values: Vec<LuaValue> = (2..=n)
            .map(|i| packed.raw_get(i).unwrap_or(LuaValue::Nil))
            .collect();
        if !ok {
            let value = values.into_iter().next().unwrap_or(LuaValue::Nil);
            let raised_at = packed
                .raw_get::<Option<Table>>("where")
                .ok()
                .flatten()
                .and_then(|t| Location::from_table(&t));
            let mut error = self.script_error(value);
            location::complete(&mut error, raised_at.as_ref());
            return Run {
                error: Some(error),
                ..Run::default()
            };
        }
        match self.results(&values) {
            Ok(result) => Run {
                success: true,
                result,
                ..Run::default()
            },
            Err(error) => Run {
                error: Some(error),
                ..Run::default()
            },
        }
    }

    /// Runs the script's thread to its end, making the Klaviyo calls it leaves in the slot
    /// (see [`proxy::CallSlot`]) as it yields for them: here, so that a call's future is
    /// part of this one rather than a fresh allocation each time.
    async fn drive<T>(&self, thread: impl Future<Output = mlua::Result<T>>) -> mlua::Result<T> {
        let mut thread = pin!(thread);
        loop {
            let ended = poll_fn(|cx| match thread.as_mut().poll(cx) {
                Poll::Ready(ended) => Poll::Ready(Some(ended)),
                // A Klaviyo function yielded mlua's "pending" mark: no waker is due.
                Poll::Pending if self.slot.requested() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            })
            .await;
            if let Some(ended) = ended {
                return ended;
            }
            let Some(call) = self.slot.take_request() else {
                continue;
            };
            self.budget.pause();
            let target = &call.target;
            let outcome = self
                .host
                .invoke(target.account.as_deref(), &target.name, &call.args)
                .await;
            self.budget.resume();
            self.slot.finish(outcome);
        }
    }

    /// The returned values as JSON, within [`Limits::result_bytes`] all together.
    fn results(&self, values: &[LuaValue]) -> Result<Vec<Value>, Value> {
        let converted = self
            .host_only(|| values::to_json_lossy_all(&self.lua, values, self.limits.result_bytes));
        converted.map_err(|e| match e {
            ConvertError::TooManyKeys(_) => error_json(
                ErrorCode::OutputLimit,
                format!("the script's results cannot be shown: {e}"),
            ),
            ConvertError::TooLarge(max) => error_json(
                ErrorCode::OutputLimit,
                format!(
                    "the script's results would be larger than {} (as JSON, counting {} bytes \
                     per value); return less (summarise, or print the detail)",
                    show_bytes(max),
                    limits::VALUE_OVERHEAD
                ),
            ),
            ConvertError::Lua(e) => self.rust_error(&e),
            ConvertError::Invalid(m) => error_json(ErrorCode::ScriptError, m),
        })
    }

    /// Host-only work on the state (reading values, never calling script code), allowed
    /// [`HOST_SLACK_BYTES`] past the memory limit.
    fn host_only<T>(&self, work: impl FnOnce() -> T) -> T {
        let _ = self
            .lua
            .set_memory_limit(self.limits.memory_bytes.saturating_add(HOST_SLACK_BYTES));
        let result = work();
        let _ = self.lua.set_memory_limit(self.limits.memory_bytes);
        result
    }

    fn finish(&self, run: Run, started: Instant) -> EvalOutcome {
        self.budget.expire();
        self.slot.clear();
        EvalOutcome {
            success: run.success,
            output: self.output.take(),
            error: run.error,
            result: run.result,
            duration: started.elapsed(),
            memory_usage: self.lua.used_memory(),
            calls: self.host.take_records(),
            incomplete: run.incomplete,
        }
    }

    /// The error a script ended with, as an error table.
    fn script_error(&self, value: LuaValue) -> Value {
        if let Some(hit) = self.budget.hit() {
            return self.limit_error(hit);
        }
        match value {
            LuaValue::Table(t) => match sandbox::host_error_code(&self.lua, &t) {
                Some(code) => self.host_error(&t, code),
                None => self.table_error(&t),
            },
            LuaValue::String(s) => {
                // Lua's memory error. Lua 5.4's `lua_error` raises this very string as one
                // (LUA_ERRMEM) whoever raises it, so a script rethrowing a caught one, or
                // writing it, ends the same way.
                if s.as_bytes().as_ref() == b"not enough memory" {
                    return self.memory_error();
                }
                error_json(
                    ErrorCode::ScriptError,
                    truncated(&s.as_bytes(), ERROR_VALUE_BYTES),
                )
            }
            LuaValue::Error(e) => self.rust_error(&e),
            LuaValue::Nil => error_json(ErrorCode::ScriptError, "error called with nil"),
            other => {
                // Numbers, booleans, functions, coroutines, the `app` proxies: none has a
                // metatable a script could set, so `tostring` runs only Lua's and the host's code.
                let shown = self
                    .prelude
                    .tostring
                    .call::<mlua::LuaString>(other)
                    .map(|s| truncated(&s.as_bytes(), ERROR_VALUE_BYTES));
                error_json(
                    ErrorCode::ScriptError,
                    shown.unwrap_or_else(|_| "unprintable error".into()),
                )
            }
        }
    }

    /// An error table the host made (a failed Klaviyo call, an unknown name), raised by the
    /// script as it is or after changing it: the host's code stands, whatever `code` says now.
    fn host_error(&self, t: &Table, code: String) -> Value {
        let shown = self.host_only(|| {
            values::to_json_lossy(&self.lua, &LuaValue::Table(t.clone()), ERROR_VALUE_BYTES)
        });
        let mut m = match shown {
            Ok(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        m.insert("code".into(), json!(code));
        if !m.get("message").is_some_and(Value::is_string) {
            let message = message_field(t).unwrap_or_else(|| code.clone());
            m.insert("message".into(), json!(message));
        }
        Value::Object(m)
    }

    /// A table the script raised: always `script_error` (a script wrote
    /// `error({code = "cpu_limit"})` to pass for the host), with its `message` field or its
    /// `__tostring`, and the table itself as `value`.
    fn table_error(&self, t: &Table) -> Value {
        let message = message_field(t).unwrap_or_else(|| self.tostring_error(t));
        let value = self
            .host_only(|| {
                values::to_json_lossy(&self.lua, &LuaValue::Table(t.clone()), ERROR_VALUE_BYTES)
            })
            .unwrap_or_else(|e| match e {
                ConvertError::TooLarge(max) => {
                    json!(format!("<larger than {}>", show_bytes(max)))
                }
                other => json!(format!("<{other}>")),
            });
        json!({"code": ErrorCode::ScriptError.as_str(), "message": message, "value": value})
    }

    /// A script's error table through its `__tostring`, if it has one. That is script code:
    /// it runs under the script's memory limit and what is left of its CPU time (it once ran
    /// with the limit lifted and took 1.3 GB), and a fixed message stands in if it fails.
    fn tostring_error(&self, t: &Table) -> String {
        let has_tostring = t.metatable().is_some_and(|mt| {
            mt.raw_get::<LuaValue>("__tostring")
                .is_ok_and(|f| !f.is_nil())
        });
        if !has_tostring {
            return "error object is a table (give it a message field)".into();
        }
        match self.prelude.tostring.call::<mlua::LuaString>(t.clone()) {
            Ok(s) => truncated(&s.as_bytes(), ERROR_VALUE_BYTES),
            Err(e) => {
                let why = if self.budget.hit() == Some(LimitHit::Cpu) {
                    ErrorCode::CpuLimit
                } else if is_memory_error(&e) {
                    ErrorCode::MemoryLimit
                } else {
                    ErrorCode::ScriptError
                };
                format!("error object is a table whose __tostring failed ({why})")
            }
        }
    }

    /// An error that came through mlua rather than as a Lua value.
    fn rust_error(&self, e: &mlua::Error) -> Value {
        if let Some(hit) = self.budget.hit() {
            return self.limit_error(hit);
        }
        if is_memory_error(e) {
            return self.memory_error();
        }
        let mut cause = e;
        while let mlua::Error::CallbackError { cause: inner, .. }
        | mlua::Error::WithContext { cause: inner, .. } = cause
        {
            cause = inner;
        }
        error_json(ErrorCode::ScriptError, first_line(&cause.to_string()))
    }

    fn limit_error(&self, hit: LimitHit) -> Value {
        match hit {
            LimitHit::Cpu => error_json(ErrorCode::CpuLimit, self.budget.cpu_message()),
            LimitHit::Output | LimitHit::Log => error_json(
                ErrorCode::OutputLimit,
                over_message(hit, self.limits.output_bytes),
            ),
            LimitHit::Interrupted => error_json(ErrorCode::Interrupted, INTERRUPTED_MESSAGE),
        }
    }

    fn memory_error(&self) -> Value {
        error_json(
            ErrorCode::MemoryLimit,
            format!(
                "the script used more than its memory limit of {} bytes",
                self.limits.memory_bytes
            ),
        )
    }
}

/// A table's `message` field (read raw: no script code runs), as text.
fn message_field(t: &Table) -> Option<String> {
    match t.raw_get::<LuaValue>("message").ok()? {
        LuaValue::String(s) => Some(truncated(&s.as_bytes(), ERROR_VALUE_BYTES)),
        LuaValue::Integer(i) => Some(i.to_string()),
        LuaValue::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// At most `max` bytes of `bytes` as text, saying how long it was when cut.
fn truncated(bytes: &[u8], max: usize) -> String {
    if bytes.len() <= max {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    format!(
        "{}... ({} bytes in all)",
        String::from_utf8_lossy(&bytes[..max]),
        bytes.len()
    )
}

/// An error table's JSON: `code` and `message`.
fn error_json(code: ErrorCode, message: impl Into<String>) -> Value {
    json!({"code": code.as_str(), "message": message.into()})
}

/// The parts of an outcome `run` decides.
#[derive(Default)]
struct Run {
    success: bool,
    error: Option<Value>,
    result: Vec<Value>,
    incomplete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kosmo_runtime::HostOptions;

    fn session() -> Session {
        session_with(Limits::default())
    }

    fn session_with(limits: Limits) -> Session {
        Session::new(
            Arc::new(Host::new(Vec::new(), HostOptions::default())),
            limits,
        )
        .unwrap()
    }

    fn small() -> Limits {
        Limits {
            memory_bytes: 8 << 20,
            cpu: Duration::from_millis(500),
            ..Limits::default()
        }
    }

    fn error_of(outcome: &EvalOutcome) -> &Value {
        assert!(!outcome.success, "{outcome:?}");
        outcome.error.as_ref().unwrap()
    }

    /// Finding 2: Lua runs finalizers with hooks off, so a looping `__gc` outlived every
    /// limit and made dropping the session (or ending the process) hang forever.
    #[tokio::test(flavor = "multi_thread")]
    async fn scripts_cannot_register_finalizers() {
        let s = session_with(small());
        let out = s
            .eval(
                "local k = setmetatable({}, {__gc = function() while true do end end}) return 1",
                "=eval",
            )
            .await;
        let e = error_of(&out);
        assert_eq!(e["code"], ErrorCode::ScriptError.as_str());
        assert!(e["message"].as_str().unwrap().contains("__gc"), "{e}");
        let out = s
            .eval("return pcall(setmetatable, {}, {__gc = false})", "=eval")
            .await;
        assert_eq!(out.result[0], json!(false), "any __gc value is refused");
        // A field added afterwards is never run (Lua 5.4 decides at setmetatable); the
        // allocations below run collections.
        let code = r#"
            local mt = {}
            local t = setmetatable({}, mt)
            mt.__gc = function() ran = true end
            t = nil
            for i = 1, 2e5 do local _ = {i} end
            return ran, getmetatable(""), getmetatable(json.decode("[]")), getmetatable(app)
        "#;
        let out = s.eval(code, "=eval").await;
        assert!(out.success, "{out:?}");
        assert_eq!(
            out.result,
            vec![json!(null), json!(false), json!(false), json!(false)]
        );
        let dropped = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(s);
            let _ = dropped.0.send(());
        });
        dropped
            .1
            .recv_timeout(Duration::from_secs(5))
            .expect("dropping the session finished");
    }

    /// Finding 11: a table raised by the script is the script's error, whatever its `code`;
    /// the host's error tables keep their code even when the script edits them.
    #[tokio::test(flavor = "multi_thread")]
    async fn scripts_cannot_forge_host_error_codes() {
        let s = session();
        let out = s
            .eval("error({code = 'cpu_limit', message = 'stopped'})", "=eval")
            .await;
        assert_eq!(
            error_of(&out),
            &json!({
                "code": ErrorCode::ScriptError.as_str(),
                "message": "stopped",
                "value": {"code": "cpu_limit", "message": "stopped"},
                "line": 1,
                "source": "eval",
                "traceback": "eval:1: in main chunk",
            })
        );
        let out = s
            .eval(
                "error(setmetatable({}, {__tostring = function() return 'shown' end}))",
                "=eval",
            )
            .await;
        assert_eq!(error_of(&out)["message"], "shown");
        let code = r#"
            local ok, e = pcall(function() return app.integrations.klaviyo.list_listz end)
            assert(getmetatable(e) == false, "the host's error metatable is protected")
            assert(not pcall(setmetatable, {}, getmetatable(e)))
            e.code = "cpu_limit"
            error(e)
        "#;
        let out = s.eval(code, "=eval").await;
        let e = error_of(&out);
        assert_eq!(e["code"], ErrorCode::UnknownFunction.as_str(), "{e}");
        assert!(e["message"].as_str().unwrap().contains("list_lists"), "{e}");
    }

    /// Finding 1a: the error's `__tostring` ran with the memory limit lifted (1.3 GB from an
    /// 8 MiB script) and without a CPU deadline.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_error_tostring_runs_under_the_limits() {
        let s = session_with(small());
        let code = r#"error(setmetatable({}, {__tostring = function()
            local t = {} for i = 1, 1024 do t[i] = string.rep("x", 2^20) .. i end return "x"
        end}))"#;
        let out = s.eval(code, "=eval").await;
        let e = error_of(&out);
        assert_eq!(e["code"], ErrorCode::ScriptError.as_str());
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains(ErrorCode::MemoryLimit.as_str()),
            "{e}"
        );
        assert!(
            out.memory_usage <= s.limits().memory_bytes + HOST_SLACK_BYTES,
            "the state grew to {} bytes",
            out.memory_usage
        );
        let started = Instant::now();
        let out = s
            .eval(
                "error(setmetatable({}, {__tostring = function() while true do end end}))",
                "=eval",
            )
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        let message = error_of(&out)["message"].as_str().unwrap().to_string();
        assert!(message.contains(ErrorCode::CpuLimit.as_str()), "{message}");
    }

    /// Finding 11: running out of memory inside `json.encode` is the memory limit.
    #[tokio::test(flavor = "multi_thread")]
    async fn out_of_memory_in_a_host_function_is_the_memory_limit() {
        let s = session_with(small());
        let code = "local s = string.rep('x', 3 * 2^20) return #json.encode({s, s})";
        let out = s.eval(code, "=eval").await;
        assert_eq!(error_of(&out)["code"], ErrorCode::MemoryLimit.as_str());
    }

    /// Finding 1b/1c: every copy the host makes of script values stops at its cap, with an
    /// error naming the function and the cap.
    #[tokio::test(flavor = "multi_thread")]
    async fn host_copies_stop_at_their_caps() {
        let s = session();
        let shared = "local s = string.rep('x', 2^20) local t = {} for i = 1, 200 do t[i] = s end ";
        let cases = [
            (
                "print(table.unpack(t))",
                ErrorCode::OutputLimit,
                "printed more than",
            ),
            ("dump(t)", ErrorCode::OutputLimit, "printed more than"),
            (
                "json.encode(t)",
                ErrorCode::ScriptError,
                "json.encode: the result would be larger than 16 MiB",
            ),
            (
                "return t",
                ErrorCode::OutputLimit,
                "results would be larger than 16 MiB",
            ),
            (
                "return app.integrations.klaviyo.create_profile({email = 'a@example.com', properties = {a = t}})",
                ErrorCode::InvalidArgument,
                "the arguments would be larger than 1 MiB",
            ),
            (
                "regex.gsub(s, '(?s).+', string.rep('$0', 100))",
                ErrorCode::ScriptError,
                "regex.gsub: the result would be larger than 16 MiB",
            ),
            (
                "json.decode('[' .. string.rep('0,', 3e5) .. '0]')",
                ErrorCode::ScriptError,
                "json.decode: the document is too large",
            ),
        ];
        for (code, expected, message) in cases {
            let out = s.eval(&format!("{shared}{code}"), "=eval").await;
            let e = error_of(&out);
            assert_eq!(e["code"], expected.as_str(), "{code}: {e}");
            assert!(
                e["message"].as_str().unwrap().contains(message),
                "{code}: {e}"
            );
        }
        assert!(s.eval("print(('x'):rep(100))", "=eval").await.output.len() == 101);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn globals_persist_and_calls_need_an_account() {
        let s = session();
        assert!(s.eval("x = 41", "=eval").await.success);
        let out = s.eval_interactive("x + 1").await;
        assert_eq!(out.result, vec![json!(42)]);
        let out = s
            .eval("return app.integrations.klaviyo.list_lists({})", "=eval")
            .await;
        assert_eq!(out.error.unwrap()["code"], "not_configured");
        assert_eq!(out.calls.len(), 1);
        let out = s.eval("for i = 1, 2 do", "=eval").await;
        assert!(out.incomplete && !out.success);
    }

    /// `docs.search` gives ranked hits, each with the line it matched. Catches: the snippet
    /// dropped on its way into Lua.
    #[tokio::test(flavor = "multi_thread")]
    async fn docs_search_hits_carry_their_snippet() {
        let s = session();
        let out = s
            .eval(
                "local hits = docs.search('metric name')\n\
                 return #hits, hits[1].topic, hits[1].snippet",
                "=eval",
            )
            .await;
        assert!(out.success, "{:?}", out.error);
        let n = out.result[0].as_i64().unwrap();
        assert!((1..=6).contains(&n), "weak hits are cut: {n}");
        let snippet = out.result[2].as_str().unwrap().to_lowercase();
        assert!(snippet.contains("metric"), "{snippet}");
    }

    /// A session over accounts `default` and `staging` at the emulator (`pk_default`,
    /// `pk_staging`).
    async fn emulated(options: SessionOptions) -> (Session, kosmo_emulator::Emulator) {
        use kosmo_runtime::{Account, AccountConfig, ApiKey, Policy};
        let emulator = kosmo_emulator::Emulator::start().await.unwrap();
        let accounts = ["default", "staging"]
            .into_iter()
            .map(|name| AccountConfig {
                account: Account::new(
                    name,
                    ApiKey::new(format!("pk_{name}")),
                    &emulator.base_url(),
                )
                .unwrap(),
                policy: Policy::default(),
            })
            .collect();
        let host = Arc::new(Host::new(accounts, HostOptions::default()));
        let session = Session::with_options(host, small(), options).unwrap();
        (session, emulator)
    }

    /// Collects what a live sink is handed.
    fn sink() -> (LiveSink, Arc<std::sync::Mutex<String>>) {
        let seen = Arc::new(std::sync::Mutex::new(String::new()));
        let into = seen.clone();
        (
            Arc::new(move |s: &str| into.lock().unwrap().push_str(s)),
            seen,
        )
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn live_output_and_log_go_to_their_sinks_under_the_cap() {
        let (output, printed) = sink();
        let (log, logged) = sink();
        let limits = Limits {
            output_bytes: 1000,
            ..small()
        };
        let host = Arc::new(Host::new(Vec::new(), HostOptions::default()));
        let options = SessionOptions {
            live_output: Some(output),
            live_log: Some(log),
            ..SessionOptions::default()
        };
        let s = Session::with_options(host, limits.clone(), options).unwrap();
        let out = s
            .eval(
                "print('a', 1) log('step', 2) dump({x = 1}) return 'done'",
                "=eval",
            )
            .await;
        assert!(out.success, "{out:?}");
        assert_eq!(out.output, "", "live output is not kept");
        assert_eq!(*printed.lock().unwrap(), "a\t1\n{ x = 1 }\n");
        assert_eq!(*logged.lock().unwrap(), "step\t2\n");
        // Each has its own count of the same cap: 600 + 600 bytes fit, 1200 of either do not.
        let out = s
            .eval(
                "print(('p'):rep(599)) log(('l'):rep(599)) return 1",
                "=eval",
            )
            .await;
        assert!(out.success, "{out:?}");
        for (code, message) in [
            (
                "for i = 1, 1e6 do pcall(log, ('l'):rep(99)) end",
                "logged more than 1000 bytes",
            ),
            (
                "for i = 1, 1e6 do pcall(print, ('p'):rep(99)) end",
                "printed more than 1000 bytes",
            ),
        ] {
            let out = s.eval(code, "=eval").await;
            let e = error_of(&out);
            assert_eq!(e["code"], ErrorCode::OutputLimit.as_str(), "{code}: {e}");
            assert!(
                e["message"].as_str().unwrap().contains(message),
                "{code}: {e}"
            );
        }
        assert!(printed.lock().unwrap().len() < 2 * limits.output_bytes + 40);

        // Without sinks, `log` is `print`, and the watchdog still reads the output.
        let s = session();
        let out = s.eval("print('a') log('b', true)", "=eval").await;
        assert_eq!(out.output, "a\nb\ttrue\n");
        let watchdog = s.watchdog();
        let output = s.output.clone();
        output.push("seen\n").unwrap();
        assert_eq!(watchdog.take_output(), "seen\n");
    }

    /// Interrupts Lua code that loops, from another thread, after `after`.
    fn interrupt_after(s: &Session, after: Duration) {
        let interrupter = s.interrupter();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            interrupter.interrupt();
        });
    }

    fn assert_interrupted(out: &EvalOutcome) {
        let e = error_of(out);
        assert_eq!(e["code"], ErrorCode::Interrupted.as_str(), "{e}");
        assert_eq!(e["message"], "stopped by Ctrl-C", "{e}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_interrupt_stops_the_evaluation_and_keeps_the_session() {
        // A Ctrl-C handler holds the interrupter on another thread while the evaluation (a
        // Send future) runs.
        fn shareable<T: Clone + Send + Sync + 'static>(_: &T) {}
        fn sendable<T: Send>(_: &T) {}
        let s = session_with(Limits {
            cpu: Duration::from_secs(60),
            ..small()
        });
        shareable(&s.interrupter());
        sendable(&s.eval("", "=eval"));
        assert!(s.eval("kept = 41", "=eval").await.success);
        for code in [
            "while true do end",
            // pcall (and xpcall, and coroutines) cannot swallow it.
            "while true do pcall(function() while true do end end) end",
            "while true do xpcall(function() while true do end end, function(e) return e end) end",
            "local co = coroutine.wrap(function() while true do end end) while true do pcall(co) end",
        ] {
            interrupt_after(&s, Duration::from_millis(200));
            let started = Instant::now();
            let out = s.eval(code, "=eval").await;
            assert!(started.elapsed() < Duration::from_secs(10), "{code}");
            assert_interrupted(&out);
        }
        let out = s.eval_interactive("kept + 1").await;
        assert_eq!(out.result, vec![json!(42)], "{out:?}");
        // Made while nothing runs, an interrupt is forgotten at the next start.
        s.interrupter().interrupt();
        let out = s
            .eval(
                "local n = 0 for i = 1, 1e6 do n = n + 1 end return n",
                "=eval",
            )
            .await;
        assert_eq!(out.result, vec![json!(1_000_000)], "{out:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_interrupt_abandons_a_klaviyo_call_at_once() {
        let (s, emulator) = emulated(SessionOptions::default()).await;
        emulator.inject_fault(
            "pk_default",
            kosmo_emulator::Fault::Delay(Duration::from_secs(60)),
        );
        interrupt_after(&s, Duration::from_millis(300));
        let started = Instant::now();
        let code =
            "kept = 1 local ok = pcall(app.integrations.klaviyo.list_lists, {}) return 'swallowed'";
        let out = s.eval(code, "=eval").await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_interrupted(&out);
        let out = s.eval("return kept", "=eval").await;
        assert_eq!(out.result, vec![json!(1)]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn repl_locals_outlive_their_line_but_eval_keeps_lua_rules() {
        let s = session();
        for line in [
            "local x = 1",
            "local function f(n) local y = n * 2 return y end",
            "local a, b <const> = 'a', 'b'",
            "local unset",
        ] {
            let out = s.eval_interactive(line).await;
            assert!(out.success, "{line}: {out:?}");
        }
        let out = s.eval_interactive("x, f(20), a .. b, unset, y").await;
        assert_eq!(
            out.result,
            vec![json!(1), json!(40), json!("ab"), json!(null), json!(null)]
        );
        assert!(s.eval_interactive("local function g()").await.incomplete);
        assert!(s.eval("local z = 1", "=eval").await.success);
        assert_eq!(s.eval("return z", "=eval").await.result, vec![json!(null)]);
    }

    /// A Klaviyo function yields to the evaluation, which makes the call: through `pcall`,
    /// with `:`, and each leaves its record. Where it cannot yield it is refused: from a
    /// coroutine (`unsupported`), and inside a call from C (a `table.sort` comparator) with
    /// Lua's own error, unless the host refuses the call at once (bad arguments).
    #[tokio::test(flavor = "multi_thread")]
    async fn klaviyo_calls_yield_to_the_evaluation_where_they_can() {
        let (s, _emulator) = emulated(SessionOptions::default()).await;
        let code = "local k = app.integrations.klaviyo\n\
                    local ok, got = pcall(k.list_lists, {})\n\
                    assert(ok and got.items, tostring(got))\n\
                    assert(k:list_lists({}).items and k.staging.list_lists({}).items)\n\
                    local ok, e = pcall(k.get_profile, {profile_id = '01NOPE'})\n\
                    assert(not ok and e.code == 'not_found' and e.line == 5, tostring(e))\n\
                    local _, e = coroutine.wrap(function() return pcall(k.list_lists, {}) end)()\n\
                    assert(e.code == 'unsupported', tostring(e))\n\
                    local ok, e = pcall(table.sort, {2, 1}, function(a, b) k.list_lists({}) return a < b end)\n\
                    assert(not ok and e:find('attempt to yield across a C%-call boundary'), tostring(e))\n\
                    local ok, e = pcall(table.sort, {2, 1}, function(a, b) k.get_profile(print) return a < b end)\n\
                    assert(not ok and e.code == 'invalid_argument', tostring(e))\n\
                    return 'done'";
        let out = s.eval(code, "=eval").await;
        assert!(out.success, "{:?}", out.error);
        assert_eq!(out.result, vec![json!("done")]);
        let calls: Vec<(&str, &str)> = out
            .calls
            .iter()
            .map(|c| (c.path.as_str(), c.account.as_str()))
            .collect();
        assert_eq!(
            calls,
            [
                ("klaviyo.list_lists", "default"),
                ("klaviyo.list_lists", "default"),
                ("klaviyo.list_lists", "staging"),
                ("klaviyo.get_profile", "default"),
            ]
        );
        // An account that is not configured is refused at once, even where nothing yields.
        let s = session();
        let code = "local ok, e = pcall(table.sort, {2, 1}, function(a, b) \
                    app.integrations.klaviyo.list_lists({}) return a < b end) return e.code";
        let out = s.eval(code, "=eval").await;
        assert_eq!(out.result, vec![json!("not_configured")], "{out:?}");
    }

    /// `app` and `app.integrations` find their names without calling the host; a missing
    /// name, a write, `tostring` and `pairs` behave as on the other proxies.
    #[tokio::test(flavor = "multi_thread")]
    async fn the_top_proxies_stay_read_only_and_name_what_is_missing() {
        let s = session();
        let out = s
            .eval(
                "local _, a = pcall(function() return app.nope end)\n\
                 local _, b = pcall(function() return app.integrations.klavyo end)\n\
                 local ok, c = pcall(function() app.integrations = 1 end)\n\
                 local names = {} for k in pairs(app.integrations) do names[#names + 1] = k end\n\
                 return a.code, a.message, a.line, b.code, b.message, ok, c, tostring(app), names",
                "=eval",
            )
            .await;
        assert!(out.success, "{:?}", out.error);
        assert_eq!(out.result[0], "unknown_name");
        assert_eq!(
            out.result[1],
            "Unknown name: app.nope (known: integrations)"
        );
        assert_eq!(out.result[2], 1);
        assert_eq!(out.result[3], "unknown_name");
        assert_eq!(
            out.result[4],
            "Unknown integration: app.integrations.klavyo. Did you mean `app.integrations.klaviyo`?"
        );
        assert_eq!(out.result[5], false);
        assert!(
            out.result[6]
                .as_str()
                .unwrap()
                .contains("app is read-only (cannot set integrations)"),
            "{:?}",
            out.result[6]
        );
        assert_eq!(out.result[7], "app: integrations");
        assert_eq!(out.result[8], json!(["klaviyo"]));
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn errors_say_where_they_happened() {
        let (s, _emulator) = emulated(SessionOptions::default()).await;
        let code = "local id = '01NOPE'\n\
                    -- the call below fails\n\
                    return app.integrations.klaviyo.get_profile({profile_id = id})";
        let out = s.eval(code, "@fail.lua").await;
        let e = error_of(&out);
        assert_eq!(e["code"], "not_found", "{e}");
        assert_eq!(
            (&e["line"], &e["source"]),
            (&json!(3), &json!("fail.lua")),
            "{e}"
        );
        assert_eq!(e["traceback"], "fail.lua:3: in main chunk", "{e}");
        // Not a tail call: the script's frame is on the stack itself.
        let code = code.replace("return app", "local p = app");
        let e = error_of(&s.eval(&code, "@fail.lua").await).clone();
        assert_eq!(
            (&e["line"], &e["source"]),
            (&json!(3), &json!("fail.lua")),
            "{e}"
        );
        // Caught, the table says it too; raised again elsewhere, it keeps where it happened.
        let code = "local function get()\n\
                      return app.integrations.klaviyo.staging.get_profile({profile_id = '01NOPE'})\n\
                    end\n\
                    local ok, e = pcall(get)\n\
                    assert(e.line == 2 and e.source == 'eval', tostring(e.line))\n\
                    local _, unknown = pcall(function() return app.integrations.klaviyo.get_profle end)\n\
                    assert(unknown.line == 6, tostring(unknown.line))\n\
                    error(e)";
        let out = s.eval(code, "=eval").await;
        let e = error_of(&out);
        assert_eq!(
            (&e["code"], &e["line"]),
            (&json!("not_found"), &json!(2)),
            "{e}"
        );
        assert_eq!(
            e["traceback"], "eval:2: in function <eval:1>\neval:4: in main chunk",
            "{e}"
        );
        // Lua's own errors: `line` and `source` from the message, which stays as it was.
        let out = s.eval("local t\n\nerror('boom')", "@fail.lua").await;
        let e = error_of(&out);
        assert_eq!(e["message"], "fail.lua:3: boom");
        assert_eq!(
            (&e["line"], &e["source"]),
            (&json!(3), &json!("fail.lua")),
            "{e}"
        );
        let out = s.eval("local t\nreturn t.x", "=eval").await;
        let e = error_of(&out);
        assert_eq!(
            (&e["line"], &e["source"]),
            (&json!(2), &json!("eval")),
            "{e}"
        );
        assert_eq!(e["traceback"], "eval:2: in main chunk", "{e}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn unknown_names_say_whether_they_are_functions_or_accounts() {
        let (s, _emulator) = emulated(SessionOptions::default()).await;
        let unknown = |name: &str| {
            format!(
                "local ok, e = pcall(function() return app.integrations.klaviyo.{name} end) return e.code, e.message"
            )
        };
        let out = s.eval(&unknown("prod"), "=eval").await;
        assert_eq!(out.result[0], "unknown_name");
        let message = out.result[1].as_str().unwrap();
        assert!(
            message.starts_with(
                "`klaviyo.prod` is neither a function nor a configured account. Accounts: default, \
                 staging (add one with `kosmo integrations:configure klaviyo --account prod`). \
                 Functions: create_profile, get_profile,"
            ),
            "{message}"
        );
        assert!(!message.contains("Did you mean"), "{message}");
        let out = s.eval(&unknown("stagin"), "=eval").await;
        assert_eq!(out.result[0], "unknown_name");
        let message = out.result[1].as_str().unwrap();
        assert!(
            message.contains("is neither a function nor a configured account")
                && message.ends_with(". Did you mean `app.integrations.klaviyo.staging`?"),
            "{message}"
        );
        let out = s.eval(&unknown("get_profle"), "=eval").await;
        assert_eq!(
            out.result,
            vec![
                json!("unknown_function"),
                json!(
                    "Unknown function: app.integrations.klaviyo.get_profle. Did you mean `app.integrations.klaviyo.get_profile`?"
                )
            ]
        );
        // Under an account there are only functions; a huge name is shown cut.
        let out = s.eval(&unknown("staging.nope"), "=eval").await;
        assert_eq!(out.result[0], "unknown_function");
        let out = s
            .eval(&unknown("staging[string.rep('x', 1e6)]"), "=eval")
            .await;
        let message = out.result[1].as_str().unwrap();
        assert!(
            message.contains(&format!("staging.{}...", "x".repeat(64))) && message.len() < 1000,
            "{message}"
        );
    }
}
