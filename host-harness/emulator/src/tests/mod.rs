//! End-to-end tests: a raw HTTP/1.1 client over real TCP against a running emulator.

mod behaviour;
mod faults;
mod shapes;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Emulator;

/// A parsed HTTP response.
pub(super) struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `errors[0]` of an error document.
    pub fn error(&self) -> Value {
        self.json()["errors"][0].clone()
    }
}

/// Send raw request bytes and read until the server closes; `None` if it answered nothing.
pub(super) async fn raw(emu: &Emulator, request: &[u8]) -> Option<Resp> {
    let mut stream = TcpStream::connect(emu.addr()).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut buf = Vec::new();
    // A reset connection counts as "no answer" too.
    let _ = stream.read_to_end(&mut buf).await;
    if buf.is_empty() {
        return None;
    }
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("header end");
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Some(Resp {
        status,
        headers,
        body: buf[split + 4..].to_vec(),
    })
}

/// A client for one API key.
pub(super) struct Client<'a> {
    pub emu: &'a Emulator,
    pub key: Option<String>,
}

impl<'a> Client<'a> {
    pub fn new(emu: &'a Emulator, key: &str) -> Self {
        Client {
            emu,
            key: Some(key.to_string()),
        }
    }

    /// Send with the standard headers (revision, accept, auth) plus `extra`.
    pub async fn send_with(
        &self,
        method: &str,
        target: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> Option<Resp> {
        // Characters a real client must percent-encode in a request target.
        let target = target.replace('"', "%22").replace(' ', "%20");
        let mut req = format!(
            "{method} {target} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\naccept: application/vnd.api+json\r\n",
            self.emu.addr()
        );
        if !extra.iter().any(|(k, _)| *k == "revision") {
            req.push_str(&format!("revision: {}\r\n", klaviyo_spec::REVISION));
        }
        if let Some(key) = &self.key {
            req.push_str(&format!("authorization: Klaviyo-API-Key {key}\r\n"));
        }
        for (k, v) in extra {
            if !v.is_empty() {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
        }
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        if body.is_some() {
            if !extra.iter().any(|(k, _)| *k == "content-type") {
                req.push_str("content-type: application/vnd.api+json\r\n");
            }
            req.push_str(&format!("content-length: {}\r\n", payload.len()));
        }
        req.push_str("\r\n");
        req.push_str(&payload);
        raw(self.emu, req.as_bytes()).await
    }

    pub async fn send(&self, method: &str, target: &str, body: Option<&Value>) -> Resp {
        self.send_with(method, target, body, &[])
            .await
            .expect("an answer")
    }

    pub async fn get(&self, target: &str) -> Resp {
        self.send("GET", target, None).await
    }

    pub async fn post(&self, target: &str, body: &Value) -> Resp {
        self.send("POST", target, Some(body)).await
    }

    pub async fn patch(&self, target: &str, body: &Value) -> Resp {
        self.send("PATCH", target, Some(body)).await
    }

    /// Create a profile and return its id.
    pub async fn create_profile(&self, attributes: Value) -> String {
        let r = self
            .post(
                "/api/profiles",
                &serde_json::json!({"data": {"type": "profile", "attributes": attributes}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()["data"]["id"].as_str().expect("id").to_string()
    }

    /// Create a list and return its id.
    pub async fn create_list(&self, name: &str) -> String {
        let r = self
            .post(
                "/api/lists",
                &serde_json::json!({"data": {"type": "list", "attributes": {"name": name}}}),
            )
            .await;
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
        r.json()["data"]["id"].as_str().expect("id").to_string()
    }

    /// Create an event (202) for a profile given by id.
    pub async fn create_event(
        &self,
        metric: &str,
        profile_id: &str,
        time: &str,
        value: Option<f64>,
    ) {
        let mut attributes = serde_json::json!({
            "properties": {"sku": "A-1"},
            "time": time,
            "metric": {"data": {"type": "metric", "attributes": {"name": metric}}},
            "profile": {"data": {"type": "profile", "id": profile_id, "attributes": {}}},
        });
        if let Some(v) = value {
            attributes["value"] = serde_json::json!(v);
        }
        let r = self
            .post(
                "/api/events",
                &serde_json::json!({"data": {"type": "event", "attributes": attributes}}),
            )
            .await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        assert!(r.body.is_empty());
    }
}

/// The path and query of a full link URL (`http://host/api/...?...` → `/api/...?...`).
pub(super) fn target_of(link: &str) -> String {
    let rest = link.strip_prefix("http://").expect("http link");
    rest[rest.find('/').expect("path")..].to_string()
}
