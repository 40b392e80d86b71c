//! `kosmo-mcp`: the Model Context Protocol both ways, on the official Rust SDK (`rmcp`).
//!
//! - As a **client** of the MCP servers a user configured ([`config`], [`client`]): the
//!   `.mcp.json` / `$KOSMO_HOME/mcp.json` files MCP users already keep, servers started on
//!   first use and stopped with the session, tools listed and called under kosmo's rules:
//!   arguments checked against the tool's input schema before sending, a permission policy
//!   per server, call records, every failure a [`kosmo_runtime::CallError`] naming server and
//!   tool, and every wait bounded. This is what `app.mcp.*`, `mcp.*` and `kosmo mcp:lua`
//!   build on.
//! - As a **server** ([`server`]): each Klaviyo function as an MCP tool `klaviyo_<function>`
//!   with schemas and annotations generated from the WIT, calls going through
//!   [`kosmo_runtime::Host::invoke`] (permissions, keys added at egress, records), for
//!   `kosmo mcp:serve`.
//!
//! Modules, one concern each:
//! - [`config`]: reading, validating and editing the configuration files;
//! - [`client`]: [`McpClients`], the connections to configured servers;
//! - [`http`]: the streamable-HTTP client transport over kosmo's hyper/rustls stack (rmcp's
//!   own uses reqwest, a second HTTP stack);
//! - [`server`]: [`KlaviyoServer`], [`ServeOptions`], [`ElicitationPrompter`] and
//!   [`serve_stdio`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kosmo_mcp::{ClientOptions, McpClients, McpConfig};
//! let clients = McpClients::new(McpConfig::load_default()?, ClientOptions::default());
//! for tool in clients.tools("everything").await? {
//!     println!("{}: {}", tool.name, tool.description.unwrap_or_default());
//! }
//! let echoed = clients
//!     .call("everything", "echo", &serde_json::json!({"message": "hi"}))
//!     .await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
// `CallError` is the one error model of every surface and is returned unboxed everywhere
// (`kosmo_runtime::Host::invoke` included); boxing it here only would split the API.
#![allow(clippy::result_large_err)]

pub mod client;
pub mod config;
pub mod http;
pub mod server;

pub use client::{ClientOptions, McpClients, ServerInfo, ToolInfo};
pub use config::{ConfigError, McpConfig, Permissions, ServerEntry, Source, Transport};
pub use server::{
    ElicitationPrompter, KlaviyoServer, ServeError, ServeOptions, serve_io, serve_stdio, tool_for,
};

/// The rmcp version this crate is built on (its API moves quickly between releases).
pub const RMCP_VERSION: &str = "3.11.0";
