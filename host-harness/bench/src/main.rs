//! `bench`: the performance report of kosmo. One run measures every figure side by side on this
//! machine and prints one table (figure | measured | target | ratio | pass/FAIL), then the
//! supporting figures and the per-call stage table. It always exits 0: it is a report, not a
//! test.
//!
//! ```sh
//! cargo run --release -p kosmo-bench --bin bench                      # the whole report (2-3 minutes)
//! cargo run --release -p kosmo-bench --bin bench -- --breakdown 1000  # only the stage table (seconds)
//! cargo run --release -p kosmo-bench --bin bench -- --help            # the other modes
//! ```
//!
//! The bench drives only what kosmo ships: [`kosmo_runtime::Runtime`] (the library call),
//! [`kosmo_lua::Session`] (the Lua layer in-process) and the `kosmo` binary (the CLI, found
//! next to this one). It builds no wasmtime engine of its own, so every figure is of the real
//! call path, pooling allocator, memory limiter and fuel included. The stage table is the
//! runtime's own instrumentation, [`kosmo_runtime::Stages`] of each `call_with_log`, summarised
//! over many calls; the bench adds only its own clock around each call, as a check.
//!
//! Organisation, in the order of the source:
//! - `main` and the modes; the report's tables (`Row`, `Info`, `Report`), the targets;
//! - figures 1 and 2: CLI start-up, warm and cold;
//! - figure 3: sequential calls, native vs library vs Lua in-process (vs the CLI, supporting);
//! - figure 4: a 15-request workflow as whole processes, Klaviyo's Python SDK vs the kosmo CLI
//!   (skipped without `klaviyo-api`), and the SDK's per-call time (supporting);
//! - figure 8: 200 get_profile in one kosmo process vs one curl process on one connection;
//! - figure 5: 16-tenant throughput and CPU time per call;
//! - figure 6: memory per in-flight call, with the emulator in a child process;
//! - the stage table (`breakdown`), sequential and under 16 concurrent tenants;
//! - profiling modes and helpers.
//!
//! Every comparison runs its sides in interleaved (or alternating) rounds in one run and takes
//! medians, because the machine is shared: a round's sides see the same load.
//!
//! The emulator runs in-process with request validation off (`validate_requests: false`, its
//! fast path), except for the memory figure, where it runs in a child process (this binary with
//! `--emulator-child`) so that its own memory does not count as the host's. See
//! `benches/README.md` for what each figure means.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http::header::{ACCEPT, AUTHORIZATION};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use klaviyo_spec::REVISION;
use kosmo_emulator::{Emulator, EmulatorOptions, Fault};
use kosmo_lua::{Limits, Session};
use kosmo_runtime::{
    Account, AccountConfig, ApiKey, COMPONENT, CallOutcome, DEFAULT_ACCOUNT, Host, HostOptions,
    Policy, Runtime, RuntimeConfig,
};

/// Sequential calls of figures 3 and 4.
const SEQ_CALLS: usize = 1000;
/// Interleaved rounds of figure 3 (native, library, Lua in-process, CLI), median taken.
const SEQ_ROUNDS: usize = 5;
/// Within a round of figure 3, the in-process sides take turns in blocks of this many calls.
const SEQ_BLOCK: usize = 100;
/// Tenants and calls per tenant of figure 5 (the stage table's concurrent column uses the same
/// number of tenants).
const TENANTS: usize = 16;
const CALLS_PER_TENANT: usize = 200;
/// Rounds of figure 5 (native and kosmo alternate), median taken.
const THROUGHPUT_ROUNDS: usize = 5;
/// Whole-process runs of figure 4 per side (the Python SDK and kosmo alternate, after a
/// warm-up run of each), median taken; and the HTTP requests its workflow makes.
const WORKFLOW_RUNS: usize = 5;
const WORKFLOW_REQUESTS: usize = 15;
/// get_profile calls in one process for figure 8 (kosmo CLI vs curl), and its interleaved
/// rounds (after a warm-up run of each), median taken.
const CURL_CALLS: usize = 200;
const CURL_ROUNDS: usize = 9;

// The targets ("Performance, round 2").
/// Figure 3: library call per call, at most this many times the native client's.
const LIBRARY_TARGET: f64 = 1.5;
/// Figure 3b: Lua in-process per call, at most this many times the native client's.
const LUA_TARGET: f64 = 1.6;
/// Figure 4: the workflow as whole processes, kosmo at least this many times faster.
const WORKFLOW_TARGET: f64 = 80.0;
/// Figure 5: kosmo's throughput at least this share of the native client's.
const THROUGHPUT_TARGET: f64 = 0.60;
/// Figure 5b: CPU time per call, at most this many times the native client's.
const CPU_TARGET: f64 = 2.0;
/// Figure 6: host memory per in-flight call, MiB.
const MEMORY_TARGET_MIB: f64 = 0.1;
/// Figure 8: kosmo's process at most this many times curl's.
const CURL_TARGET: f64 = 1.25;
/// Calls held in flight for figure 6, and how long the emulator holds each.
const IN_FLIGHT: usize = 64;
const HOLD: Duration = Duration::from_secs(3);
/// Warm-cache CLI runs (figure 1) and clean-cache runs (figure 2).
const WARM_RUNS: usize = 10;
const COLD_RUNS: usize = 3;
/// Sequential calls the stage table summarises (the concurrent column makes about as many).
const BREAKDOWN_CALLS: usize = 1000;

type NativeClient = Client<HttpConnector, Empty<Bytes>>;
type AnyError = Box<dyn std::error::Error + Send + Sync>;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = match mode {
        "" => rt.block_on(full_report(None)),
        "--only" => match args.get(1).and_then(|n| n.parse::<u32>().ok()) {
            Some(n @ 1..=8) => rt.block_on(full_report(Some(n))),
            _ => {
                eprintln!("bench: --only takes a figure number, 1 to 8");
                2
            }
        },
        "--emulator-child" => rt.block_on(emulator_child()),
        "--profile-library" => {
            let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200);
            let cache = args.get(2).map(PathBuf::from);
            rt.block_on(profile_library(n, cache))
        }
        "--profile-lua" => {
            let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200);
            rt.block_on(profile_lua(n))
        }
        "--ab" => match (args.get(1), args.get(2)) {
            (Some(a), Some(b)) => {
                let tenants = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(1);
                rt.block_on(ab(PathBuf::from(a), PathBuf::from(b), tenants))
            }
            _ => {
                eprintln!("bench: --ab takes two component files");
                2
            }
        },
        "--profile-lua-session" => {
            let n = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(200);
            let lua = args.get(2).map(String::as_str) != Some("library");
            let cache = args.get(3).map(PathBuf::from);
            rt.block_on(profile_lua_session(n, lua, cache))
        }
        "--breakdown" => {
            let n = args
                .get(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or(BREAKDOWN_CALLS);
            rt.block_on(breakdown_only(n))
        }
        "-h" | "--help" => {
            println!(
                "bench: kosmo's performance report (always exits 0)\n\n\
                 bench                              every figure, one table (see benches/README.md)\n\
                 bench --only N                     only figure N (1-8; 1 and 2 go together, as 3 and 3b, 5 and 5b),\n\
                 \x20                                  with the set-up it needs and no stage table\n\
                 bench --breakdown [N]              only the stage table: the runtime's own Stages of N sequential\n\
                 \x20                                  get_profile calls (default 1000) and of 16 concurrent tenants;\n\
                 \x20                                  KOSMO_BENCH_COMPONENT=file.wasm measures that build instead\n\
                 bench --profile-library N [DIR]    N sequential Runtime::call get_profile, emulator in a child\n\
                 \x20                                  process (for callgrind/perf; DIR: compiled-component cache)\n\
                 bench --profile-lua N              the kosmo CLI doing N get_profile calls, with its JSON envelope\n\
                 bench --profile-lua-session N lua|library [DIR]\n\
                 \x20                                  N get_profile in one process, emulator in-process, through a\n\
                 \x20                                  kosmo_lua::Session loop or Runtime::call (callgrind: the\n\
                 \x20                                  difference of the two over N is the Lua layer's per call)\n\
                 bench --ab A.wasm B.wasm [TENANTS] two builds of the component in one process: 20 interleaved rounds\n\
                 \x20                                  of 200 get_profile per tenant (default 1), median per call of each\n\
                 bench --emulator-child             serve an emulator; commands on stdin (internal)"
            );
            0
        }
        other => {
            eprintln!("bench: unknown mode {other:?} (try --help)");
            2
        }
    };
    // Leave the emulator's tasks behind without waiting for them.
    rt.shutdown_timeout(Duration::from_millis(100));
    std::process::exit(code);
}

// ---------------------------------------------------------------------------------------------
// The report

/// One line of the main table.
struct Row {
    figure: String,
    measured: String,
    target: String,
    ratio: String,
    /// `None`: skipped or failed to measure.
    pass: Option<bool>,
}

impl Row {
    fn skipped(figure: &str, target: &str, why: impl Into<String>) -> Row {
        Row {
            figure: figure.into(),
            measured: why.into(),
            target: target.into(),
            ratio: "-".into(),
            pass: None,
        }
    }
}

/// A supporting figure (no target).
struct Info {
    what: String,
    value: String,
}

struct Report {
    rows: Vec<Row>,
    info: Vec<Info>,
    breakdown: Option<Breakdown>,
}

impl Report {
    fn info(&mut self, what: impl Into<String>, value: impl Into<String>) {
        let (what, value) = (what.into(), value.into());
        eprintln!("  {what}: {value}");
        self.info.push(Info { what, value });
    }
}

/// The whole report, or (`only`) one figure with the set-up it needs.
async fn full_report(only: Option<u32>) -> i32 {
    let started = Instant::now();
    let emu = match Emulator::start_with(EmulatorOptions {
        validate_requests: false,
        ..Default::default()
    })
    .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bench: cannot start the emulator: {e}");
            return 0;
        }
    };
    let base = emu.base_url();
    println!("kosmo bench");
    println!(
        "- machine: {} CPU(s), {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model()
    );
    println!(
        "- emulator: in-process at {base}, EmulatorOptions {{ validate_requests: false }} (the fast path: no OpenAPI validation)"
    );
    println!(
        "- figure 6 only: the same emulator (same options) in a child process (`bench --emulator-child`), so that its memory is not counted as the host's"
    );
    println!(
        "- tokio: multi-thread runtime, {} worker(s), shared by the emulator, the native client and kosmo",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "- figures 4 and 8 spawn whole processes (`kosmo`, `python3`, `curl`) against the in-process emulator and time each from spawn to exit"
    );
    println!("- load average at start: {}", load_average());
    if cfg!(debug_assertions) {
        println!(
            "- WARNING: this is a debug build; run with `cargo run --release -p kosmo-bench --bin bench`"
        );
    }
    let scratch = std::env::temp_dir().join(format!("kosmo-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(e) = std::fs::create_dir_all(&scratch) {
        eprintln!("bench: cannot create {}: {e}", scratch.display());
        return 0;
    }

    let mut report = Report {
        rows: Vec::new(),
        info: Vec::new(),
        breakdown: None,
    };
    if let Err(e) = measure_all(&emu, &scratch, &mut report, only).await {
        eprintln!("bench: stopped early: {e}");
        println!("- stopped early: {e}");
    }
    let _ = std::fs::remove_dir_all(&scratch);

    println!();
    print_rows(&report.rows);
    println!();
    println!("Supporting figures");
    println!();
    println!("| figure | value |");
    println!("|---|---|");
    for i in &report.info {
        println!("| {} | {} |", i.what, i.value);
    }
    if let Some(breakdown) = &report.breakdown {
        println!();
        breakdown.print();
    }
    println!();
    println!(
        "(bench took {:.0} s; load average at the end: {})",
        started.elapsed().as_secs_f64(),
        load_average()
    );
    0
}

fn print_rows(rows: &[Row]) {
    println!("| figure | measured | target | ratio | result |");
    println!("|---|---|---|---|---|");
    // In figure order ("1.", "1b.", "2.", ...), whatever order they were measured in.
    let mut rows: Vec<&Row> = rows.iter().collect();
    rows.sort_by_key(|r| r.figure.split_whitespace().next().unwrap_or("").to_string());
    for r in rows {
        let result = match r.pass {
            Some(true) => "pass",
            Some(false) => "FAIL",
            None => "not measured",
        };
        println!(
            "| {} | {} | {} | {} | {} |",
            r.figure, r.measured, r.target, r.ratio, result
        );
    }
}

async fn measure_all(
    emu: &Emulator,
    scratch: &Path,
    report: &mut Report,
    only: Option<u32>,
) -> Result<(), AnyError> {
    let base = emu.base_url();
    let wants = |figure: u32| only.is_none_or(|n| n == figure || (n, figure) == (1, 2));

    // Figure 7 first: it cannot fail.
    let size = COMPONENT.len();
    let limit = 400 * 1024;
    if wants(7) {
        report.rows.push(Row {
            figure: "7. component size (`kosmo_runtime::COMPONENT.len()`)".into(),
            measured: format!("{} B ({:.1} KiB)", group(size as u64), size as f64 / 1024.0),
            target: "< 400 KiB (409,600 B)".into(),
            ratio: format!("{:.2} of target", size as f64 / limit as f64),
            pass: Some(size < limit),
        });
    }

    // The library runtime, compiled once and shared by every in-process figure. No cache
    // directory: the figure is the Cranelift compile itself (the CLI's cache is figure 2b's).
    eprintln!("compiling the component for the library runtime ...");
    let t = Instant::now();
    let runtime = tokio::task::spawn_blocking(|| Runtime::new(RuntimeConfig::default()))
        .await?
        .map_err(|e| format!("Runtime::new: {e:#}"))?;
    report.info(
        "library `Runtime::new` (Cranelift compile, in-process, cold)",
        ms(t.elapsed()),
    );

    // The profile every sequential figure reads.
    let seq_key = "pk_bench_sequential_0123456789abcdef";
    let seq_account = account("bench-seq", seq_key, &base)?;
    let profile_id = create_profile(&runtime, &seq_account, "bench.seq@example.com").await?;
    let client = native_client();

    // Figures 1 and 2 first: they leave a warm $KOSMO_HOME for the CLI runs of figures 3, 4
    // and 8.
    let kosmo = kosmo_binary();
    let warm_home = scratch.join("warm");
    match &kosmo {
        Ok(bin) if !wants(1) => {
            // Only the warm home the other CLI figures need.
            let one_call = format!(
                "return app.integrations.klaviyo.get_profile({{profile_id = \"{profile_id}\"}}).id"
            );
            run_kosmo(bin, &warm_home, &base, seq_key, &one_call, &[]).await?;
        }
        Err(_) if !wants(1) => {}
        Err(why) => {
            for (f, t) in [
                ("1. CLI `--eval 'return 1'`, warm cache", "< 30 ms"),
                ("2. CLI `--eval 'return 1'`, clean cache", "< 2 s"),
            ] {
                report.rows.push(Row::skipped(f, t, why.clone()));
            }
        }
        Ok(bin) => cli_startup(bin, scratch, &base, seq_key, &profile_id, report).await,
    }
    let (mut lib_per_call, mut lua_in_process, mut lua_per_call) = (f64::NAN, None, None);
    if wants(3) {
        // Figure 3: native, library, Lua in-process and the CLI, interleaved rounds.
        eprintln!(
            "figure 3: {SEQ_CALLS} sequential calls: native, library, Lua in-process, CLI ({SEQ_ROUNDS} interleaved rounds) ..."
        );
        let session = lua_session(&runtime, &seq_account);
        for _ in 0..50 {
            native_get(&client, &base, seq_key, &profile_id).await?;
            library_get(&runtime, &seq_account, &profile_id).await?;
        }
        if let Ok(session) = &session {
            let _ = lua_eval_loop(session, &profile_id, 50).await;
        }
        let cli_code = lua_loop(&profile_id, SEQ_CALLS);
        let (mut native_times, mut lib_times, mut lua_times) = (Vec::new(), Vec::new(), Vec::new());
        // Each round's kosmo / native, for judging the noise (a round's sides share its load).
        let (mut lib_ratios, mut lua_ratios) = (Vec::new(), Vec::new());
        let (mut cli_exec, mut cli_wall) = (Vec::new(), Vec::new());
        let (mut lua_error, mut cli_error) = (session.as_ref().err().cloned(), None);
        for _ in 0..SEQ_ROUNDS {
            // A round: SEQ_CALLS calls of each in-process side, in blocks of SEQ_BLOCK taken in
            // turn (native, library, Lua), so that a burst of load elsewhere hits all three.
            let (mut native, mut lib, mut lua) = (0.0, 0.0, Some(0.0));
            for _ in 0..SEQ_CALLS / SEQ_BLOCK {
                let t = Instant::now();
                for _ in 0..SEQ_BLOCK {
                    native_get(&client, &base, seq_key, &profile_id).await?;
                }
                native += t.elapsed().as_secs_f64();
                let t = Instant::now();
                for _ in 0..SEQ_BLOCK {
                    library_get(&runtime, &seq_account, &profile_id).await?;
                }
                lib += t.elapsed().as_secs_f64();
                if let (Ok(session), Some(sum)) = (&session, lua.as_mut()) {
                    match lua_eval_loop(session, &profile_id, SEQ_BLOCK).await {
                        Ok(x) => *sum += x * SEQ_BLOCK as f64,
                        Err(e) => {
                            lua_error = Some(e);
                            lua = None;
                        }
                    }
                }
            }
            let calls = (SEQ_CALLS / SEQ_BLOCK * SEQ_BLOCK) as f64;
            let (native, lib) = (native / calls, lib / calls);
            native_times.push(native);
            lib_times.push(lib);
            lib_ratios.push(lib / native);
            if let (Ok(_), Some(lua)) = (&session, lua) {
                lua_times.push(lua / calls);
                lua_ratios.push(lua / calls / native);
            }
            if let Ok(bin) = &kosmo {
                match run_kosmo(bin, &warm_home, &base, seq_key, &cli_code, &[]).await {
                    Ok((wall, envelope)) => {
                        let calls = envelope["integration_calls"].as_array().map_or(0, Vec::len);
                        match envelope["execution_time_ms"].as_f64() {
                            _ if calls != SEQ_CALLS => {
                                cli_error = Some(format!(
                                    "the envelope lists {calls} integration calls, not {SEQ_CALLS}"
                                ))
                            }
                            Some(ms) => {
                                cli_exec.push(ms / 1000.0 / SEQ_CALLS as f64);
                                cli_wall.push(wall / SEQ_CALLS as f64);
                            }
                            None => cli_error = Some("no execution_time_ms in the envelope".into()),
                        }
                    }
                    Err(e) => cli_error = Some(e),
                }
            }
        }
        let native_per_call = median(&mut native_times);
        lib_per_call = median(&mut lib_times);
        lua_in_process = (!lua_times.is_empty()).then(|| median(&mut lua_times));
        lua_per_call = (!cli_exec.is_empty()).then(|| median(&mut cli_exec));
        let measured_in = format!(
            "medians of {SEQ_ROUNDS} rounds of {SEQ_CALLS} calls each, interleaved in blocks of {SEQ_BLOCK}"
        );
        report.info(
        "native per call: hyper-util legacy client, keep-alive, GET /api/profiles/{id} + JSON parse",
        format!("{} {}", us(native_per_call), spread(&native_times)),
    );
        report.info(
            "library per call: `Runtime::call(get_profile)` in-process, no Lua",
            format!("{} {}", us(lib_per_call), spread(&lib_times)),
        );
        let lib_ratio = lib_per_call / native_per_call;
        report.rows.push(Row {
        figure: format!(
            "3. library `Runtime::call(get_profile)`, per call ({SEQ_CALLS} sequential, in-process)"
        ),
        measured: format!(
            "library {} vs native {}, {measured_in}",
            us(lib_per_call),
            us(native_per_call)
        ),
        target: format!("<= {LIBRARY_TARGET}x native"),
        ratio: format!("{lib_ratio:.2}x native"),
        pass: Some(lib_ratio <= LIBRARY_TARGET),
    });
        let lua_figure = format!(
            "3b. Lua in-process (`kosmo_lua::Session::eval` of a {SEQ_CALLS}-call loop), per call"
        );
        let lua_target = format!("<= {LUA_TARGET}x native");
        match lua_in_process {
            Some(x) => {
                let ratio = x / native_per_call;
                report.rows.push(Row {
                    figure: lua_figure,
                    measured: format!(
                        "Lua {} vs native {}, {measured_in}",
                        us(x),
                        us(native_per_call)
                    ),
                    target: lua_target,
                    ratio: format!("{ratio:.2}x native"),
                    pass: Some(ratio <= LUA_TARGET),
                });
                report.info(
                "Lua in-process per call: `Session::eval` of the loop on this runtime (no CLI process), over the library call",
                format!(
                    "{} ({} over the library call) {}",
                    us(x),
                    us(x - lib_per_call),
                    spread(&lua_times)
                ),
            );
            }
            None => report.rows.push(Row::skipped(
                &lua_figure,
                &lua_target,
                format!("not measured: {}", lua_error.unwrap_or_default()),
            )),
        }
        report.info(
            "figure 3, each round's ratio to that round's native: library / Lua in-process",
            format!(
                "{} / {}",
                ratio_range(&lib_ratios),
                ratio_range(&lua_ratios)
            ),
        );
        match (&kosmo, lua_per_call) {
            (Err(why), _) => report.info("CLI per call (`execution_time_ms`/1000)", why.clone()),
            (Ok(_), None) => report.info(
                "CLI per call (`execution_time_ms`/1000)",
                format!("not measured: {}", cli_error.clone().unwrap_or_default()),
            ),
            (Ok(_), Some(per_call)) => {
                report.info(
                format!(
                    "CLI per call: `kosmo integrations:lua --eval <{SEQ_CALLS}-call loop> --json`, `execution_time_ms`/1000"
                ),
                format!(
                    "{} ({:.2}x native) {}",
                    us(per_call),
                    per_call / native_per_call,
                    spread(&cli_exec)
                ),
            );
                let wall = median(&mut cli_wall);
                report.info(
                    "CLI per call from wall time (process start and exit included, /1000)",
                    format!("{} ({:.2}x native)", us(wall), wall / native_per_call),
                );
                if let Some(e) = cli_error {
                    report.info("CLI runs that failed", e);
                }
            }
        }
    }

    // Figure 4: a 15-request workflow, Python SDK vs kosmo, whole processes.
    if wants(4) {
        workflow(emu, &kosmo, &warm_home, report).await;
    }
    // Klaviyo's Python SDK per get_profile call (in its own process, after its imports): a
    // supporting figure beside figure 3's.
    if only.is_none() {
        python_sdk_per_call(
            &base,
            seq_key,
            &profile_id,
            lua_per_call,
            lib_per_call,
            report,
        )
        .await;
    }

    // Figure 8: 200 get_profile in one kosmo process vs curl reusing one connection.
    if wants(8) {
        against_curl(&runtime, emu, &kosmo, &warm_home, report).await?;
    }

    // Figure 5: 16 tenants x 200 calls.
    if wants(5) {
        throughput(&runtime, emu, &client, report).await?;
    }
    if !wants(6) {
        return Ok(());
    }

    // Figure 6: memory per in-flight call, with the emulator in a child process.
    let memory_figure = format!(
        "6. host memory per in-flight call ({IN_FLIGHT} calls held open by `Fault::Delay`)"
    );
    let memory_target = format!("<= {MEMORY_TARGET_MIB} MiB");
    match in_flight_memory(&runtime).await {
        Ok((per_call, native_per_req, rss_before)) => {
            // Judged on the call's own memory: the component's initialised data is one
            // read-only memory image (memfd) that every instance maps copy-on-write; its pages
            // are counted in RSS once per instance (the kernel maps the whole image on the
            // first read fault, fault-around) but exist once.
            let mib = per_call.private() / (1024.0 * 1024.0);
            report.rows.push(Row {
                figure: memory_figure,
                measured: format!(
                    "{:.1} KiB ({mib:.3} MiB) of its own: RSS {:.1} KiB, less {:.1} KiB of the component's shared memory image",
                    per_call.private() / 1024.0,
                    per_call.rss / 1024.0,
                    per_call.shared / 1024.0
                ),
                target: memory_target,
                ratio: format!("{:.2} of target", mib / MEMORY_TARGET_MIB),
                pass: Some(mib <= MEMORY_TARGET_MIB),
            });
            report.info(
                "RSS before the in-flight calls (whole bench process, emulator excluded)",
                format!("{:.1} MiB", rss_before as f64 / (1024.0 * 1024.0)),
            );
            report.info(
                "native client memory per in-flight request (same method, for comparison)",
                format!(
                    "{:.1} KiB ({:.3} MiB)",
                    native_per_req.rss / 1024.0,
                    native_per_req.rss / (1024.0 * 1024.0)
                ),
            );
        }
        Err(e) => report.rows.push(Row::skipped(
            &memory_figure,
            &memory_target,
            format!("not measured: {e}"),
        )),
    }
    if only.is_some() {
        return Ok(());
    }

    // The stage table, from the runtime's own `Stages`; the Lua and CLI layers, which the
    // runtime cannot see, follow from figure 3's per-call times.
    eprintln!(
        "stage table: {BREAKDOWN_CALLS} sequential calls, then {TENANTS} concurrent tenants ..."
    );
    match breakdown(&runtime, &client, &base, BREAKDOWN_CALLS).await {
        Ok(mut table) => {
            if let Some(lua) = lua_in_process {
                table.notes.push(Info {
                    what: "Lua layer in-process: `Session::eval` per call minus library per call (figure 3; arguments and results through Lua, sandbox, call records)".into(),
                    value: format!("{} (in-process Lua {} - library {})", us(lua - lib_per_call), us(lua), us(lib_per_call)),
                });
            }
            if let Some(cli) = lua_per_call {
                let (base, what) = match lua_in_process {
                    Some(l) => (l, "in-process Lua"),
                    None => (lib_per_call, "library"),
                };
                table.notes.push(Info {
                    what: format!("the CLI process: CLI per call (figure 3, `execution_time_ms`/1000) minus {what} per call"),
                    value: format!("{} (CLI {} - {what} {})", us(cli - base), us(cli), us(base)),
                });
            }
            report.breakdown = Some(table);
        }
        Err(e) => report.info("stage table", format!("not measured: {e}")),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Figures 1 and 2: CLI start-up

async fn cli_startup(
    bin: &Path,
    scratch: &Path,
    base: &str,
    key: &str,
    profile_id: &str,
    report: &mut Report,
) {
    let one_call = format!(
        "return app.integrations.klaviyo.get_profile({{profile_id = \"{profile_id}\"}}).id"
    );

    // Figure 2: clean caches.
    eprintln!("figure 2: first runs on a clean $KOSMO_HOME ({COLD_RUNS} each) ...");
    let mut cold = Vec::new();
    let mut cold_call = Vec::new();
    let mut cached_after_return_1 = false;
    let mut cached_after_call = false;
    let mut failure = None;
    for i in 0..COLD_RUNS {
        let home = scratch.join(format!("cold-{i}"));
        match run_kosmo(bin, &home, base, key, "return 1", &[]).await {
            Ok((t, _)) => cold.push(t),
            Err(e) => failure = Some(e),
        }
        cached_after_return_1 |= has_cache(&home);
        let home = scratch.join(format!("cold-call-{i}"));
        match run_kosmo(bin, &home, base, key, &one_call, &[]).await {
            Ok((t, _)) => cold_call.push(t),
            Err(e) => failure = Some(e),
        }
        cached_after_call |= has_cache(&home);
    }

    // Figure 1: one warm home, cache populated by a first run with a call.
    eprintln!("figure 1: warm runs ({WARM_RUNS} each) ...");
    let home = scratch.join("warm");
    let _ = run_kosmo(bin, &home, base, key, &one_call, &[]).await;
    let mut warm = Vec::new();
    let mut warm_call = Vec::new();
    for _ in 0..WARM_RUNS {
        match run_kosmo(bin, &home, base, key, "return 1", &[]).await {
            Ok((t, _)) => warm.push(t),
            Err(e) => failure = Some(e),
        }
        match run_kosmo(bin, &home, base, key, &one_call, &[]).await {
            Ok((t, _)) => warm_call.push(t),
            Err(e) => failure = Some(e),
        }
    }
    if let Some(e) = &failure {
        report.info("CLI start-up runs that failed", e.clone());
    }

    let mut push = |figure: &str, times: &mut Vec<f64>, target_s: f64, target: &str| {
        if times.is_empty() {
            report.rows.push(Row::skipped(
                figure,
                target,
                failure.clone().unwrap_or_default(),
            ));
            return;
        }
        let m = median(times);
        report.rows.push(Row {
            figure: format!("{figure} (median of {})", times.len()),
            measured: ms(Duration::from_secs_f64(m)),
            target: target.into(),
            ratio: format!("{:.2} of target", m / target_s),
            pass: Some(m < target_s),
        });
    };
    push(
        "1. CLI `--eval 'return 1' --json`, warm cache, wall",
        &mut warm,
        0.030,
        "< 30 ms",
    );
    push(
        "1b. CLI, one get_profile call, warm cache, wall",
        &mut warm_call,
        0.030,
        "< 30 ms",
    );
    push(
        "2. CLI `--eval 'return 1' --json`, clean cache, wall",
        &mut cold,
        2.0,
        "< 2 s",
    );
    push(
        "2b. CLI, one get_profile call, clean cache (compile + cache), wall",
        &mut cold_call,
        2.0,
        "< 2 s",
    );
    report.info(
        "`$KOSMO_HOME/cache` populated by `--eval 'return 1'` / by a run with one call",
        format!(
            "{} / {}",
            if cached_after_return_1 {
                "yes"
            } else {
                "no (the component is loaded on the first call)"
            },
            if cached_after_call { "yes" } else { "no" }
        ),
    );
}

fn has_cache(home: &Path) -> bool {
    std::fs::read_dir(home.join("cache"))
        .map(|d| {
            d.flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        })
        .unwrap_or(false)
}

/// Run `kosmo integrations:lua [EXTRA...] --eval CODE --json` once; wall time (spawn to exit)
/// and the JSON envelope.
async fn run_kosmo(
    bin: &Path,
    home: &Path,
    base: &str,
    key: &str,
    code: &str,
    extra: &[&str],
) -> Result<(f64, Value), String> {
    let mut cmd = Command::new(bin);
    cmd.arg("integrations:lua")
        .args(extra)
        .args(["--eval", code, "--json"])
        .env("KOSMO_HOME", home)
        .env("KLAVIYO_API_KEY", key)
        .env("KLAVIYO_BASE_URL", base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Blocking wait on a blocking thread: the emulator keeps serving on the workers.
    let (elapsed, out) = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let out = cmd.output();
        (t.elapsed().as_secs_f64(), out)
    })
    .await
    .map_err(|e| e.to_string())?;
    let out = out.map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    let envelope: Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        format!(
            "exit {:?}, no JSON envelope: {}{}",
            out.status.code(),
            excerpt(&String::from_utf8_lossy(&out.stdout)),
            excerpt(&String::from_utf8_lossy(&out.stderr))
        )
    })?;
    if envelope["success"] != json!(true) || !out.status.success() {
        return Err(format!(
            "exit {:?}, error: {}",
            out.status.code(),
            excerpt(&envelope["error"].to_string())
        ));
    }
    Ok((elapsed, envelope))
}

// ---------------------------------------------------------------------------------------------
// Figure 3: the Lua layer

/// A Lua session in this process, on `runtime` (no second compile), whose default account is
/// `acct`: what the CLI builds, without the CLI process around it.
fn lua_session(runtime: &Runtime, acct: &Account) -> Result<Session, String> {
    let host = Host::new(
        vec![AccountConfig {
            account: Account {
                name: DEFAULT_ACCOUNT.into(),
                ..acct.clone()
            },
            policy: Policy::default(),
        }],
        HostOptions {
            runtime: runtime.config().clone(),
            ..Default::default()
        },
    )
    .with_runtime(runtime.clone());
    Session::new(Arc::new(host), Limits::default())
}

/// Per call of the figure-3 script with `n` calls, run by the session.
async fn lua_eval_loop(session: &Session, profile_id: &str, n: usize) -> Result<f64, String> {
    let outcome = session.eval(&lua_loop(profile_id, n), "=bench").await;
    if !outcome.success {
        return Err(format!(
            "the script failed: {}",
            outcome.error.unwrap_or_default()
        ));
    }
    Ok(outcome.duration.as_secs_f64() / n as f64)
}

fn lua_loop(profile_id: &str, n: usize) -> String {
    format!(
        "local id = \"{profile_id}\"\n\
         for i = 1, {n} do app.integrations.klaviyo.get_profile({{profile_id = id}}) end\n\
         return {n}"
    )
}

// ---------------------------------------------------------------------------------------------
// Figure 4: a 15-request workflow, Klaviyo's Python SDK vs kosmo, as whole processes

/// `benches/python_sdk.py` (or `$KOSMO_BENCH_PYTHON_SDK`), if python3 can import the SDK.
fn python_script() -> Result<PathBuf, String> {
    let script = std::env::var_os("KOSMO_BENCH_PYTHON_SDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../benches/python_sdk.py")
        });
    let import_ok = Command::new("python3")
        .args(["-c", "import klaviyo_api"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !import_ok {
        return Err("skipped: pip install klaviyo-api".into());
    }
    if !script.is_file() {
        return Err(format!(
            "skipped: {} not found (set KOSMO_BENCH_PYTHON_SDK)",
            script.display()
        ));
    }
    Ok(script)
}

/// kosmo's side of figure 4: the same 15 requests as `python_sdk.py workflow`, in the same
/// order (list_campaigns is two: its email and SMS streams).
fn workflow_lua(email: &str) -> String {
    format!(
        r#"local k = app.integrations.klaviyo
local email = "{email}"
local p = k.create_profile({{email = email, first_name = "Ada"}})
k.get_profile({{profile_id = p.id}})
k.update_profile({{profile_id = p.id, last_name = "Lovelace"}})
local list = k.create_list({{name = "Workflow " .. email}})
k.get_list({{list_id = list.id}})
k.subscribe_profile({{list_id = list.id, email = email}})
k.list_profiles({{limit = 20}})
k.create_event({{profile_id = p.id, event_name = "Placed Order", value = 42.5}})
k.list_events({{limit = 20}})
k.list_metrics({{}})
k.list_lists({{}})
local flows = k.list_flows({{limit = 20}})
k.get_flow({{flow_id = flows.items[1].id}})
k.list_campaigns({{limit = 20}})
return p.id"#
    )
}

/// What the emulator received for `key` (a key used by one process only): exactly
/// `expected` requests, every one answered 2xx.
fn check_requests(emu: &Emulator, key: &str, expected: usize, who: &str) -> Result<(), String> {
    let requests = emu.requests(key);
    if requests.len() != expected {
        let seen: Vec<String> = requests
            .iter()
            .map(|r| format!("{} {} {}", r.method, r.path, r.status))
            .collect();
        return Err(format!(
            "request count mismatch: {who} made {} requests, not {expected}: {}",
            requests.len(),
            excerpt(&seen.join(", "))
        ));
    }
    if let Some(r) = requests.iter().find(|r| !(200..300).contains(&r.status)) {
        return Err(format!(
            "{who}: {} {} was answered {}",
            r.method, r.path, r.status
        ));
    }
    Ok(())
}

/// Run `python3 SCRIPT workflow BASE KEY EMAIL` once; wall time (spawn to exit) and its JSON.
async fn run_python_workflow(
    script: &Path,
    base: &str,
    key: &str,
    email: &str,
) -> Result<(f64, Value), String> {
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .args(["workflow", base, key, email])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (elapsed, out) = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let out = cmd.output();
        (t.elapsed().as_secs_f64(), out)
    })
    .await
    .map_err(|e| e.to_string())?;
    let out = out.map_err(|e| format!("cannot run python3: {e}"))?;
    let value: Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        format!(
            "exit {:?}, no JSON from the script: {}{}",
            out.status.code(),
            excerpt(&String::from_utf8_lossy(&out.stdout)),
            excerpt(&String::from_utf8_lossy(&out.stderr))
        )
    })?;
    if !out.status.success() || value["requests"].as_u64() != Some(WORKFLOW_REQUESTS as u64) {
        return Err(format!(
            "exit {:?}: the script said {}",
            out.status.code(),
            excerpt(&value.to_string())
        ));
    }
    Ok((elapsed, value))
}

/// Figure 4: `python3 benches/python_sdk.py workflow ...` against `kosmo integrations:lua
/// --force --eval WORKFLOW --json` (warm $KOSMO_HOME), whole processes, alternating, a fresh
/// key (so a fresh emulator account) and email per run; after a warm-up run of each.
async fn workflow(
    emu: &Emulator,
    kosmo: &Result<PathBuf, String>,
    warm_home: &Path,
    report: &mut Report,
) {
    let figure = format!(
        "4. a {WORKFLOW_REQUESTS}-request workflow as a whole process: Python SDK vs kosmo CLI (wall, spawn to exit)"
    );
    let target = format!("kosmo >= {WORKFLOW_TARGET:.0}x faster");
    let bin = match kosmo {
        Ok(bin) => bin,
        Err(why) => {
            return report
                .rows
                .push(Row::skipped(&figure, &target, why.clone()));
        }
    };
    let script = match python_script() {
        Ok(script) => script,
        Err(why) => {
            println!("- figure 4 {why}");
            return report.rows.push(Row::skipped(&figure, &target, why));
        }
    };
    eprintln!(
        "figure 4: a {WORKFLOW_REQUESTS}-request workflow, Python SDK vs kosmo, whole processes ({WORKFLOW_RUNS} runs each, alternating) ..."
    );
    let base = emu.base_url();
    let tag = std::process::id();
    let (mut py_wall, mut py_import, mut py_objects, mut py_requests) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ko_wall, mut ko_exec, mut ko_first) = (Vec::new(), Vec::new(), Vec::new());
    let mut sdk = String::new();
    let mut failure = None;
    // Run 0 of each side is a warm-up (the page cache, Python's byte code), not counted.
    for run in 0..=WORKFLOW_RUNS {
        let key = format!("pk_bench_wf_py_{tag}_{run}_0123456789abcdef");
        let email = format!("wf.py.{tag}.{run}@example.com");
        let python = run_python_workflow(&script, &base, &key, &email)
            .await
            .and_then(|r| {
                check_requests(emu, &key, WORKFLOW_REQUESTS, "the Python SDK").map(|_| r)
            });
        match python {
            Ok((wall, v)) if run > 0 => {
                py_wall.push(wall);
                py_import.push(v["import_s"].as_f64().unwrap_or(f64::NAN));
                py_objects.push(v["api_objects_s"].as_f64().unwrap_or(f64::NAN));
                py_requests.push(v["requests_s"].as_f64().unwrap_or(f64::NAN));
                sdk = format!(
                    "klaviyo-api {} / Python {}",
                    v["sdk_version"].as_str().unwrap_or("?"),
                    v["python"].as_str().unwrap_or("?")
                );
            }
            Ok(_) => {}
            Err(e) => failure = Some(format!("Python SDK: {e}")),
        }

        let key = format!("pk_bench_wf_kosmo_{tag}_{run}_0123456789abcdef");
        let email = format!("wf.kosmo.{tag}.{run}@example.com");
        // --force: the workflow writes, and a run without a terminal cannot ask.
        let kosmo = run_kosmo(
            bin,
            warm_home,
            &base,
            &key,
            &workflow_lua(&email),
            &["--force"],
        )
        .await
        .and_then(|r| check_requests(emu, &key, WORKFLOW_REQUESTS, "kosmo").map(|_| r));
        match kosmo {
            Ok((wall, envelope)) if run > 0 => {
                ko_wall.push(wall);
                ko_exec.push(envelope["execution_time_ms"].as_f64().unwrap_or(f64::NAN) / 1e3);
                ko_first.push(
                    envelope["integration_calls"][0]["duration_ms"]
                        .as_f64()
                        .unwrap_or(f64::NAN)
                        / 1e3,
                );
            }
            Ok(_) => {}
            Err(e) => failure = Some(format!("kosmo: {e}")),
        }
    }
    if let Some(e) = &failure {
        report.info("figure 4 runs that failed (not counted)", e.clone());
    }
    if py_wall.is_empty() || ko_wall.is_empty() || failure.is_some() {
        return report.rows.push(Row::skipped(
            &figure,
            &target,
            format!("not measured: {}", failure.unwrap_or_default()),
        ));
    }
    let (py, ko) = (median(&mut py_wall), median(&mut ko_wall));
    let speedup = py / ko;
    report.rows.push(Row {
        figure,
        measured: format!(
            "Python {} vs kosmo {}, medians of {WORKFLOW_RUNS} runs each ({WORKFLOW_REQUESTS} requests each, counted by the emulator)",
            ms_f(py),
            ms_f(ko)
        ),
        target,
        ratio: format!("kosmo {speedup:.0}x faster"),
        pass: Some(speedup >= WORKFLOW_TARGET),
    });
    let (import, objects, requests) = (
        median(&mut py_import),
        median(&mut py_objects),
        median(&mut py_requests),
    );
    report.info(
        "figure 4, Python (medians): interpreter start-up and exit / `import klaviyo_api` + client / the six API objects (generated API modules and models imported) / the 15 requests",
        format!(
            "{} / {} / {} / {} ({} per request); {sdk}",
            ms_f(py - import - objects - requests),
            ms_f(import),
            ms_f(objects),
            ms_f(requests),
            ms_f(requests / WORKFLOW_REQUESTS as f64)
        ),
    );
    let (exec, first) = (median(&mut ko_exec), median(&mut ko_first));
    report.info(
        "figure 4, kosmo (medians): process, Lua set-up and envelope (wall - `execution_time_ms`) / first call (create_profile: loads the cached component) / the other 14 calls",
        format!(
            "{} / {} / {}",
            ms_f(ko - exec),
            ms_f(first),
            ms_f(exec - first)
        ),
    );
}

/// Klaviyo's Python SDK doing `SEQ_CALLS` get_profile in one process, timed inside it after its
/// imports and one warm-up call: a supporting figure beside figure 3's per-call times.
async fn python_sdk_per_call(
    base: &str,
    key: &str,
    profile_id: &str,
    lua_per_call: Option<f64>,
    lib_per_call: f64,
    report: &mut Report,
) {
    let what = format!(
        "Python SDK per get_profile call (`python_sdk.py` loop of {SEQ_CALLS}, timed in-process after its imports)"
    );
    let script = match python_script() {
        Ok(script) => script,
        Err(why) => return report.info(what, why),
    };
    eprintln!("the Python SDK doing {SEQ_CALLS} get_profile calls ...");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .args([base, key, profile_id, &SEQ_CALLS.to_string()])
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || cmd.output()).await;
    let parsed = match out {
        Ok(Ok(out)) => serde_json::from_slice::<Value>(&out.stdout).map_err(|_| {
            format!(
                "no JSON from the script: {}{}",
                excerpt(&String::from_utf8_lossy(&out.stdout)),
                excerpt(&String::from_utf8_lossy(&out.stderr))
            )
        }),
        Ok(Err(e)) => Err(format!("cannot run python3: {e}")),
        Err(e) => Err(e.to_string()),
    };
    match parsed.and_then(|v| {
        v["elapsed_s"]
            .as_f64()
            .ok_or_else(|| format!("the script said {}", excerpt(&v.to_string())))
    }) {
        Err(e) => report.info(what, format!("not measured: {e}")),
        Ok(elapsed) => {
            let py = elapsed / SEQ_CALLS as f64;
            let (kosmo, which) = match lua_per_call {
                Some(l) => (l, "the CLI's per call"),
                None => (lib_per_call, "the library's per call"),
            };
            report.info(
                what,
                format!("{} ({:.1}x {which}, {})", us(py), py / kosmo, us(kosmo)),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Figure 8: 200 get_profile in one kosmo process vs curl reusing one connection

/// Run curl once with `args`; wall time (spawn to exit) and its standard output.
async fn run_curl(args: Arc<Vec<String>>) -> Result<(f64, String), String> {
    let (elapsed, out) = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("curl");
        cmd.args(args.iter())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let t = Instant::now();
        let out = cmd.output();
        (t.elapsed().as_secs_f64(), out)
    })
    .await
    .map_err(|e| e.to_string())?;
    let out = out.map_err(|e| format!("cannot run curl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "curl exited {:?}: {}",
            out.status.code(),
            excerpt(&String::from_utf8_lossy(&out.stderr))
        ));
    }
    Ok((elapsed, String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Figure 8: `kosmo integrations:lua --eval <CURL_CALLS-call loop> --json` (warm $KOSMO_HOME)
/// against one curl process fetching the same URL `CURL_CALLS` times with kosmo's headers (one
/// connection, reused), whole processes, interleaved rounds (which side goes first alternates),
/// after a warm-up run of each.
async fn against_curl(
    runtime: &Runtime,
    emu: &Emulator,
    kosmo: &Result<PathBuf, String>,
    warm_home: &Path,
    report: &mut Report,
) -> Result<(), AnyError> {
    let figure = format!(
        "8. {CURL_CALLS} sequential get_profile in one process: kosmo CLI vs curl on one connection (wall, spawn to exit)"
    );
    let target = format!("<= {CURL_TARGET}x curl");
    let bin = match kosmo {
        Ok(bin) => bin,
        Err(why) => {
            report
                .rows
                .push(Row::skipped(&figure, &target, why.clone()));
            return Ok(());
        }
    };
    let curl_version = Command::new("curl")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        });
    let Some(curl_version) = curl_version else {
        report
            .rows
            .push(Row::skipped(&figure, &target, "skipped: no curl on PATH"));
        return Ok(());
    };
    eprintln!(
        "figure 8: {CURL_CALLS} get_profile in one process, kosmo vs curl ({CURL_ROUNDS} interleaved rounds) ..."
    );
    let base = emu.base_url();
    let key = "pk_bench_curl_0123456789abcdef";
    let acct = account("bench-curl", key, &base)?;
    let id = create_profile(runtime, &acct, "bench.curl@example.com").await?;
    let url = format!("{base}/api/profiles/{id}");
    // The headers kosmo sends; `-o /dev/null` pairs with each URL in turn; one line per
    // transfer: its status and the connections it opened (0: reused).
    let mut args: Vec<String> = [
        "--silent",
        "--show-error",
        "--fail",
        "-H",
        &format!("Authorization: Klaviyo-API-Key {key}"),
        "-H",
        &format!("revision: {REVISION}"),
        "-H",
        "accept: application/vnd.api+json",
        "--write-out",
        "%{http_code} %{num_connects}\\n",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for _ in 0..CURL_CALLS {
        args.extend(["-o".to_string(), "/dev/null".to_string(), url.clone()]);
    }
    let args = Arc::new(args);
    let code = lua_loop(&id, CURL_CALLS);

    let (mut ko_wall, mut ko_exec, mut ko_first) = (Vec::new(), Vec::new(), Vec::new());
    let (mut curl_wall, mut connects) = (Vec::new(), Vec::new());
    let mut failure = None;
    for round in 0..=CURL_ROUNDS {
        for side in [round % 2, 1 - round % 2] {
            emu.clear_requests(key);
            if side == 0 {
                let run = run_kosmo(bin, warm_home, &base, key, &code, &[])
                    .await
                    .and_then(|(wall, envelope)| {
                        let calls = envelope["integration_calls"].as_array().map_or(0, Vec::len);
                        if calls != CURL_CALLS {
                            return Err(format!(
                                "kosmo: the envelope lists {calls} calls, not {CURL_CALLS}"
                            ));
                        }
                        check_requests(emu, key, CURL_CALLS, "kosmo")?;
                        Ok((wall, envelope))
                    });
                match run {
                    Ok((wall, envelope)) if round > 0 => {
                        ko_wall.push(wall);
                        ko_exec
                            .push(envelope["execution_time_ms"].as_f64().unwrap_or(f64::NAN) / 1e3);
                        ko_first.push(
                            envelope["integration_calls"][0]["duration_ms"]
                                .as_f64()
                                .unwrap_or(f64::NAN)
                                / 1e3,
                        );
                    }
                    Ok(_) => {}
                    Err(e) => failure = Some(e),
                }
            } else {
                let run = run_curl(args.clone()).await.and_then(|(wall, out)| {
                    let lines: Vec<&str> = out.lines().collect();
                    if lines.len() != CURL_CALLS || lines.iter().any(|l| !l.starts_with("200 ")) {
                        return Err(format!(
                            "curl: {} transfers, not {CURL_CALLS} answered 200: {}",
                            lines.len(),
                            excerpt(&out)
                        ));
                    }
                    check_requests(emu, key, CURL_CALLS, "curl")?;
                    let opened: u64 = lines
                        .iter()
                        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                        .sum();
                    Ok((wall, opened))
                });
                match run {
                    Ok((wall, opened)) if round > 0 => {
                        curl_wall.push(wall);
                        connects.push(opened as f64);
                    }
                    Ok(_) => {}
                    Err(e) => failure = Some(e),
                }
            }
        }
    }
    emu.clear_requests(key);
    if let Some(e) = &failure {
        report.info("figure 8 runs that failed (not counted)", e.clone());
    }
    if ko_wall.is_empty() || curl_wall.is_empty() || failure.is_some() {
        report.rows.push(Row::skipped(
            &figure,
            &target,
            format!("not measured: {}", failure.unwrap_or_default()),
        ));
        return Ok(());
    }
    let (ko, curl) = (median(&mut ko_wall), median(&mut curl_wall));
    let ratio = ko / curl;
    report.rows.push(Row {
        figure,
        measured: format!(
            "kosmo {} vs curl {}, medians of {CURL_ROUNDS} interleaved rounds ({CURL_CALLS} requests each, counted by the emulator)",
            ms_f(ko),
            ms_f(curl)
        ),
        target,
        ratio: format!("{ratio:.2}x curl"),
        pass: Some(ratio <= CURL_TARGET),
    });
    let (exec, first) = (median(&mut ko_exec), median(&mut ko_first));
    report.info(
        "figure 8, kosmo (medians): process, Lua set-up and envelope (wall - `execution_time_ms`) / first call (loads the cached component) / the other calls, per call",
        format!(
            "{} / {} / {} per call",
            ms_f(ko - exec),
            ms_f(first),
            us((exec - first) / (CURL_CALLS - 1) as f64)
        ),
    );
    report.info(
        "figure 8, curl: per request (wall / 200, start-up included) / connections opened per run",
        format!(
            "{} / {:.0} ({curl_version})",
            us(curl / CURL_CALLS as f64),
            median(&mut connects)
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Figure 5: concurrent throughput

async fn throughput(
    runtime: &Runtime,
    emu: &Emulator,
    client: &NativeClient,
    report: &mut Report,
) -> Result<(), AnyError> {
    eprintln!(
        "figure 5: {TENANTS} tenants x {CALLS_PER_TENANT} calls, native vs library ({THROUGHPUT_ROUNDS} alternating rounds) ..."
    );
    let base = emu.base_url();
    let tenants = make_tenants(runtime, &base, "tenant", TENANTS).await?;
    // Warm up both sides.
    run_native_tenants(client, &base, &tenants, 10).await?;
    run_kosmo_tenants(runtime, &tenants, 10).await?;
    let total = (TENANTS * CALLS_PER_TENANT) as f64;
    let (mut native, mut kosmo) = (Vec::new(), Vec::new());
    let (mut native_cpu, mut kosmo_cpu) = ((0.0, 0.0), (0.0, 0.0));
    // Which side goes first alternates from round to round.
    for round in 0..THROUGHPUT_ROUNDS {
        for side in [round % 2, 1 - round % 2] {
            let (t, cpu) = (Instant::now(), cpu_seconds());
            if side == 0 {
                run_native_tenants(client, &base, &tenants, CALLS_PER_TENANT).await?;
            } else {
                run_kosmo_tenants(runtime, &tenants, CALLS_PER_TENANT).await?;
            }
            let rate = total / t.elapsed().as_secs_f64();
            let used = cpu_seconds();
            let (rates, sum) = if side == 0 {
                (&mut native, &mut native_cpu)
            } else {
                (&mut kosmo, &mut kosmo_cpu)
            };
            rates.push(rate);
            *sum = (sum.0 + used.0 - cpu.0, sum.1 + used.1 - cpu.1);
        }
    }
    let calls = total * THROUGHPUT_ROUNDS as f64;
    let per = |(user, sys): (f64, f64)| {
        format!(
            "{} ({} user + {} kernel)",
            us((user + sys) / calls),
            us(user / calls),
            us(sys / calls)
        )
    };
    report.info(
        "figure 5, throughput per round: kosmo / native",
        format!(
            "{} / {} calls/s",
            kosmo
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", "),
            native
                .iter()
                .map(|x| format!("{x:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let native = median(&mut native);
    let kosmo = median(&mut kosmo);
    let share = kosmo / native;
    report.rows.push(Row {
        figure: format!(
            "5. throughput, {TENANTS} tenants x {CALLS_PER_TENANT} calls, {TENANTS} concurrent (library `Runtime::call`)"
        ),
        measured: format!(
            "kosmo {kosmo:.0} calls/s vs native {native:.0} req/s, medians of {THROUGHPUT_ROUNDS} alternating rounds"
        ),
        target: format!(">= {:.0}% of native", THROUGHPUT_TARGET * 100.0),
        ratio: format!("{:.0}% of native", share * 100.0),
        pass: Some(share >= THROUGHPUT_TARGET),
    });
    let (kosmo_cpu_call, native_cpu_call) = (
        (kosmo_cpu.0 + kosmo_cpu.1) / calls,
        (native_cpu.0 + native_cpu.1) / calls,
    );
    let cpu_ratio = kosmo_cpu_call / native_cpu_call;
    report.rows.push(Row {
        figure: "5b. CPU time per call during figure 5 (user + kernel, whole bench process: the in-process emulator's share included on both sides)".into(),
        measured: format!(
            "kosmo {} vs native {}, summed over {THROUGHPUT_ROUNDS} rounds",
            us(kosmo_cpu_call),
            us(native_cpu_call)
        ),
        target: format!("<= {CPU_TARGET}x native"),
        ratio: format!("{cpu_ratio:.2}x native"),
        pass: Some(native_cpu_call > 0.0 && cpu_ratio <= CPU_TARGET),
    });
    report.info(
        "figure 5, CPU time per call (`/proc/self/stat`, whole bench process, emulator included): kosmo / native",
        format!("{} / {}", per(kosmo_cpu), per(native_cpu)),
    );

    Ok(())
}

/// `TENANTS` accounts (one key each, so separate accounts in the emulator too), each with a
/// profile of its own to read: (key, account, profile id).
type Tenants = Arc<Vec<(String, Account, String)>>;

async fn make_tenants(
    runtime: &Runtime,
    base: &str,
    label: &str,
    count: usize,
) -> Result<Tenants, AnyError> {
    let mut tenants = Vec::new();
    for i in 0..count {
        let key = format!("pk_bench_{label}_{i:02}_0123456789abcdef");
        let acct = account(&format!("{label}-{i:02}"), &key, base)?;
        let id = create_profile(runtime, &acct, &format!("{label}{i}@example.com")).await?;
        tenants.push((key, acct, id));
    }
    Ok(Arc::new(tenants))
}

async fn run_native_tenants(
    client: &NativeClient,
    base: &str,
    tenants: &Tenants,
    calls: usize,
) -> Result<Vec<f64>, AnyError> {
    let mut tasks = Vec::new();
    for i in 0..tenants.len() {
        let (client, base, tenants) = (client.clone(), base.to_string(), tenants.clone());
        tasks.push(tokio::spawn(async move {
            let (key, _, id) = &tenants[i];
            let mut times = Vec::with_capacity(calls);
            for _ in 0..calls {
                let t = Instant::now();
                native_get(&client, &base, key, id).await?;
                times.push(t.elapsed().as_secs_f64());
            }
            Ok::<_, AnyError>(times)
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await??);
    }
    Ok(times)
}

/// Every tenant's calls at once, one task per tenant; the stages of every call (two clock
/// reads and a few pushes per call: nothing against a call's hundreds of microseconds, so
/// figure 5 uses the same loop).
async fn run_kosmo_tenants(
    runtime: &Runtime,
    tenants: &Tenants,
    calls: usize,
) -> Result<StageSamples, AnyError> {
    let mut tasks = Vec::new();
    for i in 0..tenants.len() {
        let (runtime, tenants) = (runtime.clone(), tenants.clone());
        tasks.push(tokio::spawn(async move {
            let (_, acct, id) = &tenants[i];
            let mut samples = StageSamples::default();
            for _ in 0..calls {
                staged_get(&runtime, acct, id, &mut samples).await?;
            }
            Ok::<_, AnyError>(samples)
        }));
    }
    let mut samples = StageSamples::default();
    for t in tasks {
        samples.extend(t.await??);
    }
    Ok(samples)
}

// ---------------------------------------------------------------------------------------------
// Figure 6: memory per in-flight call

/// A child process serving an emulator (this binary with `--emulator-child`), so that the
/// emulator's memory is not counted in ours.
struct ChildEmulator {
    child: Child,
    io: Mutex<(ChildStdin, BufReader<ChildStdout>)>,
    base: String,
}

impl ChildEmulator {
    fn spawn() -> Result<ChildEmulator, AnyError> {
        // /proc/self/exe: the running image, even if a build has replaced the file since.
        // Under valgrind that is valgrind itself: KOSMO_BENCH_CHILD_EXE names the binary.
        let exe = if let Some(exe) = std::env::var_os("KOSMO_BENCH_CHILD_EXE") {
            PathBuf::from(exe)
        } else if Path::new("/proc/self/exe").exists() {
            PathBuf::from("/proc/self/exe")
        } else {
            std::env::current_exe()?
        };
        let mut child = Command::new(exe)
            .arg("--emulator-child")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("no stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut base = String::new();
        stdout.read_line(&mut base)?;
        let base = base.trim().to_string();
        if !base.starts_with("http://") {
            return Err(format!("the emulator child said {base:?}").into());
        }
        Ok(ChildEmulator {
            child,
            io: Mutex::new((stdin, stdout)),
            base,
        })
    }

    fn command(&self, line: &str) -> Result<String, AnyError> {
        tokio::task::block_in_place(|| {
            let mut io = self.io.lock().unwrap_or_else(|p| p.into_inner());
            writeln!(io.0, "{line}")?;
            io.0.flush()?;
            let mut answer = String::new();
            io.1.read_line(&mut answer)?;
            Ok(answer.trim().to_string())
        })
    }

    fn request_count(&self, key: &str) -> Result<usize, AnyError> {
        Ok(self.command(&format!("count {key}"))?.parse()?)
    }
}

impl Drop for ChildEmulator {
    fn drop(&mut self) {
        let _ = self.command("quit");
        let _ = self.child.wait();
    }
}

/// Returns (bytes per kosmo call, bytes per native request, RSS before).
async fn in_flight_memory(runtime: &Runtime) -> Result<(PerRequest, PerRequest, u64), AnyError> {
    eprintln!(
        "figure 6: {IN_FLIGHT} calls held in flight for {} s ...",
        HOLD.as_secs()
    );
    let emu = ChildEmulator::spawn()?;
    let key = "pk_bench_memory_0123456789abcdef";
    let acct = account("bench-mem", key, &emu.base)?;
    let runtime = runtime.with_config(RuntimeConfig {
        max_concurrent_calls_per_account: IN_FLIGHT * 4,
        ..runtime.config().clone()
    });
    let id = create_profile(&runtime, &acct, "bench.mem@example.com").await?;
    for _ in 0..20 {
        library_get(&runtime, &acct, &id).await?;
    }

    let (per_call, before) = {
        let runtime = runtime.clone();
        let acct = acct.clone();
        let id = id.clone();
        hold_in_flight(&emu, key, move || {
            let (runtime, acct, id) = (runtime.clone(), acct.clone(), id.clone());
            tokio::spawn(async move { library_get(&runtime, &acct, &id).await })
        })
        .await?
    };
    let native_per_req = {
        let client = native_client();
        let base = emu.base.clone();
        let id = id.clone();
        hold_in_flight(&emu, key, move || {
            let (client, base, id) = (client.clone(), base.clone(), id.clone());
            tokio::spawn(async move { native_get(&client, &base, key, &id).await })
        })
        .await?
        .0
    };
    Ok((per_call, native_per_req, before))
}

/// Growth of the process's memory per in-flight request: resident in all (`VmRSS`), and of it
/// the shared memory pages (`RssShmem`).
#[derive(Clone, Copy, Default)]
struct PerRequest {
    rss: f64,
    shared: f64,
}

impl PerRequest {
    /// What is the request's own: resident pages less those shared with every other instance.
    fn private(self) -> f64 {
        self.rss - self.shared
    }
}

/// Start `IN_FLIGHT` requests that the emulator holds for `HOLD`; memory growth per request
/// once all have reached the emulator, and the RSS before.
async fn hold_in_flight(
    emu: &ChildEmulator,
    key: &str,
    spawn: impl Fn() -> tokio::task::JoinHandle<Result<(), AnyError>>,
) -> Result<(PerRequest, u64), AnyError> {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = memory();
    let arrived = emu.request_count(key)?;
    emu.command(&format!("delay {key} {} {IN_FLIGHT}", HOLD.as_millis()))?;
    let tasks: Vec<_> = (0..IN_FLIGHT).map(|_| spawn()).collect();
    let deadline = Instant::now() + HOLD;
    while emu.request_count(key)? < arrived + IN_FLIGHT {
        if Instant::now() > deadline {
            return Err("the calls did not all reach the emulator in time".into());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut peak = (0, 0);
    for _ in 0..10 {
        let (rss, shared) = memory();
        peak = (peak.0.max(rss), peak.1.max(shared));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for t in tasks {
        t.await??;
    }
    let per = |after: u64, before: u64| after.saturating_sub(before) as f64 / IN_FLIGHT as f64;
    Ok((
        PerRequest {
            rss: per(peak.0, before.0),
            shared: per(peak.1, before.1),
        },
        before.0,
    ))
}

/// CPU time this process has used so far: (user, kernel) seconds, from /proc/self/stat.
fn cpu_seconds() -> (f64, f64) {
    let ticks = 100.0; // USER_HZ: 100 on Linux
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name (which may hold spaces) start at field 3.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some((
                f.get(11)?.parse::<f64>().ok()? / ticks,
                f.get(12)?.parse::<f64>().ok()? / ticks,
            ))
        })
        .unwrap_or((0.0, 0.0))
}

/// Resident set size of this process and its shared-memory part (`VmRSS` and `RssShmem` of
/// /proc/self/status), in bytes.
fn memory() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmRSS:"), field("RssShmem:"))
}

async fn emulator_child() -> i32 {
    let emu = match Emulator::start_with(EmulatorOptions {
        validate_requests: false,
        ..Default::default()
    })
    .await
    {
        Ok(e) => e,
        Err(e) => {
            println!("error {e}");
            return 1;
        }
    };
    println!("{}", emu.base_url());
    let _ = std::io::stdout().flush();
    let served = tokio::task::spawn_blocking(move || {
        let stdin = std::io::stdin();
        let mut out = std::io::stdout();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            let words: Vec<&str> = line.split_whitespace().collect();
            let answer = match words.as_slice() {
                ["delay", key, ms, n] => {
                    let ms: u64 = ms.parse().unwrap_or(1000);
                    for _ in 0..n.parse::<usize>().unwrap_or(1) {
                        emu.inject_fault(key, Fault::Delay(Duration::from_millis(ms)));
                    }
                    "ok".to_string()
                }
                ["count", key] => emu.request_count(key).to_string(),
                ["quit"] => break,
                _ => "?".to_string(),
            };
            if writeln!(out, "{answer}").and_then(|_| out.flush()).is_err() {
                break;
            }
        }
    });
    let _ = served.await;
    0
}

// ---------------------------------------------------------------------------------------------
// The stage table: the runtime's own `Stages`, summarised over many calls

/// The lines of the stage table: (stage, what it covers). All but the last come from each
/// call's `CallOutcome` (see `StageSamples::push`); the last is the native client's whole
/// call, for scale.
const STAGE_LINES: [(&str, &str); 11] = [
    (
        "queued",
        "`Stages::queued`: the account's concurrency limiter looked up, a permit taken",
    ),
    (
        "convert_args",
        "`Stages::convert_args`: JSON arguments to the component's argument record",
    ),
    (
        "instantiate",
        "`Stages::instantiate`: a fresh instance in the call's Store (pooling allocator slot), export looked up; for a reused instance (`Stages::reused`), only the Store's reset",
    ),
    (
        "guest",
        "`Stages::guest`: the exported function, call to return (= the two lines below)",
    ),
    (
        "http (in guest)",
        "`Stages::http`, inside guest: each request's send to its response head (egress policy, keep-alive pool, loopback, the emulator's work)",
    ),
    (
        "guest - http",
        "guest work + wasi-http plumbing: the component's code, request building, reading the response body, fuel metering",
    ),
    (
        "convert_result",
        "`Stages::convert_result`: the result record to JSON",
    ),
    (
        "other",
        "`duration` minus the stages: function lookup, WASI and wasi-http contexts, `Store::new`, fuel, the Store dropped (slot back to the pool), exchange log",
    ),
    (
        "= total",
        "`CallOutcome::duration`: the runtime's clock, whole call",
    ),
    (
        "wall around `call_with_log`",
        "the bench's own clock around the call (a check: about the total)",
    ),
    (
        "native GET + JSON parse",
        "the native keep-alive client, same request (for scale; not a stage)",
    ),
];
/// Lines measured from a `CallOutcome` (all but the native one).
const CALL_LINES: usize = STAGE_LINES.len() - 1;
/// Index of the total, which the other lines are given as a share of.
const TOTAL_LINE: usize = 8;
/// Index of `instantiate`.
const INSTANTIATE_LINE: usize = 2;

/// Per-call samples, in seconds, of each line of `STAGE_LINES` measured from a call.
#[derive(Default)]
struct StageSamples {
    lines: [Vec<f64>; CALL_LINES],
    /// HTTP requests the calls made (a retry would hide in `http`; this shows it).
    requests: usize,
    /// Wasm instructions (fuel) per call: instance start-up (of the calls that instantiated),
    /// and the exported function (of every call).
    fuel: [Vec<f64>; 2],
    /// Calls that ran in the account's kept instance (`Stages::reused`).
    reused: usize,
}

impl StageSamples {
    fn push(&mut self, outcome: &CallOutcome, wall: Duration) {
        let s = &outcome.stages;
        let staged = s.queued + s.convert_args + s.instantiate + s.guest + s.convert_result;
        let values = [
            s.queued,
            s.convert_args,
            s.instantiate,
            s.guest,
            s.http,
            s.guest.saturating_sub(s.http),
            s.convert_result,
            outcome.duration.saturating_sub(staged),
            outcome.duration,
            wall,
        ];
        for (line, value) in self.lines.iter_mut().zip(values) {
            line.push(value.as_secs_f64());
        }
        self.requests += outcome.exchanges.len();
        if s.reused {
            self.reused += 1;
        } else {
            self.fuel[0].push(s.instantiate_fuel as f64);
        }
        self.fuel[1].push(s.guest_fuel as f64);
    }

    fn extend(&mut self, other: StageSamples) {
        for (line, more) in self.lines.iter_mut().zip(other.lines) {
            line.extend(more);
        }
        self.requests += other.requests;
        self.reused += other.reused;
        for (line, more) in self.fuel.iter_mut().zip(other.fuel) {
            line.extend(more);
        }
    }

    fn calls(&self) -> usize {
        self.lines[0].len()
    }
}

/// One `get_profile` through `Runtime::call_with_log`, its stages added to `samples`.
async fn staged_get(
    runtime: &Runtime,
    acct: &Account,
    id: &str,
    samples: &mut StageSamples,
) -> Result<(), AnyError> {
    let t = Instant::now();
    let outcome = runtime
        .call_with_log(acct, "get_profile", &json!({ "profile_id": id }))
        .await;
    let wall = t.elapsed();
    if let Err(e) = &outcome.result {
        return Err(format!("get_profile: {e}").into());
    }
    samples.push(&outcome, wall);
    std::hint::black_box(outcome);
    Ok(())
}

/// The stage table: sequential calls of one account, and calls of `TENANTS` tenants at once.
struct Breakdown {
    sequential: StageSamples,
    /// Sequential calls of the same account with `reuse_instances: false`: what a fresh
    /// instance costs (its start-up fuel, its `instantiate`).
    fresh: StageSamples,
    sequential_native: Vec<f64>,
    concurrent: StageSamples,
    concurrent_native: Vec<f64>,
    per_tenant: usize,
    /// Lines computed from other figures (the Lua and CLI layers), printed below the table.
    notes: Vec<Info>,
}

/// Calls of each kind made before any is recorded (connections opened, caches warm).
const STAGE_WARMUP: usize = 50;
/// Calls with `reuse_instances: false` after the sequential ones (a fresh instance each).
const FRESH_CALLS: usize = 100;

/// Measure the stage table: `calls` sequential `get_profile`s, each right after a native GET
/// (interleaved one to one, so that background load hits both alike), then `TENANTS`
/// tenants each doing `calls / TENANTS` calls at once (and the native client the same).
async fn breakdown(
    runtime: &Runtime,
    client: &NativeClient,
    base: &str,
    calls: usize,
) -> Result<Breakdown, AnyError> {
    let key = "pk_bench_stages_0123456789abcdef";
    let acct = account("bench-stages", key, base)?;
    let id = create_profile(runtime, &acct, "bench.stages@example.com").await?;
    let mut warmup = StageSamples::default();
    let mut sequential = StageSamples::default();
    let mut sequential_native = Vec::with_capacity(calls);
    for i in 0..STAGE_WARMUP + calls {
        let t = Instant::now();
        native_get(client, base, key, &id).await?;
        let native = t.elapsed().as_secs_f64();
        if i < STAGE_WARMUP {
            staged_get(runtime, &acct, &id, &mut warmup).await?;
        } else {
            staged_get(runtime, &acct, &id, &mut sequential).await?;
            sequential_native.push(native);
        }
    }

    // A fresh instance per call: the same compiled component, reuse off.
    let fresh_runtime = runtime.with_config(RuntimeConfig {
        reuse_instances: false,
        ..runtime.config().clone()
    });
    let mut fresh = StageSamples::default();
    for _ in 0..FRESH_CALLS {
        staged_get(&fresh_runtime, &acct, &id, &mut fresh).await?;
    }

    let tenants = make_tenants(runtime, base, "stages", TENANTS).await?;
    let per_tenant = (calls / TENANTS).max(10);
    run_kosmo_tenants(runtime, &tenants, STAGE_WARMUP / 5).await?;
    run_native_tenants(client, base, &tenants, STAGE_WARMUP / 5).await?;
    let concurrent = run_kosmo_tenants(runtime, &tenants, per_tenant).await?;
    let concurrent_native = run_native_tenants(client, base, &tenants, per_tenant).await?;
    Ok(Breakdown {
        sequential,
        fresh,
        sequential_native,
        concurrent,
        concurrent_native,
        per_tenant,
        notes: Vec::new(),
    })
}

impl Breakdown {
    fn print(&self) {
        let (seq, conc) = (&self.sequential, &self.concurrent);
        println!(
            "Where one get_profile goes: the runtime's own stages (`CallOutcome::stages` of `Runtime::call_with_log`), per call"
        );
        println!();
        println!(
            "- sequential: {} calls of one account, each after one native GET (interleaved); {TENANTS} tenants: {TENANTS} x {} calls, all tenants at once (native: the same, after)",
            seq.calls(),
            self.per_tenant
        );
        println!(
            "- every cell is that line's own median (and 90th percentile) over the calls, so the medians need not add up to the total's exactly; % is of the total's median"
        );
        println!(
            "- HTTP requests per call: {:.2} sequential, {:.2} with {TENANTS} tenants (1.00: no retries)",
            seq.requests as f64 / seq.calls().max(1) as f64,
            conc.requests as f64 / conc.calls().max(1) as f64
        );
        println!(
            "- instance reused (`Stages::reused`: the account's kept instance, `RuntimeConfig::reuse_instances`): {} of {} sequential calls, {} of {} with {TENANTS} tenants",
            seq.reused,
            seq.calls(),
            conc.reused,
            conc.calls()
        );
        let start_up = match seq.fuel[0].len() {
            0 => "- (every call reused an instance)".to_string(),
            n => format!(
                "{:.0} (median of the {n} calls that instantiated)",
                quantiles(&seq.fuel[0]).0
            ),
        };
        println!(
            "- wasm instructions per call (fuel, `Stages::instantiate_fuel` / `guest_fuel`, sequential medians; the same on a busy machine): instance start-up {start_up}, exported function {:.0}",
            quantiles(&seq.fuel[1]).0
        );
        let fresh = &self.fresh;
        println!(
            "- a fresh instance per call (`reuse_instances: false`, {} sequential calls after those): instantiate median {}, total median {} (sequential above: {}); instance start-up fuel {:.0}, exported function {:.0}; reused {}",
            fresh.calls(),
            us(quantiles(&fresh.lines[INSTANTIATE_LINE]).0),
            us(quantiles(&fresh.lines[TOTAL_LINE]).0),
            us(quantiles(&seq.lines[TOTAL_LINE]).0),
            quantiles(&fresh.fuel[0]).0,
            quantiles(&fresh.fuel[1]).0,
            fresh.reused
        );
        println!();
        println!("| stage | covers | sequential median | p90 | {TENANTS} tenants median | p90 |");
        println!("|---|---|---|---|---|---|");
        let seq_total = quantiles(&seq.lines[TOTAL_LINE]).0;
        let conc_total = quantiles(&conc.lines[TOTAL_LINE]).0;
        for (i, (stage, covers)) in STAGE_LINES.iter().enumerate() {
            let (s, c) = match (seq.lines.get(i), conc.lines.get(i)) {
                (Some(s), Some(c)) => (s, c),
                _ => (&self.sequential_native, &self.concurrent_native),
            };
            let (s50, s90) = quantiles(s);
            let (c50, c90) = quantiles(c);
            println!(
                "| {stage} | {covers} | {} ({:.0}%) | {} | {} ({:.0}%) | {} |",
                us(s50),
                s50 / seq_total * 100.0,
                us(s90),
                us(c50),
                c50 / conc_total * 100.0,
                us(c90)
            );
        }
        if !self.notes.is_empty() {
            println!();
            println!("Above the runtime (from figure 3's per-call times)");
            println!();
            println!("| layer | per call |");
            println!("|---|---|");
            for n in &self.notes {
                println!("| {} | {} |", n.what, n.value);
            }
        }
    }
}

/// `--breakdown [N]`: only the stage table, against an in-process emulator.
async fn breakdown_only(calls: usize) -> i32 {
    let emu = match Emulator::start_with(EmulatorOptions {
        validate_requests: false,
        ..Default::default()
    })
    .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bench: cannot start the emulator: {e}");
            return 0;
        }
    };
    let result = async {
        eprintln!("compiling the component ...");
        // `KOSMO_BENCH_COMPONENT=path.wasm`: the stage table of another build of the
        // component (an optimisation tried before it goes in).
        let other = match std::env::var_os("KOSMO_BENCH_COMPONENT") {
            Some(path) => Some(std::fs::read(&path).map_err(|e| format!("{path:?}: {e}"))?),
            None => None,
        };
        let runtime = tokio::task::spawn_blocking(move || match other {
            Some(wasm) => Runtime::with_component(RuntimeConfig::default(), &wasm),
            None => Runtime::new(RuntimeConfig::default()),
        })
        .await?
        .map_err(|e| format!("Runtime::new: {e:#}"))?;
        eprintln!("{calls} sequential calls, then {TENANTS} concurrent tenants ...");
        breakdown(&runtime, &native_client(), &emu.base_url(), calls).await
    }
    .await;
    match result {
        Ok(table) => {
            println!(
                "kosmo bench --breakdown: {} CPU(s), {}; emulator in-process, validate_requests: false",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                cpu_model()
            );
            if cfg!(debug_assertions) {
                println!("WARNING: this is a debug build; add --release");
            }
            println!();
            table.print();
        }
        Err(e) => eprintln!("bench: {e}"),
    }
    0
}

// ---------------------------------------------------------------------------------------------
// Profiling modes

/// `--profile-library N [CACHE]`: N sequential library calls, for `valgrind --tool=callgrind`.
/// The emulator runs in a child process (not traced by valgrind), so the profile is the
/// host's alone; profile two N and subtract to drop set-up (benches/README.md).
async fn profile_library(n: usize, cache: Option<PathBuf>) -> i32 {
    let result = async {
        let emu = ChildEmulator::spawn()?;
        let config = RuntimeConfig {
            cache_dir: cache,
            ..RuntimeConfig::default()
        };
        let t = Instant::now();
        let runtime = tokio::task::spawn_blocking(move || Runtime::new(config))
            .await?
            .map_err(|e| format!("{e:#}"))?;
        eprintln!("Runtime::new: {}", ms(t.elapsed()));
        let key = "pk_bench_profile_0123456789abcdef";
        let acct = account("bench", key, &emu.base)?;
        let id = create_profile(&runtime, &acct, "bench.profile@example.com").await?;
        for _ in 0..20 {
            library_get(&runtime, &acct, &id).await?;
        }
        let t = Instant::now();
        for _ in 0..n {
            library_get(&runtime, &acct, &id).await?;
        }
        let per = t.elapsed().as_secs_f64() / n.max(1) as f64;
        println!("{n} library get_profile calls: {} per call", us(per));
        Ok::<_, AnyError>(())
    }
    .await;
    if let Err(e) = result {
        eprintln!("bench: {e}");
    }
    0
}

/// `--profile-lua N`: the CLI doing N calls against an in-process emulator; prints timings.
async fn profile_lua(n: usize) -> i32 {
    let emu = match Emulator::start_with(EmulatorOptions {
        validate_requests: false,
        ..Default::default()
    })
    .await
    {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bench: {e}");
            return 0;
        }
    };
    let scratch = std::env::temp_dir().join(format!("kosmo-bench-{}", std::process::id()));
    let result = async {
        let bin = kosmo_binary()?;
        let runtime = Runtime::new(RuntimeConfig::default()).map_err(|e| format!("{e:#}"))?;
        let key = "pk_bench_profile_lua_0123456789abcdef";
        let acct = account("bench", key, &emu.base_url())?;
        let id = create_profile(&runtime, &acct, "bench.lua@example.com").await?;
        let home = scratch.join("home");
        run_kosmo(
            &bin,
            &home,
            &emu.base_url(),
            key,
            "return app.integrations.klaviyo.get_profile({profile_id = \"x\"}) ~= nil",
            &[],
        )
        .await
        .ok();
        let (wall, envelope) =
            run_kosmo(&bin, &home, &emu.base_url(), key, &lua_loop(&id, n), &[]).await?;
        let exec = envelope["execution_time_ms"].as_f64().unwrap_or(f64::NAN);
        println!(
            "{n} calls through the CLI: wall {}, execution_time_ms {exec}, {} per call",
            ms(Duration::from_secs_f64(wall)),
            us(exec / 1000.0 / n.max(1) as f64)
        );
        Ok::<_, AnyError>(())
    }
    .await;
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(e) = result {
        eprintln!("bench: {e}");
    }
    0
}

/// `--ab A B [TENANTS]`: two builds of the component side by side in one process, against one
/// in-process emulator: rounds alternate between them (the first two are warm-up), so load
/// that comes and goes hits both; prints each one's median per call and wasm instructions.
async fn ab(a: PathBuf, b: PathBuf, tenants: usize) -> i32 {
    let result = async {
        let emu = Emulator::start_with(EmulatorOptions {
            validate_requests: false,
            ..Default::default()
        })
        .await?;
        let mut runtimes = Vec::new();
        for path in [&a, &b] {
            let wasm = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let runtime = tokio::task::spawn_blocking(move || {
                Runtime::with_component(RuntimeConfig::default(), &wasm)
            })
            .await?
            .map_err(|e| format!("{e:#}"))?;
            runtimes.push(runtime);
        }
        let tenants = make_tenants(&runtimes[0], &emu.base_url(), "ab", tenants.max(1)).await?;
        let (mut times, mut fuel) = ([Vec::new(), Vec::new()], [0.0, 0.0]);
        for round in 0..20 {
            for (side, runtime) in runtimes.iter().enumerate() {
                let started = Instant::now();
                let mut samples = run_kosmo_tenants(runtime, &tenants, 200).await?;
                if round >= 2 {
                    let per_call = started.elapsed().as_secs_f64() / (200 * tenants.len()) as f64;
                    times[side].push(per_call);
                    fuel[side] = median(&mut samples.fuel[1]);
                }
            }
        }
        let (a_us, b_us) = (median(&mut times[0]), median(&mut times[1]));
        println!(
            "A {}: {} a call, {} wasm instructions\nB {}: {} a call, {} wasm instructions\nB / A: {:.3} ({} tenant(s), 18 rounds of 200 calls each)",
            a.display(),
            us(a_us),
            fuel[0],
            b.display(),
            us(b_us),
            fuel[1],
            b_us / a_us,
            tenants.len()
        );
        Ok::<_, AnyError>(())
    }
    .await;
    if let Err(e) = result {
        eprintln!("bench: {e}");
    }
    0
}

/// `--profile-lua-session N lua|library [CACHE]`: N get_profile calls in this process, through
/// a Lua session's loop (`lua`) or `Runtime::call` (`library`), after the same set-up and
/// warm-up either way: under callgrind, (lua - library) / N is the Lua layer's cost per call.
async fn profile_lua_session(n: usize, lua: bool, cache: Option<PathBuf>) -> i32 {
    let result = async {
        let emu = Emulator::start_with(EmulatorOptions {
            validate_requests: false,
            ..Default::default()
        })
        .await?;
        // Few instance slots: valgrind cannot reserve the default pool's address space.
        let config = RuntimeConfig {
            cache_dir: cache,
            pooled_instances: 4,
            ..RuntimeConfig::default()
        };
        let runtime = tokio::task::spawn_blocking(move || Runtime::new(config))
            .await?
            .map_err(|e| format!("{e:#}"))?;
        let acct = account("bench", "pk_bench_lua_session_0123456789", &emu.base_url())?;
        let id = create_profile(&runtime, &acct, "bench.session@example.com").await?;
        let session = lua_session(&runtime, &acct)?;
        for _ in 0..20 {
            library_get(&runtime, &acct, &id).await?;
        }
        lua_eval_loop(&session, &id, 20).await?;
        let t = Instant::now();
        if lua {
            lua_eval_loop(&session, &id, n).await?;
        } else {
            for _ in 0..n {
                library_get(&runtime, &acct, &id).await?;
            }
        }
        let per = t.elapsed().as_secs_f64() / n.max(1) as f64;
        let how = if lua { "Lua session" } else { "library" };
        println!("{n} {how} get_profile calls: {} per call", us(per));
        Ok::<_, AnyError>(())
    }
    .await;
    if let Err(e) = result {
        eprintln!("bench: {e}");
    }
    0
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn account(name: &str, key: &str, base: &str) -> Result<Account, AnyError> {
    Ok(Account::new(name, ApiKey::new(key), base)?)
}

async fn create_profile(
    runtime: &Runtime,
    acct: &Account,
    email: &str,
) -> Result<String, AnyError> {
    let created = runtime
        .call(acct, "create_profile", &json!({ "email": email }))
        .await
        .map_err(|e| format!("create_profile: {e}"))?;
    Ok(created["id"]
        .as_str()
        .ok_or_else(|| format!("create_profile returned no id: {created}"))?
        .to_string())
}

async fn library_get(runtime: &Runtime, acct: &Account, id: &str) -> Result<(), AnyError> {
    let profile = runtime
        .call(acct, "get_profile", &json!({ "profile_id": id }))
        .await
        .map_err(|e| format!("get_profile: {e}"))?;
    std::hint::black_box(profile);
    Ok(())
}

fn native_client() -> NativeClient {
    Client::builder(TokioExecutor::new()).build_http()
}

async fn native_body(
    client: &NativeClient,
    base: &str,
    key: &str,
    id: &str,
) -> Result<Bytes, AnyError> {
    let request = Request::get(format!("{base}/api/profiles/{id}"))
        .header(AUTHORIZATION, format!("Klaviyo-API-Key {key}"))
        .header("revision", REVISION)
        .header(ACCEPT, "application/vnd.api+json")
        .body(Empty::<Bytes>::new())?;
    let response = client.request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Err(format!(
            "native GET: {status}: {}",
            excerpt(&String::from_utf8_lossy(&body))
        )
        .into());
    }
    Ok(body)
}

/// The native call: GET /api/profiles/{id} with the component's headers, JSON parsed.
async fn native_get(
    client: &NativeClient,
    base: &str,
    key: &str,
    id: &str,
) -> Result<(), AnyError> {
    let body = native_body(client, base, key, id).await?;
    let value: Value = serde_json::from_slice(&body)?;
    if value["data"]["id"].as_str() != Some(id) {
        return Err("native GET: unexpected body".into());
    }
    std::hint::black_box(value);
    Ok(())
}

/// The `kosmo` binary (package `kosmo`): `$KOSMO_BENCH_KOSMO`, else next to this executable
/// (`target/release/kosmo` beside `target/release/bench`). `cargo run --bin bench` builds
/// only the bench, so under `cargo run` (`$CARGO` set) kosmo is built first, into this
/// executable's directory, lest a stale CLI be measured; `KOSMO_BENCH_NO_BUILD=1` skips that.
fn kosmo_binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("KOSMO_BENCH_KOSMO") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = exe
        .parent()
        .ok_or("the bench executable has no directory")?;
    let bin = dir.join("kosmo");
    // `<target-dir>/<profile>/bench`: build into the same target dir and profile. Another
    // layout (a custom profile) is left alone rather than guessed.
    let profile = dir.file_name().and_then(|n| n.to_str());
    let target_dir = dir.parent();
    if let (Some(cargo), None, Some(profile @ ("release" | "debug")), Some(target_dir)) = (
        std::env::var_os("CARGO"),
        std::env::var_os("KOSMO_BENCH_NO_BUILD"),
        profile,
        target_dir,
    ) {
        eprintln!("building the kosmo binary (cargo build -p kosmo --bin kosmo) ...");
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "kosmo", "--bin", "kosmo"])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--target-dir")
            .arg(target_dir);
        if profile == "release" {
            cmd.arg("--release");
        }
        match cmd.status() {
            Ok(s) if s.success() => {}
            _ => eprintln!("  (the build failed; using the binary already there, if any)"),
        }
    }
    if bin.is_file() {
        Ok(bin)
    } else {
        Err(format!(
            "skipped: {} not found (build it with `cargo build --release -p kosmo`)",
            bin.display()
        ))
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median and 90th percentile (nearest rank) of per-call samples, which stay unsorted.
fn quantiles(v: &[f64]) -> (f64, f64) {
    let mut sorted = v.to_vec();
    let p50 = median(&mut sorted);
    let p90 = match sorted.len() {
        0 => f64::NAN,
        n => sorted[(n * 9).div_ceil(10) - 1],
    };
    (p50, p90)
}

/// `[min - max]` of per-call times (seconds), for judging the noise.
fn spread(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if v.is_empty() {
        return String::new();
    }
    format!("[rounds {:.1} - {:.1} µs]", min * 1e6, max * 1e6)
}

/// `[min - max]` of per-round ratios.
fn ratio_range(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("[rounds {min:.2}x - {max:.2}x]")
}

fn ms_f(seconds: f64) -> String {
    format!("{:.1} ms", seconds * 1e3)
}

/// The load average (1, 5, 15 minutes), to judge how busy the machine was.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}

fn us(seconds: f64) -> String {
    format!("{:.1} µs", seconds * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn excerpt(s: &str) -> String {
    let s = s.trim().replace('\n', " ");
    let mut end = s.len().min(300);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}
