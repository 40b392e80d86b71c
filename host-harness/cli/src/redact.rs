//! The last line of defence: every configured API key is cut out of everything `kosmo`
//! prints, whatever path it took to get there (a script printing it, an error quoting it).

/// Keys shorter than this are not redacted: replacing a 1-3 character string everywhere would
/// garble output, and no real key is that short.
const MIN_SECRET_LEN: usize = 4;

/// What a redacted key shows as.
pub const REDACTED: &str = "<redacted>";

/// Removes secrets from text.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor for these secrets (and their JSON-escaped forms).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut all = Vec::new();
        for s in secrets {
            if s.len() < MIN_SECRET_LEN {
                continue;
            }
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

    /// `text` with every secret replaced by `<redacted>`.
    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), REDACTED);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_plain_and_escaped_forms() {
        let r = Redactor::new(["pk_abc\"def".to_string(), "pk_live_123".into(), "x".into()]);
        assert_eq!(
            r.text("key pk_live_123 and pk_abc\"def"),
            "key <redacted> and <redacted>"
        );
        assert_eq!(r.text(r#"{"k":"pk_abc\"def"}"#), r#"{"k":"<redacted>"}"#);
        assert_eq!(r.text("x marks"), "x marks");
    }
}
