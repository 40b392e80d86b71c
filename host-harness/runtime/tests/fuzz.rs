//! Short property tests: random arguments through the WIT-driven conversion, and random
//! response bodies through the component's parsing. Neither may panic or trap; bad input
//! gives a clear `invalid_argument`, bad bodies a clear `invalid_response` (or the HTTP error).
//! Seeded, so a failure replays.

use std::sync::OnceLock;

use kosmo_runtime::{Account, ApiKey, Runtime, RuntimeConfig};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Runtime::new(RuntimeConfig::default()).unwrap())
        .clone()
}

/// A random JSON value, biased towards the shapes the functions take.
fn random_value(rng: &mut fastrand::Rng, depth: u32) -> Value {
    match rng.u8(0..if depth > 2 { 6 } else { 9 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.bool()),
        2 => json!(rng.i64(-5..2000)),
        3 => json!(rng.f64() * 2000.0 - 500.0),
        4 => json!(random_text(rng)),
        5 => json!(
            [
                "a@b.co",
                "+15005550006",
                "2024-01-01T00:00:00Z",
                "",
                "01HXYZ",
                "email",
                "sms"
            ][rng.usize(0..7)]
        ),
        6 => Value::Array(
            (0..rng.usize(0..4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        _ => Value::Object(random_object(rng, depth + 1)),
    }
}

fn random_text(rng: &mut fastrand::Rng) -> String {
    (0..rng.usize(0..24))
        .map(|_| char::from_u32(rng.u32(0..0x2FF)).unwrap_or('?'))
        .collect()
}

const KEYS: &[&str] = &[
    "email",
    "phone_number",
    "first_name",
    "last_name",
    "properties",
    "profile_id",
    "limit",
    "page_cursor",
    "list_id",
    "consented_at",
    "event_name",
    "value",
    "time",
    "event_id",
    "filter",
    "name",
    "flow_id",
    "channel",
    "emial",
    "id",
    "data",
    "attributes",
    "links",
    "next",
    "errors",
    "included",
];

fn random_object(rng: &mut fastrand::Rng, depth: u32) -> Map<String, Value> {
    (0..rng.usize(0..6))
        .map(|_| {
            (
                KEYS[rng.usize(0..KEYS.len())].to_string(),
                random_value(rng, depth),
            )
        })
        .collect()
}

#[test]
fn random_arguments_never_panic_and_name_a_field() {
    let runtime = runtime();
    let mut rng = fastrand::Rng::with_seed(0x6b6f736d6f);
    for function in runtime.functions() {
        for _ in 0..400 {
            let args = if rng.u8(0..10) == 0 {
                random_value(&mut rng, 0)
            } else {
                Value::Object(random_object(&mut rng, 0))
            };
            match kosmo_runtime::convert::args_to_val(&function.args, &args) {
                Ok(_) => {}
                Err(e) => {
                    assert!(!e.field.is_empty(), "{} {args}: no field", function.name);
                    assert!(!e.message.is_empty());
                }
            }
        }
    }
}

/// The same random arguments, those the conversion accepts, through the component itself
/// against the emulator: the guest's own checks (ids, emails, ranges) and Klaviyo's answers.
/// Every call ends in a result or a clean error; never a trap, an internal error, or an
/// `invalid_argument` without the field it is about. Catches: a guest check that panics
/// (a `plugin_trap`), or a refusal that forgets its `field`.
#[tokio::test(flavor = "multi_thread")]
async fn random_arguments_that_convert_fail_cleanly_in_the_component() {
    let emulator = kosmo_emulator::Emulator::start().await.unwrap();
    let account =
        Account::new("fuzz", ApiKey::new("pk_fuzz_args_01"), &emulator.base_url()).unwrap();
    let runtime = runtime();
    let mut rng = fastrand::Rng::with_seed(0x6b6f736d6f2);
    let (mut converted, mut refused_by_guest) = (0, 0);
    let functions: Vec<_> = runtime.functions().cloned().collect();
    for function in &functions {
        for _ in 0..250 {
            let args = Value::Object(random_object(&mut rng, 0));
            if kosmo_runtime::convert::args_to_val(&function.args, &args).is_err() {
                continue;
            }
            converted += 1;
            let Err(e) = runtime.call(&account, &function.name, &args).await else {
                continue;
            };
            assert!(
                !matches!(
                    e.code.as_str(),
                    "plugin_trap" | "internal" | "memory_limit" | "cpu_limit"
                ),
                "{} {args}: {e}",
                function.name
            );
            if e.code == "invalid_argument" {
                refused_by_guest += 1;
                let field = e.details.get("field").and_then(Value::as_str).unwrap_or("");
                assert!(
                    !field.is_empty(),
                    "{} {args}: no field in {e:?}",
                    function.name
                );
            }
        }
    }
    // The property is only shown if the random arguments get that far.
    eprintln!("{converted} argument sets converted, {refused_by_guest} refused by the guest");
    assert!(converted >= 150, "only {converted} argument sets converted");
    assert!(
        refused_by_guest >= 10,
        "only {refused_by_guest} reached a guest check"
    );
}

/// Serves random bodies with random statuses: valid JSON of odd shapes, near-JSON:API
/// documents with wrong types, and garbage bytes.
async fn chaos_server(seed: u64) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        while let Ok((mut socket, _)) = listener.accept().await {
            let (status, body) = chaos_response(&mut rng);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = socket.read(&mut buf).await;
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/vnd.api+json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
            });
        }
    });
    format!("http://{addr}")
}

fn chaos_response(rng: &mut fastrand::Rng) -> (u16, Vec<u8>) {
    let status = [200, 200, 200, 201, 202, 400, 404, 409, 500, 502][rng.usize(0..10)];
    let body = match rng.u8(0..4) {
        0 => random_value(rng, 0).to_string().into_bytes(),
        1 => {
            let mut resource = random_object(rng, 1);
            if rng.bool() {
                resource.insert("id".into(), json!(random_text(rng)));
            }
            resource.insert("attributes".into(), Value::Object(random_object(rng, 1)));
            let data = if rng.bool() {
                Value::Object(resource)
            } else {
                json!([resource, random_value(rng, 1)])
            };
            json!({"data": data, "links": {"next": random_value(rng, 2)}, "errors": random_value(rng, 2)})
                .to_string()
                .into_bytes()
        }
        2 => (0..rng.usize(0..300)).map(|_| rng.u8(..)).collect(),
        _ => b"".to_vec(),
    };
    (status, body)
}

#[tokio::test(flavor = "multi_thread")]
async fn random_responses_give_clear_errors_never_traps() {
    let base = chaos_server(7).await;
    let account = Account::new("chaos", ApiKey::new("pk_chaos"), &base).unwrap();
    let runtime = runtime();
    let calls = [
        ("get_profile", json!({"profile_id": "01H"})),
        ("list_profiles", json!({})),
        ("get_event", json!({"event_id": "E"})),
        ("list_events", json!({})),
        ("list_lists", json!({})),
        ("get_list", json!({"list_id": "L"})),
        ("list_list_profiles", json!({"list_id": "L"})),
        ("list_flows", json!({})),
        ("get_flow", json!({"flow_id": "F"})),
        ("list_campaigns", json!({})),
        ("create_profile", json!({"email": "c@example.com"})),
        ("create_list", json!({"name": "x"})),
        (
            "create_event",
            json!({"profile_id": "P", "event_name": "E"}),
        ),
        (
            "subscribe_profile",
            json!({"list_id": "L", "email": "c@example.com"}),
        ),
    ];
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..20 {
        for (function, args) in &calls {
            let outcome = match runtime.call(&account, function, args).await {
                Ok(v) => {
                    assert!(v.is_object(), "{function}: {v}");
                    "ok".to_string()
                }
                Err(e) => {
                    assert!(
                        !matches!(
                            e.code.as_str(),
                            "plugin_trap" | "cpu_limit" | "memory_limit" | "internal"
                        ),
                        "round {round} {function}: {e}"
                    );
                    assert!(!e.message.is_empty());
                    e.code.to_string()
                }
            };
            *outcomes.entry(outcome).or_default() += 1;
        }
    }
    println!("{outcomes:?}");
    assert!(outcomes.contains_key("invalid_response"), "{outcomes:?}");
}
