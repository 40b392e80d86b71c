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
        .get_or_init(|| {
            builder()
                .config(RuntimeConfig::default())
                .build()
                .expect("the component compiles")
        })
        .clone()
}

/// A runtime builder with the embedded component, or with the one at `KOSMO_TEST_COMPONENT`:
/// the mutation run (TESTING.md) builds each mutated component and runs these tests against
/// it without rebuilding the host.
fn builder() -> kosmo_runtime::RuntimeBuilder {
    let builder = Runtime::builder();
    match std::env::var_os("KOSMO_TEST_COMPONENT") {
        Some(path) => builder.component(
            &std::fs::read(&path).unwrap_or_else(|e| panic!("KOSMO_TEST_COMPONENT={path:?}: {e}")),
        ),
        None => builder,
    }
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

    /// Every request so far was validated against the OpenAPI slices (a fault-answered one
    /// excepted), passed, and carried the pinned revision, our media type, our User-Agent,
    /// credentials, and a Content-Length with any body.
    fn assert_spec_clean(&self) {
        let requests = self.emulator.requests(&self.key);
        assert!(!requests.is_empty());
        for r in &requests {
            assert!(
                r.validated || r.fault.is_some(),
                "{} {} was not checked against the spec",
                r.method,
                r.path
            );
            if r.body.is_some() {
                assert!(
                    r.header("content-length").is_some(),
                    "{} {} sent its body without Content-Length",
                    r.method,
                    r.path
                );
            }
            assert!(
                r.header("user-agent")
                    .is_some_and(|ua| ua.starts_with("kosmo-klaviyo/")),
                "{} {} has no kosmo User-Agent",
                r.method,
                r.path
            );
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
    assert!(list["profile_count"].is_null(), "only get_list counts");
    let got = h.ok("get_list", json!({"list_id": list_id})).await;
    assert_eq!(got["name"], "Newsletter");
    assert_eq!(got["profile_count"], 0);
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
    assert_eq!(
        h.ok("get_list", json!({"list_id": list_id})).await["profile_count"],
        2
    );

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
    assert_eq!(order["metric_name"], "Placed Order");
    let one = h.ok("get_event", json!({"event_id": order["id"]})).await;
    assert_eq!(one["metric_id"], metric.as_str());
    assert_eq!(one["metric_name"], "Placed Order");
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

    let both = h.ok("list_campaigns", json!({})).await;
    let channels: Vec<&str> = both["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    assert!(
        channels.contains(&"email") && channels.contains(&"sms"),
        "{channels:?}"
    );
    let email_campaigns = h.ok("list_campaigns", json!({"channel": "email"})).await;
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
    assert_eq!(
        campaigns.len(),
        5,
        "both channels, then one request per channel"
    );
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
            // A cursor dropped on the way (`args::cursor -> Ok(None)`) restarts the walk: fail,
            // rather than walk forever.
            assert!(pages <= 3, "{function}: the walk does not end");
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
    // Flows walked 7 at a time reach the same flows as one call for 100.
    let mut flows = Vec::new();
    let mut cursor = Value::Null;
    for walked in 1.. {
        assert!(walked <= 100, "the walk of list_flows does not end");
        let page = h
            .ok("list_flows", json!({"limit": 7, "page_cursor": cursor}))
            .await;
        flows.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["id"].clone()),
        );
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    let all = h.ok("list_flows", json!({"limit": 100})).await;
    let all: Vec<Value> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].clone())
        .collect();
    assert_eq!(flows, all);
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
        (
            "create_profile",
            json!({"first_name": "Ada", "properties": {"plan": "pro"}}),
            "email",
        ),
        ("create_profile", json!({"external_id": " "}), "external_id"),
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
        // Dot segments would be normalised away by a proxy (RFC 3986 §5.2.4).
        ("get_list", json!({"list_id": ".."}), "list_id"),
        ("get_profile", json!({"profile_id": "."}), "profile_id"),
        (
            "update_profile",
            json!({"profile_id": "..", "last_name": "X"}),
            "profile_id",
        ),
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
        ("list_lists", json!({"limit": 101}), "limit"),
        ("list_flows", json!({"limit": 101}), "limit"),
        ("list_flows", json!({"page_cursor": "~oops"}), "page_cursor"),
        (
            "list_lists",
            json!({"page_cursor": "~1.a,2.b"}),
            "page_cursor",
        ),
        // A merged (email and SMS) cursor does not continue one channel, nor the reverse.
        (
            "list_campaigns",
            json!({"channel": "sms", "page_cursor": "~0.,3."}),
            "page_cursor",
        ),
        (
            "list_campaigns",
            json!({"page_cursor": "bmV4dDo6aWQ6OjIw"}),
            "page_cursor",
        ),
        (
            "list_metrics",
            json!({"integration_name": ""}),
            "integration_name",
        ),
        (
            "list_metrics",
            json!({"integration_category": "API')"}),
            "integration_category",
        ),
        ("list_metrics", json!({"page_cursor": " "}), "page_cursor"),
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
        // At most a year ahead (events.rs): 2 years from any date this test runs on.
        (
            "create_event",
            json!({"profile_id": "P", "event_name": "E", "time": format!("{}-01-01T00:00:00Z", this_year() + 2)}),
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

    // Klaviyo's own words travel: its title, detail and pointer (emulator errors.rs, verbatim
    // from klaviyo-api-node#75), and the error's id.
    assert_eq!(e.details["title"], "Conflict.");
    assert_eq!(
        e.details["detail"],
        "A profile already exists with one of these identifiers."
    );
    assert_eq!(e.details["pointer"], "/data/attributes");
    assert_eq!(
        e.details["error_id"].as_str().map(str::len),
        Some(36),
        "{:?}",
        e.details
    );

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

/// The `page[size]` values sent for one operation, in order.
fn sent_sizes(h: &Harness, operation: &str) -> Vec<u32> {
    h.emulator
        .requests(&h.key)
        .iter()
        .filter(|r| r.operation.as_deref() == Some(operation))
        .map(|r| {
            r.query
                .iter()
                .find(|(k, _)| k == "page[size]")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_counts_items_across_klaviyos_small_list_pages() {
    let h = Harness::new("pk_limit_lists").await;
    let mut created = Vec::new();
    for i in 0..25 {
        let l = h.ok("create_list", json!({"name": format!("L{i}")})).await;
        created.push(l["id"].as_str().unwrap().to_string());
    }
    // get_lists pages hold at most 10: 50 wanted, all 25 given, following the cursors.
    h.emulator.clear_requests(&h.key);
    let page = h.ok("list_lists", json!({"limit": 50})).await;
    assert_eq!(ids(&page), created);
    assert!(page["next_cursor"].is_null());
    assert_eq!(sent_sizes(&h, "get_lists"), [10, 10, 10]);

    // The default is 20, with a cursor whose next page is the remaining 5.
    h.emulator.clear_requests(&h.key);
    let first = h.ok("list_lists", json!({})).await;
    assert_eq!(ids(&first), created[..20]);
    let cursor = first["next_cursor"].as_str().expect("a cursor").to_string();
    let rest = h.ok("list_lists", json!({"page_cursor": cursor})).await;
    assert_eq!(ids(&rest), created[20..]);
    assert!(rest["next_cursor"].is_null());
    assert_eq!(sent_sizes(&h, "get_lists"), [10, 10, 10]);

    // The limit is not a page size: 100 is allowed for lists too.
    let all = h.ok("list_lists", json!({"limit": 100})).await;
    assert_eq!(ids(&all), created);
    h.assert_spec_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn list_flows_follows_cursors_past_klaviyos_fifty() {
    let h = Harness::new("pk_limit_flows").await;
    // The emulator seeds more flows than one get_flows page (at most 50) holds.
    let all = h.ok("list_flows", json!({"limit": 100})).await;
    let every = ids(&all);
    assert!(every.len() > 50, "{} flows", every.len());
    assert!(every.len() < 100);
    assert!(all["next_cursor"].is_null());
    assert_eq!(sent_sizes(&h, "get_flows"), [50, 50]);
    let mut sorted = every.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), every.len(), "no flow twice");

    // 55 of them: a page of 50 and one of 5, then a cursor Klaviyo gave for the rest.
    h.emulator.clear_requests(&h.key);
    let first = h.ok("list_flows", json!({"limit": 55})).await;
    assert_eq!(ids(&first), every[..55]);
    assert_eq!(sent_sizes(&h, "get_flows"), [50, 5]);
    let rest = h
        .ok(
            "list_flows",
            json!({"limit": 100, "page_cursor": first["next_cursor"]}),
        )
        .await;
    assert_eq!(ids(&rest), every[55..]);
    assert!(rest["next_cursor"].is_null());
    h.assert_spec_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn get_list_counts_its_members() {
    let h = Harness::new("pk_profile_count").await;
    let list = h.ok("create_list", json!({"name": "Counted"})).await;
    assert_eq!(
        h.ok("get_list", json!({"list_id": list["id"]})).await["profile_count"],
        0
    );
    for who in ["count_a", "count_b"] {
        h.ok(
            "subscribe_profile",
            json!({"list_id": list["id"], "email": unique(who)}),
        )
        .await;
    }
    let got = h.ok("get_list", json!({"list_id": list["id"]})).await;
    assert_eq!(got["profile_count"], 2);
    assert_eq!(got["name"], "Counted");
    let requests = h.emulator.requests(&h.key);
    let get = requests
        .iter()
        .rfind(|r| r.operation.as_deref() == Some("get_list"))
        .unwrap();
    assert!(
        get.query
            .contains(&("additional-fields[list]".into(), "profile_count".into())),
        "{:?}",
        get.query
    );
    h.assert_spec_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn events_carry_their_metric_name_and_metrics_filter_them() {
    let h = Harness::new("pk_metric_names").await;
    let p = h
        .ok("create_profile", json!({"email": unique("orders")}))
        .await;
    for (name, value) in [
        ("Placed Order", 10.0),
        ("Viewed Product", 0.0),
        ("Placed Order", 20.0),
    ] {
        h.ok(
            "create_event",
            json!({"profile_id": p["id"], "event_name": name, "value": value}),
        )
        .await;
    }
    let events = h.ok("list_events", json!({})).await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    let named: Vec<&str> = items
        .iter()
        .map(|e| e["metric_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        named.iter().filter(|n| **n == "Placed Order").count(),
        2,
        "{named:?}"
    );
    let order = items
        .iter()
        .find(|e| e["metric_name"] == "Placed Order")
        .unwrap();
    let one = h.ok("get_event", json!({"event_id": order["id"]})).await;
    assert_eq!(one["metric_name"], "Placed Order");

    // list_metrics finds "Placed Order" beside Klaviyo's own metrics ...
    let metrics = h.ok("list_metrics", json!({})).await;
    assert!(metrics["next_cursor"].is_null());
    let placed = metrics["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Placed Order")
        .expect("Placed Order is a metric")
        .clone();
    assert_eq!(placed["integration_name"], "API");
    assert_eq!(placed["integration_category"], "API");
    assert!(placed["created"].is_string() && placed["integration_id"].is_string());
    // ... and its id filters list_events.
    let filter = format!("equals(metric_id,\"{}\")", placed["id"].as_str().unwrap());
    let orders = h.ok("list_events", json!({"filter": filter})).await;
    let orders = orders["items"].as_array().unwrap();
    assert_eq!(orders.len(), 2);
    assert!(
        orders
            .iter()
            .all(|e| e["metric_name"] == "Placed Order" && e["metric_id"] == placed["id"])
    );

    // The integration filters.
    let api = h
        .ok("list_metrics", json!({"integration_name": "API"}))
        .await;
    let mut names: Vec<&str> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["Placed Order", "Viewed Product"]);
    let internal = h
        .ok(
            "list_metrics",
            json!({"integration_category": "Internal", "integration_name": "Klaviyo"}),
        )
        .await;
    let internal = internal["items"].as_array().unwrap();
    assert!(!internal.is_empty());
    assert!(
        internal
            .iter()
            .all(|m| m["integration_category"] == "Internal")
    );

    h.assert_spec_clean();
    let requests = h.emulator.requests(&h.key);
    let metric_filters: Vec<String> = requests
        .iter()
        .filter(|r| r.operation.as_deref() == Some("get_metrics"))
        .map(|r| {
            r.query
                .iter()
                .find(|(k, _)| k == "filter")
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        metric_filters,
        [
            "",
            "equals(integration.name,\"API\")",
            "and(equals(integration.name,\"Klaviyo\"),equals(integration.category,\"Internal\"))"
        ]
    );
    let event_reads = requests
        .iter()
        .filter(|r| matches!(r.operation.as_deref(), Some("get_event" | "get_events")));
    for r in event_reads {
        assert!(
            r.query.contains(&("include".into(), "metric".into())),
            "{:?}",
            r.query
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn list_campaigns_without_channel_merges_email_and_sms() {
    let h = Harness::new("pk_campaigns_both").await;
    let both = h.ok("list_campaigns", json!({"limit": 100})).await;
    assert!(both["next_cursor"].is_null());
    let items = both["items"].as_array().unwrap();
    let email = h
        .ok("list_campaigns", json!({"channel": "email", "limit": 100}))
        .await;
    let sms = h
        .ok("list_campaigns", json!({"channel": "sms", "limit": 100}))
        .await;
    assert_eq!(
        items.len(),
        email["items"].as_array().unwrap().len() + sms["items"].as_array().unwrap().len()
    );
    for c in items {
        let own = if c["channel"] == "email" {
            &email
        } else {
            &sms
        };
        assert_eq!(
            c["channel"].as_str().map(|c| c == "email" || c == "sms"),
            Some(true)
        );
        assert!(
            ids(own).contains(&c["id"].as_str().unwrap().to_string()),
            "{c}"
        );
    }
    // Newest first across both channels.
    let created: Vec<&str> = items
        .iter()
        .map(|c| c["created_at"].as_str().unwrap())
        .collect();
    let mut sorted = created.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, sorted);
    let channels: Vec<&str> = items
        .iter()
        .map(|c| c["channel"].as_str().unwrap())
        .collect();
    assert!(channels.windows(2).any(|w| w[0] != w[1]));

    // Three at a time, the cursor resumes both streams exactly after the last item.
    let mut walked = Vec::new();
    let mut cursor = Value::Null;
    let mut calls = 0;
    loop {
        let page = h
            .ok("list_campaigns", json!({"limit": 3, "page_cursor": cursor}))
            .await;
        calls += 1;
        assert!(calls <= 100, "the walk of list_campaigns does not end");
        walked.extend(ids(&page));
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(walked, ids(&both));
    assert_eq!(calls, items.len().div_ceil(3));

    // A merged cursor continues only a merged listing.
    let first = h.ok("list_campaigns", json!({"limit": 2})).await;
    let e = h
        .err(
            "list_campaigns",
            json!({"channel": "email", "page_cursor": first["next_cursor"]}),
        )
        .await;
    assert_eq!(
        (e.code.as_str(), e.details["field"].as_str()),
        ("invalid_argument", Some("page_cursor"))
    );

    h.assert_spec_clean();
    // Each merged call asked both channels for no more than it could use, sorted by date.
    for r in h
        .emulator
        .requests(&h.key)
        .iter()
        .filter(|r| r.query.iter().any(|(k, _)| k == "sort"))
    {
        assert!(r.query.contains(&("sort".into(), "-created_at".into())));
        let size: u32 = r
            .query
            .iter()
            .find(|(k, _)| k == "page[size]")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap();
        assert!((1..=100).contains(&size));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn profiles_are_created_from_any_one_identifier() {
    let h = Harness::new("pk_identifiers").await;
    let phone = h
        .ok("create_profile", json!({"phone_number": "+15005550199"}))
        .await;
    assert_eq!(phone["phone_number"], "+15005550199");
    assert!(phone["email"].is_null());
    assert_eq!(phone["id"].as_str().unwrap().len(), 26);
    let external = h
        .ok(
            "create_profile",
            json!({"external_id": "user-42", "first_name": "Grace"}),
        )
        .await;
    assert_eq!(external["external_id"], "user-42");
    assert_eq!(external["first_name"], "Grace");
    assert!(external["email"].is_null() && external["phone_number"].is_null());
    // The same external id again is Klaviyo's duplicate.
    let e = h
        .err("create_profile", json!({"external_id": "user-42"}))
        .await;
    assert_eq!(e.code, "duplicate_profile");
    assert_eq!(e.details["duplicate_profile_id"], external["id"]);

    let before = h.requests();
    let e = h
        .err("create_profile", json!({"last_name": "Hopper"}))
        .await;
    assert_eq!(e.code, "invalid_argument");
    for field in ["email", "phone_number", "external_id"] {
        assert!(e.message.contains(field), "{}", e.message);
    }
    assert_eq!(h.requests(), before, "refused before any request");
    h.assert_spec_clean();
}

/// `assert_spec_clean` bites: an off-spec request (a page size out of range, sent around the
/// component) is recorded as validated with a violation.
#[tokio::test(flavor = "multi_thread")]
async fn the_spec_check_catches_an_off_spec_request() {
    let h = Harness::new("pk_off_spec").await;
    let url = format!("{}/api/lists/?page[size]=11", h.emulator.base_url());
    let (host, path) = url
        .strip_prefix("http://")
        .and_then(|r| r.split_once('/'))
        .unwrap();
    let request = format!(
        "GET /{path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Klaviyo-API-Key pk_off_spec\r\n\
         revision: {}\r\naccept: application/vnd.api+json\r\nconnection: close\r\n\r\n",
        klaviyo_spec::REVISION
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let recorded = h.emulator.requests("pk_off_spec");
    assert_eq!(recorded.len(), 1);
    assert!(recorded[0].validated);
    assert!(!recorded[0].violations.is_empty(), "{:?}", recorded[0]);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.assert_spec_clean()));
    assert!(
        caught.is_err(),
        "assert_spec_clean must fail on an off-spec request"
    );
}

/// The shipped component carries its name, version, description and license in top-level
/// custom sections, where wasm tooling reads them.
#[test]
fn component_carries_its_metadata() {
    fn leb(bytes: &[u8], at: &mut usize) -> usize {
        let (mut n, mut shift) = (0usize, 0);
        loop {
            let b = bytes[*at];
            *at += 1;
            n |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return n;
            }
            shift += 7;
        }
    }
    let wasm = kosmo_runtime::COMPONENT;
    assert_eq!(&wasm[..4], b"\0asm");
    let mut sections = std::collections::HashMap::new();
    let mut at = 8;
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = leb(wasm, &mut at);
        let end = at + size;
        if id == 0 {
            let mut p = at;
            let len = leb(wasm, &mut p);
            let name = String::from_utf8_lossy(&wasm[p..p + len]).to_string();
            sections.insert(name, wasm[p + len..end].to_vec());
        }
        at = end;
    }
    let text = |k: &str| String::from_utf8(sections.get(k).cloned().unwrap_or_default()).unwrap();
    assert_eq!(text("version"), env!("CARGO_PKG_VERSION"));
    assert_eq!(text("description"), env!("CARGO_PKG_DESCRIPTION"));
    assert_eq!(text("licenses"), "MIT");
    assert!(
        text("component-name").ends_with("klaviyo"),
        "{:?}",
        sections.keys()
    );
}

fn status_fault(status: u16, code: &str, retry_after: Option<u32>) -> Fault {
    Fault::Status {
        status,
        code: code.into(),
        retry_after,
    }
}

/// 504 and 524 are retried like 503 (Klaviyo's SDK set); 500 and 502 are not.
/// Catches: the retry set narrowed to `429 | 503` (the 524/504 call stops after 1 attempt),
/// or widened to all 5xx (500 and 502 would take 3).
#[tokio::test(flavor = "multi_thread")]
async fn gateway_timeouts_are_retried_and_server_errors_are_not() {
    let h = Harness::new("pk_retry_set").await;
    let lists = json!({});
    for s in [524, 504, 524] {
        h.emulator
            .inject_fault(&h.key, status_fault(s, "gateway_timeout", None));
    }
    let started = Instant::now();
    let e = h.err("list_lists", lists.clone()).await;
    assert_eq!((e.code.as_str(), e.status), ("server_error", Some(524)));
    assert_eq!(e.details["attempts"], 3, "{e:?}");
    assert_eq!(h.requests(), 3);
    // The backoff's lower bound, 0.5 s * 1.5^n less half of it: 0.25 s + 0.375 s. A lower
    // bound only, so a busy machine cannot fail it; it catches retries without a wait
    // (a jitter unit below 0 makes every wait zero).
    assert!(
        started.elapsed() >= Duration::from_millis(625),
        "{:?}",
        started.elapsed()
    );

    for s in [500, 502] {
        h.emulator.clear_requests(&h.key);
        h.emulator
            .inject_fault(&h.key, status_fault(s, "error", None));
        let e = h.err("list_lists", lists.clone()).await;
        assert_eq!((e.code.as_str(), e.status), ("server_error", Some(s)));
        assert_eq!(e.details["attempts"], 1, "{s}: {e:?}");
        assert_eq!(h.requests(), 1, "{s}");
    }
}

/// A dropped connection repeats a PATCH (its body sets absolute values) but never a POST.
/// Catches: dropped connections retried for GET only (the PATCH fails), or for every verb
/// (the POST is sent twice).
#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_patch_is_repeated_and_a_dropped_post_is_not() {
    let h = Harness::new("pk_drop_verbs").await;
    let id = h
        .ok("create_profile", json!({"email": unique("drop")}))
        .await["id"]
        .clone();
    h.emulator.clear_requests(&h.key);
    h.emulator.inject_fault(&h.key, Fault::DropConnection);
    let p = h
        .ok(
            "update_profile",
            json!({"profile_id": id, "first_name": "Again"}),
        )
        .await;
    assert_eq!(p["first_name"], "Again");
    let methods: Vec<String> = h
        .emulator
        .requests(&h.key)
        .iter()
        .map(|r| r.method.clone())
        .collect();
    assert_eq!(methods, ["PATCH", "PATCH"]);

    h.emulator.clear_requests(&h.key);
    h.emulator.inject_fault(&h.key, Fault::DropConnection);
    let e = h
        .err("create_profile", json!({"email": unique("dropped")}))
        .await;
    assert_eq!(e.code, "transport", "{e}");
    assert_eq!(e.details["attempts"], 1, "{e:?}");
    assert_eq!(h.requests(), 1);
    h.assert_spec_clean();
}

/// A Retry-After of 11 s is over the 10 s a single wait may take: the caller gets
/// `rate_limited` with the 11 at once. Catches: the single-wait cap removed or raised
/// (`> 11`), which would sleep 11 s.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_over_ten_seconds_is_returned_not_slept() {
    let h = Harness::new("pk_retry_11").await;
    h.emulator
        .inject_fault(&h.key, status_fault(429, "throttled", Some(11)));
    let started = Instant::now();
    let e = h.err("list_lists", json!({})).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((e.code.as_str(), e.status), ("rate_limited", Some(429)));
    assert_eq!(e.details["retry_after"], 11);
    assert_eq!(e.details["attempts"], 1, "{e:?}");
    assert_eq!(h.requests(), 1);
}

/// Retry-After 10 is slept through (the single-wait cap is inclusive); a following
/// Retry-After 6 would bring the call's waiting to 16 s, over the 15 s total, so it is
/// returned as `rate_limited` after 2 attempts instead. The one test that costs 10 s.
/// Catches: the single-wait cap made exclusive (`<`: nothing slept, 1 attempt) and the
/// total cap removed (the 6 s is slept and the third attempt succeeds).
#[tokio::test(flavor = "multi_thread")]
async fn retry_after_ten_is_slept_and_the_total_wait_is_capped_at_fifteen() {
    let h = Harness::new("pk_retry_total").await;
    h.emulator
        .inject_fault(&h.key, status_fault(429, "throttled", Some(10)));
    h.emulator
        .inject_fault(&h.key, status_fault(429, "throttled", Some(6)));
    let started = Instant::now();
    let e = h.err("list_lists", json!({})).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_secs(10) && elapsed < Duration::from_millis(11_500),
        "{elapsed:?}"
    );
    assert_eq!((e.code.as_str(), e.status), ("rate_limited", Some(429)));
    assert_eq!(e.details["retry_after"], 6);
    assert_eq!(e.details["attempts"], 2, "{e:?}");
    assert_eq!(h.requests(), 2);
}

/// A response over the host's size cap is refused once, as `invalid_response`: repeating the
/// request would get the same body. (Before, it reached the guest as a cut connection and a
/// GET was sent three times, with about 2 s of backoff.) Catches: the guest mapping
/// `HTTP-response-body-size` to `transport`, and the egress not refusing a declared length
/// over the cap.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_over_the_size_cap_is_not_retried() {
    let h = Harness::new("pk_size_cap").await;
    let mut config = RuntimeConfig::default();
    config.egress.max_response_bytes = 16;
    let runtime = h.runtime.with_config(config);
    let started = Instant::now();
    let e = runtime
        .call(&h.account, "list_lists", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "invalid_response", "{e}");
    assert!(
        e.message.contains("larger than the host allows"),
        "{}",
        e.message
    );
    assert_eq!(e.details["attempts"], 1, "{e:?}");
    assert_eq!(h.requests(), 1);
    assert!(started.elapsed() < Duration::from_millis(500));
}

/// The component's own 16 MiB cap on a response body, for hosts that set none (jco, the
/// wasmtime CLI): with the host's cap raised, a valid body of exactly 16 MiB is read and one
/// byte more is refused as `invalid_response`, once. Catches `>=` or `==` for `>` in the
/// guest's check (`http::send_once`).
#[tokio::test(flavor = "multi_thread")]
async fn the_components_own_body_cap_is_sixteen_mib() {
    const CAP: usize = 16 << 20;
    let h = Harness::new("pk_guest_cap").await;
    let mut config = RuntimeConfig::default();
    config.egress.max_response_bytes = 4 * CAP as u64;
    let runtime = h.runtime.with_config(config);
    h.emulator.inject_fault(&h.key, Fault::Padded(CAP));
    let page = runtime
        .call(&h.account, "list_lists", &json!({}))
        .await
        .expect("a body of exactly the cap is read");
    assert_eq!(page["items"], json!([]));
    h.emulator.inject_fault(&h.key, Fault::Padded(CAP + 1));
    let e = runtime
        .call(&h.account, "list_lists", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "invalid_response", "{e}");
    assert_eq!(
        e.message,
        "HTTP 200 response body larger than 16777216 bytes"
    );
    assert_eq!(e.details["attempts"], 1, "{e:?}");
    assert_eq!(h.requests(), 2);
}

/// Klaviyo's 403 is `forbidden` (not `unauthorized`, not the local policy's
/// `permission_denied`); a 409 other than `duplicate_profile` is `conflict`.
/// Catches: `403 => Unauthorized`, or every 409 mapped to `duplicate_profile`.
#[tokio::test(flavor = "multi_thread")]
async fn forbidden_and_conflict_keep_their_codes() {
    let h = Harness::new("pk_403_409").await;
    h.emulator
        .inject_fault(&h.key, status_fault(403, "permission_denied", None));
    let e = h.err("list_lists", json!({})).await;
    assert_eq!((e.code.as_str(), e.status), ("forbidden", Some(403)));
    assert_eq!(e.details["klaviyo_code"], "permission_denied");
    assert_eq!(e.details["attempts"], 1, "{e:?}");

    h.emulator
        .inject_fault(&h.key, status_fault(409, "conflict", None));
    let e = h.err("create_list", json!({"name": "Dup"})).await;
    assert_eq!((e.code.as_str(), e.status), ("conflict", Some(409)));
    assert!(e.details.get("duplicate_profile_id").is_none(), "{e:?}");
    assert_eq!(h.requests(), 2);
}

/// `update_profile` maps Klaviyo's own answers: an unknown id is `not_found`, and taking
/// another profile's email is `duplicate_profile` naming that profile.
#[tokio::test(flavor = "multi_thread")]
async fn update_profile_reports_not_found_and_duplicates() {
    let h = Harness::new("pk_update_errors").await;
    let e = h
        .err(
            "update_profile",
            json!({"profile_id": "01HNOTTHERE0000000000000000", "first_name": "X"}),
        )
        .await;
    assert_eq!((e.code.as_str(), e.status), ("not_found", Some(404)));

    let taken = unique("taken");
    let first = h.ok("create_profile", json!({"email": taken})).await;
    let second = h
        .ok("create_profile", json!({"email": unique("other")}))
        .await;
    let e = h
        .err(
            "update_profile",
            json!({"profile_id": second["id"], "email": taken}),
        )
        .await;
    assert_eq!(
        (e.code.as_str(), e.status),
        ("duplicate_profile", Some(409))
    );
    assert_eq!(e.details["duplicate_profile_id"], first["id"]);
    assert_eq!(e.details["attempts"], 1, "{e:?}");
    h.assert_spec_clean();
}

/// The current UTC year, from the system clock (days since 1970 through the civil calendar).
fn this_year() -> i64 {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        / 86_400;
    // Howard Hinnant's days-from-civil inverse, year only.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(month <= 2)
}

/// An egress policy that refuses everything.
struct RefuseAll;

impl kosmo_runtime::EgressPolicy for RefuseAll {
    fn admit(
        &self,
        _account: &Account,
        _request: &mut http::Request<wasmtime_wasi_http::WasiBody>,
    ) -> Result<(), kosmo_runtime::Denied> {
        Err(kosmo_runtime::Denied("refused by the test".into()))
    }
}

/// A request the host's egress policy refuses is reported at once, never retried: repeating
/// it cannot change the answer (fails if `http::from_code` treats `HttpRequestDenied` as a
/// failure worth a retry: 3 attempts and over a second of backoff).
#[tokio::test(flavor = "multi_thread")]
async fn a_request_the_egress_policy_refuses_is_not_retried() {
    let emulator = Emulator::start().await.unwrap();
    let runtime = builder()
        .egress_policy(std::sync::Arc::new(RefuseAll))
        .build()
        .unwrap();
    let account = Account::new("refused", ApiKey::new("pk_refused"), &emulator.base_url()).unwrap();
    let e = runtime
        .call(&account, "list_lists", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "transport", "{e}");
    assert_eq!(
        e.message,
        "request denied by the host's egress policy (only https://a.klaviyo.com is allowed)"
    );
    assert_eq!(e.details["attempts"], 1, "{e:?}");
    assert_eq!(emulator.request_count("pk_refused"), 0);
}
