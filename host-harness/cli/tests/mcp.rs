//! MCP through the `kosmo` binary, real processes at both ends (issue 11):
//! - `kosmo mcp:lua` / `integrations:lua` as clients of the TypeScript SDK's reference server
//!   (`@modelcontextprotocol/server-everything`, pinned in host-harness/mcp/tests/peers) and
//!   of `kosmo mcp:serve --sandbox` itself;
//! - `kosmo mcp:serve --sandbox` driven by the TypeScript SDK's own client (`sdk-client.mjs`);
//! - `kosmo mcp:configure` add / list / remove, never showing a secret.
//!
//! The peers are required, never skipped: without Node and `npm ci --prefix
//! host-harness/mcp/tests/peers` these tests fail with that command.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kosmo_runtime::{Kind, catalog};
use serde_json::{Value, json};

const KOSMO: &str = env!("CARGO_BIN_EXE_kosmo");
const INSTALL: &str = "npm ci --prefix host-harness/mcp/tests/peers";

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../mcp/tests/peers")
}

/// A peer file, failing loudly (with the install command) when Node or the file is missing.
fn require_peer(relative: &str) -> PathBuf {
    match Command::new("node").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "`node` (20 or later) is required by the MCP tests: install it, then run `{INSTALL}`"
        ),
    }
    let path = peers_dir().join(relative);
    assert!(
        path.exists(),
        "{} is missing: run `{INSTALL}` (from the repository root)",
        path.display()
    );
    path
}

fn everything_server() -> PathBuf {
    require_peer("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// A `$HOME` whose `.kosmo` keeps the compiled component across tests and runs: every
/// `mcp:serve --sandbox` child compiles it otherwise, which can take longer than a tool
/// call's deadline on a busy machine. The first use warms it.
fn shared_home() -> &'static Path {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kosmo-mcp-home");
        let kosmo_home = home.join(".kosmo");
        std::fs::create_dir_all(&kosmo_home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&kosmo_home, std::fs::Permissions::from_mode(0o700)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let warm = kosmo(dir.path(), &home)
            .args(["integrations:lua", "--sandbox", "--json", "--eval"])
            .arg("return app.integrations.klaviyo.list_lists({}).items")
            .output()
            .unwrap();
        assert!(
            warm.status.success(),
            "warming the component cache: {}",
            String::from_utf8_lossy(&warm.stdout)
        );
        home
    })
}

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

/// `kosmo` run in `cwd` with `home` as `$HOME` and `$HOME/.kosmo` as `$KOSMO_HOME`.
fn kosmo(cwd: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(KOSMO);
    without_terminal(&mut cmd)
        .current_dir(cwd)
        .env("HOME", home)
        .env("KOSMO_HOME", home.join(".kosmo"))
        .env_remove("KLAVIYO_API_KEY")
        .env_remove("KLAVIYO_BASE_URL")
        .stdin(Stdio::null());
    cmd
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

fn run(mut cmd: Command) -> Run {
    let started = Instant::now();
    let out = cmd.output().expect("kosmo runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// A project directory whose `.mcp.json` has these `mcpServers`.
fn project(servers: Value) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let doc = json!({ "mcpServers": servers });
    std::fs::write(dir.path().join(".mcp.json"), doc.to_string()).unwrap();
    dir
}

fn everything_project() -> tempfile::TempDir {
    let script = everything_server();
    project(
        json!({"everything": {"command": "node", "args": [script.display().to_string(), "stdio"]}}),
    )
}

/// `kosmo <command> --json --eval CODE` in `dir`.
fn lua(dir: &Path, home: &Path, command: &str, code: &str, extra: &[&str]) -> Run {
    let mut cmd = kosmo(dir, home);
    cmd.args([command, "--json"])
        .args(extra)
        .args(["--eval", code]);
    run(cmd)
}

#[test]
fn mcp_lua_lists_the_configured_servers() {
    let dir = everything_project();
    let home = tempfile::tempdir().unwrap();
    let r = lua(
        dir.path(),
        home.path(),
        "mcp:lua",
        "dump(mcp.servers())",
        &[],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let env = r.json();
    let output = env["output"].as_str().unwrap();
    assert!(
        output.contains("everything") && output.contains("stdio"),
        "{output}"
    );
    assert_eq!(env["meta"]["mcp_servers"], json!(["everything"]));
    // `mcp:lua` is integrations:lua without app.integrations.
    let r = lua(
        dir.path(),
        home.path(),
        "mcp:lua",
        "return app.integrations",
        &[],
    );
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["error"]["code"], "unknown_name", "{}", r.stdout);
}

#[test]
fn mcp_lua_round_trips_with_the_reference_server() {
    let dir = everything_project();
    let home = tempfile::tempdir().unwrap();
    let code = r#"
        local echoed = app.mcp.everything.echo{message = "héllo from Lua"}
        local sum = mcp.call("everything", "get-sum", {a = 2, b = 3})
        local ok1, bad = pcall(mcp.call, "everything", "get-sum", {a = "two", b = 3})
        local ok2, unknown = pcall(function() return app.mcp.everything.ech{message = "x"} end)
        local ok3, server = pcall(function() return app.mcp.everythin end)
        local tools = mcp.tools("everything")
        local echo_tool
        for _, t in ipairs(tools) do if t.name == "echo" then echo_tool = t end end
        local listed = false
        for _, t in ipairs(docs.list()) do if t.topic == "mcp.everything" then listed = true end end
        return {
          echo = echoed.content[1].text, sum = sum.content[1].text,
          bad = {ok = ok1, code = bad.code, server = bad.server, tool = bad.tool, field = bad.field},
          unknown = {ok = ok2, code = unknown.code, message = unknown.message},
          server = {ok = ok3, code = server.code, message = server.message},
          echo_read_only = echo_tool.read_only,
          echo_schema = echo_tool.input_schema.properties.message.type,
          doc = docs.read("mcp.everything"), overview = docs.read("mcp"), listed = listed,
        }
    "#;
    let r = lua(dir.path(), home.path(), "mcp:lua", code, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.took < Duration::from_secs(60), "{:?}", r.took);
    let env = r.json();
    let v = &env["result"][0];
    assert_eq!(v["echo"], "Echo: héllo from Lua");
    assert!(v["sum"].as_str().unwrap().contains('5'), "{v}");
    assert_eq!(v["bad"]["ok"], false);
    assert_eq!(v["bad"]["code"], "invalid_argument", "{v}");
    assert_eq!(v["bad"]["server"], "everything");
    assert_eq!(v["bad"]["tool"], "get-sum");
    assert_eq!(v["bad"]["field"], "a");
    assert_eq!(v["unknown"]["code"], "unknown_name", "{v}");
    assert!(
        v["unknown"]["message"]
            .as_str()
            .unwrap()
            .contains("Did you mean `echo`?"),
        "{v}"
    );
    assert_eq!(v["server"]["code"], "unknown_name", "{v}");
    assert!(
        v["server"]["message"]
            .as_str()
            .unwrap()
            .contains("Did you mean `app.mcp.everything`?"),
        "{v}"
    );
    assert_eq!(v["echo_read_only"], true);
    assert_eq!(v["echo_schema"], "string");
    let doc = v["doc"].as_str().unwrap();
    assert!(
        doc.contains("everything.echo (read)") && doc.contains("Input schema"),
        "{doc}"
    );
    assert!(v["overview"].as_str().unwrap().contains("- get-sum"), "{v}");
    assert_eq!(v["listed"], true);

    // Every tool call is in integration_calls, in call order, named by server and tool.
    let calls: Vec<(&str, &str)> = env["integration_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap(), c["account"].as_str().unwrap()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("mcp.everything.echo", "everything"),
            ("mcp.everything.get-sum", "everything"),
            ("mcp.everything.get-sum", "everything"),
            ("mcp.everything.ech", "everything"),
        ]
    );
    assert_eq!(env["integration_calls"][0]["kind"], "read");
    assert!(
        env["integration_calls"][2]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid_argument")
    );
}

#[test]
fn servers_that_fail_to_start_are_pcallable_errors_in_bounded_time() {
    let dir = project(json!({
        "missing": {"command": "/nonexistent/kosmo-mcp-server"},
        "dies": {"command": "sh", "args": ["-c", "echo boom-on-stderr >&2; exit 3"]},
    }));
    let home = tempfile::tempdir().unwrap();
    let code = r#"
        local ok1, e1 = pcall(app.mcp.missing.anything, {})
        local ok2, e2 = pcall(mcp.call, "dies", "anything", {})
        return ok1, e1.code, e1.server, e1.tool, e1.message, ok2, e2.code, e2.server, e2.message
    "#;
    let r = lua(dir.path(), home.path(), "mcp:lua", code, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.took < Duration::from_secs(30), "{:?}", r.took);
    let v = &r.json()["result"];
    assert_eq!(v[0], false);
    assert_eq!(v[1], "transport");
    assert_eq!(v[2], "missing");
    assert_eq!(v[3], "anything");
    assert!(v[4].as_str().unwrap().contains("not found"), "{v}");
    assert_eq!(v[5], false);
    assert_eq!(v[6], "transport");
    assert_eq!(v[7], "dies");
    assert!(v[8].as_str().unwrap().contains("boom-on-stderr"), "{v}");
    // A server's stderr reaches the error table only, never kosmo's own streams.
    assert!(!r.stderr.contains("boom-on-stderr"), "{}", r.stderr);
}

#[test]
fn a_broken_mcp_json_is_a_usage_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".mcp.json"), "{not json").unwrap();
    let home = tempfile::tempdir().unwrap();
    let r = lua(dir.path(), home.path(), "integrations:lua", "return 1", &[]);
    assert_eq!(r.code, 2, "{}\n{}", r.stdout, r.stderr);
    let e = &r.json()["error"];
    assert_eq!(e["code"], "usage");
    assert!(e["message"].as_str().unwrap().contains(".mcp.json"), "{e}");
    // No configured server at all is fine.
    let empty = tempfile::tempdir().unwrap();
    let r = lua(
        empty.path(),
        home.path(),
        "mcp:lua",
        "return #mcp.servers()",
        &[],
    );
    assert_eq!(r.json()["result"], json!([0]), "{}", r.stdout);
}

#[test]
fn integrations_lua_reaches_kosmo_mcp_serve() {
    let home = shared_home();
    // Writes ask by default: allowed for this server in its entry (the alternative is --force).
    let dir = project(json!({"klaviyo": {
        "command": KOSMO,
        "args": ["mcp:serve", "--sandbox"],
        "permissions": {"write": "allow"},
    }}));
    let code = r#"
        local p = app.mcp.klaviyo.klaviyo_create_profile{email = "ada.mcp@example.com", first_name = "Ada"}
        local g = app.mcp.klaviyo.klaviyo_get_profile{profile_id = p.id}
        local ok, nf = pcall(app.mcp.klaviyo.klaviyo_get_profile, {profile_id = "01JZZZZZZZZZZZZZZZZZZZZZZZ"})
        return p.id == g.id, g.email, g.first_name, ok, nf.code
    "#;
    let r = lua(dir.path(), home, "integrations:lua", code, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let env = r.json();
    assert_eq!(
        env["result"],
        json!([true, "ada.mcp@example.com", "Ada", false, "tool_error"])
    );
    let calls = env["integration_calls"].as_array().unwrap();
    assert_eq!(calls[0]["path"], "mcp.klaviyo.klaviyo_create_profile");
    assert_eq!(calls[0]["kind"], "write");
    assert_eq!(calls[0]["permission"], "allowed");
    assert_eq!(calls[1]["path"], "mcp.klaviyo.klaviyo_get_profile");
    assert_eq!(calls[1]["kind"], "read");
    assert_eq!(env["meta"]["permission_bypassed"], false);

    // Without the allow, the write asks; headless, --force lifts it and says so.
    let dir = project(json!({"klaviyo": {"command": KOSMO, "args": ["mcp:serve", "--sandbox"]}}));
    let code =
        r#"return app.mcp.klaviyo.klaviyo_create_profile{email = "bob.mcp@example.com"}.email"#;
    let refused = lua(dir.path(), home, "integrations:lua", code, &[]);
    assert_eq!(refused.code, 1);
    let e = &refused.json()["error"];
    assert_eq!(e["code"], "permission_denied", "{e}");
    assert!(e["message"].as_str().unwrap().contains("--force"), "{e}");
    let forced = lua(dir.path(), home, "integrations:lua", code, &["--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stdout);
    let env = forced.json();
    assert_eq!(env["result"], json!(["bob.mcp@example.com"]));
    assert_eq!(env["meta"]["permission_bypassed"], true);
    assert_eq!(env["integration_calls"][0]["permission"], "bypassed");
}

#[test]
fn the_typescript_sdk_client_drives_kosmo_mcp_serve() {
    let home = shared_home();
    let script = require_peer("sdk-client.mjs");
    require_peer("node_modules/@modelcontextprotocol/sdk/package.json");
    // The SDK passes only a few variables (HOME, PATH, ...) to the server: HOME finds the
    // shared `.kosmo`.
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .args(["--", KOSMO, "mcp:serve", "--sandbox"])
        .env("HOME", home)
        .env_remove("KOSMO_HOME")
        .stdin(Stdio::null());
    let r = run(cmd);
    assert_eq!(r.code, 0, "sdk-client failed: {}", r.stderr);
    let out: Value =
        serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert!(
        out["capabilities"]["tools"].is_object(),
        "{}",
        out["capabilities"]
    );
    let tools = out["tools"].as_array().unwrap();
    assert_eq!(tools.len(), catalog().functions().len());
    for f in catalog().functions() {
        let name = format!("klaviyo_{}", f.name);
        let tool = tools
            .iter()
            .find(|t| t["name"] == name.as_str())
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(
            tool["annotations"]["readOnlyHint"],
            f.kind == Kind::Read,
            "{name}"
        );
        assert_eq!(tool["inputSchema"]["type"], "object", "{name}");
    }
    let created = &out["create"];
    assert_ne!(created["isError"], true, "{created}");
    let id = created["structuredContent"]["id"].as_str().expect("an id");
    assert_eq!(out["get"]["structuredContent"]["id"], id);
    assert_eq!(out["get"]["structuredContent"]["first_name"], "Ada");
    let error_of = |result: &Value| -> Value {
        assert_eq!(result["isError"], true, "{result}");
        serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap()
    };
    assert_eq!(error_of(&out["not_found"])["code"], "not_found");
    let bad = error_of(&out["bad_argument"]);
    assert_eq!(bad["code"], "invalid_argument");
    assert_eq!(bad["field"], "email");
}

#[test]
fn mcp_serve_prints_only_protocol_and_ends_with_its_input() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = kosmo(cwd.path(), home.path());
    cmd.args(["mcp:serve", "--sandbox"]);
    // Standard input is /dev/null: closed at once, so the server must end by itself.
    let r = run(cmd);
    assert!(r.took < Duration::from_secs(20), "{:?}", r.took);
    assert_eq!(r.stdout, "", "nothing but protocol on stdout");
    assert!(r.stderr.contains("kosmo mcp:serve"), "{}", r.stderr);
    let mut cmd = kosmo(cwd.path(), home.path());
    cmd.args(["mcp:serve", "--account", "nobody"]);
    let r = run(cmd);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_eq!(r.stdout, "");
    assert!(r.stderr.contains("nobody"), "{}", r.stderr);
}

#[test]
fn mcp_configure_round_trips_without_showing_secrets() {
    let home = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let configure = |args: &[&str]| {
        let mut cmd = kosmo(cwd.path(), home.path());
        cmd.arg("mcp:configure").args(args);
        run(cmd)
    };
    let secrets = ["env-secret-5f2a9", "header-secret-7c41e"];
    let r = configure(&[
        "local",
        "--command",
        "node",
        "--arg",
        "server.js",
        "--arg",
        "--verbose",
        "--env",
        "TOKEN=env-secret-5f2a9",
        "--write",
        "allow",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("Added MCP server `local`"),
        "{}",
        r.stdout
    );
    let r = configure(&[
        "remote",
        "--url",
        "https://mcp.example.com/mcp",
        "--header",
        "Authorization=Bearer header-secret-7c41e",
        "--json",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["success"], true);
    let file = home.path().join(".kosmo/mcp.json");
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let stored: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(
        stored["mcpServers"]["local"]["args"],
        json!(["server.js", "--verbose"])
    );
    assert_eq!(
        stored["mcpServers"]["local"]["permissions"]["write"],
        "allow"
    );

    let text = configure(&["--list"]);
    let listed = configure(&["--list", "--json"]);
    for r in [&text, &listed] {
        assert_eq!(r.code, 0, "{}", r.stderr);
        for s in secrets {
            assert!(
                !r.stdout.contains(s) && !r.stderr.contains(s),
                "{}",
                r.stdout
            );
        }
    }
    assert!(
        text.stdout.contains("local") && text.stdout.contains("TOKEN"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("remote") && text.stdout.contains("Authorization"),
        "{}",
        text.stdout
    );
    let entries = listed.json()["result"][0].clone();
    let names: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["local", "remote"]);
    assert_eq!(entries[0]["permissions"]["write"], "allow");

    let r = configure(&["local", "--remove"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let names = configure(&["--list", "--json"]).json()["result"][0].clone();
    assert_eq!(names.as_array().unwrap().len(), 1);
    assert_eq!(names[0]["name"], "remote");
    let r = configure(&["local", "--remove", "--json"]);
    assert_eq!(r.code, 2);
    assert_eq!(r.json()["error"]["code"], "usage");
    let r = configure(&["bad.name", "--command", "x"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("error: usage"), "{}", r.stderr);
    let r = configure(&["neither", "--json"]);
    assert_eq!(r.code, 2);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--command")
    );
}
