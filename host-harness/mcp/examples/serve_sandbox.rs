//! `KlaviyoServer` on stdio over a fresh emulator: what `kosmo mcp:serve --sandbox` will do,
//! for the interoperability tests (an official SDK client spawns this) until that command
//! exists. Standard output carries MCP only; this program prints nothing else there.
//!
//! Flags: `--read-only`, `--withhold-user-content` (the sandbox serves user-content tools by
//! default: its data is the caller's own, not a shop's visitors'), `--ask` (writes ask, through
//! MCP elicitation when the client supports it, instead of the sandbox's allow).

use std::sync::Arc;
use std::time::Duration;

use kosmo_emulator::Emulator;
use kosmo_mcp::{ElicitationPrompter, KlaviyoServer, ServeOptions, serve_stdio};
use kosmo_runtime::{
    Account, AccountConfig, ApiKey, DEFAULT_ACCOUNT, Host, HostOptions, Policy, Prompter,
    RuntimeConfig,
};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let emulator = match Emulator::start().await {
        Ok(e) => e,
        Err(e) => {
            eprintln!("serve_sandbox: cannot start the emulator: {e}");
            std::process::exit(1);
        }
    };
    // A fresh emulator per process: a fixed key is as private as a random one.
    let account = Account::new(
        DEFAULT_ACCOUNT,
        ApiKey::new("pk_sandbox_mcp_example"),
        &emulator.base_url(),
    )
    .expect("the emulator's URL is a base URL");
    let policy = if flag("--ask") {
        Policy::default()
    } else {
        Policy::default().without_asking()
    };
    let prompter = ElicitationPrompter::new(Duration::from_secs(120));
    // The compiled component is cached beside this binary, so the tests compile it once.
    let cache_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("kosmo-mcp-cache")));
    let host = Host::new(
        vec![AccountConfig { account, policy }],
        HostOptions {
            force: false,
            prompter: Some(prompter.clone() as Arc<dyn Prompter>),
            runtime: RuntimeConfig {
                cache_dir,
                ..RuntimeConfig::default()
            },
        },
    );
    let server = KlaviyoServer::new(
        Arc::new(host),
        ServeOptions {
            read_only: flag("--read-only"),
            allow_user_content: !flag("--withhold-user-content"),
            accounts: Vec::new(),
        },
    )
    .with_prompter(prompter);
    if let Err(e) = serve_stdio(server).await {
        eprintln!("serve_sandbox: {e}");
        std::process::exit(1);
    }
}
