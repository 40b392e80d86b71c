//! Asking a person: when an account's policy says `ask`, [`Host`] asks its [`Prompter`] with a
//! question that shows the call's arguments and what "all" would allow, remembers an "all"
//! for that account and kind only, refuses on "no" without sending anything, and keeps the
//! time the person took out of the call's `duration`. A scripted prompter stands in for the
//! person; the calls go to the local emulator.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kosmo_emulator::Emulator;
use kosmo_runtime::{
    Access, Account, AccountConfig, Answer, ApiKey, Host, HostOptions, Policy, Prompter, Runtime,
    RuntimeConfig,
};
use serde_json::json;

/// Compiling the component takes seconds: once per test binary.
fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("the component compiles"))
        .clone()
}

/// A person who gives these answers in turn (then "no"), after `delay`, and whose questions
/// are kept.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<Answer>>,
    asked: Mutex<Vec<String>>,
    delay: Duration,
}

impl Scripted {
    fn new(answers: &[Answer], delay: Duration) -> Arc<Scripted> {
        Arc::new(Scripted {
            answers: Mutex::new(answers.iter().copied().collect()),
            asked: Mutex::new(Vec::new()),
            delay,
        })
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

impl Prompter for Scripted {
    fn ask(&self, question: &str) -> Answer {
        self.asked.lock().unwrap().push(question.to_string());
        std::thread::sleep(self.delay);
        self.answers
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Answer::No)
    }
}

const ASK_BOTH: Policy = Policy {
    read: Access::Ask,
    write: Access::Ask,
};

/// A host over the emulator with one account a name (its key is `pk_<name>`), each with
/// `policy`, asking `person`.
fn host(emulator: &Emulator, names: &[&str], policy: Policy, person: Arc<Scripted>) -> Host {
    let accounts = names
        .iter()
        .map(|name| AccountConfig {
            account: Account::new(
                *name,
                ApiKey::new(format!("pk_{name}")),
                &emulator.base_url(),
            )
            .unwrap(),
            policy,
        })
        .collect();
    let options = HostOptions {
        force: false,
        prompter: Some(person),
        runtime: RuntimeConfig::default(),
    };
    Host::new(accounts, options).with_runtime(runtime())
}

/// "Yes" allows this call only: the next write is asked about again. The question shows the
/// arguments and what "all" covers. Guards: a "yes" remembered like an "all" (the second
/// call would not be asked), or the arguments left out of the question.
#[tokio::test(flavor = "multi_thread")]
async fn yes_allows_one_call_and_the_next_is_asked_again() {
    let emulator = Emulator::start().await.unwrap();
    let person = Scripted::new(&[Answer::Yes, Answer::No], Duration::ZERO);
    let host = host(&emulator, &["shop"], Policy::default(), person.clone());
    let args = json!({"name": "Newsletter"});
    host.invoke(Some("shop"), "create_list", &args)
        .await
        .expect("approved");
    let e = host
        .invoke(Some("shop"), "create_list", &args)
        .await
        .unwrap_err();
    assert_eq!(e.code, "permission_denied", "{e}");
    let asked = person.asked();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(
        asked[0],
        "kosmo: klaviyo.create_list {\"name\":\"Newsletter\"} is a write to account `shop`. \
         Allow? (a = all writes to `shop` for this run)"
    );
    assert_eq!(emulator.request_count("pk_shop"), 1);
    let records = host.take_records();
    assert_eq!(records[0].permission, "approved");
    assert_eq!(records[1].permission, "refused");
}

/// "All" allows every later write of that account, and only that: a read (asked too by this
/// policy) is still asked about, and so is a write to another account. Guards: "all" keyed
/// by account only (the read would pass unasked) or by kind only (the other account's write
/// would pass unasked).
#[tokio::test(flavor = "multi_thread")]
async fn all_covers_the_writes_of_one_account_only() {
    let emulator = Emulator::start().await.unwrap();
    let person = Scripted::new(&[Answer::All, Answer::Yes, Answer::Yes], Duration::ZERO);
    let host = host(&emulator, &["shop", "other"], ASK_BOTH, person.clone());
    host.invoke(Some("shop"), "create_list", &json!({"name": "A"}))
        .await
        .expect("all writes to shop");
    host.invoke(Some("shop"), "create_list", &json!({"name": "B"}))
        .await
        .expect("covered by all");
    host.invoke(
        Some("shop"),
        "create_profile",
        &json!({"email": "ada@example.com"}),
    )
    .await
    .expect("another write, covered by all");
    assert_eq!(person.asked().len(), 1, "{:?}", person.asked());

    host.invoke(Some("shop"), "list_lists", &json!({}))
        .await
        .expect("the read is asked about and approved");
    host.invoke(Some("other"), "create_list", &json!({"name": "C"}))
        .await
        .expect("the other account is asked about and approved");
    let asked = person.asked();
    assert_eq!(asked.len(), 3, "{asked:?}");
    assert!(
        asked[1].starts_with("kosmo: klaviyo.list_lists {} is a read from account `shop`."),
        "{}",
        asked[1]
    );
    assert!(
        asked[1].ends_with("(a = all reads from `shop` for this run)"),
        "{}",
        asked[1]
    );
    assert!(
        asked[2].contains("is a write to account `other`"),
        "{}",
        asked[2]
    );
    assert_eq!(emulator.request_count("pk_shop"), 4);
    assert_eq!(emulator.request_count("pk_other"), 1);
}

/// "No" refuses with `permission_denied` and nothing reaches Klaviyo. Guards: a declined call
/// sent anyway, or refused with another code.
#[tokio::test(flavor = "multi_thread")]
async fn no_refuses_and_sends_nothing() {
    let emulator = Emulator::start().await.unwrap();
    let person = Scripted::new(&[Answer::No], Duration::ZERO);
    let host = host(&emulator, &["shop"], Policy::default(), person.clone());
    let e = host
        .invoke(Some("shop"), "create_list", &json!({"name": "Newsletter"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "permission_denied", "{e}");
    assert!(e.message.contains("declined"), "{}", e.message);
    assert_eq!(e.details["reason"], "policy");
    assert_eq!(person.asked().len(), 1);
    assert_eq!(emulator.request_count("pk_shop"), 0);
    let records = host.take_records();
    assert_eq!(records[0].permission, "refused");
    assert_eq!(records[0].requests, 0);
}

/// A person who takes 300 ms to answer does not make the call look 300 ms slow: the wait is
/// not in `duration` (nor `duration_ms`). Guards: `record.duration = started.elapsed()` (the
/// clock running through the question), which makes it at least 300 ms.
#[tokio::test(flavor = "multi_thread")]
async fn the_time_to_answer_is_not_in_the_duration() {
    let emulator = Emulator::start().await.unwrap();
    let wait = Duration::from_millis(300);
    let person = Scripted::new(&[Answer::Yes], wait);
    let host = host(&emulator, &["shop"], Policy::default(), person.clone());
    // Warm the instance pool and the account's connection: what is left is the call itself.
    host.invoke(Some("shop"), "list_lists", &json!({}))
        .await
        .expect("reads are allowed");
    let started = Instant::now();
    host.invoke(Some("shop"), "create_list", &json!({"name": "Newsletter"}))
        .await
        .expect("approved");
    let elapsed = started.elapsed();
    assert_eq!(person.asked().len(), 1);
    assert!(elapsed >= wait, "the person was waited for: {elapsed:?}");
    let record = host.take_records().pop().unwrap();
    assert_eq!(record.path, "klaviyo.create_list");
    assert!(
        record.duration < Duration::from_millis(200),
        "{:?} of {elapsed:?}",
        record.duration
    );
    assert!(record.to_json()["duration_ms"].as_u64().unwrap() < 200);
}

/// A long argument is cut in the question, which stays one bounded line. Guards: the whole
/// arguments pasted into the question (a 5,000-character note would fill the terminal).
#[tokio::test(flavor = "multi_thread")]
async fn long_arguments_are_abbreviated_in_the_question() {
    let emulator = Emulator::start().await.unwrap();
    let person = Scripted::new(&[Answer::No], Duration::ZERO);
    let host = host(&emulator, &["shop"], Policy::default(), person.clone());
    let note = "n".repeat(5000);
    let _ = host
        .invoke(
            Some("shop"),
            "create_profile",
            &json!({"email": "ada@example.com", "properties": {"note": note}}),
        )
        .await;
    let question = &person.asked()[0];
    assert!(
        question.contains(r#"{"email":"ada@example.com","properties":{"note":"nnnn"#),
        "{question}"
    );
    assert!(question.contains("…"), "{question}");
    assert!(question.chars().count() < 300, "{question}");
}
