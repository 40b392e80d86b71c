//! The `kosmo` command line (clap 4):
//!
//! - `integrations:lua [FILE] [--eval CODE] [--json] [--force] [--memory-limit BYTES]
//!   [--cpu-limit SECONDS] [--sandbox] [--repl]`: run a Lua script against Klaviyo;
//! - `integrations:call klaviyo.<fn> [--args JSON | --name value ...]`: one call, same envelope;
//! - `integrations:configure klaviyo --account NAME --set api_key=- ...`: store an account;
//! - `integrations:check [--account NAME] [--json] [--sandbox]`: one cheap read that proves a
//!   key works;
//! - `integrations:docs [klaviyo[.fn]]`: the docs generated from the WIT;
//! - `mcp:lua [FILE] [--eval CODE] ...`: `integrations:lua` without `app.integrations`, over
//!   the MCP servers of `.mcp.json` and `$KOSMO_HOME/mcp.json` (`integrations:lua` has them too);
//! - `mcp:configure NAME (--command CMD [--arg A]... [--env K=V]... | --url URL [--header K=V]...)`,
//!   `--list`, `--remove`: the servers of `$KOSMO_HOME/mcp.json`;
//! - `mcp:serve [--sandbox] [--account NAME]... [--read-only] [--allow-user-content]`: the
//!   Klaviyo functions as an MCP server on stdio;
//! - `emulator [--port N] [--tls-cert PEM --tls-key PEM]`: the Klaviyo emulator as a server;
//! - `completions SHELL`: a completion script (clap_complete) on stdout.
//!
//! Exit codes: 0 success, 1 the script (or call) failed, 2 no code or a wrong option (with
//! `--json` among the arguments, a usage error is an envelope on stdout too).

#![deny(missing_docs)]

mod accounts;
mod args;
mod call;
mod check;
mod configure;
mod context;
mod ctrl_c;
mod emulator;
mod envelope;
mod mcp;
mod mcp_configure;
mod mcp_serve;
mod prompt;
mod redact;
mod repl;
mod run;
mod watchdog;

use clap::Parser;

pub use accounts::{Store, StoredAccount, home_dir};
pub use envelope::Envelope;
pub use redact::Redactor;

use args::{Cli, Command, CompletionsArgs, DocsArgs, EXIT_FAILURE, EXIT_USAGE, RunOptions};
use kosmo_runtime::ErrorCode;

/// Run `kosmo` with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    run_args(std::env::args_os().collect())
}

/// Run `kosmo` with these arguments (the first is the program name).
pub fn run_args(args: Vec<std::ffi::OsString>) -> i32 {
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => return usage_error(e, &args),
    };
    match cli.command {
        Command::Lua(a) => run::lua(a, true),
        Command::McpLua(a) => run::lua(a, false),
        Command::McpConfigure(a) => mcp_configure::configure(a),
        Command::McpServe(a) => mcp_serve::serve(a),
        Command::Call(a) => call::call(a),
        Command::Configure(a) => configure::configure(a),
        Command::Check(a) => check::check(a),
        Command::Docs(a) => docs_command(a),
        Command::Emulator(a) => emulator::emulator(a),
        Command::Completions(a) => completions(a),
    }
}

/// `completions SHELL`: the script on stdout.
fn completions(a: CompletionsArgs) -> i32 {
    use clap::CommandFactory;
    clap_complete::aot::generate(
        a.shell,
        &mut Cli::command(),
        "kosmo",
        &mut std::io::stdout(),
    );
    0
}

/// Print a clap error (help and version are not errors) without any key given on the command
/// line, and exit 2. With `--json` among the arguments the error is an envelope on stdout
/// (error code `usage`), so a program reading stdout gets JSON whatever went wrong.
fn usage_error(e: clap::Error, args: &[std::ffi::OsString]) -> i32 {
    use clap::error::ErrorKind;
    let keys = args.iter().filter_map(|a| {
        let a = a.to_string_lossy();
        a.split_once("api_key=").map(|(_, k)| k.to_string())
    });
    // `mcp:configure` values of `--env K=V` and `--header K=V` often hold tokens.
    let values = args.windows(2).filter_map(|pair| {
        let (flag, value) = (pair[0].to_string_lossy(), pair[1].to_string_lossy());
        ["--env", "--header"]
            .contains(&flag.as_ref())
            .then(|| value.split_once('=').map(|(_, v)| v.to_string()))
            .flatten()
    });
    let inline_values = args.iter().filter_map(|a| {
        let a = a.to_string_lossy();
        let rest = a
            .strip_prefix("--env=")
            .or_else(|| a.strip_prefix("--header="))?;
        rest.split_once('=').map(|(_, v)| v.to_string())
    });
    // A URL's `user:password` on the command line is as secret as a key (finding 8).
    let userinfo = args
        .iter()
        .filter_map(|a| url_userinfo(&a.to_string_lossy()));
    let redactor = Redactor::new(redact::unchecked_keys(
        keys.chain(userinfo)
            .chain(values)
            .chain(inline_values)
            .chain(std::env::var(accounts::KEY_ENV).ok()),
    ));
    let has = |flag: &str| args.iter().skip(1).any(|a| a == flag);
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print!("{}", redactor.text(&e.render().to_string()));
            0
        }
        _ if has("--json") => {
            // `StyledStr`'s Display drops the styling: the message carries no ANSI codes.
            let message = e.render().to_string();
            let options = RunOptions {
                json: true,
                force: has("--force"),
                sandbox: has("--sandbox"),
            };
            let meta = context::bare_meta(&options);
            Envelope::failure(ErrorCode::Usage, message.trim_end(), meta).print(true, &redactor);
            EXIT_USAGE
        }
        _ => {
            eprint!("{}", redactor.text(&e.render().to_string()));
            EXIT_USAGE
        }
    }
}

/// The `user:password` of a URL in `text`, if it has one.
fn url_userinfo(text: &str) -> Option<String> {
    let (_, rest) = text.split_once("://")?;
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| authority[..at].to_string())
}

fn docs_command(a: DocsArgs) -> i32 {
    let catalog = kosmo_runtime::catalog();
    if a.list {
        for t in catalog.list() {
            println!("{:<32} {}", t.topic, t.summary);
        }
        return 0;
    }
    if let Some(q) = a.search {
        let hits = catalog.search(&q);
        if hits.is_empty() {
            eprintln!("error: no_match: nothing in the docs matches `{q}`");
            return EXIT_FAILURE;
        }
        // Each hit, then where it matched (ranked by the catalog, weak hits cut).
        for t in hits {
            println!("{:<32} {}", t.topic, t.summary);
            if !t.snippet.is_empty() {
                println!("    {}", t.snippet);
            }
        }
        return 0;
    }
    match catalog.read(a.topic.as_deref().unwrap_or("klaviyo")) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(message) => {
            eprintln!("error: unknown_topic: {message}");
            EXIT_USAGE
        }
    }
}
