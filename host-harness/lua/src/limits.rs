//! What a script may use: memory (Lua's allocator limit), CPU time (a deadline checked by an
//! instruction hook) and output (a cap on what `print` and `log` write); and the one way to
//! stop an evaluation from outside, an interrupt, which the same hook honours.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kosmo_runtime::ErrorCode;
use tokio::sync::Notify;

use crate::LiveSink;

/// One mebibyte.
const MIB: usize = 1024 * 1024;

/// Default [`Limits::text_bytes`]: the largest string the host builds for a script. Before
/// this cap, 200 references to one 10 MiB string made `json.encode` build gigabytes.
pub const TEXT_BYTES: usize = 16 * MIB;

/// Default [`Limits::result_bytes`]: what a script may return. The results are copied several
/// times on their way out (the envelope, its JSON text, the redacted text), so they stay well
/// under the memory a script may hold.
pub const RESULT_BYTES: usize = 16 * MIB;

/// Default [`Limits::argument_bytes`]: the arguments of one Klaviyo call as JSON. Klaviyo
/// itself refuses profile payloads over 100 KB; this leaves room and keeps a shared table
/// repeated in the arguments from costing the host gigabytes.
pub const ARGUMENT_BYTES: usize = MIB;

/// Limits of a Lua session.
///
/// Every copy the host makes of script values is capped: `print` and `dump` by
/// `output_bytes`, `json.encode` and `regex.gsub` by `text_bytes`, the returned values by
/// `result_bytes` and Klaviyo call arguments by `argument_bytes`. With the default limits
/// the process stays under `memory_bytes` plus a fixed overhead (measured in
/// `host-harness/cli/tests/host_limits.rs`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most memory the Lua state may hold, in bytes.
    pub memory_bytes: usize,
    /// Lua execution time an evaluation may use; time spent waiting for Klaviyo does not
    /// count.
    pub cpu: Duration,
    /// Wall-clock time an evaluation may take, calls included.
    pub wall: Duration,
    /// Most bytes of output (`print`, `dump`) an evaluation may produce.
    pub output_bytes: usize,
    /// Largest text `json.encode` or `regex.gsub` may build, and most `json.decode` may
    /// expand into (never more than `memory_bytes` either: the text becomes a Lua string).
    pub text_bytes: usize,
    /// Most bytes all the values an evaluation returns may take, counted as their JSON text
    /// (indented as the CLI prints it) plus [`VALUE_OVERHEAD`] per value.
    pub result_bytes: usize,
    /// Most bytes the arguments of one Klaviyo call may take, counted like `result_bytes`.
    pub argument_bytes: usize,
}

/// What each converted value is charged on top of its JSON text: the size of the host's
/// in-memory copy of it, a `serde_json::Value` (72 bytes with the workspace's
/// `preserve_order`), so that a table of many tiny values (`0` is two bytes of JSON) cannot
/// make that copy many times larger than the cap.
pub const VALUE_OVERHEAD: usize = std::mem::size_of::<serde_json::Value>();

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 * MIB,
            cpu: Duration::from_secs(30),
            wall: Duration::from_secs(600),
            output_bytes: MIB,
            text_bytes: TEXT_BYTES,
            result_bytes: RESULT_BYTES,
            argument_bytes: ARGUMENT_BYTES,
        }
    }
}

impl Limits {
    /// The cap on strings the host builds for a script: `text_bytes`, and never more than
    /// the Lua state may hold.
    pub fn text_cap(&self) -> usize {
        self.text_bytes.min(self.memory_bytes)
    }
}

/// A byte count as people read it: `16 MiB`, `64 KiB` or `1000 bytes`.
pub(crate) fn show_bytes(n: usize) -> String {
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// Which limit stopped a script. Every one of them ends the evaluation: the prelude's `pcall`
/// re-raises an error once one is hit (see `sandbox`), so a script cannot swallow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// The CPU deadline passed.
    Cpu,
    /// The output cap was reached (`print`, `dump`).
    Output,
    /// The same cap, counted apart, was reached by `log` (when it goes to a live sink).
    Log,
    /// The embedder interrupted the evaluation ([`crate::Interrupter`]).
    Interrupted,
}

impl LimitHit {
    fn as_u8(self) -> u8 {
        match self {
            LimitHit::Cpu => 1,
            LimitHit::Output => 2,
            LimitHit::Log => 3,
            LimitHit::Interrupted => 4,
        }
    }

    fn from_u8(code: u8) -> Option<LimitHit> {
        [
            LimitHit::Cpu,
            LimitHit::Output,
            LimitHit::Log,
            LimitHit::Interrupted,
        ]
        .into_iter()
        .find(|hit| hit.as_u8() == code)
    }
}

/// What an interrupted evaluation reports (after the `interrupted` code): the CLI's REPL
/// interrupts on Ctrl-C, the one embedder that does.
pub(crate) const INTERRUPTED_MESSAGE: &str = "stopped by Ctrl-C";

/// The CPU deadline of the running evaluation, shared with the instruction hook.
#[derive(Debug)]
pub(crate) struct Budget {
    origin: Instant,
    /// Nanoseconds after `origin`; `u64::MAX` when no deadline applies.
    deadline: AtomicU64,
    /// The current evaluation's CPU limit, in nanoseconds (for messages).
    limit: AtomicU64,
    /// 0 none, else [`LimitHit::as_u8`].
    hit: AtomicU8,
    /// [`Budget::interrupt`] was called since the evaluation began.
    interrupted: AtomicBool,
    /// Wakes [`Budget::interrupted`] (an evaluation waiting for the host).
    wake: Notify,
    /// An evaluation is running.
    running: AtomicBool,
    /// When the current wait for the host began (nanoseconds after `origin`), 0 if none.
    paused_since: AtomicU64,
}

impl Budget {
    pub(crate) fn new() -> Self {
        Budget {
            origin: Instant::now(),
            deadline: AtomicU64::new(u64::MAX),
            limit: AtomicU64::new(0),
            hit: AtomicU8::new(0),
            interrupted: AtomicBool::new(false),
            wake: Notify::new(),
            running: AtomicBool::new(false),
            paused_since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Start an evaluation with `cpu` of Lua time. An interrupt made before is forgotten: it
    /// was meant for an evaluation that has ended.
    pub(crate) fn arm(&self, cpu: Duration) {
        let cpu = cpu.as_nanos().min(u64::MAX as u128 / 2) as u64;
        self.interrupted.store(false, Ordering::SeqCst);
        self.hit.store(0, Ordering::SeqCst);
        self.limit.store(cpu, Ordering::SeqCst);
        self.paused_since.store(0, Ordering::SeqCst);
        self.deadline
            .store(self.now().saturating_add(cpu), Ordering::SeqCst);
        self.running.store(true, Ordering::SeqCst);
    }

    /// Between evaluations no Lua code of the script should run (a finalizer or `__tostring`
    /// looping forever at shutdown): anything that does stops at the next check.
    pub(crate) fn expire(&self) {
        self.running.store(false, Ordering::SeqCst);
        self.deadline.store(0, Ordering::SeqCst);
    }

    /// Time spent waiting for the host (an HTTP call, a permission prompt) is not Lua time:
    /// `pause` before the wait, `resume` after it.
    pub(crate) fn pause(&self) {
        self.paused_since.store(self.now().max(1), Ordering::SeqCst);
    }

    /// End a wait begun with [`Budget::pause`], moving the deadline by its length.
    pub(crate) fn resume(&self) {
        let since = self.paused_since.swap(0, Ordering::SeqCst);
        if since == 0 {
            return;
        }
        let by = self.now().saturating_sub(since);
        let _ = self
            .deadline
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| {
                (d != 0 && d != u64::MAX).then(|| d.saturating_add(by))
            });
    }

    /// Whether a running evaluation is past its deadline by more than `grace` without the hook
    /// having stopped it (stuck inside one long library call): for an outside watchdog.
    pub(crate) fn overdue(&self, grace: Duration) -> bool {
        self.running.load(Ordering::SeqCst)
            && self.paused_since.load(Ordering::SeqCst) == 0
            && self.now()
                > self
                    .deadline
                    .load(Ordering::SeqCst)
                    .saturating_add(grace.as_nanos() as u64)
    }

    /// Stop the running evaluation: the hook raises at its next check, and an evaluation
    /// waiting for the host stops waiting ([`Budget::interrupted`]).
    pub(crate) fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// Completes once [`Budget::interrupt`] is called (at once if it already was).
    pub(crate) async fn interrupted(&self) {
        loop {
            let notified = self.wake.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so an interrupt in between still wakes it.
            notified.as_mut().enable();
            if self.interrupted.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Called by the hook: an error message once the evaluation was interrupted or its
    /// deadline has passed.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.interrupted.load(Ordering::SeqCst) {
            self.set_hit(LimitHit::Interrupted);
            return Err(format!("{}: {INTERRUPTED_MESSAGE}", ErrorCode::Interrupted));
        }
        if self.now() <= self.deadline.load(Ordering::SeqCst) {
            return Ok(());
        }
        let _ = self
            .hit
            .compare_exchange(0, 1, Ordering::SeqCst, Ordering::SeqCst);
        Err(format!("{}: {}", ErrorCode::CpuLimit, self.cpu_message()))
    }

    pub(crate) fn cpu_message(&self) -> String {
        let limit = Duration::from_nanos(self.limit.load(Ordering::SeqCst));
        format!(
            "the script ran longer than its CPU limit of {} s",
            limit.as_secs_f64()
        )
    }

    pub(crate) fn set_hit(&self, hit: LimitHit) {
        let _ = self
            .hit
            .compare_exchange(0, hit.as_u8(), Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The limit that stopped the current evaluation, if one did.
    pub(crate) fn hit(&self) -> Option<LimitHit> {
        LimitHit::from_u8(self.hit.load(Ordering::SeqCst))
    }
}

/// What `print` and `dump` (or `log`) wrote, up to a cap. With a live sink the text is handed
/// on at once and not kept, but every byte still counts against the cap: a script printing
/// forever to a terminal must stop as surely as one printing into the envelope.
pub(crate) struct Output {
    written: Mutex<Written>,
    limit: usize,
    live: Option<LiveSink>,
    /// The limit reported when the cap is reached ([`LimitHit::Output`] or [`LimitHit::Log`]).
    kind: LimitHit,
}

#[derive(Default)]
struct Written {
    /// What was kept (nothing with a live sink).
    text: String,
    /// Bytes written since [`Output::reset`], kept or not.
    used: usize,
}

impl Output {
    /// Output capped at `limit` bytes, kept or handed to `live`; reaching the cap is `kind`.
    pub(crate) fn new(limit: usize, live: Option<LiveSink>, kind: LimitHit) -> Self {
        Output {
            written: Mutex::new(Written::default()),
            limit,
            live,
            kind,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Written> {
        self.written.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Which limit reaching the cap is.
    pub(crate) fn kind(&self) -> LimitHit {
        self.kind
    }

    /// Append; past the cap, keep what fits and say so.
    pub(crate) fn push(&self, s: &str) -> Result<(), String> {
        let (piece, over) = {
            let mut written = self.lock();
            let room = self.limit.saturating_sub(written.used);
            let (piece, over) = if s.len() <= room {
                written.used += s.len();
                (s, false)
            } else {
                let mut cut = room;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                written.used = self.limit;
                (&s[..cut], true)
            };
            if self.live.is_none() {
                written.text.push_str(piece);
            }
            (piece, over)
        };
        // Outside the lock: the sink may take its time (a terminal), or read the output.
        if let (Some(live), false) = (&self.live, piece.is_empty()) {
            live(piece);
        }
        if over {
            return Err(self.refusal());
        }
        Ok(())
    }

    /// How many more bytes fit: what `print` and `dump` may render before they stop.
    pub(crate) fn room(&self) -> usize {
        self.limit.saturating_sub(self.lock().used)
    }

    /// The error of a script that printed past the cap.
    pub(crate) fn refusal(&self) -> String {
        format!(
            "{}: {}",
            ErrorCode::OutputLimit,
            over_message(self.kind, self.limit)
        )
    }

    /// Take what was kept so far (the count stays: the cap is per evaluation).
    pub(crate) fn take(&self) -> String {
        std::mem::take(&mut self.lock().text)
    }

    /// Start an evaluation: nothing kept, nothing counted.
    pub(crate) fn reset(&self) {
        *self.lock() = Written::default();
    }
}

/// Why output stopped, once `limit` bytes were written by `print`/`dump` or by `log`.
pub(crate) fn over_message(kind: LimitHit, limit: usize) -> String {
    if kind == LimitHit::Log {
        format!(
            "the script logged more than {limit} bytes with `log`; log less (summarise progress)"
        )
    } else {
        format!(
            "the script printed more than {limit} bytes; print less (summarise, or return a table)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn output_is_capped_on_a_char_boundary() {
        let out = Output::new(5, None, LimitHit::Output);
        out.push("abc").unwrap();
        assert!(out.push("dé€").unwrap_err().starts_with("output_limit"));
        assert_eq!(out.take(), "abcd");
    }

    /// A live sink gets each piece at once, nothing is kept, and the cap still counts every
    /// byte (taking the kept text does not reset the count).
    #[test]
    fn live_output_is_handed_on_and_still_counted() {
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = seen.clone();
        let live: LiveSink = Arc::new(move |s: &str| sink.lock().unwrap().push(s.to_string()));
        let out = Output::new(6, Some(live), LimitHit::Log);
        out.push("ab\n").unwrap();
        assert_eq!(out.take(), "");
        let e = out.push("cdéf\n").unwrap_err();
        assert!(e.contains("logged more than 6 bytes"), "{e}");
        assert_eq!(*seen.lock().unwrap(), ["ab\n", "cd"]);
        assert_eq!(out.room(), 0);
        out.reset();
        assert_eq!(out.room(), 6);
    }

    #[tokio::test]
    async fn interrupts_stop_checks_and_waits_until_the_next_evaluation() {
        let b = Arc::new(Budget::new());
        b.arm(Duration::from_secs(60));
        let waiter = tokio::spawn({
            let b = b.clone();
            async move { b.interrupted().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        b.interrupt();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the wait ended")
            .unwrap();
        assert!(b.check().unwrap_err().starts_with("interrupted: "));
        assert_eq!(b.hit(), Some(LimitHit::Interrupted));
        b.arm(Duration::from_secs(60));
        assert!(b.check().is_ok(), "forgotten at the next evaluation");
        assert_eq!(b.hit(), None);
    }

    #[test]
    fn deadlines_expire_and_extend() {
        let b = Budget::new();
        b.arm(Duration::from_millis(20));
        assert!(b.check().is_ok());
        b.pause();
        std::thread::sleep(Duration::from_millis(30));
        assert!(!b.overdue(Duration::ZERO));
        b.resume();
        assert!(b.check().is_ok());
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.overdue(Duration::ZERO));
        b.expire();
        assert!(b.check().is_err());
        assert_eq!(b.hit(), Some(LimitHit::Cpu));
    }
}
