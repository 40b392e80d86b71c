//! How names are spelled and looked up, once for every surface: WIT kebab-case
//! (`phone-number`) is snake_case (`phone_number`) for callers; a function has a short name
//! (`get_profile`), a full name (`klaviyo_get_profile`) and a path
//! (`app.integrations.klaviyo.get_profile`); an unknown name gets a "Did you mean".

/// The prefix of a function's full name (contract: full name = `klaviyo_` + short name).
pub const FULL_NAME_PREFIX: &str = "klaviyo_";

/// Where the functions live in Lua, and how docs topics may be spelled.
pub const LUA_PATH: &str = "app.integrations.klaviyo";

/// Lua 5.4's reserved words (reference manual §3.1): `klaviyo.local` does not parse, so none
/// can be an account name.
pub const LUA_KEYWORDS: &[&str] = &[
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
];

/// Longest account name.
pub const MAX_ACCOUNT_NAME_LEN: usize = 64;

/// Whether `name` can be an account, the one rule for every place a name comes from
/// (`integrations:configure`, `accounts.json`): a Lua identifier starting with a letter (so
/// `app.integrations.klaviyo.<name>` works, and no `__index`-like metamethod name can shadow
/// anything, finding 10), at most [`MAX_ACCOUNT_NAME_LEN`] characters, not a Lua keyword
/// (`klaviyo.local` would not parse) and not a function's name (`klaviyo.get_profile` is the
/// function). The error names the field (`account name`) and never echoes more than 64
/// characters of the name.
pub fn check_account_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let identifier = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !identifier || name.len() > MAX_ACCOUNT_NAME_LEN {
        return Err(format!(
            "account name `{}` is not usable: use letters, digits and `_`, starting with a letter \
             (at most {MAX_ACCOUNT_NAME_LEN})",
            shown_name(name)
        ));
    }
    if LUA_KEYWORDS.contains(&name) {
        return Err(format!(
            "account name `{name}` is a Lua keyword; pick another, e.g. `{name}_shop`"
        ));
    }
    if crate::catalog::catalog().function(name).is_some() {
        return Err(format!(
            "account name `{name}` is the name of a Klaviyo function; pick another, e.g. \
             `{name}_shop`"
        ));
    }
    Ok(())
}

/// A name for a message: escaped, and at most [`MAX_ACCOUNT_NAME_LEN`] characters of it.
fn shown_name(name: &str) -> String {
    let mut shown: String = name
        .chars()
        .take(MAX_ACCOUNT_NAME_LEN)
        .flat_map(char::escape_debug)
        .collect();
    if name.chars().count() > MAX_ACCOUNT_NAME_LEN {
        shown.push('…');
    }
    shown
}

/// `phone-number` -> `phone_number`.
pub fn snake(name: &str) -> String {
    name.replace('-', "_")
}

/// `phone_number` -> `phone-number`.
pub fn kebab(name: &str) -> String {
    name.replace('_', "-")
}

/// The short name of a function given as short (`get_profile`), full
/// (`klaviyo_get_profile`), WIT (`get-profile`) or path (`app.integrations.klaviyo.get_profile`,
/// `integrations.klaviyo.get_profile`, `klaviyo.get_profile`) name.
pub fn short_name(name: &str) -> String {
    let name = strip_path(name.trim());
    let name = name.strip_prefix("klaviyo.").unwrap_or(name);
    snake(name.strip_prefix(FULL_NAME_PREFIX).unwrap_or(name))
}

/// A name with the `app.` and `integrations.` path prefixes removed (`klaviyo...` stays).
pub fn strip_path(name: &str) -> &str {
    let name = name.strip_prefix("app.").unwrap_or(name);
    name.strip_prefix("integrations.").unwrap_or(name)
}

/// The closest of `candidates` to `name`, when it is close enough to be a likely typo.
pub fn suggest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` Did you mean `x`?` for the closest candidate, or an empty string.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    suggest(name, candidates)
        .map(|s| format!(" Did you mean `{s}`?"))
        .unwrap_or_default()
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_suggestions() {
        for n in [
            "get_profile",
            "klaviyo_get_profile",
            "get-profile",
            "klaviyo.get_profile",
            "app.integrations.klaviyo.get_profile",
            "integrations.klaviyo.klaviyo_get_profile",
        ] {
            assert_eq!(short_name(n), "get_profile", "{n}");
        }
        let c = ["get_profile", "list_profiles"];
        assert_eq!(
            did_you_mean("get_profil", c),
            " Did you mean `get_profile`?"
        );
        assert_eq!(did_you_mean("zzzzzzzzzz", c), "");
    }

    /// Every Lua 5.4 keyword is refused as an account name, naming the field and suggesting
    /// another. Guards: the keyword check dropped or moved after the identifier check's early
    /// `Ok` (the keywords are valid identifiers, so they would pass).
    #[test]
    fn account_names_that_are_lua_keywords_are_refused() {
        assert_eq!(LUA_KEYWORDS.len(), 22);
        assert_eq!(
            check_account_name("local").unwrap_err(),
            "account name `local` is a Lua keyword; pick another, e.g. `local_shop`"
        );
        for k in LUA_KEYWORDS {
            let e = check_account_name(k).unwrap_err();
            assert!(
                e.contains("Lua keyword") && e.starts_with("account name"),
                "{e}"
            );
        }
        // Near misses are fine: Lua is case-sensitive, and a keyword inside a name is not one.
        for ok in ["shop_eu", "Local", "local_shop", "ends", "default"] {
            assert_eq!(check_account_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "my-shop",
            "__index",
            "9shop",
            "get_profile",
            "klaviyo_get_profile",
        ] {
            assert!(check_account_name(bad).is_err(), "{bad}");
        }
        let long = "a".repeat(500);
        assert!(check_account_name(&long).unwrap_err().len() < 200);
    }
}
