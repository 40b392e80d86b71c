//! The seeded, read-only resources: get_flows, get_flow, get_campaigns.

use serde_json::{Value, json};

use super::{Ctx, Reply, ok};
use crate::errors::ApiError;
use crate::filter::{self, Literal};
use crate::render;
use crate::state::{Account, Seeded};

/// Relationship data for `include`d relationships: the seed has no tags, actions or messages.
fn empty_includes(mut resource: Value, ctx: &Ctx<'_>, rels: &[&str]) -> Value {
    for rel in rels {
        if ctx.includes(rel) {
            resource["relationships"][*rel]["data"] = json!([]);
        }
    }
    resource
}

/// GET /api/flows: filter, sort, paginate (default 50, 1–50).
pub(super) fn flows(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let (page, links) = ctx.select(&acct.flows, Seeded::field)?;
    let data = page
        .iter()
        .map(|f| {
            empty_includes(
                render::flow(f, &ctx.urls, false),
                ctx,
                &["flow-actions", "tags"],
            )
        })
        .collect();
    ok(200, ctx.document(Value::Array(data), links, vec![]))
}

/// GET /api/flows/{id}; `additional-fields[flow]=definition` adds a (null) definition.
pub(super) fn flow(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let id = ctx.id();
    let f = acct
        .flows
        .iter()
        .find(|f| f.id == id)
        .ok_or_else(|| ApiError::not_found(format!("A flow with id {id} does not exist.")))?;
    let definition = ctx
        .list_param("additional-fields[flow]")
        .iter()
        .any(|x| x == "definition");
    let data = empty_includes(
        render::flow(f, &ctx.urls, definition),
        ctx,
        &["flow-actions", "tags"],
    );
    ok(200, ctx.document(data, ctx.links_to("flows", id), vec![]))
}

/// GET /api/campaigns: a `messages.channel` filter is required (notes §2, §6.4).
pub(super) fn campaigns(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let missing = || {
        ApiError::invalid_param(
            "filter",
            "A channel filter is required, e.g. equals(messages.channel,'email'); \
             the channel is one of 'email', 'sms' or 'mobile_push'.",
        )
    };
    let expr = ctx.filter()?.ok_or_else(missing)?;
    match filter::find_equals(&expr, "messages.channel") {
        Some(Literal::Str(_)) => {}
        _ => return Err(missing()),
    }
    let (page, links) = ctx.select(&acct.campaigns, Seeded::field)?;
    let data = page
        .iter()
        .map(|c| {
            empty_includes(
                render::campaign(c, &ctx.urls),
                ctx,
                &["campaign-messages", "tags"],
            )
        })
        .collect();
    ok(200, ctx.document(Value::Array(data), links, vec![]))
}
