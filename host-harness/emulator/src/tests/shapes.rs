//! Every kind of success response validates against the spec's 200/201 response schema, and
//! every resource carries every attribute and relationship the schema lists.

use serde_json::{Value, json};

use super::super::Emulator;
use super::super::spec::{self, Operation};
use super::Client;

/// Property names of the `member` object (`attributes`/`relationships`) of a resource schema,
/// through `$ref`s, `allOf` and array `items`.
fn member_props(op: &Operation, schema: &Value, member: &str, out: &mut Vec<String>) {
    let s = op.resolve(schema);
    if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
        for p in parts {
            member_props(op, p, member, out);
        }
    }
    if let Some(items) = s.get("items") {
        member_props(op, items, member, out);
    }
    if let Some(obj) = s["properties"][member]
        .get("properties")
        .and_then(Value::as_object)
    {
        out.extend(
            obj.keys()
                .filter(|k| !out.contains(k))
                .cloned()
                .collect::<Vec<_>>(),
        );
    }
}

/// Check `doc` (the answer to `op_id`) against the response schema and for completeness.
fn check(op_id: &str, doc: &Value, requested_additional: &[&str]) {
    let op = spec::operation(op_id).expect("operation");
    assert!(
        matches!(op.success_status, 200 | 201),
        "{op_id} answers with a body"
    );
    let validator = op.response_validator().expect("response schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path.as_str()))
        .collect();
    assert!(
        errors.is_empty(),
        "{op_id} response violates the spec: {errors:#?}\n{doc:#}"
    );

    let schema = op.response_schema().expect("schema");
    let data_schema = &op.resolve(schema)["properties"]["data"];
    let mut attributes = Vec::new();
    let mut relationships = Vec::new();
    member_props(op, data_schema, "attributes", &mut attributes);
    member_props(op, data_schema, "relationships", &mut relationships);
    // Additional fields only appear when requested (notes §2 create_profile).
    let additional = op.additional_fields();
    attributes.retain(|a| !additional.contains(a) || requested_additional.contains(&a.as_str()));
    assert!(!attributes.is_empty(), "{op_id}: schema attributes found");

    let resources: Vec<&Value> = match &doc["data"] {
        Value::Array(items) => items.iter().collect(),
        single => vec![single],
    };
    assert!(
        !resources.is_empty(),
        "{op_id}: test needs at least one resource"
    );
    for r in resources {
        for a in &attributes {
            assert!(
                r["attributes"].get(a).is_some(),
                "{op_id}: attribute {a} missing in {r:#}"
            );
        }
        for rel in &relationships {
            assert!(
                r["relationships"][rel]["links"]["related"].is_string(),
                "{op_id}: relationship {rel} missing in {r:#}"
            );
        }
        assert!(r["links"]["self"].is_string());
    }
}

#[tokio::test]
async fn success_responses_match_the_spec() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_shapes");
    let ok = |r: super::Resp, status: u16| {
        assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
        r.json()
    };

    let r = c
        .post(
            "/api/profiles",
            &json!({"data": {"type": "profile", "attributes": {
                "email": "shape@example.com", "phone_number": "+15005550006",
                "location": {"latitude": 40.7128, "longitude": "74.0060"}, "properties": {"k": "v"}}}}),
        )
        .await;
    let doc = ok(r, 201);
    check("create_profile", &doc, &[]);
    let id = doc["data"]["id"].as_str().expect("id").to_string();
    let doc = ok(
        c.post(
            "/api/profiles?additional-fields[profile]=subscriptions",
            &json!({"data": {"type": "profile", "attributes": {"email": "shape2@example.com"}}}),
        )
        .await,
        201,
    );
    check("create_profile", &doc, &["subscriptions"]);

    let r = c
        .patch(
            &format!("/api/profiles/{id}"),
            &json!({"data": {"type": "profile", "id": id, "attributes": {"first_name": "Shape"}}}),
        )
        .await;
    check("update_profile", &ok(r, 200), &[]);

    let list = c.create_list("Shapes").await;
    let doc = ok(
        c.post("/api/lists", &json!({"data": {"type": "list", "attributes": {"name": "Double", "opt_in_process": "double_opt_in"}}}))
            .await,
        201,
    );
    check("create_list", &doc, &[]);
    let r = c
        .post(
            "/api/profile-subscription-bulk-create-jobs",
            &json!({"data": {"type": "profile-subscription-bulk-create-job", "attributes": {
                "profiles": {"data": [{"type": "profile", "attributes": {"email": "shape@example.com",
                    "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}}}}}]}},
                "relationships": {"list": {"data": {"type": "list", "id": list}}}}}),
        )
        .await;
    assert_eq!(r.status, 202);
    assert!(r.body.is_empty(), "202 has no body");
    for op in ["bulk_subscribe_profiles", "create_event"] {
        let op = spec::operation(op).expect("operation");
        assert_eq!(op.success_status, 202);
        assert!(
            op.response_schema().is_none(),
            "the spec documents no 202 body"
        );
    }
    c.create_event("Placed Order", &id, "2024-05-01T00:00:00Z", Some(5.0))
        .await;

    let all = "additional-fields[profile]=subscriptions,predictive_analytics";
    let doc = ok(
        c.get(&format!("/api/profiles/{id}?{all}&include=lists"))
            .await,
        200,
    );
    check(
        "get_profile",
        &doc,
        &["subscriptions", "predictive_analytics"],
    );
    assert_eq!(
        doc["data"]["relationships"]["lists"]["data"][0]["id"],
        list.as_str()
    );
    assert_eq!(doc["included"][0]["type"], "list");
    check(
        "get_profile",
        &ok(c.get(&format!("/api/profiles/{id}")).await, 200),
        &[],
    );
    check(
        "get_profiles",
        &ok(c.get("/api/profiles?page[size]=1").await, 200),
        &[],
    );
    check(
        "get_profiles",
        &ok(
            c.get(&format!("/api/profiles?{all}&include=push-tokens"))
                .await,
            200,
        ),
        &["subscriptions", "predictive_analytics"],
    );

    check("get_lists", &ok(c.get("/api/lists").await, 200), &[]);
    check(
        "get_list",
        &ok(c.get(&format!("/api/lists/{list}")).await, 200),
        &[],
    );
    check(
        "get_list",
        &ok(
            c.get(&format!(
                "/api/lists/{list}?additional-fields[list]=profile_count"
            ))
            .await,
            200,
        ),
        &["profile_count"],
    );
    check(
        "get_profiles_for_list",
        &ok(c.get(&format!("/api/lists/{list}/profiles")).await, 200),
        &[],
    );
    check(
        "get_profiles_for_list",
        &ok(
            c.get(&format!("/api/lists/{list}/profiles?{all}")).await,
            200,
        ),
        &["subscriptions", "predictive_analytics"],
    );

    let doc = ok(
        c.get("/api/events?include=metric,profile,attributions")
            .await,
        200,
    );
    check("get_events", &doc, &[]);
    let event_id = doc["data"][0]["id"].as_str().expect("id").to_string();
    check("get_events", &ok(c.get("/api/events").await, 200), &[]);
    check(
        "get_event",
        &ok(
            c.get(&format!("/api/events/{event_id}?include=metric,profile"))
                .await,
            200,
        ),
        &[],
    );
    check(
        "get_event",
        &ok(c.get(&format!("/api/events/{event_id}")).await, 200),
        &[],
    );

    let doc = ok(c.get("/api/flows?include=tags").await, 200);
    check("get_flows", &doc, &[]);
    let flow_id = doc["data"][0]["id"].as_str().expect("id").to_string();
    check(
        "get_flow",
        &ok(c.get(&format!("/api/flows/{flow_id}")).await, 200),
        &[],
    );
    check(
        "get_flow",
        &ok(
            c.get(&format!(
                "/api/flows/{flow_id}?additional-fields[flow]=definition"
            ))
            .await,
            200,
        ),
        &["definition"],
    );
    check(
        "get_metrics",
        &ok(c.get("/api/metrics?include=flow-triggers").await, 200),
        &[],
    );
    check(
        "get_metrics",
        &ok(
            c.get("/api/metrics?filter=equals(integration.name,'API')")
                .await,
            200,
        ),
        &[],
    );
    for channel in ["email", "sms"] {
        let doc = ok(
            c.get(&format!(
                "/api/campaigns?filter=equals(messages.channel,'{channel}')"
            ))
            .await,
            200,
        );
        check("get_campaigns", &doc, &[]);
    }
    // Paged collections carry next/prev as strings (never null).
    let doc = ok(
        c.get("/api/campaigns?filter=equals(messages.channel,'email')&page[size]=2")
            .await,
        200,
    );
    assert!(doc["links"]["next"].is_string());
    check("get_campaigns", &doc, &[]);

    let recorded = emu.requests("pk_shapes");
    assert!(
        recorded.iter().all(|r| r.violations.is_empty()),
        "the test's own requests are spec-valid: {:?}",
        recorded
            .iter()
            .filter(|r| !r.violations.is_empty())
            .collect::<Vec<_>>()
    );
}

/// The response validators do reject documents that break the schema, so the test above
/// proves something.
#[test]
fn response_validation_rejects_off_spec_documents() {
    use super::super::render::{self, Urls};
    use super::super::state::{Account, Profile};

    let urls = Urls {
        base: "http://127.0.0.1:1".into(),
    };
    let campaigns = spec::operation("get_campaigns").expect("op");
    let v = campaigns.response_validator().expect("validator");
    let acct = Account::seeded();
    let good = json!({"data": [render::campaign(&acct.campaigns[0], &urls)],
                      "links": {"self": "http://127.0.0.1:1/api/campaigns"}});
    assert!(v.is_valid(&good));
    let mut missing = good.clone();
    if let Some(a) = missing["data"][0]["attributes"].as_object_mut() {
        a.remove("audiences");
    }
    assert!(!v.is_valid(&missing), "a required attribute is missing");
    let mut null_next = good.clone();
    null_next["links"]["next"] = Value::Null;
    assert!(
        !v.is_valid(&null_next),
        "CollectionLinks.next is a string, not null"
    );
    let mut bad_status = good;
    bad_status["data"][0]["attributes"]["status"] = json!("Exploded");
    assert!(!v.is_valid(&bad_status), "status is an enum");

    let profile_op = spec::operation("create_profile").expect("op");
    let v = profile_op.response_validator().expect("validator");
    let mut p = Profile::new(0);
    p.set("email", Some("a@example.com".into()));
    let mut doc = json!({"data": render::profile(&p, &urls, &render::PROFILE_RELS, &[], &[]),
                         "links": {"self": "http://127.0.0.1:1/api/profiles/"}});
    assert!(v.is_valid(&doc));
    doc["data"]["attributes"]["created"] = json!("yesterday");
    assert!(!v.is_valid(&doc), "created is a date-time");
    doc["data"]["attributes"]["created"] = Value::Null;
    assert!(v.is_valid(&doc), "nullable is honoured");
    doc["data"]["type"] = json!("list");
    assert!(!v.is_valid(&doc));
}
