//! `kosmo mcp:serve [--sandbox] [--account NAME]... [--read-only] [--allow-user-content]
//! [--force]`: the Klaviyo functions as MCP tools on standard input and output, over the same
//! accounts, policies and keys as `integrations:lua` (a [`crate::context::Context`]).
//!
//! Standard output carries MCP messages only (MCP spec, transports/stdio: "The server MUST
//! NOT write anything to its stdout that is not a valid MCP message"); what kosmo says goes
//! to standard error. The server ends when its input closes (spec, lifecycle/shutdown, stdio:
//! the client closes the server's input stream).
//!
//! Permission questions are asked through MCP elicitation when the client supports it (there
//! is no terminal: stdin is the protocol); otherwise an `ask` is refused with a message naming
//! `--force` and `configure --write allow`. With `--sandbox`, tools whose results carry
//! user-generated content are served as if `--allow-user-content` were given: the emulator's
//! data is the caller's own, not a shop's visitors' (the reason they are withheld otherwise),
//! and a sandbox should show every tool.

use std::sync::Arc;
use std::time::Duration;

use kosmo_mcp::{ElicitationPrompter, KlaviyoServer, ServeOptions, serve_stdio};
use kosmo_runtime::{DEFAULT_ACCOUNT, ErrorCode, Prompter};

use crate::args::{EXIT_FAILURE, EXIT_USAGE, McpServeArgs, RunOptions};
use crate::context::Context;
use crate::watchdog::tokio_runtime;

/// How long an elicited permission question waits for the client's answer.
const ELICITATION_TIMEOUT: Duration = Duration::from_secs(120);

/// `mcp:serve`.
pub(super) fn serve(args: McpServeArgs) -> i32 {
    let runtime = match tokio_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!(
                "error: {}: cannot start the async runtime: {e}",
                ErrorCode::Setup
            );
            return EXIT_FAILURE;
        }
    };
    let exit = runtime.block_on(async {
        let options = RunOptions {
            json: false,
            force: args.force,
            sandbox: args.sandbox,
        };
        let prompter = ElicitationPrompter::new(ELICITATION_TIMEOUT);
        let ctx = match Context::build_with(&options, Some(prompter.clone() as Arc<dyn Prompter>))
            .await
        {
            Ok(ctx) => ctx,
            Err(e) => return e.report(&options),
        };
        let known = ctx.host.account_names();
        if let Some(missing) = args.accounts.iter().find(|a| !known.contains(a)) {
            eprintln!(
                "error: {}: no Klaviyo account `{missing}` (configured: {}); add it with `kosmo \
                 integrations:configure klaviyo --account {missing} --set api_key=-`",
                ErrorCode::Usage,
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            );
            return EXIT_USAGE;
        }
        if args.accounts.is_empty() && !known.iter().any(|a| a == DEFAULT_ACCOUNT) {
            eprintln!(
                "kosmo mcp:serve: warning: no default Klaviyo account (set KLAVIYO_API_KEY, or give \
                 --account NAME): tool calls will fail with not_configured"
            );
        }
        let serve_options = ServeOptions {
            read_only: args.read_only,
            allow_user_content: args.allow_user_content || args.sandbox,
            accounts: args.accounts.clone(),
        };
        let server = KlaviyoServer::new(ctx.host.clone(), serve_options).with_prompter(prompter);
        eprintln!(
            "kosmo mcp:serve: {} Klaviyo tools on stdio{}{}{}",
            server.listed_tools().len(),
            if args.sandbox { " (sandbox)" } else { "" },
            if args.read_only { ", read-only" } else { "" },
            if args.allow_user_content || args.sandbox {
                ", user-generated content served"
            } else {
                ", user-generated content withheld (--allow-user-content serves it)"
            },
        );
        match serve_stdio(server).await {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {}: {}", ErrorCode::Setup, ctx.redactor.text(&e.to_string()));
                EXIT_FAILURE
            }
        }
    });
    runtime.shutdown_background();
    exit
}
