//! `integrations:lua --repl`: one session, fed line by line from standard input. A line that
//! is an expression shows its value; an unfinished statement waits for more lines. With
//! `--json`, each evaluation prints one envelope line.

use std::io::{BufRead, IsTerminal, Read, Write};

use kosmo_lua::Session;
use kosmo_runtime::ErrorCode;

use crate::args::{EXIT_FAILURE, EXIT_USAGE};
use crate::context::Context;
use crate::envelope::Envelope;
use crate::run::{MAX_SCRIPT_BYTES, too_large};
use crate::watchdog::spawn_watchdog;

/// Run the REPL until end of input; exit code 0 (errors are reported line by line).
pub(super) async fn run(session: &Session, ctx: &Context, json_mode: bool) -> i32 {
    let interactive = std::io::stdin().is_terminal();
    let mut pending = String::new();
    loop {
        if interactive {
            eprint!("{}", if pending.is_empty() { "> " } else { ">> " });
            let _ = std::io::stderr().flush();
        }
        // A statement (all its lines) is a script: held to the same cap (finding 5), and
        // read no further than one byte past it.
        let room = MAX_SCRIPT_BYTES + 1 - pending.len() as u64;
        let mut line = String::new();
        match std::io::stdin().lock().take(room).read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if (pending.len() + line.len()) as u64 > MAX_SCRIPT_BYTES {
            return too_large_input(ctx, json_mode);
        }
        if pending.is_empty() && line.trim().is_empty() {
            continue;
        }
        pending.push_str(&line);
        let guard = spawn_watchdog(session.watchdog(), ctx, session, json_mode);
        let outcome = session.eval_interactive(&pending).await;
        guard.disarm();
        if outcome.incomplete {
            continue;
        }
        pending.clear();
        if json_mode {
            Envelope::from_outcome(outcome, ctx.meta()).print(true, &ctx.redactor);
            continue;
        }
        let envelope = Envelope::from_outcome(outcome, ctx.meta()).sanitized(&ctx.redactor);
        let mut stdout = std::io::stdout().lock();
        envelope.print_text(&mut stdout, "\t");
        let _ = stdout.flush();
        if let Some(line) = envelope.error_line() {
            eprintln!("error: {line}");
        }
    }
    if !pending.trim().is_empty() {
        eprintln!("error: syntax_error: unfinished input at end of file");
        return EXIT_FAILURE;
    }
    0
}

/// End the REPL on a statement past the script cap: a usage error, exit code 2.
fn too_large_input(ctx: &Context, json_mode: bool) -> i32 {
    let message = too_large("standard input");
    if json_mode {
        Envelope::failure(ErrorCode::Usage, &message, ctx.meta()).print(true, &ctx.redactor);
    } else {
        eprintln!("error: {}: {message}", ErrorCode::Usage);
    }
    EXIT_USAGE
}
