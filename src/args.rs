//! Argument checks, run before any request is sent. Each failure names the argument (in the
//! snake_case spelling Lua and JSON callers use) and says what is expected.

use serde_json::{Map, Value};

use klaviyo_spec::PageSize;

use crate::Error;

/// An `invalid-argument` error for `field`.
pub fn invalid(field: &str, message: impl Into<String>) -> Error {
    Error::argument(field, message)
}

/// A required text argument: not empty or blank. Returns it trimmed.
pub fn required(field: &str, value: &str) -> Result<String, Error> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(invalid(
            field,
            format!("{field} is required and must not be empty"),
        ));
    }
    Ok(trimmed.to_string())
}

/// A resource id that goes into a path: required, printable, of a sane length. It is
/// percent-encoded when placed in the path, so no character can escape its segment.
pub fn id(field: &str, value: &str) -> Result<String, Error> {
    let value = required(field, value)?;
    if value.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    if value.len() > 128 {
        return Err(invalid(
            field,
            format!("{field} is too long to be a Klaviyo id (over 128 bytes)"),
        ));
    }
    // RFC 3986 §5.2.4: `.` and `..` segments are removed when a URL is normalised, and
    // percent-encoding leaves them as they are (they are unreserved), so a proxy would send
    // `/api/lists/../profiles` somewhere else. No Klaviyo id is a dot segment.
    if value == "." || value == ".." {
        return Err(invalid(
            field,
            format!("{field} must be a Klaviyo id, not the path segment `{value}`"),
        ));
    }
    Ok(value)
}

/// An email address of the usual `local@domain.tld` shape (RFC 5321 length limits).
pub fn email(field: &str, value: &str) -> Result<String, Error> {
    let value = required(field, value)?;
    let bad = || {
        invalid(
            field,
            format!("{field} must be an email address like name@example.com, got {value:?}"),
        )
    };
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let Some((local, domain)) = value.rsplit_once('@') else {
        return Err(bad());
    };
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
        && !domain.contains('@');
    if local.is_empty() || local.len() > 64 || !domain_ok {
        return Err(bad());
    }
    Ok(value)
}

/// A phone number in E.164: `+`, a country code not starting with 0, at most 15 digits.
pub fn phone(field: &str, value: &str) -> Result<String, Error> {
    let value = required(field, value)?;
    let digits = value.strip_prefix('+').unwrap_or("");
    let ok = (2..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !ok {
        return Err(invalid(
            field,
            format!("{field} must be in E.164 format like +15005550006, got {value:?}"),
        ));
    }
    Ok(value)
}

/// An RFC 3339 / ISO 8601 date-time with a time zone (`2024-05-01T12:00:00Z`,
/// `2024-05-01T12:00:00.5+02:00`). Returns it with its Unix time.
pub fn datetime(field: &str, value: &str) -> Result<(String, i64), Error> {
    let value = required(field, value)?;
    match parse_rfc3339(&value) {
        Some(unix) => Ok((value, unix)),
        None => Err(invalid(
            field,
            format!(
                "{field} must be an ISO 8601 date-time with a time zone, like 2024-05-01T12:00:00Z, got {value:?}"
            ),
        )),
    }
}

/// Unix seconds of an RFC 3339 date-time, or None when it is not one.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || !matches!(b[10], b'T' | b't' | b' ')
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let rb = rest.as_bytes();
            if rb.len() != 6 || !matches!(rb[0], b'+' | b'-') || rb[3] != b':' {
                return None;
            }
            let h: i64 = rest.get(1..3)?.parse().ok()?;
            let m: i64 = rest.get(4..6)?.parse().ok()?;
            if h > 23 || m > 59 {
                return None;
            }
            let sign = if rb[0] == b'-' { -1 } else { 1 };
            sign * (h * 3600 + m * 60)
        }
    };
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month[(month - 1) as usize] {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Current Unix time from the host's wall clock.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Free-form properties: text holding a JSON object. Returns the parsed object.
pub fn properties(field: &str, value: Option<&str>) -> Result<Map<String, Value>, Error> {
    let Some(text) = value else {
        return Ok(Map::new());
    };
    // Klaviyo caps profile payloads at 100 KB; refusing early gives a clearer error.
    if text.len() > 100 * 1024 {
        return Err(invalid(field, format!("{field} is larger than 100 KB")));
    }
    // From bytes, as every body is read: one copy of serde_json's reader in the component.
    match serde_json::from_slice::<Value>(text.as_bytes()) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(invalid(
            field,
            format!(
                "{field} must be a JSON object (a table with named keys), got {}",
                kind(&other)
            ),
        )),
        Err(e) => Err(invalid(
            field,
            format!("{field} must be a JSON object, but is not valid JSON: {e}"),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// How many items a list function returns when `limit` is not given (the reference's
/// "default 20").
pub const DEFAULT_LIMIT: u32 = 20;

/// The largest `limit` of every list function (the reference's "max 100"), unless the
/// endpoint's own `page[size]` allows more (events: 1000).
pub const MAX_LIMIT: u32 = 100;

/// How many items the caller wants: 1 to 100, or to the endpoint's largest `page[size]` when
/// that is larger; default 20. Not a page size: pages smaller than this are followed
/// (see [`crate::paging`]), so no `page[size]` ever goes out of the endpoint's range.
pub fn limit(value: Option<u32>, page: PageSize) -> Result<usize, Error> {
    let max = page.max.max(MAX_LIMIT);
    match value {
        None => Ok(DEFAULT_LIMIT as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(n) => Err(invalid(
            "limit",
            format!("limit must be between 1 and {max}, got {n}"),
        )),
    }
}

/// An optional text argument: when given, not blank. Returns it trimmed.
pub fn optional(field: &str, value: Option<&str>) -> Result<Option<String>, Error> {
    match value.map(str::trim) {
        Some("") => Err(invalid(
            field,
            format!("{field} must not be empty; leave it out instead"),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

/// An optional cursor: when given, not empty.
pub fn cursor(value: Option<String>) -> Result<Option<String>, Error> {
    match value {
        Some(c) if c.trim().is_empty() => Err(invalid(
            "page_cursor",
            "page_cursor must not be empty; leave it out for the first page",
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(e: Error) -> String {
        assert_eq!(e.kind, crate::ErrorKind::InvalidArgument, "{e:?}");
        e.field.expect("field")
    }

    #[test]
    fn emails() {
        assert!(email("email", "ada@example.com").is_ok());
        assert!(email("email", " ada+x@mail.example.co.uk ").is_ok());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "ada@ex..com",
            "ada@-x.com",
        ] {
            assert_eq!(field_of(email("email", bad).unwrap_err()), "email", "{bad}");
        }
    }

    #[test]
    fn phones() {
        assert!(phone("phone_number", "+15005550006").is_ok());
        for bad in [
            "15005550006",
            "+0123",
            "+1",
            "+1234567890123456",
            "+1 500 555",
            "+1-500",
        ] {
            assert!(phone("phone_number", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn datetimes() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00.123+02:00"),
            Some(1_709_200_800)
        );
        for bad in [
            "2024-02-30T00:00:00Z",
            "2024-01-01",
            "2024-01-01T00:00:00",
            "2024-13-01T00:00:00Z",
            "yesterday",
            "2024-01-01T25:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    /// Boundaries of ids (cargo-mutants found them untested: `>` for `>=` at 128 bytes, the
    /// dot segments, the trimmed value returned).
    #[test]
    fn ids_at_their_boundaries() {
        assert_eq!(id("list_id", "  Y6nRLr ").unwrap(), "Y6nRLr");
        assert_eq!(id("list_id", &"a".repeat(128)).unwrap(), "a".repeat(128));
        for ok in ["...", ".a", "a.", "a..b"] {
            assert_eq!(id("list_id", ok).unwrap(), ok);
        }
        for bad in [
            "a".repeat(129),
            ".".into(),
            "..".into(),
            " .. ".into(),
            "a\u{7}b".into(),
            "".into(),
        ] {
            assert_eq!(
                field_of(id("list_id", &bad).unwrap_err()),
                "list_id",
                "{bad:?}"
            );
        }
    }

    /// RFC 5321 limits: 254 bytes in all, 64 before the `@`.
    #[test]
    fn email_lengths() {
        let domain = "@example.com";
        let local64 = "a".repeat(64);
        assert!(email("email", &format!("{local64}{domain}")).is_ok());
        assert!(email("email", &format!("a{local64}{domain}")).is_err());
        // 254 bytes exactly, then 255.
        let long_domain = |n: usize| format!("a@{}.com", "b".repeat(n - 6));
        assert_eq!(long_domain(254).len(), 254);
        assert!(email("email", &long_domain(254)).is_ok());
        assert!(email("email", &long_domain(255)).is_err());
    }

    /// Every part of an RFC 3339 date-time checked, with exact Unix times (boundaries that
    /// mutants slipped through: separators, offsets, leap years, field ranges).
    #[test]
    fn datetimes_in_every_part() {
        assert_eq!(
            datetime("time", " 2024-05-01T12:00:00Z ").unwrap(),
            ("2024-05-01T12:00:00Z".to_string(), 1_714_564_800)
        );
        assert_eq!(field_of(datetime("time", "soon").unwrap_err()), "time");
        for (text, unix) in [
            ("1969-12-31T23:59:59Z", -1),
            ("2000-03-01T00:00:00Z", 951_868_800),
            ("2000-02-29T00:00:00Z", 951_782_400),
            ("2024-05-01T12:00:00+02:00", 1_714_557_600),
            ("2024-05-01T12:00:00-05:30", 1_714_584_600),
            ("2024-05-01T12:00:00+23:59", 1_714_564_800 - 86_340),
            ("2024-05-01t12:00:00z", 1_714_564_800),
            ("2024-05-01 12:00:00Z", 1_714_564_800),
            ("2024-05-01T12:00:00.999999Z", 1_714_564_800),
            ("2024-12-31T23:59:60Z", 1_735_689_600),
            ("2024-04-30T23:59:59Z", 1_714_521_599),
        ] {
            assert_eq!(parse_rfc3339(text), Some(unix), "{text}");
        }
        for bad in [
            "2024x05-01T12:00:00Z",
            "2024-05x01T12:00:00Z",
            "2024-05-01X12:00:00Z",
            "2024-05-01T12x00:00Z",
            "2024-05-01T12:00x00Z",
            "2024-05-01T12:00:00.Z",
            "2024-05-01T12:00:00+24:00",
            "2024-05-01T12:00:00+02:60",
            "2024-05-01T12:00:00+0200",
            "2024-05-01T12:00:00 02:00",
            "2024-05-01T12:00:00+02-00",
            "2023-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2024-00-01T00:00:00Z",
            "2024-04-31T00:00:00Z",
            "2024-05-00T00:00:00Z",
            "2024-05-01T24:00:00Z",
            "2024-05-01T23:60:00Z",
            "2024-05-01T23:59:61Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    /// The clock is the host's wall clock, in seconds.
    #[test]
    fn now_is_the_wall_clock() {
        let std_now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now_unix() - std_now).abs() <= 2);
    }

    /// The 100 KB cap is inclusive; each wrong JSON type is named; optional text is trimmed
    /// and blank refused (cargo-mutants found these reachable only through the component).
    #[test]
    fn properties_cap_types_and_optional_text() {
        let sized = |n: usize| format!(r#"{{"k":"{}"}}"#, "x".repeat(n - 8));
        assert_eq!(sized(100 * 1024).len(), 100 * 1024);
        assert_eq!(
            properties("properties", Some(&sized(100 * 1024)))
                .unwrap()
                .len(),
            1
        );
        let e = properties("properties", Some(&sized(100 * 1024 + 1))).unwrap_err();
        assert_eq!(e.message, "properties is larger than 100 KB");
        for (text, named) in [
            ("null", "null"),
            ("true", "a boolean"),
            ("3", "a number"),
            ("\"x\"", "a string"),
            ("[1]", "an array"),
        ] {
            assert_eq!(
                properties("properties", Some(text)).unwrap_err().message,
                format!("properties must be a JSON object (a table with named keys), got {named}")
            );
        }
        assert_eq!(kind(&Value::Object(Map::new())), "an object");
        assert_eq!(optional("name", None).unwrap(), None);
        assert_eq!(
            optional("name", Some(" Ada ")).unwrap().as_deref(),
            Some("Ada")
        );
        assert_eq!(field_of(optional("name", Some("  ")).unwrap_err()), "name");
    }

    #[test]
    fn properties_must_be_objects() {
        assert_eq!(
            properties("properties", Some(r#"{"plan":"pro"}"#)).unwrap()["plan"],
            "pro"
        );
        assert!(properties("properties", None).unwrap().is_empty());
        for bad in ["[1,2]", "\"x\"", "3", "{", "null"] {
            assert_eq!(
                field_of(properties("properties", Some(bad)).unwrap_err()),
                "properties"
            );
        }
    }

    #[test]
    fn limits_are_item_counts_not_page_sizes() {
        use klaviyo_spec::{EVENTS_PAGE, FLOWS_PAGE, LISTS_PAGE, PROFILES_PAGE};
        assert_eq!(limit(None, LISTS_PAGE).unwrap(), 20);
        assert_eq!(limit(None, PROFILES_PAGE).unwrap(), 20);
        assert_eq!(limit(Some(100), LISTS_PAGE).unwrap(), 100);
        assert_eq!(limit(Some(100), FLOWS_PAGE).unwrap(), 100);
        assert_eq!(limit(Some(1000), EVENTS_PAGE).unwrap(), 1000);
        assert!(limit(Some(0), PROFILES_PAGE).is_err());
        assert!(limit(Some(101), LISTS_PAGE).is_err());
        assert!(limit(Some(1001), EVENTS_PAGE).is_err());
    }
}
