//! Fixed-window rate limits per account and operation (notes §4): a burst window of one second
//! and a steady window of one minute, sized from the operation's `x-klaviyo-ratelimit`.
//! Every non-429 response reports the steady window in `RateLimit-*` headers.

use std::collections::HashMap;
use std::sync::Mutex;

/// What one request did to its windows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Verdict {
    /// `RateLimit-Limit`: the steady limit per minute.
    pub limit: u32,
    /// `RateLimit-Remaining`.
    pub remaining: u32,
    /// `RateLimit-Reset`: seconds until the steady window resets.
    pub reset: u32,
    /// `Some(retry_after_seconds)` when enforcement is on and a window is exhausted.
    pub throttled: Option<u32>,
}

#[derive(Default)]
struct Window {
    minute: i64,
    steady: u32,
    second: i64,
    burst: u32,
}

/// Counters keyed by (account, operationId).
#[derive(Default)]
pub(crate) struct RateLimiter {
    windows: Mutex<HashMap<(String, &'static str), Window>>,
}

impl RateLimiter {
    /// Count one request made at unix time `now` and report the windows.
    pub fn hit(
        &self,
        account: &str,
        op: &'static str,
        burst_limit: u32,
        steady_limit: u32,
        now: i64,
        enforce: bool,
    ) -> Verdict {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = windows.entry((account.to_string(), op)).or_default();
        let minute = now.div_euclid(60);
        if w.minute != minute {
            w.minute = minute;
            w.steady = 0;
        }
        if w.second != now {
            w.second = now;
            w.burst = 0;
        }
        let reset = (60 - now.rem_euclid(60)) as u32;
        let throttled = if enforce && w.steady >= steady_limit {
            Some(reset)
        } else if enforce && w.burst >= burst_limit {
            Some(1)
        } else {
            w.steady += 1;
            w.burst += 1;
            None
        };
        Verdict {
            limit: steady_limit,
            remaining: steady_limit.saturating_sub(w.steady),
            reset,
            throttled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows() {
        let rl = RateLimiter::default();
        let v = rl.hit("k", "get_flows", 3, 60, 120, true);
        assert_eq!((v.limit, v.remaining, v.reset), (60, 59, 60));
        rl.hit("k", "get_flows", 3, 60, 120, true);
        rl.hit("k", "get_flows", 3, 60, 120, true);
        assert_eq!(
            rl.hit("k", "get_flows", 3, 60, 120, true).throttled,
            Some(1)
        );
        assert_eq!(rl.hit("k", "get_flows", 3, 60, 121, true).throttled, None);
        assert_eq!(rl.hit("other", "get_flows", 3, 60, 120, true).remaining, 59);
        assert_eq!(rl.hit("k", "get_flows", 3, 60, 125, false).remaining, 55);
    }
}
