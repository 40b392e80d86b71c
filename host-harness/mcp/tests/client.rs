//! `McpClients` against a peer not written here, the TypeScript SDK's reference server
//! (`@modelcontextprotocol/server-everything`), and against misbehaving servers: each
//! failure bounded in time. Node and the peers are required: run
//! `npm ci --prefix host-harness/mcp/tests/peers` first.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use kosmo_mcp::{ClientOptions, McpClients, McpConfig, Permissions, ServerEntry, Transport};
use kosmo_runtime::{Access, ErrorCode, Kind};
use serde_json::json;

fn stdio(name: &str, command: &str, args: &[&str]) -> ServerEntry {
    ServerEntry::new(
        name,
        Transport::stdio(
            command,
            args.iter().map(|a| a.to_string()).collect(),
            BTreeMap::new(),
        ),
    )
}

fn everything_entry() -> ServerEntry {
    let script = common::everything_server();
    ServerEntry::new(
        "everything",
        Transport::stdio(
            "node",
            vec![script.display().to_string(), "stdio".into()],
            BTreeMap::from([("EVERYTHING_TEST_TOKEN".into(), "s3cret-env-value".into())]),
        ),
    )
}

fn clients(entries: Vec<ServerEntry>, options: ClientOptions) -> McpClients {
    McpClients::new(McpConfig::from_entries(entries), options)
}

fn quick() -> ClientOptions {
    ClientOptions {
        call_timeout: Duration::from_secs(2),
        start_timeout: Duration::from_secs(2),
        ..ClientOptions::default()
    }
}

/// Whether a process is still alive (a zombie counts as gone).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

/// Whether any live process is in process group `pgid` (a server and what it started).
fn group_alive(pgid: u32) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            return false;
        };
        let fields: Vec<&str> = after.split_whitespace().collect();
        fields.len() > 2 && fields[0] != "Z" && fields[2] == pgid.to_string()
    })
}

fn read_pid(file: &Path) -> u32 {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no pid in {}", file.display());
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_servers_without_secrets_and_their_tools() {
    let c = clients(vec![everything_entry()], ClientOptions::default());
    let servers = c.servers();
    assert_eq!(servers.len(), 1);
    let shown = servers[0].to_json();
    assert_eq!(shown["name"], "everything");
    assert_eq!(shown["transport"], "stdio");
    assert_eq!(shown["command"], "node");
    assert_eq!(shown["running"], false);
    assert_eq!(shown["env"]["EVERYTHING_TEST_TOKEN"], "<redacted>");
    assert!(!shown.to_string().contains("s3cret"), "{shown}");

    let tools = c.tools("everything").await.unwrap();
    let echo = tools.iter().find(|t| t.name == "echo").expect("echo");
    assert_eq!(echo.kind, Kind::Read, "echo is readOnlyHint");
    assert_eq!(echo.input_schema["properties"]["message"]["type"], "string");
    assert_eq!(echo.annotations.as_ref().unwrap()["readOnlyHint"], true);
    assert!(tools.iter().any(|t| t.name == "get-sum"));
    assert_eq!(c.servers()[0].to_json()["running"], true);
    c.close().await;
    assert_eq!(c.servers()[0].to_json()["running"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn echo_and_get_sum_round_trip() {
    let c = clients(vec![everything_entry()], ClientOptions::default());
    let echoed = c
        .call("everything", "echo", &json!({"message": "héllo, MCP"}))
        .await
        .unwrap();
    assert_eq!(
        echoed,
        json!({"content": [{"type": "text", "text": "Echo: héllo, MCP"}]})
    );
    let sum = c
        .call("everything", "get-sum", &json!({"a": 2, "b": 3.5}))
        .await
        .unwrap();
    let text = sum["content"][0]["text"].as_str().unwrap();
    assert!(text.contains("5.5"), "{sum}");
    // A tool with an outputSchema: its structuredContent is the result.
    let weather = c
        .call(
            "everything",
            "get-structured-content",
            &json!({"location": "Chicago"}),
        )
        .await
        .unwrap();
    assert_eq!(weather["temperature"], 36, "{weather}");
    let records = c.take_records();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].path, "mcp.everything.echo");
    assert_eq!(records[0].account, "everything");
    assert_eq!(records[0].kind, Kind::Read);
    assert!(records.iter().all(|r| r.error.is_none()));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_arguments_are_refused_before_sending() {
    let c = clients(vec![everything_entry()], ClientOptions::default());
    let e = c
        .call("everything", "get-sum", &json!({"a": "two", "b": 3}))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
    assert_eq!(e.details["field"], "a", "{e:?}");
    assert_eq!(e.details["server"], "everything");
    assert_eq!(e.details["tool"], "get-sum");
    assert!(
        !e.details.contains_key("jsonrpc_code"),
        "our check, not the server's"
    );
    let e = c
        .call("everything", "get-sum", &json!({"a": 1}))
        .await
        .unwrap_err();
    assert_eq!(e.details["field"], "b", "{e:?}");
    assert!(e.message.contains("`b` is required"), "{e}");
    let e = c
        .call("everything", "echo", &json!("not an object"))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e}");
    // Nothing was sent for any of them.
    assert!(c.take_records().iter().all(|r| r.requests == 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_servers_and_tools_suggest() {
    let c = clients(vec![everything_entry()], ClientOptions::default());
    let e = c.call("everything", "ech", &json!({})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownName, "{e}");
    assert!(e.message.contains("Did you mean `echo`?"), "{e}");
    assert_eq!(e.details["tool"], "ech");
    let e = c.call("everythin", "echo", &json!({})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::UnknownName, "{e}");
    assert!(e.message.contains("Did you mean `everything`?"), "{e}");
    let e = c.tools("nothing-like-it").await.unwrap_err();
    assert!(e.message.contains("Configured: everything"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_follow_the_server_policy() {
    // toggle-simulated-logging has no readOnlyHint: a write, which asks by default.
    let c = clients(vec![everything_entry()], ClientOptions::default());
    let e = c
        .call("everything", "toggle-simulated-logging", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::PermissionDenied, "{e}");
    assert!(e.message.contains("--force"), "{e}");
    assert!(e.message.contains("readOnlyHint"), "{e}");
    assert_eq!(c.take_records()[0].permission, "refused");

    let allowed = everything_entry().with_permissions(Permissions {
        read: None,
        write: Some(Access::Allow),
    });
    let c = clients(vec![allowed], ClientOptions::default());
    c.call("everything", "toggle-simulated-logging", &json!({}))
        .await
        .unwrap();

    let denied_reads = everything_entry().with_permissions(Permissions {
        read: Some(Access::Deny),
        write: None,
    });
    let forced = ClientOptions {
        force: true,
        ..ClientOptions::default()
    };
    let c = clients(vec![denied_reads], forced);
    c.call("everything", "echo", &json!({"message": "x"}))
        .await
        .unwrap();
    assert!(c.permission_bypassed());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_command_fails_fast() {
    let c = clients(
        vec![stdio("ghost", "/nonexistent/kosmo-no-such-mcp-server", &[])],
        quick(),
    );
    let started = Instant::now();
    let e = c.call("ghost", "anything", &json!({})).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.code, ErrorCode::Transport, "{e}");
    assert!(e.message.contains("not found"), "{e}");
    assert_eq!(e.details["server"], "ghost");
    assert_eq!(e.details["tool"], "anything");
    assert_eq!(e.details["stage"], "start");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_dies_at_start_shows_its_stderr() {
    let c = clients(
        vec![stdio(
            "dying",
            "node",
            &[
                "-e",
                "process.stderr.write('boom: no config file\\n'); process.exit(3)",
            ],
        )],
        quick(),
    );
    let started = Instant::now();
    let e = c.tools("dying").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.code, ErrorCode::Transport, "{e}");
    assert!(e.message.contains("boom: no config file"), "{e}");
    assert!(e.message.contains("exit status: 3"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_never_answers_times_out_and_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 1000", pidfile.display());
    let c = clients(vec![stdio("sleeper", "sh", &["-c", &script])], quick());
    let started = Instant::now();
    let e = c.call("sleeper", "anything", &json!({})).await.unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert_eq!(e.code, ErrorCode::Timeout, "{e}");
    assert!(e.message.contains("initialize"), "{e}");
    let pid = read_pid(&pidfile);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!alive(pid), "the hung server {pid} was killed");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_call_times_out_and_a_crash_is_reported_then_restarted() {
    let fake = common::require_peer("fake-server.mjs");
    let fake = fake.display().to_string();
    let c = clients(vec![stdio("fake", "node", &[&fake])], quick());
    assert_eq!(
        c.call("fake", "ping", &json!({})).await.unwrap(),
        json!({"content": [{"type": "text", "text": "pong"}]})
    );
    let started = Instant::now();
    let e = c.call("fake", "hang", &json!({})).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(e.code, ErrorCode::Timeout, "{e}");
    assert_eq!(e.details["tool"], "hang");
    // The server still answers other calls after one timed out.
    c.call("fake", "ping", &json!({})).await.unwrap();

    let e = c.call("fake", "crash", &json!({})).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Transport, "{e}");
    assert!(e.message.contains("exited"), "{e}");
    assert!(e.message.contains("crashing on purpose"), "{e}");
    assert_eq!(e.details["server"], "fake");
    // The next use starts it again.
    c.call("fake", "ping", &json!({})).await.unwrap();
    let tail = c.stderr_tail("fake").await.unwrap();
    assert!(tail.contains("fake-server: started"), "{tail}");
}

/// `sh -c` starting a background `sleep` (which ignores its input, and would outlive a kill
/// of the direct child alone) and then the reference server, writing its pid to `pidfile`.
fn server_with_a_grandchild(pidfile: &Path) -> ServerEntry {
    let script = format!(
        "echo $$ > {}; sleep 1000 & exec node {} stdio",
        pidfile.display(),
        common::everything_server().display()
    );
    stdio("everything", "sh", &["-c", &script])
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_the_clients_stops_the_servers_and_what_they_started() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let c = clients(
        vec![server_with_a_grandchild(&pidfile)],
        ClientOptions::default(),
    );
    c.tools("everything").await.unwrap();
    let pid = read_pid(&pidfile);
    assert!(alive(pid) && group_alive(pid));
    drop(c);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !group_alive(pid),
        "processes of server {pid} outlived its clients"
    );
}

#[test]
fn clients_dropped_after_their_runtime_still_stop_their_servers() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let c = clients(
        vec![server_with_a_grandchild(&pidfile)],
        ClientOptions::default(),
    );
    runtime.block_on(c.tools("everything")).unwrap();
    let pid = read_pid(&pidfile);
    drop(runtime);
    // No runtime any more: the kill must not need one (nor panic).
    drop(c);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !group_alive(pid),
        "processes of server {pid} outlived its clients"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn close_stops_servers_gracefully() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let c = clients(
        vec![server_with_a_grandchild(&pidfile)],
        ClientOptions::default(),
    );
    c.tools("everything").await.unwrap();
    let pid = read_pid(&pidfile);
    let started = Instant::now();
    c.close().await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !group_alive(pid),
        "processes of server {pid} outlived close()"
    );
    // And it starts again on next use.
    c.call("everything", "echo", &json!({"message": "again"}))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn streamable_http_round_trips() {
    let script = common::everything_server();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut server = tokio::process::Command::new("node")
        .arg(&script)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let entry = ServerEntry::new(
        "remote",
        Transport::http(
            url,
            BTreeMap::from([("X-Test-Token".to_string(), "s3cret-header".to_string())]),
        ),
    );
    let c = clients(vec![entry], ClientOptions::default());
    assert!(!c.servers()[0].to_json().to_string().contains("s3cret"));
    let tools = c.tools("remote").await.unwrap();
    assert!(tools.iter().any(|t| t.name == "echo"));
    let echoed = c
        .call("remote", "echo", &json!({"message": "over http"}))
        .await
        .unwrap();
    assert_eq!(echoed["content"][0]["text"], "Echo: over http");
    let e = c
        .call("remote", "get-sum", &json!({"a": 1, "b": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.details["field"], "b");
    c.close().await;
    server.kill().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_http_server_fails_within_the_bound() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let entry = ServerEntry::new(
        "nowhere",
        Transport::http(format!("http://127.0.0.1:{port}/mcp"), BTreeMap::new()),
    );
    let c = clients(vec![entry], quick());
    let started = Instant::now();
    let e = c.tools("nowhere").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(e.code, ErrorCode::Transport | ErrorCode::Timeout),
        "{e}"
    );
    assert_eq!(e.details["server"], "nowhere");
}

#[test]
fn clients_are_send_and_sync() {
    fn shareable<T: Send + Sync>() {}
    shareable::<McpClients>();
    shareable::<kosmo_mcp::KlaviyoServer>();
}
