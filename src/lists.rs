//! Lists: `GET /api/lists`, `POST /api/lists`, `GET /api/lists/{id}` and
//! `GET /api/lists/{id}/profiles`.

use serde_json::json;

use crate::http::{self, Request, Verb};
use crate::jsonapi::{self, Resource};
use crate::{
    CreateListArgs, Error, GetListArgs, ListListProfilesArgs, ListListsArgs, MailingList,
    MailingListPage, ProfilePage, args, paging, profiles,
};

fn to_list(r: Resource) -> MailingList {
    MailingList {
        name: r.text("name"),
        created: r.text("created"),
        updated: r.text("updated"),
        opt_in_process: r.text("opt_in_process"),
        // Present only when asked for with `additional-fields[list]=profile_count`.
        profile_count: r
            .integer("profile_count")
            .and_then(|n| u32::try_from(n).ok()),
        id: r.id,
    }
}

/// `list-lists`: pages of at most 10 (get_lists `page[size]` maximum), followed to `limit`.
pub fn list(a: ListListsArgs) -> Result<MailingListPage, Error> {
    let page = klaviyo_spec::LISTS_PAGE;
    let limit = args::limit(a.limit, page)?;
    let base = Request::get("/api/lists".into());
    let (items, next_cursor) = paging::collect(&base, limit, page.max, a.page_cursor)?;
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

/// `get-list`, with the member count: `profile_count` is an additional field of get_list,
/// returned only when requested with `additional-fields[list]=profile_count`.
pub fn get(a: GetListArgs) -> Result<MailingList, Error> {
    let id = args::id("list_id", &a.list_id)?;
    let req = Request::get(format!("/api/lists/{}", http::encode(&id)))
        .param("additional-fields[list]", "profile_count");
    Ok(to_list(jsonapi::one(http::send(&req)?)?))
}

/// `list-list-profiles`.
pub fn profiles(a: ListListProfilesArgs) -> Result<ProfilePage, Error> {
    let id = args::id("list_id", &a.list_id)?;
    profiles::page(
        Request::get(format!("/api/lists/{}/profiles", http::encode(&id))),
        klaviyo_spec::LIST_PROFILES_PAGE,
        a.limit,
        a.page_cursor,
    )
}
