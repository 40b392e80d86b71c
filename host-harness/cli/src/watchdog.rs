//! The process-level guards of a run: the async runtime one command runs on, and a watchdog
//! thread that ends a script stuck inside one library call, where Lua's hook cannot reach.

use std::sync::Arc;
use std::time::Duration;

use kosmo_lua::{Session, Watchdog};
use kosmo_runtime::ErrorCode;

use crate::context::Context;
use crate::envelope::Envelope;

/// How long past its CPU deadline a script stuck in one library call (where the hook cannot
/// reach) may run before the watchdog ends the process.
const WATCHDOG_GRACE: Duration = Duration::from_secs(2);

/// A tokio runtime for one command. One script makes one call at a time, so a single thread
/// serves it best: the bench measured 140-250 us per call lost to waking worker threads.
pub(crate) fn tokio_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Stops the watchdog when dropped or disarmed.
pub(crate) struct WatchdogGuard(Arc<std::sync::atomic::AtomicBool>);

impl WatchdogGuard {
    pub(crate) fn disarm(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for WatchdogGuard {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// A thread that ends the process with a `cpu_limit` envelope if the script is stuck past
/// its deadline inside a single library call, where the instruction hook cannot fire.
pub(crate) fn spawn_watchdog(
    watchdog: Watchdog,
    ctx: &Context,
    session: &Session,
    json_mode: bool,
) -> WatchdogGuard {
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let redactor = ctx.redactor.clone();
    let meta = ctx.meta();
    let mcp = ctx.mcp.clone();
    let cpu = session.limits().cpu;
    let started = std::time::Instant::now();
    let _ = std::thread::Builder::new().name("kosmo-watchdog".into()).spawn(move || {
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
            if watchdog.overdue(WATCHDOG_GRACE) && !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let message = format!(
                    "the script ran longer than its CPU limit of {} s (stuck inside one library call)",
                    cpu.as_secs_f64()
                );
                let mut envelope = Envelope::failure(ErrorCode::CpuLimit, &message, meta);
                envelope.output = watchdog.take_output();
                envelope.execution_time_ms = started.elapsed().as_millis() as u64;
                let exit = envelope.print(json_mode, &redactor);
                // `exit` runs no destructor: stop the MCP servers now (they lead their own
                // process groups, so nothing else would).
                if let Some(mcp) = &mcp {
                    mcp.kill_now();
                }
                std::process::exit(exit);
            }
        }
    });
    WatchdogGuard(done)
}
