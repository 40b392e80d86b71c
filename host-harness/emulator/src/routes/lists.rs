//! get_lists, create_list, get_list, get_profiles_for_list.

use serde_json::Value;

use super::{Ctx, Reply, body, ok};
use crate::errors::ApiError;
use crate::filter::FieldVal;
use crate::ids;
use crate::render;
use crate::state::{Account, List, Profile};

/// GET /api/lists: filter, sort, paginate (default 10, 1–10).
pub(super) fn list(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let (page, links) = ctx.select(&acct.lists, List::field)?;
    let data = page
        .iter()
        .map(|l| render::list(l, &ctx.urls, false))
        .collect();
    ok(200, ctx.document(Value::Array(data), links, vec![]))
}

/// POST /api/lists → 201. `name` is required; `opt_in_process` defaults to single opt-in.
pub(super) fn create(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let data = body::data(ctx.body, "list")?;
    let attrs = body::required_object(data, "attributes", "/data")?;
    let name = body::opt_str(attrs, "name", "/data/attributes")?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            ApiError::invalid_pointer("/data/attributes/name", "A list name is required.")
        })?;
    let opt_in = body::opt_str(attrs, "opt_in_process", "/data/attributes")?
        .unwrap_or_else(|| "single_opt_in".into());
    if opt_in != "single_opt_in" && opt_in != "double_opt_in" {
        return Err(ApiError::invalid_pointer(
            "/data/attributes/opt_in_process",
            "\"opt_in_process\" must be \"single_opt_in\" or \"double_opt_in\".",
        ));
    }
    let id = Account::fresh_id(|id| acct.list(id).is_some(), || ids::short_id(6));
    let l = List {
        id,
        name,
        opt_in_process: opt_in,
        created: ctx.now,
        updated: ctx.now,
        members: Vec::new(),
    };
    let doc = ctx.document(
        render::list(&l, &ctx.urls, false),
        ctx.links_to("lists", &l.id),
        vec![],
    );
    acct.lists.push(l);
    ok(201, doc)
}

fn find<'a>(acct: &'a Account, id: &str) -> Result<&'a List, ApiError> {
    acct.list(id)
        .ok_or_else(|| ApiError::not_found(format!("A list with id {id} does not exist.")))
}

/// GET /api/lists/{id}, with `additional-fields[list]=profile_count`.
pub(super) fn get(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let l = find(acct, ctx.id())?;
    let count = ctx
        .list_param("additional-fields[list]")
        .iter()
        .any(|f| f == "profile_count");
    let data = render::list(l, &ctx.urls, count);
    ok(
        200,
        ctx.document(data, ctx.links_to("lists", &l.id), vec![]),
    )
}

/// GET /api/lists/{id}/profiles: members with `joined_group_at` (default 20, 1–100).
pub(super) fn members(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let l = find(acct, ctx.id())?;
    let members: Vec<(&Profile, i64)> = l
        .members
        .iter()
        .filter_map(|(pid, joined)| acct.profile(pid).map(|p| (p, *joined)))
        .collect();
    let field = |m: &(&Profile, i64), name: &str| match name {
        "joined_group_at" => FieldVal::Time(m.1),
        other => m.0.field(other),
    };
    let (page, links) = ctx.select(&members, field)?;
    let extra = ctx.list_param("additional-fields[profile]");
    let data = page
        .iter()
        .map(|(p, joined)| render::list_member(p, *joined, &ctx.urls, &extra))
        .collect();
    ok(200, ctx.document(Value::Array(data), links, vec![]))
}
