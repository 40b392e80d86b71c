//! Flows: `GET /api/flows` and `GET /api/flows/{id}`.

use crate::http::{self, Request};
use crate::jsonapi::{self, Resource};
use crate::{Error, Flow, FlowPage, GetFlowArgs, ListFlowsArgs, args, paging};

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

/// `list-flows`: pages of at most 50 (get_flows `page[size]` maximum), followed to `limit`.
pub fn list(a: ListFlowsArgs) -> Result<FlowPage, Error> {
    let page = klaviyo_spec::FLOWS_PAGE;
    let limit = args::limit(a.limit, page)?;
    let base = Request::get("/api/flows".into());
    let (items, next_cursor) = paging::collect(&base, limit, page.max, a.page_cursor)?;
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
