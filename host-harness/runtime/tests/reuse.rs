//! Instance reuse (`RuntimeConfig::reuse_instances`): an account's next call runs in the
//! instance its last clean call left, never in another account's, and never in one a failed
//! call left behind.

use std::sync::OnceLock;
use std::time::Duration;

use kosmo_emulator::{Emulator, Fault};
use kosmo_runtime::{Account, ApiKey, Runtime, RuntimeConfig};
use serde_json::json;

/// Compiling the component takes seconds: once per test binary.
fn runtime(config: RuntimeConfig) -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("the component compiles"))
        .with_config(config)
}

async fn reused(runtime: &Runtime, account: &Account) -> bool {
    let outcome = runtime
        .call_with_log(account, "list_lists", &json!({}))
        .await;
    outcome.result.expect("list_lists works");
    outcome.stages.reused
}

/// The second call of an account reuses the first's instance; another account's first call
/// does not get it. Catches: the kept instances keyed by anything less than the whole account
/// (one tenant's instance serving another), or reuse never happening.
#[tokio::test(flavor = "multi_thread")]
async fn an_instance_serves_only_its_own_account() {
    let emulator = Emulator::start().await.unwrap();
    let runtime = runtime(RuntimeConfig::default());
    let a = Account::new("shop", ApiKey::new("pk_reuse_a_0001"), &emulator.base_url()).unwrap();
    // Same name and URL, another key: another tenant.
    let b = Account::new("shop", ApiKey::new("pk_reuse_b_0002"), &emulator.base_url()).unwrap();
    assert!(
        !reused(&runtime, &a).await,
        "a's first call gets a fresh instance"
    );
    assert!(
        reused(&runtime, &a).await,
        "a's second call reuses a's instance"
    );
    assert!(!reused(&runtime, &b).await, "b never gets a's instance");
    assert!(reused(&runtime, &b).await);
    assert!(reused(&runtime, &a).await);
}

/// A call that ended in a component error (Klaviyo's 404) left a sound instance: kept. One
/// that timed out did not: the next call starts fresh. Catches: keeping the Store of a call
/// abandoned mid-flight (its instance stopped half-way through guest code).
#[tokio::test(flavor = "multi_thread")]
async fn only_a_call_that_ran_to_its_end_leaves_its_instance() {
    let emulator = Emulator::start().await.unwrap();
    let key = "pk_reuse_faults_01";
    let account = Account::new("faults", ApiKey::new(key), &emulator.base_url()).unwrap();
    let mut config = RuntimeConfig::default();
    config.call_timeout = Duration::from_millis(400);
    let runtime = runtime(config);

    assert!(!reused(&runtime, &account).await);
    let missing = runtime
        .call_with_log(&account, "get_profile", &json!({"profile_id": "01NOPE"}))
        .await;
    assert_eq!(missing.result.unwrap_err().code, "not_found");
    assert!(missing.stages.reused);
    assert!(
        reused(&runtime, &account).await,
        "a component error keeps the instance"
    );

    emulator.inject_fault(key, Fault::Delay(Duration::from_secs(3)));
    let slow = runtime
        .call_with_log(&account, "list_lists", &json!({}))
        .await;
    assert_eq!(slow.result.unwrap_err().code, "timeout");
    assert!(slow.stages.reused);
    assert!(
        !reused(&runtime, &account).await,
        "the timed-out call's instance is not reused"
    );
}

/// With reuse off every call is fresh; a runtime with other limits never takes an instance
/// made under this one's. Catches: ignoring the switch, or a kept instance carrying one
/// runtime's memory cap and egress limits into another's calls.
#[tokio::test(flavor = "multi_thread")]
async fn reuse_follows_the_configuration() {
    let emulator = Emulator::start().await.unwrap();
    let account =
        Account::new("cfg", ApiKey::new("pk_reuse_cfg_01"), &emulator.base_url()).unwrap();
    let off = runtime(RuntimeConfig {
        reuse_instances: false,
        ..RuntimeConfig::default()
    });
    for _ in 0..3 {
        assert!(!reused(&off, &account).await);
    }
    let first = runtime(RuntimeConfig::default());
    assert!(!reused(&first, &account).await);
    assert!(reused(&first, &account).await);
    let other_limits = runtime(RuntimeConfig {
        memory_limit_bytes: 32 << 20,
        ..RuntimeConfig::default()
    });
    assert!(
        !reused(&other_limits, &account).await,
        "an instance made under other limits is not taken"
    );
}

/// A kept instance stays kept for an account's calls: a clean call leaves nothing in its
/// Store. wasmtime-wasi-http 48 leaves the `request-options` of every request in the Store's
/// table; the runtime's `outgoing-handler` deletes them (`outgoing.rs`), so no renewal is
/// needed (before it, every 17th call started fresh). Catches: the options leaked again (the
/// Store would pass its bound of 16 host resources and be renewed), or reuse stopped.
#[tokio::test(flavor = "multi_thread")]
async fn a_kept_instance_stays_kept_and_its_store_does_not_grow() {
    let emulator = Emulator::start().await.unwrap();
    let runtime = runtime(RuntimeConfig::default());
    let account = Account::new(
        "long",
        ApiKey::new("pk_reuse_long_01"),
        &emulator.base_url(),
    )
    .unwrap();
    let mut fresh = 0;
    for _ in 0..100 {
        if !reused(&runtime, &account).await {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "only the first of 100 calls starts fresh");
}

/// An idle account's kept instances are given back to the runtime-wide count when the
/// account is forgotten, so forgetting accounts never uses up the count. With 4 slots (2 may
/// be kept) and accounts forgotten at every call, three calls of `a` each leave one instance
/// and forget the one before; `b` can then still keep one. Catches the count taken from the
/// accounts kept instead of those dropped (`if !keep` made `if keep`): the count would reach
/// its cap of 2 with one instance really kept, and `b`'s second call would start fresh.
#[tokio::test(flavor = "multi_thread")]
async fn forgetting_an_account_gives_back_its_kept_instances() {
    let emulator = Emulator::start().await.unwrap();
    let forgetful = Runtime::new(RuntimeConfig {
        pooled_instances: 4,
        idle_account_timeout: Duration::ZERO,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let a = Account::new("a", ApiKey::new("pk_forget_a_01"), &emulator.base_url()).unwrap();
    for _ in 0..3 {
        assert!(
            !reused(&forgetful, &a).await,
            "a is forgotten between calls"
        );
    }
    let patient = forgetful.with_config(RuntimeConfig {
        pooled_instances: 4,
        ..RuntimeConfig::default()
    });
    let b = Account::new("b", ApiKey::new("pk_forget_b_01"), &emulator.base_url()).unwrap();
    assert!(!reused(&patient, &b).await);
    assert!(reused(&patient, &b).await, "b's instance was kept");
}

/// Kept instances hold at most half the instance slots, so calls always find slots of their
/// own: with 4 slots, the first two accounts keep theirs and the third's is dropped. Catches
/// the cap's `/ 2` made `* 2`.
#[tokio::test(flavor = "multi_thread")]
async fn kept_instances_hold_at_most_half_the_slots() {
    let emulator = Emulator::start().await.unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        pooled_instances: 4,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let accounts: Vec<Account> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let key = ApiKey::new(format!("pk_half_{name}_01"));
            Account::new(*name, key, &emulator.base_url()).unwrap()
        })
        .collect();
    for account in &accounts {
        assert!(!reused(&runtime, account).await);
    }
    assert!(reused(&runtime, &accounts[0]).await);
    assert!(reused(&runtime, &accounts[1]).await);
    assert!(
        !reused(&runtime, &accounts[2]).await,
        "two of the four slots were kept already: c's instance was not"
    );
}
