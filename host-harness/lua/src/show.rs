//! [`show`]: a result value (JSON) in `dump`'s form, so that a REPL echoing `x` and a script
//! calling `dump(x)` write the same text (one display format).
//!
//! The value reads as its Lua equivalent ([`crate::from_json`]): `null` is `nil`, an object's
//! `null` members are absent (a Lua table cannot hold nil), an empty array is `{}`. In an
//! array a `null` shows as `nil` in its place (where the Lua table would have a hole).

use serde_json::Value;

use crate::values::{
    CYCLE, MAX_INDENT, entry_parts, float_text, is_identifier, key_text, layout, quote,
};

/// Most bytes [`show`] renders: the same 8 MiB the CLI's envelope is held to, so that an echo
/// costs no more than the envelope would.
pub const SHOW_BYTES: usize = 8 * 1024 * 1024;

/// What stands for the items left out once the cap is reached.
const CUT: &str = "...";

/// `value` as `dump` writes the equivalent Lua value, at most about [`SHOW_BYTES`]; a larger
/// value is cut, with `...` in place of what is left out and a last line saying so.
pub fn show(value: &Value) -> String {
    show_within(value, SHOW_BYTES)
}

/// [`show`] within `max` bytes.
pub(crate) fn show_within(value: &Value, max: usize) -> String {
    let mut shower = Shower {
        used: 0,
        max,
        cut: false,
    };
    let mut text = shower.value(value, 0);
    if shower.cut {
        text.push_str(&format!(
            "\n... (cut: the value is larger than {})",
            crate::limits::show_bytes(max)
        ));
    }
    text
}

/// Renders like `values::Dumper`, charging the same generous amounts, but past the cap it
/// stops and marks the cut instead of failing.
struct Shower {
    used: usize,
    max: usize,
    cut: bool,
}

impl Shower {
    /// Count `n` bytes; false (and the cut made) when they do not fit.
    fn charge(&mut self, n: usize) -> bool {
        if self.cut {
            return false;
        }
        self.used = self.used.saturating_add(n);
        if self.used > self.max {
            self.cut = true;
        }
        !self.cut
    }

    fn charged(&mut self, text: String) -> String {
        if self.charge(text.len()) {
            text
        } else {
            CUT.into()
        }
    }

    fn value(&mut self, value: &Value, indent: usize) -> String {
        match value {
            Value::Null => self.charged("nil".into()),
            Value::Bool(b) => self.charged(b.to_string()),
            Value::Number(n) => match n.as_i64() {
                Some(i) => self.charged(i.to_string()),
                None => self.charged(float_text(n.as_f64().unwrap_or(f64::NAN))),
            },
            Value::String(s) => self.string(s),
            Value::Array(items) => self.table(indent, |this| {
                let mut parts = Vec::new();
                for item in items {
                    if !this.charge(indent + 4) {
                        parts.push(CUT.to_string());
                        break;
                    }
                    parts.push(this.value(item, indent + 2));
                }
                parts
            }),
            Value::Object(map) => self.table(indent, |this| {
                let mut entries = Vec::new();
                for (key, item) in map {
                    if item.is_null() {
                        continue;
                    }
                    if !this.charge(indent + 7) {
                        break;
                    }
                    let key = if is_identifier(key) {
                        this.charged(key.clone())
                    } else {
                        key_text(&this.string(key))
                    };
                    entries.push((key, this.value(item, indent + 2)));
                }
                let mut parts = entry_parts(entries);
                if this.cut {
                    parts.push(CUT.to_string());
                }
                parts
            }),
        }
    }

    /// A quoted string; one longer than what is left is cut to fit.
    fn string(&mut self, s: &str) -> String {
        let room = self.max.saturating_sub(self.used);
        if s.len() + 2 <= room || self.cut {
            return self.charged(quote(s.as_bytes()));
        }
        let mut end = room.saturating_sub(2);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.used = self.max;
        self.cut = true;
        format!("{}{CUT}", quote(&s.as_bytes()[..end]))
    }

    fn table(&mut self, indent: usize, parts: impl FnOnce(&mut Self) -> Vec<String>) -> String {
        if indent > MAX_INDENT {
            return self.charged(CYCLE.into());
        }
        if !self.charge(indent + 4) {
            return CUT.into();
        }
        let parts = parts(self);
        layout(&parts, indent)
    }
}

#[cfg(test)]
mod tests {
    use mlua::Lua;
    use serde_json::json;

    use super::*;
    use crate::{dump, from_json};

    #[test]
    fn shows_what_dump_shows() {
        let lua = Lua::new();
        let deep = (0..30).fold(json!(1), |inner, _| json!({"a": inner}));
        let values = [
            json!(null),
            json!(true),
            json!(42),
            json!(-1.5),
            json!(5.0),
            json!(1e300),
            json!(u64::MAX),
            json!("a \"quoted\"\nline é \u{1}"),
            json!([]),
            json!({}),
            json!([1, "two", [3.5, {}], {"k": false}]),
            json!({"b": 1, "a": "x", "not id": [1, 2], "end": 0, "_ok": null, "Z": {"y": []}}),
            json!({"items": (0..12).map(|i| json!({"id": format!("01J{i:023}"), "n": i})).collect::<Vec<_>>(),
                   "next_cursor": "abc"}),
            json!({"text": "y".repeat(80), "list": [["nested", {"deeper": [1, 2, 3]}]]}),
            deep,
        ];
        for value in values {
            let lua_value = from_json(&lua, &value).unwrap();
            let dumped = dump(&lua, &lua_value, SHOW_BYTES).unwrap();
            assert_eq!(show(&value), dumped, "{value}");
        }
    }

    #[test]
    fn large_values_are_cut_visibly() {
        let big = json!({"items": (0..10_000).map(|i| json!({"id": i, "s": "x".repeat(50)})).collect::<Vec<_>>()});
        let shown = show_within(&big, 4096);
        assert!(shown.len() < 4096 + 200, "{}", shown.len());
        assert!(
            shown.ends_with("\n... (cut: the value is larger than 4 KiB)"),
            "{shown}"
        );
        assert!(shown.contains("...\n  }"), "{shown}");
        let long = json!("z".repeat(10_000));
        let shown = show_within(&long, 100);
        assert!(
            shown.starts_with("\"zzz") && shown.contains("\"...\n"),
            "{shown}"
        );
        assert!(shown.len() < 200, "{}", shown.len());
        assert!(!show_within(&json!([1, 2]), 100).contains("cut"));
    }
}
