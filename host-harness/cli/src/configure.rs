//! `kosmo integrations:configure klaviyo --account NAME --set api_key=KEY [--set base_url=URL]
//! [--read allow|ask|deny] [--write allow|ask|deny]` (also `--list` and `--remove`). It never
//! prints a key, not even part of one.

use std::io::IsTerminal;

use klaviyo_spec::DEFAULT_BASE_URL;
use kosmo_runtime::{Access, ErrorCode};

use crate::accounts::{self, Store, StoredAccount};
use crate::args::{ConfigureArgs, EXIT_FAILURE, EXIT_USAGE};
use crate::redact::Redactor;

/// `integrations:configure`.
pub(super) fn configure(args: ConfigureArgs) -> i32 {
    let mut redactor = Redactor::new(std::env::var("KLAVIYO_API_KEY").ok());
    match run(&args, &mut redactor) {
        Ok(message) => {
            println!("{}", redactor.text(&message));
            0
        }
        Err((exit, message)) => {
            eprintln!(
                "error: {}: {}",
                if exit == EXIT_USAGE {
                    ErrorCode::Usage.as_str()
                } else {
                    "config_error"
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
        if store.klaviyo.is_empty() {
            return Ok(format!(
                "No Klaviyo accounts in {}",
                home.join("accounts.json").display()
            ));
        }
        let lines: Vec<String> = store
            .klaviyo
            .iter()
            .map(|(name, a)| describe(name, a))
            .collect();
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

    let mut api_key = None;
    let mut base_url = None;
    for setting in &args.set {
        let (key, value) = setting.split_once('=').ok_or_else(|| {
            usage(format!(
                "--set takes KEY=VALUE (api_key or base_url), got `{}`",
                redact_setting(setting)
            ))
        })?;
        match key.trim() {
            "api_key" => api_key = Some(read_key(value.trim()).map_err(usage)?),
            "base_url" => {
                accounts::check_base_url(value).map_err(usage)?;
                base_url = Some(value.trim().trim_end_matches('/').to_string());
            }
            other => {
                return Err(usage(format!(
                    "unknown setting `{other}`: use api_key or base_url"
                )));
            }
        }
    }
    if let Some(key) = &api_key {
        redactor.extend([key.clone()]);
    }
    let existing = store.klaviyo.remove(&name);
    let created = existing.is_none();
    let mut account = match (existing, api_key) {
        (Some(mut a), key) => {
            if let Some(key) = key {
                a.api_key = key;
            }
            a
        }
        (None, Some(key)) => StoredAccount {
            api_key: key,
            base_url: None,
            read: Access::Allow,
            write: Access::Ask,
        },
        (None, None) => {
            return Err(usage(format!(
                "account `{name}` is new: give its key with --set api_key=KEY (or api_key=- to read it from standard input)"
            )));
        }
    };
    if let Some(url) = base_url {
        account.base_url = Some(url);
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

/// One line about an account, without its key.
fn describe(name: &str, a: &StoredAccount) -> String {
    format!(
        "klaviyo account `{name}`: base_url {}, read {}, write {}, api_key set",
        a.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL),
        a.read,
        a.write
    )
}

/// `--set` text in an error: never the value of an `api_key`.
fn redact_setting(setting: &str) -> String {
    if setting.contains("api_key") {
        "api_key...".into()
    } else {
        setting.to_string()
    }
}

/// The key given, or read from standard input for `-` (keeps it out of shell history).
fn read_key(value: &str) -> Result<String, String> {
    let key = if value == "-" {
        if std::io::stdin().is_terminal() {
            eprint!("Klaviyo API key: ");
        }
        let mut text = String::new();
        std::io::stdin()
            .read_line(&mut text)
            .map_err(|e| format!("cannot read the key from standard input: {e}"))?;
        text.trim().to_string()
    } else {
        value.to_string()
    };
    if key.is_empty() || key.chars().any(char::is_whitespace) {
        return Err("the API key is empty or contains spaces".into());
    }
    Ok(key)
}
