//! The vendored OpenAPI slices (revision `klaviyo_spec::REVISION`, `openapi/*.json`): routing
//! table, per-operation facts (page sizes, filters, sorts, rate limits) and request validation.
//!
//! The slices are embedded with `include_str!`, so the binary needs no files at run time.
//! Validation follows the spec with two documented translations for JSON Schema:
//! * OpenAPI 3.0 `nullable: true` becomes `type: [T, "null"]` (plus `null` in an `enum`), or
//!   `anyOf: [schema, {"type": "null"}]` when the schema is a `$ref`/`oneOf`/`allOf`.
//! * `oneOf` becomes `anyOf`: Klaviyo's alternatives overlap (e.g. `EmailSendOptions`,
//!   `SMSSendOptions` and `PushSendOptions` are identical), so a strict `oneOf` would reject
//!   every valid document; the official SDKs also accept the first matching alternative.

use std::sync::{LazyLock, OnceLock};

use http::{HeaderMap, Method};
use jsonschema::error::ValidationErrorKind;
use jsonschema::{Draft, ValidationError, Validator};
use serde_json::{Map, Value, json};

use super::errors::Source;

/// `(operationId, slice)`, one self-contained OpenAPI document per operation.
const SLICES: &[(&str, &str)] = &[
    (
        "bulk_subscribe_profiles",
        include_str!("../openapi/bulk_subscribe_profiles.json"),
    ),
    ("create_event", include_str!("../openapi/create_event.json")),
    ("create_list", include_str!("../openapi/create_list.json")),
    (
        "create_profile",
        include_str!("../openapi/create_profile.json"),
    ),
    (
        "get_campaigns",
        include_str!("../openapi/get_campaigns.json"),
    ),
    ("get_event", include_str!("../openapi/get_event.json")),
    ("get_events", include_str!("../openapi/get_events.json")),
    ("get_flow", include_str!("../openapi/get_flow.json")),
    ("get_flows", include_str!("../openapi/get_flows.json")),
    ("get_list", include_str!("../openapi/get_list.json")),
    ("get_lists", include_str!("../openapi/get_lists.json")),
    ("get_metrics", include_str!("../openapi/get_metrics.json")),
    ("get_profile", include_str!("../openapi/get_profile.json")),
    ("get_profiles", include_str!("../openapi/get_profiles.json")),
    (
        "get_profiles_for_list",
        include_str!("../openapi/get_profiles_for_list.json"),
    ),
    (
        "update_profile",
        include_str!("../openapi/update_profile.json"),
    ),
];

/// Where a parameter travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ParamIn {
    Query,
    Header,
    Path,
}

/// One declared parameter of an operation.
#[derive(Debug)]
pub(crate) struct Param {
    pub name: String,
    pub location: ParamIn,
    pub required: bool,
    pub schema: Value,
}

/// `page[size]` bounds and default, from the parameter's schema.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PageSpec {
    pub min: i64,
    pub max: i64,
    pub default: i64,
}

/// The rate limits of requests that ask for one additional field.
#[derive(Debug)]
pub(crate) struct AdditionalRate {
    /// The parameter, e.g. `additional-fields[list]`.
    pub param: String,
    /// The value it lists, e.g. `profile_count`.
    pub value: String,
    /// The window these requests are counted in, e.g. `get_list+profile_count`.
    pub bucket: &'static str,
    pub burst_per_sec: u32,
    pub steady_per_min: u32,
}

/// Everything the emulator uses from one operation of the spec.
pub(crate) struct Operation {
    /// The `operationId`, e.g. `get_profiles`.
    pub id: &'static str,
    pub method: Method,
    /// The path template, e.g. `/api/profiles/{id}`.
    pub template: String,
    /// Path segments; `None` stands for a `{param}`.
    segments: Vec<Option<String>>,
    pub params: Vec<Param>,
    /// The request body schema (a `$ref` into the components) and whether a body is required.
    body: Option<(Value, bool)>,
    /// Media types the body may be sent as.
    body_media: Vec<String>,
    /// The documented success status (200, 201 or 202); the shape tests check against it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub success_status: u16,
    /// The success response schema, if the success response has a body.
    #[cfg_attr(not(test), allow(dead_code))]
    response_schema: Option<Value>,
    /// `x-klaviyo-ratelimit`: burst per second, steady per minute.
    pub burst_per_sec: u32,
    pub steady_per_min: u32,
    /// Lower limits the description states for one `additional-fields` value (get_list with
    /// `profile_count`: 1/s, 15/m), counted in their own window.
    pub additional_rate: Option<AdditionalRate>,
    /// `x-klaviyo-filters`: allowed fields, their operators and value types.
    pub filters: Option<Map<String, Value>>,
    pub page: Option<PageSpec>,
    /// The `sort` parameter's enum.
    pub sort: Vec<String>,
    /// The document's `components.schemas`, normalised for JSON Schema.
    components: Value,
    body_validator: OnceLock<Option<Validator>>,
}

impl std::fmt::Debug for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operation")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

/// Every operation of the slices, parsed once.
static OPERATIONS: LazyLock<Vec<Operation>> = LazyLock::new(|| {
    SLICES
        .iter()
        .map(|(id, text)| {
            // The slices are compile-time constants checked by the tests below, not input.
            let doc: Value = serde_json::from_str(text).expect("vendored OpenAPI slice is JSON");
            parse_operation(id, &doc)
        })
        .collect()
});

/// Every operation the emulator serves.
pub(crate) fn operations() -> &'static [Operation] {
    &OPERATIONS
}

/// The operation with this `operationId`.
#[cfg(test)]
pub(crate) fn operation(id: &str) -> Option<&'static Operation> {
    operations().iter().find(|op| op.id == id)
}

fn parse_rate(text: Option<&Value>) -> Option<(u32, char)> {
    let (n, unit) = text?.as_str()?.split_once('/')?;
    Some((n.trim().parse().ok()?, unit.trim().chars().next()?))
}

fn parse_operation(id: &'static str, doc: &Value) -> Operation {
    let (template, method, op) = doc["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .map(move |(m, op)| (path, m, op))
        })
        .find(|(_, _, op)| op["operationId"] == id)
        .map(|(p, m, op)| (p.clone(), m.to_ascii_uppercase(), op))
        .expect("slice holds its operation");
    let method = Method::from_bytes(method.as_bytes()).expect("HTTP method");
    let segments = template
        .trim_matches('/')
        .split('/')
        .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
        .collect();
    let params: Vec<Param> = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let location = match p["in"].as_str()? {
                "query" => ParamIn::Query,
                "header" => ParamIn::Header,
                "path" => ParamIn::Path,
                _ => return None,
            };
            Some(Param {
                name: p["name"].as_str()?.to_string(),
                location,
                required: p["required"].as_bool().unwrap_or(false),
                schema: p["schema"].clone(),
            })
        })
        .collect();
    let body = op["requestBody"].as_object().and_then(|rb| {
        let content = rb.get("content")?.as_object()?;
        let schema = content.values().next()?.get("schema")?.clone();
        Some((
            schema,
            rb.get("required").and_then(Value::as_bool).unwrap_or(false),
        ))
    });
    let mut body_media: Vec<String> = op["requestBody"]["content"]
        .as_object()
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default();
    if !body_media.is_empty() {
        // Notes §1: specs before 2024-10-15 declared application/json and clients still send it.
        body_media.push("application/json".into());
    }
    let (success_status, response_schema) = op["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .find_map(|(code, r)| {
            let code: u16 = code.parse().ok()?;
            (200..300).contains(&code).then(|| {
                let schema = r["content"]
                    .as_object()
                    .and_then(|c| c.values().next())
                    .map(|m| m["schema"].clone());
                (code, schema)
            })
        })
        .unwrap_or((200, None));
    let rl = &op["x-klaviyo-ratelimit"];
    let burst_per_sec = match parse_rate(rl.get("burst")) {
        Some((n, 's')) => n,
        _ => 75,
    };
    let steady_per_min = match parse_rate(rl.get("steady")) {
        Some((n, 'm')) => n,
        Some((n, 's')) => n * 60,
        _ => 750,
    };
    let description = op["description"].as_str().unwrap_or_default();
    let page = params
        .iter()
        .find(|p| p.name == "page[size]")
        .map(|p| PageSpec {
            min: p.schema["minimum"].as_i64().unwrap_or(1),
            max: p.schema["maximum"].as_i64().unwrap_or(100),
            default: p.schema["default"].as_i64().unwrap_or(20),
        })
        .or_else(|| {
            // Without `page[size]`, a paged endpoint states its fixed page in the description
            // (get_metrics: "Returns a maximum of 200 results per page.").
            let n = fixed_page(description)?;
            Some(PageSpec {
                min: n,
                max: n,
                default: n,
            })
        });
    let additional_rate = additional_rate(id, description);
    let sort = params
        .iter()
        .find(|p| p.name == "sort")
        .and_then(|p| p.schema["enum"].as_array())
        .map(|e| {
            e.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let components = json!({
        "schemas": doc["components"]["schemas"]
            .as_object()
            .map(|s| {
                s.iter()
                    .map(|(k, v)| (k.clone(), normalize(v)))
                    .collect::<Map<String, Value>>()
            })
            .unwrap_or_default()
    });
    Operation {
        id,
        method,
        template,
        segments,
        params,
        body,
        body_media,
        success_status,
        response_schema,
        burst_per_sec,
        steady_per_min,
        additional_rate,
        filters: op["x-klaviyo-filters"].as_object().cloned(),
        page,
        sort,
        components,
        body_validator: OnceLock::new(),
    }
}

/// `N` of "Returns a maximum of N results per page" in an operation's description.
fn fixed_page(description: &str) -> Option<i64> {
    let (_, rest) = description.split_once("maximum of ")?;
    let (n, rest) = rest.split_once(' ')?;
    rest.starts_with("results per page")
        .then(|| n.parse().ok())
        .flatten()
}

/// The limits of "Rate limits when using the `additional-fields[list]=profile_count`
/// parameter in your API request:<br>Burst: `1/s`<br>Steady: `15/m`" (get_list's description).
fn additional_rate(id: &str, description: &str) -> Option<AdditionalRate> {
    let (_, rest) = description.split_once("Rate limits when using the `")?;
    let (pair, rest) = rest.split_once('`')?;
    let (param, value) = pair.split_once('=')?;
    let rate = |label: &str| {
        let (_, r) = rest.split_once(label)?;
        let (n, unit) = r.split('`').next()?.split_once('/')?;
        Some((n.trim().parse::<u32>().ok()?, unit.trim().chars().next()?))
    };
    let (burst, 's') = rate("Burst: `")? else {
        return None;
    };
    let (steady, 'm') = rate("Steady: `")? else {
        return None;
    };
    Some(AdditionalRate {
        param: param.to_string(),
        value: value.to_string(),
        bucket: Box::leak(format!("{id}+{value}").into_boxed_str()),
        burst_per_sec: burst,
        steady_per_min: steady,
    })
}

/// Translate an OpenAPI 3.0 schema object to JSON Schema 2020-12 (see the module docs).
pub(crate) fn normalize(schema: &Value) -> Value {
    let Value::Object(obj) = schema else {
        return schema.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "nullable" | "example" | "description" => {}
            "properties" => {
                let props = v
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" | "not" => {
                out.insert(k.clone(), normalize(v));
            }
            "oneOf" | "anyOf" | "allOf" => {
                let key = if k == "allOf" { "allOf" } else { "anyOf" };
                let list = v.as_array().map(|a| a.iter().map(normalize).collect());
                out.insert(key.into(), Value::Array(list.unwrap_or_default()));
            }
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if obj.get("nullable") != Some(&Value::Bool(true)) {
        return Value::Object(out);
    }
    let composite = ["$ref", "anyOf", "allOf"]
        .iter()
        .any(|k| out.contains_key(*k));
    match out.get("type").and_then(Value::as_str).map(String::from) {
        Some(t) if !composite => {
            out.insert("type".into(), json!([t, "null"]));
            if let Some(Value::Array(e)) = out.get_mut("enum") {
                e.push(Value::Null);
            }
            Value::Object(out)
        }
        _ => json!({ "anyOf": [Value::Object(out), { "type": "null" }] }),
    }
}

/// Compile `schema` against these normalised `components` (formats checked if asked).
fn compile(schema: &Value, components: &Value, formats: bool) -> Option<Validator> {
    let mut root = match normalize(schema) {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("allOf".into(), json!([other]));
            m
        }
    };
    // `#/components/schemas/X` resolves against this root document.
    root.insert("components".into(), components.clone());
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .should_validate_formats(formats)
        .build(&Value::Object(root))
        .ok()
}

impl Operation {
    /// The body validator, compiled on first use and cached. Formats are not enforced on
    /// requests: Klaviyo accepts ISO 8601 without an offset, which RFC 3339 would reject.
    fn body_validator(&self) -> Option<&Validator> {
        self.body_validator
            .get_or_init(|| {
                let (schema, _) = self.body.as_ref()?;
                compile(schema, &self.components, false)
            })
            .as_ref()
    }

    /// A validator for the documented success response body (formats enforced).
    #[cfg(test)]
    pub(crate) fn response_validator(&self) -> Option<Validator> {
        compile(self.response_schema.as_ref()?, &self.components, true)
    }

    /// The success response schema, fully resolvable against [`Operation::resolve`].
    #[cfg(test)]
    pub(crate) fn response_schema(&self) -> Option<&Value> {
        self.response_schema.as_ref()
    }

    /// Follow a `#/components/schemas/X` reference (one level) in the normalised components.
    #[cfg(test)]
    pub(crate) fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let name = r.rsplit('/').next().unwrap_or_default();
                &self.components["schemas"][name]
            }
            None => schema,
        }
    }

    /// Does the operation take a request body?
    pub(crate) fn has_body(&self) -> bool {
        self.body.is_some()
    }

    /// The declared query parameter of this name.
    pub(crate) fn query_param(&self, name: &str) -> Option<&Param> {
        self.params
            .iter()
            .find(|p| p.location == ParamIn::Query && p.name == name)
    }

    /// Values the `additional-fields[...]` parameters can request (omitted unless asked for).
    #[cfg(test)]
    pub(crate) fn additional_fields(&self) -> Vec<String> {
        self.params
            .iter()
            .filter(|p| p.name.starts_with("additional-fields["))
            .flat_map(|p| {
                p.schema["items"]["enum"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    }

    /// Match a request path (without query, trailing slash optional) to this operation.
    fn match_path(&self, segments: &[String]) -> Option<Option<String>> {
        if segments.len() != self.segments.len() {
            return None;
        }
        let mut id = None;
        for (want, got) in self.segments.iter().zip(segments) {
            match want {
                Some(lit) if lit == got => {}
                Some(_) => return None,
                None if got.is_empty() => return None,
                None => id = Some(got.clone()),
            }
        }
        Some(id)
    }
}

/// The outcome of routing a method and path.
#[derive(Debug)]
pub(crate) enum Route {
    /// A served operation, with the `{id}` path parameter if the template has one.
    Found(&'static Operation, Option<String>),
    /// The path exists but not with this method; the methods it does support.
    WrongMethod(Vec<&'static str>),
    NotFound,
}

/// Route `method path`, accepting paths with and without a trailing slash (notes §1).
pub(crate) fn route(method: &Method, path: &str) -> Route {
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    let segments: Vec<String> = trimmed
        .trim_start_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let mut allowed = Vec::new();
    for op in operations() {
        if let Some(id) = op.match_path(&segments) {
            if op.method == *method {
                return Route::Found(op, id);
            }
            allowed.push(op.method.as_str());
        }
    }
    if allowed.is_empty() {
        Route::NotFound
    } else {
        Route::WrongMethod(allowed)
    }
}

/// A request as validation sees it.
pub(crate) struct RequestView<'a> {
    pub query: &'a [(String, String)],
    pub headers: &'a HeaderMap,
    /// `None` when there was no body; `Some(Err(()))` when it was not JSON.
    pub body: Option<Result<&'a Value, ()>>,
}

/// One way a request departs from the spec.
#[derive(Clone, Debug)]
pub(crate) struct Violation {
    /// Human-readable, naming what is wrong and where (recorded and sent as `detail`).
    pub message: String,
    pub source: Source,
}

impl Violation {
    fn param(name: &str, message: String) -> Self {
        Violation {
            message,
            source: Source::Parameter(name.to_string()),
        }
    }
}

/// `YYYY-MM-DD` with an optional `.suffix` (notes §1).
pub(crate) fn is_revision(value: &str) -> bool {
    let (date, suffix) = match value.split_once('.') {
        Some((d, s)) => (d, Some(s)),
        None => (value, None),
    };
    let b = date.as_bytes();
    let date_ok = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        });
    date_ok
        && suffix.is_none_or(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        })
}

/// Check a parameter's string value against its schema; `Err` says why not.
fn check_value(schema: &Value, raw: &str) -> Result<(), String> {
    let enum_check = |schema: &Value, item: &str| -> Result<(), String> {
        match schema["enum"].as_array() {
            Some(e) if !e.iter().any(|v| v.as_str() == Some(item)) => {
                Err(format!("\"{item}\" is not one of the allowed values"))
            }
            _ => Ok(()),
        }
    };
    match schema["type"].as_str() {
        Some("integer") => {
            let n: i64 = raw
                .trim()
                .parse()
                .map_err(|_| format!("\"{raw}\" is not an integer"))?;
            if let Some(min) = schema["minimum"].as_i64().filter(|m| n < *m) {
                return Err(format!("{n} is less than the minimum of {min}"));
            }
            if let Some(max) = schema["maximum"].as_i64().filter(|m| n > *m) {
                return Err(format!("{n} is greater than the maximum of {max}"));
            }
            Ok(())
        }
        Some("number") => raw
            .trim()
            .parse::<f64>()
            .map(|_| ())
            .map_err(|_| format!("\"{raw}\" is not a number")),
        Some("boolean") => match raw {
            "true" | "false" => Ok(()),
            _ => Err(format!("\"{raw}\" is not a boolean")),
        },
        // `style: form, explode: false`: a comma-separated list.
        Some("array") => raw
            .split(',')
            .try_for_each(|item| enum_check(&schema["items"], item)),
        _ => enum_check(schema, raw),
    }
}

/// How deep into the instance an error (or its most specific `anyOf` branch) points.
fn error_depth(e: &ValidationError<'_>) -> usize {
    match &e.kind {
        ValidationErrorKind::AnyOf { context } => context
            .iter()
            .flat_map(|branch| branch.iter().map(error_depth))
            .max()
            .unwrap_or(0),
        ValidationErrorKind::Required { .. } => e.instance_path.as_str().matches('/').count() + 1,
        _ => e.instance_path.as_str().matches('/').count(),
    }
}

/// `(pointer, message)` of the most specific failures behind an error: an `anyOf` (which the
/// nullable translation introduces) is replaced by its deepest-reaching branch, so a wrong
/// `consent` is reported at `.../marketing/consent`, not at the enclosing object.
fn leaf_errors(e: &ValidationError<'_>) -> Vec<(String, String)> {
    if let ValidationErrorKind::AnyOf { context } = &e.kind {
        let best = context
            .iter()
            .filter(|branch| !branch.is_empty())
            .max_by_key(|branch| branch.iter().map(error_depth).max().unwrap_or(0));
        if let Some(branch) = best {
            return branch.iter().flat_map(|b| leaf_errors(b)).collect();
        }
    }
    let mut pointer = e.instance_path.as_str().to_string();
    if let ValidationErrorKind::Required { property } = &e.kind
        && let Some(p) = property.as_str()
    {
        pointer = format!("{pointer}/{p}");
    }
    if pointer.is_empty() {
        pointer.push('/');
    }
    vec![(pointer, e.to_string())]
}

/// Validate a request against the operation's parameters and request body.
pub(crate) fn validate(op: &Operation, req: &RequestView<'_>) -> Vec<Violation> {
    let mut out = Vec::new();
    for (name, value) in req.query {
        match op.query_param(name) {
            None => out.push(Violation::param(
                name,
                format!("query parameter \"{name}\" is not supported by {}", op.id),
            )),
            Some(p) => {
                if let Err(why) = check_value(&p.schema, value) {
                    out.push(Violation::param(
                        name,
                        format!("query parameter \"{name}\": {why}"),
                    ));
                }
            }
        }
    }
    for p in &op.params {
        match p.location {
            ParamIn::Query if p.required && !req.query.iter().any(|(n, _)| n == &p.name) => {
                out.push(Violation::param(
                    &p.name,
                    format!("missing required query parameter \"{}\"", p.name),
                ));
            }
            ParamIn::Header => {
                let value = req.headers.get(p.name.as_str()).map(|v| v.to_str());
                match value {
                    None if p.required => out.push(Violation::param(
                        &p.name,
                        format!("missing required header \"{}\"", p.name),
                    )),
                    Some(Err(_)) => out.push(Violation::param(
                        &p.name,
                        format!("header \"{}\" is not visible ASCII", p.name),
                    )),
                    Some(Ok(v)) if p.name == "revision" && !is_revision(v) => {
                        out.push(Violation::param(
                            &p.name,
                            format!(
                                "header \"revision\": \"{v}\" is not a YYYY-MM-DD[.suffix] revision"
                            ),
                        ))
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    let Some((_, required)) = &op.body else {
        return out;
    };
    let ctype = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match ctype {
        Some(ct) if op.body_media.contains(&ct) => {}
        Some(ct) => out.push(Violation {
            message: format!(
                "content-type \"{ct}\" is not supported (send application/vnd.api+json)"
            ),
            source: Source::Parameter("content-type".into()),
        }),
        None => out.push(Violation {
            message: "missing content-type header (send application/vnd.api+json)".into(),
            source: Source::Parameter("content-type".into()),
        }),
    }
    match req.body {
        None if *required => out.push(Violation {
            message: "missing request body".into(),
            source: Source::Pointer("/data".into()),
        }),
        None => {}
        Some(Err(())) => out.push(Violation {
            message: "request body is not valid JSON".into(),
            source: Source::Pointer("/".into()),
        }),
        Some(Ok(body)) => {
            if let Some(validator) = op.body_validator() {
                let leaves = validator.iter_errors(body).flat_map(|e| leaf_errors(&e));
                for (pointer, message) in leaves.take(10) {
                    out.push(Violation {
                        message: format!("body {pointer}: {message}"),
                        source: Source::Pointer(pointer),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_slices_parse_and_route() {
        assert_eq!(operations().len(), SLICES.len());
        for op in operations() {
            let concrete = op.template.replace("{id}", "abc");
            match route(&op.method, &format!("{concrete}/")) {
                Route::Found(found, _) => assert_eq!(found.id, op.id),
                other => panic!("{} did not route: {other:?}", op.id),
            }
            if op.body.is_some() {
                assert!(op.body_validator().is_some(), "{} body validator", op.id);
            }
            if op.response_schema.is_some() {
                assert!(
                    op.response_validator().is_some(),
                    "{} response validator",
                    op.id
                );
            }
        }
        assert!(matches!(
            route(&Method::DELETE, "/api/profiles"),
            Route::WrongMethod(_)
        ));
        assert!(matches!(route(&Method::GET, "/api/nope"), Route::NotFound));
        let lists = operation("get_lists").map(|o| o.page);
        assert!(matches!(
            lists,
            Some(Some(PageSpec {
                min: 1,
                max: 10,
                default: 10
            }))
        ));
        assert_eq!(operation("get_flows").map(|o| o.steady_per_min), Some(60));
        // get_metrics has no page[size]: its description's fixed page of 200.
        assert!(matches!(
            operation("get_metrics").map(|o| o.page),
            Some(Some(PageSpec {
                min: 200,
                max: 200,
                default: 200
            }))
        ));
        let count = operation("get_list").and_then(|o| o.additional_rate.as_ref());
        assert!(
            matches!(count, Some(r) if r.param == "additional-fields[list]"
                && r.value == "profile_count" && r.burst_per_sec == 1 && r.steady_per_min == 15),
            "{count:?}"
        );
        assert!(operation("get_lists").is_some_and(|o| o.additional_rate.is_none()));
    }

    fn violations(op: &str, query: &[(&str, &str)], body: Value) -> Vec<Violation> {
        let mut headers = HeaderMap::new();
        headers.insert(
            "revision",
            http::HeaderValue::from_static(klaviyo_spec::REVISION),
        );
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/vnd.api+json"),
        );
        let query: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let op = operation(op).expect("operation");
        validate(
            op,
            &RequestView {
                query: &query,
                headers: &headers,
                body: Some(Ok(&body)),
            },
        )
    }

    #[test]
    fn request_validation() {
        let sub = |consent: &str| {
            json!({"data": {"type": "profile-subscription-bulk-create-job", "attributes": {
                "historical_import": null,
                "profiles": {"data": [{"type": "profile", "attributes": {"email": "a@b.co", "phone_number": null,
                    "subscriptions": {"email": {"marketing": {"consent": consent}}}}}]}}}})
        };
        assert!(violations("bulk_subscribe_profiles", &[], sub("SUBSCRIBED")).is_empty());
        let v = violations("bulk_subscribe_profiles", &[], sub("UNSUBSCRIBED"));
        assert!(
            v.iter().any(|v| v.message.contains(
                "/data/attributes/profiles/data/0/attributes/subscriptions/email/marketing/consent"
            )),
            "{v:?}"
        );
        let event = json!({"data": {"type": "event", "attributes": {"properties": {},
            "metric": {"data": {"type": "metric", "attributes": {"name": "M"}}},
            "profile": {"data": {"type": "profile", "id": "X"}}}}});
        let v = violations("create_event", &[], event);
        assert!(
            matches!(&v[0].source, Source::Pointer(p) if p == "/data/attributes/profile/data/attributes"),
            "{v:?}"
        );
        let list = json!({"data": {"type": "list", "attributes": {"name": "L"}}});
        let v = violations(
            "create_list",
            &[("fields[list]", "name,colour")],
            list.clone(),
        );
        assert!(
            matches!(&v[0].source, Source::Parameter(p) if p == "fields[list]"),
            "{v:?}"
        );
        assert!(violations("create_list", &[("fields[list]", "name,created")], list).is_empty());
        let patch = json!({"data": {"type": "profile", "id": "X", "attributes": {"location": {"latitude": "1.5", "zip": null}}}});
        assert!(violations("update_profile", &[], patch).is_empty());
    }

    /// `klaviyo_spec` (what the component sends by) must say what the vendored slices say.
    #[test]
    fn shared_page_sizes_match_the_slices() {
        for (operation_id, page) in klaviyo_spec::PAGE_SIZES {
            let (_, text) = SLICES
                .iter()
                .find(|(id, _)| id == operation_id)
                .expect("a slice per collection");
            let doc: Value = serde_json::from_str(text).unwrap();
            let size = doc["paths"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|ops| ops.as_object().unwrap().values())
                .flat_map(|op| op["parameters"].as_array().cloned().unwrap_or_default())
                .find(|p| p["name"] == "page[size]")
                .expect("page[size]");
            assert_eq!(size["schema"]["maximum"], json!(page.max), "{operation_id}");
            assert_eq!(
                size["schema"]["default"],
                json!(page.default),
                "{operation_id}"
            );
            assert_eq!(size["schema"]["minimum"], json!(1), "{operation_id}");
        }
        let info = SLICES[0].1;
        assert!(
            info.contains(klaviyo_spec::REVISION),
            "slices are of the pinned revision"
        );
    }

    #[test]
    fn nullable_translation() {
        let s = normalize(&json!({"type": "string", "nullable": true, "enum": ["a"]}));
        assert_eq!(s, json!({"type": ["string", "null"], "enum": ["a", null]}));
        let s = normalize(&json!({"$ref": "#/x", "nullable": true}));
        assert_eq!(s, json!({"anyOf": [{"$ref": "#/x"}, {"type": "null"}]}));
        assert!(is_revision("2026-07-15"));
        assert!(is_revision("2026-07-15.pre"));
        assert!(!is_revision("2026-7-15"));
    }
}
