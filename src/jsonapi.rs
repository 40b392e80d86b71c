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
    fn from_value(mut v: Value) -> Result<Self, Error> {
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

/// Parse a single-resource reply (`{"data": {...}}`).
pub fn one(reply: Reply) -> Result<Resource, Error> {
    let mut doc: Value = reply.json()?;
    match doc.get_mut("data").map(Value::take) {
        Some(data @ Value::Object(_)) => Resource::from_value(data),
        _ => Err(bad_shape("no `data` object")),
    }
}

/// Parse a collection reply (`{"data": [...], "links": {"next": ...}}`) into its resources and
/// the decoded cursor of the next page (none when `links.next` is absent or null).
pub fn page(reply: Reply) -> Result<(Vec<Resource>, Option<String>), Error> {
    let mut doc: Value = reply.json()?;
    let next = http::next_cursor(
        doc.get("links")
            .and_then(|l| l.get("next"))
            .and_then(Value::as_str),
    );
    let Some(Value::Array(items)) = doc.get_mut("data").map(Value::take) else {
        return Err(bad_shape("no `data` array"));
    };
    let items = items
        .into_iter()
        .map(Resource::from_value)
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, next))
}
