//! Every kind of injected fault, consumed FIFO per key.

use std::time::{Duration, Instant};

use serde_json::json;

use super::super::{Emulator, Fault};
use super::{Client, raw};

#[tokio::test]
async fn status_fault_gives_the_real_throttled_body() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_faults");
    emu.inject_fault(
        "pk_faults",
        Fault::Status {
            status: 429,
            code: "throttled".into(),
            retry_after: Some(1),
        },
    );
    emu.inject_fault(
        "pk_faults",
        Fault::Status {
            status: 503,
            code: "service_unavailable".into(),
            retry_after: None,
        },
    );
    // Another key is unaffected.
    assert_eq!(
        Client::new(&emu, "pk_other").get("/api/lists").await.status,
        200
    );

    let r = c.get("/api/lists").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.header("ratelimit-limit").is_none(),
        "429 replaces RateLimit-* by Retry-After"
    );
    assert_eq!(r.header("content-type"), Some("application/vnd.api+json"));
    let e = r.error();
    assert_eq!(e["status"], 429);
    assert_eq!(e["code"], "throttled");
    assert_eq!(e["title"], "Request was throttled.");
    assert_eq!(
        e["detail"],
        "Request was throttled. Expected available in 1 second."
    );
    assert_eq!(e["source"], json!({"pointer": "/data"}));
    assert_eq!(
        e["links"]["type"],
        "https://developers.klaviyo.com/en/docs/rate_limits_and_error_handling#rate-limits"
    );
    assert_eq!(e["meta"], json!({}));
    assert!(e["id"].as_str().is_some());

    let r = c.get("/api/lists").await;
    assert_eq!(r.status, 503);
    assert_eq!(r.error()["code"], "service_unavailable");
    assert!(r.header("retry-after").is_none());
    assert!(r.header("ratelimit-limit").is_some());

    assert_eq!(c.get("/api/lists").await.status, 200, "faults are consumed");
    let recorded = emu.requests("pk_faults");
    assert_eq!(recorded[0].fault.as_deref(), Some("status 429 throttled"));
    assert_eq!(recorded[0].operation.as_deref(), Some("get_lists"));
    assert_eq!(recorded[2].fault, None);
}

#[tokio::test]
async fn html_fault_is_a_gateway_page() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_html");
    emu.inject_fault("pk_html", Fault::Html { status: 502 });
    let r = c.get("/api/profiles").await;
    assert_eq!(r.status, 502);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
    let body = String::from_utf8_lossy(&r.body);
    assert!(body.contains("502 Bad Gateway") && body.contains("cloudflare"));
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
}

#[tokio::test]
async fn delay_fault_then_normal_answer() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_delay");
    emu.inject_fault("pk_delay", Fault::Delay(Duration::from_millis(300)));
    let started = Instant::now();
    let r = c.get("/api/flows").await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"].as_array().map(Vec::len), Some(50));
    assert_eq!(
        emu.requests("pk_delay")[0].fault.as_deref(),
        Some("delay 300ms")
    );

    // Records keep arrival order: a delayed request stays ahead of one answered before it.
    emu.inject_fault("pk_delay", Fault::Delay(Duration::from_millis(200)));
    let slow = c.get("/api/flows?page[size]=1");
    let fast = async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let r = c.get("/api/lists").await;
        let in_flight = emu.requests("pk_delay");
        assert_eq!(
            in_flight[1].status, 0,
            "the delayed request is recorded, unanswered"
        );
        r
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!((slow.status, fast.status), (200, 200));
    let recorded = emu.requests("pk_delay");
    let ops: Vec<_> = recorded.iter().map(|r| r.operation.as_deref()).collect();
    assert_eq!(
        ops,
        [Some("get_flows"), Some("get_flows"), Some("get_lists")]
    );
    assert_eq!(recorded[1].status, 200);
}

#[tokio::test]
async fn drop_fault_closes_without_a_response() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_drop");
    emu.inject_fault("pk_drop", Fault::DropConnection);
    let request = format!(
        "GET /api/lists HTTP/1.1\r\nhost: {}\r\nrevision: 2026-07-15\r\n\
         authorization: Klaviyo-API-Key pk_drop\r\n\r\n",
        emu.addr()
    );
    // No `connection: close`: the server itself must close the connection, with no bytes.
    let answer = tokio::time::timeout(Duration::from_secs(1), raw(&emu, request.as_bytes()))
        .await
        .expect("the connection is closed, not left hanging");
    assert!(answer.is_none(), "a dropped connection sends no response");
    assert_eq!(c.get("/api/lists").await.status, 200);
    let recorded = emu.requests("pk_drop");
    assert_eq!(recorded[0].fault.as_deref(), Some("drop connection"));
    assert_eq!(recorded[0].status, 0);
}

#[tokio::test]
async fn malformed_json_fault() {
    let emu = Emulator::start().await.expect("start");
    let c = Client::new(&emu, "pk_malformed");
    emu.inject_fault("pk_malformed", Fault::MalformedJson);
    let r = c.get("/api/profiles").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/vnd.api+json"));
    assert!(!r.body.is_empty());
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());
}
