//! `integrations:lua --repl`: one session, fed line by line. A line that is an expression
//! shows its value (in `dump`'s form, [`kosmo_lua::show`]); an unfinished statement waits for
//! more lines. With `--json`, each evaluation prints one envelope line.
//!
//! On a terminal the lines come from rustyline: editing, history (kept in
//! `$KOSMO_HOME/repl_history` when that directory is private), a banner, `help`, `exit`. Ctrl-C
//! at the prompt drops what was being typed; Ctrl-C while a line runs stops that line
//! ([`kosmo_lua::Interrupter`]) and keeps the session. Piped input is read as it always was:
//! line by line, no prompt, no banner.
//!
//! The loop runs outside the async runtime and blocks on it for each evaluation, so rustyline's
//! blocking read never holds the runtime (it is single-threaded, [`crate::watchdog`]).

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use rustyline::config::Behavior;
use rustyline::error::ReadlineError;
use rustyline::history::{FileHistory, History};
use rustyline::{Config, Editor};
use tokio::runtime::Runtime;

use kosmo_lua::{EvalOutcome, Session};
use kosmo_runtime::ErrorCode;

use crate::args::{EXIT_FAILURE, EXIT_USAGE};
use crate::context::Context;
use crate::ctrl_c::CtrlC;
use crate::envelope::Envelope;
use crate::run::{MAX_SCRIPT_BYTES, too_large};
use crate::watchdog::spawn_watchdog;

/// Entries the history keeps (in memory and in its file).
const HISTORY_ENTRIES: usize = 1000;

/// Largest history file read back: 1,000 entries of ordinary lines are far less. A larger
/// one is not ours to trust, and is left alone (not loaded, not rewritten).
const MAX_HISTORY_FILE_BYTES: u64 = 1 << 20;

/// Longest a Ctrl-C waits for a question on the terminal to give up (it checks every 50 ms).
const SETTLE: Duration = Duration::from_secs(1);

/// What `help` prints.
const HELP: &str = "  x, 1 + 1, app.integrations.klaviyo.list_lists({limit = 1})
                       an expression shows its value
  local p = ...        a statement runs; top-level locals stay for the next lines, and an
                       unfinished statement continues on the next line (>>)
  docs.list()          the documentation topics; docs.read(\"klaviyo\"),
                       docs.read(\"klaviyo.create_profile\"), docs.search(\"words\")
  globals              app.integrations.klaviyo.<function> (.default, .<account>), print, dump,
                       log, json.encode/decode, regex.match/match_all/gsub, time, docs
  Ctrl-C               drops the line being typed, or stops the one running (state is kept)
  Up, Down, Ctrl-R     history (kept in $KOSMO_HOME/repl_history)
  exit, quit, Ctrl-D   leave";

/// What the loop does with one line.
enum Step {
    /// Read the next line.
    Next,
    /// End the REPL with this exit code.
    End(i32),
}

/// One REPL session: the statement being collected and where results go.
struct Repl<'a> {
    runtime: &'a Runtime,
    session: &'a Session,
    ctx: &'a Context,
    json_mode: bool,
    /// Lines of a statement not finished yet.
    pending: String,
}

impl Repl<'_> {
    /// Feed one line (its newline included): run the statement once it is complete.
    fn line(&mut self, line: &str) -> Step {
        // A statement (all its lines) is a script: held to the same cap (finding 5).
        if (self.pending.len() + line.len()) as u64 > MAX_SCRIPT_BYTES {
            return Step::End(self.too_large_input());
        }
        if self.pending.is_empty() && line.trim().is_empty() {
            return Step::Next;
        }
        self.pending.push_str(line);
        let outcome = self.eval();
        if outcome.incomplete {
            return Step::Next;
        }
        self.pending.clear();
        self.show(outcome);
        Step::Next
    }

    fn eval(&self) -> EvalOutcome {
        let guard = spawn_watchdog(
            self.session.watchdog(),
            self.ctx,
            self.session,
            self.json_mode,
        );
        let outcome = self
            .runtime
            .block_on(self.session.eval_interactive(&self.pending));
        guard.disarm();
        outcome
    }

    /// The values (printed output went out as it was written), then any error on stderr.
    fn show(&self, outcome: EvalOutcome) {
        let envelope = Envelope::from_outcome(outcome, self.ctx.meta());
        if self.json_mode {
            envelope.print(true, &self.ctx.redactor);
            return;
        }
        let envelope = envelope.sanitized(&self.ctx.redactor);
        let mut stdout = std::io::stdout().lock();
        envelope.print_text(&mut stdout, "\t");
        let _ = stdout.flush();
        envelope.print_error();
    }

    /// End of input: an unfinished statement is an error.
    fn finish(&self) -> i32 {
        if !self.pending.trim().is_empty() {
            eprintln!("error: syntax_error: unfinished input at end of file");
            return EXIT_FAILURE;
        }
        0
    }

    /// End the REPL on a statement past the script cap: a usage error, exit code 2.
    fn too_large_input(&self) -> i32 {
        let message = too_large("standard input");
        if self.json_mode {
            Envelope::failure(ErrorCode::Usage, &message, self.ctx.meta())
                .print(true, &self.ctx.redactor);
        } else {
            eprintln!("error: {}: {message}", ErrorCode::Usage);
        }
        EXIT_USAGE
    }
}

/// Run the REPL until end of input; exit code 0 (errors are reported line by line).
/// `integrations` says what the session has: `app.integrations` (`integrations:lua`) or only
/// the MCP servers (`mcp:lua`), for the banner.
pub(super) fn run(
    runtime: &Runtime,
    session: &Session,
    ctx: &Context,
    json_mode: bool,
    integrations: bool,
) -> i32 {
    let mut repl = Repl {
        runtime,
        session,
        ctx,
        json_mode,
        pending: String::new(),
    };
    if std::io::stdin().is_terminal() {
        match interactive(&mut repl, integrations) {
            Ok(exit) => return exit,
            // No usable terminal after all (rustyline could not set it up): read it plainly.
            Err(e) => eprintln!("kosmo: line editing is off ({e})"),
        }
    }
    piped(&mut repl)
}

/// Lines from standard input, as they come (no prompt, no banner).
fn piped(repl: &mut Repl) -> i32 {
    loop {
        // Read no further than one byte past the cap.
        let room = MAX_SCRIPT_BYTES + 1 - repl.pending.len() as u64;
        let mut line = String::new();
        match std::io::stdin().lock().take(room).read_line(&mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if let Step::End(exit) = repl.line(&line) {
            return exit;
        }
    }
    repl.finish()
}

/// Lines from rustyline on the terminal.
fn interactive(repl: &mut Repl, integrations: bool) -> rustyline::Result<i32> {
    let config = Config::builder()
        .max_history_size(HISTORY_ENTRIES)?
        .history_ignore_dups(true)?
        .auto_add_history(false)
        // Prompt and editing on the terminal itself: stdout stays for the results, even
        // when it is redirected.
        .behavior(Behavior::PreferTerm)
        .build();
    let mut editor: Editor<(), FileHistory> = Editor::with_config(config)?;
    let history = history_file(&mut editor);
    // Ctrl-C while a line runs stops it: the handler lives as long as the loop. A question
    // waiting on the terminal answers no first (it sees the press), so that nothing is left
    // reading the terminal when the prompt comes back.
    let interrupter = repl.session.interrupter();
    let _ctrl_c = CtrlC::install(move || {
        crate::prompt::settle(SETTLE);
        interrupter.interrupt();
    })
    .map_err(|e| eprintln!("kosmo: Ctrl-C will end kosmo, not just the line ({e})"))
    .ok();
    banner(repl.ctx, integrations);
    let exit = loop {
        let prompt = if repl.pending.is_empty() { "> " } else { ">> " };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            // Ctrl-C at the prompt: drop what was typed, and any unfinished statement.
            Err(ReadlineError::Interrupted) => {
                repl.pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break repl.finish(),
            Err(e) => return Err(e),
        };
        if repl.pending.is_empty() {
            match line.trim() {
                "exit" | "quit" => break 0,
                "help" => {
                    println!("{HELP}");
                    continue;
                }
                _ => {}
            }
        }
        // A line holding a known key stays out of the history (and its file).
        if !line.trim().is_empty() && repl.ctx.redactor.text(&line) == line {
            let _ = editor.add_history_entry(line.as_str());
        }
        if let Step::End(exit) = repl.line(&format!("{line}\n")) {
            break exit;
        }
    };
    if let Some(path) = history {
        let _ = editor.append_history(&path);
    }
    Ok(exit)
}

/// Load the history file, and say where to save it: `$KOSMO_HOME/repl_history`, only when
/// `$KOSMO_HOME` is (or can be made) a directory private to the user, since lines may hold
/// data from the account. Otherwise the history lives in memory only.
fn history_file(editor: &mut Editor<(), FileHistory>) -> Option<PathBuf> {
    let home = crate::accounts::home_dir()?;
    kosmo_runtime::cache::ensure_private_dir(&home).ok()?;
    let path = home.join("repl_history");
    match std::fs::metadata(&path) {
        Ok(meta) if meta.len() > MAX_HISTORY_FILE_BYTES => {
            eprintln!(
                "kosmo: {} is larger than {} KiB: history is not loaded nor saved",
                path.display(),
                MAX_HISTORY_FILE_BYTES >> 10
            );
            return None;
        }
        Ok(_) => {
            let _ = editor.load_history(&path);
            let _ = editor.history_mut().set_max_len(HISTORY_ENTRIES);
        }
        Err(_) => {}
    }
    Some(path)
}

/// The first lines: what this is, what it calls, how to get help and out.
fn banner(ctx: &Context, integrations: bool) {
    let names = if integrations {
        ctx.host.account_names()
    } else {
        ctx.mcp
            .as_ref()
            .map(|m| m.config().names())
            .unwrap_or_default()
    };
    let what = match (integrations, names.is_empty()) {
        (true, true) => "no Klaviyo account (set KLAVIYO_API_KEY, or use --sandbox)".to_string(),
        (true, false) => {
            let sandbox = if ctx.emulator.is_some() {
                ", sandbox"
            } else {
                ""
            };
            format!("accounts: {}{sandbox}", names.join(", "))
        }
        (false, true) => "no MCP servers (see kosmo mcp:configure --help)".to_string(),
        (false, false) => format!("MCP servers: {}", names.join(", ")),
    };
    eprintln!(
        "kosmo {} Lua REPL, {what}\ntype help, exit, or Ctrl-D",
        env!("CARGO_PKG_VERSION")
    );
}
