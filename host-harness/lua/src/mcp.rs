//! MCP from Lua: `mcp.servers()`, `mcp.tools(server)`, `mcp.call(server, tool, args)`,
//! `app.mcp.<server>.<tool>(args)`, and the `mcp` / `mcp.<server>` docs topics.
//!
//! This crate knows MCP only through the [`ToolServers`] seam (no rmcp here): the embedder
//! (the `kosmo` CLI, over `kosmo_mcp::McpClients`) starts servers, checks arguments against
//! input schemas, applies the permission policy and records calls. What this module adds is
//! the Lua side, under the same rules as the Klaviyo functions (see [`crate::proxy`]):
//! read-only userdata proxies, calls only from the main thread, arguments through the same
//! capped conversion, the CPU budget paused while a call waits, and every failure a host
//! error table `pcall` catches.
//!
//! Tools are looked up when called, not when indexed: `__index` cannot wait for a server to
//! start, so `app.mcp.<server>.<name>` is a function for any name and an unknown tool is the
//! call's `unknown_name` error (with the server's "Did you mean"). Unknown servers fail at
//! the index, since the configuration is known up front.

// `CallError` is the one error model and is returned unboxed everywhere (as in kosmo-mcp and
// `kosmo_runtime::Host::invoke`).
#![allow(clippy::result_large_err)]

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use mlua::{
    AnyUserData, Function, Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods,
    Value as LuaValue,
};
use serde_json::Value;

use kosmo_runtime::{CallError, ErrorCode};

use crate::globals::{lifted, one};
use crate::location;
use crate::mcp_docs;
use crate::proxy::{Calls, Node, call_arguments};
use crate::sandbox::{Prelude, error_table};
use crate::values;

/// A boxed, sendable future (the seam's async methods).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The configured tool servers (MCP) a session may call: implemented by the embedder.
pub trait ToolServers: Send + Sync {
    /// The configured servers, each `{name, transport, ...}` without secrets.
    fn servers(&self) -> Vec<Value>;
    /// The tools of `server` (starting it if needed), each `{name, description,
    /// input_schema, read_only, ...}`.
    fn tools(&self, server: String) -> BoxFuture<'_, Result<Vec<Value>, CallError>>;
    /// Call `tool` of `server` with JSON arguments (an object, or null for none). The result
    /// is the tool's `structuredContent`, else `{content = [...]}`; errors name server and
    /// tool.
    fn call(
        &self,
        server: String,
        tool: String,
        args: Value,
    ) -> BoxFuture<'_, Result<Value, CallError>>;
}

/// Lua glue: raising the error tables of the Rust functions from the caller's line, and the
/// `docs` wrappers. Run once at setup with the base library untouched (`error`, `type`,
/// `ipairs` and `string.sub` are captured before any script could replace them).
const GLUE: &str = r#"
local invoke, list_tools, read_mcp_doc, read, list, topics = ...
local error, type, ipairs, sub = error, type, ipairs, string.sub
local M = {}
M.call = function(server, tool, args)
  local ok, v = invoke(server, tool, args)
  if ok then return v end
  error(v, 2)
end
M.tools = function(server)
  local ok, v = list_tools(server)
  if ok then return v end
  error(v, 2)
end
M.docs_read = function(topic)
  if type(topic) == "string" and (topic == "mcp" or sub(topic, 1, 4) == "mcp.") then
    local ok, v = read_mcp_doc(topic)
    if ok then return v end
    error(v, 2)
  end
  return read(topic) -- a tail call: its errors point at the script's line
end
M.docs_list = function(...)
  local t = list(...)
  for _, topic in ipairs(topics) do t[#t + 1] = {topic = topic.topic, summary = topic.summary} end
  return t
end
return M
"#;

/// Install the `mcp` global and the docs topics; returns the `app.mcp` node.
pub(crate) fn install(
    lua: &Lua,
    prelude: &Prelude,
    servers: Arc<dyn ToolServers>,
    calls: &Calls,
) -> mlua::Result<AnyUserData> {
    let invoke = invoke_function(lua, servers.clone(), calls.clone())?;
    let list_tools = tools_function(lua, servers.clone(), calls.clone())?;
    let read_doc = doc_function(lua, servers.clone(), calls.clone())?;
    let configured = servers.servers();
    let docs: Table = lua.globals().raw_get("docs")?;
    let topics: Vec<Value> = if configured.is_empty() {
        Vec::new()
    } else {
        mcp_docs::topics(&configured)
    };
    let glue: Table = lua.load(GLUE).set_name("=kosmo.mcp").call((
        invoke.clone(),
        list_tools,
        read_doc,
        docs.raw_get::<Function>("read")?,
        docs.raw_get::<Function>("list")?,
        values::from_json(lua, &Value::Array(topics))?,
    ))?;
    docs.raw_set("read", glue.raw_get::<Function>("docs_read")?)?;
    docs.raw_set("list", glue.raw_get::<Function>("docs_list")?)?;

    let mcp = lua.create_table()?;
    let shown = configured.clone();
    mcp.raw_set(
        "servers",
        lifted(lua, prelude, move |lua, _| {
            one(lua, values::from_json(lua, &Value::Array(shown.clone()))?)
        })?,
    )?;
    mcp.raw_set("tools", glue.raw_get::<Function>("tools")?)?;
    mcp.raw_set("call", glue.raw_get::<Function>("call")?)?;
    lua.globals().raw_set("mcp", mcp)?;

    let entries = lua.create_table()?;
    let mut listing = Vec::new();
    for server in &configured {
        let Some(name) = server.get("name").and_then(Value::as_str) else {
            continue;
        };
        let node = lua.create_userdata(ServerNode {
            path: format!("app.mcp.{name}"),
            server: name.to_string(),
            tools: lua.create_table()?,
            invoke: invoke.clone(),
            make_fn: prelude.make_fn.clone(),
        })?;
        entries.raw_set(name, node)?;
        listing.push(name.to_string());
    }
    Node::new("app.mcp".into(), entries, listing, "MCP server").create(lua)
}

/// `app.mcp.<server>`: a function for every string key (see the module's documentation).
struct ServerNode {
    path: String,
    server: String,
    /// The functions made so far, so `f == app.mcp.s.t` holds across lookups.
    tools: Table,
    invoke: Function,
    make_fn: Function,
}

impl UserData for ServerNode {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field_with("__index", |lua| {
            let make: Function = lua.named_registry_value("kosmo.make_index")?;
            make.call::<Function>(lua.create_function(lookup_tool)?)
        });
        fields.add_meta_field_with("__newindex", |lua| {
            let make: Function = lua.named_registry_value("kosmo.make_newindex")?;
            make.call::<Function>(lua.create_function(|_, ud: AnyUserData| {
                Ok(ud.borrow::<ServerNode>()?.path.clone())
            })?)
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| {
            Ok(format!(
                "{}: the tools of MCP server `{}` (list them with mcp.tools(\"{}\"))",
                this.path, this.server, this.server
            ))
        });
    }
}

/// `__index` of a server node: the tool's function, or `(nil, error)` for a non-string key.
fn lookup_tool(
    lua: &Lua,
    (ud, key): (AnyUserData, LuaValue),
) -> mlua::Result<(LuaValue, LuaValue)> {
    let node = ud.borrow::<ServerNode>()?;
    let LuaValue::String(name) = &key else {
        let e = CallError::new(
            ErrorCode::UnknownName,
            &node.path,
            format!(
                "{}[<{}>]: tool names are strings",
                node.path,
                key.type_name()
            ),
        );
        return Ok((
            LuaValue::Nil,
            LuaValue::Table(error_table(lua, &e.to_json())?),
        ));
    };
    let found: Option<Function> = node.tools.raw_get(name.clone())?;
    if let Some(f) = found {
        location::remember_caller(lua, &f);
        return Ok((LuaValue::Function(f), LuaValue::Nil));
    }
    let f: Function =
        node.make_fn
            .call((node.invoke.clone(), node.server.as_str(), name.clone()))?;
    node.tools.raw_set(name.clone(), f.clone())?;
    location::remember_caller(lua, &f);
    Ok((LuaValue::Function(f), LuaValue::Nil))
}

/// A `(false, error table)` result.
fn failed(lua: &Lua, e: &CallError) -> mlua::Result<(bool, LuaValue)> {
    Ok((false, LuaValue::Table(error_table(lua, &e.to_json())?)))
}

/// A string argument, or the `invalid_argument` error naming it.
fn name_arg(value: &LuaValue, what: &str, function: &str) -> Result<String, CallError> {
    match value {
        LuaValue::String(s) => Ok(s.to_string_lossy()),
        other => Err(CallError::invalid_argument(
            function,
            what,
            format!(
                "{function}: `{what}` must be a string, not {}",
                other.type_name()
            ),
        )),
    }
}

/// Calls wait for servers: only from the thread the evaluation runs on (an async call inside
/// a script's coroutine would yield that coroutine instead), as for Klaviyo calls.
fn off_main(function: &str) -> CallError {
    CallError::new(
        ErrorCode::Unsupported,
        function,
        "MCP tools cannot be called from inside a coroutine; call them from the script's main code \
         (or a function it calls)",
    )
}

/// `invoke(server, tool, args) -> true, result | false, error table`.
fn invoke_function(
    lua: &Lua,
    servers: Arc<dyn ToolServers>,
    calls: Calls,
) -> mlua::Result<Function> {
    lua.create_async_function(
        move |lua, (server, tool, args): (LuaValue, LuaValue, LuaValue)| {
            let servers = servers.clone();
            let calls = calls.clone();
            let on_main = calls.main.is(lua.current_thread().to_pointer() as usize);
            async move {
                let names = name_arg(&server, "server", "mcp.call")
                    .and_then(|s| Ok((s, name_arg(&tool, "tool", "mcp.call")?)));
                let (server, tool) = match names {
                    Ok(names) => names,
                    Err(e) => return failed(&lua, &e),
                };
                let path = format!("mcp.{server}.{tool}");
                let named = |e: CallError| {
                    e.with("server", server.as_str())
                        .with("tool", tool.as_str())
                };
                if !on_main {
                    return failed(&lua, &named(off_main(&path)));
                }
                let shown = || format!("app.{path}");
                let args =
                    match call_arguments(&lua, &args, calls.argument_bytes, &path, shown, "")? {
                        Ok(v) => v,
                        Err(e) => return failed(&lua, &named(e)),
                    };
                calls.budget.pause();
                let result = servers.call(server.clone(), tool.clone(), args).await;
                calls.budget.resume();
                match result {
                    Ok(value) => Ok((true, values::from_json(&lua, &value)?)),
                    Err(e) => failed(&lua, &named(e)),
                }
            }
        },
    )
}

/// `list_tools(server) -> true, tools | false, error table`.
fn tools_function(
    lua: &Lua,
    servers: Arc<dyn ToolServers>,
    calls: Calls,
) -> mlua::Result<Function> {
    lua.create_async_function(move |lua, server: LuaValue| {
        let servers = servers.clone();
        let calls = calls.clone();
        let on_main = calls.main.is(lua.current_thread().to_pointer() as usize);
        async move {
            let server = match name_arg(&server, "server", "mcp.tools") {
                Ok(s) => s,
                Err(e) => return failed(&lua, &e),
            };
            let path = format!("mcp.{server}");
            if !on_main {
                return failed(&lua, &off_main(&path).with("server", server.as_str()));
            }
            calls.budget.pause();
            let result = servers.tools(server.clone()).await;
            calls.budget.resume();
            match result {
                Ok(tools) => Ok((true, values::from_json(&lua, &Value::Array(tools))?)),
                Err(e) => failed(&lua, &e.with("server", server.as_str())),
            }
        }
    })
}

/// `read_mcp_doc(topic) -> true, text | false, error table` for `mcp`, `mcp.<server>` and
/// `mcp.<server>.<tool>`: what the live servers offer (they start to answer).
fn doc_function(lua: &Lua, servers: Arc<dyn ToolServers>, calls: Calls) -> mlua::Result<Function> {
    lua.create_async_function(move |lua, topic: String| {
        let servers = servers.clone();
        let calls = calls.clone();
        let on_main = calls.main.is(lua.current_thread().to_pointer() as usize);
        async move {
            if !on_main {
                return failed(&lua, &off_main("docs.read"));
            }
            calls.budget.pause();
            let text = mcp_docs::read(servers.as_ref(), &topic).await;
            calls.budget.resume();
            match text {
                Ok(text) => Ok((true, LuaValue::String(lua.create_string(&text)?))),
                Err(e) => failed(&lua, &e),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::{Limits, Session, SessionOptions};
    use kosmo_runtime::{Host, HostOptions};

    /// One server `fake` with a tool `echo` that returns its arguments.
    struct Fake;

    impl ToolServers for Fake {
        fn servers(&self) -> Vec<Value> {
            vec![json!({"name": "fake", "transport": "stdio", "command": "fake"})]
        }

        fn tools(&self, _server: String) -> BoxFuture<'_, Result<Vec<Value>, CallError>> {
            Box::pin(async {
                Ok(vec![
                    json!({"name": "echo", "description": "Echoes.", "read_only": true,
                               "input_schema": {"type": "object"}}),
                ])
            })
        }

        fn call(
            &self,
            _s: String,
            tool: String,
            args: Value,
        ) -> BoxFuture<'_, Result<Value, CallError>> {
            Box::pin(async move {
                if tool == "hang" {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                }
                // Slow enough that a budget still running would be spent.
                tokio::time::sleep(Duration::from_millis(300)).await;
                match tool.as_str() {
                    "echo" => Ok(json!({"got": args})),
                    _ => Err(CallError::new(
                        ErrorCode::UnknownName,
                        &tool,
                        "no such tool",
                    )),
                }
            })
        }
    }

    fn session(integrations: bool) -> Session {
        let host = Arc::new(Host::new(Vec::new(), HostOptions::default()));
        let limits = Limits {
            cpu: Duration::from_millis(200),
            argument_bytes: 1024,
            ..Limits::default()
        };
        let options = SessionOptions {
            integrations,
            tools: Some(Arc::new(Fake)),
            ..SessionOptions::default()
        };
        Session::with_options(host, limits, options).unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn calls_pause_the_budget_and_follow_the_klaviyo_rules() {
        let s = session(false);
        // Three calls of 300 ms each under a 200 ms CPU budget: waiting does not count.
        let code = r#"
            local a = app.mcp.fake.echo{n = 1}
            local b = app.mcp.fake:echo{n = 2}
            local c = mcp.call("fake", "echo", {n = 3})
            return a.got.n + b.got.n + c.got.n
        "#;
        let out = s.eval(code, "=eval").await;
        assert_eq!(out.result, vec![json!(6)], "{out:?}");
        let code = r#"
            local co = coroutine.wrap(function() return pcall(app.mcp.fake.echo, {}) end)
            local ok, e = co()
            local ok2, big = pcall(mcp.call, "fake", "echo", {s = string.rep("x", 4096)})
            local ok3, read_only = pcall(function() app.mcp.fake = 1 end)
            return ok, e.code, e.server, big.code, big.tool, ok3, app.integrations
        "#;
        let out = s.eval(code, "=eval").await;
        assert!(
            !out.success,
            "app.integrations is unknown without integrations: {out:?}"
        );
        assert_eq!(out.error.unwrap()["code"], "unknown_name");
        let code = code.replace(", app.integrations", "");
        let out = s.eval(&code, "=eval").await;
        assert_eq!(
            out.result,
            vec![
                json!(false),
                json!("unsupported"),
                json!("fake"),
                json!("invalid_argument"),
                json!("echo"),
                json!(false)
            ],
            "{out:?}"
        );
    }

    /// An interrupt abandons the wait for a tool at once; `pcall` does not swallow it, and the
    /// session goes on.
    #[tokio::test(flavor = "multi_thread")]
    async fn an_interrupt_abandons_a_tool_call() {
        let s = session(false);
        let interrupter = s.interrupter();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            interrupter.interrupt();
        });
        let started = std::time::Instant::now();
        let out = s
            .eval("pcall(app.mcp.fake.hang, {}) return 'swallowed'", "=eval")
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            out.error.unwrap()["code"],
            "interrupted",
            "{:?}",
            out.result
        );
        let out = s
            .eval("return app.mcp.fake.echo{n = 1}.got.n", "=eval")
            .await;
        assert_eq!(out.result, vec![json!(1)], "{out:?}");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn docs_cover_the_configured_servers() {
        let s = session(true);
        let code = r#"
            local topics = {}
            for _, t in ipairs(docs.list()) do topics[t.topic] = true end
            return topics["mcp"], topics["mcp.fake"], docs.read("mcp.fake"), docs.read("mcp"),
                   select(2, pcall(docs.read, "mcp.fak")).message, #docs.read("klaviyo") > 0
        "#;
        let out = s.eval(code, "=eval").await;
        assert!(out.success, "{out:?}");
        let r = &out.result;
        assert_eq!(
            (&r[0], &r[1], &r[5]),
            (&json!(true), &json!(true), &json!(true))
        );
        assert!(r[2].as_str().unwrap().contains("fake.echo (read)"), "{r:?}");
        assert!(
            r[3].as_str().unwrap().contains("- echo (read): Echoes."),
            "{r:?}"
        );
        assert!(
            r[4].as_str().unwrap().contains("Did you mean `fake`?"),
            "{r:?}"
        );
    }
}
