//! The component runs unmodified in a host not written here: transpiled by jco and run by Node on
//! `@bytecodealliance/preview2-shim` (pinned in tests/portability/package-lock.json), against
//! `kosmo emulator`, with its credentials from the environment only. Every function is called;
//! the emulator must have validated every request against the OpenAPI slices, found no
//! violation, and seen `Content-Length` on every body and our `User-Agent` on every request.
//!
//! Needs Node and `npm ci --prefix tests/portability` (`.ci/run` does it): without them this
//! test fails, it does not skip.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `kosmo emulator` on a free port; killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start() -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kosmo"))
            .args(["emulator", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kosmo emulator starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("the emulator prints its URL");
        let url = line.trim().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url:?}");
        Server { child, url }
    }

    /// What the emulator recorded for `key` (`GET /_emulator/requests`).
    fn requests(&self, key: &str) -> Value {
        let addr = self.url.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET /_emulator/requests HTTP/1.1\r\nhost: {addr}\r\nauthorization: Klaviyo-API-Key {key}\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let body = response.split_once("\r\n\r\n").expect("a response").1;
        serde_json::from_str(body).expect("JSON")
    }

    /// SIGTERM, as a supervisor would stop it; it must exit 0 promptly.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "kosmo emulator exited with {status}");
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "emulator did not stop"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

#[test]
fn the_component_runs_under_jco_and_node_with_environment_credentials() {
    let dir = repo().join("tests/portability");
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "Node is required: install Node 20+ (this test runs the component under jco)"
    );
    assert!(
        dir.join("node_modules/@bytecodealliance/preview2-shim")
            .is_dir(),
        "the pinned jco packages are missing: run `npm ci --prefix tests/portability`"
    );

    let wasm = std::env::temp_dir().join(format!("kosmo-portability-{}.wasm", std::process::id()));
    std::fs::write(&wasm, kosmo_runtime::COMPONENT).unwrap();
    let server = Server::start();
    let key = format!("pk_portability_{}", std::process::id());

    let mut node = Command::new("node")
        .arg(dir.join("run.mjs"))
        .arg(&wasm)
        .env("KLAVIYO_API_KEY", &key)
        .env("KLAVIYO_BASE_URL", &server.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs");
    let started = Instant::now();
    while node.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(120), "node hung");
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = node.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&wasm);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| {
            panic!(
                "run.mjs printed no report ({e}): {stdout}\n{}",
                String::from_utf8_lossy(&output.stderr)
            )
        });
    assert!(output.status.success(), "{report}");
    assert_eq!(report["failures"], serde_json::json!([]), "{report}");
    let catalog = kosmo_runtime::catalog().functions().len();
    assert_eq!(
        report["exported"].as_array().unwrap().len(),
        catalog,
        "{report}"
    );
    assert_eq!(
        report["functions"], report["exported"],
        "every function was called"
    );
    assert_eq!(report["errors"][0]["kind"], "not-found");

    let seen = server.requests(&key);
    let requests = seen["requests"].as_array().unwrap();
    assert!(requests.len() >= catalog, "{seen}");
    for r in requests {
        let header = |name: &str| {
            r["headers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h[0] == name)
                .map(|h| h[1].as_str().unwrap_or("").to_string())
        };
        let what = format!("{} {}", r["method"], r["path"]);
        assert_eq!(r["validated"], true, "{what} was not validated");
        assert_eq!(r["violations"], serde_json::json!([]), "{what}");
        assert!(
            header("authorization").is_some(),
            "{what} had no credentials"
        );
        assert!(
            header("user-agent").is_some_and(|ua| ua.starts_with("kosmo-klaviyo/")),
            "{what}"
        );
        if !r["body"].is_null() {
            assert!(
                header("content-length").is_some(),
                "{what} body without Content-Length"
            );
        }
    }
    server.stop();
}
