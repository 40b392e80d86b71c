//! create_profile, get_profile, update_profile, get_profiles.

use serde_json::{Map, Value, json};

use super::{Ctx, Reply, body, ok};
use crate::errors::ApiError;
use crate::render::{self, PROFILE_RELS, PROFILE_RELS_CONV, linkage};
use crate::state::{Account, LOCATION_KEYS, Profile, STRING_ATTRS};

/// A plausible email: `local@domain.tld`, no whitespace.
fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !s.chars().any(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

/// E.164: `+` then 7 to 15 digits, no leading zero (spec: "phone number in E.164 format").
pub(super) fn valid_phone(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// Reject malformed identifiers the way Klaviyo does (400 `invalid` on the attribute).
pub(super) fn check_identifiers(p: &Profile, pointer: &str) -> Result<(), ApiError> {
    if let Some(email) = p.get("email").filter(|e| !valid_email(e)) {
        return Err(ApiError::invalid_pointer(
            &format!("{pointer}/email"),
            format!("Invalid email address: {email}"),
        ));
    }
    if p.get("phone_number").is_some_and(|ph| !valid_phone(ph)) {
        return Err(ApiError::invalid_pointer(
            &format!("{pointer}/phone_number"),
            "Invalid phone number format (Example of a valid format: +12345678901)",
        ));
    }
    Ok(())
}

/// Apply profile `attributes`: given strings are set and explicit nulls clear (notes §2
/// update_profile); `location` and `properties` merge key by key, null clears the whole object.
pub(super) fn apply_attributes(
    p: &mut Profile,
    attrs: &Map<String, Value>,
    pointer: &str,
) -> Result<(), ApiError> {
    for key in STRING_ATTRS {
        if let Some(value) = body::nullable_str(attrs, key, pointer)? {
            p.set(key, value);
        }
    }
    match attrs.get("location") {
        None => {}
        Some(Value::Null) => p.location.clear(),
        Some(Value::Object(loc)) => {
            for key in LOCATION_KEYS {
                match loc.get(key) {
                    None => {}
                    Some(Value::Null) => {
                        p.location.remove(key);
                    }
                    Some(v @ (Value::String(_) | Value::Number(_))) => {
                        p.location.insert(key.to_string(), v.clone());
                    }
                    Some(_) => {
                        return Err(ApiError::invalid_pointer(
                            &format!("{pointer}/location/{key}"),
                            format!("\"{key}\" must be a string or null."),
                        ));
                    }
                }
            }
        }
        Some(_) => {
            return Err(ApiError::invalid_pointer(
                &format!("{pointer}/location"),
                "\"location\" must be an object or null.",
            ));
        }
    }
    match body::object(attrs, "properties", pointer)? {
        Some(props) => {
            for (k, v) in props {
                p.properties.insert(k.clone(), v.clone());
            }
        }
        None if attrs.get("properties") == Some(&Value::Null) => p.properties.clear(),
        None => {}
    }
    Ok(())
}

/// `meta.patch_properties` of update_profile: `append`, `unappend` and `unset`.
fn patch_properties(p: &mut Profile, meta: &Map<String, Value>) -> Result<(), ApiError> {
    let Some(patch) = body::object(meta, "patch_properties", "/data/meta")? else {
        return Ok(());
    };
    let ptr = "/data/meta/patch_properties";
    if let Some(append) = body::object(patch, "append", ptr)? {
        for (k, v) in append {
            let mut list = match p.properties.remove(k) {
                Some(Value::Array(a)) => a,
                Some(Value::Null) | None => Vec::new(),
                Some(other) => vec![other],
            };
            match v {
                Value::Array(items) => list.extend(items.iter().cloned()),
                other => list.push(other.clone()),
            }
            p.properties.insert(k.clone(), Value::Array(list));
        }
    }
    if let Some(unappend) = body::object(patch, "unappend", ptr)? {
        for (k, v) in unappend {
            if let Some(Value::Array(list)) = p.properties.get_mut(k) {
                let remove: Vec<Value> = match v {
                    Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                };
                list.retain(|x| !remove.contains(x));
            }
        }
    }
    match patch.get("unset") {
        None | Some(Value::Null) => {}
        Some(Value::String(k)) => {
            p.properties.remove(k);
        }
        Some(Value::Array(keys)) => {
            for k in keys.iter().filter_map(Value::as_str) {
                p.properties.remove(k);
            }
        }
        Some(_) => {
            return Err(ApiError::invalid_pointer(
                &format!("{ptr}/unset"),
                "\"unset\" must be a string or a list of strings.",
            ));
        }
    }
    Ok(())
}

fn additional(ctx: &Ctx<'_>) -> Vec<String> {
    ctx.list_param("additional-fields[profile]")
}

/// POST /api/profiles → 201 with the profile; 409 `duplicate_profile` on a taken identifier.
pub(super) fn create(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let data = body::data(ctx.body, "profile")?;
    let attrs = body::required_object(data, "attributes", "/data")?;
    let mut p = Profile::new(ctx.now);
    apply_attributes(&mut p, attrs, "/data/attributes")?;
    if ["email", "phone_number", "external_id"]
        .iter()
        .all(|k| p.get(k).is_none())
    {
        // Notes §4: missing identifiers give 400.
        return Err(ApiError::invalid_pointer(
            "/data/attributes",
            "One of `email`, `phone_number`, or `external_id` is required to create a profile.",
        ));
    }
    check_identifiers(&p, "/data/attributes")?;
    if let Some(existing) = acct.conflicting(&p, None) {
        return Err(ApiError::duplicate_profile(&existing.id));
    }
    let doc = ctx.document(
        render::profile(&p, &ctx.urls, &PROFILE_RELS, &additional(ctx), &[]),
        ctx.links_to("profiles", &p.id),
        vec![],
    );
    acct.profiles.push(p);
    ok(201, doc)
}

/// GET /api/profiles/{id}, with `include=lists` and `additional-fields[profile]`.
pub(super) fn get(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let id = ctx.id();
    let p = acct
        .profile(id)
        .ok_or_else(|| ApiError::not_found(format!("A profile with id {id} does not exist.")))?;
    let mut data_for = Vec::new();
    let mut included = Vec::new();
    for rel in PROFILE_RELS_CONV {
        if !ctx.includes(rel) {
            continue;
        }
        let linkage_list: Vec<Value> = if rel == "lists" {
            acct.lists_of(&p.id)
                .iter()
                .filter_map(|lid| acct.list(lid))
                .map(|l| {
                    included.push(render::list(l, &ctx.urls, false));
                    linkage("list", &l.id)
                })
                .collect()
        } else {
            // The emulator keeps no segments, push tokens or conversations.
            Vec::new()
        };
        data_for.push((rel, Value::Array(linkage_list)));
    }
    let data = render::profile(
        p,
        &ctx.urls,
        &PROFILE_RELS_CONV,
        &additional(ctx),
        &data_for,
    );
    ok(
        200,
        ctx.document(data, ctx.links_to("profiles", id), included),
    )
}

/// PATCH /api/profiles/{id}: merge the given attributes; 409 on a taken identifier.
pub(super) fn update(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let id = ctx.id();
    let Some(current) = acct.profile(id) else {
        return Err(ApiError::not_found(format!(
            "A profile with id {id} does not exist."
        )));
    };
    let data = body::data(ctx.body, "profile")?;
    match data.get("id").and_then(Value::as_str) {
        Some(body_id) if body_id == id => {}
        Some(_) => {
            return Err(ApiError::invalid_pointer(
                "/data/id",
                "The id in the request body does not match the id in the URL.",
            ));
        }
        None => return Err(ApiError::invalid_pointer("/data/id", "\"id\" is required.")),
    }
    let attrs = body::required_object(data, "attributes", "/data")?;
    let mut next = current.clone();
    apply_attributes(&mut next, attrs, "/data/attributes")?;
    if let Some(meta) = body::object(data, "meta", "/data")? {
        patch_properties(&mut next, meta)?;
    }
    check_identifiers(&next, "/data/attributes")?;
    if let Some(existing) = acct.conflicting(&next, Some(id)) {
        return Err(ApiError::duplicate_profile(&existing.id));
    }
    next.updated = ctx.now;
    let doc = ctx.document(
        render::profile(&next, &ctx.urls, &PROFILE_RELS, &additional(ctx), &[]),
        ctx.links_to("profiles", id),
        vec![],
    );
    if let Some(slot) = acct.profile_mut(id) {
        *slot = next;
    }
    ok(200, doc)
}

/// GET /api/profiles: filter, sort, paginate (default 20, 1–100).
pub(super) fn list(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let (page, links) = ctx.select(&acct.profiles, Profile::field)?;
    let extra = additional(ctx);
    let data_for: Vec<(&str, Value)> = ["push-tokens", "conversations"]
        .into_iter()
        .filter(|r| ctx.includes(r))
        .map(|r| (r, json!([])))
        .collect();
    let data: Vec<Value> = page
        .iter()
        .map(|p| render::profile(p, &ctx.urls, &PROFILE_RELS_CONV, &extra, &data_for))
        .collect();
    ok(200, ctx.document(Value::Array(data), links, vec![]))
}
