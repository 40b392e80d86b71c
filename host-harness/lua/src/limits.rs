//! What a script may use: memory (Lua's allocator limit), CPU time (a deadline checked by an
//! instruction hook) and output (a cap on what `print` collects).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kosmo_runtime::ErrorCode;

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
    if n >= MIB && n % MIB == 0 {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n % 1024 == 0 {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// Which limit stopped a script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// The CPU deadline passed.
    Cpu,
    /// The output cap was reached.
    Output,
}

/// The CPU deadline of the running evaluation, shared with the instruction hook.
#[derive(Debug)]
pub(crate) struct Budget {
    origin: Instant,
    /// Nanoseconds after `origin`; `u64::MAX` when no deadline applies.
    deadline: AtomicU64,
    /// The current evaluation's CPU limit, in nanoseconds (for messages).
    limit: AtomicU64,
    /// 0 none, 1 CPU, 2 output.
    hit: AtomicU8,
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
            running: AtomicBool::new(false),
            paused_since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Start an evaluation with `cpu` of Lua time.
    pub(crate) fn arm(&self, cpu: Duration) {
        let cpu = cpu.as_nanos().min(u64::MAX as u128 / 2) as u64;
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

    /// Called by the hook: an error message once the deadline has passed.
    pub(crate) fn check(&self) -> Result<(), String> {
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
        let code = match hit {
            LimitHit::Cpu => 1,
            LimitHit::Output => 2,
        };
        let _ = self
            .hit
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The limit that stopped the current evaluation, if one did.
    pub(crate) fn hit(&self) -> Option<LimitHit> {
        match self.hit.load(Ordering::SeqCst) {
            1 => Some(LimitHit::Cpu),
            2 => Some(LimitHit::Output),
            _ => None,
        }
    }
}

/// What `print` and `dump` wrote, up to a cap.
#[derive(Debug)]
pub(crate) struct Output {
    text: Mutex<String>,
    limit: usize,
}

impl Output {
    pub(crate) fn new(limit: usize) -> Self {
        Output {
            text: Mutex::new(String::new()),
            limit,
        }
    }

    /// Append; past the cap, keep what fits and say so.
    pub(crate) fn push(&self, s: &str) -> Result<(), String> {
        let mut text = self.text.lock().unwrap_or_else(|p| p.into_inner());
        if text.len() + s.len() <= self.limit {
            text.push_str(s);
            return Ok(());
        }
        let mut room = self.limit.saturating_sub(text.len());
        while !s.is_char_boundary(room) {
            room -= 1;
        }
        text.push_str(&s[..room]);
        Err(self.refusal())
    }

    /// How many more bytes fit: what `print` and `dump` may render before they stop.
    pub(crate) fn room(&self) -> usize {
        let text = self.text.lock().unwrap_or_else(|p| p.into_inner());
        self.limit.saturating_sub(text.len())
    }

    /// The error of a script that printed past the cap.
    pub(crate) fn refusal(&self) -> String {
        format!(
            "{}: the script printed more than {} bytes; print less (summarise, or return a table)",
            ErrorCode::OutputLimit,
            self.limit
        )
    }

    /// Take what was written so far.
    pub(crate) fn take(&self) -> String {
        std::mem::take(&mut *self.text.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_capped_on_a_char_boundary() {
        let out = Output::new(5);
        out.push("abc").unwrap();
        assert!(out.push("dé€").unwrap_err().starts_with("output_limit"));
        assert_eq!(out.take(), "abcd");
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
