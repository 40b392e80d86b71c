//! The `mcp` docs topics: `docs.read("mcp")` (the configured servers and their tools),
//! `docs.read("mcp.<server>")` (each tool with its description, kind and input schema) and
//! `docs.read("mcp.<server>.<tool>")`. They describe what the live servers offer (issue 11),
//! so reading them starts the servers; a server that cannot start is described by its error.

use serde_json::{Value, json};

use kosmo_runtime::names::did_you_mean;
use kosmo_runtime::{CallError, ErrorCode};

use crate::mcp::ToolServers;

/// Longest description shown per tool in the `mcp` overview.
const SUMMARY_CHARS: usize = 160;

/// The topics `docs.list()` adds when servers are configured.
pub(crate) fn topics(servers: &[Value]) -> Vec<Value> {
    let mut topics = vec![json!({
        "topic": "mcp",
        "summary": "The configured MCP servers and their tools (mcp.servers, mcp.tools, mcp.call, app.mcp)",
    })];
    for s in servers {
        let name = str_of(s, "name");
        topics.push(json!({
            "topic": format!("mcp.{name}"),
            "summary": format!(
                "MCP server `{name}` ({}): its tools, their descriptions and input schemas",
                str_of(s, "transport")
            ),
        }));
    }
    topics
}

/// The text of `topic` (`mcp`, `mcp.<server>` or `mcp.<server>.<tool>`).
pub(crate) async fn read(servers: &dyn ToolServers, topic: &str) -> Result<String, CallError> {
    let configured = servers.servers();
    let topic = topic.trim();
    if topic == "mcp" {
        return Ok(overview(servers, &configured).await);
    }
    let rest = topic.strip_prefix("mcp.").unwrap_or(topic);
    // Server names have no `.` (kosmo_mcp::config::check_server_name).
    let (server, tool) = match rest.split_once('.') {
        Some((s, t)) => (s, Some(t)),
        None => (rest, None),
    };
    let Some(entry) = configured.iter().find(|s| str_of(s, "name") == server) else {
        let names: Vec<&str> = configured.iter().map(|s| str_of(s, "name")).collect();
        let hint = match did_you_mean(server, names.iter().copied()) {
            h if !h.is_empty() => h,
            _ if names.is_empty() => " No MCP server is configured.".to_string(),
            _ => format!(" Configured: {}.", names.join(", ")),
        };
        return Err(CallError::new(
            ErrorCode::UnknownName,
            "docs.read",
            format!("docs.read: unknown topic `{topic}`: no MCP server `{server}`.{hint}"),
        ));
    };
    let tools = servers.tools(server.to_string()).await?;
    match tool {
        None => Ok(server_doc(entry, &tools)),
        Some(tool) => match tools.iter().find(|t| str_of(t, "name") == tool) {
            Some(t) => Ok(tool_doc(server, t)),
            None => {
                let hint = did_you_mean(tool, tools.iter().map(|t| str_of(t, "name")));
                Err(CallError::new(
                    ErrorCode::UnknownName,
                    "docs.read",
                    format!("docs.read: MCP server `{server}` has no tool `{tool}`.{hint}"),
                ))
            }
        },
    }
}

/// `docs.read("mcp")`.
async fn overview(servers: &dyn ToolServers, configured: &[Value]) -> String {
    let mut out = String::from(
        "# MCP servers\n\n\
         Configured in `.mcp.json` (current directory) and `$KOSMO_HOME/mcp.json`. Call a tool with\n\
         `app.mcp.<server>.<tool>(args)`, or `mcp.call(server, tool, args)` when a name is not a Lua\n\
         identifier; `mcp.tools(server)` lists the tools, `docs.read(\"mcp.<server>\")` shows their\n\
         input schemas. A result is the tool's structuredContent, else `{content = {...}}`. Tools\n\
         marked readOnlyHint are reads; every other tool is a write (asked, unless the server's\n\
         `permissions` or --force allow it).\n",
    );
    if configured.is_empty() {
        out.push_str("\nNo MCP server is configured.\n");
        return out;
    }
    for s in configured {
        let name = str_of(s, "name");
        out.push_str(&format!("\n## {name} ({})\n", where_of(s)));
        match servers.tools(name.to_string()).await {
            Ok(tools) => {
                for t in &tools {
                    let summary = first_chars(str_of(t, "description"), SUMMARY_CHARS);
                    out.push_str(&format!(
                        "- {} ({}): {summary}\n",
                        str_of(t, "name"),
                        kind_of(t)
                    ));
                }
                if tools.is_empty() {
                    out.push_str("(no tools)\n");
                }
            }
            Err(e) => out.push_str(&format!("(unavailable: {}: {})\n", e.code, e.message)),
        }
    }
    out
}

/// `docs.read("mcp.<server>")`.
fn server_doc(entry: &Value, tools: &[Value]) -> String {
    let name = str_of(entry, "name");
    let mut out = format!(
        "# MCP server `{name}`\n\n{} ({} tools). Call: app.mcp.{name}.<tool>(args) or \
         mcp.call(\"{name}\", tool, args).\n",
        where_of(entry),
        tools.len()
    );
    for t in tools {
        out.push('\n');
        out.push_str(&tool_doc(name, t));
    }
    out
}

/// One tool: name, kind, description, input schema.
fn tool_doc(server: &str, tool: &Value) -> String {
    let name = str_of(tool, "name");
    let schema = tool
        .get("input_schema")
        .map(|s| serde_json::to_string_pretty(s).unwrap_or_default())
        .unwrap_or_else(|| "{}".into());
    format!(
        "## {server}.{name} ({})\n\n{}\n\nInput schema:\n{schema}\n",
        kind_of(tool),
        str_of(tool, "description")
    )
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn kind_of(tool: &Value) -> &'static str {
    if tool.get("read_only").and_then(Value::as_bool) == Some(true) {
        "read"
    } else {
        "write"
    }
}

/// `stdio: command args...` or `http: url` (the entry is already without secrets).
fn where_of(entry: &Value) -> String {
    match str_of(entry, "transport") {
        "http" => format!("http: {}", str_of(entry, "url")),
        kind => {
            let args: Vec<&str> = entry
                .get("args")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!("{kind}: {} {}", str_of(entry, "command"), args.join(" "))
                .trim_end()
                .to_string()
        }
    }
}

fn first_chars(text: &str, max: usize) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > max {
        format!("{}...", line.chars().take(max).collect::<String>())
    } else {
        line.to_string()
    }
}
