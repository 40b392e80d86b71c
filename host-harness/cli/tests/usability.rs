//! What makes `kosmo` pleasant to use without a terminal in the way: usage errors that stay
//! JSON under `--json`, errors that say where they happened, help with examples for every
//! command, shell completions, `integrations:check`, `configure --list` naming what the
//! environment overrides, docs search snippets, a README quickstart that runs verbatim, and
//! README promises that each name a test that exists.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use kosmo_emulator::Fault;

mod common;
use common::{KOSMO, Run, emulator, new_key};

/// `kosmo` with a private KOSMO_HOME, no inherited Klaviyo settings, and no controlling
/// terminal (a question would otherwise wait for whoever runs the tests).
fn kosmo(home: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(KOSMO);
    cmd.current_dir(home)
        .env("KOSMO_HOME", home.join("kosmo"))
        .env("HOME", home)
        .env_remove("KLAVIYO_API_KEY")
        .env_remove("KLAVIYO_BASE_URL")
        .env_remove("KOSMO_ALLOW_INSECURE_HTTP");
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    cmd
}

fn run(mut cmd: Command, stdin: Option<&str>) -> Run {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("kosmo runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn kosmo_run(home: &Path, args: &[&str]) -> Run {
    let mut cmd = kosmo(home);
    cmd.args(args);
    run(cmd, None)
}

/// A usage error with `--json` is an envelope on stdout (code `usage`, clap's text without
/// colour codes, keys redacted) and exit code 2, for every command. Catches: clap's text on
/// stderr only, leaving a JSON reader with nothing.
#[test]
fn usage_errors_with_json_are_envelopes() {
    let home = tempfile::tempdir().unwrap();
    let key = "pk_use_usage_0123456789abcdef";
    for args in [
        vec!["integrations:lua", "--bogus", "--json"],
        vec!["--json", "integrations:lua", "--eval"],
        vec![
            "integrations:configure",
            "--json",
            "--set",
            &format!("api_key={key}"),
        ],
        vec!["integrations:check", "--json", "--account"],
        vec![
            "mcp:configure",
            "x",
            "--json",
            "--env",
            "T=secret-token-value",
            "--nope",
        ],
    ] {
        let run = kosmo_run(home.path(), &args);
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        let env = run.json();
        assert_eq!(env["success"], false, "{args:?}");
        assert_eq!(env["error"]["code"], "usage", "{args:?}");
        let message = env["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("error: "), "{args:?}: {message}");
        assert!(!message.contains('\u{1b}'), "colour codes: {message:?}");
        assert!(!run.stdout.contains(key) && !run.stdout.contains("secret-token-value"));
        assert_eq!(env["meta"]["kosmo_version"], env!("CARGO_PKG_VERSION"));
    }
    // Without --json: clap's text on stderr, nothing on stdout.
    let run = kosmo_run(home.path(), &["integrations:lua", "--bogus"]);
    assert_eq!(run.code, 2);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(run.stderr.contains("--bogus"), "{}", run.stderr);
}

/// An uncaught API error on line 3 of fail.lua says `fail.lua:3` first in text mode (with
/// a traceback when there is more than one frame), and carries `line: 3` and `source` in the
/// JSON error. Catches: errors with no location (a long script's failing call cannot be
/// found).
#[test]
fn uncaught_errors_say_where_they_happened() {
    let home = tempfile::tempdir().unwrap();
    std::fs::write(
        home.path().join("fail.lua"),
        "local first = 1\nlocal function fetch(id)\n  return app.integrations.klaviyo.get_profile({profile_id = id})\nend\nprint(fetch('nobody'))\n",
    )
    .unwrap();
    let run = kosmo_run(home.path(), &["integrations:lua", "fail.lua", "--sandbox"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert!(
        lines[0].starts_with("error: fail.lua:3: not_found: "),
        "{}",
        run.stderr
    );
    assert_eq!(lines.get(1), Some(&"stack traceback:"), "{}", run.stderr);
    assert!(
        lines
            .iter()
            .any(|l| l.trim() == "fail.lua:5: in main chunk"),
        "{}",
        run.stderr
    );

    let run = kosmo_run(
        home.path(),
        &["integrations:lua", "fail.lua", "--sandbox", "--json"],
    );
    assert_eq!(run.code, 1);
    let env = run.json();
    assert_eq!(env["error"]["code"], "not_found");
    assert_eq!(env["error"]["line"], 3, "{env}");
    assert_eq!(env["error"]["source"], "fail.lua", "{env}");
    assert!(
        env["error"]["traceback"]
            .as_str()
            .unwrap()
            .contains("fail.lua:3")
    );

    // A Lua error's message has its place already: it is not said twice.
    let run = kosmo_run(
        home.path(),
        &["integrations:lua", "--eval", "\n\nerror('boom')"],
    );
    let first = run.stderr.lines().next().unwrap_or("");
    assert_eq!(first, "error: script_error: eval:3: boom", "{}", run.stderr);
}

/// `kosmo <command> --help` shows examples for every command `kosmo --help` lists, and the
/// top level lists the environment variables and exit codes. Catches: a command added
/// without examples (the list is read from the help, not written here).
#[test]
fn every_command_help_has_examples() {
    let home = tempfile::tempdir().unwrap();
    let top = kosmo_run(home.path(), &["--help"]);
    assert_eq!(top.code, 0);
    for needle in [
        "Examples:",
        "Environment:",
        "KLAVIYO_API_KEY",
        "KLAVIYO_BASE_URL",
        "KOSMO_HOME",
        "KOSMO_ALLOW_INSECURE_HTTP",
        "Exit codes:",
    ] {
        assert!(top.stdout.contains(needle), "{needle}:\n{}", top.stdout);
    }
    let commands: Vec<&str> = top
        .stdout
        .split("Commands:")
        .nth(1)
        .unwrap()
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 10, "{commands:?}");
    for command in commands {
        for flag in ["--help", "-h"] {
            let run = kosmo_run(home.path(), &[command, flag]);
            assert_eq!(run.code, 0, "{command}");
            assert!(
                run.stdout.contains("Examples:\n  kosmo "),
                "{command} {flag} has no examples:\n{}",
                run.stdout
            );
        }
    }
}

/// `kosmo completions bash` prints a completion script naming the commands. Catches: the
/// command missing or printing elsewhere.
#[test]
fn completions_print_a_script() {
    let home = tempfile::tempdir().unwrap();
    let run = kosmo_run(home.path(), &["completions", "bash"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("complete "), "{}", run.stdout);
    assert!(run.stdout.contains("integrations:lua"));
    for shell in ["zsh", "fish"] {
        let run = kosmo_run(home.path(), &["completions", shell]);
        assert_eq!(run.code, 0);
        assert!(run.stdout.contains("integrations:check"), "{shell}");
    }
    assert_eq!(kosmo_run(home.path(), &["completions", "tcsh"]).code, 2);
}

/// `integrations:check` answers `ok` with the account, its URL and a time when the key
/// works, and `unauthorized` with exit 1 when Klaviyo refuses it; `--json` gives the
/// envelope. Catches: a check that reports ok without a request, or hides the refusal.
#[test]
fn check_proves_a_key_or_says_why_not() {
    let home = tempfile::tempdir().unwrap();
    let key = new_key("check");
    let url = emulator().base_url();
    let check = |extra: &[&str]| {
        let mut cmd = kosmo(home.path());
        cmd.env("KLAVIYO_API_KEY", &key)
            .env("KLAVIYO_BASE_URL", &url)
            .arg("integrations:check")
            .args(extra);
        run(cmd, None)
    };
    let ok = check(&[]);
    assert_eq!(ok.code, 0, "{}{}", ok.stdout, ok.stderr);
    let line = ok.stdout.trim();
    assert!(
        line.starts_with(&format!("ok: account `default` ({url}) answered in "))
            && line.ends_with(" ms"),
        "{line}"
    );
    assert_eq!(emulator().request_count(&key), 1, "one request");
    assert!(!ok.stdout.contains(&key) && !ok.stderr.contains(&key));

    let env = check(&["--json"]).json();
    assert_eq!(env["success"], true, "{env}");
    assert_eq!(env["result"][0]["account"], "default");
    assert_eq!(env["integration_calls"][0]["path"], "klaviyo.list_lists");

    for json in [false, true] {
        emulator().inject_fault(
            &key,
            Fault::Status {
                status: 401,
                code: "not_authenticated".into(),
                retry_after: None,
            },
        );
        let refused = check(if json { &["--json"] } else { &[] });
        assert_eq!(refused.code, 1, "{}{}", refused.stdout, refused.stderr);
        if json {
            let env = refused.json();
            assert_eq!(env["success"], false);
            assert_eq!(env["error"]["code"], "unauthorized", "{env}");
        } else {
            assert!(refused.stdout.is_empty(), "{}", refused.stdout);
            assert!(
                refused.stderr.starts_with("error: unauthorized: "),
                "{}",
                refused.stderr
            );
        }
        assert!(!refused.stdout.contains(&key) && !refused.stderr.contains(&key));
    }

    // A named account that does not exist says how to add it.
    let missing = kosmo_run(home.path(), &["integrations:check", "--account", "shop"]);
    assert_eq!(missing.code, 1);
    assert!(
        missing.stderr.contains("not_configured"),
        "{}",
        missing.stderr
    );
    // The sandbox needs no key.
    let sandbox = kosmo_run(home.path(), &["integrations:check", "--sandbox"]);
    assert_eq!(sandbox.code, 0, "{}", sandbox.stderr);
    assert!(
        sandbox
            .stdout
            .starts_with("ok: account `default` (http://127.0.0.1:")
    );
}

/// `configure --list` says when KLAVIYO_API_KEY (and KLAVIYO_BASE_URL) replace the stored
/// `default` account, and when KLAVIYO_BASE_URL alone does nothing. Catches: a listing that
/// shows the stored default while every run uses the environment's.
#[test]
fn configure_list_names_what_the_environment_overrides() {
    let home = tempfile::tempdir().unwrap();
    let stored = new_key("stored");
    let env_key = new_key("env");
    let mut cmd = kosmo(home.path());
    cmd.args([
        "integrations:configure",
        "klaviyo",
        "--set",
        "api_key=-",
        "--write",
        "deny",
    ]);
    let added = run(cmd, Some(&format!("{stored}\n")));
    assert_eq!(added.code, 0, "{}", added.stderr);

    let plain = kosmo_run(
        home.path(),
        &["integrations:configure", "klaviyo", "--list"],
    );
    assert!(
        !plain.stdout.contains("KLAVIYO_API_KEY"),
        "{}",
        plain.stdout
    );

    let mut cmd = kosmo(home.path());
    cmd.env("KLAVIYO_API_KEY", &env_key)
        .env("KLAVIYO_BASE_URL", "http://127.0.0.1:9")
        .args(["integrations:configure", "klaviyo", "--list"]);
    let listed = run(cmd, None);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let text = &listed.stdout;
    assert!(text.contains("KLAVIYO_API_KEY overrides it"), "{text}");
    assert!(
        text.contains("base_url http://127.0.0.1:9 (from KLAVIYO_BASE_URL)"),
        "{text}"
    );
    assert!(
        text.contains("write deny"),
        "the stored policy still applies: {text}"
    );
    assert!(
        !text.contains(&env_key) && !text.contains(&stored),
        "{text}"
    );

    let mut cmd = kosmo(home.path());
    cmd.env("KLAVIYO_BASE_URL", "http://127.0.0.1:9").args([
        "integrations:configure",
        "klaviyo",
        "--list",
    ]);
    let listed = run(cmd, None);
    assert!(
        listed.stdout.contains("KLAVIYO_BASE_URL is set") && listed.stdout.contains("not used"),
        "{}",
        listed.stdout
    );
}

/// `integrations:docs --search` shows each hit with the line that matched, indented under
/// it. Catches: hits listed by topic alone.
#[test]
fn docs_search_shows_snippets() {
    let home = tempfile::tempdir().unwrap();
    let run = kosmo_run(
        home.path(),
        &["integrations:docs", "--search", "consented_at"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines.len() >= 2, "{}", run.stdout);
    assert!(lines[0].starts_with("klaviyo"), "{}", run.stdout);
    assert!(
        lines[1].starts_with("    ") && lines[1].contains("consented_at"),
        "{}",
        run.stdout
    );
}

/// Split one shell command line the way `sh` does for the quoting the README uses: words,
/// 'single' and "double" quotes, and a trailing `# comment`.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            '#' if !in_word => break,
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The README's Quickstart runs verbatim with the built binary: every `kosmo` line of its
/// fenced block (the `cargo install` is what built it), in a fresh KOSMO_HOME. The real
/// account is stood in for by the emulator through the environment (`KLAVIYO_API_KEY` and
/// `KLAVIYO_BASE_URL` replace a stored default), and the key is what standard input gives.
/// Catches: a quickstart that drifted from the commands.
#[test]
fn readme_quickstart_runs_verbatim() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let section = readme
        .split("\n## Quickstart")
        .nth(1)
        .expect("a Quickstart section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .expect("a fenced sh block under Quickstart");
    assert!(
        block.contains("cargo install --locked --path host-harness/cli"),
        "{block}"
    );
    let home = tempfile::tempdir().unwrap();
    let key = new_key("quickstart");
    let mut ran = 0;
    for line in block.lines() {
        let words = shell_words(line);
        if words.first().map(String::as_str) != Some("kosmo") {
            continue;
        }
        let mut cmd = kosmo(home.path());
        cmd.args(&words[1..])
            .env("KLAVIYO_API_KEY", &key)
            .env("KLAVIYO_BASE_URL", emulator().base_url());
        let out = run(cmd, Some(&format!("{key}\n")));
        assert_eq!(out.code, 0, "{line}\n{}{}", out.stdout, out.stderr);
        assert!(
            !out.stdout.contains(&key) && !out.stderr.contains(&key),
            "{line}"
        );
        ran += 1;
    }
    assert!(ran >= 5, "{ran} kosmo lines in:\n{block}");
}

/// Every promise of the README's "Behaviour of the functions" bullets and "Security model"
/// table names at least one test, and every test it names exists: a `fn` under `#[test]` or
/// `#[tokio::test]` in a file of the name given before it (`` `component.rs`: `name` ``).
/// Names in parentheses are remarks, not citations. Catches: a test renamed or removed while
/// the README still cites it, a promise added without its test, a name without its file.
#[test]
fn readme_promises_name_tests_that_exist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let title = |text: &str| -> String {
        let bold = text.split("**").nth(1).unwrap_or(text);
        bold.chars().take(60).collect()
    };
    // (promise, the text that names its tests)
    let mut promises: Vec<(String, String)> = Vec::new();

    let behaviour = readme
        .split("\n### Behaviour of the functions\n")
        .nth(1)
        .expect("a Behaviour of the functions section");
    let behaviour = behaviour.split("\n#").next().unwrap();
    let mut bullets: Vec<String> = Vec::new();
    for line in behaviour.lines() {
        if let Some(first) = line.strip_prefix("- ") {
            bullets.push(first.to_string());
        } else if line.starts_with("  ")
            && let Some(bullet) = bullets.last_mut()
        {
            bullet.push(' ');
            bullet.push_str(line.trim());
        }
    }
    assert!(
        bullets.len() >= 6,
        "{} bullets in:\n{behaviour}",
        bullets.len()
    );
    for bullet in &bullets {
        let proof = bullet.split_once("Proven by ").map_or("", |(_, p)| p);
        promises.push((title(bullet), proof.to_string()));
    }

    let security = readme
        .split("\n## Security model\n")
        .nth(1)
        .expect("a Security model section");
    let security = security.split("\n## ").next().unwrap();
    let mut rows = security.lines().filter(|l| l.starts_with('|'));
    let header: Vec<&str> = rows
        .next()
        .expect("a table")
        .split('|')
        .map(str::trim)
        .collect();
    let column = header
        .iter()
        .position(|c| *c == "proven by")
        .expect("a proven by column");
    let mut table_rows = 0;
    for row in rows.filter(|r| !r.starts_with("|---")) {
        let cells: Vec<&str> = row.split('|').collect();
        assert_eq!(cells.len(), header.len(), "a cell holds a `|`: {row}");
        promises.push((title(cells[1]), cells[column].to_string()));
        table_rows += 1;
    }
    assert!(table_rows >= 10, "{table_rows} rows in:\n{security}");

    let tests = test_functions(&root);
    let mut problems = Vec::new();
    for (promise, proof) in &promises {
        // Remarks in parentheses are not citations.
        let mut text = String::new();
        let mut depth = 0usize;
        for c in proof.chars() {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                c if depth == 0 => text.push(c),
                _ => {}
            }
        }
        let mut named = 0;
        for group in text.split(';') {
            // Odd parts are code spans, each followed by the text after it.
            let parts: Vec<&str> = group.split('`').collect();
            let mut file: Option<&str> = None;
            for i in (1..parts.len()).step_by(2) {
                let span = parts[i];
                let after = parts.get(i + 1).copied().unwrap_or("");
                let identifier = span.starts_with(|c: char| c.is_ascii_lowercase())
                    && span
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                if span.ends_with(".rs") && after.starts_with(':') {
                    file = Some(span);
                } else if identifier {
                    named += 1;
                    match file {
                        None => problems.push(format!(
                            "{promise}: `{span}` has no `file.rs`: label before it"
                        )),
                        Some(f) if !tests.get(f).is_some_and(|t| t.contains(span)) => problems
                            .push(format!(
                                "{promise}: `{f}`: `{span}` is not a #[test] fn in any {f}"
                            )),
                        Some(_) => {}
                    }
                }
            }
        }
        if named == 0 {
            problems.push(format!("{promise}: names no test"));
        }
    }
    assert!(
        problems.is_empty(),
        "README promises without a test, or citing tests that do not exist:\n{}",
        problems.join("\n")
    );
}

/// Test function names by file name (`runtime.rs` gathers every file of that name) in the
/// workspace's `.rs` files, outside `target/`, `node_modules/` and hidden directories.
fn test_functions(
    root: &Path,
) -> std::collections::HashMap<String, std::collections::HashSet<String>> {
    let mut found: std::collections::HashMap<String, std::collections::HashSet<String>> =
        Default::default();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                if !matches!(name.as_str(), "target" | "node_modules") && !name.starts_with('.') {
                    dirs.push(entry.path());
                }
                continue;
            }
            if !kind.is_file() || !name.ends_with(".rs") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let tests = found.entry(name).or_default();
            let mut under_test = false;
            for line in text.lines().map(str::trim_start) {
                if line.starts_with("#[test]") || line.starts_with("#[tokio::test") {
                    under_test = true;
                } else if line.is_empty() || line.starts_with("#[") || line.starts_with("//") {
                    // Other attributes and comments keep what came before.
                } else if let Some(rest) = ["pub async fn ", "async fn ", "pub fn ", "fn "]
                    .iter()
                    .find_map(|p| line.strip_prefix(p))
                {
                    if under_test {
                        tests.insert(rest.split(['(', '<']).next().unwrap().trim().to_string());
                    }
                    under_test = false;
                } else {
                    under_test = false;
                }
            }
        }
    }
    found
}

#[test]
fn shell_words_split_like_sh() {
    assert_eq!(
        shell_words(r#"kosmo a --eval 'print("x # y")' "two words" # note"#),
        ["kosmo", "a", "--eval", r#"print("x # y")"#, "two words"]
    );
}

/// `log(...)` goes to stderr in both modes (never into the envelope), `print` into the
/// envelope with `--json` and straight to stdout without; both redacted. Catches: progress
/// lines mixed into the JSON on stdout, or a key shown through the live path.
#[test]
fn log_goes_to_stderr_and_print_to_its_place() {
    let home = tempfile::tempdir().unwrap();
    let key = new_key("log");
    let code = format!("log('progress', '{key}') print('out') return 1");
    for json in [true, false] {
        let mut cmd = kosmo(home.path());
        cmd.env("KLAVIYO_API_KEY", &key)
            .args(["integrations:lua", "--eval", &code]);
        if json {
            cmd.arg("--json");
        }
        let run = run(cmd, None);
        assert_eq!(run.code, 0, "{}", run.stderr);
        assert_eq!(run.stderr, "progress\t<redacted>\n");
        if json {
            let env = run.json();
            assert_eq!(env["output"], "out\n");
        } else {
            assert_eq!(run.stdout, "out\n1\n");
        }
    }
}
