//! End-to-end tests of the `kosmo` binary against the Klaviyo emulator: the contract's seed
//! commands, the envelope and exit codes, error tables, the sandbox's restrictions and limits,
//! permissions, accounts, the examples, and that no API key ever shows in any output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// A `kosmo` invocation with a private KOSMO_HOME and no inherited Klaviyo settings.
struct Kosmo {
    cmd: Command,
    stdin: Option<String>,
    key: Option<String>,
}

impl Kosmo {
    fn new(home: &Path) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kosmo"));
        without_terminal(&mut cmd)
            .env("KOSMO_HOME", home)
            .env("HOME", home)
            .env_remove("KLAVIYO_API_KEY")
            .env_remove("KLAVIYO_BASE_URL");
        Kosmo {
            cmd,
            stdin: None,
            key: None,
        }
    }

    /// Use the emulator as the default account, with this key.
    fn account(mut self, key: &str) -> Self {
        self.cmd
            .env("KLAVIYO_API_KEY", key)
            .env("KLAVIYO_BASE_URL", emulator().base_url());
        self.key = Some(key.to_string());
        self
    }

    fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.cmd.args(args);
        self
    }

    fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_string());
        self
    }

    fn run(mut self) -> Run {
        self.cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        self.cmd.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = self.cmd.spawn().expect("kosmo runs");
        if let Some(text) = self.stdin.take() {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).unwrap();
        }
        let out = child.wait_with_output().unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if let Some(key) = &self.key {
            run.assert_hides(key);
        }
        run
    }
}

fn home() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn lua(home: &Path, code: &str) -> Kosmo {
    Kosmo::new(home).args(["integrations:lua", "--eval", code])
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

// ------------------------------------------------------------------------------------------
// The contract's seed commands
// ------------------------------------------------------------------------------------------

#[test]
fn seed_create_profile_dump_json() {
    let home = home();
    let key = new_key("seed");
    let code = r#"dump(app.integrations.klaviyo.create_profile({email = "ada.seed@example.com", first_name = "Ada", properties = {plan = "pro"}}))"#;

    // Headless, a write asks, so it is refused, naming --force; nothing reaches Klaviyo.
    let refused = lua(home.path(), code).account(&key).args(["--json"]).run();
    assert_eq!(refused.code, 1, "{}", refused.stdout);
    let env = refused.json();
    assert_eq!(env["success"], false);
    assert_eq!(env["error"]["code"], "permission_denied");
    assert!(
        env["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--force")
    );
    assert_eq!(env["meta"]["permission_bypassed"], false);
    assert_eq!(
        env["integration_calls"][0]["error"]
            .as_str()
            .unwrap()
            .split(':')
            .next(),
        Some("permission_denied")
    );
    assert_eq!(emulator().request_count(&key), 0);

    // --force lifts it.
    let run = lua(home.path(), code)
        .account(&key)
        .args(["--json", "--force"])
        .run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let env = run.json();
    assert_eq!(env["success"], true);
    let output = env["output"].as_str().unwrap();
    assert!(
        output.contains(r#"email = "ada.seed@example.com""#),
        "{output}"
    );
    assert!(
        output.contains(r#"properties = { plan = "pro" }"#),
        "{output}"
    );
    assert!(output.contains("id = \""), "{output}");
    assert_eq!(env["meta"]["permission_bypassed"], true);
    let call = &env["integration_calls"][0];
    assert_eq!(call["path"], "klaviyo.create_profile");
    assert_eq!(call["account"], "default");
    assert_eq!(call["status"], 201);
    assert!(call["error"].is_null());
    assert!(call["duration_ms"].is_u64());
    assert_eq!(emulator().request_count(&key), 1);
}

#[test]
fn seed_docs_overview_and_function_pages() {
    let home = home();
    let run = lua(home.path(), r#"print(docs.read("klaviyo"))"#).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    for needle in [
        "KLAVIYO_API_KEY",
        "integrations:configure",
        "app.integrations.klaviyo.default",
        "next_cursor",
        "page_cursor",
        "permission_denied",
        "duplicate_profile",
        "rate_limited",
        "Klaviyo-API-Key",
        "```lua",
    ] {
        assert!(
            run.stdout.contains(needle),
            "overview lacks {needle}:\n{}",
            run.stdout
        );
    }
    for f in kosmo_runtime::catalog().functions() {
        assert!(
            run.stdout.contains(&format!("`{}`", f.name)),
            "overview lacks {}",
            f.name
        );
    }

    let run = lua(home.path(), r#"print(docs.read("klaviyo.create_profile"))"#).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    for needle in [
        "# klaviyo.create_profile",
        "`POST /api/profiles`",
        "| `email` | string | no |",
        "| `phone_number` | string | no |",
        "**write**",
        "## Example",
        "duplicate_profile",
    ] {
        assert!(
            run.stdout.contains(needle),
            "create_profile page lacks {needle}:\n{}",
            run.stdout
        );
    }

    let run = lua(home.path(), r#"print(docs.read("klaviyo.list_events"))"#).run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    for needle in [
        "1-1000",
        "greater-or-equal",
        r#"equals(metric_id,"ABC123")"#,
        "and(...)",
        "page_cursor",
    ] {
        assert!(
            run.stdout.contains(needle),
            "list_events page lacks {needle}:\n{}",
            run.stdout
        );
    }

    let run = lua(
        home.path(),
        r###"local full = lua_read_doc("integrations.klaviyo")
           local hits = docs.search("subscribe a list")
           return #docs.list(), hits[1].topic, full:find("## klaviyo.list_campaigns", 1, true) ~= nil"###,
    )
    .args(["--json"])
    .run();
    let env = run.json();
    assert_eq!(
        env["result"],
        serde_json::json!([
            kosmo_runtime::catalog().functions().len() + 1,
            "klaviyo.subscribe_profile",
            true
        ])
    );

    let run = Kosmo::new(home.path())
        .args(["integrations:docs", "klaviyo.list_lists"])
        .run();
    assert_eq!(run.code, 0);
    // The page size Klaviyo's lists endpoint allows, from the spec slice (a bare "1-10" would
    // also match "1-100").
    let pages_of = format!(
        "pages of lists hold at most {}",
        klaviyo_spec::LISTS_PAGE.max
    );
    assert!(run.stdout.contains(&pages_of), "{}", run.stdout);
    assert!(
        run.stdout.contains("How many to return, 1-100; default 20"),
        "{}",
        run.stdout
    );
    let run = Kosmo::new(home.path())
        .args(["integrations:docs", "klaviyo.list_listz"])
        .run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("klaviyo.list_lists"), "{}", run.stderr);
}

#[test]
fn seed_workflow_file_with_force_json() {
    let home = home();
    let key = new_key("workflow");
    let script = home.path().join("workflow.lua");
    std::fs::write(
        &script,
        r#"
local k = app.integrations.klaviyo
local p = k.create_profile({email = "grace.workflow@example.com", first_name = "Grace", properties = {plan = "team"}})
local list = k.klaviyo_create_list({name = "Workflow"})
local sub = k.subscribe_profile({list_id = list.id, email = p.email})
local ev = k.create_event({profile_id = p.id, event_name = "Placed Order", value = 19.99, properties = {sku = "X"}})
local again = k.get_profile({profile_id = p.id})
local members = k.list_list_profiles({list_id = list.id})
print("members", #members.items)
return {plan = again.properties.plan, subscribed = sub.accepted, event = ev.event_name, members = #members.items, cursor = members.next_cursor}
"#,
    )
    .unwrap();
    let run = Kosmo::new(home.path())
        .account(&key)
        .args(["integrations:lua"])
        .arg_path(&script)
        .args(["--force", "--json"])
        .run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let env = run.json();
    assert_eq!(env["success"], true, "{env}");
    assert_eq!(env["result"][0]["plan"], "team");
    assert_eq!(env["result"][0]["subscribed"], true);
    assert_eq!(env["result"][0]["event"], "Placed Order");
    assert_eq!(env["result"][0]["members"], 1);
    assert_eq!(env["output"], "members\t1\n");
    let paths: Vec<&str> = env["integration_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        [
            "klaviyo.create_profile",
            "klaviyo.create_list",
            "klaviyo.subscribe_profile",
            "klaviyo.create_event",
            "klaviyo.get_profile",
            "klaviyo.list_list_profiles"
        ]
    );
    let statuses: Vec<u64> = env["integration_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 201, 202, 202, 200, 200]);
    // Every request the plugin sent matched Klaviyo's OpenAPI.
    for r in emulator().requests(&key) {
        assert!(
            r.violations.is_empty(),
            "{} {} violates the spec: {:?}",
            r.method,
            r.path,
            r.violations
        );
    }
}

trait ArgPath {
    fn arg_path(self, path: &Path) -> Self;
}

impl ArgPath for Kosmo {
    fn arg_path(mut self, path: &Path) -> Self {
        self.cmd.arg(path);
        self
    }
}

#[test]
fn seed_default_and_named_accounts() {
    let home = home();
    let default_key = new_key("default");
    let shop_key = new_key("shop");
    #[cfg(unix)]
    let home_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(home.path()).unwrap().permissions().mode() & 0o7777
    };

    let run = Kosmo::new(home.path())
        .args(["integrations:configure", "klaviyo", "--account", "shop"])
        .args([
            "--set",
            &format!("api_key={shop_key}"),
            "--set",
            &format!("base_url={}", emulator().base_url()),
        ])
        .args(["--write", "allow"])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.assert_hides(&shop_key);
    assert!(run.stdout.contains("shop"), "{}", run.stdout);

    let file = home.path().join("accounts.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // An existing KOSMO_HOME is never chmod-ed (security review, finding 7): this one is
        // private to the user already, and stays as it was.
        assert_eq!(
            std::fs::metadata(home.path()).unwrap().permissions().mode() & 0o7777,
            home_mode
        );
    }
    let listed = Kosmo::new(home.path())
        .args(["integrations:configure", "klaviyo", "--list"])
        .run();
    assert_eq!(listed.code, 0);
    assert!(
        listed.stdout.contains("`shop`") && listed.stdout.contains("write allow"),
        "{}",
        listed.stdout
    );
    listed.assert_hides(&shop_key);

    // The shop account allows writes; the default one still asks, so --force is needed there.
    let code = r#"
local k = app.integrations.klaviyo
k.shop.create_list({name = "Shop list"})
k.default.create_list({name = "Default list"})
return #k.shop.list_lists({}).items, k.shop.list_lists({}).items[1].name, k.default.list_lists({}).items[1].name, k.list_lists({}).items[1].name
"#;
    let run = lua(home.path(), code)
        .account(&default_key)
        .args(["--json"])
        .run();
    run.assert_hides(&shop_key);
    let env = run.json();
    assert_eq!(env["error"]["code"], "permission_denied", "{env}");
    assert_eq!(env["error"]["account"], "default");
    assert_eq!(
        emulator().request_count(&shop_key),
        1,
        "the shop write went through"
    );

    let run = lua(home.path(), code)
        .account(&default_key)
        .args(["--json", "--force"])
        .run();
    run.assert_hides(&shop_key);
    let env = run.json();
    assert_eq!(env["success"], true, "{env}");
    assert_eq!(
        env["result"],
        serde_json::json!([2, "Shop list", "Default list", "Default list"])
    );
    let accounts: Vec<&str> = env["integration_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["account"].as_str().unwrap())
        .collect();
    assert_eq!(
        accounts,
        ["shop", "default", "shop", "shop", "default", "default"]
    );

    // Unknown accounts are unknown names, with the accounts listed.
    let run = lua(
        home.path(),
        "return app.integrations.klaviyo.shopp.list_lists({})",
    )
    .account(&default_key)
    .run();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("Did you mean `app.integrations.klaviyo.shop`?"),
        "{}",
        run.stderr
    );

    // Deny is refused even for reads, and --force lifts it.
    let run = Kosmo::new(home.path())
        .args([
            "integrations:configure",
            "klaviyo",
            "--account",
            "shop",
            "--read",
            "deny",
        ])
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    let read = "return #app.integrations.klaviyo.shop.list_lists({}).items";
    let run = lua(home.path(), read).args(["--json"]).run();
    assert_eq!(run.json()["error"]["code"], "permission_denied");
    let run = lua(home.path(), read).args(["--json", "--force"]).run();
    assert_eq!(run.json()["result"][0], 2, "{}", run.stdout);
    run.assert_hides(&shop_key);
}

#[test]
fn seed_examples_run_in_the_sandbox() {
    let home = home();
    // What each example returns, at a path into its result, given the emulator's seed data
    // (4 email and 3 SMS campaigns, 60 flows) and what the example writes itself.
    for (file, check, expected) in [
        ("onboarding.lua", "/plan", serde_json::json!("pro")),
        ("export_list.lua", "/count", serde_json::json!(7)),
        (
            "campaign_report.lua",
            "/campaigns/email/total",
            serde_json::json!(4),
        ),
        (
            "campaign_report.lua",
            "/campaigns/sms/total",
            serde_json::json!(3),
        ),
        ("campaign_report.lua", "/flows/total", serde_json::json!(60)),
    ] {
        let run = Kosmo::new(home.path())
            .args(["integrations:lua"])
            .arg_path(&examples_dir().join(file))
            .args(["--sandbox", "--force", "--json"])
            .run();
        assert_eq!(run.code, 0, "{file}: {}{}", run.stdout, run.stderr);
        let env = run.json();
        assert_eq!(env["success"], true, "{file}: {env}");
        assert_eq!(env["meta"]["sandbox"], true);
        assert_eq!(
            env["result"][0].pointer(check),
            Some(&expected),
            "{file}: {env}"
        );
        let sandbox_key_shown = run.stdout.contains("pk_sandbox_");
        assert!(!sandbox_key_shown, "the sandbox key is a key too");
    }
    let run = Kosmo::new(home.path())
        .args(["integrations:lua"])
        .arg_path(&examples_dir().join("export_list.lua"))
        .args(["--sandbox", "--force", "--json"])
        .run();
    let env = run.json();
    assert_eq!(env["result"][0]["count"], 7);
    assert_eq!(env["result"][0]["pages"], 3);
}

/// The README's run command: the sandbox's throwaway account has nothing to protect, so its
/// writes are not asked about, and the workflow succeeds with no `--force` and no account.
#[test]
fn readme_run_command_succeeds_in_the_sandbox_without_force() {
    let home = home();
    let run = Kosmo::new(home.path())
        .args(["integrations:lua"])
        .arg_path(&examples_dir().join("onboarding.lua"))
        .args(["--sandbox", "--json"])
        .run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let env = run.json();
    assert_eq!(env["success"], true, "{env}");
    assert_eq!(env["meta"]["permission_bypassed"], false, "{env}");
    assert_eq!(
        env["integration_calls"].as_array().unwrap().len(),
        5,
        "{env}"
    );
    // A second run loads the compiled component from $KOSMO_HOME/cache.
    let cached: Vec<_> = std::fs::read_dir(home.path().join("cache"))
        .unwrap()
        .collect();
    assert_eq!(cached.len(), 1);
}

// ------------------------------------------------------------------------------------------
// Envelope and exit codes
// ------------------------------------------------------------------------------------------

#[test]
fn envelope_fields_and_exit_codes() {
    let home = home();
    let run = lua(
        home.path(),
        r#"print("hello") return 1, "two", {three = 3}, nil"#,
    )
    .args(["--json"])
    .run();
    assert_eq!(run.code, 0);
    let env = run.json();
    for field in [
        "success",
        "output",
        "error",
        "result",
        "execution_time_ms",
        "memory_usage",
        "integration_calls",
        "meta",
    ] {
        assert!(env.get(field).is_some(), "envelope lacks {field}: {env}");
    }
    assert_eq!(env["success"], true);
    assert_eq!(env["output"], "hello\n");
    assert!(env["error"].is_null());
    assert_eq!(
        env["result"],
        serde_json::json!([1, "two", {"three": 3}, null])
    );
    assert!(env["memory_usage"].as_u64().unwrap() > 0);
    assert_eq!(env["meta"]["permission_bypassed"], false);
    assert_eq!(env["integration_calls"], serde_json::json!([]));

    // Without --json: output, then the results; exit 0.
    let run = lua(home.path(), r#"print("hi") return "done", {n = 1}"#).run();
    assert_eq!(run.code, 0);
    assert!(run.stdout.starts_with("hi\n\"done\"\n{"), "{}", run.stdout);

    // A failing script: exit 1, one error line with its code on stderr.
    let run = lua(home.path(), r#"error("boom")"#).run();
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.trim(), "error: script_error: eval:1: boom");
    let run = lua(home.path(), r#"error("boom")"#).args(["--json"]).run();
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["error"]["code"], "script_error");
    let run = lua(home.path(), "x = = 1").args(["--json"]).run();
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["error"]["code"], "syntax_error");

    // No code, both FILE and --eval, a bad option: exit 2.
    let run = Kosmo::new(home.path()).args(["integrations:lua"]).run();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no code"), "{}", run.stderr);
    let run = Kosmo::new(home.path())
        .args(["integrations:lua", "x.lua", "--eval", "return 1"])
        .run();
    assert_eq!(run.code, 2);
    let run = Kosmo::new(home.path())
        .args(["integrations:lua", "--eval", "return 1", "--bogus"])
        .run();
    assert_eq!(run.code, 2);
    let run = Kosmo::new(home.path())
        .args([
            "integrations:lua",
            "--eval",
            "return 1",
            "--cpu-limit",
            "soon",
        ])
        .run();
    assert_eq!(run.code, 2);
    let run = Kosmo::new(home.path())
        .args([
            "integrations:lua",
            "--eval",
            "return 1",
            "--memory-limit",
            "12",
        ])
        .run();
    assert_eq!(run.code, 2);
    let run = Kosmo::new(home.path())
        .args(["integrations:lua", "/no/such/file.lua"])
        .run();
    assert_eq!(run.code, 2);
    let run = Kosmo::new(home.path()).args(["integrations:nothing"]).run();
    assert_eq!(run.code, 2);

    // Code from standard input.
    let run = Kosmo::new(home.path())
        .args(["integrations:lua", "--json"])
        .stdin("return 6 * 7")
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["result"][0], 42);
}

#[test]
fn call_command_uses_the_same_envelope() {
    let home = home();
    let key = new_key("call");
    let run = Kosmo::new(home.path())
        .account(&key)
        .args([
            "integrations:call",
            "klaviyo.create_list",
            "--name",
            "From the CLI",
            "--force",
            "--json",
        ])
        .run();
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let env = run.json();
    assert_eq!(env["result"][0]["name"], "From the CLI");
    assert_eq!(env["integration_calls"][0]["path"], "klaviyo.create_list");
    let id = env["result"][0]["id"].as_str().unwrap().to_string();

    let run = Kosmo::new(home.path())
        .account(&key)
        .args([
            "integrations:call",
            "klaviyo.get_list",
            "--args",
            &format!(r#"{{"list_id": "{id}"}}"#),
            "--json",
        ])
        .run();
    assert_eq!(run.json()["result"][0]["name"], "From the CLI");

    let run = Kosmo::new(home.path())
        .account(&key)
        .args([
            "integrations:call",
            "klaviyo.list_lists",
            "--limit",
            "ten",
            "--json",
        ])
        .run();
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(run.json()["error"]["field"], "limit");
    let run = Kosmo::new(home.path())
        .account(&key)
        .args(["integrations:call", "klaviyo.get_lists"])
        .run();
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("klaviyo.get_list"), "{}", run.stderr);
}

// ------------------------------------------------------------------------------------------
// Errors
// ------------------------------------------------------------------------------------------

#[test]
fn errors_are_pcall_able_tables() {
    let home = home();
    let key = new_key("errors");
    let code = r#"
local k = app.integrations.klaviyo
local out = {}
local ok, e = pcall(k.create_profile, {emial = "ada@example.com"})
out.typo = {ok = ok, code = e.code, field = e["field"], message = e.message, line = tostring(e), status = e.status, fn = e["function"]}
ok, e = pcall(k.get_profile, {})
out.missing = {code = e.code, field = e["field"]}
ok, e = pcall(k.list_lists, {limit = "ten"})
out.type = {code = e.code, field = e["field"]}
ok, e = pcall(k.get_profile, {profile_id = "01NOPE"})
out.not_found = {code = e.code, status = e.status, account = e.account}
ok, e = pcall(function() return k.get_profle end)
out.unknown = {code = e.code, message = e.message}
return out
"#;
    let run = lua(home.path(), code).account(&key).args(["--json"]).run();
    assert_eq!(run.code, 0, "{}", run.stdout);
    let r = &run.json()["result"][0];
    assert_eq!(r["typo"]["ok"], false);
    assert_eq!(r["typo"]["code"], "invalid_argument");
    assert_eq!(r["typo"]["field"], "emial");
    assert!(
        r["typo"]["message"]
            .as_str()
            .unwrap()
            .contains("Did you mean `email`?"),
        "{r}"
    );
    let line = r["typo"]["line"].as_str().unwrap();
    assert!(
        line.starts_with("invalid_argument: ") && !line.contains('\n'),
        "{line}"
    );
    assert!(r["typo"]["status"].is_null());
    assert_eq!(r["typo"]["fn"], "create_profile");
    assert_eq!(
        r["missing"],
        serde_json::json!({"code": "invalid_argument", "field": "profile_id"})
    );
    assert_eq!(
        r["type"],
        serde_json::json!({"code": "invalid_argument", "field": "limit"})
    );
    assert_eq!(
        r["not_found"],
        serde_json::json!({"code": "not_found", "status": 404, "account": "default"})
    );
    assert_eq!(r["unknown"]["code"], "unknown_function");
    assert_eq!(
        r["unknown"]["message"],
        "Unknown function: app.integrations.klaviyo.get_profle. Did you mean `app.integrations.klaviyo.get_profile`?"
    );
    // Only the not_found call reached Klaviyo: arguments are checked first.
    assert_eq!(emulator().request_count(&key), 1);

    // Uncaught, the error table is the envelope's error.
    let run = lua(
        home.path(),
        r#"app.integrations.klaviyo.get_profile({profile_id = "01NOPE"})"#,
    )
    .account(&key)
    .args(["--json"])
    .run();
    assert_eq!(run.code, 1);
    let env = run.json();
    assert_eq!(env["error"]["code"], "not_found");
    assert_eq!(env["error"]["status"], 404);
    assert_eq!(env["error"]["function"], "get_profile");
    assert_eq!(env["integration_calls"][0]["status"], 404);
    let run = lua(
        home.path(),
        "return app.integrations.klaviyo.crate_list({name = 'x'})",
    )
    .run();
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("Unknown function: app.integrations.klaviyo.crate_list. Did you mean `app.integrations.klaviyo.create_list`?"),
        "{}",
        run.stderr
    );
}

// ------------------------------------------------------------------------------------------
// The sandbox
// ------------------------------------------------------------------------------------------

#[test]
fn sandbox_has_no_os_io_or_loaders() {
    let home = home();
    let code = r#"
local out = {}
for _, name in ipairs({"os", "io", "require", "dofile", "loadfile", "debug", "package", "collectgarbage"}) do
  out[name] = type(_G[name])
end
out.string_dump = type(string.dump)
local f, msg = load("\27Lua\x54\x00binary")
out.binary = {f == nil, msg}
out.text = load("return 20 + 22")()
out.env_text = load("return x", "chunk", "t", {x = 5})()
out.mode_override = (load("return 1", "c", "b")) ~= nil
return out
"#;
    let run = lua(home.path(), code).args(["--json"]).run();
    assert_eq!(run.code, 0, "{}", run.stdout);
    let r = &run.json()["result"][0];
    for name in [
        "os",
        "io",
        "require",
        "dofile",
        "loadfile",
        "debug",
        "package",
        "collectgarbage",
    ] {
        assert_eq!(r[name], "nil", "{name} is reachable: {r}");
    }
    assert_eq!(r["string_dump"], "nil");
    assert_eq!(r["binary"][0], true);
    assert!(r["binary"][1].as_str().unwrap().contains("binary"), "{r}");
    assert_eq!(r["text"], 42);
    assert_eq!(r["env_text"], 5);
    assert_eq!(
        r["mode_override"], true,
        "a text chunk loads whatever mode is asked"
    );

    let run = lua(home.path(), "return os.time()").run();
    assert_eq!(run.code, 1);
    let run = lua(home.path(), r#"return require("os")"#).run();
    assert_eq!(run.code, 1);
}

#[test]
fn app_tables_are_read_only() {
    let home = home();
    let key = new_key("readonly");
    let code = r#"
local k = app.integrations.klaviyo
local out = {}
out.setmetatable = pcall(setmetatable, app, {__index = function() return "evil" end})
out.setmetatable_k = pcall(setmetatable, k, {})
out.rawset = pcall(rawset, app, "integrations", {})
out.rawset_k = pcall(rawset, k, "list_lists", print)
out.assign = pcall(function() k.list_lists = print end)
out.assign_app = pcall(function() app.integrations = {} end)
out.getmetatable = getmetatable(k)
out.type = type(k)
out.still_works = #k.list_lists({}).items
return out
"#;
    let run = lua(home.path(), code).account(&key).args(["--json"]).run();
    assert_eq!(run.code, 0, "{}", run.stdout);
    let r = &run.json()["result"][0];
    for attempt in [
        "setmetatable",
        "setmetatable_k",
        "rawset",
        "rawset_k",
        "assign",
        "assign_app",
        "getmetatable",
    ] {
        assert_eq!(r[attempt], false, "{attempt} succeeded: {r}");
    }
    assert_eq!(r["still_works"], 0);
    assert_eq!(emulator().request_count(&key), 1);
}

#[test]
fn cpu_limit_stops_runaway_loops() {
    let home = home();
    for code in [
        "while true do end",
        "while true do pcall(function() while true do end end) end",
        "local co = coroutine.wrap(function() while true do end end) co()",
        "local n = 0 while true do n = n + 1 local ok = pcall(error, 'x') end",
    ] {
        let started = Instant::now();
        let run = lua(home.path(), code)
            .args(["--json", "--cpu-limit", "0.5"])
            .run();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{code} ran for {:?}",
            started.elapsed()
        );
        assert_eq!(run.code, 1, "{code}: {}", run.stdout);
        assert_eq!(
            run.json()["error"]["code"],
            "cpu_limit",
            "{code}: {}",
            run.stdout
        );
    }
    // Stuck inside one library call, where the hook cannot reach: the watchdog ends it.
    let started = Instant::now();
    let run = lua(
        home.path(),
        r#"return string.find(string.rep("a", 30000), ".-.-.-.-b")"#,
    )
    .args(["--json", "--cpu-limit", "0.5"])
    .run();
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["error"]["code"], "cpu_limit");
}

#[test]
fn memory_limit_stops_bombs() {
    let home = home();
    for code in [
        r#"local s = string.rep("x", 100000000) return #s"#,
        r#"local s = "x" while true do s = s .. s end"#,
        "local t = {} for i = 1, 1e9 do t[i] = i end",
    ] {
        let run = lua(home.path(), code)
            .args(["--json", "--memory-limit", "8M"])
            .run();
        assert_eq!(run.code, 1, "{code}: {}", run.stdout);
        let env = run.json();
        assert_eq!(env["error"]["code"], "memory_limit", "{code}: {env}");
    }
    // A caught allocation failure is just an error; the script goes on.
    let run = lua(
        home.path(),
        r#"local ok = pcall(string.rep, "x", 100000000) return ok"#,
    )
    .args(["--json", "--memory-limit", "8M"])
    .run();
    assert_eq!(run.json()["result"][0], false);
}

#[test]
fn deep_recursion_is_an_error_not_a_crash() {
    let home = home();
    for code in [
        "local function f(n) return 1 + f(n + 1) end return f(1)",
        "local function f() return pcall(f) end return f()",
        "local t = setmetatable({}, {__index = function(t, k) return t[k .. 'x'] end}) return t.a",
    ] {
        let run = lua(home.path(), code).args(["--json"]).run();
        let env = run.json();
        assert!(
            run.code == 0 || run.code == 1,
            "{code}: exit {} {}",
            run.code,
            run.stderr
        );
        if run.code == 1 {
            assert_eq!(env["success"], false, "{code}: {env}");
            assert!(env["error"]["message"].is_string(), "{code}: {env}");
        }
    }
}

#[test]
fn print_flood_is_capped() {
    let home = home();
    let run = lua(
        home.path(),
        r#"while true do print(string.rep("flood", 20)) end"#,
    )
    .args(["--json"])
    .run();
    assert_eq!(run.code, 1);
    let env = run.json();
    assert_eq!(env["error"]["code"], "output_limit");
    let output = env["output"].as_str().unwrap();
    assert!(
        output.len() <= 1024 * 1024 && output.len() > 1000,
        "{}",
        output.len()
    );
    let run = lua(home.path(), r#"while true do pcall(print, "again") end"#)
        .args(["--json", "--cpu-limit", "5"])
        .run();
    assert_eq!(run.json()["error"]["code"], "output_limit");
}

#[test]
fn globals_json_regex_dump() {
    let home = home();
    let code = r#"
local t = json.decode('{"a": [1, 2, {"b": null}], "e": [], "s": "x"}')
local same = json.encode(t)
local m1, m2 = regex.match("order A-1042 shipped", "([A-Z])-(\\d+)")
local all = regex.match_all("a1 b22 c333", "\\d+")
local replaced, n = regex.gsub("2024-01-05", "(?P<y>\\d{4})-(?P<m>\\d{2})-(?P<d>\\d{2})", "${d}/${m}/${y}")
local back = dump({x = 1, list = {1, 2}})
return {encoded = same, m = {m1, m2}, all = all, replaced = replaced, n = n, dumped_back = back.x, float = json.encode(10 / 2)}
"#;
    let run = lua(home.path(), code).args(["--json"]).run();
    assert_eq!(run.code, 0, "{}", run.stdout);
    let env = run.json();
    let r = &env["result"][0];
    assert_eq!(r["encoded"], r#"{"a":[1,2,{}],"e":[],"s":"x"}"#);
    assert_eq!(r["m"], serde_json::json!(["A", "1042"]));
    assert_eq!(r["all"], serde_json::json!(["1", "22", "333"]));
    assert_eq!(r["replaced"], "05/01/2024");
    assert_eq!(r["n"], 1);
    assert_eq!(r["dumped_back"], 1);
    assert_eq!(r["float"], "5");
    assert_eq!(env["output"], "{ list = { 1, 2 }, x = 1 }\n");
    let run = lua(home.path(), r#"return regex.match("x", "(")"#).run();
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("invalid pattern"), "{}", run.stderr);
}

#[test]
fn keys_never_show() {
    let home = home();
    let key = new_key("secret");
    // Even a script that has the key and prints it, or fails with it, shows it redacted.
    let code = format!(r#"print("{key}") dump({{k = "{key}"}}) error("bad key {key}")"#);
    let run = lua(home.path(), &code).account(&key).args(["--json"]).run();
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("<redacted>"), "{}", run.stdout);
    let run = lua(home.path(), &code).account(&key).run();
    assert!(run.stderr.contains("<redacted>"), "{}", run.stderr);
    // A bad option next to a key on the command line.
    let run = Kosmo::new(home.path())
        .args([
            "integrations:configure",
            "klaviyo",
            "--account",
            "x",
            "--set",
            &format!("api_key={key}"),
            "--bogus",
        ])
        .run();
    assert_eq!(run.code, 2);
    run.assert_hides(&key);
    let run = Kosmo::new(home.path())
        .args([
            "integrations:configure",
            "klaviyo",
            "--account",
            "get_profile",
            "--set",
            &format!("api_key={key}"),
        ])
        .run();
    assert_eq!(run.code, 2);
    run.assert_hides(&key);
    // Nor in the accounts a run reports.
    let run = lua(home.path(), "return 1")
        .account(&key)
        .args(["--json", "--sandbox"])
        .run();
    assert_eq!(run.code, 0);
}

#[test]
fn repl_keeps_state_between_lines() {
    let home = home();
    let run = Kosmo::new(home.path())
        .args(["integrations:lua", "--repl"])
        .stdin("x = 40\nx + 2\nfor i = 1, 2 do\n  print('line', i)\nend\nerror('oops')\nlocal t = {n = x}\nreturn x * 2\n")
        .run();
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "42\nline\t1\nline\t2\n80\n");
    assert!(
        run.stderr.contains("error: script_error: ") && run.stderr.contains("oops"),
        "{}",
        run.stderr
    );
}
