//! create_event, get_event, get_events.

use serde_json::{Map, Value, json};

use super::profiles::{apply_attributes, check_identifiers};
use super::{Ctx, Reply, body, ok};
use crate::errors::ApiError;
use crate::render;
use crate::state::{Account, Event, Integration, Metric, Profile};
use crate::{ids, time};

/// 1990-01-01T00:00:00Z: event times must be after it (notes §2 create_event).
const EARLIEST: i64 = 631_152_000;
/// Event times may be at most one year in the future.
const MAX_AHEAD: i64 = 366 * 86_400;

/// Identifier keys of `EventProfileCreateQueryResourceObject.attributes`.
const IDENTIFIERS: [&str; 4] = ["email", "phone_number", "external_id", "anonymous_id"];

/// Find the event's profile by `id` (404 if unknown) or by its identifiers; create it
/// when no identifier matches. Non-identifying attributes update the profile.
fn resolve_profile(
    ctx: &Ctx<'_>,
    acct: &mut Account,
    attrs: &Map<String, Value>,
) -> Result<String, ApiError> {
    let profile = body::required_object(attrs, "profile", "/data/attributes")?;
    let ptr = "/data/attributes/profile/data";
    let data = body::required_object(profile, "data", "/data/attributes/profile")?;
    if data.get("type").and_then(Value::as_str) != Some("profile") {
        return Err(ApiError::invalid_pointer(
            &format!("{ptr}/type"),
            "\"type\" must be \"profile\".",
        ));
    }
    let empty = Map::new();
    let pattrs = body::object(data, "attributes", ptr)?.unwrap_or(&empty);
    let aptr = format!("{ptr}/attributes");
    let id = body::opt_str(data, "id", ptr)?;
    let mut wanted = Profile::new(ctx.now);
    apply_attributes(&mut wanted, pattrs, &aptr)?;
    wanted.anonymous_id = body::opt_str(pattrs, "anonymous_id", &aptr)?;
    check_identifiers(&wanted, &aptr)?;
    let found = match &id {
        Some(id) => Some(acct.profile(id).map(|p| p.id.clone()).ok_or_else(|| {
            ApiError::not_found(format!("A profile with id {id} does not exist."))
        })?),
        None => wanted
            .get("email")
            .and_then(|e| acct.by_email(e))
            .or_else(|| {
                ["phone_number", "external_id"]
                    .iter()
                    .find_map(|k| wanted.get(k).and_then(|v| acct.by_attr(k, v)))
            })
            .or_else(|| {
                let anon = wanted.anonymous_id.as_deref()?;
                acct.profiles
                    .iter()
                    .find(|p| p.anonymous_id.as_deref() == Some(anon))
            })
            .map(|p| p.id.clone()),
    };
    match found {
        Some(pid) => {
            let rest: Map<String, Value> = pattrs
                .iter()
                .filter(|(k, _)| !IDENTIFIERS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if let Some(p) = acct.profile_mut(&pid)
                && !rest.is_empty()
            {
                apply_attributes(p, &rest, &aptr)?;
                p.updated = ctx.now;
            }
            Ok(pid)
        }
        None => {
            if IDENTIFIERS.iter().all(|k| match *k {
                "anonymous_id" => wanted.anonymous_id.is_none(),
                k => wanted.get(k).is_none(),
            }) {
                return Err(ApiError::invalid_pointer(
                    &aptr,
                    "One of `id`, `email`, `phone_number`, `external_id` or `anonymous_id` is required.",
                ));
            }
            let pid = wanted.id.clone();
            acct.profiles.push(wanted);
            Ok(pid)
        }
    }
}

/// The metric's `name` (required, under 128 characters) and optional `service`.
fn metric_name(attrs: &Map<String, Value>) -> Result<(String, Option<String>), ApiError> {
    let metric = body::required_object(attrs, "metric", "/data/attributes")?;
    let data = body::required_object(metric, "data", "/data/attributes/metric")?;
    let ptr = "/data/attributes/metric/data";
    let mattrs = body::required_object(data, "attributes", ptr)?;
    let aptr = format!("{ptr}/attributes");
    let name = body::opt_str(mattrs, "name", &aptr)?
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| {
            ApiError::invalid_pointer(&format!("{aptr}/name"), "A metric name is required.")
        })?;
    if name.chars().count() >= 128 {
        return Err(ApiError::invalid_pointer(
            &format!("{aptr}/name"),
            "The metric name must be shorter than 128 characters.",
        ));
    }
    Ok((name, body::opt_str(mattrs, "service", &aptr)?))
}

/// The metric with this name, created on first use.
fn metric_id(ctx: &Ctx<'_>, acct: &mut Account, name: String, service: Option<String>) -> String {
    if let Some(m) = acct.metrics.iter().find(|m| m.name == name) {
        return m.id.clone();
    }
    let id = Account::fresh_id(|id| acct.metric(id).is_some(), || ids::short_id(6));
    acct.metrics.push(Metric {
        id: id.clone(),
        name,
        created: ctx.now,
        updated: ctx.now,
        integration: Integration::api(service),
    });
    id
}

/// POST /api/events → 202, empty body (the event is "accepted for processing").
pub(super) fn create(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let data = body::data(ctx.body, "event")?;
    let attrs = body::required_object(data, "attributes", "/data")?;
    let mut properties = body::required_object(attrs, "properties", "/data/attributes")?.clone();
    let when = match body::opt_str(attrs, "time", "/data/attributes")? {
        None => ctx.now,
        Some(text) => match time::parse_iso(&text) {
            Some(t) if t > EARLIEST && t <= ctx.now + MAX_AHEAD => t,
            Some(_) => {
                return Err(ApiError::invalid_pointer(
                    "/data/attributes/time",
                    "`time` must be after 1990 and at most one year in the future.",
                ));
            }
            None => {
                return Err(ApiError::invalid_pointer(
                    "/data/attributes/time",
                    format!("`time` is not an ISO 8601 datetime: {text}"),
                ));
            }
        },
    };
    match attrs.get("value") {
        None | Some(Value::Null) => {}
        // Read shapes carry the value as `event_properties.$value` (notes §2 ⚠).
        Some(v @ Value::Number(_)) => {
            properties.insert("$value".into(), v.clone());
        }
        Some(_) => {
            return Err(ApiError::invalid_pointer(
                "/data/attributes/value",
                "\"value\" must be a number.",
            ));
        }
    }
    let unique_id = body::opt_str(attrs, "unique_id", "/data/attributes")?;
    // Everything that can fail is checked before a metric or profile is created.
    let (name, service) = metric_name(attrs)?;
    let profile_id = resolve_profile(ctx, acct, attrs)?;
    let metric_id = metric_id(ctx, acct, name, service);
    // `unique_id` deduplicates per profile and metric (notes §2).
    let duplicate = unique_id.as_ref().is_some_and(|u| {
        acct.events.iter().any(|e| {
            e.unique_id.as_ref() == Some(u)
                && e.profile_id == profile_id
                && e.metric_id == metric_id
        })
    });
    if !duplicate {
        let id = Account::fresh_id(
            |id| acct.events.iter().any(|e| e.id == id),
            || ids::short_id(12),
        );
        if let Some(p) = acct.profile_mut(&profile_id) {
            p.last_event_date = Some(p.last_event_date.map_or(when, |t| t.max(when)));
        }
        acct.events.push(Event {
            id,
            uuid: ids::uuid(),
            metric_id,
            profile_id,
            time: when,
            properties,
            unique_id,
        });
    }
    Ok(Reply {
        status: 202,
        body: None,
    })
}

/// `included` resources for `include=metric,profile` (attributions: none are kept).
fn included(ctx: &Ctx<'_>, acct: &Account, events: &[&Event]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut push = |v: Value| {
        if !out
            .iter()
            .any(|o| o["type"] == v["type"] && o["id"] == v["id"])
        {
            out.push(v);
        }
    };
    for e in events {
        if ctx.includes("metric")
            && let Some(m) = acct.metric(&e.metric_id)
        {
            push(render::metric(m, &ctx.urls));
        }
        if ctx.includes("profile")
            && let Some(p) = acct.profile(&e.profile_id)
        {
            push(render::profile(
                p,
                &ctx.urls,
                &render::PROFILE_RELS,
                &[],
                &[],
            ));
        }
    }
    out
}

fn with_attributions(mut resource: Value, ctx: &Ctx<'_>) -> Value {
    if ctx.includes("attributions") {
        resource["relationships"]["attributions"]["data"] = json!([]);
    }
    resource
}

/// GET /api/events/{id}.
pub(super) fn get(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let id = ctx.id();
    let e = acct
        .events
        .iter()
        .find(|e| e.id == id)
        .ok_or_else(|| ApiError::not_found(format!("An event with id {id} does not exist.")))?;
    let data = with_attributions(render::event(e, &ctx.urls), ctx);
    let inc = included(ctx, acct, &[e]);
    ok(200, ctx.document(data, ctx.links_to("events", id), inc))
}

/// GET /api/events: filter, sort (datetime ascending by default), paginate (200, 1–1000).
pub(super) fn list(ctx: &Ctx<'_>, acct: &mut Account) -> Result<Reply, ApiError> {
    let mut events: Vec<&Event> = acct.events.iter().collect();
    events.sort_by_key(|e| e.time);
    let (page, links) = ctx.select(events, Event::field)?;
    let data = page
        .iter()
        .map(|e| with_attributions(render::event(e, &ctx.urls), ctx))
        .collect();
    let inc = included(ctx, acct, &page);
    ok(200, ctx.document(Value::Array(data), links, inc))
}
