//! Asking a person on the terminal whether a call may go ahead.

use std::io::{BufRead, IsTerminal, Write};

use kosmo_runtime::{Answer, Prompter};

/// Asks on the terminal: the question on stderr, the answer from stdin.
pub struct TerminalPrompter;

impl TerminalPrompter {
    /// A prompter when both stdin and stderr are terminals.
    pub fn if_interactive() -> Option<TerminalPrompter> {
        (std::io::stdin().is_terminal() && std::io::stderr().is_terminal())
            .then_some(TerminalPrompter)
    }
}

impl Prompter for TerminalPrompter {
    fn ask(&self, question: &str) -> Answer {
        let mut stderr = std::io::stderr();
        let _ = write!(stderr, "{question} [y/N/a(ll)] ");
        let _ = stderr.flush();
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line).is_err() {
            return Answer::No;
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => Answer::Yes,
            "a" | "all" => Answer::All,
            _ => Answer::No,
        }
    }
}
