//! A session's Klaviyo side, independent of any script language: named accounts with their
//! policies, the permission check, the component runtime (compiled on first use, so a session
//! that only reads docs starts fast), and the record of every call (the CLI envelope's
//! `integration_calls`). The Lua surface, `kosmo integrations:call` and the MCP server all
//! call through [`Host::invoke`], so a policy holds whatever the surface.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::account::Account;
use crate::catalog::{Kind, catalog};
use crate::error::{CallError, ErrorCode};
use crate::names::did_you_mean;
use crate::policy::{Answer, Decision, Policy, Prompter, decide};
use crate::runtime::{Runtime, RuntimeConfig};

/// Name of the account used when none is named.
pub const DEFAULT_ACCOUNT: &str = "default";

/// Call records a host keeps between two [`Host::take_records`] (one evaluation): the first
/// this many; later calls are only counted ([`Host::records_dropped`]). Without a cap a script
/// looping over failing calls grew records without bound (security review, finding 1d/4:
/// a million calls held 3.9 GB of records and printed a 207 MB envelope).
pub const MAX_CALL_RECORDS: usize = 1000;

/// How to store an account's key, for `not_configured` messages: `api_key=-` reads the key
/// from standard input without echo, so it stays out of the shell's history and the process
/// list (`api_key=KEY` on the command line would be in both).
fn configure_command(account: &str) -> String {
    format!(
        "`kosmo integrations:configure klaviyo --account {account} --set api_key=-` (it reads the \
         key from standard input without echo, keeping it out of shell history)"
    )
}

/// One account a session may use.
#[derive(Clone, Debug)]
pub struct AccountConfig {
    /// Name, key and base URL.
    pub account: Account,
    /// What it allows.
    pub policy: Policy,
}

/// How a host treats calls.
#[derive(Clone, Default)]
pub struct HostOptions {
    /// `--force`: lift `ask` and `deny` for this run.
    pub force: bool,
    /// Who to ask when a policy says `ask` (none: refuse).
    pub prompter: Option<Arc<dyn Prompter>>,
    /// Limits of each component call.
    pub runtime: RuntimeConfig,
}

/// One call, as the envelope's `integration_calls` reports it.
#[derive(Clone, Debug)]
pub struct CallRecord {
    /// `klaviyo.<function>`, or `mcp.<server>.<tool>` for an MCP tool call.
    pub path: String,
    /// The account it ran for (the server's name for an MCP tool call).
    pub account: String,
    /// Read or write.
    pub kind: Kind,
    /// How long the call took, not counting the time a person took to answer a permission
    /// question (`ask`): that wait is the person's, not Klaviyo's or the plugin's, and would
    /// hide how long the call itself took. While the call runs, the permission check adds each
    /// wait for an answer here; [`CallRecord::finish`] then sets the time since the call
    /// started minus those waits.
    pub duration: Duration,
    /// HTTP status of the last response, if there was one.
    pub status: Option<u16>,
    /// `code: message` when it failed.
    pub error: Option<String>,
    /// `allowed`, `approved` (at the prompt), `bypassed` (by `--force`) or `refused`.
    pub permission: &'static str,
    /// HTTP requests made (retries included).
    pub requests: usize,
}

impl CallRecord {
    /// Set [`CallRecord::duration`] at the end of a call that started at `started`: the time
    /// since then, less the waits for an answer the permission check added to it meanwhile.
    pub fn finish(&mut self, started: Instant) {
        self.duration = started.elapsed().saturating_sub(self.duration);
    }

    /// The record as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "path": self.path,
            "account": self.account,
            "duration_ms": self.duration.as_millis() as u64,
            "status": self.status,
            "error": self.error,
            "kind": self.kind.as_str(),
            "permission": self.permission,
            "requests": self.requests,
        })
    }
}

/// The records of the calls since the last take: at most [`MAX_CALL_RECORDS`], the rest
/// counted.
#[derive(Default)]
struct Records {
    kept: Vec<CallRecord>,
    dropped: u64,
}

impl Records {
    fn push(&mut self, record: CallRecord) {
        if self.kept.len() < MAX_CALL_RECORDS {
            self.kept.push(record);
        } else {
            self.dropped += 1;
        }
    }
}

/// A call that is not a Klaviyo function, to check with [`Host::authorize`].
#[derive(Clone, Copy, Debug)]
pub struct Authorization<'a> {
    /// What an "all for the rest of the run" answer covers, e.g. `mcp.<server>`.
    pub scope: &'a str,
    /// The call, e.g. `mcp.<server>.<tool>` (the error's `function`).
    pub path: &'a str,
    /// Read or write.
    pub kind: Kind,
    /// What the scope allows.
    pub policy: Policy,
    /// Who the policy belongs to, e.g. ``MCP server `x` ``.
    pub subject: &'a str,
    /// Why the call is of its kind (may be empty), e.g. ` (not marked readOnlyHint)`.
    pub why: &'a str,
    /// How to allow the kind for good, e.g. `set "permissions" ... in FILE`.
    pub allow_hint: &'a str,
}

/// Longest string argument a permission question shows whole; longer ones are cut with `…`.
const QUESTION_STRING_CHARS: usize = 40;

/// Longest argument summary a permission question shows: the question is one terminal line.
const QUESTION_ARGS_CHARS: usize = 160;

/// `args` for a permission question: compact JSON, strings over [`QUESTION_STRING_CHARS`]
/// cut, the whole at most [`QUESTION_ARGS_CHARS`] characters. Control and bidirectional
/// characters are escaped: the arguments come from a script (perhaps an agent's), and must
/// not be able to redraw or reorder the line a person approves. Arguments never hold an API
/// key (the host adds it at egress), and the bound keeps any other secret mostly unshown.
fn abbreviated(args: &Value) -> String {
    fn cut(v: &Value) -> Value {
        match v {
            Value::String(s) if s.chars().count() > QUESTION_STRING_CHARS => {
                let mut short: String = s.chars().take(QUESTION_STRING_CHARS - 1).collect();
                short.push('…');
                Value::String(short)
            }
            Value::Array(items) => Value::Array(items.iter().map(cut).collect()),
            Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), cut(v))).collect()),
            other => other.clone(),
        }
    }
    let mut shown = String::new();
    for c in cut(args).to_string().chars() {
        let bidi = matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
        if c.is_control() || bidi {
            shown.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            shown.push(c);
        }
    }
    if shown.chars().count() > QUESTION_ARGS_CHARS {
        shown = shown.chars().take(QUESTION_ARGS_CHARS - 1).collect();
        shown.push('…');
    }
    shown
}

/// The messages of one permission check.
struct Texts {
    ask_refused: String,
    denied: String,
    question: String,
    declined: String,
}

/// Runs Klaviyo functions for named accounts, enforcing their policies.
pub struct Host {
    runtime: OnceCell<Runtime>,
    options: HostOptions,
    accounts: BTreeMap<String, AccountConfig>,
    records: Mutex<Records>,
    /// How many calls the last [`Host::take_records`] left out.
    last_dropped: AtomicU64,
    /// (scope, kind) pairs approved for the rest of the run at the prompt (`account:<name>`
    /// for Klaviyo accounts, `scope:<scope>` for [`Host::authorize`]).
    approved: Mutex<HashSet<(String, Kind)>>,
    bypassed: AtomicBool,
}

impl Host {
    /// A host for these accounts (the one named `default` is used when none is named).
    pub fn new(accounts: Vec<AccountConfig>, options: HostOptions) -> Self {
        Host {
            runtime: OnceCell::new(),
            options,
            accounts: accounts
                .into_iter()
                .map(|a| (a.account.name.clone(), a))
                .collect(),
            records: Mutex::new(Records::default()),
            last_dropped: AtomicU64::new(0),
            approved: Mutex::new(HashSet::new()),
            bypassed: AtomicBool::new(false),
        }
    }

    /// Use an already compiled runtime (embedders that share one).
    pub fn with_runtime(self, runtime: Runtime) -> Self {
        let _ = self.runtime.set(runtime);
        self
    }

    /// Names of the configured accounts, `default` included when it is configured.
    pub fn account_names(&self) -> Vec<String> {
        self.accounts.keys().cloned().collect()
    }

    /// Every configured API key: what output must never show.
    pub fn secrets(&self) -> Vec<String> {
        self.accounts
            .values()
            .map(|a| a.account.api_key.expose().to_string())
            .collect()
    }

    /// Whether `--force` is on.
    pub fn force(&self) -> bool {
        self.options.force
    }

    /// Whether `--force` let through a call the policy would have asked about or denied.
    pub fn permission_bypassed(&self) -> bool {
        self.bypassed.load(Ordering::SeqCst)
    }

    /// The calls made since the last take: the first [`MAX_CALL_RECORDS`] of them; how many
    /// more there were is [`Host::records_dropped`] until the next take.
    pub fn take_records(&self) -> Vec<CallRecord> {
        let mut records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let taken = std::mem::take(&mut *records);
        self.last_dropped.store(taken.dropped, Ordering::SeqCst);
        taken.kept
    }

    /// How many calls the last [`Host::take_records`] did not return because there were more
    /// than [`MAX_CALL_RECORDS`] (the CLI reports it as `meta.integration_calls_dropped`).
    pub fn records_dropped(&self) -> u64 {
        self.last_dropped.load(Ordering::SeqCst)
    }

    /// Call `function` for `account` (default when `None`) with JSON arguments.
    pub async fn invoke(
        &self,
        account: Option<&str>,
        function: &str,
        args: &Value,
    ) -> Result<Value, CallError> {
        let started = Instant::now();
        let account_name = account.unwrap_or(DEFAULT_ACCOUNT).to_string();
        let Some(doc) = catalog().function(function) else {
            let paths: Vec<String> = catalog()
                .functions()
                .iter()
                .map(|f| format!("klaviyo.{}", f.name))
                .collect();
            let hint = did_you_mean(
                &format!("klaviyo.{function}"),
                paths.iter().map(String::as_str),
            );
            return Err(CallError::new(
                ErrorCode::UnknownFunction,
                function,
                format!("Unknown function: klaviyo.{function}.{hint}"),
            ));
        };
        let mut record = CallRecord {
            path: format!("klaviyo.{}", doc.name),
            account: account_name.clone(),
            kind: doc.kind,
            duration: Duration::ZERO,
            status: None,
            error: None,
            permission: "allowed",
            requests: 0,
        };
        let result = self
            .run(&account_name, &doc.name, doc.kind, args, &mut record)
            .await;
        let result = result.map_err(|mut e| {
            e.details
                .insert("account".into(), Value::String(account_name.clone()));
            record.status = record.status.or(e.status);
            record.error = Some(format!("{}: {}", e.code, e.message));
            e
        });
        record.finish(started);
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
        result
    }

    async fn run(
        &self,
        account_name: &str,
        function: &str,
        kind: Kind,
        args: &Value,
        record: &mut CallRecord,
    ) -> Result<Value, CallError> {
        let Some(config) = self.accounts.get(account_name) else {
            let configure = configure_command(account_name);
            let message = if account_name == DEFAULT_ACCOUNT {
                format!(
                    "no default Klaviyo account: set KLAVIYO_API_KEY (and KLAVIYO_BASE_URL), or run \
                     {configure}"
                )
            } else {
                format!("no Klaviyo account `{account_name}`: run {configure}")
            };
            return Err(CallError::new(ErrorCode::NotConfigured, function, message));
        };
        let runtime = self
            .runtime()
            .await
            .map_err(|m| CallError::new(ErrorCode::Internal, function, m))?;
        // Bad arguments are reported before asking for permission: no request would be sent
        // anyway, and the caller should not need --force to learn about a typo.
        if let Some(info) = runtime.function(function)
            && let Err(e) = crate::convert::args_to_val(&info.args, args)
        {
            return Err(CallError::invalid_argument(function, &e.field, e.message));
        }
        self.check_permission(config, function, kind, args, record)
            .await?;
        let outcome = runtime.call_with_log(&config.account, function, args).await;
        record.requests = outcome.exchanges.len();
        record.status = outcome.exchanges.iter().rev().find_map(|x| x.status);
        outcome.result
    }

    async fn check_permission(
        &self,
        config: &AccountConfig,
        function: &str,
        kind: Kind,
        args: &Value,
        record: &mut CallRecord,
    ) -> Result<(), CallError> {
        let name = &config.account.name;
        // Built only when the call is refused or asked about: not on every allowed call.
        let texts = || {
            let kinds = format!("{}s", kind.as_str());
            let to = match kind {
                Kind::Read => "from",
                Kind::Write => "to",
            };
            Texts {
                ask_refused: format!(
                    "klaviyo.{function} is a {kind} and account `{name}` asks before {kinds}, but there is no \
                     terminal to ask on: rerun with --force to allow it for this run, or allow {kinds} with \
                     `kosmo integrations:configure klaviyo --account {name} --{kind} allow`",
                    kind = kind.as_str()
                ),
                denied: format!(
                    "account `{name}` denies {kinds} (klaviyo.{function}); --force lifts that for one run"
                ),
                // What the call would do, and what "all" would allow: the person decides on the
                // arguments, not on the function's name alone.
                question: format!(
                    "kosmo: klaviyo.{function} {} is a {kind} {to} account `{name}`. Allow? (a = all \
                     {kinds} {to} `{name}` for this run)",
                    abbreviated(args),
                    kind = kind.as_str()
                ),
                declined: format!("klaviyo.{function} on account `{name}` was declined"),
            }
        };
        let scope = format!("account:{name}");
        self.decide_call(&scope, function, kind, config.policy, texts, record)
            .await
    }

    /// Check a call that is not a Klaviyo function (an MCP server's tool) against `policy`,
    /// with this host's `--force`, prompter and "all for the rest of the run" answers, so that
    /// every surface shares one permission state (issue 11: MCP tool calls "go through the
    /// same permission policy"). Sets `record.permission`; refusals are `permission_denied`.
    pub async fn authorize(
        &self,
        request: &Authorization<'_>,
        record: &mut CallRecord,
    ) -> Result<(), CallError> {
        let Authorization {
            scope,
            path,
            kind,
            policy,
            subject,
            why,
            allow_hint,
        } = *request;
        let texts = || {
            let kinds = format!("{}s", kind.as_str());
            Texts {
                ask_refused: format!(
                    "{path} is a {kind}{why} and {subject} asks before {kinds}, but there is no terminal to \
                     ask on: rerun with --force to allow it for this run, or {allow_hint}",
                    kind = kind.as_str()
                ),
                denied: format!(
                    "{subject} denies {kinds} ({path}); --force lifts that for one run"
                ),
                question: format!(
                    "kosmo: {path} is a {kind} on {subject}. Allow? (a = all {kinds} on {subject} for \
                     this run)",
                    kind = kind.as_str()
                ),
                declined: format!("{path} was declined"),
            }
        };
        let scope = format!("scope:{scope}");
        self.decide_call(&scope, path, kind, policy, texts, record)
            .await
    }

    /// Add the record of a call made outside [`Host::invoke`] (an MCP tool call), in call
    /// order with the Klaviyo calls and under the same cap ([`MAX_CALL_RECORDS`]).
    pub fn push_record(&self, record: CallRecord) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    /// The decision for one call: the policy's, `--force`'s, a remembered "all", or the
    /// prompter's answer. `scope` keys the "all for the rest of the run" answers.
    async fn decide_call(
        &self,
        scope: &str,
        function: &str,
        kind: Kind,
        policy: Policy,
        texts: impl FnOnce() -> Texts,
        record: &mut CallRecord,
    ) -> Result<(), CallError> {
        let access = policy.access(kind);
        let remembered = self
            .approved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(scope.to_string(), kind));
        let decision = if remembered {
            Decision::Allow
        } else {
            decide(access, self.options.force, self.options.prompter.is_some())
        };
        let refuse = |record: &mut CallRecord, message: String| -> CallError {
            record.permission = "refused";
            let mut e = CallError::new(ErrorCode::PermissionDenied, function, message);
            e.details.insert("reason".into(), json!("policy"));
            e.details.insert("policy".into(), json!(access.as_str()));
            e.details.insert("kind".into(), json!(kind.as_str()));
            e
        };
        match decision {
            Decision::Allow => Ok(()),
            Decision::Bypass => {
                record.permission = "bypassed";
                self.bypassed.store(true, Ordering::SeqCst);
                Ok(())
            }
            Decision::Refuse { ask_refused: true } => Err(refuse(record, texts().ask_refused)),
            Decision::Refuse { ask_refused: false } => Err(refuse(record, texts().denied)),
            Decision::Ask => {
                let prompter = self
                    .options
                    .prompter
                    .clone()
                    .expect("Ask is only decided with a prompter");
                let Texts {
                    question, declined, ..
                } = texts();
                let asked = Instant::now();
                let answer = tokio::task::spawn_blocking(move || prompter.ask(&question))
                    .await
                    .unwrap_or(Answer::No);
                // Kept out of the call's duration (see `CallRecord::duration`).
                record.duration += asked.elapsed();
                match answer {
                    Answer::Yes => {
                        record.permission = "approved";
                        Ok(())
                    }
                    Answer::All => {
                        record.permission = "approved";
                        self.approved
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert((scope.to_string(), kind));
                        Ok(())
                    }
                    Answer::No => Err(refuse(record, declined)),
                }
            }
        }
    }

    async fn runtime(&self) -> Result<&Runtime, String> {
        let config = self.options.runtime.clone();
        self.runtime
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || Runtime::new(config))
                    .await
                    .map_err(|e| format!("loading the Klaviyo component failed: {e}"))?
                    .map_err(|e| format!("loading the Klaviyo component failed: {e:#}"))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn call_records_are_capped_and_the_rest_counted() {
        // No account: every call fails before the component is even loaded.
        let host = Host::new(Vec::new(), HostOptions::default());
        let extra = 250;
        for _ in 0..MAX_CALL_RECORDS + extra {
            let e = host.invoke(None, "get_profile", &json!({})).await;
            assert_eq!(e.unwrap_err().code, ErrorCode::NotConfigured);
        }
        assert_eq!(host.take_records().len(), MAX_CALL_RECORDS);
        assert_eq!(host.records_dropped(), extra as u64);
        assert!(host.take_records().is_empty());
        assert_eq!(host.records_dropped(), 0, "counted per take");
    }

    /// Records pushed from outside (MCP tool calls) join the Klaviyo calls' records in call
    /// order. Catches `push_record` doing nothing.
    #[tokio::test]
    async fn pushed_records_join_the_calls_in_order() {
        let host = Host::new(Vec::new(), HostOptions::default());
        host.push_record(CallRecord {
            path: "mcp.docs.search".into(),
            account: "docs".into(),
            kind: Kind::Read,
            duration: Duration::ZERO,
            status: None,
            error: None,
            permission: "allowed",
            requests: 0,
        });
        let _ = host.invoke(None, "get_profile", &json!({})).await;
        let paths: Vec<String> = host.take_records().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["mcp.docs.search", "klaviyo.get_profile"]);
    }

    /// A missing account's message suggests `--set api_key=-`, never a key on the command
    /// line. Guards: the hint reverting to `api_key=KEY` (into shell history).
    #[tokio::test]
    async fn not_configured_suggests_reading_the_key_from_stdin() {
        let host = Host::new(Vec::new(), HostOptions::default());
        for account in [None, Some("shop")] {
            let e = host
                .invoke(account, "get_profile", &json!({"profile_id": "x"}))
                .await
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::NotConfigured);
            let name = account.unwrap_or(DEFAULT_ACCOUNT);
            assert!(
                e.message
                    .contains(&format!("--account {name} --set api_key=-`")),
                "{}",
                e.message
            );
            assert!(e.message.contains("without echo"), "{}", e.message);
            assert!(!e.message.contains("api_key=KEY"), "{}", e.message);
            // The default account also names the environment variables that configure it
            // (catches `==` for `!=` in choosing the message).
            let (default, named) = (
                e.message
                    .starts_with("no default Klaviyo account: set KLAVIYO_API_KEY"),
                e.message.starts_with("no Klaviyo account `shop`: run "),
            );
            assert_eq!(
                (default, named),
                (account.is_none(), account.is_some()),
                "{}",
                e.message
            );
        }
        let doc = ErrorCode::NotConfigured.host_doc().unwrap();
        assert!(
            doc.contains("--set api_key=-") && !doc.contains("api_key=KEY"),
            "{doc}"
        );
        let overview = crate::catalog::catalog().read("klaviyo").unwrap();
        assert!(overview.contains("api_key=-") && !overview.contains("api_key=<key>"));
    }

    /// What a host tells its surfaces: account names, the keys to redact, `--force`, and
    /// whether `--force` let a call through (cargo-mutants: each could return a constant
    /// unnoticed by this crate's tests).
    #[tokio::test]
    async fn accounts_secrets_and_force_are_reported() {
        let config = |name: &str, key: &str| AccountConfig {
            account: Account::new(name, crate::ApiKey::new(key), "https://a.klaviyo.com").unwrap(),
            policy: Policy {
                read: crate::Access::Allow,
                write: crate::Access::Deny,
            },
        };
        let accounts = || {
            vec![
                config("shop", "pk_shop_1234"),
                config("default", "pk_default_5678"),
            ]
        };
        let request = |kind| Authorization {
            scope: "account:shop",
            path: "klaviyo.create_list",
            kind,
            policy: Policy {
                read: crate::Access::Allow,
                write: crate::Access::Deny,
            },
            subject: "klaviyo.create_list",
            why: "a write",
            allow_hint: "set it",
        };
        let record = |kind| CallRecord {
            path: "klaviyo.create_list".into(),
            account: "shop".into(),
            kind,
            duration: Duration::ZERO,
            status: None,
            error: None,
            permission: "",
            requests: 0,
        };

        let plain = Host::new(accounts(), HostOptions::default());
        assert_eq!(plain.account_names(), ["default", "shop"]);
        let mut secrets = plain.secrets();
        secrets.sort();
        assert_eq!(secrets, ["pk_default_5678", "pk_shop_1234"]);
        assert!(!plain.force());
        let mut r = record(Kind::Write);
        let e = plain
            .authorize(&request(Kind::Write), &mut r)
            .await
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::PermissionDenied);
        assert_eq!(r.permission, "refused");
        assert!(!plain.permission_bypassed());

        let forced = Host::new(
            accounts(),
            HostOptions {
                force: true,
                ..HostOptions::default()
            },
        );
        assert!(forced.force());
        let mut r = record(Kind::Read);
        forced
            .authorize(&request(Kind::Read), &mut r)
            .await
            .unwrap();
        assert!(
            !forced.permission_bypassed(),
            "a read the policy allows is not a bypass"
        );
        let mut r = record(Kind::Write);
        forced
            .authorize(&request(Kind::Write), &mut r)
            .await
            .unwrap();
        assert_eq!(r.permission, "bypassed");
        assert!(forced.permission_bypassed());
    }

    /// Arguments in a question: compact, long strings and the whole cut with `…`, control and
    /// bidi characters escaped. Guards: the per-string cut or the overall bound removed (a
    /// 10 kB argument would fill the terminal), or raw escapes passed through (a script could
    /// rewrite the line the person approves).
    #[test]
    fn questions_abbreviate_arguments() {
        assert_eq!(
            abbreviated(&json!({"name": "Newsletter"})),
            r#"{"name":"Newsletter"}"#
        );
        let long = "x".repeat(100);
        let shown = abbreviated(&json!({"email": "a@b.c", "properties": {"note": long}}));
        assert!(
            shown.contains(&format!("\"{}…\"", "x".repeat(QUESTION_STRING_CHARS - 1))),
            "{shown}"
        );
        assert!(
            !shown.contains(&"x".repeat(QUESTION_STRING_CHARS)),
            "{shown}"
        );
        let many: Vec<String> = (0..50).map(|i| format!("value{i}")).collect();
        let shown = abbreviated(&json!({ "items": many }));
        assert_eq!(shown.chars().count(), QUESTION_ARGS_CHARS);
        assert!(shown.ends_with('…'), "{shown}");
        // At the bounds nothing is cut: a string of exactly 40 characters, a line of 160.
        let forty = "y".repeat(QUESTION_STRING_CHARS);
        assert_eq!(abbreviated(&json!([forty])), format!("[\"{forty}\"]"));
        let line = |last: usize| {
            let mut items = vec!["z".repeat(QUESTION_STRING_CHARS); 3];
            items.push("z".repeat(last));
            abbreviated(&json!(items))
        };
        // `[` + 3 x (42 + `,`) + 29 + `]`: 160 characters, shown whole.
        assert_eq!(line(27).chars().count(), QUESTION_ARGS_CHARS);
        assert!(!line(27).contains('…'), "{}", line(27));
        assert_eq!(line(28).chars().count(), QUESTION_ARGS_CHARS);
        assert!(line(28).ends_with("z…"), "{}", line(28));
        let shown = abbreviated(&json!({"name": "a\u{1b}[2K\u{9b}b\u{202e}c\u{7f}"}));
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(!shown.contains('\u{202e}'), "{shown:?}");
        assert!(
            shown.contains("\\u009b") && shown.contains("\\u202e"),
            "{shown}"
        );
    }
}
