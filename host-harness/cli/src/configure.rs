//! `kosmo integrations:configure klaviyo --account NAME --set api_key=- [--set base_url=URL]
//! [--read allow|ask|deny] [--write allow|ask|deny]` (also `--list` and `--remove`). It never
//! prints a key, not even part of one, nor a URL's credentials.
//!
//! Keys and URLs are checked by the same functions as the environment's and the accounts
//! file's ([`ApiKey::parse`], [`BaseUrl::parse`]). Changing an account's `base_url` needs its
//! key again: the stored key must not silently go to a new host (security review, finding 9).

use std::io::{BufRead, IsTerminal, Read};

use klaviyo_spec::DEFAULT_BASE_URL;
use kosmo_runtime::account::{MAX_API_KEY_LEN, without_userinfo};
use kosmo_runtime::{Access, ApiKey, BaseUrl, DEFAULT_ACCOUNT, ErrorCode};

use crate::accounts::{self, EnvAccount, Store, StoredAccount};
use crate::args::{ConfigureArgs, EXIT_FAILURE, EXIT_USAGE};
use crate::redact::{Redactor, unchecked_keys};

/// `integrations:configure`.
pub(super) fn configure(args: ConfigureArgs) -> i32 {
    let mut redactor = Redactor::new(unchecked_keys(std::env::var(accounts::KEY_ENV).ok()));
    match run(&args, &mut redactor) {
        Ok(message) => {
            println!("{}", redactor.text(&message));
            0
        }
        Err((exit, message)) => {
            eprintln!(
                "error: {}: {}",
                if exit == EXIT_USAGE {
                    ErrorCode::Usage
                } else {
                    ErrorCode::Setup
                },
                redactor.text(&message)
            );
            exit
        }
    }
}

fn run(args: &ConfigureArgs, redactor: &mut Redactor) -> Result<String, (i32, String)> {
    let usage = |m: String| (EXIT_USAGE, m);
    if args.integration != "klaviyo" {
        return Err(usage(format!(
            "unknown integration `{}`: only `klaviyo` can be configured",
            args.integration
        )));
    }
    let home = accounts::home_dir()
        .ok_or_else(|| usage("set KOSMO_HOME or HOME to store accounts".into()))?;
    let mut store = Store::load(Some(&home)).map_err(|m| (EXIT_FAILURE, m))?;
    redactor.extend(store.keys());

    if args.list {
        let env = EnvAccount::from_env();
        let mut lines: Vec<String> = store
            .klaviyo
            .iter()
            .map(|(name, a)| {
                let line = describe(name, a);
                if name == DEFAULT_ACCOUNT && env.is_some() {
                    format!("{line} (not used: KLAVIYO_API_KEY overrides it)")
                } else {
                    line
                }
            })
            .collect();
        if lines.is_empty() {
            lines.push(format!(
                "No Klaviyo accounts in {}",
                home.join("accounts.json").display()
            ));
        }
        lines.extend(environment_notes(&store, env.as_ref()));
        return Ok(lines.join("\n"));
    }
    accounts::check_account_name(&args.account).map_err(usage)?;
    let name = args.account.clone();
    if args.remove {
        if store.klaviyo.remove(&name).is_none() {
            return Err(usage(format!("no Klaviyo account `{name}` to remove")));
        }
        let path = store.save(&home).map_err(|m| (EXIT_FAILURE, m))?;
        return Ok(format!(
            "Removed Klaviyo account `{name}` from {}",
            path.display()
        ));
    }

    let (api_key, base_url) = settings(&args.set).map_err(usage)?;
    if let Some(key) = &api_key {
        redactor.extend([key.expose().to_string()]);
    }
    let existing = store.klaviyo.remove(&name);
    let created = existing.is_none();
    let mut account = match (existing, api_key) {
        (Some(mut a), key) => {
            check_new_host(&name, &a, base_url.as_ref(), key.is_some()).map_err(usage)?;
            if let Some(key) = key {
                a.api_key = key.expose().to_string();
            }
            a
        }
        (None, Some(key)) => StoredAccount {
            api_key: key.expose().to_string(),
            base_url: None,
            read: Access::Allow,
            write: Access::Ask,
        },
        (None, None) => {
            return Err(usage(format!(
                "account `{name}` is new: give its key with --set api_key=- (read from the terminal without echo, or from standard input; kept out of shell history)"
            )));
        }
    };
    if let Some(url) = base_url {
        account.base_url = Some(url.as_string());
    }
    if let Some(read) = args.read {
        account.read = read;
    }
    if let Some(write) = args.write {
        account.write = write;
    }
    let line = describe(&name, &account);
    store.klaviyo.insert(name, account);
    let path = store.save(&home).map_err(|m| (EXIT_FAILURE, m))?;
    Ok(format!(
        "{} {line} in {}",
        if created { "Added" } else { "Updated" },
        path.display()
    ))
}

/// The `--set` settings: a key and a base URL, each checked by its one rule.
fn settings(set: &[String]) -> Result<(Option<ApiKey>, Option<BaseUrl>), String> {
    let mut api_key = None;
    let mut base_url = None;
    for setting in set {
        let (key, value) = setting.split_once('=').ok_or_else(|| {
            format!(
                "--set takes KEY=VALUE (api_key or base_url), got `{}`",
                redact_setting(setting)
            )
        })?;
        match key.trim() {
            "api_key" => {
                let text = read_key(value.trim())?;
                api_key = Some(ApiKey::parse(&text).map_err(|e| format!("--set api_key: {e}"))?);
            }
            "base_url" => {
                base_url = Some(BaseUrl::parse(value).map_err(|e| format!("--set base_url: {e}"))?);
            }
            other => {
                return Err(format!(
                    "unknown setting `{}`: use api_key or base_url",
                    redact_setting(other)
                ));
            }
        }
    }
    Ok((api_key, base_url))
}

/// An account's key goes only where it went when the key was given: a new `base_url` needs
/// the key again in the same command.
fn check_new_host(
    name: &str,
    account: &StoredAccount,
    new_url: Option<&BaseUrl>,
    key_given: bool,
) -> Result<(), String> {
    let Some(new_url) = new_url else {
        return Ok(());
    };
    let current = account.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
    let same = BaseUrl::parse(current).is_ok_and(|c| &c == new_url);
    if same || key_given {
        return Ok(());
    }
    Err(format!(
        "changing the base_url of account `{name}` (from {current} to {new_url}) would send its stored key \
         to a new host: give the key again in the same command with --set api_key=-"
    ))
}

/// What the environment changes about the accounts listed: `KLAVIYO_API_KEY` (with
/// `KLAVIYO_BASE_URL`) is the `default` account whatever is stored, keeping the stored
/// `default`'s policy ([`accounts::resolve`]); `KLAVIYO_BASE_URL` alone does nothing.
fn environment_notes(store: &Store, env: Option<&EnvAccount>) -> Vec<String> {
    let Some(env) = env else {
        let url = std::env::var(accounts::BASE_URL_ENV).unwrap_or_default();
        if url.trim().is_empty() {
            return Vec::new();
        }
        return vec![format!(
            "{} is set ({}) but not used: it applies only together with {}",
            accounts::BASE_URL_ENV,
            without_userinfo(url.trim()),
            accounts::KEY_ENV
        )];
    };
    let url_source = if std::env::var(accounts::BASE_URL_ENV).is_ok_and(|u| !u.trim().is_empty()) {
        accounts::BASE_URL_ENV
    } else {
        "the default"
    };
    let policy = match store.klaviyo.get(DEFAULT_ACCOUNT) {
        Some(stored) => format!(
            "it overrides the stored `default` account, whose policy applies (read {}, write {})",
            stored.read, stored.write
        ),
        None => "policy read allow, write ask (the defaults)".to_string(),
    };
    vec![format!(
        "{}: klaviyo account `default` comes from the environment: base_url {} (from {url_source}), api_key set; {policy}",
        accounts::KEY_ENV,
        without_userinfo(&env.base_url),
    )]
}

/// One line about an account, without its key.
fn describe(name: &str, a: &StoredAccount) -> String {
    format!(
        "klaviyo account `{name}`: base_url {}, read {}, write {}, api_key set",
        a.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
        a.read,
        a.write
    )
}

/// `--set` text in an error: never the value of an `api_key`, nor a URL's credentials.
fn redact_setting(setting: &str) -> String {
    if setting.contains("api_key") {
        "api_key...".into()
    } else {
        without_userinfo(setting)
    }
}

/// The key given, or read for `-` (keeps it out of shell history): typed on the terminal
/// without echo when standard input is one, else one line of standard input, read no further
/// than a key can be long.
fn read_key(value: &str) -> Result<String, String> {
    if value != "-" {
        return Ok(value.to_string());
    }
    if std::io::stdin().is_terminal() {
        // rpassword asks and reads on the terminal with echo off (what it reads is bounded by
        // what a person types; the key's own rule then refuses anything over 256 bytes).
        return rpassword::prompt_password("Klaviyo API key (input hidden): ")
            .map_err(|e| format!("cannot read the key from the terminal: {e}"));
    }
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(MAX_API_KEY_LEN as u64 + 2)
        .read_line(&mut text)
        .map_err(|e| format!("cannot read the key from standard input: {e}"))?;
    Ok(text)
}
