//! The sandbox, attacked: a hostile plugin (tests/fixtures/adversary, built by this test) run
//! through the real runtime tries to leave the allow-list, set its own credentials, read the
//! environment, spin, grow memory, swallow a huge response and trap. Each attempt must be
//! stopped with the right error, the key must appear nowhere, and the host must keep serving.
//! Then two tenants share one runtime for 1,000 interleaved calls.

use std::sync::OnceLock;
use std::time::Duration;

use kosmo_emulator::Emulator;
use kosmo_runtime::{Account, ApiKey, CallError, Runtime, RuntimeConfig};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "pk_security_secret_4f1c9a";

fn adversary() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            let wasm = build_adversary();
            let config = RuntimeConfig {
                memory_limit_bytes: 32 * 1024 * 1024,
                fuel: 200_000_000,
                ..RuntimeConfig::default()
            };
            Runtime::with_component(config, &wasm).expect("fixture compiles")
        })
        .clone()
}

/// Build the hostile fixture plugin for wasm32-wasip2, in the wasm target directory the
/// build script uses for the component (only this test needs it, so only this test builds it).
fn build_adversary() -> Vec<u8> {
    let target_dir = env!("KOSMO_WASM_TARGET_DIR");
    let root = env!("KOSMO_WORKSPACE_ROOT");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args([
        "build",
        "--release",
        "--target",
        "wasm32-wasip2",
        "-p",
        "adversary",
    ])
    .arg("--manifest-path")
    .arg(format!("{root}/Cargo.toml"))
    .arg("--target-dir")
    .arg(target_dir)
    .current_dir(root);
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building the adversary fixture failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(format!("{target_dir}/wasm32-wasip2/release/adversary.wasm"))
        .expect("fixture built")
}

fn klaviyo() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("compiles"))
        .clone()
}

async fn attack(runtime: &Runtime, account: &Account, name: &str) -> CallError {
    let e = runtime
        .call(account, "get_profile", &json!({"profile_id": name}))
        .await
        .expect_err("the adversary always fails");
    let shown = format!("{e} {:?} {}", e.details, e.to_json());
    assert!(
        !shown.contains(KEY),
        "the key leaked through {name}: {shown}"
    );
    e
}

async fn account() -> (Emulator, Account) {
    let emulator = Emulator::start().await.unwrap();
    let account = Account::new("tenant", ApiKey::new(KEY), &emulator.base_url()).unwrap();
    (emulator, account)
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_outside_the_allow_list_are_denied() {
    let (emulator, account) = account().await;
    let runtime = adversary();
    for name in ["other-host", "other-port", "plain-http", "loopback"] {
        let e = attack(&runtime, &account, name).await;
        assert!(
            e.message.contains("HttpRequestDenied"),
            "{name}: {}",
            e.message
        );
    }
    assert_eq!(
        emulator.request_count(KEY),
        0,
        "nothing reached the emulator"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_cannot_open_sockets() {
    let (_emulator, account) = account().await;
    let e = attack(&adversary(), &account, "socket").await;
    assert!(
        e.message
            .contains("refused: ErrorCode { code: 1, name: \"access-denied\""),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_cannot_set_its_own_authorization() {
    let (emulator, account) = account().await;
    let e = attack(&adversary(), &account, "set-authorization").await;
    assert!(
        e.message
            .contains("headers refused: HeaderError::Forbidden"),
        "{}",
        e.message
    );
    assert_eq!(emulator.request_count("pk_guest_chosen"), 0);
    assert_eq!(emulator.request_count(KEY), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_sees_no_environment_arguments_or_files() {
    let (_emulator, account) = account().await;
    let e = attack(&adversary(), &account, "environment").await;
    // No variables, no arguments, no preopened directory to read.
    assert!(
        e.message.starts_with("env=[] args=[] root=Err("),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn limits_stop_runaway_plugins_and_the_host_keeps_serving() {
    let (emulator, account) = account().await;
    let runtime = adversary();

    let started = std::time::Instant::now();
    let e = attack(&runtime, &account, "spin").await;
    assert_eq!(e.code, "cpu_limit", "{e}");
    assert!(started.elapsed() < Duration::from_secs(5));

    let e = attack(&runtime, &account, "grow").await;
    assert_eq!(e.code, "memory_limit", "{e}");

    let e = attack(&runtime, &account, "trap").await;
    assert_eq!(e.code, "plugin_trap", "{e}");

    // The host still serves: the real component works right after, in the same process.
    let lists = klaviyo()
        .call(&account, "list_lists", &json!({}))
        .await
        .expect("still serving");
    assert!(lists["items"].is_array());
    assert_eq!(emulator.request_count(KEY), 1);
}

/// Memory may grow to exactly the limit, not a page more; host resources a plugin creates
/// and never drops stop at the Store's table cap (4,096) as a trap, before they can grow the
/// host's memory. Catches: the memory check's `>` made `>=`, and the resource table left
/// without its cap.
#[tokio::test(flavor = "multi_thread")]
async fn memory_grows_to_exactly_the_limit_and_host_resources_are_capped() {
    let (_emulator, account) = account().await;
    let runtime = adversary();
    let e = attack(&runtime, &account, "grow-to-limit").await;
    assert_eq!(e.code, "transport", "the fixture's report: {e}");
    assert_eq!(e.message, "grew to 512 pages");
    let e = attack(&runtime, &account, "hoard-resources").await;
    assert_eq!(e.code, "plugin_trap", "{e}");
}

/// A kept instance whose calls leave host resources behind is renewed before they add up:
/// past 16 in its Store it is dropped, and the account's next call starts fresh, so a
/// leaking component cannot grow the host's table across calls. Catches: reuse with no
/// bound on what a kept Store holds (every call after the first would be reused).
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_instance_that_leaks_host_resources_is_renewed() {
    let (_emulator, account) = account().await;
    let runtime = adversary();
    let mut fresh = 0;
    for _ in 0..40 {
        let outcome = runtime
            .call_with_log(&account, "get_profile", &json!({"profile_id": "leak-one"}))
            .await;
        let e = outcome.result.expect_err("the adversary always fails");
        assert_eq!(e.message, "left one host resource behind", "{e}");
        if !outcome.stages.reused {
            fresh += 1;
        }
    }
    // 17 leaked resources pass the bound: fresh at calls 1, 18 and 35.
    assert_eq!(fresh, 3, "fresh instances in 40 leaking calls");
}

/// The runtime that saw the traps keeps serving: more traps than it has instance slots
/// (256) are each a `plugin_trap`, never `busy`, and the account's next call runs in a fresh
/// instance (a trapped one is never kept), whose clean end is then kept for the call after.
/// Catches: a trapped instance's slot not given back (the 257th call would be `busy`), or a
/// trapped instance kept for reuse (`reused` on the call right after a trap).
#[tokio::test(flavor = "multi_thread")]
async fn a_trapped_runtime_frees_its_slots_and_never_reuses_a_trapped_instance() {
    let (_emulator, account) = account().await;
    let runtime = adversary();
    let slots = runtime.config().pooled_instances;
    for _ in 0..slots + 20 {
        let e = attack(&runtime, &account, "trap").await;
        assert_eq!(e.code, "plugin_trap", "{e}");
    }
    let after = runtime
        .call_with_log(&account, "list_lists", &json!({}))
        .await;
    assert_eq!(
        after.result.unwrap_err().code,
        "transport",
        "the fixture's refusal"
    );
    assert!(!after.stages.reused, "a trapped instance is never reused");
    let next = runtime
        .call_with_log(&account, "list_lists", &json!({}))
        .await;
    assert!(next.stages.reused, "a clean call's instance is kept");
    let e = attack(&runtime, &account, "trap").await;
    assert_eq!(
        e.code, "plugin_trap",
        "a kept instance traps like a fresh one: {e}"
    );
    let again = runtime
        .call_with_log(&account, "list_lists", &json!({}))
        .await;
    assert!(
        !again.stages.reused,
        "the kept instance that trapped is gone"
    );
}

/// A server that answers every request with a 64 MiB body, its length declared or (`declared`
/// false) not: a body ended by closing the connection, which only the streaming cap stops.
async fn huge_server(declared: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                let head = if declared {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.api+json\r\ncontent-length: 67108864\r\n\r\n"
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.api+json\r\nconnection: close\r\n\r\n"
                };
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b' '; 1 << 16];
                for _ in 0..1024 {
                    if socket.write_all(&chunk).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

/// A body of undeclared length is cut by the streaming cap once it passes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_huge_response_is_cut_at_the_cap() {
    let base = huge_server(false).await;
    let account = Account::new("huge", ApiKey::new(KEY), &base).unwrap();
    let mut config = adversary().config().clone();
    config.egress.max_response_bytes = 1024 * 1024;
    let runtime = adversary().with_config(config.clone());
    let e = attack(&runtime, &account, "big-response").await;
    let read: usize = e
        .message
        .strip_prefix("body failed after ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", e.message));
    assert!(read <= 1024 * 1024, "read {read} bytes past the 1 MiB cap");

    // The real component gets a clear error too, not a trap.
    let e = klaviyo()
        .with_config(config)
        .call(&account, "list_lists", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "transport", "{e}");
    assert!(e.message.contains("cut off"), "{e}");
}

/// A body declared larger than the cap is refused with the head, before a byte of it is read:
/// the real component reports `invalid_response` once, without retrying. Catches: the
/// egress's declared-length check removed (the GET would be cut mid-body, reported as
/// `transport` and sent 3 times).
#[tokio::test(flavor = "multi_thread")]
async fn a_declared_huge_response_is_refused_before_reading() {
    let base = huge_server(true).await;
    let account = Account::new("declared", ApiKey::new(KEY), &base).unwrap();
    let mut config = adversary().config().clone();
    config.egress.max_response_bytes = 1024 * 1024;
    let outcome = klaviyo()
        .with_config(config)
        .call_with_log(&account, "list_lists", &json!({}))
        .await;
    let e = outcome.result.unwrap_err();
    assert_eq!(e.code, "invalid_response", "{e}");
    assert_eq!(e.details["attempts"], 1, "{e:?}");
    assert_eq!(outcome.exchanges.len(), 1);
    assert_eq!(outcome.exchanges[0].status, Some(200));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_tenants_interleaved_stay_apart() {
    let emulator = Emulator::start().await.unwrap();
    let a = Account::new("a", ApiKey::new("pk_tenant_a_7d2e"), &emulator.base_url()).unwrap();
    let b = Account::new("b", ApiKey::new("pk_tenant_b_91c0"), &emulator.base_url()).unwrap();
    let runtime = klaviyo();
    let limit = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let (account, tag) = if i % 2 == 0 {
            (a.clone(), "a")
        } else {
            (b.clone(), "b")
        };
        let runtime = runtime.clone();
        let limit = limit.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.unwrap();
            if i % 10 < 2 {
                let email = format!("{tag}{i}@tenant-{tag}.example");
                runtime
                    .call(&account, "create_profile", &json!({"email": email}))
                    .await
                    .map(|_| ())
            } else {
                runtime
                    .call(&account, "list_lists", &json!({}))
                    .await
                    .map(|_| ())
            }
        }));
    }
    for t in tasks {
        t.await.unwrap().expect("every call succeeds");
    }
    assert_eq!(emulator.request_count("pk_tenant_a_7d2e"), 500);
    assert_eq!(emulator.request_count("pk_tenant_b_91c0"), 500);
    for (account, tag) in [(&a, "a"), (&b, "b")] {
        let mut emails = Vec::new();
        let mut cursor = serde_json::Value::Null;
        loop {
            let page = runtime
                .call(
                    account,
                    "list_profiles",
                    &json!({"limit": 100, "page_cursor": cursor}),
                )
                .await
                .unwrap();
            emails.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["email"].as_str().unwrap().to_string()),
            );
            cursor = page["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        assert_eq!(emails.len(), 100, "tenant {tag} has its own 100 profiles");
        assert!(
            emails
                .iter()
                .all(|e| e.ends_with(&format!("@tenant-{tag}.example"))),
            "tenant {tag}"
        );
    }
}
