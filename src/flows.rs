//! Flows: `GET /api/flows` and `GET /api/flows/{id}`.

use crate::http::{self, Request};
use crate::jsonapi::{self, Resource};
use crate::{Error, Flow, FlowPage, GetFlowArgs, ListFlowsArgs, args};

fn to_flow(r: Resource) -> Flow {
    Flow {
        name: r.text("name"),
        status: r.text("status"),
        archived: r.flag("archived"),
        trigger_type: r.text("trigger_type"),
        created: r.text("created"),
        updated: r.text("updated"),
        id: r.id,
    }
}

/// `list-flows`.
pub fn list(a: ListFlowsArgs) -> Result<FlowPage, Error> {
    let size = args::limit(a.limit, klaviyo_spec::FLOWS_PAGE)?;
    let req = Request::get("/api/flows".into())
        .param("page[size]", size.to_string())
        .param_opt("page[cursor]", args::cursor(a.page_cursor)?);
    let (items, next_cursor) = jsonapi::page(http::send(&req)?)?;
    let items = items.into_iter().map(to_flow).collect();
    Ok(FlowPage { items, next_cursor })
}

/// `get-flow`.
pub fn get(a: GetFlowArgs) -> Result<Flow, Error> {
    let id = args::id("flow_id", &a.flow_id)?;
    Ok(to_flow(jsonapi::one(http::send(&Request::get(format!(
        "/api/flows/{}",
        http::encode(&id)
    )))?)?))
}
