//! The `kosmo` command line (clap 4):
//!
//! - `integrations:lua [FILE] [--eval CODE] [--json] [--force] [--memory-limit BYTES]
//!   [--cpu-limit SECONDS] [--sandbox] [--repl]`: run a Lua script against Klaviyo;
//! - `integrations:call klaviyo.<fn> [--args JSON | --name value ...]`: one call, same envelope;
//! - `integrations:configure klaviyo --account NAME --set api_key=KEY ...`: store an account;
//! - `integrations:docs [klaviyo[.fn]]`: the docs generated from the WIT.
//!
//! Exit codes: 0 success, 1 the script (or call) failed, 2 no code or a wrong option.

mod accounts;
mod call;
mod configure;
mod context;
mod envelope;
mod redact;
mod repl;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub use accounts::{Store, StoredAccount, home_dir};
pub use envelope::Envelope;
pub use redact::Redactor;

/// Exit code of a script or call that failed.
pub const EXIT_FAILURE: i32 = 1;
/// Exit code of a usage error: no code, a wrong option.
pub const EXIT_USAGE: i32 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "kosmo",
    version,
    about = "Run Lua against Klaviyo through a sandboxed WebAssembly component",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a Lua script with `app.integrations.klaviyo` (from FILE, --eval, or standard input).
    #[command(name = "integrations:lua")]
    Lua(LuaArgs),
    /// Call one Klaviyo function: `kosmo integrations:call klaviyo.get_profile --profile_id ID`.
    #[command(name = "integrations:call")]
    Call(CallArgs),
    /// Store a named Klaviyo account (key, base URL, read/write policy) under $KOSMO_HOME.
    #[command(name = "integrations:configure")]
    Configure(ConfigureArgs),
    /// Show the documentation: `klaviyo` or `klaviyo.<function>`.
    #[command(name = "integrations:docs")]
    Docs(DocsArgs),
}

/// Options shared by the commands that call Klaviyo.
#[derive(Args, Debug, Clone, Default)]
struct RunOptions {
    /// Print one JSON object (success, output, error, result, execution_time_ms, memory_usage,
    /// integration_calls, meta).
    #[arg(long)]
    json: bool,
    /// Lift `ask` and `deny` permissions for this run (reported as meta.permission_bypassed).
    #[arg(long)]
    force: bool,
    /// Run every account against a local Klaviyo emulator with throwaway keys.
    #[arg(long)]
    sandbox: bool,
}

#[derive(Args, Debug)]
struct LuaArgs {
    /// Lua file to run (`-` for standard input).
    file: Option<PathBuf>,
    /// Lua code to run.
    #[arg(long, short = 'e', value_name = "CODE")]
    eval: Option<String>,
    #[command(flatten)]
    run: RunOptions,
    /// Memory the Lua state may use, in bytes (suffixes K, M, G allowed); default 64M.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    memory_limit: Option<usize>,
    /// Lua execution time allowed, in seconds (waiting for Klaviyo does not count); default 30.
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    cpu_limit: Option<Duration>,
    /// Read and run standard input line by line, keeping state between lines.
    #[arg(long, conflicts_with_all = ["file", "eval"])]
    repl: bool,
}

#[derive(Args, Debug)]
struct CallArgs {
    /// The function, e.g. `klaviyo.create_profile`.
    function: String,
    /// Arguments as a JSON object.
    #[arg(long, value_name = "JSON")]
    args: Option<String>,
    /// The account to use (default: the default account).
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
    #[command(flatten)]
    run: RunOptions,
    /// Arguments as `--name value` (or `--name=value`) pairs.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_name = "--NAME VALUE")]
    pairs: Vec<String>,
}

#[derive(Args, Debug)]
struct ConfigureArgs {
    /// The integration: `klaviyo`.
    integration: String,
    /// The account's name (`default` is used when none is named in Lua).
    #[arg(long, value_name = "NAME", default_value = "default")]
    account: String,
    /// A setting: `api_key=KEY` (`api_key=-` reads it from standard input) or `base_url=URL`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Policy for reads: allow, ask or deny.
    #[arg(long, value_name = "POLICY")]
    read: Option<crate::lua::Access>,
    /// Policy for writes: allow, ask or deny.
    #[arg(long, value_name = "POLICY")]
    write: Option<crate::lua::Access>,
    /// List the stored accounts (never their keys).
    #[arg(long, conflicts_with_all = ["set", "read", "write", "remove"])]
    list: bool,
    /// Remove the account.
    #[arg(long, conflicts_with_all = ["set", "read", "write"])]
    remove: bool,
}

#[derive(Args, Debug)]
struct DocsArgs {
    /// `klaviyo` or `klaviyo.<function>`.
    topic: Option<String>,
    /// Search the docs instead.
    #[arg(long, value_name = "WORDS", conflicts_with = "topic")]
    search: Option<String>,
    /// List the topics.
    #[arg(long, conflicts_with_all = ["topic", "search"])]
    list: bool,
}

fn parse_bytes(text: &str) -> Result<usize, String> {
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

fn parse_seconds(text: &str) -> Result<Duration, String> {
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
        Command::Lua(a) => run::lua(a),
        Command::Call(a) => call::call(a),
        Command::Configure(a) => configure::configure(a),
        Command::Docs(a) => docs_command(a),
    }
}

/// Print a clap error (help and version are not errors) without any key given on the command
/// line, and exit 2.
fn usage_error(e: clap::Error, args: &[std::ffi::OsString]) -> i32 {
    use clap::error::ErrorKind;
    let keys = args.iter().filter_map(|a| {
        let a = a.to_string_lossy();
        a.split_once("api_key=").map(|(_, k)| k.to_string())
    });
    let redactor = Redactor::new(keys.chain(std::env::var("KLAVIYO_API_KEY").ok()));
    let text = redactor.text(&e.render().to_string());
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            print!("{text}");
            0
        }
        _ => {
            eprint!("{text}");
            EXIT_USAGE
        }
    }
}

fn docs_command(a: DocsArgs) -> i32 {
    let catalog = crate::docs::catalog();
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
        for t in hits {
            println!("{:<32} {}", t.topic, t.summary);
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

#[cfg(test)]
mod tests {
    use super::*;

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
