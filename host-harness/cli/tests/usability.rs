//! What makes `kosmo` pleasant to use without a terminal in the way: usage errors that stay
//! JSON under `--json`, errors that say where they happened, help with examples for every
//! command, shell completions, `integrations:check`, `configure --list` naming what the
//! environment overrides, docs search snippets, and a README quickstart that runs verbatim.

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
