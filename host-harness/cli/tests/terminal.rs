//! `kosmo` on a real terminal (a pty driven by rexpect): output shows as a script prints it,
//! the REPL edits lines, recalls history and survives Ctrl-C, permission questions are asked
//! on the controlling terminal (from the REPL, and for a script piped in), and a key typed
//! for `configure` is not echoed.
//!
//! Every wait is for some output, bounded by [`EXPECT_MS`]; nothing sleeps to let time pass.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rexpect::process::WaitStatus;
use rexpect::reader::Options;
use rexpect::session::PtySession;

/// Longest wait for one expected output (a busy 2-core machine starts a process slowly).
const EXPECT_MS: u64 = 8_000;

/// Cursor left and up, as a terminal sends them; backspace; enter (raw mode).
const LEFT: &str = "\x1b[D";
const UP: &str = "\x1b[A";
const BACKSPACE: &str = "\x7f";
const ENTER: &str = "\r";

mod common;
use common::{KOSMO, emulator, new_key};

/// `program args` on a fresh pty, with a private KOSMO_HOME and no inherited Klaviyo settings.
fn spawn_program(home: &Path, program: &str, args: &[&str], timeout_ms: u64) -> PtySession {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(home)
        .env("KOSMO_HOME", home.join("kosmo"))
        .env("HOME", home)
        // A terminal rustyline can edit on (it falls back to plain reading for `dumb`).
        .env("TERM", "xterm")
        .env_remove("KLAVIYO_API_KEY")
        .env_remove("KLAVIYO_BASE_URL");
    let options = Options::new()
        .timeout_ms(Some(timeout_ms))
        .strip_ansi_escape_codes(true);
    rexpect::session::spawn_with_options(cmd, options).expect("kosmo starts on a pty")
}

fn spawn(home: &Path, args: &[&str]) -> PtySession {
    spawn_program(home, KOSMO, args, EXPECT_MS)
}

/// Store the default account against the emulator with `key` (writes ask, the default).
fn configure(home: &Path, key: &str) {
    let out = Command::new(KOSMO)
        .env("KOSMO_HOME", home.join("kosmo"))
        .env("HOME", home)
        .env_remove("KLAVIYO_API_KEY")
        .env_remove("KLAVIYO_BASE_URL")
        .args(["integrations:configure", "klaviyo", "--set"])
        .arg(format!("api_key={key}"))
        .arg("--set")
        .arg(format!("base_url={}", emulator().base_url()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Start the REPL and wait for its first prompt.
fn repl(home: &Path) -> PtySession {
    let mut p = spawn(home, &["integrations:lua", "--repl"]);
    p.exp_string("type help, exit, or Ctrl-D")
        .expect("the banner");
    p.exp_string("> ").expect("the first prompt");
    p
}

/// Type `text` and Enter, then wait for the next prompt after `expect`.
fn enter(p: &mut PtySession, text: &str, expect: &str) -> String {
    p.send(text).unwrap();
    p.send(ENTER).unwrap();
    p.flush().unwrap();
    let before = p
        .exp_string(expect)
        .unwrap_or_else(|e| panic!("after `{text}`, no `{expect}`: {e}"));
    p.exp_string("> ").expect("the next prompt");
    before
}

/// Leave the REPL and check it ended.
fn leave(mut p: PtySession) {
    p.send("exit").unwrap();
    p.send(ENTER).unwrap();
    p.flush().unwrap();
    p.exp_eof().expect("`exit` ends the REPL");
}

/// A long script shows what it prints while it runs, not when it ends. Catches: output
/// collected and printed with the envelope (`start` and `end` would show together, as
/// kosmo ends).
#[test]
fn a_long_script_shows_its_output_as_it_prints() {
    let home = tempfile::tempdir().unwrap();
    // A busy loop of 2 to 3 s (`time.unix()` counts whole seconds) between the prints.
    let script = "print(\"start\")\nlocal t = time.unix()\nwhile time.unix() - t < 3 do end\nprint(\"end\")\n";
    std::fs::write(home.path().join("long.lua"), script).unwrap();
    let mut p = spawn(home.path(), &["integrations:lua", "long.lua"]);
    p.exp_string("start").expect("`start` shows");
    let shown = Instant::now();
    assert!(
        matches!(p.process().status(), Some(WaitStatus::StillAlive)),
        "kosmo had already ended when `start` showed: the output was held to the end"
    );
    p.exp_string("end").expect("`end` shows");
    assert!(
        shown.elapsed() >= Duration::from_secs(1),
        "`start` showed only {:?} before `end`: it was held",
        shown.elapsed()
    );
    p.exp_eof().expect("kosmo ends");
}

/// The REPL edits a line (cursor left, backspace, insert: the edited line runs) and Up
/// recalls the previous line, which runs again. Catches: plain line reading (escape codes
/// would reach Lua), history not kept.
#[test]
fn the_repl_edits_lines_and_recalls_history() {
    let home = tempfile::tempdir().unwrap();
    let mut p = repl(home.path());
    // `50 + 2`, four left, backspace (drops the 0), `4`: `54 + 2`.
    let edit = format!("50 + 2{}{BACKSPACE}4", LEFT.repeat(4));
    enter(&mut p, &edit, "56");
    enter(&mut p, "n = (n or 0) + 1 print('run ' .. n)", "run 1");
    enter(&mut p, UP, "run 2");
    // `help` is the REPL's, not Lua's.
    enter(&mut p, "help", "docs.read(\"klaviyo\")");
    leave(p);
    // The history was kept in the private $KOSMO_HOME.
    let history = std::fs::read_to_string(home.path().join("kosmo/repl_history")).unwrap();
    assert!(history.contains("54 + 2"), "{history}");
    assert!(!history.contains("help"), "{history}");
}

/// Ctrl-C while a line runs stops that line with `interrupted`; the session and its globals
/// stay. Ctrl-C at the prompt drops the line being typed. Catches: Ctrl-C ending kosmo (the
/// default SIGINT), or a fresh session after it.
#[test]
fn ctrl_c_stops_the_running_line_and_keeps_the_session() {
    let home = tempfile::tempdir().unwrap();
    let mut p = repl(home.path());
    enter(&mut p, "x = 41", "");
    p.send("print('looping') while true do end").unwrap();
    p.send(ENTER).unwrap();
    p.flush().unwrap();
    p.exp_string("looping").expect("the loop started");
    p.send_control('c').unwrap();
    p.exp_string("interrupted").expect("an `interrupted` error");
    p.exp_string("> ").expect("the prompt again");
    // At the prompt, Ctrl-C drops what was typed: `garbage(` never runs (nor waits for
    // more lines). Each key is sent once the one before it has shown: rustyline drops what
    // it read past a Ctrl-C, as a terminal would for keys typed ahead.
    p.send("garbage(").unwrap();
    p.flush().unwrap();
    p.exp_string("garbage(").expect("the typed text");
    p.send_control('c').unwrap();
    p.exp_regex(r"\n\r?> ").expect("a fresh prompt");
    enter(&mut p, "x + 1", "42");
    leave(p);
}

/// The REPL asks on the terminal before a write: `y` lets it through, `n` refuses it with
/// `permission_denied`. Catches: prompts disabled in the REPL (today's refusal), or the
/// answer read from the wrong place.
#[test]
fn the_repl_asks_before_a_write() {
    let home = tempfile::tempdir().unwrap();
    let key = new_key("repl");
    configure(home.path(), &key);
    let mut p = repl(home.path());
    p.send("p = app.integrations.klaviyo.create_profile({email = 'ada.tty@example.com'}) print('made ' .. p.email)")
        .unwrap();
    p.send(ENTER).unwrap();
    p.flush().unwrap();
    p.exp_string("[y/N/a(ll)]").expect("the question");
    assert_eq!(
        emulator().request_count(&key),
        0,
        "nothing sent before the answer"
    );
    enter(&mut p, "y", "made ada.tty@example.com");
    assert_eq!(emulator().request_count(&key), 1);

    p.send("app.integrations.klaviyo.create_profile({email = 'bob.tty@example.com'})")
        .unwrap();
    p.send(ENTER).unwrap();
    p.flush().unwrap();
    p.exp_string("[y/N/a(ll)]").expect("the question again");
    enter(&mut p, "n", "permission_denied");
    assert_eq!(
        emulator().request_count(&key),
        1,
        "a refused write is not sent"
    );

    // Ctrl-C while the question waits answers no and stops the line; the REPL goes on.
    p.send("app.integrations.klaviyo.create_profile({email = 'cy.tty@example.com'})")
        .unwrap();
    p.send(ENTER).unwrap();
    p.flush().unwrap();
    p.exp_string("[y/N/a(ll)]").expect("the question again");
    p.send_control('c').unwrap();
    // The question answers no (the call is refused) before the line stops.
    p.exp_regex("permission_denied|interrupted")
        .expect("the write refused or stopped");
    p.exp_string("> ").expect("the prompt after Ctrl-C");
    enter(&mut p, "1 + 1", "2");
    assert_eq!(
        emulator().request_count(&key),
        1,
        "a write cut short is not sent"
    );
    leave(p);
}

/// A script piped into kosmo asks on the controlling terminal (standard input is the pipe).
/// Catches: prompts disabled for a script on stdin, or the answer read from stdin.
#[test]
fn a_piped_script_asks_on_the_terminal() {
    let home = tempfile::tempdir().unwrap();
    let key = new_key("piped");
    configure(home.path(), &key);
    std::fs::write(
        home.path().join("s.lua"),
        "local p = app.integrations.klaviyo.create_profile({email = 'cy.tty@example.com'})\nprint('made ' .. p.email)\n",
    )
    .unwrap();
    let line = format!("cat s.lua | '{KOSMO}' integrations:lua");
    let mut p = spawn_program(home.path(), "sh", &["-c", &line], EXPECT_MS);
    p.exp_string("[y/N/a(ll)]").expect("the question");
    p.send("y\r").unwrap();
    p.flush().unwrap();
    p.exp_string("made cy.tty@example.com")
        .expect("the write ran");
    p.exp_eof().expect("kosmo ends");
    assert_eq!(emulator().request_count(&key), 1);
}

/// `configure --set api_key=-` on a terminal reads the key without echo (the terminal echoes
/// here, as a person's does). Catches: the key read from a plain line (it would echo).
#[test]
fn a_key_typed_on_the_terminal_is_not_echoed() {
    let home = tempfile::tempdir().unwrap();
    let key = new_key("typed");
    // rexpect turns the pty's echo off; a person's terminal has it on.
    let line = format!(
        "stty echo && exec '{KOSMO}' integrations:configure klaviyo --account typed --set api_key=-"
    );
    let mut p = spawn_program(home.path(), "sh", &["-c", &line], EXPECT_MS);
    p.exp_string("Klaviyo API key").expect("the question");
    p.send(&key).unwrap();
    p.send("\r").unwrap();
    p.flush().unwrap();
    let shown = p.exp_string("Added").expect("the account is added");
    let rest = p.exp_eof().expect("configure ends");
    assert!(
        !shown.contains(&key) && !rest.contains(&key),
        "the key echoed: {shown}{rest}"
    );
    let stored = std::fs::read_to_string(home.path().join("kosmo/accounts.json")).unwrap();
    assert!(stored.contains(&key), "the key typed is the key stored");
}
