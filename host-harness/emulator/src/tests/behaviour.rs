//! Behaviour of the operations: CRUD, uniqueness, pagination, subscriptions, events and
//! filters, campaigns, isolation, auth and validation.

use serde_json::{Value, json};

use super::super::{Emulator, EmulatorOptions};
use super::{Client, target_of};

#[tokio::test]
async fn profile_create_get_patch_and_duplicate() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_profiles");
    let r = c
        .post(
            "/api/profiles/",
            &json!({"data": {"type": "profile", "attributes": {
                "email": "sarah.mason@example.com", "phone_number": "+15005550006",
                "first_name": "Sarah", "last_name": "Mason",
                "location": {"city": "Boston"}, "properties": {"plan": "gold", "seats": 3}}}}),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.header("content-type"), Some("application/vnd.api+json"));
    let doc = r.json();
    let id = doc["data"]["id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 26);
    assert!(
        id.bytes()
            .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b))
    );
    let a = &doc["data"]["attributes"];
    assert_eq!(a["email"], "sarah.mason@example.com");
    assert_eq!(a["organization"], Value::Null);
    assert_eq!(a["location"]["city"], "Boston");
    assert_eq!(a["location"]["zip"], Value::Null);
    assert_eq!(a["created"], a["updated"]);
    assert!(a["created"].as_str().is_some_and(|t| t.ends_with("+00:00")));
    assert_eq!(
        doc["links"]["self"],
        format!("{}/api/profiles/{id}/", emu.base_url())
    );

    let r = c.get(&format!("/api/profiles/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["attributes"]["properties"]["plan"], "gold");

    // PATCH merges: given attributes change, explicit null clears, properties merge by key.
    let r = c
        .patch(
            &format!("/api/profiles/{id}/"),
            &json!({"data": {"type": "profile", "id": id, "attributes": {
                "first_name": "Sally", "last_name": null, "properties": {"seats": 5, "beta": true}},
                "meta": {"patch_properties": {"append": {"tags": "vip"}, "unset": "plan"}}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let a = r.json()["data"]["attributes"].clone();
    assert_eq!(a["first_name"], "Sally");
    assert_eq!(a["last_name"], Value::Null);
    assert_eq!(a["email"], "sarah.mason@example.com");
    assert_eq!(
        a["properties"],
        json!({"seats": 5, "beta": true, "tags": ["vip"]})
    );

    // A body id that differs from the path id.
    let r = c
        .patch(
            &format!("/api/profiles/{id}"),
            &json!({"data": {"type": "profile", "id": "01GDDKASAP8TKDDA2GRZDSVP4H", "attributes": {}}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error()["source"]["pointer"], "/data/id");

    // Duplicate email on create (case-insensitive) and duplicate phone on PATCH: verbatim 409.
    let r = c
        .post(
            "/api/profiles",
            &json!({"data": {"type": "profile", "attributes": {"email": "Sarah.Mason@example.com"}}}),
        )
        .await;
    assert_eq!(r.status, 409);
    let e = r.error();
    assert_eq!(e["status"], 409);
    assert_eq!(e["code"], "duplicate_profile");
    assert_eq!(e["title"], "Conflict.");
    assert_eq!(
        e["detail"],
        "A profile already exists with one of these identifiers."
    );
    assert_eq!(e["source"], json!({"pointer": "/data/attributes"}));
    assert_eq!(e["links"], json!({}));
    assert_eq!(e["meta"]["duplicate_profile_id"], id.as_str());
    assert_eq!(e["id"].as_str().map(str::len), Some(36));

    let other = c
        .create_profile(json!({"email": "other@example.com"}))
        .await;
    let r = c
        .patch(
            &format!("/api/profiles/{other}"),
            &json!({"data": {"type": "profile", "id": other, "attributes": {"phone_number": "+15005550006"}}}),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.error()["meta"]["duplicate_profile_id"], id.as_str());

    let r = c.get("/api/profiles/01GDDKASAP8TKDDA2GRZDSVP4H").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error()["code"], "not_found");

    // Bad identifiers and missing identifiers.
    let r = c
        .post(
            "/api/profiles",
            &json!({"data": {"type": "profile", "attributes": {"email": "nope"}}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error()["source"]["pointer"], "/data/attributes/email");
    let r = c
        .post(
            "/api/profiles",
            &json!({"data": {"type": "profile", "attributes": {"first_name": "X"}}}),
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn profiles_pagination_walks_to_the_end() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_pages");
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(
            c.create_profile(json!({"email": format!("p{i}@example.com")}))
                .await,
        );
    }
    let mut target = "/api/profiles?fields%5Bprofile%5D=email&page%5Bsize%5D=3".to_string();
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let r = c.get(&target).await;
        assert_eq!(r.status, 200);
        let doc = r.json();
        let data = doc["data"].as_array().expect("array").clone();
        assert!(data.len() <= 3);
        for d in &data {
            // The sparse fieldset is kept on every page.
            assert_eq!(d["attributes"].as_object().map(|a| a.len()), Some(1));
            seen.push(d["id"].as_str().expect("id").to_string());
        }
        pages += 1;
        assert!(doc["links"]["self"].as_str().is_some());
        match doc["links"].get("next").and_then(Value::as_str) {
            Some(next) => {
                assert!(next.starts_with(&emu.base_url()));
                assert!(next.contains("fields%5Bprofile%5D=email"));
                assert!(next.contains("page%5Bsize%5D=3"));
                assert!(next.contains("page%5Bcursor%5D="));
                target = target_of(next);
            }
            None => break,
        }
        assert!(pages < 10, "pagination does not end");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created, "every profile once, in creation order");

    // prev on the last page points back.
    let r = c.get(&target).await;
    assert!(r.json()["links"]["prev"].as_str().is_some());

    // Filters and sorts on the collection.
    let r = c
        .get("/api/profiles?filter=any(email,['p1@example.com','p5@example.com'])&sort=-email")
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let emails: Vec<Value> = r.json()["data"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| d["attributes"]["email"].clone())
        .collect();
    assert_eq!(
        emails,
        vec![json!("p5@example.com"), json!("p1@example.com")]
    );
}

#[tokio::test]
async fn page_size_out_of_range_and_bad_cursor() {
    for validate in [true, false] {
        let emu = Emulator::start_with(EmulatorOptions {
            validate_requests: validate,
            ..EmulatorOptions::default()
        })
        .await
        .expect("start");
        let c = Client::new(&emu, "pk_bounds");
        for target in [
            "/api/lists?page[size]=100",
            "/api/lists?page%5Bsize%5D=0",
            "/api/profiles?page[size]=101",
            "/api/profiles?page[size]=abc",
            "/api/flows?page[size]=51",
            "/api/events?page[size]=1001",
            "/api/campaigns?filter=equals(messages.channel,'email')&page[size]=101",
        ] {
            let r = c.get(target).await;
            assert_eq!(r.status, 400, "{target} (validate {validate})");
            let e = r.error();
            assert_eq!(e["code"], "invalid");
            assert_eq!(e["title"], "Invalid input.");
            assert_eq!(e["source"]["parameter"], "page[size]", "{target}");
        }
        assert_eq!(c.get("/api/lists?page[size]=10").await.status, 200);
        assert_eq!(c.get("/api/events?page[size]=1000").await.status, 200);

        let r = c.get("/api/profiles?page[cursor]=bm90LWEtY3Vyc29y").await;
        assert_eq!(r.status, 400);
        assert_eq!(r.error()["detail"], "Invalid cursor provided.");
        assert_eq!(r.error()["code"], "invalid");
        let r = c.get("/api/profiles?page[cursor]=%%%").await;
        assert_eq!(r.status, 400);
    }
}

#[tokio::test]
async fn subscribe_then_list_profiles_of_the_list() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_subs");
    let list = c.create_list("Newsletter").await;
    assert_eq!(list.len(), 6);
    let existing = c
        .create_profile(json!({"email": "known@example.com"}))
        .await;
    let job = |profiles: Value, list: &str, historical: Option<bool>| {
        let mut attributes = json!({"custom_source": "signup", "profiles": {"data": profiles}});
        if let Some(h) = historical {
            attributes["historical_import"] = json!(h);
        }
        json!({"data": {"type": "profile-subscription-bulk-create-job", "attributes": attributes,
               "relationships": {"list": {"data": {"type": "list", "id": list}}}}})
    };
    let email_sub = json!({"email": {"marketing": {"consent": "SUBSCRIBED"}}});
    let profiles = json!([
        {"type": "profile", "attributes": {"email": "known@example.com", "subscriptions": email_sub}},
        {"type": "profile", "attributes": {"email": "new@example.com", "phone_number": "+15005550007",
            "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED"}},
                              "sms": {"marketing": {"consent": "SUBSCRIBED"}}}}},
    ]);
    let r = c
        .post(
            "/api/profile-subscription-bulk-create-jobs",
            &job(profiles.clone(), &list, None),
        )
        .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.body.is_empty());

    let r = c
        .get(&format!(
            "/api/lists/{list}/profiles?additional-fields[profile]=subscriptions&sort=joined_group_at"
        ))
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let data = r.json()["data"].as_array().expect("array").clone();
    assert_eq!(data.len(), 2);
    assert_eq!(data[0]["id"], existing.as_str());
    for d in &data {
        let a = &d["attributes"];
        assert!(a["joined_group_at"].as_str().is_some());
        assert_eq!(
            a["subscriptions"]["email"]["marketing"]["consent"],
            "SUBSCRIBED"
        );
    }
    assert_eq!(
        data[1]["attributes"]["subscriptions"]["sms"]["marketing"]["consent"],
        "SUBSCRIBED"
    );
    assert_eq!(data[1]["attributes"]["phone_number"], "+15005550007");

    // Subscribing again does not duplicate memberships; the count is reported on request.
    let r = c
        .post(
            "/api/profile-subscription-bulk-create-jobs",
            &job(profiles, &list, None),
        )
        .await;
    assert_eq!(r.status, 202);
    let r = c
        .get(&format!(
            "/api/lists/{list}?additional-fields[list]=profile_count"
        ))
        .await;
    assert_eq!(r.json()["data"]["attributes"]["profile_count"], 2);

    // Filter list members by email.
    let r = c
        .get(&format!(
            "/api/lists/{list}/profiles?filter=equals(email,['new@example.com'])"
        ))
        .await;
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(1));

    // Unknown list → 404; consented_at without historical_import → 400 with a pointer.
    let one = json!([{"type": "profile", "attributes": {"email": "x@example.com", "subscriptions": email_sub}}]);
    let r = c
        .post(
            "/api/profile-subscription-bulk-create-jobs",
            &job(one, "ZZZZZZ", None),
        )
        .await;
    assert_eq!(r.status, 404);
    let consented = json!([{"type": "profile", "attributes": {"email": "x@example.com",
        "subscriptions": {"email": {"marketing": {"consent": "SUBSCRIBED", "consented_at": "2024-01-01T00:00:00Z"}}}}}]);
    let r = c
        .post(
            "/api/profile-subscription-bulk-create-jobs",
            &job(consented.clone(), &list, None),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.error()["source"]["pointer"],
        "/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consented_at"
    );
    let r = c
        .post(
            "/api/profile-subscription-bulk-create-jobs",
            &job(consented, &list, Some(true)),
        )
        .await;
    assert_eq!(r.status, 202);
    let r = c.get(&format!("/api/lists/{list}/profiles")).await;
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn events_create_and_filter() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_events");
    let alice = c
        .create_profile(json!({"email": "alice@example.com"}))
        .await;
    let bob = c.create_profile(json!({"email": "bob@example.com"})).await;
    c.create_event("Placed Order", &alice, "2024-03-01T10:00:00Z", Some(9.99))
        .await;
    c.create_event("Viewed Product", &alice, "2024-01-15T08:30:00+00:00", None)
        .await;
    c.create_event(
        "Placed Order",
        &bob,
        "2024-02-10T12:00:00-05:00",
        Some(20.0),
    )
    .await;
    // By email, creating the profile.
    let r = c
        .post(
            "/api/events",
            &json!({"data": {"type": "event", "attributes": {
                "properties": {}, "time": "2024-04-01T00:00:00Z",
                "metric": {"data": {"type": "metric", "attributes": {"name": "Viewed Product"}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": "carol@example.com"}}}}}}),
        )
        .await;
    assert_eq!(r.status, 202);
    // An unknown profile id is a 404.
    let r = c
        .post(
            "/api/events",
            &json!({"data": {"type": "event", "attributes": {"properties": {},
                "metric": {"data": {"type": "metric", "attributes": {"name": "X"}}},
                "profile": {"data": {"type": "profile", "id": "01GDDKASAP8TKDDA2GRZDSVP4H", "attributes": {}}}}}}),
        )
        .await;
    assert_eq!(r.status, 404);

    let r = c.get("/api/events").await;
    let all = r.json()["data"].as_array().expect("array").clone();
    assert_eq!(all.len(), 4);
    let times: Vec<i64> = all
        .iter()
        .map(|e| e["attributes"]["timestamp"].as_i64().expect("ts"))
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "datetime ascending by default"
    );
    assert_eq!(
        all[0]["attributes"]["datetime"],
        "2024-01-15T08:30:00+00:00"
    );
    assert_eq!(
        all[1]["attributes"]["datetime"],
        "2024-02-10T17:00:00+00:00"
    );

    let by = |field: &str, id: &str| format!("/api/events?filter=equals({field},\"{id}\")");
    let r = c.get(&by("profile_id", &alice)).await;
    let data = r.json()["data"].as_array().expect("array").clone();
    assert_eq!(data.len(), 2);
    assert!(
        data.iter()
            .all(|e| e["relationships"]["profile"]["data"]["id"] == alice.as_str())
    );

    let order = data
        .iter()
        .find(|e| e["attributes"]["event_properties"]["$value"] == json!(9.99))
        .expect("the order with $value");
    let metric_id = order["relationships"]["metric"]["data"]["id"]
        .as_str()
        .expect("metric")
        .to_string();
    let r = c
        .get(&format!(
            "/api/events?filter=equals(metric_id,'{metric_id}')&sort=-datetime"
        ))
        .await;
    let data = r.json()["data"].as_array().expect("array").clone();
    assert_eq!(data.len(), 2);
    assert_eq!(
        data[0]["attributes"]["datetime"],
        "2024-03-01T10:00:00+00:00"
    );
    assert_eq!(data[0]["attributes"]["event_properties"]["sku"], "A-1");

    let r = c
        .get(&format!(
            "/api/events?filter=and(equals(profile_id,'{alice}'),greater-or-equal(datetime,2024-02-01T00:00:00Z))"
        ))
        .await;
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(1));
    let r = c
        .get("/api/events?filter=greater-than(datetime,2024-01-31T00:00:00Z),less-than(timestamp,1711929600),has(profile)")
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(2));

    // get_event with includes; the profile's last_event_date follows the newest event.
    let event_id = order["id"].as_str().expect("id");
    let r = c
        .get(&format!("/api/events/{event_id}?include=metric,profile"))
        .await;
    assert_eq!(r.status, 200);
    let doc = r.json();
    assert_eq!(
        doc["data"]["relationships"]["metric"]["data"]["type"],
        "metric"
    );
    let included = doc["included"].as_array().expect("included");
    assert_eq!(included.len(), 2);
    assert!(
        included
            .iter()
            .any(|i| i["type"] == "metric" && i["attributes"]["name"] == "Placed Order")
    );
    let r = c.get(&format!("/api/profiles/{alice}")).await;
    assert_eq!(
        r.json()["data"]["attributes"]["last_event_date"],
        "2024-03-01T10:00:00+00:00"
    );
    assert_eq!(c.get("/api/events/nope").await.status, 404);
}

#[tokio::test]
async fn filter_errors() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_filters");
    for filter in [
        "equals(metric_id,ABC)",                            // unquoted string
        "greater-than(datetime,'2024-01-01T00:00:00Z')",    // quoted datetime
        "equals(email,'a@example.com')",                    // field not allowed
        "contains(metric_id,'x')",                          // operator not allowed
        "equals(metric_id,'x'",                             // syntax error
        "and(equals(metric_id,'x'),)",                      // syntax error
        "greater-than(datetime,2024-01-01T00:00:00 00:00)", // unencoded '+' became a space
    ] {
        let target = format!(
            "/api/events?filter={}",
            super::super::paging::encode(filter)
        );
        let r = c.get(&target).await;
        assert_eq!(r.status, 400, "{filter}");
        let e = r.error();
        assert_eq!(e["code"], "invalid");
        assert_eq!(e["title"], "Invalid input.");
        assert!(
            e["detail"]
                .as_str()
                .is_some_and(|d| d.starts_with("Invalid filter provided")),
            "{filter}: {e}"
        );
        assert_eq!(e["source"]["parameter"], "filter");
    }
    // On other collections, their own x-klaviyo-filters apply.
    assert_eq!(
        c.get("/api/lists?filter=greater-than(created,2024-01-01T00:00:00Z)")
            .await
            .status,
        200
    );
    assert_eq!(
        c.get("/api/lists?filter=less-than(created,2024-01-01T00:00:00Z)")
            .await
            .status,
        400
    );
    let live = crate::state::Account::seeded()
        .flows
        .iter()
        .filter(|f| f.attributes["status"] == "live")
        .count();
    assert!((2..50).contains(&live));
    assert_eq!(
        c.get("/api/flows?filter=equals(status,'live')")
            .await
            .json()["data"]
            .as_array()
            .map(Vec::len),
        Some(live)
    );
}

#[tokio::test]
async fn campaigns_need_a_channel_and_flows_are_seeded() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_catalog");
    for validate in [
        "",
        "?filter=equals(name,'x')",
        "?filter=contains(name,'Sale')",
    ] {
        let r = c.get(&format!("/api/campaigns{validate}")).await;
        assert_eq!(r.status, 400, "{validate}");
        assert_eq!(r.error()["code"], "invalid");
        assert_eq!(r.error()["source"]["parameter"], "filter");
    }
    let r = c
        .get("/api/campaigns?filter=equals(messages.channel,'sms')")
        .await;
    assert_eq!(r.status, 200);
    let data = r.json()["data"].as_array().expect("array").clone();
    assert_eq!(data.len(), 3);
    assert!(data.iter().all(|d| d["type"] == "campaign"));
    let r = c
        .get("/api/campaigns?filter=and(equals(messages.channel,\"email\"),equals(status,'Draft'))")
        .await;
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(1));
    let r = c
        .get("/api/campaigns?filter=equals(messages.channel,'email')")
        .await;
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(4));
    assert_eq!(
        c.get("/api/campaigns?filter=equals(messages.channel,'fax')")
            .await
            .status,
        400
    );

    // More flows than one page holds (get_flows: at most 50): links.next leads to the rest.
    let r = c.get("/api/flows").await;
    let flows = r.json()["data"].as_array().expect("array").clone();
    assert_eq!(flows.len(), 50);
    let next = r.json()["links"]["next"]
        .as_str()
        .expect("next")
        .to_string();
    let rest = c.get(&target_of(&next)).await.json();
    assert_eq!(
        rest["data"].as_array().map(Vec::len),
        Some(crate::state::SEEDED_FLOWS - 50)
    );
    assert!(rest["links"].get("next").is_none());
    let id = flows[0]["id"].as_str().expect("id");
    assert_eq!(c.get(&format!("/api/flows/{id}/")).await.status, 200);
    assert_eq!(c.get("/api/flows/NOPE00").await.status, 404);
    // Deterministic seed: another account sees the same flows.
    let other = Client::new(&emu, "pk_catalog_2");
    assert_eq!(
        other.get("/api/flows").await.json()["data"],
        r.json()["data"]
    );
}

#[tokio::test]
async fn keys_are_isolated() {
    let emu = Emulator::start().await.expect("start");
    let a = Client::new(&emu, "pk_a");
    let b = Client::new(&emu, "pk_b");
    let id = a
        .create_profile(json!({"email": "shared@example.com"}))
        .await;
    assert_eq!(b.get(&format!("/api/profiles/{id}")).await.status, 404);
    assert_eq!(b.get("/api/profiles").await.json()["data"], json!([]));
    // The same email is free in the other account.
    b.create_profile(json!({"email": "shared@example.com"}))
        .await;
    assert_eq!(emu.request_count("pk_a"), 1);
    assert_eq!(emu.request_count("pk_b"), 3);
    let recorded = emu.requests("pk_a");
    assert_eq!(recorded[0].operation.as_deref(), Some("create_profile"));
    assert_eq!(recorded[0].status, 201);
    assert!(recorded[0].violations.is_empty());
    let auth = recorded[0]
        .headers
        .iter()
        .find(|(k, _)| k == "authorization");
    assert_eq!(auth.map(|(_, v)| v.as_str()), Some("<redacted>"));
    assert!(!format!("{recorded:?}").contains("pk_a"));
    emu.clear_requests("pk_a");
    assert_eq!(emu.request_count("pk_a"), 0);
    assert_eq!(
        a.get(&format!("/api/profiles/{id}")).await.status,
        200,
        "state stays"
    );
}

#[tokio::test]
async fn missing_or_malformed_auth_is_401() {
    let emu = Emulator::start().await.expect("start");
    let anonymous = Client {
        emu: &emu,
        key: None,
    };
    let r = anonymous.get("/api/profiles").await;
    assert_eq!(r.status, 401);
    let e = r.error();
    assert_eq!(e["code"], "not_authenticated");
    assert_eq!(e["title"], "Authentication credentials were not provided.");
    assert_eq!(e["detail"], "Missing or invalid private key.");
    assert_eq!(e["status"], 401);
    for bad in ["Bearer pk_x", "Klaviyo-API-Key ", "Klaviyo-API-Key"] {
        let r = anonymous
            .send_with("GET", "/api/profiles", None, &[("authorization", bad)])
            .await
            .expect("answer");
        assert_eq!(r.status, 401, "{bad}");
    }
    assert_eq!(emu.request_count(""), 4);
}

#[tokio::test]
async fn routing_revision_and_rate_limit_headers() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_routing");
    let r = c.get("/api/nothing-here").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.error()["code"], "not_found");
    let r = c.send("DELETE", "/api/profiles/", None).await;
    assert_eq!(r.status, 405);
    assert!(
        r.header("allow")
            .is_some_and(|a| a.contains("GET") && a.contains("POST"))
    );
    let r = c
        .send_with("GET", "/api/lists", None, &[("revision", "")])
        .await
        .expect("answer");
    assert_eq!(r.status, 400);
    assert_eq!(r.error()["source"]["parameter"], "revision");
    let r = c
        .send_with("GET", "/api/lists", None, &[("revision", "yesterday")])
        .await
        .expect("answer");
    assert_eq!(r.status, 400);
    let r = c
        .send_with(
            "GET",
            "/api/lists/",
            None,
            &[("revision", "2026-07-15.pre")],
        )
        .await
        .expect("answer");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("ratelimit-limit"), Some("750"));
    let first: u32 = r
        .header("ratelimit-remaining")
        .and_then(|v| v.parse().ok())
        .expect("remaining");
    let r = c.get("/api/lists").await;
    let second: u32 = r
        .header("ratelimit-remaining")
        .and_then(|v| v.parse().ok())
        .expect("remaining");
    assert!(second < first || r.header("ratelimit-reset") == Some("60"));
    assert!(
        r.header("ratelimit-reset")
            .and_then(|v| v.parse::<u32>().ok())
            .is_some_and(|s| (1..=60).contains(&s))
    );
    assert_eq!(
        c.get("/api/flows").await.header("ratelimit-limit"),
        Some("60")
    );
}

#[tokio::test]
async fn enforced_rate_limits_throttle() {
    let emu = Emulator::start_with(EmulatorOptions {
        enforce_rate_limits: true,
        ..EmulatorOptions::new()
    })
    .await
    .expect("start");
    let c = Client::new(&emu, "pk_limits");
    // get_flows allows 3 per second: a burst of 8 must hit the limit.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(c.get("/api/flows").await);
    }
    let throttled = statuses.iter().find(|r| r.status == 429).expect("a 429");
    assert_eq!(throttled.error()["code"], "throttled");
    assert!(throttled.header("retry-after").is_some());
    assert!(throttled.header("ratelimit-limit").is_none());
}

#[tokio::test]
async fn profile_count_has_its_own_lower_rate_limit() {
    let emu = Emulator::start_with(EmulatorOptions {
        enforce_rate_limits: true,
        ..EmulatorOptions::new()
    })
    .await
    .expect("start");
    let c = Client::new(&emu, "pk_count_limits");
    let list = c.create_list("Counted").await;
    // get_list's description: with additional-fields[list]=profile_count, 1/s and 15/m.
    let counted = format!("/api/lists/{list}?additional-fields[list]=profile_count");
    let first = c.get(&counted).await;
    let second = c.get(&counted).await;
    if first.status == 200 && second.status == 200 {
        // The two fell into different seconds; a third cannot.
        assert_eq!(c.get(&counted).await.status, 429);
    } else {
        assert_eq!((first.status, second.status), (200, 429));
    }
    assert_eq!(first.header("ratelimit-limit"), Some("15"));
    // Without the count, get_list keeps its 75/s.
    for _ in 0..5 {
        assert_eq!(c.get(&format!("/api/lists/{list}")).await.status, 200);
    }
}

#[tokio::test]
async fn metrics_are_listed_and_filtered_by_integration() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_metrics");
    let names = |doc: &Value| -> Vec<String> {
        doc["data"]
            .as_array()
            .expect("data")
            .iter()
            .map(|m| m["attributes"]["name"].as_str().expect("name").to_string())
            .collect()
    };
    // Every account has Klaviyo's own metrics.
    let seeded = c.get("/api/metrics").await.json();
    assert_eq!(
        names(&seeded),
        [
            "Received Email",
            "Opened Email",
            "Clicked Email",
            "Subscribed to List"
        ]
    );
    assert_eq!(
        seeded["data"][0]["attributes"]["integration"]["name"],
        "Klaviyo"
    );
    assert_eq!(
        seeded["data"][0]["attributes"]["integration"]["category"],
        "Internal"
    );
    let id = c
        .create_profile(json!({"email": "metrics@example.com"}))
        .await;
    c.create_event("Placed Order", &id, "2024-05-01T00:00:00Z", None)
        .await;
    c.create_event("Placed Order", &id, "2024-05-02T00:00:00Z", None)
        .await;
    let all = c.get("/api/metrics").await.json();
    assert_eq!(names(&all).len(), 5, "one metric per name");
    let api = c
        .get("/api/metrics?filter=equals(integration.name,'API')")
        .await
        .json();
    assert_eq!(names(&api), ["Placed Order"]);
    assert_eq!(
        api["data"][0]["attributes"]["integration"]["category"],
        "API"
    );
    let internal = c
        .get("/api/metrics?filter=equals(integration.category,\"Internal\")")
        .await
        .json();
    assert_eq!(names(&internal).len(), 4);
    let both = c
        .get("/api/metrics?filter=and(equals(integration.name,'API'),equals(integration.category,'API'))")
        .await
        .json();
    assert_eq!(names(&both), ["Placed Order"]);
    // Only the spec's filter fields, and no page[size] (get_metrics has none).
    let r = c
        .get("/api/metrics?filter=equals(name,'Placed Order')")
        .await;
    assert_eq!(
        (r.status, r.error()["source"]["parameter"].clone()),
        (400, json!("filter"))
    );
    let r = c.get("/api/metrics?page[size]=10").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error()["source"]["parameter"], "page[size]");
}

#[tokio::test]
async fn spec_violations_are_recorded() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_spec");
    let r = c.get("/api/profiles?page[size]=5&colour=blue").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error()["source"]["parameter"], "colour");
    assert!(
        r.error()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("colour"))
    );
    let r = c
        .post(
            "/api/profiles",
            &json!({"data": {"attributes": {"email": "a@example.com"}}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error()["source"]["pointer"], "/data/type");
    let r = c.get("/api/profiles?fields[profile]=email,shoe_size").await;
    assert_eq!(r.status, 400);
    let r = c
        .send_with(
            "POST",
            "/api/lists",
            Some(&json!({"data": {"type": "list", "attributes": {"name": "L"}}})),
            &[("content-type", "text/plain")],
        )
        .await
        .expect("answer");
    assert_eq!(r.status, 400);
    let r = c
        .send_with(
            "POST",
            "/api/lists",
            Some(&json!({"data": {"type": "list", "attributes": {"name": "L"}}})),
            &[("content-type", "application/json")],
        )
        .await
        .expect("answer");
    assert_eq!(r.status, 201, "application/json is accepted too (notes §1)");

    let recorded = emu.requests("pk_spec");
    assert_eq!(recorded.len(), 5);
    assert!(recorded[0].violations.iter().any(|v| v.contains("colour")));
    assert!(
        recorded[1]
            .violations
            .iter()
            .any(|v| v.contains("/data/type")),
        "{:?}",
        recorded[1].violations
    );
    assert_eq!(
        recorded[1]
            .body
            .as_ref()
            .map(|b| b["data"]["attributes"]["email"].clone()),
        Some(json!("a@example.com"))
    );
    assert!(!recorded[2].violations.is_empty());
    assert!(!recorded[3].violations.is_empty());
    assert!(recorded[4].violations.is_empty());
    assert_eq!(
        recorded[0].query[1],
        ("colour".to_string(), "blue".to_string())
    );

    // With validation off the schema checks are skipped but semantics still hold.
    let lax = Emulator::start_with(EmulatorOptions {
        validate_requests: false,
        ..EmulatorOptions::default()
    })
    .await
    .expect("start");
    let c = Client::new(&lax, "pk_spec");
    assert_eq!(c.get("/api/profiles?colour=blue").await.status, 200);
    assert!(lax.requests("pk_spec")[0].violations.is_empty());
    let r = c
        .post(
            "/api/profiles",
            &json!({"data": {"attributes": {"email": "a@example.com"}}}),
        )
        .await;
    assert_eq!(r.status, 400, "type is still required semantically");
    let r = c.send("POST", "/api/lists", None).await;
    assert_eq!(r.status, 400);
    let r = c
        .send_with(
            "POST",
            "/api/lists",
            None,
            &[("content-type", "application/vnd.api+json")],
        )
        .await
        .expect("answer");
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn malformed_json_body_is_400() {
    let emu = Emulator::start().await.expect("start");
    let req = format!(
        "POST /api/profiles HTTP/1.1\r\nhost: {}\r\nconnection: close\r\nrevision: 2026-07-15\r\n\
         authorization: Klaviyo-API-Key pk_json\r\ncontent-type: application/vnd.api+json\r\n\
         content-length: 9\r\n\r\n{{\"data\": ",
        emu.addr()
    );
    let r = super::raw(&emu, req.as_bytes()).await.expect("answer");
    assert_eq!(r.status, 400);
    assert!(r.json()["errors"].as_array().is_some_and(|e| !e.is_empty()));
}

/// A standalone emulator's client reads back what it sent under its key; each record says
/// whether it was validated against the slice, and only the latest are kept.
#[tokio::test]
async fn requests_can_be_inspected_and_are_bounded() {
    let emu = Emulator::start_with(EmulatorOptions {
        max_recorded_per_key: 3,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    let c = Client::new(&emu, "pk_inspect");
    for _ in 0..5 {
        assert_eq!(c.get("/api/lists/").await.status, 200);
    }
    assert_eq!(c.get("/api/lists/?page[size]=11").await.status, 400);
    let seen = c.get("/_emulator/requests").await;
    assert_eq!(seen.status, 200);
    let seen = seen.json();
    assert_eq!(seen["count"], 6, "the count covers every request");
    let requests = seen["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 3, "only the latest are kept");
    assert_eq!(requests[2]["validated"], true);
    assert!(!requests[2]["violations"].as_array().unwrap().is_empty());
    assert_eq!(requests[1]["violations"], serde_json::json!([]));
    assert_eq!(emu.request_count("pk_inspect"), 6);
    let anonymous = Client {
        emu: &emu,
        key: None,
    };
    assert_eq!(anonymous.get("/_emulator/requests").await.status, 401);
    // Validation off: nothing is marked validated.
    let lax = Emulator::start_with(EmulatorOptions {
        validate_requests: false,
        ..EmulatorOptions::default()
    })
    .await
    .unwrap();
    Client::new(&lax, "pk_lax").get("/api/lists/").await;
    assert!(!lax.requests("pk_lax")[0].validated);
}
