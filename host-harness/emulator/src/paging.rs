//! Cursor pagination (notes §3): `page[size]` bounded per operation by the spec, opaque
//! base64 cursors (`next::<offset>` / `prev::<offset>`), and `links.next`/`links.prev` as
//! full URLs that keep the other query parameters.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};

use super::errors::ApiError;
use super::spec::PageSpec;

/// Everything but RFC 3986 unreserved characters is escaped (`page[size]` →
/// `page%5Bsize%5D`, as in the recorded Klaviyo link of notes §3).
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode a query key or value.
pub(crate) fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY).to_string()
}

/// `a=b&c=d` from decoded pairs.
pub(crate) fn encode_query(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The cursor for a page starting at `offset`.
pub(crate) fn encode_cursor(direction: &str, offset: usize) -> String {
    STANDARD_NO_PAD.encode(format!("{direction}::{offset}"))
}

/// The offset a cursor we issued points at; `None` for anything else.
pub(crate) fn decode_cursor(cursor: &str) -> Option<usize> {
    let trimmed = cursor.trim_end_matches('=');
    let bytes = STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (direction, offset) = text.split_once("::")?;
    if direction != "next" && direction != "prev" {
        return None;
    }
    offset.parse().ok()
}

/// The requested window of a collection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Page {
    pub offset: usize,
    pub size: usize,
}

/// Read `page[size]` (bounded by the spec, notes §2/§6) and `page[cursor]`.
pub(crate) fn page(
    spec: PageSpec,
    size: Option<&str>,
    cursor: Option<&str>,
) -> Result<Page, ApiError> {
    let size = match size {
        None => spec.default,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(n) if (spec.min..=spec.max).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid_param(
                    "page[size]",
                    format!(
                        "Page size must be an integer between {} and {}.",
                        spec.min, spec.max
                    ),
                ));
            }
        },
    };
    let offset = match cursor {
        None => 0,
        Some(c) => decode_cursor(c).ok_or_else(ApiError::invalid_cursor)?,
    };
    Ok(Page {
        offset,
        size: usize::try_from(size).unwrap_or(1),
    })
}

/// `links` of a collection: `self`, plus `next`/`prev` when there are such pages. Absent
/// rather than null on the last page, as the spec's `CollectionLinks` types them as strings.
pub(crate) fn collection_links(
    base_url: &str,
    query: &[(String, String)],
    page: Page,
    total: usize,
) -> Value {
    let url = |cursor: Option<String>| {
        let mut pairs: Vec<(String, String)> = query
            .iter()
            .filter(|(k, _)| k != "page[cursor]")
            .cloned()
            .collect();
        if let Some(c) = cursor {
            pairs.push(("page[cursor]".into(), c));
        }
        if pairs.is_empty() {
            base_url.to_string()
        } else {
            format!("{base_url}?{}", encode_query(&pairs))
        }
    };
    let mut links = Map::new();
    let self_cursor = query
        .iter()
        .rev()
        .find(|(k, _)| k == "page[cursor]")
        .map(|(_, v)| v.clone());
    links.insert("self".into(), json!(url(self_cursor)));
    let end = page.offset.saturating_add(page.size);
    if end < total {
        let next = encode_cursor("next", end);
        links.insert("next".into(), json!(url(Some(next))));
    }
    if page.offset > 0 {
        let prev = encode_cursor("prev", page.offset.saturating_sub(page.size));
        links.insert("prev".into(), json!(url(Some(prev))));
    }
    Value::Object(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors() {
        let c = encode_cursor("next", 40);
        assert_eq!(decode_cursor(&c), Some(40));
        assert_eq!(decode_cursor("garbage!"), None);
        assert_eq!(decode_cursor(&STANDARD_NO_PAD.encode("next::id::x")), None);
        let spec = PageSpec {
            min: 1,
            max: 10,
            default: 10,
        };
        assert!(page(spec, Some("11"), None).is_err());
        assert!(page(spec, Some("x"), None).is_err());
        assert_eq!(
            page(spec, None, Some(&c)).map(|p| (p.offset, p.size)).ok(),
            Some((40, 10))
        );
        let q = vec![("page[size]".to_string(), "2".to_string())];
        let links = collection_links("http://h/api/lists", &q, Page { offset: 0, size: 2 }, 3);
        let next = links["next"].as_str().unwrap_or_default();
        assert!(next.starts_with("http://h/api/lists?page%5Bsize%5D=2&page%5Bcursor%5D="));
        assert!(links.get("prev").is_none());
    }
}
