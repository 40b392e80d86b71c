//! Lists: `GET /api/lists`, `POST /api/lists`, `GET /api/lists/{id}` and
//! `GET /api/lists/{id}/profiles`.

use serde_json::json;

use crate::http::{self, Request, Verb};
use crate::jsonapi::{self, Resource};
use crate::{
    CreateListArgs, Error, GetListArgs, ListListProfilesArgs, ListListsArgs, MailingList,
    MailingListPage, ProfilePage, args, profiles,
};

fn to_list(r: Resource) -> MailingList {
    MailingList {
        name: r.text("name"),
        created: r.text("created"),
        updated: r.text("updated"),
        opt_in_process: r.text("opt_in_process"),
        id: r.id,
    }
}

/// `list-lists`.
pub fn list(a: ListListsArgs) -> Result<MailingListPage, Error> {
    let size = args::limit(a.limit, klaviyo_spec::LISTS_PAGE)?;
    let req = Request::get("/api/lists".into())
        .param("page[size]", size.to_string())
        .param_opt("page[cursor]", args::cursor(a.page_cursor)?);
    let (items, next_cursor) = jsonapi::page(http::send(&req)?)?;
    let items = items.into_iter().map(to_list).collect();
    Ok(MailingListPage { items, next_cursor })
}

/// `create-list`.
pub fn create(a: CreateListArgs) -> Result<MailingList, Error> {
    let name = args::required("name", &a.name)?;
    let body = json!({"data": {"type": "list", "attributes": {"name": name}}});
    Ok(to_list(jsonapi::one(http::send(&Request::with_body(
        Verb::Post,
        "/api/lists".into(),
        body,
    ))?)?))
}

/// `get-list`.
pub fn get(a: GetListArgs) -> Result<MailingList, Error> {
    let id = args::id("list_id", &a.list_id)?;
    Ok(to_list(jsonapi::one(http::send(&Request::get(format!(
        "/api/lists/{}",
        http::encode(&id)
    )))?)?))
}

/// `list-list-profiles`.
pub fn profiles(a: ListListProfilesArgs) -> Result<ProfilePage, Error> {
    let id = args::id("list_id", &a.list_id)?;
    let size = args::limit(a.limit, klaviyo_spec::LIST_PROFILES_PAGE)?;
    profiles::page(
        Request::get(format!("/api/lists/{}/profiles", http::encode(&id)))
            .param("page[size]", size.to_string())
            .param_opt("page[cursor]", args::cursor(a.page_cursor)?),
    )
}
