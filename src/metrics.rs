//! Metrics: `GET /api/metrics`, the event names of an account (`Placed Order`, ...) with the
//! integration each comes from.

use crate::http::{self, Request};
use crate::jsonapi::{self, Resource};
use crate::{Error, ListMetricsArgs, Metric, MetricPage, args};

fn to_metric(r: Resource) -> Metric {
    // `integration` is a free-form object in MetricResponseObjectResource (nullable);
    // Klaviyo gives it `id`, `name` and `category`.
    let integration = r.object("integration");
    let field = |key: &str| integration.as_ref().and_then(|i| i.text(key));
    Metric {
        name: r.text("name"),
        integration_id: field("id"),
        integration_name: field("name"),
        integration_category: field("category"),
        created: r.text("created"),
        updated: r.text("updated"),
        id: r.id,
    }
}

/// A filter string literal: Klaviyo quotes strings, and a quote inside one cannot be escaped.
fn literal(field: &str, value: Option<&str>) -> Result<Option<String>, Error> {
    match args::optional(field, value)? {
        Some(v) if v.contains(['"', '\'']) => Err(args::invalid(
            field,
            format!("{field} must not contain quotes"),
        )),
        other => Ok(other),
    }
}

/// `list-metrics`. get_metrics has no `page[size]` (Klaviyo returns up to 200 a page), so
/// this returns Klaviyo's page. Its filter allows `equals` on `integration.name` and
/// `integration.category`.
pub fn list(a: ListMetricsArgs) -> Result<MetricPage, Error> {
    let name = literal("integration_name", a.integration_name.as_deref())?;
    let category = literal("integration_category", a.integration_category.as_deref())?;
    let mut terms: Vec<String> = Vec::new();
    if let Some(n) = name {
        terms.push(format!("equals(integration.name,\"{n}\")"));
    }
    if let Some(c) = category {
        terms.push(format!("equals(integration.category,\"{c}\")"));
    }
    let filter = match terms.len() {
        0 => None,
        1 => terms.pop(),
        _ => Some(format!("and({})", terms.join(","))),
    };
    let req = Request::get("/api/metrics".into())
        .param_opt("filter", filter)
        .param_opt("page[cursor]", args::cursor(a.page_cursor)?);
    let (items, next_cursor) = jsonapi::page(http::send(&req)?)?;
    let items = items.into_iter().map(to_metric).collect();
    Ok(MetricPage { items, next_cursor })
}
