//! [`McpClients`]: the configured MCP servers, started on first use, with their tools and
//! calls under the same rules as the Klaviyo functions: one error model ([`CallError`]),
//! a permission policy per server, call records, and bounded time everywhere.
//!
//! Behaviours and the reason for each:
//! - A stdio server is a child process in its own process group, with its standard error
//!   captured (a bounded tail, shown in start-failure messages) and never passed through:
//!   the caller's standard output carries a script's output or a JSON envelope, and stdout of
//!   the child is the protocol channel itself (MCP spec, transports/stdio: "The server MUST
//!   NOT write anything to its stdout that is not a valid MCP message").
//! - Dropping [`McpClients`] (or a failed start) kills the whole process group at once,
//!   synchronously, without needing a runtime: rmcp's own `TokioChildProcess` kills from a
//!   task it spawns on drop, which panics outside a runtime and never runs once the runtime
//!   is shutting down, and it kills only the direct child (`npx` leaves `node` behind).
//!   [`McpClients::close`] first closes stdin and waits briefly, the shutdown sequence of
//!   the spec (lifecycle/shutdown, stdio).
//! - Arguments are validated against the tool's `inputSchema` before anything is sent (the
//!   spec lets servers reject bad input any way they like, some with an opaque JSON-RPC
//!   error; checking here gives `invalid_argument` naming the field every time).
//! - Every request has a deadline ([`ClientOptions::call_timeout`], start-up has
//!   [`ClientOptions::start_timeout`]); on expiry the request is cancelled
//!   (`notifications/cancelled`, which rmcp sends when the request future is dropped).
//! - A tool's `readOnlyHint` makes it a read; every other tool is a write (the spec's default
//!   for `readOnlyHint` is false, and annotations are only hints: an unmarked tool is assumed
//!   to change something).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kosmo_runtime::names::did_you_mean;
use kosmo_runtime::{
    Authorization, CallError, CallRecord, ErrorCode, Host, HostOptions, Kind, Prompter,
};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RunningService, ServiceError};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Map, Value, json};
use tokio::io::AsyncReadExt;

use crate::config::{McpConfig, ServerEntry, Transport, expand_env, redact_url};

/// Default deadline of one request (`tools/list`, `tools/call`).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Default deadline for a server to start and answer `initialize` (`npx` may download).
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Default bytes of a server's standard error kept (the last ones).
pub const DEFAULT_STDERR_TAIL: usize = 8 * 1024;

/// How many call records [`McpClients`] keeps between two takes (the rest are counted), as
/// the Klaviyo host does (`kosmo_runtime::host::MAX_CALL_RECORDS`).
pub const MAX_CALL_RECORDS: usize = kosmo_runtime::host::MAX_CALL_RECORDS;

/// How clients behave.
#[derive(Clone)]
pub struct ClientOptions {
    /// Deadline of each request.
    pub call_timeout: Duration,
    /// Deadline for a server to start and initialize.
    pub start_timeout: Duration,
    /// Bytes of standard error kept per server.
    pub stderr_tail: usize,
    /// `--force`: lift `ask` and `deny` for this run.
    pub force: bool,
    /// Who to ask when a server's policy says `ask` (none: refuse).
    pub prompter: Option<Arc<dyn Prompter>>,
    /// The host whose permission state (`--force`, prompter, "all for the rest of the run",
    /// `permission_bypassed`) and call records the tool calls share, so that one run reports
    /// Klaviyo and MCP calls together, in call order (issue 11). When given, `force` and
    /// `prompter` above are unused: the host's apply. None: a host of its own.
    pub host: Option<Arc<Host>>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            call_timeout: DEFAULT_CALL_TIMEOUT,
            start_timeout: DEFAULT_START_TIMEOUT,
            stderr_tail: DEFAULT_STDERR_TAIL,
            force: false,
            prompter: None,
            host: None,
        }
    }
}

/// A configured server, as [`McpClients::servers`] shows it.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// Its name.
    pub name: String,
    /// `stdio` or `http`.
    pub transport: &'static str,
    /// Whether it is running now.
    pub running: bool,
    /// The entry without secrets ([`ServerEntry::redacted_json`]).
    pub entry: Value,
}

impl ServerInfo {
    /// `{name, transport, running, command, args, env (names only), url, headers (names
    /// only), permissions, source, path}`.
    pub fn to_json(&self) -> Value {
        let mut v = self.entry.clone();
        if let Value::Object(m) = &mut v {
            m.insert("running".into(), json!(self.running));
        }
        v
    }
}

/// A tool of a server.
#[derive(Clone, Debug)]
pub struct ToolInfo {
    /// Its name.
    pub name: String,
    /// Its display title, if it has one.
    pub title: Option<String>,
    /// Its description.
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    pub input_schema: Value,
    /// JSON Schema of its `structuredContent`, if declared.
    pub output_schema: Option<Value>,
    /// Its annotations as sent (`readOnlyHint`, `destructiveHint`, ...), if any.
    pub annotations: Option<Value>,
    /// Read when `readOnlyHint` is true, else write.
    pub kind: Kind,
}

impl ToolInfo {
    /// `{name, title, description, input_schema, output_schema, annotations, kind}`.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "input_schema": self.input_schema,
            "output_schema": self.output_schema,
            "annotations": self.annotations,
            "kind": self.kind.as_str(),
        })
    }
}

/// The tools of one connection, with their argument validators (compiled on first use).
struct ToolSet {
    tools: Vec<ToolInfo>,
    validators: Vec<OnceLock<Option<jsonschema::Validator>>>,
}

impl ToolSet {
    fn new(tools: Vec<ToolInfo>) -> Self {
        let validators = tools.iter().map(|_| OnceLock::new()).collect();
        ToolSet { tools, validators }
    }

    fn find(&self, name: &str) -> Option<(&ToolInfo, &OnceLock<Option<jsonschema::Validator>>)> {
        let i = self.tools.iter().position(|t| t.name == name)?;
        Some((&self.tools[i], &self.validators[i]))
    }
}

/// What a connection's handler shares with it: the tools cache, dropped when the server says
/// its list changed (`notifications/tools/list_changed`).
#[derive(Default)]
struct Shared {
    tools: Mutex<Option<Arc<ToolSet>>>,
}

/// Our side of a connection: declares no optional client capability (kosmo cannot answer
/// sampling or elicitation requests from a server: rmcp's defaults decline them).
struct Handler {
    shared: Arc<Shared>,
}

impl ClientHandler for Handler {
    fn get_info(&self) -> ClientConfig {
        // `initialize` must name a version that has the handshake (rmcp's default is its
        // latest, 2026-07-28, which has none).
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("kosmo", env!("CARGO_PKG_VERSION")),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        *self.shared.tools.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// The last bytes a server wrote on its standard error.
struct Tail {
    bytes: Vec<u8>,
    cap: usize,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > self.cap {
            let cut = self.bytes.len() - self.cap;
            self.bytes.drain(..cut);
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).trim().to_string()
    }
}

/// A stdio server's process; dropping it kills the process group.
struct ChildGuard {
    child: tokio::process::Child,
    pid: Option<u32>,
    groups: Groups,
}

impl ChildGuard {
    fn kill_group(&mut self) {
        if let Some(pid) = self.pid.take() {
            self.groups
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&pid);
            kill_group(pid);
        }
        let _ = self.child.start_kill();
    }

    fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            _ => None,
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_group();
    }
}

/// SIGKILL the process group `pid` leads.
fn kill_group(pid: u32) {
    // The child leads its own group (`process_group(0)`): `-pid` reaches what it started
    // too. The pid cannot have been reused as a group id while any member lives (Linux does
    // not reuse a pid in use as a pgid).
    #[cfg(unix)]
    // SAFETY: kill(2) with a negative pid and a valid signal has no memory effects.
    unsafe {
        libc::kill(-(pid as i32), libc::SIGKILL);
    }
    #[cfg(not(unix))]
    let _ = pid;
}

/// One running server.
struct Connection {
    service: RunningService<RoleClient, Handler>,
    shared: Arc<Shared>,
    child: Mutex<Option<ChildGuard>>,
    stderr: Option<Arc<Mutex<Tail>>>,
}

impl Connection {
    fn stderr_tail(&self) -> Option<String> {
        let tail = self
            .stderr
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .text();
        (!tail.is_empty()).then_some(tail)
    }

    fn exit_status(&self) -> Option<String> {
        self.child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()?
            .exit_status()
    }

    fn is_closed(&self) -> bool {
        self.service.is_closed() || self.service.peer().is_transport_closed()
    }
}

/// Per server: its connection once started (`None` before, or after it stopped).
type Slot = Arc<tokio::sync::Mutex<Option<Arc<Connection>>>>;

/// The process groups of the stdio servers started and not yet killed, for
/// [`McpClients::kill_now`].
type Groups = Arc<Mutex<BTreeSet<u32>>>;

/// The configured MCP servers of a session. `Send + Sync`: share it in an `Arc`. Servers
/// start on first use ([`McpClients::tools`], [`McpClients::call`]) and stop when it is
/// dropped or [`McpClients::close`]d.
pub struct McpClients {
    config: McpConfig,
    options: ClientOptions,
    slots: Mutex<BTreeMap<String, Slot>>,
    host: Arc<Host>,
    groups: Groups,
}

impl McpClients {
    /// Clients of the servers of `config`; nothing starts yet.
    pub fn new(config: McpConfig, options: ClientOptions) -> McpClients {
        // A host without accounts only keeps permission state and records: its component
        // runtime is built on first Klaviyo call, which never comes.
        let host = options.host.clone().unwrap_or_else(|| {
            Arc::new(Host::new(
                Vec::new(),
                HostOptions {
                    force: options.force,
                    prompter: options.prompter.clone(),
                    ..HostOptions::default()
                },
            ))
        });
        McpClients {
            config,
            options,
            slots: Mutex::new(BTreeMap::new()),
            host,
            groups: Groups::default(),
        }
    }

    /// The host whose permission state and records the calls share.
    pub fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Kill every stdio server's process group now, synchronously, from any thread: for an
    /// exit that cannot wait for [`McpClients::close`] (the CLI's watchdog ends the process
    /// with `std::process::exit`, which runs no destructor; the servers lead their own
    /// process groups, so nothing else would stop them).
    pub fn kill_now(&self) {
        let groups = std::mem::take(&mut *self.groups.lock().unwrap_or_else(|p| p.into_inner()));
        for pid in groups {
            kill_group(pid);
        }
    }

    /// The configuration.
    pub fn config(&self) -> &McpConfig {
        &self.config
    }

    /// The configured servers, without secrets.
    pub fn servers(&self) -> Vec<ServerInfo> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        self.config
            .entries()
            .map(|e| ServerInfo {
                name: e.name.clone(),
                transport: e.transport.kind(),
                running: slots.get(&e.name).is_some_and(|s| {
                    s.try_lock()
                        .map(|c| c.as_ref().is_some_and(|c| !c.is_closed()))
                        // Locked: being started or used right now.
                        .unwrap_or(true)
                }),
                entry: e.redacted_json(),
            })
            .collect()
    }

    /// The tools of `server` (starting it if needed), cached per connection.
    pub async fn tools(&self, server: &str) -> Result<Vec<ToolInfo>, CallError> {
        let entry = self.entry(server, &format!("mcp.{server}"))?;
        let conn = self.connection(entry).await?;
        let set = self.tool_set(entry, &conn).await?;
        Ok(set.tools.clone())
    }

    /// Call `tool` of `server` with JSON object arguments. The result is the tool's
    /// `structuredContent` when it has one, else `{"content": [items as sent]}`.
    pub async fn call(&self, server: &str, tool: &str, args: &Value) -> Result<Value, CallError> {
        let started = Instant::now();
        let path = format!("mcp.{server}.{tool}");
        let mut record = CallRecord {
            path: path.clone(),
            account: server.to_string(),
            kind: Kind::Write,
            duration: Duration::ZERO,
            status: None,
            error: None,
            permission: "allowed",
            requests: 0,
        };
        let result = self.run_call(server, tool, args, &path, &mut record).await;
        let result = result.map_err(|e| {
            let e = e.with("server", server).with("tool", tool);
            record.error = Some(format!("{}: {}", e.code, e.message));
            e
        });
        // Time spent waiting for a person's answer is not the call's (CallRecord::finish).
        record.finish(started);
        self.host.push_record(record);
        result
    }

    async fn run_call(
        &self,
        server: &str,
        tool: &str,
        args: &Value,
        path: &str,
        record: &mut CallRecord,
    ) -> Result<Value, CallError> {
        let entry = self.entry(server, path)?;
        let arguments = match args {
            Value::Null => Map::new(),
            Value::Object(m) => m.clone(),
            other => {
                return Err(CallError::invalid_argument(
                    path,
                    "",
                    format!(
                        "{path}: arguments must be a table/object of named arguments, not {}",
                        json_type(other)
                    ),
                ));
            }
        };
        let conn = self.connection(entry).await?;
        let set = self.tool_set(entry, &conn).await?;
        let Some((info, validator)) = set.find(tool) else {
            let hint = did_you_mean(tool, set.tools.iter().map(|t| t.name.as_str()));
            let hint = if hint.is_empty() {
                format!(
                    " Its tools: {}.",
                    set.tools
                        .iter()
                        .map(|t| t.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            } else {
                hint
            };
            return Err(CallError::new(
                ErrorCode::UnknownName,
                path,
                format!("MCP server `{server}` has no tool `{tool}`.{hint}"),
            ));
        };
        record.kind = info.kind;
        let instance = Value::Object(arguments.clone());
        if let Some(validator) =
            validator.get_or_init(|| jsonschema::validator_for(&info.input_schema).ok())
        {
            check_arguments(validator, &instance, path)?;
        }
        self.check_permission(entry, path, info.kind, record)
            .await?;
        record.requests = 1;
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let call = conn.service.peer().call_tool(params);
        let result = match tokio::time::timeout(self.options.call_timeout, call).await {
            Err(_) => {
                return Err(CallError::new(
                    ErrorCode::Timeout,
                    path,
                    format!(
                        "MCP server `{server}` did not answer tool `{tool}` within {} s (the call was \
                         cancelled)",
                        self.options.call_timeout.as_secs_f64()
                    ),
                )
                .with("timeout_ms", self.options.call_timeout.as_millis() as u64));
            }
            Ok(Err(e)) => return Err(self.service_error(entry, &conn, path, e).await),
            Ok(Ok(result)) => result,
        };
        let content = serde_json::to_value(&result.content).unwrap_or(Value::Array(Vec::new()));
        if result.is_error == Some(true) {
            let text = content_text(&content);
            let message = if text.is_empty() {
                format!("tool `{tool}` of MCP server `{server}` reported an error")
            } else {
                format!("tool `{tool}` of MCP server `{server}` failed: {text}")
            };
            // MCP: a tool's own failure is a result with `isError`, not a protocol error.
            let mut e =
                CallError::new(ErrorCode::ToolError, path, message).with("content", content);
            if let Some(s) = result.structured_content {
                e = e.with("structured_content", s);
            }
            return Err(e);
        }
        Ok(match result.structured_content {
            Some(s) => s,
            None => json!({ "content": content }),
        })
    }

    async fn check_permission(
        &self,
        entry: &ServerEntry,
        path: &str,
        kind: Kind,
        record: &mut CallRecord,
    ) -> Result<(), CallError> {
        let server = &entry.name;
        let file = entry
            .source
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "its mcp.json".into());
        let allow_hint = format!(
            "set \"permissions\": {{\"{kind}\": \"allow\"}} in the `{server}` entry of {file}",
            kind = kind.as_str()
        );
        let why = if kind == Kind::Write {
            " (its server does not mark it `readOnlyHint`)"
        } else {
            ""
        };
        let scope = format!("mcp.{server}");
        let subject = format!("MCP server `{server}`");
        let request = Authorization {
            scope: &scope,
            path,
            kind,
            policy: entry.policy(),
            subject: &subject,
            why,
            allow_hint: &allow_hint,
        };
        self.host.authorize(&request, record).await
    }

    /// The calls made since the last take (at most [`MAX_CALL_RECORDS`]; the rest are
    /// counted by [`McpClients::records_dropped`]). `path` is `mcp.<server>.<tool>` and
    /// `account` the server's name.
    /// With a shared host ([`ClientOptions::host`]) these are the host's records, Klaviyo
    /// calls included.
    pub fn take_records(&self) -> Vec<CallRecord> {
        self.host.take_records()
    }

    /// How many calls the last [`McpClients::take_records`] left out.
    pub fn records_dropped(&self) -> u64 {
        self.host.records_dropped()
    }

    /// Whether `--force` let through a call a server's policy would have asked about or
    /// denied.
    pub fn permission_bypassed(&self) -> bool {
        self.host.permission_bypassed()
    }

    /// The last lines `server` wrote on its standard error (stdio servers that started).
    pub async fn stderr_tail(&self, server: &str) -> Option<String> {
        let slot = self.slot(server);
        let guard = slot.lock().await;
        guard.as_ref()?.stderr_tail()
    }

    /// Stop `server` if it runs (it starts again on next use).
    pub async fn stop(&self, server: &str) {
        let slot = self.slot(server);
        let conn = slot.lock().await.take();
        if let Some(conn) = conn {
            shutdown(conn).await;
        }
    }

    /// Stop every server: close its input, give it a moment to exit, then kill its group.
    pub async fn close(&self) {
        let slots: Vec<Slot> = self
            .slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut conns = Vec::new();
        for slot in slots {
            if let Some(conn) = slot.lock().await.take() {
                conns.push(conn);
            }
        }
        futures::future::join_all(conns.into_iter().map(shutdown)).await;
    }

    fn entry(&self, server: &str, path: &str) -> Result<&ServerEntry, CallError> {
        self.config.get(server).ok_or_else(|| {
            let names = self.config.names();
            let hint = match did_you_mean(server, names.iter().map(String::as_str)) {
                h if !h.is_empty() => h,
                _ if names.is_empty() => " No MCP server is configured: add one to .mcp.json or \
                                         with `kosmo mcp:configure NAME --command CMD`."
                    .to_string(),
                _ => format!(" Configured: {}.", names.join(", ")),
            };
            CallError::new(
                ErrorCode::UnknownName,
                path,
                format!("Unknown MCP server `{server}`.{hint}"),
            )
        })
    }

    fn slot(&self, server: &str) -> Slot {
        self.slots
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(server.to_string())
            .or_default()
            .clone()
    }

    /// The running connection of `entry`, started now if there is none (or the last one
    /// ended: a crashed server is started again on its next use).
    async fn connection(&self, entry: &ServerEntry) -> Result<Arc<Connection>, CallError> {
        let slot = self.slot(&entry.name);
        let mut guard = slot.lock().await;
        if let Some(conn) = guard.as_ref() {
            if !conn.is_closed() {
                return Ok(conn.clone());
            }
            *guard = None;
        }
        let conn = Arc::new(connect(entry, &self.options, &self.groups).await?);
        *guard = Some(conn.clone());
        Ok(conn)
    }

    async fn tool_set(
        &self,
        entry: &ServerEntry,
        conn: &Arc<Connection>,
    ) -> Result<Arc<ToolSet>, CallError> {
        if let Some(set) = conn
            .shared
            .tools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(set);
        }
        let path = format!("mcp.{}", entry.name);
        let list = conn.service.peer().list_all_tools();
        let tools = match tokio::time::timeout(self.options.call_timeout, list).await {
            Err(_) => {
                return Err(CallError::new(
                    ErrorCode::Timeout,
                    &path,
                    format!(
                        "MCP server `{}` did not list its tools within {} s",
                        entry.name,
                        self.options.call_timeout.as_secs_f64()
                    ),
                )
                .with("server", entry.name.as_str()));
            }
            Ok(Err(e)) => {
                return Err(self
                    .service_error(entry, conn, &path, e)
                    .await
                    .with("server", entry.name.as_str()));
            }
            Ok(Ok(tools)) => tools,
        };
        let tools = tools
            .into_iter()
            .map(|t| {
                let annotations = t
                    .annotations
                    .as_ref()
                    .and_then(|a| serde_json::to_value(a).ok());
                let read_only = t
                    .annotations
                    .as_ref()
                    .and_then(|a| a.read_only_hint)
                    .unwrap_or(false);
                ToolInfo {
                    name: t.name.to_string(),
                    title: t.title.clone(),
                    description: t.description.as_ref().map(|d| d.to_string()),
                    input_schema: Value::Object((*t.input_schema).clone()),
                    output_schema: t
                        .output_schema
                        .as_ref()
                        .map(|s| Value::Object((**s).clone())),
                    annotations,
                    kind: if read_only { Kind::Read } else { Kind::Write },
                }
            })
            .collect();
        let set = Arc::new(ToolSet::new(tools));
        *conn.shared.tools.lock().unwrap_or_else(|p| p.into_inner()) = Some(set.clone());
        Ok(set)
    }

    /// A failed request as a [`CallError`]: a JSON-RPC error from the server, or the
    /// connection gone (then its exit status and standard error say why).
    async fn service_error(
        &self,
        entry: &ServerEntry,
        conn: &Arc<Connection>,
        path: &str,
        error: ServiceError,
    ) -> CallError {
        match error {
            ServiceError::McpError(data) => {
                let code = if data.code == rmcp::model::ErrorCode::INVALID_PARAMS {
                    ErrorCode::InvalidArgument
                } else {
                    ErrorCode::BadRequest
                };
                let mut e = CallError::new(
                    code,
                    path,
                    format!(
                        "MCP server `{}` answered an error: {}",
                        entry.name, data.message
                    ),
                )
                .with("jsonrpc_code", data.code.0);
                if code == ErrorCode::InvalidArgument {
                    e = e.with("field", "");
                }
                if let Some(d) = data.data {
                    e = e.with("data", d);
                }
                e
            }
            ServiceError::Timeout { timeout } => CallError::new(
                ErrorCode::Timeout,
                path,
                format!(
                    "MCP server `{}` did not answer within {} s",
                    entry.name,
                    timeout.as_secs_f64()
                ),
            ),
            other => {
                // The connection is gone: let the process finish dying and the stderr reader
                // reach end of file before reporting what they say.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let mut message =
                    format!("MCP server `{}` stopped answering ({other})", entry.name);
                if let Some(status) = conn.exit_status() {
                    message = format!("MCP server `{}` exited ({status})", entry.name);
                }
                let mut e = CallError::new(ErrorCode::Transport, path, message);
                if let Some(tail) = conn.stderr_tail() {
                    e.message
                        .push_str(&format!("; its stderr ends with: {}", last_lines(&tail)));
                    e = e.with("stderr", tail);
                }
                e
            }
        }
    }
}

impl Drop for McpClients {
    fn drop(&mut self) {
        // Connections kill their process groups when dropped (ChildGuard); dropping the
        // slots here drops the last reference unless a call still holds one.
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// Close a connection the way the spec asks (stdio: close the server's input, wait, then
/// kill), bounded to about a second.
async fn shutdown(conn: Arc<Connection>) {
    let Ok(mut conn) = Arc::try_unwrap(conn) else {
        return; // still in use by a call: it is killed when that call drops it
    };
    let _ = conn
        .service
        .close_with_timeout(Duration::from_millis(500))
        .await;
    let child = conn
        .child
        .get_mut()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(mut child) = child {
        let _ = tokio::time::timeout(Duration::from_millis(500), child.child.wait()).await;
        child.kill_group();
    }
}

/// Start `entry` and complete the `initialize` handshake within the start timeout.
async fn connect(
    entry: &ServerEntry,
    options: &ClientOptions,
    groups: &Groups,
) -> Result<Connection, CallError> {
    let path = format!("mcp.{}", entry.name);
    let start_error = |message: String| {
        CallError::new(ErrorCode::Transport, &path, message)
            .with("server", entry.name.as_str())
            .with("stage", "start")
    };
    let shared = Arc::new(Shared::default());
    let handler = Handler {
        shared: shared.clone(),
    };
    match &entry.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let expand = |s: &str| {
                expand_env(s).map_err(|m| {
                    start_error(format!("cannot start MCP server `{}`: {m}", entry.name))
                })
            };
            let program = expand(command)?;
            let mut cmd = tokio::process::Command::new(&program);
            for a in args {
                cmd.arg(expand(a)?);
            }
            for (k, v) in env {
                cmd.env(k, expand(v)?);
            }
            if let Some(cwd) = cwd {
                cmd.current_dir(expand(cwd)?);
            }
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            #[cfg(unix)]
            cmd.process_group(0);
            let mut child = cmd.spawn().map_err(|e| {
                let why = if e.kind() == std::io::ErrorKind::NotFound {
                    "not found (is it installed and in PATH?)".to_string()
                } else {
                    e.to_string()
                };
                start_error(format!(
                    "cannot start MCP server `{}`: command `{program}`: {why}",
                    entry.name
                ))
                .with("command", program.as_str())
            })?;
            let stdin = child.stdin.take().expect("stdin is piped");
            let stdout = child.stdout.take().expect("stdout is piped");
            let tail = Arc::new(Mutex::new(Tail {
                bytes: Vec::new(),
                cap: options.stderr_tail,
            }));
            let stderr_done = if let Some(mut stderr) = child.stderr.take() {
                let tail = tail.clone();
                let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    while let Ok(n) = stderr.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        tail.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(&buf[..n]);
                    }
                    let _ = done_tx.send(());
                });
                Some(done_rx)
            } else {
                None
            };
            let pid = child.id();
            if let Some(pid) = pid {
                groups.lock().unwrap_or_else(|p| p.into_inner()).insert(pid);
            }
            let mut guard = ChildGuard {
                child,
                pid,
                groups: groups.clone(),
            };
            let started =
                tokio::time::timeout(options.start_timeout, handler.serve((stdout, stdin))).await;
            let failure = match started {
                Ok(Ok(service)) => {
                    return Ok(Connection {
                        service,
                        shared,
                        child: Mutex::new(Some(guard)),
                        stderr: Some(tail),
                    });
                }
                Err(_) => {
                    guard.kill_group();
                    let mut e = start_error(format!(
                        "MCP server `{}` did not answer `initialize` within {} s (command `{program}`)",
                        entry.name,
                        options.start_timeout.as_secs_f64()
                    ));
                    e.code = ErrorCode::Timeout;
                    e.with("timeout_ms", options.start_timeout.as_millis() as u64)
                }
                Ok(Err(e)) => {
                    // Most often the process exited: wait for it and its last words.
                    let _ =
                        tokio::time::timeout(Duration::from_millis(500), guard.child.wait()).await;
                    let status = guard
                        .exit_status()
                        .map(|s| format!(" (it exited: {s})"))
                        .unwrap_or_default();
                    guard.kill_group();
                    start_error(format!(
                        "MCP server `{}` failed to start{status}: {e}",
                        entry.name
                    ))
                }
            };
            if let Some(done) = stderr_done {
                let _ = tokio::time::timeout(Duration::from_millis(300), done).await;
            }
            let text = tail.lock().unwrap_or_else(|p| p.into_inner()).text();
            Err(if text.is_empty() {
                failure
            } else {
                let mut failure = failure.with("stderr", text.as_str());
                failure
                    .message
                    .push_str(&format!("; its stderr ends with: {}", last_lines(&text)));
                failure
            })
        }
        Transport::Http { url, headers } => {
            let url = expand_env(url).map_err(|m| {
                start_error(format!("cannot reach MCP server `{}`: {m}", entry.name))
            })?;
            let mut expanded = BTreeMap::new();
            for (k, v) in headers {
                let v = expand_env(v).map_err(|m| {
                    start_error(format!(
                        "cannot reach MCP server `{}`: header {k}: {m}",
                        entry.name
                    ))
                })?;
                expanded.insert(k.clone(), v);
            }
            let transport = crate::http::transport(&url, &expanded).map_err(|m| {
                start_error(format!("cannot reach MCP server `{}`: {m}", entry.name))
            })?;
            match tokio::time::timeout(options.start_timeout, handler.serve(transport)).await {
                Ok(Ok(service)) => Ok(Connection {
                    service,
                    shared,
                    child: Mutex::new(None),
                    stderr: None,
                }),
                Err(_) => {
                    let mut e = start_error(format!(
                        "MCP server `{}` at {} did not answer `initialize` within {} s",
                        entry.name,
                        redact_url(&url),
                        options.start_timeout.as_secs_f64()
                    ));
                    e.code = ErrorCode::Timeout;
                    Err(e)
                }
                Ok(Err(e)) => Err(start_error(format!(
                    "MCP server `{}` at {} failed to initialize: {e}",
                    entry.name,
                    redact_url(&url)
                ))),
            }
        }
    }
}

/// Validate arguments; the first error names its field.
fn check_arguments(
    validator: &jsonschema::Validator,
    instance: &Value,
    path: &str,
) -> Result<(), CallError> {
    use jsonschema::error::ValidationErrorKind;
    let Some(error) = validator.iter_errors(instance).next() else {
        return Ok(());
    };
    let pointer = error.instance_path.as_str().to_string();
    let mut field: Vec<String> = pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    match &error.kind {
        ValidationErrorKind::Required { property } => {
            field.push(
                property
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| property.to_string()),
            );
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            if let Some(u) = unexpected.first() {
                field.push(u.clone());
            }
        }
        _ => {}
    }
    let field = field.join(".");
    let what = match &error.kind {
        ValidationErrorKind::Required { .. } => "is required".to_string(),
        ValidationErrorKind::AdditionalProperties { .. } => {
            "is not an argument of this tool".to_string()
        }
        _ => error.to_string(),
    };
    Err(CallError::invalid_argument(
        path,
        &field,
        format!("{path}: argument `{field}` {what}"),
    ))
}

/// The text items of a tool result, joined and bounded (for a one-line message).
fn content_text(content: &Value) -> String {
    let text: Vec<&str> = content
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let text = text.join(" ").replace('\n', " ");
    if text.chars().count() > 500 {
        format!("{}...", text.chars().take(500).collect::<String>())
    } else {
        text
    }
}

/// The last few lines of a text, on one line.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = lines.len().saturating_sub(3);
    lines[start..].join(" | ")
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
