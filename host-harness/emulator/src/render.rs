//! JSON:API resource objects shaped as the spec's response schemas: `type`, `id`, every
//! attribute the schema lists (null where unknown), `relationships` with `links` (and `data`
//! for to-one relationships or when included), and `links.self`.

use serde_json::{Map, Value, json};

use super::state::{Consent, Event, LOCATION_KEYS, List, Metric, Profile, STRING_ATTRS, Seeded};
use super::time::format_iso;

/// Builds absolute URLs from the request's `Host` (links are full URLs, notes §3).
#[derive(Clone, Debug)]
pub(crate) struct Urls {
    /// `http://host:port`.
    pub base: String,
}

impl Urls {
    /// `…/api/{collection}/{id}/` (server links carry a trailing slash, notes §1).
    pub fn resource(&self, collection: &str, id: &str) -> String {
        format!("{}/api/{collection}/{id}/", self.base)
    }

    /// A relationship's `links`.
    fn relationship(&self, collection: &str, id: &str, rel: &str) -> Value {
        json!({
            "self": format!("{}/api/{collection}/{id}/relationships/{rel}/", self.base),
            "related": format!("{}/api/{collection}/{id}/{rel}/", self.base),
        })
    }

    /// `relationships` for these names; `data` is added where `data_for` has an entry.
    fn relationships(
        &self,
        collection: &str,
        id: &str,
        names: &[&str],
        data_for: &[(&str, Value)],
    ) -> Value {
        let mut rels = Map::new();
        for name in names {
            let mut rel = Map::new();
            if let Some((_, data)) = data_for.iter().find(|(n, _)| n == name) {
                rel.insert("data".into(), data.clone());
            }
            rel.insert("links".into(), self.relationship(collection, id, name));
            rels.insert((*name).to_string(), Value::Object(rel));
        }
        Value::Object(rels)
    }
}

/// `{type, id}` linkage.
pub(crate) fn linkage(kind: &str, id: &str) -> Value {
    json!({ "type": kind, "id": id })
}

fn opt_time(t: Option<i64>) -> Value {
    t.map_or(Value::Null, |t| json!(format_iso(t)))
}

/// Profile relationships per schema: `ProfileResponseObjectResource` (create, update, event
/// includes) has these three; get_profile(s) add `conversations`.
pub(crate) const PROFILE_RELS: [&str; 3] = ["lists", "segments", "push-tokens"];
/// `ProfileResponsePluralConversationsObjectResource` relationships.
pub(crate) const PROFILE_RELS_CONV: [&str; 4] =
    ["lists", "segments", "push-tokens", "conversations"];

fn email_marketing(c: Option<&Consent>) -> Value {
    match c {
        Some(c) => json!({
            "can_receive_email_marketing": true,
            "consent": "SUBSCRIBED",
            "consent_timestamp": format_iso(c.consented_at),
            "last_updated": format_iso(c.updated),
            "method": "API",
            "method_detail": c.source.clone().unwrap_or_default(),
            "custom_method_detail": c.source,
            "double_optin": false,
            "suppression": [],
            "list_suppressions": [],
        }),
        None => json!({
            "can_receive_email_marketing": false,
            "consent": "NEVER_SUBSCRIBED",
            "consent_timestamp": null,
            "last_updated": null,
            "method": null,
            "method_detail": "",
            "custom_method_detail": null,
            "double_optin": null,
            "suppression": [],
            "list_suppressions": [],
        }),
    }
}

fn sms_marketing(c: Option<&Consent>) -> Value {
    match c {
        Some(c) => json!({
            "can_receive_sms_marketing": true,
            "consent": "SUBSCRIBED",
            "consent_timestamp": format_iso(c.consented_at),
            "method": "API",
            "method_detail": c.source.clone().unwrap_or_default(),
            "last_updated": format_iso(c.updated),
        }),
        None => json!({
            "can_receive_sms_marketing": false,
            "consent": "NEVER_SUBSCRIBED",
            "consent_timestamp": null,
            "method": null,
            "method_detail": "",
            "last_updated": null,
        }),
    }
}

/// The attributes of `ProfileResponseObjectResource` (plus the requested additional fields).
pub(crate) fn profile_attributes(p: &Profile, additional: &[String]) -> Map<String, Value> {
    let mut a = Map::new();
    for k in STRING_ATTRS {
        a.insert(k.into(), p.get(k).map_or(Value::Null, |v| json!(v)));
    }
    a.insert("created".into(), json!(format_iso(p.created)));
    a.insert("updated".into(), json!(format_iso(p.updated)));
    a.insert("last_event_date".into(), opt_time(p.last_event_date));
    let location: Map<String, Value> = LOCATION_KEYS
        .iter()
        .map(|k| {
            (
                k.to_string(),
                p.location.get(*k).cloned().unwrap_or(Value::Null),
            )
        })
        .collect();
    a.insert("location".into(), Value::Object(location));
    a.insert("properties".into(), Value::Object(p.properties.clone()));
    if additional.iter().any(|f| f == "subscriptions") {
        a.insert(
            "subscriptions".into(),
            json!({
                "email": { "marketing": email_marketing(p.email_consent.as_ref()) },
                "sms": { "marketing": sms_marketing(p.sms_consent.as_ref()), "transactional": null },
                "mobile_push": null,
                "whatsapp": null,
            }),
        );
    }
    if additional.iter().any(|f| f == "predictive_analytics") {
        // The emulator has no model; every prediction is unknown.
        a.insert(
            "predictive_analytics".into(),
            json!({
                "historic_clv": null, "predicted_clv": null, "total_clv": null,
                "historic_number_of_orders": null, "predicted_number_of_orders": null,
                "average_days_between_orders": null, "average_order_value": null,
                "churn_probability": null, "expected_date_of_next_order": null,
                "ranked_channel_affinity": null,
            }),
        );
    }
    a
}

/// A profile resource with these relationships; `data_for` gives relationship linkage
/// (e.g. `lists` when `include=lists` was asked for).
pub(crate) fn profile(
    p: &Profile,
    urls: &Urls,
    rels: &[&str],
    additional: &[String],
    data_for: &[(&str, Value)],
) -> Value {
    json!({
        "type": "profile",
        "id": p.id,
        "attributes": profile_attributes(p, additional),
        "relationships": urls.relationships("profiles", &p.id, rels, data_for),
        "links": { "self": urls.resource("profiles", &p.id) },
    })
}

/// A `ListMemberResponseObjectResource`: a profile plus `joined_group_at`.
pub(crate) fn list_member(p: &Profile, joined: i64, urls: &Urls, additional: &[String]) -> Value {
    let mut v = profile(p, urls, &PROFILE_RELS, additional, &[]);
    if let Some(a) = v.get_mut("attributes").and_then(Value::as_object_mut) {
        a.insert("joined_group_at".into(), json!(format_iso(joined)));
    }
    v
}

/// A list resource; `profile_count` when requested with `additional-fields[list]`.
pub(crate) fn list(l: &List, urls: &Urls, profile_count: bool) -> Value {
    let mut attributes = json!({
        "name": l.name,
        "created": format_iso(l.created),
        "updated": format_iso(l.updated),
        "opt_in_process": l.opt_in_process,
    });
    if profile_count {
        attributes["profile_count"] = json!(l.members.len());
    }
    json!({
        "type": "list",
        "id": l.id,
        "attributes": attributes,
        "relationships": urls.relationships("lists", &l.id, &["profiles", "tags", "flow-triggers"], &[]),
        "links": { "self": urls.resource("lists", &l.id) },
    })
}

/// A metric resource (`MetricResponseObjectResource`; its `integration` is a free-form object,
/// given as Klaviyo does: `object`, `id`, `name`, `category`).
pub(crate) fn metric(m: &Metric, urls: &Urls) -> Value {
    json!({
        "type": "metric",
        "id": m.id,
        "attributes": {
            "name": m.name,
            "created": format_iso(m.created),
            "updated": format_iso(m.updated),
            "integration": {
                "object": "integration",
                "id": m.integration.id,
                "name": m.integration.name,
                "category": m.integration.category,
            },
        },
        "relationships": urls.relationships("metrics", &m.id, &["flow-triggers"], &[]),
        "links": { "self": urls.resource("metrics", &m.id) },
    })
}

/// An event resource: profile and metric are to-one relationships with `data`.
pub(crate) fn event(e: &Event, urls: &Urls) -> Value {
    let data = [
        ("profile", linkage("profile", &e.profile_id)),
        ("metric", linkage("metric", &e.metric_id)),
    ];
    json!({
        "type": "event",
        "id": e.id,
        "attributes": {
            "timestamp": e.time,
            "event_properties": e.properties,
            "datetime": format_iso(e.time),
            "uuid": e.uuid,
        },
        "relationships": urls.relationships("events", &e.id, &["profile", "metric", "attributions"], &data),
        "links": { "self": urls.resource("events", &e.id) },
    })
}

/// A flow resource; `definition` (an additional field) is null: the emulator holds no
/// flow definitions.
pub(crate) fn flow(f: &Seeded, urls: &Urls, definition: bool) -> Value {
    let mut attributes = f.attributes.clone();
    if definition {
        attributes.insert("definition".into(), Value::Null);
    }
    json!({
        "type": "flow",
        "id": f.id,
        "attributes": attributes,
        "relationships": urls.relationships("flows", &f.id, &["flow-actions", "tags"], &[]),
        "links": { "self": urls.resource("flows", &f.id) },
    })
}

/// A campaign resource.
pub(crate) fn campaign(c: &Seeded, urls: &Urls) -> Value {
    json!({
        "type": "campaign",
        "id": c.id,
        "attributes": c.attributes,
        "relationships": urls.relationships("campaigns", &c.id, &["campaign-messages", "tags"], &[]),
        "links": { "self": urls.resource("campaigns", &c.id) },
    })
}

/// Sparse fieldsets: keep only the attributes listed in `fields[type]` (dotted names such as
/// `location.city` keep that sub-key of an object attribute).
pub(crate) fn apply_fieldset(resource: &mut Value, fields: &[String]) {
    let Some(attrs) = resource
        .get_mut("attributes")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    let mut kept = Map::new();
    for f in fields {
        let (top, sub) = match f.split_once('.') {
            Some((t, s)) => (t, Some(s)),
            None => (f.as_str(), None),
        };
        let Some(value) = attrs.get(top) else {
            continue;
        };
        match (sub, value) {
            (Some(sub), Value::Object(obj)) => {
                let key = sub.split('.').next().unwrap_or(sub);
                let entry = kept.entry(top.to_string()).or_insert_with(|| json!({}));
                if let (Some(dst), Some(v)) = (entry.as_object_mut(), obj.get(key)) {
                    dst.insert(key.to_string(), v.clone());
                }
            }
            _ => {
                kept.insert(top.to_string(), value.clone());
            }
        }
    }
    *attrs = kept;
}
