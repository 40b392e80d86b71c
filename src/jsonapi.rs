//! The JSON:API envelopes Klaviyo answers with, shared by every resource.
//!
//! Bodies are parsed once into a `serde_json::Value` and read by name, rather than through a
//! derived struct per resource: unknown fields are ignored all the same, and the component
//! stays small (every derived deserializer is a copy of serde_json's parser).

use serde_json::{Map, Value};

use crate::http::{self, Reply};
use crate::{Error, ErrorKind};

/// A resource object: `{type, id, attributes, relationships}`.
pub struct Resource {
    /// Resource id.
    pub id: String,
    attributes: Map<String, Value>,
    relationships: Value,
}

impl Resource {
    /// Read a resource object.
    pub fn from_value(mut v: Value) -> Result<Self, Error> {
        let id = match v.get("id") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(bad_shape("a resource without a string `id`")),
        };
        let attributes = match v.get_mut("attributes").map(Value::take) {
            Some(Value::Object(m)) => m,
            Some(Value::Null) | None => Map::new(),
            Some(_) => return Err(bad_shape("`attributes` that is not an object")),
        };
        let relationships = v
            .get_mut("relationships")
            .map(Value::take)
            .unwrap_or(Value::Null);
        Ok(Resource {
            id,
            attributes,
            relationships,
        })
    }

    /// A text attribute; null, absent or another type is `None`.
    pub fn text(&self, key: &str) -> Option<String> {
        self.attributes
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    }

    /// A boolean attribute.
    pub fn flag(&self, key: &str) -> Option<bool> {
        self.attributes.get(key).and_then(Value::as_bool)
    }

    /// An integer attribute.
    pub fn integer(&self, key: &str) -> Option<i64> {
        self.attributes.get(key).and_then(Value::as_i64)
    }

    /// An attribute taken out whole (e.g. a nested object).
    pub fn take(&mut self, key: &str) -> Value {
        self.attributes
            .get_mut(key)
            .map(Value::take)
            .unwrap_or(Value::Null)
    }

    /// An object attribute as JSON text, for the WIT's free-form fields; null or absent is `{}`.
    pub fn object_text(&self, key: &str) -> String {
        match self.attributes.get(key) {
            Some(v @ Value::Object(_)) => v.to_string(),
            _ => "{}".to_string(),
        }
    }

    /// A text attribute of the related resource `relationships.<name>.data`, when the
    /// response included it (`include=<name>`; see [`document`]).
    pub fn related_text(&self, name: &str, key: &str) -> Option<String> {
        self.relationships
            .get(name)?
            .get("data")?
            .get("attributes")?
            .get(key)?
            .as_str()
            .map(str::to_owned)
    }

    /// `relationships.<name>.data.id`, e.g. the profile an event belongs to.
    pub fn related_id(&self, name: &str) -> Option<String> {
        self.relationships
            .get(name)?
            .get("data")?
            .get("id")?
            .as_str()
            .map(str::to_owned)
    }
}

/// A number that the spec allows as a number or a numeric string (e.g. latitude).
pub fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub use crate::error::text_of;

fn bad_shape(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidResponse,
        format!("the response is not the JSON:API document expected: {what}"),
    )
}

/// Split a reply into its `data` and the decoded cursor of `links.next` (none when absent or
/// null). The resources of a compound document's `included` array (asked for with
/// `include=`) are put where `data` links to them: the attributes of the included resource
/// that `relationships.<name>.data` names (by `type` and `id`) become that linkage's
/// `attributes`, read with [`Resource::related_text`].
fn document(reply: Reply) -> Result<(Value, Option<String>), Error> {
    let mut doc: Value = reply.json()?;
    let next = http::next_cursor(
        doc.get("links")
            .and_then(|l| l.get("next"))
            .and_then(Value::as_str),
    );
    let mut data = doc.get_mut("data").map(Value::take).unwrap_or(Value::Null);
    if let Some(Value::Array(included)) = doc.get("included") {
        let resources = match &mut data {
            Value::Array(items) => items.iter_mut().collect(),
            one => vec![one],
        };
        for resource in resources {
            let Some(Value::Object(rels)) = resource.get_mut("relationships") else {
                continue;
            };
            for rel in rels.values_mut() {
                let Some(linkage @ Value::Object(_)) = rel.get_mut("data") else {
                    continue;
                };
                let found = included.iter().find(|i| {
                    i.get("type") == linkage.get("type") && i.get("id") == linkage.get("id")
                });
                if let Some(attributes) = found.and_then(|i| i.get("attributes")) {
                    linkage["attributes"] = attributes.clone();
                }
            }
        }
    }
    Ok((data, next))
}

/// Parse a single-resource reply (`{"data": {...}}`).
pub fn one(reply: Reply) -> Result<Resource, Error> {
    match document(reply)?.0 {
        data @ Value::Object(_) => Resource::from_value(data),
        _ => Err(bad_shape("no `data` object")),
    }
}

/// Parse a collection reply (`{"data": [...], "links": {"next": ...}}`) into its resources
/// and the decoded cursor of the next page.
pub fn page(reply: Reply) -> Result<(Vec<Resource>, Option<String>), Error> {
    let (Value::Array(items), next) = document(reply)? else {
        return Err(bad_shape("no `data` array"));
    };
    let items = items
        .into_iter()
        .map(Resource::from_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(body: &str) -> Reply {
        Reply {
            status: 200,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn included_resources_are_read_through_relationships() {
        let doc = r#"{"data": [
              {"type": "event", "id": "E1", "attributes": {},
               "relationships": {"metric": {"data": {"type": "metric", "id": "M1"}},
                                 "profile": {"data": {"type": "profile", "id": "M1"}}}},
              {"type": "event", "id": "E2", "attributes": {},
               "relationships": {"metric": {"data": {"type": "metric", "id": "M9"}}}}],
            "included": [{"type": "metric", "id": "M1", "attributes": {"name": "Placed Order"}}],
            "links": {"next": "https://a.klaviyo.com/api/events?page%5Bcursor%5D=abc"}}"#;
        let (items, next) = page(reply(doc)).unwrap();
        assert_eq!(next.as_deref(), Some("abc"));
        assert_eq!(
            items[0].related_text("metric", "name").as_deref(),
            Some("Placed Order")
        );
        // Matched by type and id both; an unincluded one has no attributes.
        assert_eq!(items[0].related_text("profile", "name"), None);
        assert_eq!(items[1].related_text("metric", "name"), None);
        assert_eq!(items[1].related_id("metric").as_deref(), Some("M9"));
        let one_doc = r#"{"data": {"type": "event", "id": "E1",
              "relationships": {"metric": {"data": {"type": "metric", "id": "M1"}}}},
            "included": [{"type": "metric", "id": "M1", "attributes": {"name": "Viewed"}}]}"#;
        let e = one(reply(one_doc)).unwrap();
        assert_eq!(e.related_text("metric", "name").as_deref(), Some("Viewed"));
        assert!(one(reply(r#"{"data": []}"#)).is_err());
        assert!(page(reply(r#"{"data": {}}"#)).is_err());
    }
}
