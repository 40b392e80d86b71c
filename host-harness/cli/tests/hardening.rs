//! Regression tests of the security review's findings, each reproduced against the built
//! `kosmo` binary: per-call growth and the envelope's size (1d/4), the compiled-component
//! cache (3), script size (5), a shared `$KOSMO_HOME` (7), redaction (8), one rule for keys
//! and URLs (9) and the accounts file (10). Where memory is the point, the child's peak RSS
//! is read from `wait4`'s `ru_maxrss`, and a child growing past a bound is killed rather than
//! allowed to take the machine (as it did before the fixes).
//!
//! Linux only: peak memory comes from `wait4` and `/proc`, modes from Unix permissions.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What a run of `kosmo` gave, with its peak memory and wall time.
#[derive(Debug)]
struct Measured {
    code: i32,
    stdout: String,
    stderr: String,
    /// Peak resident memory (`ru_maxrss`), in KiB.
    peak_kib: u64,
    elapsed: Duration,
    /// Killed for passing `Bounds` (the run is then a failure of the test).
    killed: Option<String>,
}

impl Measured {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}): {:.2000}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }

    fn shows(&self, text: &str) -> bool {
        self.stdout.contains(text) || self.stderr.contains(text)
    }

    fn assert_ok(&self) -> &Self {
        assert!(self.killed.is_none(), "{:?}", self.killed);
        assert_eq!(
            self.code, 0,
            "stdout: {:.2000}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    fn assert_usage(&self, mentions: &str) -> &Self {
        assert!(self.killed.is_none(), "{:?}", self.killed);
        assert_eq!(
            self.code, 2,
            "stdout: {:.2000}\nstderr: {}",
            self.stdout, self.stderr
        );
        assert!(
            self.shows(mentions),
            "expected `{mentions}` in:\n{:.2000}\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// When a child is killed: past this resident memory or this wall time.
#[derive(Clone, Copy)]
struct Bounds {
    max_rss_kib: u64,
    timeout: Duration,
}

const MIB: u64 = 1024;

const GENEROUS: Bounds = Bounds {
    max_rss_kib: 1024 * MIB,
    timeout: Duration::from_secs(180),
};

/// `struct rusage` of 64-bit Linux: two `timeval`s, then 14 `long`s (`ru_maxrss` first, KiB).
#[repr(C)]
#[derive(Default)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    maxrss: i64,
    rest: [i64; 13],
}

unsafe extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, usage: *mut Rusage) -> i32;
    safe fn geteuid() -> u32;
}

const WNOHANG: i32 = 1;

/// No controlling terminal: kosmo asks on `/dev/tty` whenever there is one, and a question
/// would wait for whoever runs the tests.
fn without_terminal(cmd: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    }
}

/// A `kosmo` command with a private `$KOSMO_HOME` and no inherited Klaviyo settings.
fn kosmo(home: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kosmo"));
    without_terminal(&mut cmd)
        .env("KOSMO_HOME", home)
        .env("HOME", home)
        .env_remove("KLAVIYO_API_KEY")
        .env_remove("KLAVIYO_BASE_URL")
        .env_remove("KOSMO_ALLOW_INSECURE_HTTP");
    cmd
}

fn lua(home: &Path, code: &str) -> Command {
    let mut cmd = kosmo(home);
    cmd.args(["integrations:lua", "--eval", code]);
    cmd
}

fn configure(home: &Path, account: &str, sets: &[&str]) -> Command {
    let mut cmd = kosmo(home);
    cmd.args(["integrations:configure", "klaviyo", "--account", account]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    cmd
}

fn run(cmd: Command) -> Measured {
    measure(cmd, Stdio::null(), GENEROUS)
}

/// Run `cmd` to its end (or kill it past `bounds`) and measure it.
// The child is reaped by `wait4` (for its rusage), not by `Child::wait`.
#[allow(clippy::zombie_processes)]
fn measure(mut cmd: Command, stdin: Stdio, bounds: Bounds) -> Measured {
    let started = Instant::now();
    let mut child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kosmo runs");
    let pid = child.id() as i32;
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let mut killed = None;
    let mut usage = Rusage::default();
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our unwaited child; the pointers are to live locals.
        let done = unsafe { wait4(pid, &mut status, WNOHANG, &mut usage) };
        if done == pid {
            break;
        }
        assert!(done == 0, "wait4 failed");
        let rss = current_rss_kib(pid);
        if killed.is_none() && (rss > bounds.max_rss_kib || started.elapsed() > bounds.timeout) {
            killed = Some(format!(
                "killed after {:?} at {} MiB resident",
                started.elapsed(),
                rss / MIB
            ));
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let code = if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        -1
    };
    Measured {
        code,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
        peak_kib: usage.maxrss as u64,
        elapsed: started.elapsed(),
        killed,
    }
}

/// `VmRSS` of a running process, in KiB (0 once it is gone).
fn current_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn artifacts(cache: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(cache) {
        Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// A key nobody else uses.
fn new_key(label: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "pk_{label}_{:016x}",
        RandomState::new().hash_one(Instant::now())
    )
}

/// A Lua call that fails with `not_found` in the sandbox, after loading the component.
const ONE_CALL: &str =
    "local ok, e = pcall(app.integrations.klaviyo.get_profile, {profile_id = 'x'}) return e.code";

// ------------------------------------------------------------------------------------------
// 1d/4: call records and the envelope are bounded
// ------------------------------------------------------------------------------------------

#[test]
fn failing_calls_keep_memory_and_the_envelope_bounded() {
    let home = tempdir();
    let script = |n: u32| {
        format!("for i = 1, {n} do pcall(app.integrations.klaviyo.get_profile, {{}}) end return 1")
    };
    let sandbox = |n: u32| {
        let mut cmd = lua(home.path(), &script(n));
        cmd.args(["--sandbox", "--json", "--cpu-limit", "600"]);
        cmd
    };
    // Compile once first: neither measured run includes Cranelift.
    run(sandbox(1)).assert_ok();
    let base = run(sandbox(1));
    base.assert_ok();
    // Before the fix each call kept ~4 KB (its record, then its JSON): 300,000 calls reached
    // about 1.2 GB and printed 62 MB; the bound below is 32 MiB over one call's peak.
    let n = 300_000;
    let bound = base.peak_kib + 32 * MIB;
    let big = measure(
        sandbox(n),
        Stdio::null(),
        Bounds {
            max_rss_kib: bound + 64 * MIB,
            timeout: Duration::from_secs(120),
        },
    );
    big.assert_ok();
    assert!(
        big.peak_kib <= bound,
        "peak {} KiB for {n} calls, one call {} KiB",
        big.peak_kib,
        base.peak_kib
    );
    let env = big.json();
    assert_eq!(env["integration_calls"].as_array().unwrap().len(), 1000);
    assert_eq!(
        env["meta"]["integration_calls_dropped"],
        json!(n - 1000),
        "{}",
        env["meta"]
    );
    assert_eq!(base.json()["meta"]["integration_calls_dropped"], 0);
    assert!(big.stdout.len() < 1 << 20, "{} bytes", big.stdout.len());
}

#[test]
fn huge_results_are_cut_structurally() {
    let home = tempdir();
    // About 14 MB of JSON (under the Lua side's own 16 MiB cap on results).
    let code = "local t = {} for i = 1, 3000 do t[i] = i .. string.rep('y', 3000) end \
                return string.rep('x', 5000000), t, 'small'";
    let mut cmd = lua(home.path(), code);
    cmd.args(["--json", "--memory-limit", "512M"]);
    let m = run(cmd);
    m.assert_ok();
    // The cap is 8 MiB of JSON (a newline ends it).
    assert!(m.stdout.len() <= (8 << 20) + 1, "{} bytes", m.stdout.len());
    let env = m.json();
    assert_eq!(env["success"], true);
    assert_eq!(env["meta"]["truncated"], true);
    let result = env["result"].as_array().unwrap();
    let text = result[0].as_str().unwrap();
    assert!(text.starts_with("xxxx") && text.ends_with("bytes omitted]"));
    // Each value got its share: the table kept its first items and says how many more there
    // were, and the small value after it is whole.
    let items = result[1].as_array().unwrap();
    assert_eq!(items[0], json!(format!("1{}", "y".repeat(3000))));
    let marker = items.last().unwrap().as_str().unwrap();
    assert!(marker.contains("more items"), "{marker}");
    assert_eq!(result[2], "small");

    // The text form is held to the same size.
    let mut cmd = lua(home.path(), code);
    cmd.args(["--memory-limit", "512M"]);
    let m = run(cmd);
    m.assert_ok();
    assert!(
        m.stdout.len() <= (8 << 20) + 200,
        "{} bytes",
        m.stdout.len()
    );
}

// ------------------------------------------------------------------------------------------
// 3: the compiled-component cache
// ------------------------------------------------------------------------------------------

fn sandbox_call(home: &Path) -> Measured {
    let mut cmd = lua(home, ONE_CALL);
    cmd.args(["--sandbox", "--json"]);
    let m = run(cmd);
    m.assert_ok();
    assert_eq!(m.json()["result"][0], "not_found", "{}", m.stdout);
    m
}

#[test]
fn cache_files_are_private_and_tampered_artifacts_recompiled() {
    let home = tempdir();
    sandbox_call(home.path());
    let cache = home.path().join("cache");
    let files = artifacts(&cache);
    assert_eq!(files.len(), 1, "{files:?}");
    let artifact = &files[0];
    assert_eq!(mode(&cache), 0o700);
    assert_eq!(mode(artifact), 0o600);

    // Flip bytes in the middle: compiled code that must never be run.
    let mut bytes = std::fs::read(artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle..middle + 64]
        .iter_mut()
        .for_each(|b| *b ^= 0xff);
    std::fs::write(artifact, &bytes).unwrap();
    let m = sandbox_call(home.path());
    assert!(m.stderr.contains("damaged"), "{}", m.stderr);

    // Recompiled and stored again, intact and private.
    let m = sandbox_call(home.path());
    assert!(!m.stderr.contains("warning"), "{}", m.stderr);
    assert_eq!(artifacts(&cache), files);
    assert_eq!(mode(artifact), 0o600);
}

#[test]
fn untrusted_cache_directories_are_bypassed() {
    let home = tempdir();
    let cache = home.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    set_mode(&cache, 0o777);
    let m = sandbox_call(home.path());
    assert!(
        m.stderr.contains("not using the compiled-component cache"),
        "{}",
        m.stderr
    );
    assert!(artifacts(&cache).is_empty(), "nothing written there");
    assert_eq!(mode(&cache), 0o777, "and its mode left alone");

    // Owned by another user (only root can arrange that here).
    if geteuid() == 0 {
        set_mode(&cache, 0o700);
        std::os::unix::fs::chown(&cache, Some(65534), Some(65534)).unwrap();
        let m = sandbox_call(home.path());
        assert!(m.stderr.contains("owned by uid 65534"), "{}", m.stderr);
        assert!(artifacts(&cache).is_empty());
    }

    // A world-writable $KOSMO_HOME: its cache is not even created.
    let shared = tempdir();
    set_mode(shared.path(), 0o1777);
    let m = sandbox_call(shared.path());
    assert!(m.stderr.contains("writable by other users"), "{}", m.stderr);
    assert!(!shared.path().join("cache").exists());
    assert_eq!(mode(shared.path()), 0o1777);
}

// ------------------------------------------------------------------------------------------
// 5: script size
// ------------------------------------------------------------------------------------------

#[test]
fn huge_scripts_are_refused_without_reading_them_whole() {
    let home = tempdir();
    let zero = || Stdio::from(std::fs::File::open("/dev/zero").unwrap());
    // Before the fix these reached 8.7 GB (file) and 3.4 GB in 5 s (stdin).
    let bounds = Bounds {
        max_rss_kib: 256 * MIB,
        timeout: Duration::from_secs(60),
    };
    let cases: [(&[&str], bool); 4] = [
        (&["integrations:lua", "/dev/zero"], false),
        (&["integrations:lua", "--json"], true),
        (&["integrations:lua", "-", "--json"], true),
        (&["integrations:lua", "--repl", "--json"], true),
    ];
    for (args, json_mode) in cases {
        let mut cmd = kosmo(home.path());
        cmd.args(args);
        let m = measure(cmd, zero(), bounds);
        m.assert_usage("16 MiB");
        assert!(m.peak_kib < 128 * MIB, "{args:?}: {} KiB", m.peak_kib);
        if json_mode {
            assert_eq!(m.json()["error"]["code"], "usage", "{args:?}");
        }
    }
    // A regular file one byte over the cap.
    let file = home.path().join("big.lua");
    std::fs::write(&file, vec![b' '; (16 << 20) + 1]).unwrap();
    let mut cmd = kosmo(home.path());
    cmd.arg("integrations:lua").arg(&file);
    run(cmd).assert_usage("16 MiB");
}

// ------------------------------------------------------------------------------------------
// 7: a shared $KOSMO_HOME
// ------------------------------------------------------------------------------------------

#[test]
fn configure_never_changes_a_shared_home() {
    let root = tempdir();
    let shared = root.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    set_mode(&shared, 0o1777);
    let link = root.path().join("link");
    std::os::unix::fs::symlink(&shared, &link).unwrap();
    let key = new_key("shared");
    let set_key = format!("api_key={key}");
    for home in [&link, &shared] {
        let m = run(configure(home, "shop", &[&set_key]));
        assert_eq!(m.code, 1, "{m:?}");
        assert!(
            m.stderr.contains("refusing to store API keys"),
            "{}",
            m.stderr
        );
        assert!(!m.shows(&key));
        assert_eq!(mode(&shared), 0o1777, "the sticky bit and mode are kept");
        assert!(!shared.join("accounts.json").exists());
    }

    // Loading is consistent with saving: keys in a shared directory are not read.
    std::fs::write(
        shared.join("accounts.json"),
        format!(r#"{{"klaviyo": {{"shop": {{"api_key": "{key}"}}}}}}"#),
    )
    .unwrap();
    run(lua(&link, "return 1")).assert_usage("refusing to read API keys");

    // A KOSMO_HOME that does not exist is created private.
    let fresh = root.path().join("new").join("kosmo");
    run(configure(&fresh, "shop", &[&set_key])).assert_ok();
    assert_eq!(mode(&fresh), 0o700);
    assert_eq!(mode(&fresh.join("accounts.json")), 0o600);

    // A private home that others may read (0755) is used as it is, and stays 0755.
    let readable = root.path().join("readable");
    std::fs::create_dir(&readable).unwrap();
    set_mode(&readable, 0o755);
    run(configure(&readable, "shop", &[&set_key])).assert_ok();
    assert_eq!(mode(&readable), 0o755);
    assert_eq!(mode(&readable.join("accounts.json")), 0o600);
}

// ------------------------------------------------------------------------------------------
// 8: redaction
// ------------------------------------------------------------------------------------------

/// A run with `key` as the default account (its calls would go nowhere).
fn with_key(home: &Path, key: &str, code: &str, json_mode: bool) -> Measured {
    let mut cmd = lua(home, code);
    cmd.env("KLAVIYO_API_KEY", key)
        .env("KLAVIYO_BASE_URL", "http://127.0.0.1:9");
    if json_mode {
        cmd.arg("--json");
    }
    run(cmd)
}

#[test]
fn a_key_cut_by_the_output_cap_leaves_nothing() {
    let home = tempdir();
    let key = new_key("cutkey");
    // 12 characters of the key fit under the 1 MiB output cap (20 did before the fix).
    let code = format!("print(string.rep('a', 1048576 - 12) .. '{key}')");
    for json_mode in [true, false] {
        let m = with_key(home.path(), &key, &code, json_mode);
        assert_eq!(m.code, 1, "{}", m.stderr);
        assert!(!m.shows(&key[..10]), "part of the key leaked");
        if json_mode {
            let env = m.json();
            assert_eq!(env["error"]["code"], "output_limit");
            assert!(env["output"].as_str().unwrap().ends_with("a<redacted>"));
        }
    }
}

#[test]
fn keys_that_look_like_json_keep_the_envelope_valid() {
    let home = tempdir();
    // Text replacement over the finished JSON turned `[1234567890]` into `[<redacted>]`.
    let m = with_key(
        home.path(),
        "1234567890",
        r#"return 1234567890, "x1234567890y", {["1234567890"] = true}"#,
        true,
    );
    m.assert_ok();
    assert_eq!(
        m.json()["result"],
        json!(["<redacted>", "x<redacted>y", {"<redacted>": true}])
    );
    // A key spelled like an envelope field leaves the field alone.
    let m = with_key(
        home.path(),
        "integration_calls",
        r#"print("integration_calls") return 1"#,
        true,
    );
    m.assert_ok();
    let env = m.json();
    assert!(env["integration_calls"].is_array(), "{env}");
    assert_eq!(env["output"], "<redacted>\n");
    // Keys too short to redact safely (`null`, `abc`) are refused, not left unredacted.
    for short in ["null", "abc"] {
        with_key(home.path(), short, "return 1", true).assert_usage("KLAVIYO_API_KEY");
        run(configure(
            home.path(),
            "shop",
            &[&format!("api_key={short}")],
        ))
        .assert_usage("api_key");
    }
}

#[test]
fn url_passwords_are_never_echoed() {
    let home = tempdir();
    let key = new_key("proxy");
    for url in [
        "http://proxyuser:hunter2pw@127.0.0.1:99999",
        "http://proxyuser:hunter2pw@proxy.example:8080",
        "http://proxyuser:hunter2 pw@bad host",
    ] {
        for json_mode in [true, false] {
            let mut cmd = lua(home.path(), "return 1");
            cmd.env("KLAVIYO_API_KEY", &key)
                .env("KLAVIYO_BASE_URL", url);
            if json_mode {
                cmd.arg("--json");
            }
            let m = run(cmd);
            m.assert_usage("KLAVIYO_BASE_URL");
            assert!(!m.shows("hunter2"), "{m:?}");
        }
        let m = run(configure(
            home.path(),
            "shop",
            &[&format!("api_key={key}"), &format!("base_url={url}")],
        ));
        m.assert_usage("base_url");
        assert!(!m.shows("hunter2") && !m.shows(&key), "{m:?}");
    }
}

// ------------------------------------------------------------------------------------------
// 9: one rule for keys, one for base URLs
// ------------------------------------------------------------------------------------------

#[test]
fn keys_follow_one_rule_everywhere() {
    let home = tempdir();
    for bad in ["pk_with space_123", "pk_with\nnewline_1", "pk_tab\there_12"] {
        // Refused before any request: no 1 s wait ending in an egress-policy denial.
        let mut cmd = lua(
            home.path(),
            "return app.integrations.klaviyo.get_profile({profile_id = 'x'})",
        );
        cmd.env("KLAVIYO_API_KEY", bad)
            .env("KLAVIYO_BASE_URL", "http://127.0.0.1:9");
        let m = run(cmd);
        m.assert_usage("KLAVIYO_API_KEY");
        assert!(!m.shows("egress"), "{m:?}");
        assert!(!m.shows(bad.trim()), "{m:?}");
        // configure says the same.
        run(configure(home.path(), "shop", &[&format!("api_key={bad}")])).assert_usage("api_key");
    }
}

#[test]
fn base_urls_follow_one_rule_everywhere() {
    let home = tempdir();
    let key = new_key("urls");
    let set_key = format!("api_key={key}");
    for (url, mentions) in [
        ("http://example.com", "KOSMO_ALLOW_INSECURE_HTTP"),
        ("https://example.com:99999", "port"),
        ("https://example.com:0", "port"),
    ] {
        let set_url = format!("base_url={url}");
        run(configure(home.path(), "shop", &[&set_key, &set_url])).assert_usage(mentions);
        let mut cmd = lua(home.path(), "return 1");
        cmd.env("KLAVIYO_API_KEY", &key)
            .env("KLAVIYO_BASE_URL", url);
        run(cmd).assert_usage(mentions);
    }
    assert!(!home.path().join("accounts.json").exists());

    // Plain http elsewhere than loopback is an explicit opt-in, needed again whenever the
    // account is loaded (the same check runs on load).
    let insecure = tempdir();
    let mut cmd = configure(
        insecure.path(),
        "shop",
        &[&set_key, "base_url=http://example.com"],
    );
    cmd.env("KOSMO_ALLOW_INSECURE_HTTP", "1");
    run(cmd).assert_ok();
    run(lua(insecure.path(), "return 1")).assert_usage("KOSMO_ALLOW_INSECURE_HTTP");
    let mut cmd = lua(insecure.path(), "return 1");
    cmd.env("KOSMO_ALLOW_INSECURE_HTTP", "1");
    run(cmd).assert_ok();

    run(configure(
        home.path(),
        "loopback",
        &[&set_key, "base_url=http://127.0.0.1:8080"],
    ))
    .assert_ok();

    // A new base_url needs the key again: the stored one must not follow silently.
    let m = run(configure(
        home.path(),
        "loopback",
        &["base_url=https://other.example"],
    ));
    m.assert_usage("api_key");
    let stored = std::fs::read_to_string(home.path().join("accounts.json")).unwrap();
    assert!(!stored.contains("other.example"), "{stored}");
    run(configure(
        home.path(),
        "loopback",
        &[&set_key, "base_url=https://other.example"],
    ))
    .assert_ok();
    // The same URL again is no change of host.
    run(configure(
        home.path(),
        "loopback",
        &["base_url=https://other.example/"],
    ))
    .assert_ok();
}

// ------------------------------------------------------------------------------------------
// 10: the accounts file
// ------------------------------------------------------------------------------------------

fn write_accounts(home: &Path, text: &str, file_mode: u32) {
    let path = home.join("accounts.json");
    std::fs::write(&path, text).unwrap();
    set_mode(&path, file_mode);
}

#[test]
fn accounts_files_are_checked_on_load() {
    let home = tempdir();
    let key = new_key("file");
    for (account, mentions) in [
        (format!(r#""__index": {{"api_key": "{key}"}}"#), "__index"),
        (r#""shop": {"api_key": "abc"}"#.to_string(), "api_key"),
        (
            format!(r#""shop": {{"api_key": "{key}", "base_url": "https://h:99999"}}"#),
            "base_url",
        ),
    ] {
        write_accounts(
            home.path(),
            &format!(r#"{{"klaviyo": {{{account}}}}}"#),
            0o600,
        );
        let m = run(lua(home.path(), "return 1"));
        m.assert_usage(mentions);
        assert!(!m.shows(&key));
    }

    // A file others can read or write is used, with one warning.
    write_accounts(
        home.path(),
        &format!(
            r#"{{"klaviyo": {{"shop": {{"api_key": "{key}", "base_url": "http://127.0.0.1:9"}}}}}}"#
        ),
        0o666,
    );
    let m = run(lua(
        home.path(),
        "return app.integrations.klaviyo.shop ~= nil",
    ));
    m.assert_ok();
    assert_eq!(
        m.stderr.matches("other users can read or write").count(),
        1,
        "{}",
        m.stderr
    );
    let m = run(configure(home.path(), "shop", &[]));
    assert_eq!(
        m.stderr.matches("other users can read or write").count(),
        1,
        "{}",
        m.stderr
    );

    // A 7 MB file: refused at once (it took 16 s and 1.2 GB).
    let many: Vec<String> = (0..180_000)
        .map(|i| format!(r#""a{i}": {{"api_key": "pk_0000000000"}}"#))
        .collect();
    write_accounts(
        home.path(),
        &format!(r#"{{"klaviyo": {{{}}}}}"#, many.join(",")),
        0o600,
    );
    let m = measure(
        lua(home.path(), "return 1"),
        Stdio::null(),
        Bounds {
            max_rss_kib: 512 * MIB,
            timeout: Duration::from_secs(60),
        },
    );
    m.assert_usage("1 MiB");
    assert!(m.elapsed < Duration::from_secs(10), "{:?}", m.elapsed);
    assert!(m.peak_kib < 64 * MIB, "{} KiB", m.peak_kib);
}
