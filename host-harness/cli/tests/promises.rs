//! README promises of the `kosmo` binary that a regression would break silently: `--sandbox`
//! re-routes configured accounts to its emulator (so a write without `--force` never reaches
//! a real account), a configured `deny` still denies there, and a stored account's key is
//! redacted from `integrations:call` output and errors.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

mod common;
use common::{Run, emulator, new_key};

/// No controlling terminal: kosmo asks on `/dev/tty` whenever there is one, and a question
/// would wait for whoever runs the tests.
fn without_terminal(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    }
}

/// `kosmo` with a private KOSMO_HOME and no inherited Klaviyo settings.
fn kosmo(home: &Path, args: &[&str]) -> Run {
    let out = without_terminal(&mut Command::new(env!("CARGO_BIN_EXE_kosmo")))
        .env("KOSMO_HOME", home)
        .env("HOME", home)
        .env_remove("KLAVIYO_API_KEY")
        .env_remove("KLAVIYO_BASE_URL")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kosmo runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn configure(home: &Path, account: &str, key: &str, base_url: &str, extra: &[&str]) {
    let mut args = vec![
        "integrations:configure",
        "klaviyo",
        "--account",
        account,
        "--set",
    ];
    let key_setting = format!("api_key={key}");
    let url_setting = format!("base_url={base_url}");
    args.extend([key_setting.as_str(), "--set", url_setting.as_str()]);
    args.extend(extra);
    let run = kosmo(home, &args);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    run.assert_hides(key);
}

/// A loopback port that stands for a real account: it counts every connection and closes it
/// at once (so a request sent there fails fast with `transport`).
struct Tripwire {
    url: String,
    hits: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Tripwire {
    fn new() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (h, s) = (hits.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        h.fetch_add(1, Ordering::SeqCst);
                        drop(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Tripwire { url, hits, stop }
    }

    fn hits(&self) -> usize {
        // Anything connected before the run ended is in the accept queue: let the thread take it.
        std::thread::sleep(Duration::from_millis(50));
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// `--sandbox` re-routes a configured account to the run's emulator: a write with no
/// `--force` succeeds there (the throwaway account's `ask` is lifted) and the configured
/// URL is never contacted. The controls show the same account outside the sandbox asks
/// (refused headless) and, with `--force`, really goes to the configured URL.
/// Catches: the sandbox keeping configured accounts' base URLs (the write would hit the
/// tripwire), or lifting `ask` outside the sandbox.
#[test]
fn sandbox_reroutes_configured_accounts_and_never_touches_their_url() {
    let home = tempfile::tempdir().unwrap();
    let real = Tripwire::new();
    let key = new_key("reroute");
    configure(home.path(), "shop", &key, &real.url, &[]);
    let write = [
        "integrations:call",
        "klaviyo.create_list",
        "--account",
        "shop",
        "--name",
        "Sandboxed",
        "--json",
    ];

    let mut args = write.to_vec();
    args.push("--sandbox");
    let run = kosmo(home.path(), &args);
    run.assert_hides(&key);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let env = run.json();
    assert_eq!(env["success"], true, "{env}");
    assert_eq!(env["result"][0]["name"], "Sandboxed");
    assert_eq!(env["meta"]["sandbox"], true);
    assert_eq!(env["meta"]["permission_bypassed"], false);
    assert_eq!(env["integration_calls"][0]["account"], "shop");
    assert_eq!(env["integration_calls"][0]["status"], 201);
    assert_eq!(real.hits(), 0, "the sandbox run reached the configured URL");

    // Control: outside the sandbox the same write asks, and headless that is a refusal.
    let run = kosmo(home.path(), &write);
    run.assert_hides(&key);
    assert_eq!(run.json()["error"]["code"], "permission_denied");
    assert_eq!(real.hits(), 0);

    // Control: with --force it goes where the account says (and fails there, once: a POST).
    let mut args = write.to_vec();
    args.push("--force");
    let run = kosmo(home.path(), &args);
    run.assert_hides(&key);
    assert_eq!(run.json()["error"]["code"], "transport", "{}", run.stdout);
    assert_eq!(real.hits(), 1);
}

/// A configured `deny` still denies in the sandbox (only `ask` is lifted there), for reads
/// and writes, and nothing is sent anywhere. Catches: the sandbox replacing every policy with
/// allow (e.g. `Policy::default().without_asking()` instead of the account's own).
#[test]
fn a_configured_deny_still_denies_in_the_sandbox() {
    let home = tempfile::tempdir().unwrap();
    let real = Tripwire::new();
    let key = new_key("deny");
    configure(
        home.path(),
        "locked",
        &key,
        &real.url,
        &["--read", "deny", "--write", "deny"],
    );
    for (function, value) in [("klaviyo.create_list", "Nope"), ("klaviyo.list_lists", "")] {
        let mut args = vec![
            "integrations:call",
            function,
            "--account",
            "locked",
            "--sandbox",
            "--json",
        ];
        if !value.is_empty() {
            args.extend(["--name", value]);
        }
        let run = kosmo(home.path(), &args);
        run.assert_hides(&key);
        assert_eq!(run.code, 1, "{function}: {}{}", run.stdout, run.stderr);
        let env = run.json();
        assert_eq!(
            env["error"]["code"], "permission_denied",
            "{function}: {env}"
        );
        assert_eq!(env["meta"]["sandbox"], true);
        assert!(
            env["integration_calls"][0]["status"].is_null(),
            "{function}: {env}"
        );
    }
    assert_eq!(real.hits(), 0);
}

/// A stored account's key (from `integrations:configure`, not the environment) is cut out of
/// `integrations:call`'s result and of its errors, in JSON and in plain text. Catches: the
/// redactor built from the environment key only (`store.keys()` not added).
#[test]
fn a_stored_key_is_redacted_from_call_output_and_errors() {
    let home = tempfile::tempdir().unwrap();
    let key = new_key("stored");
    configure(
        home.path(),
        "vault",
        &key,
        &emulator().base_url(),
        &["--write", "allow"],
    );

    // A result that carries the key: the list is named after it.
    let run = kosmo(
        home.path(),
        &[
            "integrations:call",
            "klaviyo.create_list",
            "--account",
            "vault",
            "--name",
            &key,
            "--json",
        ],
    );
    run.assert_hides(&key);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.json()["result"][0]["name"], "<redacted>");
    // It really was sent (the emulator holds the name): only the output is redacted.
    assert_eq!(emulator().request_count(&key), 1);

    // Errors that quote the key, as JSON and as text on stderr: a refused argument (whose
    // message shows the value, redacted) and Klaviyo's 404 for an id that is the key.
    for (function, field, code, quotes_value) in [
        (
            "klaviyo.create_profile",
            "--email",
            "invalid_argument",
            true,
        ),
        ("klaviyo.get_list", "--list_id", "not_found", false),
    ] {
        for json in [true, false] {
            let mut args = vec![
                "integrations:call",
                function,
                "--account",
                "vault",
                field,
                key.as_str(),
            ];
            if json {
                args.push("--json");
            }
            let run = kosmo(home.path(), &args);
            run.assert_hides(&key);
            assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
            let shown = if json { &run.stdout } else { &run.stderr };
            assert!(shown.contains(code), "{shown}");
            if quotes_value {
                assert!(shown.contains("<redacted>"), "{shown}");
            }
        }
    }
}

/// The REPL redacts like a script: a stored key typed into a line never comes back, whether
/// printed (live), logged, echoed as the line's value, or quoted by an error, in text and
/// `--json` modes. Guards: the REPL's per-line output (or its live `print`/`log` sinks)
/// skipping the redactor that scripts go through.
#[test]
fn a_stored_key_is_redacted_from_the_repl() {
    use std::io::Write;
    let home = tempfile::tempdir().unwrap();
    let key = new_key("repl");
    configure(
        home.path(),
        "default",
        &key,
        &emulator().base_url(),
        &["--write", "allow"],
    );
    let lines = format!(
        "print('{key}')\nlog('{key}')\n'{key}'\n\
         app.integrations.klaviyo.get_list({{list_id = '{key}'}})\nerror('{key}')\n"
    );
    for json in [false, true] {
        let mut args = vec!["integrations:lua", "--repl"];
        if json {
            args.push("--json");
        }
        let mut child = without_terminal(&mut Command::new(env!("CARGO_BIN_EXE_kosmo")))
            .env("KOSMO_HOME", home.path())
            .env("HOME", home.path())
            .env_remove("KLAVIYO_API_KEY")
            .env_remove("KLAVIYO_BASE_URL")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kosmo runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(lines.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        run.assert_hides(&key);
        // Every line ran and showed something, redacted: the test saw real output.
        let shown = format!("{}{}", run.stdout, run.stderr);
        assert!(
            shown.matches("<redacted>").count() >= 4,
            "json {json}: {shown}"
        );
        assert!(shown.contains("not_found"), "json {json}: {shown}");
    }
}
