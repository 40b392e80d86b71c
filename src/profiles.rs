//! Profiles: `POST /api/profiles`, `GET /api/profiles/{id}`, `PATCH /api/profiles/{id}`,
//! `GET /api/profiles`, and the profile records shared with list membership pages.

use serde_json::{Map, Value, json};

use crate::http::{self, Request, Verb};
use crate::jsonapi::{self, Resource};
use klaviyo_spec::PageSize;

use crate::{
    CreateProfileArgs, Error, GetProfileArgs, ListProfilesArgs, Location, Profile, ProfilePage,
    UpdateProfileArgs, args, paging,
};

/// Map a profile resource (ProfileResponseObjectResource, or ListMemberResponseObjectResource
/// which adds `joined_group_at`) onto the WIT record.
pub fn to_profile(r: Resource) -> Profile {
    let location = r.object("location").map(|l| Location {
        address1: l.text("address1"),
        address2: l.text("address2"),
        city: l.text("city"),
        country: l.text("country"),
        region: l.text("region"),
        zip: l.text("zip"),
        timezone: l.text("timezone"),
        ip: l.text("ip"),
        // The spec types coordinates as `oneOf: [string, number]`; keep numbers.
        latitude: l.number("latitude"),
        longitude: l.number("longitude"),
    });
    Profile {
        email: r.text("email"),
        phone_number: r.text("phone_number"),
        external_id: r.text("external_id"),
        first_name: r.text("first_name"),
        last_name: r.text("last_name"),
        organization: r.text("organization"),
        locale: r.text("locale"),
        title: r.text("title"),
        image: r.text("image"),
        location,
        properties: r.object_text("properties"),
        created: r.text("created"),
        updated: r.text("updated"),
        last_event_date: r.text("last_event_date"),
        joined_group_at: r.text("joined_group_at"),
        id: r.id,
    }
}

/// `limit` profiles from a collection endpoint (`base` without page parameters) whose
/// `page[size]` range is `page`.
pub fn page(
    base: Request,
    page: PageSize,
    limit: Option<u32>,
    cursor: Option<String>,
) -> Result<ProfilePage, Error> {
    let limit = args::limit(limit, page)?;
    let (items, next_cursor) = paging::collect(&base, limit, page.max, cursor)?;
    let items = items.into_iter().map(to_profile).collect();
    Ok(ProfilePage { items, next_cursor })
}

/// `create-profile`.
pub fn create(a: CreateProfileArgs) -> Result<Profile, Error> {
    let mut attributes = Map::new();
    if let Some(e) = &a.email {
        attributes.insert("email".into(), args::email("email", e)?.into());
    }
    if let Some(p) = &a.phone_number {
        attributes.insert(
            "phone_number".into(),
            args::phone("phone_number", p)?.into(),
        );
    }
    if let Some(x) = args::optional("external_id", a.external_id.as_deref())? {
        attributes.insert("external_id".into(), x.into());
    }
    // Klaviyo creates a profile only with an identifier: email, phone_number or external_id
    // (a 400 otherwise); say so before sending.
    if attributes.is_empty() {
        return Err(args::invalid(
            "email",
            "create_profile needs at least one identifier: email, phone_number or external_id",
        ));
    }
    if let Some(n) = &a.first_name {
        attributes.insert("first_name".into(), n.clone().into());
    }
    if let Some(n) = &a.last_name {
        attributes.insert("last_name".into(), n.clone().into());
    }
    if a.properties.is_some() {
        let props = args::properties("properties", a.properties.as_deref())?;
        attributes.insert("properties".into(), Value::Object(props));
    }
    // ProfileCreateQuery: data.type and data.attributes are required.
    let body = json!({"data": {"type": "profile", "attributes": attributes}});
    let reply = http::send(&Request::with_body(
        Verb::Post,
        "/api/profiles".into(),
        body,
    ))?;
    Ok(to_profile(jsonapi::one(reply)?))
}

/// `get-profile`.
pub fn get(a: GetProfileArgs) -> Result<Profile, Error> {
    let id = args::id("profile_id", &a.profile_id)?;
    let reply = http::send(&Request::get(format!(
        "/api/profiles/{}",
        http::encode(&id)
    )))?;
    Ok(to_profile(jsonapi::one(reply)?))
}

/// `update-profile`.
pub fn update(a: UpdateProfileArgs) -> Result<Profile, Error> {
    let id = args::id("profile_id", &a.profile_id)?;
    let mut attributes = Map::new();
    if let Some(e) = &a.email {
        attributes.insert("email".into(), args::email("email", e)?.into());
    }
    if let Some(p) = &a.phone_number {
        attributes.insert(
            "phone_number".into(),
            args::phone("phone_number", p)?.into(),
        );
    }
    if let Some(n) = &a.first_name {
        attributes.insert("first_name".into(), n.clone().into());
    }
    if let Some(n) = &a.last_name {
        attributes.insert("last_name".into(), n.clone().into());
    }
    if a.properties.is_some() {
        let props = args::properties("properties", a.properties.as_deref())?;
        attributes.insert("properties".into(), Value::Object(props));
    }
    if attributes.is_empty() {
        return Err(args::invalid(
            "profile_id",
            "nothing to change for profile_id: give at least one of email, phone_number, first_name, last_name, properties",
        ));
    }
    // ProfilePartialUpdateQuery: data.type, data.id (equal to the path id) and data.attributes
    // are all required; attributes left out are not changed.
    let body = json!({"data": {"type": "profile", "id": id, "attributes": attributes}});
    let path = format!("/api/profiles/{}", http::encode(&id));
    Ok(to_profile(jsonapi::one(http::send(&Request::with_body(
        Verb::Patch,
        path,
        body,
    ))?)?))
}

/// `list-profiles`.
pub fn list(a: ListProfilesArgs) -> Result<ProfilePage, Error> {
    page(
        Request::get("/api/profiles".into()),
        klaviyo_spec::PROFILES_PAGE,
        a.limit,
        a.page_cursor,
    )
}
