//! The Klaviyo component, run by wasmtime in the harness against the emulator: every function,
//! pagination, argument checks before any request, and faults.
//!
//! Every request the component sends is checked against Klaviyo's OpenAPI slices by the
//! emulator; `assert_spec_clean` fails a test when one did not validate.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kosmo_emulator::{Emulator, Fault};
use kosmo_runtime::{Account, ApiKey, CallError, Runtime, RuntimeConfig};
use serde_json::{Value, json};

/// Compiling the component takes seconds: once per test binary.
fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("the component compiles"))
        .clone()
}

struct Harness {
    emulator: Emulator,
    runtime: Runtime,
    account: Account,
    key: String,
}

impl Harness {
    async fn new(key: &str) -> Self {
        let emulator = Emulator::start().await.expect("emulator starts");
        let account = Account::new("default", ApiKey::new(key), &emulator.base_url()).unwrap();
        Harness {
            emulator,
            runtime: runtime(),
            account,
            key: key.to_string(),
        }
    }

    async fn call(&self, function: &str, args: Value) -> Result<Value, CallError> {
        self.runtime.call(&self.account, function, &args).await
    }

    async fn ok(&self, function: &str, args: Value) -> Value {
        match self.call(function, args).await {
            Ok(v) => v,
            Err(e) => panic!("{function} failed: {e} {:?}", e.details),
        }
    }

    async fn err(&self, function: &str, args: Value) -> CallError {
        match self.call(function, args).await {
            Ok(v) => panic!("{function} unexpectedly succeeded: {v}"),
            Err(e) => e,
        }
    }

    fn requests(&self) -> usize {
        self.emulator.request_count(&self.key)
    }

    /// Every request so far validated against the OpenAPI slices and carried the pinned
    /// revision, our media type and credentials.
    fn assert_spec_clean(&self) {
        let requests = self.emulator.requests(&self.key);
        assert!(!requests.is_empty());
        for r in &requests {
            assert!(
                r.violations.is_empty(),
                "{} {} violated the spec: {:?}",
                r.method,
                r.path,
                r.violations
            );
            assert!(
                r.operation.is_some(),
                "{} {} matched no operation",
                r.method,
                r.path
            );
            let header = |name: &str| {
                r.headers
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.as_str())
            };
            assert_eq!(header("revision"), Some(klaviyo_spec::REVISION));
            assert_eq!(header("accept"), Some("application/vnd.api+json"));
            assert!(
                header("authorization").is_some(),
                "no credentials on {}",
                r.path
            );
        }
    }
}

fn unique(prefix: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}{}{n}@example.com", std::process::id())
}

#[test]
fn component_exports_the_wit_functions_and_imports_only_wasi() {
    let mut exported: Vec<String> = runtime().functions().map(|f| f.name.clone()).collect();
    let mut declared: Vec<String> = kosmo_runtime::catalog()
        .functions()
        .iter()
        .map(|f| f.name.clone())
        .collect();
    exported.sort();
    declared.sort();
    assert!(!declared.is_empty());
    assert_eq!(
        exported, declared,
        "the component exports exactly the WIT's functions"
    );
    let engine = wasmtime::Engine::default();
    let component =
        wasmtime::component::Component::new(&engine, kosmo_runtime::runtime::COMPONENT).unwrap();
    let imports: Vec<String> = component
        .component_type()
        .imports(&engine)
        .map(|(n, _)| n.to_string())
        .collect();
    assert!(
        imports
            .iter()
            .any(|n| n.starts_with("wasi:http/outgoing-handler@0.2")),
        "{imports:?}"
    );
    for name in &imports {
        assert!(name.starts_with("wasi:"), "non-WASI import {name}");
        assert!(
            !name.starts_with("wasi:sockets") && !name.starts_with("wasi:filesystem"),
            "{name}"
        );
    }
    assert!(
        kosmo_runtime::runtime::COMPONENT.len() < 400 * 1024,
        "component is {} bytes",
        kosmo_runtime::runtime::COMPONENT.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_function_against_the_emulator() {
    let h = Harness::new("pk_every_function").await;
    let email = unique("ada");

    let p = h
        .ok("create_profile", json!({"email": email, "phone_number": "+15005550006", "first_name": "Ada", "properties": {"plan": "pro"}}))
        .await;
    let id = p["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 26);
    assert_eq!(p["email"], email);
    assert_eq!(p["phone_number"], "+15005550006");
    assert_eq!(p["properties"]["plan"], "pro");
    assert!(p["created"].is_string());

    let got = h.ok("klaviyo_get_profile", json!({"profile_id": id})).await;
    assert_eq!(got["first_name"], "Ada");

    // properties may also be given as a string holding a JSON object.
    let updated = h
        .ok(
            "update_profile",
            json!({"profile_id": id, "last_name": "Lovelace", "properties": "{\"seats\": 3}"}),
        )
        .await;
    assert_eq!(updated["last_name"], "Lovelace");
    assert_eq!(updated["first_name"], "Ada");
    assert_eq!(updated["properties"]["seats"], 3);
    assert_eq!(updated["properties"]["plan"], "pro", "properties merge");

    let page = h.ok("list_profiles", json!({"limit": 50})).await;
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == id.as_str())
    );
    assert!(page["next_cursor"].is_null());

    let list = h.ok("create_list", json!({"name": "Newsletter"})).await;
    let list_id = list["id"].as_str().unwrap().to_string();
    assert_eq!(list["name"], "Newsletter");
    assert_eq!(
        h.ok("get_list", json!({"list_id": list_id})).await["name"],
        "Newsletter"
    );
    let lists = h.ok("list_lists", json!({})).await;
    assert!(
        lists["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == list_id.as_str())
    );

    let sub = h
        .ok(
            "subscribe_profile",
            json!({"list_id": list_id, "email": email, "phone_number": "+15005550006"}),
        )
        .await;
    assert_eq!(
        sub,
        json!({"accepted": true, "list_id": list_id, "email": email, "phone_number": "+15005550006"})
    );
    let historical = unique("old");
    h.ok(
        "subscribe_profile",
        json!({"list_id": list_id, "email": historical, "consented_at": "2020-01-01T00:00:00Z"}),
    )
    .await;
    let members = h
        .ok("list_list_profiles", json!({"list_id": list_id}))
        .await;
    let members = members["items"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert!(members.iter().all(|m| m["joined_group_at"].is_string()));

    let accepted = h
        .ok("create_event", json!({"profile_id": id, "event_name": "Placed Order", "value": 42.5, "properties": {"order_id": "A1"}, "time": "2024-05-01T12:00:00Z"}))
        .await;
    assert_eq!(
        accepted,
        json!({"accepted": true, "profile_id": id, "event_name": "Placed Order"})
    );
    h.ok(
        "create_event",
        json!({"profile_id": id, "event_name": "Viewed Product"}),
    )
    .await;

    let filter = format!("equals(profile_id,\"{id}\")");
    let events = h
        .ok("list_events", json!({"filter": filter, "limit": 100}))
        .await;
    let events = events["items"].as_array().unwrap().clone();
    assert_eq!(events.len(), 2);
    let order = events
        .iter()
        .find(|e| e["properties"]["order_id"] == "A1")
        .expect("the order event");
    assert_eq!(order["value"], 42.5);
    assert_eq!(order["profile_id"], id.as_str());
    assert_eq!(
        order["datetime"].as_str().unwrap()[..19],
        *"2024-05-01T12:00:00"
    );
    let metric = order["metric_id"].as_str().unwrap().to_string();
    let one = h.ok("get_event", json!({"event_id": order["id"]})).await;
    assert_eq!(one["metric_id"], metric.as_str());
    assert_eq!(one["timestamp"], 1_714_564_800);
    let by_metric = h
        .ok("list_events", json!({"filter": format!("and(equals(metric_id,\"{metric}\"),greater-or-equal(datetime,2024-01-01T00:00:00Z))")}))
        .await;
    assert_eq!(by_metric["items"].as_array().unwrap().len(), 1);

    let flows = h.ok("list_flows", json!({})).await;
    let flow = &flows["items"][0];
    assert!(
        flow["name"].is_string() && flow["status"].is_string() && flow["trigger_type"].is_string()
    );
    let got = h.ok("get_flow", json!({"flow_id": flow["id"]})).await;
    assert_eq!(got["name"], flow["name"]);

    let email_campaigns = h.ok("list_campaigns", json!({})).await;
    let sms_campaigns = h.ok("list_campaigns", json!({"channel": "sms"})).await;
    let push = h
        .ok("list_campaigns", json!({"channel": "mobile_push"}))
        .await;
    assert!(!email_campaigns["items"].as_array().unwrap().is_empty());
    assert!(!sms_campaigns["items"].as_array().unwrap().is_empty());
    assert!(
        email_campaigns["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["channel"] == "email")
    );
    assert!(
        sms_campaigns["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["channel"] == "sms")
    );
    assert!(push["items"].is_array());
    let c = &email_campaigns["items"][0];
    assert!(c["name"].is_string() && c["status"].is_string() && c["created_at"].is_string());
    assert!(c["included_audiences"].is_array());

    h.assert_spec_clean();
    let requests = h.emulator.requests(&h.key);
    let campaigns: Vec<_> = requests
        .iter()
        .filter(|r| r.operation.as_deref() == Some("get_campaigns"))
        .collect();
    assert_eq!(campaigns.len(), 3);
    let filters: Vec<_> = campaigns
        .iter()
        .map(|r| {
            r.query
                .iter()
                .find(|(k, _)| k == "filter")
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        filters,
        [
            "equals(messages.channel,'email')",
            "equals(messages.channel,'sms')",
            "equals(messages.channel,'mobile_push')"
        ]
    );
    // consented_at went out with historical_import: true, the only way Klaviyo accepts it.
    let subscribe = requests
        .iter()
        .filter(|r| r.operation.as_deref() == Some("bulk_subscribe_profiles"))
        .nth(1)
        .unwrap();
    let attributes = &subscribe.body.as_ref().unwrap()["data"]["attributes"];
    assert_eq!(attributes["historical_import"], true);
    assert_eq!(
        attributes["profiles"]["data"][0]["attributes"]["subscriptions"]["email"]["marketing"]["consented_at"],
        "2020-01-01T00:00:00Z"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pagination_is_walked_to_the_end() {
    let h = Harness::new("pk_pagination").await;
    let list = h.ok("create_list", json!({"name": "Walk"})).await;
    let mut created = Vec::new();
    for i in 0..7 {
        let email = unique(&format!("walk{i}_"));
        created.push(
            h.ok("create_profile", json!({"email": email})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
        h.ok(
            "subscribe_profile",
            json!({"list_id": list["id"], "email": email}),
        )
        .await;
    }
    for (function, extra) in [
        ("list_profiles", json!({})),
        ("list_list_profiles", json!({"list_id": list["id"]})),
    ] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut args = extra.clone();
            args["limit"] = json!(3);
            if let Some(c) = &cursor {
                args["page_cursor"] = json!(c);
            }
            let page = h.ok(function, args).await;
            pages += 1;
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["id"].as_str().unwrap().to_string()),
            );
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(pages, 3, "{function}");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 7, "{function}: every profile once");
        for id in &created {
            assert!(seen.contains(id), "{function}");
        }
    }
    // Flows walked with the smallest page size.
    let mut flows = 0;
    let mut cursor = Value::Null;
    loop {
        let page = h
            .ok("list_flows", json!({"limit": 1, "page_cursor": cursor}))
            .await;
        flows += page["items"].as_array().unwrap().len();
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert!(flows >= 2);
    let sent_sizes: Vec<String> = h
        .emulator
        .requests(&h.key)
        .iter()
        .filter(|r| r.operation.as_deref() == Some("get_profiles"))
        .map(|r| {
            r.query
                .iter()
                .find(|(k, _)| k == "page[size]")
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(sent_sizes, ["3", "3", "3"]);
    h.assert_spec_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn default_page_sizes_stay_within_each_endpoint_range() {
    let h = Harness::new("pk_defaults").await;
    h.ok("list_lists", json!({})).await;
    h.ok("list_flows", json!({})).await;
    h.ok("list_events", json!({})).await;
    let sizes: Vec<(String, String)> = h
        .emulator
        .requests(&h.key)
        .iter()
        .map(|r| {
            let size = r
                .query
                .iter()
                .find(|(k, _)| k == "page[size]")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            (r.operation.clone().unwrap_or_default(), size)
        })
        .collect();
    assert_eq!(
        sizes,
        [
            ("get_lists".into(), "10".into()),
            ("get_flows".into(), "20".into()),
            ("get_events".into(), "20".into())
        ]
    );
    h.assert_spec_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused_before_any_request() {
    let h = Harness::new("pk_bad_input").await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("create_profile", json!({}), "email"),
        ("create_profile", json!({"email": "not-an-email"}), "email"),
        (
            "create_profile",
            json!({"email": "a@b.co", "phone_number": "555-1234"}),
            "phone_number",
        ),
        (
            "create_profile",
            json!({"email": "a@b.co", "properties": "[1,2]"}),
            "properties",
        ),
        (
            "create_profile",
            json!({"email": "a@b.co", "properties": "{oops"}),
            "properties",
        ),
        (
            "create_profile",
            json!({"email": "a@b.co", "properties": 5}),
            "properties",
        ),
        ("create_profile", json!({"emial": "a@b.co"}), "emial"),
        ("create_profile", json!({"email": 42}), "email"),
        ("get_profile", json!({"profile_id": ""}), "profile_id"),
        ("get_profile", json!({"profile_id": "  "}), "profile_id"),
        ("get_profile", json!({"profile_id": "a\nb"}), "profile_id"),
        ("update_profile", json!({"profile_id": "01H"}), "profile_id"),
        (
            "update_profile",
            json!({"profile_id": "01H", "email": "x"}),
            "email",
        ),
        ("list_profiles", json!({"limit": 0}), "limit"),
        ("list_profiles", json!({"limit": 101}), "limit"),
        ("list_profiles", json!({"limit": 2.5}), "limit"),
        ("list_profiles", json!({"limit": -1}), "limit"),
        ("list_profiles", json!({"page_cursor": ""}), "page_cursor"),
        ("list_lists", json!({"limit": 11}), "limit"),
        ("list_flows", json!({"limit": 51}), "limit"),
        ("list_events", json!({"limit": 1001}), "limit"),
        (
            "list_events",
            json!({"filter": "equals(metric_id,\"x\""}),
            "filter",
        ),
        (
            "list_list_profiles",
            json!({"list_id": "L1", "limit": 101}),
            "limit",
        ),
        ("list_campaigns", json!({"channel": "fax"}), "channel"),
        ("list_campaigns", json!({"limit": 101}), "limit"),
        (
            "subscribe_profile",
            json!({"list_id": "L1", "email": "bad"}),
            "email",
        ),
        ("subscribe_profile", json!({"email": "a@b.co"}), "list_id"),
        (
            "subscribe_profile",
            json!({"list_id": "L1", "email": "a@b.co", "consented_at": "2999-01-01T00:00:00Z"}),
            "consented_at",
        ),
        (
            "subscribe_profile",
            json!({"list_id": "L1", "email": "a@b.co", "consented_at": "yesterday"}),
            "consented_at",
        ),
        (
            "create_event",
            json!({"profile_id": "P", "event_name": ""}),
            "event_name",
        ),
        (
            "create_event",
            json!({"profile_id": "P", "event_name": "x".repeat(128)}),
            "event_name",
        ),
        (
            "create_event",
            json!({"profile_id": "P", "event_name": "E", "time": "2024-01-01"}),
            "time",
        ),
        (
            "create_event",
            json!({"profile_id": "P", "event_name": "E", "time": "1980-01-01T00:00:00Z"}),
            "time",
        ),
        (
            "create_event",
            json!({"profile_id": "P", "event_name": "E", "properties": "[]"}),
            "properties",
        ),
        ("create_list", json!({"name": " "}), "name"),
        ("get_event", json!({}), "event_id"),
        ("get_flow", json!({"flow_id": ""}), "flow_id"),
        ("get_list", json!({"list_id": ""}), "list_id"),
    ];
    for (function, args, field) in cases {
        let e = h.err(function, args.clone()).await;
        assert_eq!(e.code, "invalid_argument", "{function} {args}: {e}");
        assert_eq!(e.details["field"], field, "{function} {args}: {e}");
        assert_eq!(e.function, function);
        assert!(
            e.message.contains(field),
            "message names the field: {}",
            e.message
        );
    }
    let e = h.err("create_profile", json!({"emial": "a@b.co"})).await;
    assert!(e.message.contains("Did you mean `email`?"), "{}", e.message);
    assert_eq!(h.requests(), 0, "no request reached Klaviyo");

    let e = h.err("get_profiel", json!({})).await;
    assert_eq!(e.code, "unknown_function");
    assert!(e.message.contains("get_profile"), "{}", e.message);
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_are_percent_encoded_into_paths() {
    let h = Harness::new("pk_encoding").await;
    let e = h
        .err("get_profile", json!({"profile_id": "../lists/x?y=1"}))
        .await;
    assert_eq!(e.code, "not_found");
    let r = &h.emulator.requests(&h.key)[0];
    assert_eq!(r.operation.as_deref(), Some("get_profile"), "{}", r.path);
}

#[tokio::test(flavor = "multi_thread")]
async fn klaviyo_errors_keep_what_klaviyo_said() {
    let h = Harness::new("pk_errors").await;
    let email = unique("dup");
    let first = h.ok("create_profile", json!({"email": email})).await;
    let e = h.err("create_profile", json!({"email": email})).await;
    assert_eq!(e.code, "duplicate_profile");
    assert_eq!(e.status, Some(409));
    assert_eq!(e.details["duplicate_profile_id"], first["id"]);
    assert_eq!(e.details["klaviyo_code"], "duplicate_profile");
    assert!(e.message.contains("409"), "{}", e.message);

    let e = h
        .err(
            "get_profile",
            json!({"profile_id": "01HNOTTHERE0000000000000000"}),
        )
        .await;
    assert_eq!((e.code.as_str(), e.status), ("not_found", Some(404)));

    let e = h
        .err("list_events", json!({"filter": "equals(nonsense,\"x\")"}))
        .await;
    assert_eq!((e.code.as_str(), e.status), ("bad_request", Some(400)));
    assert_eq!(e.details["parameter"], "filter");

    let e = h
        .err(
            "subscribe_profile",
            json!({"list_id": "NOLIST", "email": email}),
        )
        .await;
    assert_eq!(e.code, "not_found");

    let nobody = Account::new("nobody", ApiKey::new(""), &h.emulator.base_url()).unwrap();
    let e = h
        .runtime
        .call(&nobody, "list_lists", &json!({}))
        .await
        .unwrap_err();
    assert_eq!((e.code.as_str(), e.status), ("unauthorized", Some(401)));
}

#[tokio::test(flavor = "multi_thread")]
async fn faults_are_retried_or_reported_and_the_next_call_works() {
    let h = Harness::new("pk_faults").await;
    let id = h
        .ok("create_profile", json!({"email": unique("fault")}))
        .await["id"]
        .clone();
    let get = json!({"profile_id": id});
    let status = |status: u16, code: &str, retry_after: Option<u32>| Fault::Status {
        status,
        code: code.into(),
        retry_after,
    };

    // 429 with Retry-After: 1, then success: waited at least that long.
    h.emulator.clear_requests(&h.key);
    h.emulator
        .inject_fault(&h.key, status(429, "throttled", Some(1)));
    let started = Instant::now();
    h.ok("get_profile", get.clone()).await;
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(h.requests(), 2);

    // 503 twice, then success: 3 attempts.
    h.emulator.clear_requests(&h.key);
    h.emulator
        .inject_fault(&h.key, status(503, "service_unavailable", None));
    h.emulator
        .inject_fault(&h.key, status(503, "service_unavailable", None));
    h.ok("get_profile", get.clone()).await;
    assert_eq!(h.requests(), 3);

    // 503 three times: the error after 3 attempts, no fourth.
    h.emulator.clear_requests(&h.key);
    for _ in 0..3 {
        h.emulator
            .inject_fault(&h.key, status(503, "service_unavailable", None));
    }
    let e = h.err("get_profile", get.clone()).await;
    assert_eq!((e.code.as_str(), e.status), ("server_error", Some(503)));
    assert_eq!(e.details["attempts"], 3);
    assert_eq!(h.requests(), 3);

    // 500 is not retried.
    h.emulator.clear_requests(&h.key);
    h.emulator.inject_fault(&h.key, status(500, "error", None));
    let e = h.err("get_profile", get.clone()).await;
    assert_eq!((e.code.as_str(), e.status), ("server_error", Some(500)));
    assert_eq!(h.requests(), 1);

    // An HTML 502 page still gives a clear error.
    h.emulator.inject_fault(&h.key, Fault::Html { status: 502 });
    let e = h.err("get_profile", get.clone()).await;
    assert_eq!((e.code.as_str(), e.status), ("server_error", Some(502)));
    let detail = e.details["detail"].as_str().unwrap();
    assert!(detail.starts_with("non-JSON response"), "{detail}");
    assert!(
        !e.message.contains('<'),
        "no markup in the message: {}",
        e.message
    );

    // A long Retry-After is not slept through: rate_limited with what Klaviyo asked.
    h.emulator.clear_requests(&h.key);
    h.emulator
        .inject_fault(&h.key, status(429, "throttled", Some(120)));
    let started = Instant::now();
    let e = h.err("get_profile", get.clone()).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!((e.code.as_str(), e.status), ("rate_limited", Some(429)));
    assert_eq!(e.details["retry_after"], 120);
    assert_eq!(e.details["klaviyo_code"], "throttled");
    assert_eq!(h.requests(), 1);

    // A dropped connection: a GET is repeated, a POST is not (it may have been applied).
    h.emulator.clear_requests(&h.key);
    h.emulator.inject_fault(&h.key, Fault::DropConnection);
    h.ok("get_profile", get.clone()).await;
    assert_eq!(h.requests(), 2);
    h.emulator.inject_fault(&h.key, Fault::DropConnection);
    let e = h.err("create_list", json!({"name": "x"})).await;
    assert_eq!(e.code, "transport", "{e}");

    // Malformed JSON on a 200.
    h.emulator.inject_fault(&h.key, Fault::MalformedJson);
    let e = h.err("get_profile", get.clone()).await;
    assert_eq!(e.code, "invalid_response", "{e}");

    // And after all that, the next call works.
    assert_eq!(h.ok("get_profile", get).await["id"], id);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_response_times_out_and_the_next_call_works() {
    let h = Harness::new("pk_timeout").await;
    let mut config = RuntimeConfig::default();
    config.egress.first_byte_timeout = Duration::from_millis(500);
    let runtime = h.runtime.with_config(config);
    h.emulator
        .inject_fault(&h.key, Fault::Delay(Duration::from_secs(3)));
    let started = Instant::now();
    let e = runtime
        .call(&h.account, "list_lists", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "timeout", "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
    runtime
        .call(&h.account, "list_lists", &json!({}))
        .await
        .expect("next call works");
}
