//! Every timeout the runtime promises, each with short limits set through `RuntimeConfig`, so
//! the elapsed time shows which limit fired (not a default, not the guest's own 10-30 s).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kosmo_emulator::{Emulator, Fault};
use kosmo_runtime::{Account, ApiKey, Runtime, RuntimeConfig};
use serde_json::json;

/// Compiling the component takes seconds: once per test binary.
fn runtime(config: RuntimeConfig) -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("the component compiles"))
        .with_config(config)
}

/// A stall in the middle of the body (head and half the body sent, then a 5 s pause) is cut
/// by the between-bytes timeout, not waited out. Catches: `BetweenBytes` never firing (its
/// timer branch returning `Pending`), or the configured limit not passed on (the 30 s default
/// would apply): either way the three 5 s stalls would be waited out.
///
/// The guest reports it as `transport` ("the response body was cut off") and retries the
/// GET: wasmtime-wasi-http 48 hands a body-stream error to the guest without its error code
/// (`http-error-code` gives none), so a mid-body timeout cannot be told from a cut connection.
#[tokio::test(flavor = "multi_thread")]
async fn a_stall_mid_body_hits_the_between_bytes_timeout() {
    let emulator = Emulator::start().await.unwrap();
    let key = "pk_between_bytes";
    let account = Account::new("bb", ApiKey::new(key), &emulator.base_url()).unwrap();
    let mut config = RuntimeConfig::default();
    config.egress.between_bytes_timeout = Duration::from_millis(300);
    let runtime = runtime(config);

    // Control: the fault only slows the body; with the pause under the limit the call works.
    emulator.inject_fault(key, Fault::SlowBody(Duration::from_millis(50)));
    runtime
        .call(&account, "list_lists", &json!({}))
        .await
        .expect("a short pause is fine");

    emulator.clear_requests(key);
    for _ in 0..3 {
        emulator.inject_fault(key, Fault::SlowBody(Duration::from_secs(5)));
    }
    let started = Instant::now();
    let outcome = runtime
        .call_with_log(&account, "list_lists", &json!({}))
        .await;
    let elapsed = started.elapsed();
    let e = outcome.result.unwrap_err();
    assert_eq!(e.code, "transport", "{e}");
    assert!(e.message.contains("cut off"), "{}", e.message);
    assert_eq!(e.details["attempts"], 3, "{e:?}");
    // Every head came (status 200): it was the body that stalled.
    assert_eq!(outcome.exchanges.len(), 3);
    assert!(outcome.exchanges.iter().all(|x| x.status == Some(200)));
    // Three 300 ms stalls and two backoffs (at most 0.75 s and 1.125 s).
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
    assert_eq!(emulator.request_count(key), 3);
    assert_eq!(
        emulator.requests(key)[0].fault.as_deref(),
        Some("slow body 5000ms")
    );
}

/// A listener whose accept queue is full: the kernel drops further SYNs, so a connect to it
/// neither succeeds nor fails until the client gives up. Deterministic on loopback (no
/// network, no unroutable address).
fn unaccepting_listener() -> (tokio::net::TcpListener, Vec<std::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..16 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(stream) => held.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return (listener, held),
            Err(e) => panic!("unexpected connect error: {e}"),
        }
    }
    panic!("the accept queue never filled");
}

/// A connect that hangs is cut by the configured connect timeout, reported as `timeout` (not
/// `transport`), and not retried. Catches: the connector's timeout not set
/// (`set_connect_timeout(None)`: the hang would last until the 30 s first-byte deadline),
/// or a connect timeout mapped to `connection-refused`.
#[tokio::test(flavor = "multi_thread")]
async fn a_connect_that_hangs_hits_the_connect_timeout() {
    let (listener, _held) = unaccepting_listener();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let account = Account::new("connect", ApiKey::new("pk_connect"), &url).unwrap();
    let mut config = RuntimeConfig::default();
    config.egress.connect_timeout = Duration::from_millis(400);
    let runtime = runtime(config);
    let started = Instant::now();
    let outcome = runtime
        .call_with_log(&account, "list_lists", &json!({}))
        .await;
    let elapsed = started.elapsed();
    let e = outcome.result.unwrap_err();
    assert_eq!(e.code, "timeout", "{e}");
    assert_eq!(e.details["attempts"], 1, "{e:?}");
    assert_eq!(outcome.exchanges.len(), 1);
    assert_eq!(outcome.exchanges[0].status, None);
    assert!(
        elapsed >= Duration::from_millis(400) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

/// The whole call has a wall-clock deadline of its own, shorter here than every per-request
/// limit: a response delayed past it ends the call at the deadline with the deadline's
/// message. Catches: deleting the `tokio::time::timeout` around the call in runtime.rs (the
/// call would then wait out the 4 s delay and succeed).
#[tokio::test(flavor = "multi_thread")]
async fn the_call_deadline_ends_a_call_that_each_request_limit_allows() {
    let emulator = Emulator::start().await.unwrap();
    let key = "pk_deadline";
    let account = Account::new("deadline", ApiKey::new(key), &emulator.base_url()).unwrap();
    let config = RuntimeConfig {
        call_timeout: Duration::from_secs(1),
        ..RuntimeConfig::default()
    };
    let runtime = runtime(config);
    emulator.inject_fault(key, Fault::Delay(Duration::from_secs(4)));
    let started = Instant::now();
    let e = runtime
        .call(&account, "list_lists", &json!({}))
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(e.code, "timeout", "{e}");
    assert!(
        e.message.contains("did not finish within 1 s"),
        "{}",
        e.message
    );
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(2500),
        "{elapsed:?}"
    );
    // The runtime still serves the account after a call was cut off.
    runtime
        .call(&account, "list_lists", &json!({}))
        .await
        .expect("the next call works");
}

/// A connection closed before the response head is an incomplete response, named as such,
/// and a POST is not repeated after it (it may have been applied). Catches the pool mapping
/// hyper's incomplete message to another wasi-http code (`client_error`'s first guard).
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_closed_before_the_head_is_an_incomplete_response() {
    let emulator = Emulator::start().await.unwrap();
    let key = "pk_incomplete";
    let account = Account::new("inc", ApiKey::new(key), &emulator.base_url()).unwrap();
    let runtime = runtime(RuntimeConfig::default());
    emulator.inject_fault(key, Fault::DropConnection);
    let e = runtime
        .call(&account, "create_list", &json!({"name": "dropped"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "transport", "{e}");
    let port = emulator.base_url().rsplit(':').next().unwrap().to_string();
    assert_eq!(
        e.message,
        format!("could not reach Klaviyo at 127.0.0.1:{port} (incomplete response)")
    );
    assert_eq!(e.details["attempts"], 1, "{e:?}");
    assert_eq!(emulator.request_count(key), 1);
}

/// A reply that is not HTTP is a protocol error, named as such: told apart from a connection
/// closed before the head. Catches every hyper failure read as an incomplete response
/// (`client_error`'s guard made `true`).
#[tokio::test(flavor = "multi_thread")]
async fn a_reply_that_is_not_http_is_a_protocol_error() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut request).await;
                let _ = socket.write_all(b"NOT HTTP AT ALL\r\n\r\n").await;
                let _ = socket.shutdown().await;
            });
        }
    });
    let base = format!("http://127.0.0.1:{port}");
    let account = Account::new("garbage", ApiKey::new("pk_not_http"), &base).unwrap();
    let e = runtime(RuntimeConfig::default())
        .call(&account, "create_list", &json!({"name": "x"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "transport", "{e}");
    assert_eq!(
        e.message,
        format!("could not reach Klaviyo at 127.0.0.1:{port} (HTTP protocol error)")
    );
    assert_eq!(e.details["attempts"], 1, "{e:?}");
}
