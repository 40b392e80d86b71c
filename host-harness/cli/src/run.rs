//! `kosmo integrations:lua` and `kosmo mcp:lua`: read the code, set up the session (with the
//! configured MCP servers), run it under a watchdog (in text mode, what it prints shows as it
//! prints it; `log` always goes to stderr as it runs), print the envelope, and stop the servers.

use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;

use serde_json::json;
use tokio::runtime::Runtime;

use kosmo_lua::{Limits, Session, SessionOptions};

use crate::args::{EXIT_USAGE, LuaArgs, RunOptions};
use crate::context::{Context, SetupError};
use crate::envelope::Envelope;
use crate::redact::Redactor;
use crate::watchdog::{spawn_watchdog, tokio_runtime};

/// Largest script `integrations:lua` reads, from a file or standard input (security review,
/// finding 5: reading `/dev/zero` grew without bound, 8.7 GB). Reads stop one byte past it.
pub(crate) const MAX_SCRIPT_BYTES: u64 = 16 << 20;

/// The code to run and its chunk name, or a usage error.
fn read_code(args: &LuaArgs) -> Result<(String, String), String> {
    match (&args.file, &args.eval) {
        (Some(_), Some(_)) => Err("give either FILE or --eval, not both".into()),
        (None, Some(code)) => Ok((code.clone(), "=eval".into())),
        (Some(path), None) if path.as_os_str() == "-" => read_stdin(),
        (Some(path), None) => read_file(path),
        (None, None) if std::io::stdin().is_terminal() => {
            Err("no code: give FILE, --eval CODE, or pipe the script on standard input".into())
        }
        (None, None) => read_stdin(),
    }
}

fn read_file(path: &std::path::Path) -> Result<(String, String), String> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let code = read_capped(file, &path.display().to_string())?;
    Ok((code, format!("@{}", path.display())))
}

fn read_stdin() -> Result<(String, String), String> {
    let code = read_capped(std::io::stdin().lock(), "standard input")?;
    if code.trim().is_empty() {
        return Err("no code: standard input was empty".into());
    }
    Ok((code, "=stdin".into()))
}

/// Read at most [`MAX_SCRIPT_BYTES`] of UTF-8 text from `source` (named `what` in errors).
pub(crate) fn read_capped(source: impl Read, what: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    source
        .take(MAX_SCRIPT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > MAX_SCRIPT_BYTES {
        return Err(too_large(what));
    }
    String::from_utf8(bytes)
        .map_err(|_| format!("cannot read {what}: the script is not UTF-8 text"))
}

/// The usage error of a script past [`MAX_SCRIPT_BYTES`].
pub(crate) fn too_large(what: &str) -> String {
    format!(
        "the script in {what} is larger than the limit of {} MiB ({MAX_SCRIPT_BYTES} bytes)",
        MAX_SCRIPT_BYTES >> 20
    )
}

pub(super) fn limits(args: &LuaArgs) -> Limits {
    let mut limits = Limits::default();
    if let Some(bytes) = args.memory_limit {
        limits.memory_bytes = bytes;
    }
    if let Some(cpu) = args.cpu_limit {
        limits.cpu = cpu;
    }
    limits
}

/// Report a usage problem (as an envelope with `--json`) and give exit code 2.
pub(super) fn usage(options: &RunOptions, message: &str) -> i32 {
    SetupError {
        message: message.to_string(),
        exit: EXIT_USAGE,
        redactor: Default::default(),
    }
    .report(options)
}

/// `integrations:lua` (`integrations` set) or `mcp:lua` (the same without
/// `app.integrations`).
pub(super) fn lua(args: LuaArgs, integrations: bool) -> i32 {
    let code = if args.repl {
        None
    } else {
        match read_code(&args) {
            Ok(code) => Some(code),
            Err(message) => return usage(&args.run, &message),
        }
    };
    let runtime = match tokio_runtime() {
        Ok(rt) => rt,
        Err(e) => return usage(&args.run, &format!("cannot start the async runtime: {e}")),
    };
    let setup = runtime.block_on(async {
        let mut ctx = Context::build(&args.run)
            .await
            .map_err(|e| e.report(&args.run))?;
        let clients =
            crate::mcp::clients(&ctx.host, &ctx.redactor).map_err(|e| e.report(&args.run))?;
        ctx.mcp = Some(clients);
        Ok::<_, i32>(ctx)
    });
    let exit = match setup {
        Ok(ctx) => {
            let exit = run_session(&runtime, &args, &ctx, code, integrations);
            // Servers start on first use and stop here, on every path out of the run (MCP
            // lifecycle, shutdown: close the server's input, wait, then kill its group).
            if let Some(clients) = &ctx.mcp {
                runtime.block_on(clients.close());
            }
            exit
        }
        Err(exit) => exit,
    };
    // Blocking tasks (a prompt waiting on the terminal) must not hold the process open.
    runtime.shutdown_background();
    exit
}

/// Where printed text goes as it is written (text mode): stdout, redacted write by write.
/// Each write is one `print` or `dump` call, newline included, so a key can only be cut at a
/// write's end by the output cap, and [`Redactor::cut_text`] covers that.
fn live_stdout(redactor: Redactor) -> Arc<dyn Fn(&str) + Send + Sync> {
    Arc::new(move |text: &str| {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(redactor.cut_text(text).as_bytes());
        let _ = out.flush();
    })
}

/// Where `log(...)` goes, in every mode: stderr, as it is written, redacted.
fn live_stderr(redactor: Redactor) -> Arc<dyn Fn(&str) + Send + Sync> {
    Arc::new(move |text: &str| {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(redactor.cut_text(text).as_bytes());
        let _ = err.flush();
    })
}

/// Set up the session and run the code (or the REPL); the exit code.
fn run_session(
    runtime: &Runtime,
    args: &LuaArgs,
    ctx: &Context,
    code: Option<(String, String)>,
    integrations: bool,
) -> i32 {
    let options = SessionOptions {
        integrations,
        tools: ctx
            .mcp
            .clone()
            .map(|c| Arc::new(crate::mcp::Servers(c)) as Arc<dyn kosmo_lua::ToolServers>),
        // With --json what a script prints belongs in the envelope; without, it shows as it
        // is printed (a long script is not silent until it ends).
        live_output: (!args.run.json).then(|| live_stdout(ctx.redactor.clone())),
        live_log: Some(live_stderr(ctx.redactor.clone())),
    };
    let session = {
        let _entered = runtime.enter();
        Session::with_options(ctx.host.clone(), limits(args), options)
    };
    let session = match session {
        Ok(s) => s,
        Err(message) => {
            return SetupError {
                message,
                exit: EXIT_USAGE,
                redactor: ctx.redactor.clone(),
            }
            .report(&args.run);
        }
    };
    match code {
        None => crate::repl::run(runtime, &session, ctx, args.run.json, integrations),
        Some((code, name)) => {
            let guard = spawn_watchdog(session.watchdog(), ctx, &session, args.run.json);
            let outcome = runtime.block_on(session.eval(&code, &name));
            guard.disarm();
            let mut meta = ctx.meta();
            meta.insert(
                "limits".into(),
                json!({
                    "memory_bytes": session.limits().memory_bytes,
                    "cpu_seconds": session.limits().cpu.as_secs_f64(),
                    "output_bytes": session.limits().output_bytes,
                }),
            );
            Envelope::from_outcome(outcome, meta).print(args.run.json, &ctx.redactor)
        }
    }
}
