//! get_metrics: the account's metrics (Klaviyo's own, and those create_event made), filtered
//! on `integration.name` / `integration.category`, in pages of 200 (the spec has no
//! `page[size]` for this endpoint).

use serde_json::{Value, json};

use super::{Ctx, Reply, ok};
use crate::errors::ApiError;
use crate::render;
use crate::state::{Account, Metric};

/// GET /api/metrics; `include=flow-triggers` gives empty linkage (the seed's flows trigger on
/// no metric).
pub(super) fn list(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let (page, links) = ctx.select(&acct.metrics, Metric::field)?;
    let data = page
        .iter()
        .map(|m| {
            let mut resource = render::metric(m, &ctx.urls);
            if ctx.includes("flow-triggers") {
                resource["relationships"]["flow-triggers"]["data"] = json!([]);
            }
            resource
        })
        .collect();
    ok(200, ctx.document(Value::Array(data), links, vec![]))
}
