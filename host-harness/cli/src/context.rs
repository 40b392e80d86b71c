//! What a run needs before any code: the accounts (environment and `$KOSMO_HOME`), the
//! emulator and throwaway keys with `--sandbox`, the host with its policies, the redactor, and
//! the `meta` the envelope reports.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use kosmo_emulator::{Emulator, EmulatorOptions};
use kosmo_mcp::McpClients;
use kosmo_runtime::{
    Account, AccountConfig, ApiKey, DEFAULT_ACCOUNT, ErrorCode, Host, HostOptions, Policy,
    Prompter, Runtime, RuntimeConfig,
};

use crate::accounts::{self, EnvAccount, Store};
use crate::args::{EXIT_FAILURE, EXIT_USAGE, RunOptions};
use crate::envelope::Envelope;
use crate::prompt::TerminalPrompter;
use crate::redact::{Redactor, unchecked_keys};

/// Everything a run sets up.
pub struct Context {
    /// The Klaviyo host.
    pub host: Arc<Host>,
    /// Cuts every known key out of what is printed.
    pub redactor: Redactor,
    /// The emulator of `--sandbox` (kept alive for the run).
    pub emulator: Option<Emulator>,
    /// The configured MCP servers, for the commands that use them (`integrations:lua`,
    /// `mcp:lua`): closed at the end of the run, killed by the watchdog's exit.
    pub mcp: Option<Arc<McpClients>>,
    /// Where each account's calls go (its base URL: the emulator's with `--sandbox`).
    pub base_urls: BTreeMap<String, String>,
    options: RunOptions,
}

/// A failure before the script runs: a message and the exit code.
pub struct SetupError {
    /// What went wrong.
    pub message: String,
    /// 2 for configuration and usage problems, 1 otherwise.
    pub exit: i32,
    /// The redactor known so far.
    pub redactor: Redactor,
}

impl Context {
    /// Build from the options; an `ask` policy asks on the controlling terminal when there is
    /// one (whatever standard input and output are), else it is refused.
    pub async fn build(options: &RunOptions) -> Result<Context, SetupError> {
        Context::build_with(options, terminal_prompter()).await
    }

    /// Build with this prompter for `ask` policies (`mcp:serve` asks through MCP elicitation).
    pub async fn build_with(
        options: &RunOptions,
        prompter: Option<Arc<dyn Prompter>>,
    ) -> Result<Context, SetupError> {
        Context::build_inner(options, prompter, false).await
    }

    /// Build with the component loaded before any call, so that the first call's time is the
    /// call's own (`integrations:check` reports it), not the compile's.
    pub async fn build_loaded(options: &RunOptions) -> Result<Context, SetupError> {
        Context::build_inner(options, terminal_prompter(), true).await
    }

    async fn build_inner(
        options: &RunOptions,
        prompter: Option<Arc<dyn Prompter>>,
        load_component: bool,
    ) -> Result<Context, SetupError> {
        let home = accounts::home_dir();
        let env = EnvAccount::from_env();
        let mut redactor = Redactor::new(unchecked_keys(env.iter().map(|e| e.api_key.clone())));
        let fail = |message: String, exit: i32, redactor: &Redactor| SetupError {
            message,
            exit,
            redactor: redactor.clone(),
        };
        let store = Store::load(home.as_deref()).map_err(|m| fail(m, EXIT_USAGE, &redactor))?;
        redactor.extend(store.keys());
        let mut list =
            accounts::resolve(&store, env.as_ref()).map_err(|m| fail(m, EXIT_USAGE, &redactor))?;

        let mut emulator = None;
        if options.sandbox {
            let emu = Emulator::start_with(EmulatorOptions {
                max_recorded_per_key: SANDBOX_RECORDED_REQUESTS,
                ..EmulatorOptions::default()
            })
            .await
            .map_err(|e| {
                fail(
                    format!("cannot start the sandbox emulator: {e}"),
                    EXIT_FAILURE,
                    &redactor,
                )
            })?;
            if !list.iter().any(|a| a.account.name == DEFAULT_ACCOUNT) {
                list.insert(
                    0,
                    sandbox_account(DEFAULT_ACCOUNT, Policy::default(), &emu)?,
                );
            }
            // `ask` protects real data; the sandbox's throwaway accounts have none, so what
            // would be asked is allowed there (a `deny` still denies, as it would for real).
            list = list
                .into_iter()
                .map(|a| sandbox_account(&a.account.name, a.policy.without_asking(), &emu))
                .collect::<Result<_, _>>()
                .map_err(|e| fail(e.message, e.exit, &redactor))?;
            emulator = Some(emu);
        }

        let base_urls = list
            .iter()
            .map(|a| (a.account.name.clone(), a.account.base_url.to_string()))
            .collect();
        // The compiled component is cached under $KOSMO_HOME: seconds to compile once,
        // milliseconds to load afterwards.
        let runtime_config = RuntimeConfig {
            cache_dir: home.as_ref().map(|h| h.join("cache")),
            ..RuntimeConfig::default()
        };
        let loaded = if load_component {
            let config = runtime_config.clone();
            let runtime = tokio::task::spawn_blocking(move || Runtime::new(config))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| format!("{e:#}")))
                .map_err(|e| {
                    fail(
                        format!("loading the Klaviyo component failed: {e}"),
                        EXIT_FAILURE,
                        &redactor,
                    )
                })?;
            Some(runtime)
        } else {
            None
        };
        let mut host = Host::new(
            list,
            HostOptions {
                force: options.force,
                prompter,
                runtime: runtime_config,
            },
        );
        if let Some(runtime) = loaded {
            host = host.with_runtime(runtime);
        }
        redactor.extend(host.secrets());
        Ok(Context {
            host: Arc::new(host),
            redactor,
            emulator,
            mcp: None,
            base_urls,
            options: options.clone(),
        })
    }

    /// The envelope's `meta`.
    pub fn meta(&self) -> Map<String, Value> {
        let mut meta = Map::new();
        meta.insert(
            "permission_bypassed".into(),
            json!(self.host.permission_bypassed()),
        );
        meta.insert("force".into(), json!(self.options.force));
        meta.insert("sandbox".into(), json!(self.options.sandbox));
        meta.insert("accounts".into(), json!(self.host.account_names()));
        // Calls past the host's record cap (finding 1d/4): counted, not listed.
        meta.insert(
            "integration_calls_dropped".into(),
            json!(self.host.records_dropped()),
        );
        if let Some(emu) = &self.emulator {
            meta.insert("sandbox_url".into(), json!(emu.base_url()));
        }
        if let Some(mcp) = &self.mcp {
            meta.insert("mcp_servers".into(), json!(mcp.config().names()));
        }
        meta.insert("kosmo_version".into(), json!(env!("CARGO_PKG_VERSION")));
        meta
    }
}

/// The terminal prompter, when there is a controlling terminal to ask on.
fn terminal_prompter() -> Option<Arc<dyn Prompter>> {
    TerminalPrompter::open().map(|p| Arc::new(p) as Arc<dyn Prompter>)
}

/// The meta of a run that failed before a context existed.
pub fn bare_meta(options: &RunOptions) -> Map<String, Value> {
    let mut meta = Map::new();
    meta.insert("permission_bypassed".into(), json!(false));
    meta.insert("force".into(), json!(options.force));
    meta.insert("sandbox".into(), json!(options.sandbox));
    meta.insert("kosmo_version".into(), json!(env!("CARGO_PKG_VERSION")));
    meta
}

/// Requests the sandbox emulator keeps for inspection: nothing reads them in a run, and each
/// kept request is about 1 KB, so a script calling in a loop grew the process by that much a
/// call (found while measuring finding 1d/4).
const SANDBOX_RECORDED_REQUESTS: usize = 16;

/// An account pointed at the emulator with a fresh random key: nothing reaches Klaviyo.
fn sandbox_account(
    name: &str,
    policy: Policy,
    emu: &Emulator,
) -> Result<AccountConfig, SetupError> {
    let key: String = (0..32).map(|_| fastrand::alphanumeric()).collect();
    let account = Account::new(
        name,
        ApiKey::new(format!("pk_sandbox_{key}")),
        &emu.base_url(),
    )
    .map_err(|m| SetupError {
        message: m,
        exit: EXIT_FAILURE,
        redactor: Redactor::default(),
    })?;
    Ok(AccountConfig { account, policy })
}

impl SetupError {
    /// Report it (as an envelope with `--json`) and give the exit code.
    pub fn report(&self, options: &RunOptions) -> i32 {
        let code = if self.exit == EXIT_USAGE {
            ErrorCode::Usage
        } else {
            ErrorCode::Setup
        };
        if options.json {
            Envelope::failure(code, &self.message, bare_meta(options)).print(true, &self.redactor);
        } else {
            eprintln!("error: {code}: {}", self.redactor.text(&self.message));
        }
        self.exit
    }
}
