//! Named accounts in `$KOSMO_HOME/accounts.json` (default `~/.kosmo`), and the default
//! account from `KLAVIYO_API_KEY` / `KLAVIYO_BASE_URL`.
//!
//! The file holds API keys, so it lives only in a directory private to the user (owned by
//! them, not group- or world-writable). A missing `$KOSMO_HOME` is created `0700`; an existing
//! one that is not private is refused, for saving and for loading alike, and is never chmod-ed:
//! it may be a shared directory (security review, finding 7: a symlink to a 1777 directory
//! lost its sticky bit). The file is written `0600` to a temporary file first and renamed, so
//! a crash never leaves half a file or a readable copy.
//!
//! Loading trusts nothing (finding 10): the file is at most [`MAX_FILE_BYTES`] and
//! [`MAX_ACCOUNTS`] accounts, and every name, key and URL passes the same checks as
//! `integrations:configure` ([`check_account_name`], [`ApiKey::parse`], [`BaseUrl::parse`]).
//! A file others can read or write is used, with one warning on stderr.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Once;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use klaviyo_spec::DEFAULT_BASE_URL;
use kosmo_runtime::cache::{ensure_private_dir, private_dir_problem};
use kosmo_runtime::{Access, Account, AccountConfig, ApiKey, BaseUrl, DEFAULT_ACCOUNT, Policy};

use crate::redact::Redactor;

const FILE_NAME: &str = "accounts.json";

/// Largest accounts file read (a 7 MB file took 16 s and 1.2 GB before this cap).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Most accounts a file may hold: each becomes a table of every function in Lua.
pub const MAX_ACCOUNTS: usize = 1000;

/// One stored account. Its `Debug` never shows the key.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredAccount {
    /// The private API key.
    pub api_key: String,
    /// Where its API lives (Klaviyo's when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Policy for reads.
    #[serde(default = "allow")]
    pub read: Access,
    /// Policy for writes.
    #[serde(default = "ask")]
    pub write: Access,
}

impl std::fmt::Debug for StoredAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredAccount")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .field("read", &self.read)
            .field("write", &self.write)
            .finish()
    }
}

fn allow() -> Access {
    Access::Allow
}

fn ask() -> Access {
    Access::Ask
}

/// The accounts file: accounts by integration, then by name.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Store {
    /// Klaviyo accounts by name.
    #[serde(default)]
    pub klaviyo: BTreeMap<String, StoredAccount>,
}

/// `$KOSMO_HOME`, else `~/.kosmo`.
pub fn home_dir() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("KOSMO_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".kosmo"))
}

impl Store {
    /// Read the file under `home` (an absent file is an empty store), checking everything in
    /// it. Keys are read only from a private `home`, as they are only saved to one.
    pub fn load(home: Option<&Path>) -> Result<Store, String> {
        let Some(home) = home else {
            return Ok(Store::default());
        };
        let path = home.join(FILE_NAME);
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Store::default()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if let Some(problem) = private_dir_problem(home) {
            return Err(format!(
                "refusing to read API keys from {}: {problem}. {}",
                path.display(),
                PRIVATE_HOME_RULE
            ));
        }
        warn_if_exposed(&file, &path);
        let text = read_capped(file, &path)?;
        parse_store(&text, &path)
    }

    /// Write the file under `home`, readable by its owner only.
    pub fn save(&self, home: &Path) -> Result<PathBuf, String> {
        ensure_private_home(home)?;
        let path = home.join(FILE_NAME);
        let tmp = home.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        let write = || -> std::io::Result<()> {
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(text.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            format!("cannot write {}: {e}", path.display())
        })?;
        Ok(path)
    }

    /// Every stored key (for redaction).
    pub fn keys(&self) -> Vec<String> {
        self.klaviyo.values().map(|a| a.api_key.clone()).collect()
    }
}

/// What `$KOSMO_HOME` must be, for the messages that refuse one.
const PRIVATE_HOME_RULE: &str = "API keys are kept only in a directory of your own that no one else can write; \
     kosmo never changes the permissions of a directory it did not create: set KOSMO_HOME to a path \
     that does not exist yet (kosmo creates it with mode 700), or fix this one yourself";

/// Create `home` (mode `0700`, with any missing parents) when it does not exist; refuse it
/// when it exists and is not private. Never chmod: an existing directory is not ours.
fn ensure_private_home(home: &Path) -> Result<(), String> {
    ensure_private_dir(home).map_err(|problem| {
        format!(
            "refusing to store API keys in {}: {problem}. {PRIVATE_HOME_RULE}",
            home.display()
        )
    })
}

/// One warning per process when the accounts file can be read or written by others.
fn warn_if_exposed(file: &fs::File, path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        static WARNED: Once = Once::new();
        let Ok(meta) = file.metadata() else { return };
        let mode = meta.mode() & 0o777;
        if mode & 0o077 != 0 {
            WARNED.call_once(|| {
                eprintln!(
                    "kosmo: warning: {} holds API keys but other users can read or write it (mode {mode:o}); \
                     run `chmod 600 {}`",
                    path.display(),
                    path.display()
                );
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (file, path);
}

/// The file's text: at most [`MAX_FILE_BYTES`], read no further than one byte past it.
fn read_capped(file: fs::File, path: &Path) -> Result<String, String> {
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "{} is larger than the limit of {} MiB ({MAX_FILE_BYTES} bytes) for an accounts file",
            path.display(),
            MAX_FILE_BYTES >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))
}

/// Parse and check the accounts file, one account at a time, so an error names the account
/// and never quotes a key (serde's type errors quote the value they refuse).
fn parse_store(text: &str, path: &Path) -> Result<Store, String> {
    let bad = |why: String| format!("{} is not a valid accounts file: {why}", path.display());
    // Syntax errors give a position, never the text.
    let value: Value = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let Value::Object(mut top) = value else {
        return Err(bad("it must be a JSON object".into()));
    };
    let entries = match top.remove("klaviyo") {
        None => return Ok(Store::default()),
        Some(Value::Object(entries)) => entries,
        Some(_) => return Err(bad("`klaviyo` must be an object of accounts".into())),
    };
    if entries.len() > MAX_ACCOUNTS {
        return Err(bad(format!(
            "it has {} accounts; at most {MAX_ACCOUNTS} are allowed",
            entries.len()
        )));
    }
    let mut store = Store::default();
    for (name, entry) in entries {
        check_account_name(&name).map_err(&bad)?;
        let key = entry
            .get("api_key")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let redactor = Redactor::new(key);
        let account: StoredAccount = serde_json::from_value(entry).map_err(|e| {
            bad(format!(
                "account `{name}`: {}",
                redactor.text(&e.to_string())
            ))
        })?;
        check_stored(&account).map_err(|e| bad(format!("account `{name}`: {e}")))?;
        store.klaviyo.insert(name, account);
    }
    Ok(store)
}

/// A stored account's key and URL, by the same rules as `integrations:configure`.
fn check_stored(account: &StoredAccount) -> Result<(), String> {
    ApiKey::parse(&account.api_key).map_err(|e| format!("api_key: {e}"))?;
    if let Some(url) = &account.base_url {
        BaseUrl::parse(url).map_err(|e| format!("base_url: {e}"))?;
    }
    Ok(())
}

/// The environment variable of the default account's key.
pub const KEY_ENV: &str = "KLAVIYO_API_KEY";

/// The environment variable of the default account's base URL.
pub const BASE_URL_ENV: &str = "KLAVIYO_BASE_URL";

/// The default account from the environment, if `KLAVIYO_API_KEY` is set (checked by
/// [`resolve`], with the same rules as a configured key).
pub struct EnvAccount {
    /// `KLAVIYO_API_KEY`.
    pub api_key: String,
    /// `KLAVIYO_BASE_URL`, default Klaviyo's.
    pub base_url: String,
}

impl EnvAccount {
    /// Read `KLAVIYO_API_KEY` and `KLAVIYO_BASE_URL`.
    pub fn from_env() -> Option<EnvAccount> {
        let api_key = std::env::var(KEY_ENV)
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())?;
        let base_url = std::env::var(BASE_URL_ENV)
            .ok()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        Some(EnvAccount { api_key, base_url })
    }
}

/// An account from its settings, each checked by the one rule for it; `key_setting` and
/// `url_setting` name where they came from in errors.
fn account(
    name: &str,
    (key, key_setting): (&str, &str),
    (url, url_setting): (&str, &str),
) -> Result<Account, String> {
    let api_key = ApiKey::parse(key).map_err(|e| format!("{key_setting}: {e}"))?;
    let base_url = BaseUrl::parse(url).map_err(|e| format!("{url_setting}: {e}"))?;
    Ok(Account {
        name: name.to_string(),
        api_key,
        base_url,
    })
}

/// The accounts a run uses: the environment's default (with the stored `default` policy, if
/// any) or the stored `default`, then every other stored account.
pub fn resolve(store: &Store, env: Option<&EnvAccount>) -> Result<Vec<AccountConfig>, String> {
    let mut accounts = Vec::new();
    let policy_of = |s: &StoredAccount| Policy {
        read: s.read,
        write: s.write,
    };
    if let Some(env) = env {
        let policy = store
            .klaviyo
            .get(DEFAULT_ACCOUNT)
            .map(policy_of)
            .unwrap_or_default();
        let account = account(
            DEFAULT_ACCOUNT,
            (&env.api_key, KEY_ENV),
            (&env.base_url, BASE_URL_ENV),
        )?;
        accounts.push(AccountConfig { account, policy });
    }
    for (name, stored) in &store.klaviyo {
        if name == DEFAULT_ACCOUNT && env.is_some() {
            continue;
        }
        let base_url = stored.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let account = account(name, (&stored.api_key, "api_key"), (base_url, "base_url"))
            .map_err(|e| format!("account `{name}`: {e}"))?;
        accounts.push(AccountConfig {
            account,
            policy: policy_of(stored),
        });
    }
    Ok(accounts)
}

/// Whether `name` can be an account (a Lua identifier, not a keyword, not a function's
/// name): one rule, the runtime's.
pub use kosmo_runtime::names::check_account_name;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_round_trips_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("kosmo");
        let mut store = Store::default();
        store.klaviyo.insert(
            "shop".into(),
            StoredAccount {
                api_key: "pk_x_0123456789".into(),
                base_url: None,
                read: Access::Allow,
                write: Access::Deny,
            },
        );
        assert!(
            !format!("{store:?}").contains("pk_x_0123456789"),
            "Debug shows no key"
        );
        let path = store.save(&home).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                fs::metadata(&home).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        let loaded = Store::load(Some(&home)).unwrap();
        assert_eq!(loaded.klaviyo["shop"].write, Access::Deny);
        let accounts = resolve(&loaded, None).unwrap();
        assert_eq!(accounts[0].account.name, "shop");
    }

    #[test]
    fn account_names() {
        assert!(check_account_name("shop_eu").is_ok());
        assert!(check_account_name("get_profile").is_err());
        assert!(check_account_name("my-shop").is_err());
        assert!(check_account_name("").is_err());
        assert!(check_account_name("__index").is_err());
        assert!(check_account_name("klaviyo_get_profile").is_err());
        // `klaviyo.local` would not parse.
        assert!(
            check_account_name("local")
                .unwrap_err()
                .contains("Lua keyword")
        );
        let long = "x".repeat(5000);
        assert!(check_account_name(&long).unwrap_err().len() < 200);
    }

    fn write(home: &Path, text: &str) {
        fs::write(home.join(FILE_NAME), text).unwrap();
    }

    #[test]
    fn loading_checks_names_keys_and_urls() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        for (text, expect) in [
            (
                r#"{"klaviyo": {"__index": {"api_key": "pk_0123456789"}}}"#,
                "__index",
            ),
            (r#"{"klaviyo": {"shop": {"api_key": "pk"}}}"#, "api_key"),
            (
                r#"{"klaviyo": {"shop": {"api_key": "pk_0123 456789"}}}"#,
                "api_key",
            ),
            (
                r#"{"klaviyo": {"shop": {"api_key": "pk_0123456789", "base_url": "http://evil.example"}}}"#,
                "base_url",
            ),
            (
                r#"{"klaviyo": {"shop": {"api_key": "pk_0123456789", "read": 5}}}"#,
                "shop",
            ),
            (r#"{"klaviyo": [1]}"#, "object"),
            ("{", "line 1"),
        ] {
            write(home, text);
            let e = Store::load(Some(home)).unwrap_err();
            assert!(e.contains(expect), "{text}: {e}");
            assert!(!e.contains("pk_0123"), "{e}");
        }
        // A serde type error quoting a value never quotes the key.
        write(
            home,
            r#"{"klaviyo": {"shop": {"api_key": "pk_0123456789", "read": "pk_0123456789"}}}"#,
        );
        assert!(!Store::load(Some(home)).unwrap_err().contains("pk_0123"));
    }

    #[test]
    fn big_files_are_refused_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        write(
            home,
            &format!("{{\"pad\": \"{}\"}}", "x".repeat(MAX_FILE_BYTES as usize)),
        );
        let e = Store::load(Some(home)).unwrap_err();
        assert!(e.contains("1 MiB"), "{e}");
    }
}
