//! Events: `POST /api/events`, `GET /api/events/{id}` and `GET /api/events`.

use serde_json::json;

use crate::http::{self, Request, Verb};
use crate::jsonapi::{self, Resource};
use crate::{
    CreateEventArgs, Error, Event, EventAccepted, EventPage, GetEventArgs, ListEventsArgs, args,
    paging,
};

/// Ask for the event's metric in `included` (get_event and get_events allow
/// `include=metric`), with only the `name` attribute (`fields[metric]`): the metric name is
/// what callers know an event by.
fn with_metric(req: Request) -> Request {
    req.param("include", "metric")
        .param("fields[metric]", "name")
}

fn to_event(r: Resource) -> Event {
    // Create sends `value`; reads return it as `event_properties.$value`.
    let properties = r.object_text("event_properties");
    let value = r
        .deferred("event_properties")
        .and_then(|p| p.object()?.number("$value"));
    Event {
        metric_name: r.related_text("metric", "name"),
        metric_id: r.related_id("metric"),
        profile_id: r.related_id("profile"),
        datetime: r.text("datetime"),
        timestamp: r.integer("timestamp"),
        uuid: r.text("uuid"),
        properties,
        value,
        id: r.id,
    }
}

/// `create-event`.
pub fn create(a: CreateEventArgs) -> Result<EventAccepted, Error> {
    let profile_id = args::id("profile_id", &a.profile_id)?;
    let event_name = args::required("event_name", &a.event_name)?;
    // The spec: the metric name must be under 128 characters.
    if event_name.chars().count() > 127 {
        return Err(args::invalid(
            "event_name",
            "event_name must be at most 127 characters",
        ));
    }
    // `properties` is required by the spec even when empty.
    let properties = args::properties("properties", a.properties.as_deref())?;
    let mut attributes = json!({
        "properties": properties,
        "metric": {"data": {"type": "metric", "attributes": {"name": event_name}}},
        // profile.data needs `type` and `attributes` even when `id` identifies the profile.
        "profile": {"data": {"type": "profile", "id": profile_id, "attributes": {}}},
    });
    if let Some(v) = a.value {
        if !v.is_finite() {
            return Err(args::invalid("value", "value must be a finite number"));
        }
        attributes["value"] = json!(v);
    }
    if let Some(t) = &a.time {
        let (text, unix) = args::datetime("time", t)?;
        // The spec: after 1990 and at most one year in the future.
        if unix < 631_152_000 || unix > args::now_unix() + 366 * 86_400 {
            return Err(args::invalid(
                "time",
                "time must be after 1990-01-01 and at most one year ahead",
            ));
        }
        attributes["time"] = json!(text);
    }
    let body = json!({"data": {"type": "event", "attributes": attributes}});
    http::send(&Request::with_body(Verb::Post, "/api/events".into(), body))?;
    Ok(EventAccepted {
        accepted: true,
        profile_id,
        event_name,
    })
}

/// `get-event`.
pub fn get(a: GetEventArgs) -> Result<Event, Error> {
    let id = args::id("event_id", &a.event_id)?;
    let req = with_metric(Request::get(format!("/api/events/{}", http::encode(&id))));
    Ok(to_event(jsonapi::one(http::send(&req)?)?))
}

/// `list-events`: get_events pages hold up to 1000, so `limit` (at most 1000) is one page.
pub fn list(a: ListEventsArgs) -> Result<EventPage, Error> {
    let page = klaviyo_spec::EVENTS_PAGE;
    let limit = args::limit(a.limit, page)?;
    let filter = args::optional("filter", a.filter.as_deref())?;
    if let Some(f) = &filter {
        check_filter_shape(f)?;
    }
    let base = with_metric(Request::get("/api/events".into())).param_opt("filter", filter);
    let (items, next_cursor) = paging::collect(&base, limit, page.max, a.page_cursor)?;
    let items = items.into_iter().map(to_event).collect();
    Ok(EventPage { items, next_cursor })
}

/// Catch the filter mistakes that are certain before asking Klaviyo: unbalanced parentheses or
/// quotes. What fields and operators are allowed is Klaviyo's to say (its 400 names them).
fn check_filter_shape(filter: &str) -> Result<(), Error> {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    for c in filter.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(') => depth += 1,
            (None, ')') => {
                depth -= 1;
                if depth < 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    if quote.is_some() || depth != 0 || !filter.contains('(') {
        return Err(args::invalid(
            "filter",
            "filter must be an expression like equals(metric_id,\"ABC\") or and(...), with balanced parentheses and quotes",
        ));
    }
    Ok(())
}
