//! What a script can make the `kosmo` process itself use: memory and time beyond the Lua
//! state's own limits. Each case is a finding of the security review, reproduced against the
//! built binary: the process's peak RSS (`ru_maxrss` from `wait4`, see [`measuring_helper`])
//! must stay under the Lua memory limit plus [`HOST_OVERHEAD`], and its wall time under its
//! CPU limit plus [`CPU_GRACE`].
//!
//! Measured on the fixed build (x86_64, release; `--nocapture` prints each case): the
//! baseline, `integrations:lua --sandbox --eval 'return 1' --json`, peaks at about 11 MiB,
//! and at about 43 MiB once a Klaviyo call has compiled and loaded the component. The worst
//! cases: 74 MiB with an 8 MiB Lua limit (66 over it: a first call, then 15 MiB of results,
//! just under their 16 MiB cap), 120 MiB with the default 64 MiB (56 over: a call, then
//! 240,000 keys to sort, 48 MiB of them in Lua). Hence the bound "Lua limit + 96 MiB"
//! ([`HOST_OVERHEAD`]). Before the fixes these cases reached 1-6 GB (they would now be
//! killed at [`KILL_RSS`]) or never ended.
//!
//! Run with `--nocapture` to see each case's figures.

#![cfg(all(target_os = "linux", target_pointer_width = "64"))]

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const MIB: u64 = 1024 * 1024;

/// What the process may use beyond the Lua memory limit: its own baseline (~11 MiB, ~43 MiB
/// once a Klaviyo call has compiled and loaded the component) plus the host's capped copies
/// of script values (the results, 16 MiB, are copied about twice on their way out;
/// `json.encode` and `regex.gsub` build at most 16 MiB; sorting keys takes at most 16 MiB;
/// `print`/`dump` 1 MiB; call arguments 1 MiB; 16 cached regexes about 1 MiB each). The
/// worst case measured is 66 MiB over the limit; the margin absorbs allocator variation.
const HOST_OVERHEAD: u64 = 96 * MIB;

/// How long past its CPU limit a run may last: process start-up, printing the envelope, and
/// a loaded machine.
const CPU_GRACE: Duration = Duration::from_millis(2500);

/// A child past this RSS is killed at once: a regression must fail the test, not the machine.
const KILL_RSS: u64 = 1024 * MIB;

/// A child still running after this is killed (a finalizer looping forever).
const KILL_AFTER: Duration = Duration::from_secs(20);

/// One run of `kosmo`, measured.
struct Measured {
    label: String,
    code: i32,
    stdout: String,
    stderr: String,
    /// Peak resident set size, in bytes.
    peak: u64,
    wall: Duration,
    /// Why the test killed it, if it did.
    killed: Option<String>,
}

impl Measured {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{}: stdout is not one JSON object ({e}); killed: {:?}\nstdout: {}\nstderr: {}",
                self.label,
                self.killed,
                cut(&self.stdout),
                cut(&self.stderr)
            )
        })
    }

    /// The envelope's error (the run must have failed).
    fn error(&self) -> Value {
        let env = self.json();
        assert_eq!(
            env["success"],
            false,
            "{}: {}",
            self.label,
            cut(&self.stdout)
        );
        env["error"].clone()
    }

    /// Peak RSS within the Lua limit plus the host's fixed overhead.
    fn assert_memory(&self, lua_limit: u64) -> &Self {
        assert!(
            self.killed.is_none(),
            "{}: killed: {:?}",
            self.label,
            self.killed
        );
        assert!(
            self.peak <= lua_limit + HOST_OVERHEAD,
            "{}: peak RSS {:.1} MiB > Lua limit {} MiB + {} MiB",
            self.label,
            self.peak as f64 / MIB as f64,
            lua_limit / MIB,
            HOST_OVERHEAD / MIB
        );
        self
    }

    /// Ended within its CPU limit plus [`CPU_GRACE`].
    fn assert_time(&self, cpu_limit: Duration) -> &Self {
        assert!(
            self.killed.is_none(),
            "{}: killed: {:?}",
            self.label,
            self.killed
        );
        assert!(
            self.wall <= cpu_limit + CPU_GRACE,
            "{}: ran {:?} with a CPU limit of {cpu_limit:?}",
            self.label,
            self.wall
        );
        self
    }
}

fn cut(text: &str) -> &str {
    let mut end = text.len().min(600);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `struct rusage` of 64-bit Linux: two `timeval`s, then 14 longs, `ru_maxrss` (KiB) first.
#[repr(C)]
struct Rusage {
    utime: [i64; 2],
    stime: [i64; 2],
    maxrss: i64,
    rest: [i64; 13],
}

unsafe extern "C" {
    fn wait4(pid: i32, status: *mut i32, options: i32, rusage: *mut Rusage) -> i32;
    fn kill(pid: i32, signal: i32) -> i32;
}

const SIGKILL: i32 = 9;

/// Wait for `child` and give its exit code (minus the signal if one ended it) and its peak
/// RSS in bytes.
fn wait_measured(child: &Child) -> (i32, u64) {
    let mut status = 0;
    let mut usage = Rusage {
        utime: [0; 2],
        stime: [0; 2],
        maxrss: 0,
        rest: [0; 13],
    };
    // SAFETY: `status` and `usage` are valid for writes; the pid is our unreaped child.
    let pid = unsafe { wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    let code = if status & 0x7f == 0 {
        (status >> 8) & 0xff
    } else {
        -(status & 0x7f)
    };
    (code, usage.maxrss as u64 * 1024)
}

/// Current RSS from `/proc`, to kill a runaway early.
fn rss(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Set in the environment of the measuring process (this test binary run again, for the
/// test [`measuring_helper`]): the directory of the run it measures.
const HELPER_DIR: &str = "KOSMO_HOST_LIMITS_RUN";

/// Not a test of its own: the process that starts and measures `kosmo` for [`kosmo`].
///
/// Linux counts in a process's `ru_maxrss` the peak of the memory it had before `exec`: the
/// test process's, which grows as it reads the other cases' outputs. So `kosmo` is started
/// from this small, fresh process, and `wait4` gives its own peak.
#[test]
fn measuring_helper() {
    let Some(dir) = std::env::var_os(HELPER_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let args: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("args.json")).unwrap()).unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_kosmo"))
        .arg("integrations:lua")
        .args(&args)
        .env("KOSMO_HOME", &home)
        .env("HOME", &home)
        .env_remove("KLAVIYO_API_KEY")
        .env_remove("KLAVIYO_BASE_URL")
        .env_remove(HELPER_DIR)
        .stdin(Stdio::inherit())
        .stdout(File::create(dir.join("stdout")).unwrap())
        .stderr(File::create(dir.join("stderr")).unwrap())
        .spawn()
        .expect("kosmo runs");
    std::fs::write(dir.join("pid"), child.id().to_string()).unwrap();
    let (code, peak) = wait_measured(&child);
    std::fs::write(dir.join("done"), format!("{code} {peak}")).unwrap();
}

/// Run `kosmo integrations:lua ARGS` (private home, no Klaviyo settings), measured.
fn kosmo(label: &str, args: &[&str], stdin: Option<&str>) -> Measured {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("args.json"),
        serde_json::to_string(args).unwrap(),
    )
    .unwrap();
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "measuring_helper",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(HELPER_DIR, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the measuring process runs");
    let started = Instant::now();
    let mut pipe = helper.stdin.take().unwrap();
    if let Some(text) = stdin {
        pipe.write_all(text.as_bytes()).unwrap();
    }
    drop(pipe);
    let mut killed = None;
    while helper.try_wait().unwrap().is_none() {
        let pid = std::fs::read_to_string(dir.path().join("pid"))
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok());
        if let Some(pid) = pid
            && killed.is_none()
            && !dir.path().join("done").exists()
        {
            let now = rss(pid);
            if now > KILL_RSS {
                killed = Some(format!("RSS {} MiB", now / MIB));
            } else if started.elapsed() > KILL_AFTER {
                killed = Some(format!("still running after {KILL_AFTER:?}"));
            }
            if killed.is_some() {
                // SAFETY: plain syscall; the pid is kosmo's, not yet reaped (no `done`).
                unsafe { kill(pid, SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let wall = started.elapsed();
    let read = |name: &str| {
        let bytes = std::fs::read(dir.path().join(name)).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let done = read("done");
    let mut done = done.split_whitespace().map(|n| n.parse::<i64>().unwrap());
    let (code, peak) = (
        done.next().expect("the measuring process reported") as i32,
        done.next().unwrap() as u64,
    );
    let measured = Measured {
        label: label.to_string(),
        code,
        stdout: read("stdout"),
        stderr: read("stderr"),
        peak,
        wall,
        killed,
    };
    eprintln!(
        "{label}: peak RSS {:.1} MiB, {:.2} s, exit {}",
        measured.peak as f64 / MIB as f64,
        measured.wall.as_secs_f64(),
        measured.code
    );
    measured
}

/// `--json --memory-limit 8M --eval CODE`.
fn small(label: &str, code: &str, extra: &[&str]) -> Measured {
    let mut args = vec!["--json", "--memory-limit", "8M", "--eval", code];
    args.extend_from_slice(extra);
    kosmo(label, &args, None)
}

const SMALL_LIMIT: u64 = 8 * MIB;
const DEFAULT_LIMIT: u64 = 64 * MIB;

fn message(error: &Value) -> &str {
    error["message"].as_str().unwrap_or_default()
}

#[test]
fn baseline_is_well_under_the_overhead() {
    let run = kosmo(
        "baseline",
        &["--sandbox", "--eval", "return 1", "--json"],
        None,
    );
    assert_eq!(run.json()["result"][0], 1);
    assert!(
        run.peak < HOST_OVERHEAD / 2,
        "{:.1} MiB",
        run.peak as f64 / MIB as f64
    );
}

/// Finding 1a: the error value's `__tostring` ran with the memory limit lifted (1.3 GB from
/// an 8 MiB script) and with no CPU deadline.
#[test]
fn an_error_tostring_runs_under_the_script_limits() {
    let run = small(
        "1a __tostring allocating 1 GiB",
        r#"error(setmetatable({}, {__tostring=function() local t={} for i=1,1024 do t[i]=string.rep("x",2^20)..i end return "x" end}))"#,
        &[],
    );
    run.assert_memory(SMALL_LIMIT).assert_time(Duration::ZERO);
    let error = run.error();
    assert_eq!(error["code"], "script_error");
    assert!(message(&error).contains("memory_limit"), "{error}");

    let run = small(
        "1a __tostring looping",
        "error(setmetatable({}, {__tostring=function() while true do end end}))",
        &["--cpu-limit", "1"],
    );
    run.assert_memory(SMALL_LIMIT)
        .assert_time(Duration::from_secs(1));
    assert!(message(&run.error()).contains("cpu_limit"));
}

/// Finding 1b: one shared string copied once per reference by every host conversion
/// (2.5-6 GB from a 10 MiB string referenced 200 times). With an 8 MiB limit the string is
/// 3 MiB (600 MiB of references; `string.rep` needs twice its result while it builds).
#[test]
fn shared_strings_are_not_copied_per_reference() {
    let shared = r#"local s=string.rep("x",3*2^20) local t={} for i=1,200 do t[i]=s end "#;
    for (label, code, expected) in shared_cases() {
        let run = small(label, &format!("{shared}{code}"), &["--sandbox"]);
        run.assert_memory(SMALL_LIMIT);
        let error = run.error();
        assert_eq!(error["code"], expected, "{label}: {error}");
    }
}

/// The review's exact reproduction (10 MiB x 200), with the default 64 MiB limit.
#[test]
fn shared_strings_with_the_default_limit() {
    let shared = r#"local s=string.rep("x",10*2^20) local t={} for i=1,200 do t[i]=s end "#;
    for (label, code, expected) in shared_cases() {
        let run = kosmo(
            label,
            &["--json", "--sandbox", "--eval", &format!("{shared}{code}")],
            None,
        );
        run.assert_memory(DEFAULT_LIMIT);
        let error = run.error();
        assert_eq!(error["code"], expected, "{label}: {error}");
        assert!(
            message(&error).contains("MiB") || expected == "output_limit",
            "{label}: the error names its cap: {error}"
        );
    }
}

fn shared_cases() -> [(&'static str, &'static str, &'static str); 5] {
    [
        ("1b print", "print(table.unpack(t))", "output_limit"),
        ("1b json.encode", "local x = json.encode(t)", "script_error"),
        ("1b dump", "dump(t)", "output_limit"),
        ("1b return", "return t", "output_limit"),
        (
            "1b call arguments",
            r#"app.integrations.klaviyo.create_profile({email="a@example.com", properties={a=t}})"#,
            "invalid_argument",
        ),
    ]
}

/// Finding 1c: `regex.gsub` checked the size after expanding (1 GB).
#[test]
fn gsub_refuses_before_expanding() {
    let run = small(
        "1c gsub",
        r#"return #regex.gsub(string.rep("a",2^20),"(?s).+",string.rep("$0",500))"#,
        &[],
    );
    run.assert_memory(SMALL_LIMIT);
    let error = run.error();
    assert!(
        message(&error).contains("regex.gsub: the result would be larger than 8 MiB"),
        "{error}"
    );
}

/// Finding 2: a looping `__gc` (Lua runs finalizers without hooks) kept the process alive
/// after it printed its envelope, and at the end of a REPL.
#[test]
fn finalizers_cannot_keep_the_process_alive() {
    let code = "local k=setmetatable({}, {__gc=function() while true do end end}); return 1";
    let run = kosmo(
        "2 __gc",
        &["--cpu-limit", "1", "--json", "--eval", code],
        None,
    );
    run.assert_time(Duration::from_secs(1));
    assert!(message(&run.error()).contains("__gc"));

    let run = kosmo(
        "2 __gc in the REPL",
        &["--cpu-limit", "1", "--repl"],
        Some(&format!("{code}\nx = 1\n")),
    );
    run.assert_time(Duration::from_secs(1));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("__gc"), "{}", run.stderr);
}

/// Finding 11: `error({code="cpu_limit"})` showed as the host's CPU limit; the host's own
/// error tables keep their code; Lua running out of memory in `json.encode` is
/// `memory_limit`.
#[test]
fn scripts_cannot_forge_host_error_codes() {
    let run = small(
        "11 forged",
        r#"error({code="cpu_limit", message="x"})"#,
        &[],
    );
    let error = run.error();
    assert_eq!(error["code"], "script_error");
    assert_eq!(error["message"], "x");
    assert_eq!(error["value"]["code"], "cpu_limit");

    let code = r#"local ok, e = pcall(app.integrations.klaviyo.get_profile, {profile_id = "01NOPE"})
        e.code = "cpu_limit" error(e)"#;
    let run = small("11 host error edited", code, &["--sandbox"]);
    let error = run.error();
    assert_eq!(error["code"], "not_found", "{error}");
    assert_eq!(error["status"], 404, "{error}");

    let run = small(
        "11 json.encode out of memory",
        "local s = string.rep('x', 3 * 2^20) return #json.encode({s, s})",
        &[],
    );
    run.assert_memory(SMALL_LIMIT);
    assert_eq!(run.error()["code"], "memory_limit");
}

/// Conversions that succeed just under their caps stay within the bound too, with either
/// limit: results of 15 MiB of strings or of ~210,000 small values (each counted at the 72
/// bytes its copy takes), a 15 MiB `json.encode`, a 15 MiB `gsub`.
#[test]
fn conversions_at_their_caps_stay_within_the_bound() {
    let strings = r#"local s=string.rep("x",2^20-64) local t={} for i=1,15 do t[i]=s end "#;
    let cases = [
        ("results: strings", format!("{strings} return t")),
        (
            "results: small values",
            "local a={} for i=1,1000 do a[i]=0 end local t={} for i=1,210 do t[i]=a end return t"
                .to_string(),
        ),
        ("json.encode", format!("{strings} return #json.encode(t)")),
        (
            "regex.gsub",
            r#"return #regex.gsub(string.rep("a",2^20),"(?s).+",string.rep("$0",15))"#.to_string(),
        ),
    ];
    // The largest baseline: a Klaviyo call compiles and loads the component first.
    let call = format!("app.integrations.klaviyo.list_lists({{}}) {strings} return t");
    let run = small("at cap (8M): a call, then results", &call, &["--sandbox"]);
    run.assert_memory(SMALL_LIMIT);
    assert_eq!(run.json()["success"], true, "{}", cut(&run.stdout));
    let run = kosmo(
        "at cap (64M): a call, then results",
        &["--json", "--sandbox", "--eval", &call],
        None,
    );
    run.assert_memory(DEFAULT_LIMIT);
    for (label, code) in &cases {
        let run = small(&format!("at cap (8M): {label}"), code, &[]);
        run.assert_memory(SMALL_LIMIT);
        let run = kosmo(
            &format!("at cap (64M): {label}"),
            &["--json", "--eval", code],
            None,
        );
        run.assert_memory(DEFAULT_LIMIT);
        assert_eq!(run.json()["success"], true, "{label}: {}", cut(&run.stdout));
    }
}

/// Other host-side expansions of script data: `json.decode` parses into a tree far larger
/// than its text (312 MiB from an 8 MiB document), sorting a table's keys took three times
/// the table, and each cached regex holds about a megabyte (64 MiB for 64 patterns).
#[test]
fn other_host_expansions_are_bounded() {
    let run = small(
        "json.decode expansion",
        r#"local s="["..string.rep("0,",1.4e6).."0]" return #json.decode(s)"#,
        &[],
    );
    run.assert_memory(SMALL_LIMIT);
    assert!(message(&run.error()).contains("json.decode: the document is too large"));
    let run = kosmo(
        "json.decode expansion (64M)",
        &[
            "--json",
            "--eval",
            r#"local s="["..string.rep("0,",4e6).."0]" return pcall(json.decode, s)"#,
        ],
        None,
    );
    run.assert_memory(DEFAULT_LIMIT);

    // Sorting a table's keys: 100 MiB for a million integer keys (32 MiB in Lua).
    let sparse = "local t={} for i=1,1e6 do t[i*2]=i end return pcall(json.encode, t)";
    let run = kosmo("sorted keys (64M)", &["--json", "--eval", sparse], None);
    run.assert_memory(DEFAULT_LIMIT);
    assert!(run.stdout.contains("too many keys"), "{}", cut(&run.stdout));
    let many = r#"app.integrations.klaviyo.list_lists({})
        local t={} for i=1,2.4e5 do t["key"..i]={i, "x"} end return t"#;
    let run = kosmo(
        "a call, then many keys (64M)",
        &["--json", "--sandbox", "--eval", many],
        None,
    );
    run.assert_memory(DEFAULT_LIMIT);

    let run = small(
        "regex cache",
        r#"local text = string.rep("ab", 100000) for i = 1, 64 do regex.match(text, "[\\w--a]{18}[^b]" .. i) end return 1"#,
        &[],
    );
    run.assert_memory(SMALL_LIMIT);
    assert_eq!(run.json()["success"], true);
}

/// No script outlives its CPU limit by more than [`CPU_GRACE`]: a plain loop, a loop in a
/// to-be-closed variable's `__close` while an error unwinds, a loop in a `regex.gsub`
/// callback.
#[test]
fn no_script_outlives_its_cpu_limit() {
    let cases = [
        ("loop", "while true do end"),
        (
            "__close",
            "local x <close> = setmetatable({}, {__close=function() while true do end end}) error('x')",
        ),
        (
            "gsub callback",
            "regex.gsub('aaa', 'a', function() while true do end end)",
        ),
    ];
    for (label, code) in cases {
        let run = kosmo(
            &format!("cpu: {label}"),
            &["--json", "--cpu-limit", "1", "--eval", code],
            None,
        );
        run.assert_time(Duration::from_secs(1));
        assert_eq!(run.error()["code"], "cpu_limit", "{label}");
    }
}
