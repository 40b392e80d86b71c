//! Operation handlers. Each takes the parsed request ([`Ctx`]) and the caller's account and
//! returns a status with a JSON:API document, or an [`ApiError`].

mod catalog;
mod events;
mod lists;
mod metrics;
mod profiles;
mod subscriptions;

use serde_json::{Map, Value, json};

use super::errors::ApiError;
use super::filter::{self, Expr, FieldVal};
use super::paging;
use super::render::{Urls, apply_fieldset};
use super::spec::{Operation, PageSpec};
use super::state::Account;

/// A request routed to an operation.
pub(crate) struct Ctx<'a> {
    pub op: &'static Operation,
    /// The `{id}` path parameter.
    pub id: Option<&'a str>,
    /// Decoded query pairs in order.
    pub query: &'a [(String, String)],
    pub body: Option<&'a Value>,
    pub urls: Urls,
    /// The request path as received.
    pub path: &'a str,
    /// Unix seconds at arrival.
    pub now: i64,
}

/// A successful answer: status and optional JSON:API document.
pub(crate) struct Reply {
    pub status: u16,
    pub body: Option<Value>,
}

impl Ctx<'_> {
    /// The last value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A comma-separated query parameter (`style: form, explode: false`).
    pub fn list_param(&self, name: &str) -> Vec<String> {
        self.param(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The path parameter (routing guarantees it for templates with `{id}`).
    pub fn id(&self) -> &str {
        self.id.unwrap_or_default()
    }

    /// The request URL without its query.
    pub fn self_url(&self) -> String {
        format!("{}{}", self.urls.base, self.path)
    }

    /// Is `name` listed in the `include` parameter?
    pub fn includes(&self, name: &str) -> bool {
        self.list_param("include").iter().any(|i| i == name)
    }

    /// The parsed `filter`, checked against the operation's `x-klaviyo-filters` (notes §5).
    pub fn filter(&self) -> Result<Option<Expr>, ApiError> {
        let Some(text) = self.param("filter") else {
            return Ok(None);
        };
        let expr = filter::parse(text).map_err(|e| ApiError::invalid_filter(&e.0))?;
        if let Some(allowed) = &self.op.filters {
            filter::check(&expr, allowed).map_err(|e| ApiError::invalid_filter(&e.0))?;
        }
        Ok(Some(expr))
    }

    /// Filter, sort and paginate a collection; returns the page and the collection `links`.
    pub fn select<'t, T>(
        &self,
        items: impl IntoIterator<Item = &'t T>,
        field: impl Fn(&T, &str) -> FieldVal,
    ) -> Result<(Vec<&'t T>, Value), ApiError>
    where
        T: 't,
    {
        let mut items: Vec<&T> = items.into_iter().collect();
        if let Some(expr) = self.filter()? {
            items.retain(|t| filter::eval(&expr, &|name| field(t, name)));
        }
        if let Some(sort) = self.param("sort") {
            // Only the sort keys the spec's `sort` enum lists are accepted.
            if !self.op.sort.iter().any(|s| s == sort) {
                return Err(ApiError::invalid_param(
                    "sort",
                    format!("Sort field \"{sort}\" is not supported for this endpoint."),
                ));
            }
            let (desc, key) = match sort.strip_prefix('-') {
                Some(k) => (true, k),
                None => (false, sort),
            };
            items.sort_by(|a, b| {
                let o = field(a, key).sort_cmp(&field(b, key));
                if desc { o.reverse() } else { o }
            });
        }
        let spec = self.op.page.unwrap_or(PageSpec {
            min: 1,
            max: 100,
            default: 20,
        });
        let page = paging::page(spec, self.param("page[size]"), self.param("page[cursor]"))?;
        let links = paging::collection_links(&self.self_url(), self.query, page, items.len());
        let items = items
            .into_iter()
            .skip(page.offset)
            .take(page.size)
            .collect();
        Ok((items, links))
    }

    /// A top-level document: `data`, `links`, and `included` when `include` was asked for;
    /// sparse fieldsets (`fields[type]`) applied to every resource.
    pub fn document(&self, mut data: Value, links: Value, mut included: Vec<Value>) -> Value {
        match &mut data {
            Value::Array(items) => items.iter_mut().for_each(|r| self.fieldset(r)),
            single => self.fieldset(single),
        }
        included.iter_mut().for_each(|r| self.fieldset(r));
        let mut doc = Map::new();
        doc.insert("data".into(), data);
        doc.insert("links".into(), links);
        if self.param("include").is_some() {
            doc.insert("included".into(), Value::Array(included));
        }
        Value::Object(doc)
    }

    fn fieldset(&self, resource: &mut Value) {
        let Some(kind) = resource.get("type").and_then(Value::as_str) else {
            return;
        };
        let key = format!("fields[{kind}]");
        if self.param(&key).is_some() {
            let fields = self.list_param(&key);
            apply_fieldset(resource, &fields);
        }
    }

    /// `{"self": <resource url>}` for single-resource documents.
    pub fn links_to(&self, collection: &str, id: &str) -> Value {
        json!({ "self": self.urls.resource(collection, id) })
    }
}

/// Accessors for request bodies that report a JSON:API error pointing at the culprit.
pub(crate) mod body {
    use serde_json::{Map, Value};

    use super::ApiError;

    /// `body.data` as an object of the expected `type`.
    pub fn data<'a>(
        body: Option<&'a Value>,
        kind: &str,
    ) -> Result<&'a Map<String, Value>, ApiError> {
        let data = body
            .and_then(|b| b.get("data"))
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::invalid_pointer("/data", "\"data\" is a required object."))?;
        match data.get("type").and_then(Value::as_str) {
            Some(t) if t == kind => Ok(data),
            _ => Err(ApiError::invalid_pointer(
                "/data/type",
                format!("\"type\" must be \"{kind}\"."),
            )),
        }
    }

    /// An object member (absent is `Ok(None)`, null too when `nullable`).
    pub fn object<'a>(
        parent: &'a Map<String, Value>,
        key: &str,
        pointer: &str,
    ) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        match parent.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(o)) => Ok(Some(o)),
            Some(_) => Err(ApiError::invalid_pointer(
                &format!("{pointer}/{key}"),
                format!("\"{key}\" must be an object."),
            )),
        }
    }

    /// A required object member.
    pub fn required_object<'a>(
        parent: &'a Map<String, Value>,
        key: &str,
        pointer: &str,
    ) -> Result<&'a Map<String, Value>, ApiError> {
        object(parent, key, pointer)?.ok_or_else(|| {
            ApiError::invalid_pointer(
                &format!("{pointer}/{key}"),
                format!("\"{key}\" is a required object."),
            )
        })
    }

    /// A string-or-null member: `Ok(None)` when absent, `Ok(Some(None))` for explicit null.
    pub fn nullable_str(
        parent: &Map<String, Value>,
        key: &str,
        pointer: &str,
    ) -> Result<Option<Option<String>>, ApiError> {
        match parent.get(key) {
            None => Ok(None),
            Some(Value::Null) => Ok(Some(None)),
            Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
            Some(_) => Err(ApiError::invalid_pointer(
                &format!("{pointer}/{key}"),
                format!("\"{key}\" must be a string or null."),
            )),
        }
    }

    /// A non-null string member, if present.
    pub fn opt_str(
        parent: &Map<String, Value>,
        key: &str,
        pointer: &str,
    ) -> Result<Option<String>, ApiError> {
        Ok(nullable_str(parent, key, pointer)?.flatten())
    }
}

/// Route the request to its handler.
pub(crate) fn dispatch(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    match ctx.op.id {
        "create_profile" => profiles::create(ctx, acct),
        "get_profile" => profiles::get(ctx, acct),
        "update_profile" => profiles::update(ctx, acct),
        "get_profiles" => profiles::list(ctx, acct),
        "bulk_subscribe_profiles" => subscriptions::bulk_subscribe(ctx, acct),
        "create_event" => events::create(ctx, acct),
        "get_event" => events::get(ctx, acct),
        "get_events" => events::list(ctx, acct),
        "get_lists" => lists::list(ctx, acct),
        "create_list" => lists::create(ctx, acct),
        "get_list" => lists::get(ctx, acct),
        "get_profiles_for_list" => lists::members(ctx, acct),
        "get_flows" => catalog::flows(ctx, acct),
        "get_flow" => catalog::flow(ctx, acct),
        "get_campaigns" => catalog::campaigns(ctx, acct),
        "get_metrics" => metrics::list(ctx, acct),
        other => Err(ApiError::not_found(format!(
            "Operation {other} is not emulated."
        ))),
    }
}

/// `200` with a document.
pub(crate) fn ok(status: u16, doc: Value) -> Result<Reply, ApiError> {
    Ok(Reply {
        status,
        body: Some(doc),
    })
}
