//! The configured MCP servers of a run (`.mcp.json` in the current directory and
//! `$KOSMO_HOME/mcp.json`), as `kosmo_mcp::McpClients` sharing the run's [`Host`], and the
//! adapter that gives them to Lua ([`kosmo_lua::ToolServers`]).
//!
//! Sharing the host puts MCP tool calls under the run's permission state (`--force`, the
//! terminal prompter, "all for the rest of the run", `meta.permission_bypassed`) and their
//! records in `integration_calls` in call order with the Klaviyo calls (issue 11).

use std::sync::Arc;

use serde_json::{Value, json};

use kosmo_lua::{BoxFuture, ToolServers};
use kosmo_mcp::{ClientOptions, McpClients, McpConfig};
use kosmo_runtime::{CallError, Host, Kind};

use crate::args::EXIT_USAGE;
use crate::context::SetupError;
use crate::redact::Redactor;

/// Clients of the configured servers (none configured is fine); a file kosmo cannot read is
/// a usage error naming it.
pub(crate) fn clients(
    host: &Arc<Host>,
    redactor: &Redactor,
) -> Result<Arc<McpClients>, SetupError> {
    let config = McpConfig::load_default().map_err(|e| SetupError {
        message: format!("MCP configuration: {e}"),
        exit: EXIT_USAGE,
        redactor: redactor.clone(),
    })?;
    let options = ClientOptions {
        host: Some(host.clone()),
        ..ClientOptions::default()
    };
    Ok(Arc::new(McpClients::new(config, options)))
}

/// [`McpClients`] as Lua's [`ToolServers`].
pub(crate) struct Servers(pub(crate) Arc<McpClients>);

impl ToolServers for Servers {
    fn servers(&self) -> Vec<Value> {
        self.0.servers().iter().map(|s| s.entry.clone()).collect()
    }

    fn tools(&self, server: String) -> BoxFuture<'_, Result<Vec<Value>, CallError>> {
        Box::pin(async move {
            let tools = self.0.tools(&server).await?;
            Ok(tools
                .iter()
                .map(|t| {
                    let mut v = t.to_json();
                    if let Value::Object(m) = &mut v {
                        m.insert("read_only".into(), json!(t.kind == Kind::Read));
                    }
                    v
                })
                .collect())
        })
    }

    fn call(
        &self,
        server: String,
        tool: String,
        args: Value,
    ) -> BoxFuture<'_, Result<Value, CallError>> {
        Box::pin(async move { self.0.call(&server, &tool, &args).await })
    }
}
