//! Helpers shared by the test files.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// `host-harness/mcp/tests/peers`: the npm packages of the peers not written here.
pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// The command that installs the peers, for failure messages.
pub const INSTALL: &str = "npm ci --prefix host-harness/mcp/tests/peers";

/// Fail (never skip) when Node or an installed peer is missing: these tests are the only
/// check of interoperability, so a machine without them must not pass silently.
pub fn require_peer(relative: &str) -> PathBuf {
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "`node` is required by the MCP interoperability tests and was not found: install Node.js \
             (20 or later), then run `{INSTALL}`"
        ),
    }
    let path = peers_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `{INSTALL}` (from the repository root)",
        path.display()
    );
    path
}

/// The reference server of the TypeScript SDK (`@modelcontextprotocol/server-everything`).
pub fn everything_server() -> PathBuf {
    require_peer("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}
