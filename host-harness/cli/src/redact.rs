//! The last line of defence: every configured API key is cut out of everything `kosmo`
//! prints, whatever path it took to get there (a script printing it, an error quoting it).
//!
//! Redaction is structural (security review, finding 8): the envelope's string values (and
//! the keys of the tables a script returns) are redacted *before* it is serialised, never by
//! replacing text in the finished JSON, where a key equal to JSON syntax (`null`, `success`)
//! would corrupt the document. Every configured key is redacted whatever its length: keys
//! shorter than [`kosmo_runtime::account::MIN_API_KEY_LEN`] are refused where they are
//! configured, since redacting a 1-3 character key would garble ordinary text.

use serde_json::{Map, Value};

use kosmo_runtime::account::MIN_API_KEY_LEN;

/// What a redacted key shows as.
pub const REDACTED: &str = "<redacted>";

/// Strings that may be keys although nothing checked them yet (a command line that failed to
/// parse, an environment key about to be refused): trimmed, and only those long enough to be
/// accepted as keys, since shorter ones are refused anyway and redacting them would garble
/// the very message that refuses them.
pub fn unchecked_keys(candidates: impl IntoIterator<Item = String>) -> Vec<String> {
    candidates
        .into_iter()
        .map(|k| k.trim().to_string())
        .filter(|k| k.len() >= MIN_API_KEY_LEN)
        .collect()
}

/// Removes secrets from text and JSON values.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    /// Every key and its JSON-escaped form, longest first.
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these secrets (and their JSON-escaped forms); empty ones are ignored.
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut all = Vec::new();
        for s in secrets.into_iter().filter(|s| !s.is_empty()) {
            if let Ok(quoted) = serde_json::to_string(&s) {
                let escaped = quoted[1..quoted.len() - 1].to_string();
                if escaped != s {
                    all.push(escaped);
                }
            }
            all.push(s);
        }
        // Longest first, so a key containing another is removed whole.
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Redactor { secrets: all }
    }

    /// Add more secrets.
    pub fn extend(&mut self, secrets: impl IntoIterator<Item = String>) {
        let mut all = std::mem::take(&mut self.secrets);
        all.extend(secrets);
        *self = Redactor::new(all);
    }

    /// `text` with every secret replaced by `<redacted>`: for plain text (messages on stderr,
    /// one string of the envelope), never for serialised JSON.
    pub fn text(&self, text: &str) -> String {
        self.replaced(text).unwrap_or_else(|| text.to_string())
    }

    /// Like [`Redactor::text`], for text a cap may have cut short (the script's output): a
    /// trailing part of a key is redacted too, so a cut never leaves 20 of 24 characters of a
    /// key showing (finding 8). Printed output ends in a newline, which no key contains, so
    /// only a cut tail can match.
    pub fn cut_text(&self, text: &str) -> String {
        let mut out = self.text(text);
        let tail = self
            .secrets
            .iter()
            .filter_map(|s| (1..s.len()).rev().find(|&n| out.ends_with(&s[..n])))
            .max();
        if let Some(n) = tail {
            out.truncate(out.len() - n);
            out.push_str(REDACTED);
        }
        out
    }

    /// Redact a JSON value in place: every string, and every object key (a script may return
    /// a table keyed by a secret).
    pub fn value(&self, value: &mut Value) {
        if self.secrets.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Some(r) = self.replaced(s) {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.value(v)),
            Value::Object(map) => {
                if map.keys().any(|k| self.replaced(k).is_some()) {
                    *map = std::mem::take(map)
                        .into_iter()
                        .map(|(k, v)| (self.text(&k), v))
                        .collect::<Map<String, Value>>();
                }
                map.values_mut().for_each(|v| self.value(v));
            }
            // A script can return a numeric key as a number (`tonumber(key)`).
            Value::Number(n) => {
                if self.replaced(&n.to_string()).is_some() {
                    *value = Value::String(REDACTED.into());
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// The values of a map redacted, its keys kept (the envelope's own field names).
    pub fn values_of(&self, map: &mut Map<String, Value>) {
        map.values_mut().for_each(|v| self.value(v));
    }

    /// `text` with the secrets replaced, or `None` when it contains none.
    fn replaced(&self, text: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for s in &self.secrets {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(s.as_str()) {
                out = Some(current.replace(s.as_str(), REDACTED));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Unchecked candidates are trimmed, and only those long enough to be accepted as keys
    /// are kept. Catches the function returning nothing or a constant, and `>=` made `>`.
    #[test]
    fn unchecked_keys_are_trimmed_and_kept_from_the_minimum_length() {
        let exact = "k".repeat(MIN_API_KEY_LEN);
        let short = "s".repeat(MIN_API_KEY_LEN - 1);
        let keys = unchecked_keys([format!("  {exact}\n"), short, "   ".into()]);
        assert_eq!(keys, [exact]);
    }

    /// Secrets added later are redacted beside the first ones. Catches `extend` doing nothing.
    #[test]
    fn extended_redactors_redact_old_and_new_secrets() {
        let mut r = Redactor::new(["pk_first_secret".to_string()]);
        r.extend(["pk_later_secret".to_string()]);
        assert_eq!(
            r.text("pk_first_secret pk_later_secret"),
            "<redacted> <redacted>"
        );
    }

    #[test]
    fn redacts_plain_and_escaped_forms() {
        let r = Redactor::new(["pk_abc\"def".to_string(), "pk_live_123".into()]);
        assert_eq!(
            r.text("key pk_live_123 and pk_abc\"def"),
            "key <redacted> and <redacted>"
        );
        assert_eq!(r.text(r#"{"k":"pk_abc\"def"}"#), r#"{"k":"<redacted>"}"#);
    }

    #[test]
    fn keys_equal_to_json_syntax_redact_values_only() {
        // Finding 8: such a key replaced in the finished JSON gave `"error":<redacted>`.
        for key in ["null", "success", "true"] {
            let r = Redactor::new([key.to_string()]);
            let mut v = json!({"message": format!("bad {key}"), "n": null, "ok": true});
            r.value(&mut v);
            assert_eq!(
                v,
                json!({"message": "bad <redacted>", "n": null, "ok": true})
            );
        }
    }

    #[test]
    fn numbers_holding_a_key_are_redacted() {
        let r = Redactor::new(["1234567890".to_string()]);
        let mut v = json!([1234567890, 5, "x1234567890"]);
        r.value(&mut v);
        assert_eq!(v, json!(["<redacted>", 5, "x<redacted>"]));
    }

    #[test]
    fn short_keys_redact_too() {
        let r = Redactor::new(["x".to_string()]);
        assert_eq!(r.text("x marks"), "<redacted> marks");
    }

    #[test]
    fn object_keys_and_nested_strings() {
        let r = Redactor::new(["pk_secret_1".to_string()]);
        let mut v = json!([{"pk_secret_1": ["a pk_secret_1 b", 1]}]);
        r.value(&mut v);
        assert_eq!(v, json!([{"<redacted>": ["a <redacted> b", 1]}]));
    }

    #[test]
    fn a_cut_key_leaves_no_tail() {
        let key = "pk_live_0123456789abcdef";
        let r = Redactor::new([key.to_string()]);
        let cut = format!("line\nkey {}", &key[..20]);
        assert_eq!(r.cut_text(&cut), "line\nkey <redacted>");
        assert_eq!(r.cut_text("done\n"), "done\n");
        assert_eq!(r.cut_text(&format!("{key}\n")), "<redacted>\n");
    }
}
