//! Our server driven by an official MCP client not written here: the TypeScript SDK's
//! `Client` (`tests/peers/sdk-client.mjs`) spawns `examples/serve_sandbox.rs` (what
//! `kosmo mcp:serve --sandbox` will be) on stdio and runs initialize, tools/list and
//! tools/call. The SDK also checks each `structuredContent` against the tool's
//! `outputSchema`, so passing means our results match our schemas for a third party.

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kosmo_runtime::{Kind, catalog};
use serde_json::Value;

/// `target/<profile>/examples/serve_sandbox`, built by `cargo test` with the tests.
fn serve_sandbox() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = profile_dir.join("examples").join("serve_sandbox");
    assert!(
        path.exists(),
        "{} is missing: `cargo test -p kosmo-mcp` builds it (run the tests through cargo)",
        path.display()
    );
    path
}

async fn run_sdk_client(server_flags: &[&str], client_flags: &[&str]) -> Value {
    let script = common::require_peer("sdk-client.mjs");
    common::require_peer("node_modules/@modelcontextprotocol/sdk/package.json");
    let mut cmd = tokio::process::Command::new("node");
    cmd.arg(&script)
        .args(client_flags)
        .arg("--")
        .arg(serve_sandbox())
        .args(server_flags)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(180), cmd.output())
        .await
        .expect("the SDK client finished within 180 s")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sdk-client failed: {stderr}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("sdk-client printed no JSON ({e}); stderr: {stderr}"))
}

/// A JSON value with every number as JavaScript holds it (a double): the 64-bit integer
/// bounds of the schemas (`i64::MAX`) come back from Node rounded to 2^63. Finding: such
/// bounds are not exactly representable by JavaScript clients.
fn as_js(v: &Value) -> Value {
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.iter().map(as_js).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), as_js(v))).collect()),
        other => other.clone(),
    }
}

/// The error table of an `isError` result as the SDK client received it.
fn error_table(result: &Value) -> Value {
    assert_eq!(result["isError"], true, "{result}");
    assert!(result.get("structuredContent").is_none(), "{result}");
    serde_json::from_str(result["content"][0]["text"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_client_drives_our_server() {
    let out = run_sdk_client(&[], &[]).await;
    assert_eq!(out["server"]["name"], "kosmo-klaviyo", "{}", out["server"]);
    assert!(out["capabilities"]["tools"].is_object());

    let tools = out["tools"].as_array().unwrap();
    assert_eq!(tools.len(), catalog().functions().len());
    for f in catalog().functions() {
        let name = format!("klaviyo_{}", f.name);
        let tool = tools.iter().find(|t| t["name"] == name.as_str()).unwrap();
        assert_eq!(
            as_js(&tool["inputSchema"]),
            as_js(&f.input_schema),
            "{name}"
        );
        assert_eq!(
            as_js(&tool["outputSchema"]),
            as_js(&f.output_schema),
            "{name}"
        );
        assert_eq!(
            tool["annotations"]["readOnlyHint"],
            f.kind == Kind::Read,
            "{name}"
        );
    }

    let created = &out["create"];
    assert_ne!(created["isError"], true, "{created}");
    let id = created["structuredContent"]["id"].as_str().expect("an id");
    assert_eq!(created["structuredContent"]["properties"]["plan"], "pro");
    let got = &out["get"]["structuredContent"];
    assert_eq!(got["id"], id);
    assert_eq!(got["first_name"], "Ada");
    assert_eq!(
        serde_json::from_str::<Value>(out["get"]["content"][0]["text"].as_str().unwrap()).unwrap(),
        *got
    );

    let e = error_table(&out["not_found"]);
    assert_eq!(e["code"], "not_found", "{e}");
    assert_eq!(e["status"], 404, "{e}");
    let e = error_table(&out["bad_argument"]);
    assert_eq!(e["code"], "invalid_argument", "{e}");
    assert_eq!(e["field"], "email", "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_that_ask_are_elicited_from_the_sdk_client() {
    let out = run_sdk_client(&["--ask"], &["--elicit"]).await;
    assert_ne!(out["create"]["isError"], true, "{}", out["create"]);
    let questions = out["questions"].as_array().unwrap();
    assert_eq!(questions.len(), 1, "one write, one question: {questions:?}");
    assert!(
        questions[0]
            .as_str()
            .unwrap()
            .contains("klaviyo.create_profile"),
        "{questions:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_that_ask_are_refused_when_the_sdk_client_cannot_be_asked() {
    let out = run_sdk_client(&["--ask"], &[]).await;
    let e = error_table(&out["create"]);
    assert_eq!(e["code"], "permission_denied", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("--force"), "{message}");
    assert!(message.contains("--write allow"), "{message}");
}
