//! Named accounts in `$KOSMO_HOME/accounts.json` (default `~/.kosmo`), and the default
//! account from `KLAVIYO_API_KEY` / `KLAVIYO_BASE_URL`.
//!
//! The file holds API keys, so the directory is made `0700` and the file `0600`, written to
//! a temporary file first and renamed, so a crash never leaves half a file or a readable copy.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use klaviyo_spec::DEFAULT_BASE_URL;
use kosmo_runtime::{Access, Account, AccountConfig, ApiKey, BaseUrl, DEFAULT_ACCOUNT, Policy};

const FILE_NAME: &str = "accounts.json";

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
    /// Read the file under `home` (an absent file is an empty store).
    pub fn load(home: Option<&Path>) -> Result<Store, String> {
        let Some(home) = home else {
            return Ok(Store::default());
        };
        let path = home.join(FILE_NAME);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| format!("{} is not a valid accounts file: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::default()),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    /// Write the file under `home`, readable by its owner only.
    pub fn save(&self, home: &Path) -> Result<PathBuf, String> {
        create_private_dir(home)?;
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

fn create_private_dir(dir: &Path) -> Result<(), String> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // A directory that already existed may be wider open: it holds keys.
        let meta = fs::metadata(dir).map_err(|e| e.to_string())?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| format!("cannot restrict {}: {e}", dir.display()))?;
        }
    }
    Ok(())
}

/// The default account from the environment, if `KLAVIYO_API_KEY` is set.
pub struct EnvAccount {
    /// `KLAVIYO_API_KEY`.
    pub api_key: String,
    /// `KLAVIYO_BASE_URL`, default Klaviyo's.
    pub base_url: String,
}

impl EnvAccount {
    /// Read `KLAVIYO_API_KEY` and `KLAVIYO_BASE_URL`.
    pub fn from_env() -> Option<EnvAccount> {
        let api_key = std::env::var("KLAVIYO_API_KEY")
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())?;
        let base_url = std::env::var("KLAVIYO_BASE_URL")
            .ok()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
        Some(EnvAccount { api_key, base_url })
    }
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
        let account = Account::new(
            DEFAULT_ACCOUNT,
            ApiKey::new(env.api_key.clone()),
            &env.base_url,
        )
        .map_err(|e| format!("KLAVIYO_BASE_URL: {e}"))?;
        accounts.push(AccountConfig { account, policy });
    }
    for (name, stored) in &store.klaviyo {
        if name == DEFAULT_ACCOUNT && env.is_some() {
            continue;
        }
        let base_url = stored.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let account = Account::new(name.clone(), ApiKey::new(stored.api_key.clone()), base_url)
            .map_err(|e| format!("account `{name}`: {e}"))?;
        accounts.push(AccountConfig {
            account,
            policy: policy_of(stored),
        });
    }
    Ok(accounts)
}

/// Whether `name` can be an account: a Lua identifier (so `app.integrations.klaviyo.<name>`
/// works), not a function's name.
pub fn check_account_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let identifier = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier || name.len() > 64 {
        return Err(format!(
            "`{name}` cannot be an account name: use letters, digits and `_`, starting with a letter (at most 64)"
        ));
    }
    if kosmo_runtime::catalog().function(name).is_some() {
        return Err(format!(
            "`{name}` is the name of a Klaviyo function: pick another account name"
        ));
    }
    Ok(())
}

/// Check a base URL before storing it.
pub fn check_base_url(url: &str) -> Result<(), String> {
    BaseUrl::parse(url).map(|_| ())
}

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
                api_key: "pk_x".into(),
                base_url: None,
                read: Access::Allow,
                write: Access::Deny,
            },
        );
        assert!(!format!("{store:?}").contains("pk_x"), "Debug shows no key");
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
    }
}
