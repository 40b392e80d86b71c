//! The command line's shape (clap 4): commands, their options, and the exit codes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use kosmo_runtime::Access;

/// Exit code of a script or call that failed.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code of a usage error: no code, a wrong option.
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "kosmo",
    version,
    about = "Run Lua against Klaviyo through a sandboxed WebAssembly component",
    propagate_version = true,
    after_help = TOP_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a Lua script with `app.integrations.klaviyo` (from FILE, --eval, or standard input).
    #[command(name = "integrations:lua", after_help = LUA_EXAMPLES)]
    Lua(LuaArgs),
    /// Call one Klaviyo function: `kosmo integrations:call klaviyo.get_profile --profile_id ID`.
    #[command(name = "integrations:call", after_help = CALL_EXAMPLES)]
    Call(CallArgs),
    /// Store a named Klaviyo account (key, base URL, read/write policy) under $KOSMO_HOME.
    #[command(name = "integrations:configure", after_help = CONFIGURE_EXAMPLES)]
    Configure(ConfigureArgs),
    /// Prove an account's key works: one cheap read (`list_lists` with limit 1), timed.
    #[command(name = "integrations:check", after_help = CHECK_EXAMPLES)]
    Check(CheckArgs),
    /// Show the documentation: `klaviyo` or `klaviyo.<function>`.
    #[command(name = "integrations:docs", after_help = DOCS_EXAMPLES)]
    Docs(DocsArgs),
    /// `integrations:lua` without `app.integrations`: a Lua script over the configured MCP
    /// servers (`app.mcp.*`, `mcp.*`), same options, envelope and exit codes.
    #[command(name = "mcp:lua", after_help = MCP_LUA_EXAMPLES)]
    McpLua(LuaArgs),
    /// Add, list or remove MCP servers in $KOSMO_HOME/mcp.json (never printing env or header
    /// values).
    #[command(name = "mcp:configure", after_help = MCP_CONFIGURE_EXAMPLES)]
    McpConfigure(McpConfigureArgs),
    /// Serve the Klaviyo functions as MCP tools (`klaviyo_<function>`) on standard input and
    /// output until it closes; logs go to standard error.
    #[command(name = "mcp:serve", after_help = MCP_SERVE_EXAMPLES)]
    McpServe(McpServeArgs),
    /// Serve the Klaviyo emulator on loopback until Ctrl-C: every API key gets its own
    /// account, kept across runs (a `--sandbox` run gets a fresh one). Prints its URL first.
    #[command(name = "emulator", after_help = EMULATOR_EXAMPLES)]
    Emulator(EmulatorArgs),
    /// Print a completion script for your shell on standard output.
    #[command(name = "completions", after_help = COMPLETIONS_EXAMPLES)]
    Completions(CompletionsArgs),
}

/// The top level's help after the commands: examples, the environment and the exit codes.
const TOP_HELP: &str = "\
Examples:
  kosmo integrations:lua --sandbox --eval 'dump(app.integrations.klaviyo.list_lists({limit = 1}))'
  kosmo integrations:configure klaviyo --set api_key=-     # then paste the key
  kosmo integrations:check
  kosmo integrations:lua --repl
  kosmo <COMMAND> --help                                    # each command's options and examples

Environment:
  KLAVIYO_API_KEY            The `default` account's private key (overrides a stored `default`,
                             whose read/write policy still applies)
  KLAVIYO_BASE_URL           Where that account's API is (default https://a.klaviyo.com); used
                             only with KLAVIYO_API_KEY
  KOSMO_HOME                 Accounts, MCP servers, the compiled-component cache and the REPL
                             history (default ~/.kosmo; must be a directory private to you)
  KOSMO_ALLOW_INSECURE_HTTP  1 allows http:// base URLs to hosts other than loopback (the key
                             then crosses the network in clear text)

Exit codes:
  0  success
  1  the script, call or check failed (the error on stderr, or in the envelope with --json)
  2  usage: no code, a wrong option or setting (with --json, an envelope with error code `usage`)";

const LUA_EXAMPLES: &str = "\
Examples:
  kosmo integrations:lua --sandbox --eval 'dump(app.integrations.klaviyo.list_lists({limit = 1}))'
  kosmo integrations:lua examples/onboarding.lua --sandbox --json
  echo 'print(docs.read(\"klaviyo\"))' | kosmo integrations:lua
  kosmo integrations:lua --repl --sandbox     # interactive: history, Ctrl-C stops a line
  kosmo integrations:lua report.lua --force   # writes without asking, for this run only";

const CALL_EXAMPLES: &str = "\
Examples:
  kosmo integrations:call klaviyo.list_lists --limit 5
  kosmo integrations:call klaviyo.get_profile --profile_id 01H... --json
  kosmo integrations:call klaviyo.create_profile --args '{\"email\": \"ada@example.com\"}' --sandbox";

const CONFIGURE_EXAMPLES: &str = "\
Examples:
  kosmo integrations:configure klaviyo --set api_key=-          # the key is read without echo
  kosmo integrations:configure klaviyo --account shop --set api_key=- --write allow
  kosmo integrations:configure klaviyo --account shop --read ask
  kosmo integrations:configure klaviyo --list
  kosmo integrations:configure klaviyo --account shop --remove";

const CHECK_EXAMPLES: &str = "\
Examples:
  kosmo integrations:check
  kosmo integrations:check --account shop --json
  kosmo integrations:check --sandbox";

const DOCS_EXAMPLES: &str = "\
Examples:
  kosmo integrations:docs
  kosmo integrations:docs klaviyo.create_profile
  kosmo integrations:docs --search \"subscribe email\"
  kosmo integrations:docs --list";

const MCP_LUA_EXAMPLES: &str = "\
Examples:
  kosmo mcp:lua --eval 'dump(mcp.servers())' --json
  kosmo mcp:lua --eval 'return app.mcp.everything.echo{message = \"hi\"}'";

const MCP_CONFIGURE_EXAMPLES: &str = "\
Examples:
  kosmo mcp:configure everything --command npx --arg -y --arg @modelcontextprotocol/server-everything
  kosmo mcp:configure docs --url https://example.com/mcp --header 'Authorization=Bearer ${TOKEN}'
  kosmo mcp:configure --list
  kosmo mcp:configure everything --remove";

const MCP_SERVE_EXAMPLES: &str = "\
Examples:
  kosmo mcp:serve --sandbox
  kosmo mcp:serve --account shop --read-only";

const EMULATOR_EXAMPLES: &str = "\
Examples:
  kosmo emulator --port 8787
  KLAVIYO_API_KEY=pk_test_anything KLAVIYO_BASE_URL=http://127.0.0.1:8787 kosmo integrations:check";

const COMPLETIONS_EXAMPLES: &str = "\
Examples:
  kosmo completions bash > ~/.local/share/bash-completion/completions/kosmo
  kosmo completions zsh > \"${fpath[1]}/_kosmo\"
  kosmo completions fish > ~/.config/fish/completions/kosmo.fish";

/// Options shared by the commands that call Klaviyo.
#[derive(Args, Debug, Clone, Default)]
pub struct RunOptions {
    /// Print one JSON object (success, output, error, result, execution_time_ms, memory_usage,
    /// integration_calls, meta). At most 8 MiB: larger parts are cut with a `[kosmo: truncated`
    /// marker and meta.truncated; past 1000 calls, integration_calls lists the first 1000 and
    /// meta.integration_calls_dropped counts the rest.
    #[arg(long)]
    pub json: bool,
    /// Lift `ask` and `deny` permissions for this run (reported as meta.permission_bypassed).
    #[arg(long)]
    pub force: bool,
    /// Run every account against a local Klaviyo emulator with throwaway keys.
    #[arg(long)]
    pub sandbox: bool,
}

#[derive(Args, Debug)]
pub struct LuaArgs {
    /// Lua file to run (`-` for standard input); at most 16 MiB.
    pub file: Option<PathBuf>,
    /// Lua code to run.
    #[arg(long, short = 'e', value_name = "CODE")]
    pub eval: Option<String>,
    #[command(flatten)]
    pub run: RunOptions,
    /// Memory the Lua state may use, in bytes (suffixes K, M, G allowed); default 64M.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub memory_limit: Option<usize>,
    /// Lua execution time allowed, in seconds (waiting for Klaviyo does not count); default 30.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    pub cpu_limit: Option<Duration>,
    /// Read and run standard input line by line, keeping state between lines (on a terminal:
    /// line editing, history, `help`, Ctrl-C stops the running line).
    #[arg(long, conflicts_with_all = ["file", "eval"])]
    pub repl: bool,
}

#[derive(Args, Debug)]
pub struct CallArgs {
    /// The function, e.g. `klaviyo.create_profile`.
    pub function: String,
    /// Arguments as a JSON object.
    #[arg(long, value_name = "JSON")]
    pub args: Option<String>,
    /// The account to use (default: the default account).
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    #[command(flatten)]
    pub run: RunOptions,
    /// Arguments as `--name value` (or `--name=value`) pairs.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "--NAME VALUE")]
    pub pairs: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The account to check (default: the default account).
    #[arg(long, value_name = "NAME")]
    pub account: Option<String>,
    #[command(flatten)]
    pub run: RunOptions,
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::aot::Shell,
}

#[derive(Args, Debug)]
pub struct ConfigureArgs {
    /// The integration: `klaviyo`.
    pub integration: String,
    /// The account's name (`default` is used when none is named in Lua).
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub account: String,
    /// A setting: `api_key=KEY` (`api_key=-` reads it without echo from the terminal, or from
    /// piped standard input; 8-256 printable
    /// ASCII characters, no spaces) or `base_url=URL` (https, or http to localhost/127.0.0.1/[::1]
    /// unless KOSMO_ALLOW_INSECURE_HTTP=1; changing it needs api_key again).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Policy for reads: allow, ask or deny.
    #[arg(long, value_name = "POLICY")]
    pub read: Option<Access>,
    /// Policy for writes: allow, ask or deny.
    #[arg(long, value_name = "POLICY")]
    pub write: Option<Access>,
    /// List the stored accounts (never their keys).
    #[arg(long, conflicts_with_all = ["set", "read", "write", "remove"])]
    pub list: bool,
    /// Remove the account.
    #[arg(long, conflicts_with_all = ["set", "read", "write"])]
    pub remove: bool,
}

#[derive(Args, Debug)]
pub struct McpConfigureArgs {
    /// The server's name: letters, digits, `_` and `-`.
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// A stdio server: the program to start.
    #[arg(long, value_name = "CMD", conflicts_with_all = ["url", "headers"])]
    pub command: Option<String>,
    /// An argument of the program (repeat for more).
    #[arg(
        long = "arg",
        value_name = "ARG",
        allow_hyphen_values = true,
        requires = "command"
    )]
    pub args: Vec<String>,
    /// An environment variable for the program, `K=V` (`${VAR}` expands when it starts).
    #[arg(long = "env", value_name = "K=V", requires = "command")]
    pub env: Vec<String>,
    /// A streamable-HTTP server: its URL.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// A header sent to the server, `K=V` (`${VAR}` expands when it connects).
    #[arg(long = "header", value_name = "K=V", requires = "url")]
    pub headers: Vec<String>,
    /// Policy for its tools marked readOnlyHint: allow, ask or deny (default allow).
    #[arg(long, value_name = "POLICY")]
    pub read: Option<Access>,
    /// Policy for its other tools: allow, ask or deny (default ask).
    #[arg(long, value_name = "POLICY")]
    pub write: Option<Access>,
    /// List the servers of $KOSMO_HOME/mcp.json and ./.mcp.json (never env or header values).
    #[arg(long, conflicts_with_all = ["name", "command", "url", "read", "write", "remove"])]
    pub list: bool,
    /// Remove the server from $KOSMO_HOME/mcp.json.
    #[arg(long, conflicts_with_all = ["command", "url", "read", "write"])]
    pub remove: bool,
    /// Print one JSON object (success, result, error, meta) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct McpServeArgs {
    /// Serve a fresh Klaviyo emulator with throwaway keys (writes allowed, user-generated
    /// content served: the data is the caller's own).
    #[arg(long)]
    pub sandbox: bool,
    /// An account the tools may use (repeat for more; the first is the default). Default:
    /// the default account.
    #[arg(long = "account", value_name = "NAME")]
    pub accounts: Vec<String>,
    /// Serve reads only: write tools are not listed and are refused.
    #[arg(long)]
    pub read_only: bool,
    /// Serve the tools whose results carry user-generated content (profile and event
    /// properties written by a shop's visitors: a prompt-injection path into the agent).
    #[arg(long)]
    pub allow_user_content: bool,
    /// Lift `ask` and `deny` permissions for the whole session.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct EmulatorArgs {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 8787)]
    pub port: u16,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// Do not validate requests against Klaviyo's OpenAPI slices (on by default).
    #[arg(long)]
    pub no_validate: bool,
    /// Answer 429 once an operation's burst or steady rate limit is exceeded.
    #[arg(long)]
    pub enforce_rate_limits: bool,
}

#[derive(Args, Debug)]
pub struct DocsArgs {
    /// `klaviyo` or `klaviyo.<function>`.
    pub topic: Option<String>,
    /// Search the docs instead.
    #[arg(long, value_name = "WORDS", conflicts_with = "topic")]
    pub search: Option<String>,
    /// List the topics.
    #[arg(long, conflicts_with_all = ["topic", "search"])]
    pub list: bool,
}

pub fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim().to_ascii_uppercase();
    let t = t
        .strip_suffix("IB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(&t);
    let (digits, scale) = match t.chars().last() {
        Some('K') => (&t[..t.len() - 1], 1usize << 10),
        Some('M') => (&t[..t.len() - 1], 1 << 20),
        Some('G') => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    let n: usize = digits
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of bytes"))?;
    let bytes = n
        .checked_mul(scale)
        .ok_or_else(|| format!("`{text}` is too large"))?;
    if bytes < 1 << 20 {
        return Err(format!(
            "`{text}` is too small: at least 1M (1048576 bytes)"
        ));
    }
    Ok(bytes)
}

pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let s: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(s.is_finite() && s > 0.0 && s <= 86_400.0) {
        return Err(format!(
            "`{text}` must be more than 0 and at most 86400 seconds"
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command, and any added later, shows examples in its help; the top level also
    /// lists the environment and the exit codes.
    #[test]
    fn every_command_has_examples() {
        let mut top = Cli::command();
        let help = top.render_long_help().to_string();
        for section in [
            "Examples:",
            "Environment:",
            "Exit codes:",
            "KOSMO_ALLOW_INSECURE_HTTP",
        ] {
            assert!(
                help.contains(section),
                "top-level help lacks {section}:\n{help}"
            );
        }
        let mut names = Vec::new();
        for sub in Cli::command().get_subcommands_mut() {
            let help = sub.render_long_help().to_string();
            let name = sub.get_name().to_string();
            assert!(
                help.contains("Examples:\n  kosmo "),
                "{name} has no examples:\n{help}"
            );
            names.push(name);
        }
        assert!(names.len() >= 10, "{names:?}");
    }

    #[test]
    fn byte_and_second_options() {
        assert_eq!(parse_bytes("64M"), Ok(64 << 20));
        assert_eq!(parse_bytes("2097152"), Ok(2 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert!(parse_bytes("12").is_err());
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_seconds("0").is_err());
        assert!(parse_seconds("nan").is_err());
    }
}
