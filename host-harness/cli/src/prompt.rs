//! Asking a person on the controlling terminal whether a call may go ahead.
//!
//! The question goes to `/dev/tty` and the answer comes from it, whatever standard input and
//! output are: a script piped in (`cat s.lua | kosmo integrations:lua`), `--eval`, the REPL and
//! `integrations:call` all ask the same way, as `ssh` and `sudo` do. Without a controlling
//! terminal there is no one to ask, and the host refuses the call ("no terminal to ask on").

use std::fs::File;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kosmo_runtime::{Answer, Prompter};

use crate::ctrl_c;

/// The longest answer kept: `yes`, `all`, with room for stray spaces. The rest of a longer
/// line is read and dropped, so what a person types never grows the process.
const MAX_ANSWER: usize = 16;

/// How often a waiting question checks for Ctrl-C (in the REPL, Ctrl-C answers no).
const CTRL_C_CHECK: Duration = Duration::from_millis(50);

/// Questions waiting for an answer now.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Wait (at most `limit`) until no question is waiting on the terminal: after a Ctrl-C,
/// whoever stops the evaluation lets the question answer no first, so that its reader is gone
/// from the terminal, and its `no` printed, before the REPL prompts again.
pub fn settle(limit: Duration) {
    let started = Instant::now();
    while WAITING.load(Ordering::SeqCst) > 0 && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Counts a question as waiting while it lives.
struct Waiting;

impl Waiting {
    fn new() -> Self {
        WAITING.fetch_add(1, Ordering::SeqCst);
        Waiting
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        WAITING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Asks on the controlling terminal.
pub struct TerminalPrompter {
    tty: Mutex<File>,
}

impl TerminalPrompter {
    /// A prompter on `/dev/tty`, when the process has a controlling terminal.
    pub fn open() -> Option<TerminalPrompter> {
        let tty = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
            .ok()?;
        Some(TerminalPrompter {
            tty: Mutex::new(tty),
        })
    }
}

impl Prompter for TerminalPrompter {
    fn ask(&self, question: &str) -> Answer {
        let _waiting = Waiting::new();
        let mut tty = self.tty.lock().unwrap_or_else(|p| p.into_inner());
        let _ = write!(tty, "{question} [y/N/a(ll)] ");
        let _ = tty.flush();
        let Some(answer) = read_answer(&mut tty) else {
            // Ctrl-C (REPL) or a closed terminal: no, on a line of its own.
            let _ = writeln!(tty, "no");
            return Answer::No;
        };
        parse_answer(&answer)
    }
}

/// `y`/`yes` for this call, `a`/`all` for the rest of the run, anything else no.
fn parse_answer(text: &str) -> Answer {
    match text.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Answer::Yes,
        "a" | "all" => Answer::All,
        _ => Answer::No,
    }
}

/// One line from the terminal (its first [`MAX_ANSWER`] bytes), or `None` when Ctrl-C was
/// pressed while waiting or the terminal closed. The wait checks for Ctrl-C between short
/// polls, so no reader is left behind on the terminal when the question is abandoned.
fn read_answer(tty: &mut File) -> Option<String> {
    let presses = ctrl_c::presses();
    let mut kept = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        if ctrl_c::presses() != presses {
            return None;
        }
        if !readable(tty, CTRL_C_CHECK) {
            continue;
        }
        let n = match tty.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        };
        let chunk = &buf[..n];
        let end = chunk.iter().position(|&b| b == b'\n' || b == b'\r');
        let line = &chunk[..end.unwrap_or(n)];
        let room = MAX_ANSWER.saturating_sub(kept.len());
        kept.extend_from_slice(&line[..line.len().min(room)]);
        if end.is_some() {
            return Some(String::from_utf8_lossy(&kept).into_owned());
        }
    }
}

/// Whether the terminal has input within `timeout`.
#[cfg(unix)]
fn readable(tty: &File, timeout: Duration) -> bool {
    use std::os::fd::AsRawFd;
    let mut fds = libc::pollfd {
        fd: tty.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut fds, 1, timeout.as_millis() as libc::c_int) };
    n > 0
}

#[cfg(not(unix))]
fn readable(_: &File, _: Duration) -> bool {
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers() {
        for (text, answer) in [
            ("y", Answer::Yes),
            (" YES ", Answer::Yes),
            ("a", Answer::All),
            ("all", Answer::All),
            ("", Answer::No),
            ("n", Answer::No),
            ("yess", Answer::No),
        ] {
            assert_eq!(parse_answer(text), answer, "{text:?}");
        }
    }
}
