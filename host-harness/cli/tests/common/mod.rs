//! What the test files of the `kosmo` binary share: one emulator per test binary, fresh keys
//! (each one a separate account on the emulator), and what a run of `kosmo` gave.

// Each test file uses its own part of this module.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::Instant;

use kosmo_emulator::Emulator;
use serde_json::Value;

/// The `kosmo` binary under test.
pub const KOSMO: &str = env!("CARGO_BIN_EXE_kosmo");

/// One emulator for the whole test binary, on a runtime that lives as long as the process.
pub fn emulator() -> &'static Emulator {
    static EMULATOR: OnceLock<Emulator> = OnceLock::new();
    EMULATOR.get_or_init(|| {
        let runtime = Box::leak(Box::new(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap(),
        ));
        runtime
            .block_on(Emulator::start())
            .expect("emulator starts")
    })
}

/// A key nobody else uses: `pk_<label>_<16 hex digits>`.
pub fn new_key(label: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "pk_{label}_{:016x}",
        RandomState::new().hash_one(Instant::now())
    )
}

/// What a run of `kosmo` gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Standard output as the one JSON object it must be.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON object ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Neither stream may contain the key, in any test.
    pub fn assert_hides(&self, key: &str) -> &Self {
        assert!(
            !self.stdout.contains(key),
            "the key leaked on stdout:\n{}",
            self.stdout
        );
        assert!(
            !self.stderr.contains(key),
            "the key leaked on stderr:\n{}",
            self.stderr
        );
        self
    }
}
