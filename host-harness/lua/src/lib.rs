//! `kosmo-lua`: the Lua 5.4 surface (mlua) over [`kosmo_runtime`]: a restricted state in which
//! scripts call the Klaviyo functions as `app.integrations.klaviyo.<name>(args)`.
//!
//! - `sandbox`: which libraries exist, text-only `load`, the CPU hook, Lua-side helpers;
//! - `limits`: memory, CPU time and output caps ([`Limits`]);
//! - `values`: Lua <-> JSON and `dump`'s readable form;
//! - `globals` and `regex`: `print`, `dump`, `json`, `docs`, `lua_read_doc`, `regex`;
//! - `proxy`: the read-only `app` tables.
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

mod globals;
mod limits;
mod proxy;
mod regex;
mod sandbox;
mod values;

use std::sync::Arc;
use std::time::{Duration, Instant};

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, Table, Value as LuaValue};
use serde_json::{Value, json};

use kosmo_runtime::{CallRecord, ErrorCode, Host};
pub use limits::Limits;
pub use values::{dump, from_json, to_json, to_json_lossy};

use globals::first_line;
use limits::{Budget, LimitHit, Output};
use proxy::MainThread;
use sandbox::Prelude;

/// What one evaluation gave.
#[derive(Clone, Debug)]
pub struct EvalOutcome {
    /// Whether the script ran to its end.
    pub success: bool,
    /// What it printed (capped).
    pub output: String,
    /// Why it failed: an error table (`code`, `message`, ...).
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

/// A Lua state with the Klaviyo functions, globals and limits; its globals persist from one
/// evaluation to the next.
pub struct Session {
    lua: Lua,
    prelude: Prelude,
    host: Arc<Host>,
    budget: Arc<Budget>,
    output: Arc<Output>,
    main: MainThread,
    limits: Limits,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing the state runs finalizers: a looping one must stop.
        self.budget.expire();
    }
}

impl Session {
    /// A fresh state for `host`'s accounts.
    pub fn new(host: Arc<Host>, limits: Limits) -> Result<Session, String> {
        let budget = Arc::new(Budget::new());
        let output = Arc::new(Output::new(limits.output_bytes));
        let main = MainThread::default();
        let setup = || -> mlua::Result<(Lua, Prelude)> {
            let (lua, prelude) = sandbox::new_state(budget.clone())?;
            globals::install(&lua, &prelude, output.clone(), budget.clone())?;
            regex::install(&lua, &prelude, limits.memory_bytes)?;
            proxy::install(&lua, &prelude, host.clone(), budget.clone(), main.clone())?;
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
            main,
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
    pub async fn eval_interactive(&self, code: &str) -> EvalOutcome {
        match self.compile(&format!("return {code};"), "=stdin") {
            Ok(f) => {
                self.begin();
                let started = Instant::now();
                let run = self.run(f).await;
                self.finish(run, started)
            }
            Err(_) => self.eval(code, "=stdin").await,
        }
    }

    fn begin(&self) {
        self.output.take();
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
        let packed = match tokio::time::timeout(self.limits.wall, future).await {
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
        // Reading the results may allocate; the script's limit no longer applies.
        let _ = self.lua.set_memory_limit(0);
        let n: usize = packed.raw_get("n").unwrap_or(0);
        let ok = packed.raw_get::<bool>(1).unwrap_or(false);
        let values: Vec<LuaValue> = (2..=n)
            .map(|i| packed.raw_get(i).unwrap_or(LuaValue::Nil))
            .collect();
        let run = if ok {
            Run {
                success: true,
                result: values
                    .iter()
                    .map(|v| values::to_json_lossy(&self.lua, v))
                    .collect(),
                ..Run::default()
            }
        } else {
            let error = self.script_error(values.into_iter().next().unwrap_or(LuaValue::Nil));
            Run {
                error: Some(error),
                ..Run::default()
            }
        };
        let _ = self.lua.set_memory_limit(self.limits.memory_bytes);
        run
    }

    fn finish(&self, run: Run, started: Instant) -> EvalOutcome {
        self.budget.expire();
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
            LuaValue::Table(t) => {
                let shown: Option<String> = self
                    .prelude
                    .tostring
                    .call::<mlua::LuaString>(t.clone())
                    .ok()
                    .map(|s| s.to_string_lossy());
                match values::to_json_lossy(&self.lua, &LuaValue::Table(t)) {
                    Value::Object(mut m) => {
                        m.entry("code")
                            .or_insert_with(|| json!(ErrorCode::ScriptError.as_str()));
                        if !m.contains_key("message") {
                            m.insert(
                                "message".into(),
                                json!(shown.unwrap_or_else(|| "error object is a table".into())),
                            );
                        }
                        Value::Object(m)
                    }
                    other => {
                        json!({"code": ErrorCode::ScriptError.as_str(), "message": other.to_string(), "value": other})
                    }
                }
            }
            LuaValue::String(s) => {
                let message = s.to_string_lossy();
                if message == "not enough memory" {
                    return self.memory_error();
                }
                error_json(ErrorCode::ScriptError, message)
            }
            LuaValue::Error(e) => self.rust_error(&e),
            LuaValue::Nil => error_json(ErrorCode::ScriptError, "error called with nil"),
            other => {
                let shown = self
                    .prelude
                    .tostring
                    .call::<mlua::LuaString>(other)
                    .map(|s| s.to_string_lossy());
                error_json(
                    ErrorCode::ScriptError,
                    shown.unwrap_or_else(|_| "unprintable error".into()),
                )
            }
        }
    }

    /// An error that came through mlua rather than as a Lua value.
    fn rust_error(&self, e: &mlua::Error) -> Value {
        if let Some(hit) = self.budget.hit() {
            return self.limit_error(hit);
        }
        let mut cause = e;
        while let mlua::Error::CallbackError { cause: inner, .. }
        | mlua::Error::WithContext { cause: inner, .. } = cause
        {
            cause = inner;
        }
        if matches!(cause, mlua::Error::MemoryError(_))
            || cause.to_string().contains("not enough memory")
        {
            return self.memory_error();
        }
        error_json(ErrorCode::ScriptError, first_line(&cause.to_string()))
    }

    fn limit_error(&self, hit: LimitHit) -> Value {
        match hit {
            LimitHit::Cpu => error_json(ErrorCode::CpuLimit, self.budget.cpu_message()),
            LimitHit::Output => error_json(
                ErrorCode::OutputLimit,
                format!(
                    "the script printed more than {} bytes; print less (summarise, or return a table)",
                    self.limits.output_bytes
                ),
            ),
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
        Session::new(
            Arc::new(Host::new(Vec::new(), HostOptions::default())),
            Limits::default(),
        )
        .unwrap()
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
}
