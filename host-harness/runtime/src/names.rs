//! How names are spelled and looked up, once for every surface: WIT kebab-case
//! (`phone-number`) is snake_case (`phone_number`) for callers; a function has a short name
//! (`get_profile`), a full name (`klaviyo_get_profile`) and a path
//! (`app.integrations.klaviyo.get_profile`); an unknown name gets a "Did you mean".

/// The prefix of a function's full name (contract: full name = `klaviyo_` + short name).
pub const FULL_NAME_PREFIX: &str = "klaviyo_";

/// Where the functions live in Lua, and how docs topics may be spelled.
pub const LUA_PATH: &str = "app.integrations.klaviyo";

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
}
