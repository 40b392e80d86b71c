//! The runtime library as an agent host uses it: the compiled-component cache and
//! per-account concurrency limits.

use std::time::{Duration, Instant};

use kosmo_emulator::{Emulator, Fault};
use kosmo_runtime::{Account, ApiKey, Runtime, RuntimeConfig};
use serde_json::json;

#[test]
fn compiled_components_are_cached_and_reused() {
    let root = tempfile::tempdir().unwrap();
    // The cache and its parent must be private to the user: a tempdir's own parent is the
    // world-writable /tmp, so the cache is one level down (as under $KOSMO_HOME).
    let dir = root.path().join("cache");
    let config = RuntimeConfig {
        cache_dir: Some(dir.clone()),
        ..RuntimeConfig::default()
    };
    let first = Runtime::new(config.clone()).unwrap();
    let artifacts: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(artifacts.len(), 1, "{artifacts:?}");
    assert!(artifacts[0].extension().is_some_and(|e| e == "cwasm"));
    let modified = std::fs::metadata(&artifacts[0])
        .unwrap()
        .modified()
        .unwrap();

    let started = Instant::now();
    let second = Runtime::new(config.clone()).unwrap();
    let warm = started.elapsed();
    assert_eq!(second.functions().count(), first.functions().count());
    assert_eq!(
        std::fs::metadata(&artifacts[0])
            .unwrap()
            .modified()
            .unwrap(),
        modified,
        "not rewritten"
    );
    println!("warm load: {warm:?}");

    // A corrupt artifact is replaced, not trusted. (A new file: the old one is still mapped
    // by the runtimes above, which is why the cache itself only ever renames into place.)
    std::fs::remove_file(&artifacts[0]).unwrap();
    std::fs::write(&artifacts[0], b"not a compiled component").unwrap();
    let third = Runtime::new(config).unwrap();
    assert_eq!(
        third.functions().count(),
        kosmo_runtime::catalog().functions().len()
    );
    assert!(std::fs::metadata(&artifacts[0]).unwrap().len() > 1000);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_account_does_not_hold_up_another() {
    let emulator = Emulator::start().await.unwrap();
    let config = RuntimeConfig {
        max_concurrent_calls_per_account: 2,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config).unwrap();
    let busy = Account::new("busy", ApiKey::new("pk_busy"), &emulator.base_url()).unwrap();
    let calm = Account::new("calm", ApiKey::new("pk_calm"), &emulator.base_url()).unwrap();
    for _ in 0..6 {
        emulator.inject_fault("pk_busy", Fault::Delay(Duration::from_millis(300)));
    }
    let started = Instant::now();
    let mut busy_calls = Vec::new();
    for _ in 0..6 {
        let (runtime, busy) = (runtime.clone(), busy.clone());
        busy_calls.push(tokio::spawn(async move {
            runtime.call(&busy, "list_lists", &json!({})).await
        }));
    }
    // The first two busy calls are at the emulator (held by their delay): the account's
    // limit is taken. Waiting for that, not for a fixed time, keeps this steady on a busy machine.
    arrivals(&emulator, "pk_busy", 2).await;
    let calm_started = Instant::now();
    runtime.call(&calm, "list_lists", &json!({})).await.unwrap();
    assert!(
        calm_started.elapsed() < Duration::from_millis(300),
        "the calm account did not wait"
    );
    for call in busy_calls {
        call.await.unwrap().unwrap();
    }
    // Two at a time, 300 ms each: three waves.
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

/// A CA and a certificate it signed for `host_name`, made for this test only.
fn test_certificates(host_name: &str) -> (String, kosmo_emulator::TlsIdentity) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec![host_name.to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let identity = kosmo_emulator::TlsIdentity {
        cert_chain_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
    };
    (ca.pem(), identity)
}

#[tokio::test(flavor = "multi_thread")]
async fn https_end_to_end_with_a_certificate_only_the_test_trusts() {
    let (ca_pem, identity) = test_certificates("localhost");
    let options = kosmo_emulator::EmulatorOptions {
        tls: Some(identity),
        ..Default::default()
    };
    let emulator = Emulator::start_with(options).await.unwrap();
    assert!(emulator.base_url().starts_with("https://localhost:"));
    let account = Account::new("tls", ApiKey::new("pk_tls"), &emulator.base_url()).unwrap();

    let trusting = Runtime::new(RuntimeConfig {
        extra_roots_pem: Some(ca_pem),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let p = trusting
        .call(
            &account,
            "create_profile",
            &json!({"email": "tls@example.com"}),
        )
        .await
        .unwrap();
    for _ in 0..3 {
        let got = trusting
            .call(&account, "get_profile", &json!({"profile_id": p["id"]}))
            .await
            .unwrap();
        assert_eq!(got["email"], "tls@example.com");
    }
    assert_eq!(emulator.request_count("pk_tls"), 4);

    // Without the test CA the certificate is refused: nothing else trusts it. The message
    // says it was the certificate, not an unreachable server (it said `connection refused`
    // for both before `pool::tls_error`).
    let default = Runtime::new(RuntimeConfig::default()).unwrap();
    let e = default
        .call(&account, "list_lists", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "transport", "{e}");
    let port = emulator.base_url().rsplit(':').next().unwrap().to_string();
    assert_eq!(
        e.message,
        format!("could not reach Klaviyo at localhost:{port} (TLS certificate error)")
    );
    assert_eq!(e.details["attempts"], 1, "not retried: {e:?}");
    assert_eq!(emulator.request_count("pk_tls"), 4);
}

/// A certificate from a trusted CA but for another host name is refused as a certificate
/// error: fails with a verifier that checks the chain and skips the name (RFC 6125 §6), and
/// tells a bad certificate from a server that is not there.
#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_for_another_host_is_refused_and_told_apart_from_a_dead_server() {
    let (ca_pem, identity) = test_certificates("other.example");
    let emulator = Emulator::start_with(kosmo_emulator::EmulatorOptions {
        tls: Some(identity),
        ..Default::default()
    })
    .await
    .unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        extra_roots_pem: Some(ca_pem),
        ..RuntimeConfig::default()
    })
    .unwrap();
    let account = Account::new("tls", ApiKey::new("pk_name"), &emulator.base_url()).unwrap();
    let e = runtime
        .call(&account, "list_lists", &json!({}))
        .await
        .unwrap_err();
    let port = emulator.base_url().rsplit(':').next().unwrap().to_string();
    assert_eq!(e.code, "transport", "{e}");
    assert_eq!(
        e.message,
        format!("could not reach Klaviyo at localhost:{port} (TLS certificate error)")
    );
    assert_eq!(
        e.details["attempts"], 1,
        "a bad certificate is not retried: {e}"
    );
    assert_eq!(emulator.request_count("pk_name"), 0);

    // The same runtime, a port nothing listens on: another message.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let dead = Account::new(
        "dead",
        ApiKey::new("pk_dead"),
        &format!("https://localhost:{closed}"),
    )
    .unwrap();
    let e = runtime
        .call(&dead, "list_lists", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "transport", "{e}");
    assert_eq!(
        e.message,
        format!("could not reach Klaviyo at localhost:{closed} (connection refused)")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_beyond_the_instance_slots_are_refused_as_busy_not_trapped() {
    let emulator = Emulator::start().await.unwrap();
    let config = RuntimeConfig {
        pooled_instances: 2,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config).unwrap();
    let account = Account::new("slots", ApiKey::new("pk_slots"), &emulator.base_url()).unwrap();
    for _ in 0..2 {
        emulator.inject_fault("pk_slots", Fault::Delay(Duration::from_millis(500)));
    }
    let held: Vec<_> = (0..2)
        .map(|_| {
            let (runtime, account) = (runtime.clone(), account.clone());
            tokio::spawn(async move { runtime.call(&account, "list_lists", &json!({})).await })
        })
        .collect();
    // Both held calls are at the emulator, so both hold an instance slot.
    arrivals(&emulator, "pk_slots", 2).await;
    let e = runtime
        .call(&account, "list_lists", &json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "busy", "{e}");
    for call in held {
        call.await.unwrap().unwrap();
    }
    runtime
        .call(&account, "list_lists", &json!({}))
        .await
        .expect("slots are free again");
}

/// A runtime reports the limits it was built with, and `with_config` the new ones. Catches
/// `config()` returning the defaults (an embedder copying it to change one limit would
/// silently reset the others).
#[tokio::test(flavor = "multi_thread")]
async fn a_runtime_reports_its_own_limits() {
    let runtime = Runtime::new(RuntimeConfig {
        fuel: 123_456_789,
        pooled_instances: 3,
        ..RuntimeConfig::default()
    })
    .unwrap();
    assert_eq!(runtime.config().fuel, 123_456_789);
    assert_eq!(runtime.config().pooled_instances, 3);
    let other = runtime.with_config(RuntimeConfig {
        call_timeout: Duration::from_secs(7),
        ..runtime.config().clone()
    });
    assert_eq!(other.config().call_timeout, Duration::from_secs(7));
    assert_eq!(other.config().fuel, 123_456_789);
}

/// When every slot is taken and some hold kept instances, a new call evicts the kept ones and
/// runs; the runtime-wide count of kept instances goes back down with them, so keeping works
/// afterwards. Two calls held at the emulator (until their 5 s call deadline: a call that
/// times out is never kept) and two kept instances fill 4 slots. Catches `evict_warm` not
/// evicting or not reporting it (the call would be `busy`), and its count going wrong (an
/// instance would never be kept again).
#[tokio::test(flavor = "multi_thread")]
async fn a_full_pool_evicts_kept_instances_for_a_new_call() {
    let emulator = Emulator::start().await.unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        pooled_instances: 4,
        ..RuntimeConfig::default()
    })
    .unwrap();
    let account = |name: &str| {
        let key = ApiKey::new(format!("pk_evict_{name}_01"));
        Account::new(name, key, &emulator.base_url()).unwrap()
    };
    for name in ["a", "b"] {
        runtime
            .call(&account(name), "list_lists", &json!({}))
            .await
            .expect("kept afterwards");
    }
    let held_runtime = runtime.with_config(RuntimeConfig {
        pooled_instances: 4,
        call_timeout: Duration::from_secs(5),
        ..RuntimeConfig::default()
    });
    let held: Vec<_> = ["c", "d"]
        .iter()
        .map(|name| {
            let account = account(name);
            emulator.inject_fault(
                &format!("pk_evict_{name}_01"),
                Fault::Delay(Duration::from_secs(10)),
            );
            let runtime = held_runtime.clone();
            tokio::spawn(async move { runtime.call(&account, "list_lists", &json!({})).await })
        })
        .collect();
    arrivals(&emulator, "pk_evict_c_01", 1).await;
    arrivals(&emulator, "pk_evict_d_01", 1).await;
    runtime
        .call(&account("e"), "list_lists", &json!({}))
        .await
        .expect("the kept instances make room");
    let a = account("a");
    runtime.call(&a, "list_lists", &json!({})).await.unwrap();
    let again = runtime.call_with_log(&a, "list_lists", &json!({})).await;
    again.result.unwrap();
    assert!(again.stages.reused, "keeping still works after an eviction");
    for call in held {
        assert_eq!(call.await.unwrap().unwrap_err().code, "timeout");
    }
}

/// Pools and concurrency limiters are keyed by the whole account (a second key under the same
/// name and URL is another tenant) and forgotten once idle, so a host serving many tenants
/// over months does not grow without bound.
#[tokio::test(flavor = "multi_thread")]
async fn accounts_are_keyed_in_full_and_forgotten_when_idle() {
    let emulator = Emulator::start().await.unwrap();
    let config = RuntimeConfig {
        idle_account_timeout: Duration::from_millis(400),
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(config).unwrap();
    let url = emulator.base_url();
    for i in 0..20 {
        // Same name and URL, another key: another tenant.
        let account = Account::new("shop", ApiKey::new(format!("pk_idle_{i}")), &url).unwrap();
        runtime
            .call(&account, "list_lists", &json!({}))
            .await
            .unwrap();
    }
    assert_eq!(runtime.tracked_accounts(), (20, 20));
    tokio::time::sleep(Duration::from_millis(600)).await;
    let late = Account::new("late", ApiKey::new("pk_idle_late"), &url).unwrap();
    runtime.call(&late, "list_lists", &json!({})).await.unwrap();
    assert_eq!(runtime.tracked_accounts(), (1, 1));
}

/// Every call reports where its time went, measured inside the runtime.
#[tokio::test(flavor = "multi_thread")]
async fn calls_report_their_stages() {
    let emulator = Emulator::start().await.unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let account = Account::new("stages", ApiKey::new("pk_stages"), &emulator.base_url()).unwrap();
    let outcome = runtime
        .call_with_log(&account, "list_lists", &json!({}))
        .await;
    outcome.result.unwrap();
    let s = outcome.stages;
    assert!(
        s.instantiate > Duration::ZERO && s.guest > Duration::ZERO,
        "{s:?}"
    );
    assert!(s.http > Duration::ZERO && s.http <= s.guest, "{s:?}");
    // A real call runs tens of thousands of wasm instructions.
    assert!(s.guest_fuel > 10_000, "{s:?}");
    assert!(
        s.queued + s.convert_args + s.instantiate + s.guest + s.convert_result <= outcome.duration,
        "{s:?} within {:?}",
        outcome.duration
    );
}

/// A refused connection names the `host:port` the host tried (the account's base URL, not the
/// `a.klaviyo.com` the component addressed), and never the path or the key. Guards: the
/// component's message left as it addressed it (`a.klaviyo.com:443`, a host the person never
/// configured), or no host at all ("could not reach Klaviyo (connection refused)"). The
/// POSTs carry a 90 kB body, more than the host buffers, so the refusal always lands while
/// the body is being written: the component must still report it (the request's own error),
/// not "closed while sending the request" (what it said when it gave up at the failed write).
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_connection_names_the_host_and_port_tried() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let key = "pk_refused_secret";
    let url = format!("http://127.0.0.1:{port}");
    let account = Account::new("refused", ApiKey::new(key), &url).unwrap();
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let note = "n".repeat(90 * 1024);
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let (runtime, account) = (runtime.clone(), account.clone());
            let args =
                json!({"email": format!("ada{i}@example.com"), "properties": {"note": note}});
            tokio::spawn(async move {
                runtime
                    .call_with_log(&account, "create_profile", &args)
                    .await
            })
        })
        .collect();
    for call in calls {
        let outcome = call.await.unwrap();
        let e = outcome.result.unwrap_err();
        assert_eq!(e.code, "transport", "{e}");
        assert_eq!(
            e.message,
            format!("could not reach Klaviyo at 127.0.0.1:{port} (connection refused)")
        );
        for absent in ["a.klaviyo.com", "/api", key] {
            assert!(!e.message.contains(absent), "{absent} in {}", e.message);
        }
        let x = &outcome.exchanges[0];
        assert_eq!(x.addressed, "a.klaviyo.com:443");
        assert_eq!(
            x.sent_to.as_deref(),
            Some(format!("127.0.0.1:{port}").as_str())
        );
    }
}

/// Wait until the emulator has seen `n` requests with `key` (bounded: 10 s, then fail).
/// Every instance slot can be in use at once: with `pooled_instances` calls in flight, each
/// holding its instance while the emulator holds its answer, none is refused as `busy`.
/// Catches the pool's budgets per component instance set too small for the component: it
/// instantiates 3 core modules (main, wit-component's shim and fixup) with 1 memory and 2
/// tables, against budgets of 4, 2 and 4, so with 8 slots `* 4` made `+ 4` (12 core
/// instances, 12 tables) fails. (`* 2` made `+ 2` for memories is not caught: 10 memories
/// still cover 8 instances of a one-memory component.)
#[tokio::test(flavor = "multi_thread")]
async fn every_instance_slot_can_be_in_use_at_once() {
    let emulator = Emulator::start().await.unwrap();
    let key = "pk_all_slots";
    let account = Account::new("slots", ApiKey::new(key), &emulator.base_url()).unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        pooled_instances: 8,
        reuse_instances: false,
        ..RuntimeConfig::default()
    })
    .unwrap();
    for _ in 0..8 {
        emulator.inject_fault(key, Fault::Delay(Duration::from_secs(1)));
    }
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (runtime, account) = (runtime.clone(), account.clone());
            tokio::spawn(async move { runtime.call(&account, "list_lists", &json!({})).await })
        })
        .collect();
    // All eight are at the emulator at once: eight instances alive together.
    arrivals(&emulator, key, 8).await;
    for call in calls {
        call.await.unwrap().expect("every slot serves");
    }
}

/// An account's calls keep waiting their turn when idle accounts are forgotten at every call:
/// an account with a call in flight is never forgotten, so a second call waits for the
/// account's only permit instead of getting a new limiter. Catches the sweep's test of who
/// still holds an account inverted (`>` made `<`). The check that the second call is held
/// back is made only while the first is known to be in flight, so a slow machine cannot fail
/// it.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_account_is_not_forgotten_while_its_calls_wait() {
    let emulator = Emulator::start().await.unwrap();
    let key = "pk_busy_forget";
    let account = Account::new("busy", ApiKey::new(key), &emulator.base_url()).unwrap();
    let runtime = Runtime::new(RuntimeConfig {
        pooled_instances: 8,
        max_concurrent_calls_per_account: 1,
        idle_account_timeout: Duration::ZERO,
        ..RuntimeConfig::default()
    })
    .unwrap();
    emulator.inject_fault(key, Fault::Delay(Duration::from_secs(3)));
    let spawn = || {
        let (runtime, account) = (runtime.clone(), account.clone());
        tokio::spawn(async move { runtime.call(&account, "list_lists", &json!({})).await })
    };
    let first = spawn();
    arrivals(&emulator, key, 1).await;
    let second = spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let arrived = emulator.request_count(key);
    // Read before checking the first is still in flight: then it held the only permit when
    // the count was read. (Only a stall past its 3 s would skip the check.)
    if !first.is_finished() {
        assert_eq!(arrived, 1, "the second call waits its turn");
    }
    first.await.unwrap().expect("first");
    second.await.unwrap().expect("second");
    assert_eq!(emulator.request_count(key), 2);
}

async fn arrivals(emulator: &Emulator, key: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while emulator.request_count(key) < n {
        assert!(
            Instant::now() < deadline,
            "{key}: {} of {n} requests arrived",
            emulator.request_count(key)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
