//! `integrations:lua --repl`: one session, fed line by line from standard input. A line that
//! is an expression shows its value; an unfinished statement waits for more lines. With
//! `--json`, each evaluation prints one envelope line.

use std::io::{BufRead, IsTerminal, Write};

use kosmo_lua::Session;

use crate::args::EXIT_FAILURE;
use crate::context::Context;
use crate::envelope::{Envelope, show};
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
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
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
        let envelope = Envelope::from_outcome(outcome, ctx.meta());
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(ctx.redactor.text(&envelope.output).as_bytes());
        let shown: Vec<String> = envelope.result.iter().map(show).collect();
        if !shown.is_empty() {
            let _ = writeln!(stdout, "{}", ctx.redactor.text(&shown.join("\t")));
        }
        let _ = stdout.flush();
        if let Some(line) = envelope.error_line() {
            eprintln!("error: {}", ctx.redactor.text(&line));
        }
    }
    if !pending.trim().is_empty() {
        eprintln!("error: syntax_error: unfinished input at end of file");
        return EXIT_FAILURE;
    }
    0
}
