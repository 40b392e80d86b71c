//! The JSON:API envelopes Klaviyo answers with, shared by every resource.
//!
//! A body is read in one pass into a tree that points into it: strings and member names are
//! spans of the body, decoded only when they hold an escape, and the free-form members
//! ([`FREE_FORM`]) are kept as their text. A profile document is mostly relationship links
//! and nulls that no field reads; a `serde_json::Value` of it allocated a string or a map for
//! each, about three quarters of the component's instructions per `get_profile`
//! (`benches/results.md`). One generic reader serves every resource, so the component holds
//! one copy of the parser for it rather than a derived deserializer per resource.

use std::fmt;
use std::ops::Range;
use std::rc::Rc;

use serde::de::IgnoredAny;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::http::{self, Reply};
use crate::{Error, ErrorKind};

/// Members kept as their text, read only when asked for: the free-form objects that the WIT
/// records carry as JSON text (`properties: string`), and the `links` and `relationships` of
/// JSON:API (§7.1, §7.2.2), which are most of a resource's text and which only a cursor or an
/// event's metric and profile need.
const DEFERRED: [&str; 4] = ["properties", "event_properties", "relationships", "links"];

/// A JSON value of a body, its strings as spans of the body.
enum Node {
    Null,
    Bool(bool),
    /// A number without fraction or exponent that fits an i64.
    Int(i64),
    /// Any other number.
    Float(f64),
    /// A string without escapes, whose text between the quotes is its value (RFC 8259 §7).
    Text(Range<usize>),
    /// A string with escapes, decoded.
    Decoded(Box<str>),
    /// A [`DEFERRED`] member, skipped: its value follows the name whose closing quote is at
    /// this index of the body.
    Deferred(usize),
    Array(Vec<Node>),
    Object(Vec<(Node, Node)>),
}

/// Reads a value of `body` into a [`Node`] (a serde seed, so that spans can be taken).
#[derive(Clone, Copy)]
struct Reader<'b> {
    body: &'b [u8],
}

impl Reader<'_> {
    /// Where `part`, a slice of the body, lies in it.
    fn span(self, part: &str) -> Range<usize> {
        let start = part.as_ptr() as usize - self.body.as_ptr() as usize;
        start..start + part.len()
    }
}

impl<'de> DeserializeSeed<'de> for Reader<'_> {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Reader<'_> {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node, E> {
        Ok(Node::Text(self.span(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Decoded(v.into()))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some(name) = map.next_key_seed(self)? {
            // A name spelt with escapes has no place in the body to come back to: its value
            // is read now (Klaviyo spells its names plainly, so this is for other servers).
            let value = match &name {
                Node::Text(span) if DEFERRED.iter().any(|d| is(self.body, &name, d)) => {
                    map.next_value::<IgnoredAny>()?;
                    Node::Deferred(span.end)
                }
                _ => map.next_value_seed(self)?,
            };
            members.push((name, value));
        }
        Ok(Node::Object(members))
    }
}

/// The string a node holds, or `None` when it is not a string.
fn text<'a>(body: &'a [u8], node: &'a Node) -> Option<&'a str> {
    match node {
        // serde_json checked the string's UTF-8 when it read it.
        Node::Text(span) => std::str::from_utf8(&body[span.clone()]).ok(),
        Node::Decoded(s) => Some(s),
        _ => None,
    }
}

/// Whether a node is the string `key` (compared as bytes, without decoding).
#[inline]
fn is(body: &[u8], node: &Node, key: &str) -> bool {
    match node {
        // Most names differ in length: compare that before the bytes.
        Node::Text(span) => {
            span.len() == key.len() && body.get(span.clone()) == Some(key.as_bytes())
        }
        Node::Decoded(s) => **s == *key,
        _ => false,
    }
}

/// The text of the value after the name whose closing quote is at `at` (`: value`, with
/// any whitespace: RFC 8259 §2, §4). The body was read as JSON before, so the value is whole;
/// only strings, where brackets and escaped quotes do not count, need care.
fn value_after(body: &[u8], at: usize) -> Option<&[u8]> {
    let blank = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut i = at + 1;
    while body.get(i).copied().is_some_and(blank) {
        i += 1;
    }
    if body.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    while body.get(i).copied().is_some_and(blank) {
        i += 1;
    }
    let start = i;
    let mut depth = 0usize;
    loop {
        match *body.get(i)? {
            b'"' => {
                i += 1;
                loop {
                    match *body.get(i)? {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
            }
            b'{' | b'[' => depth += 1,
            // The end of the enclosing object or a comma: a scalar ended before it.
            b'}' | b']' | b',' if depth == 0 => break,
            b'}' | b']' => depth -= 1,
            b if blank(b) && depth == 0 => break,
            _ => {}
        }
        i += 1;
        if depth == 0 && matches!(body[i - 1], b'"' | b'}' | b']') {
            break;
        }
    }
    body.get(start..i)
}

/// The text of a [`DEFERRED`] member's value, when it is an object.
fn deferred_object<'a>(body: &'a [u8], node: &Node) -> Option<&'a [u8]> {
    match node {
        Node::Deferred(at) => value_after(body, *at).filter(|t| t.starts_with(b"{")),
        _ => None,
    }
}

/// A JSON object of a body: a view of its members.
#[derive(Clone, Copy)]
pub struct Object<'a> {
    body: &'a [u8],
    members: &'a [(Node, Node)],
}

impl<'a> Object<'a> {
    fn of(body: &'a [u8], node: &'a Node) -> Option<Object<'a>> {
        match node {
            Node::Object(members) => Some(Object { body, members }),
            _ => None,
        }
    }

    /// Member `key`'s value. Should a body repeat a name, the last one counts, as in
    /// JavaScript's and Python's JSON readers (RFC 8259 §4 leaves it open).
    fn get(self, key: &str) -> Option<&'a Node> {
        let body = self.body;
        self.members
            .iter()
            .rev()
            .find_map(|(name, value)| is(body, name, key).then_some(value))
    }

    /// A text member; null, absent or another type is `None`.
    pub fn text(self, key: &str) -> Option<String> {
        text(self.body, self.get(key)?).map(str::to_owned)
    }

    /// A boolean member.
    pub fn flag(self, key: &str) -> Option<bool> {
        match self.get(key)? {
            Node::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// An integer member (a number without fraction or exponent that fits an i64).
    pub fn integer(self, key: &str) -> Option<i64> {
        match self.get(key)? {
            Node::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// A number that the spec allows as a number or a numeric string (e.g. latitude).
    pub fn number(self, key: &str) -> Option<f64> {
        match self.get(key)? {
            Node::Int(i) => Some(*i as f64),
            Node::Float(f) => Some(*f),
            other => text(self.body, other)?.trim().parse().ok(),
        }
    }

    /// An object member; null, absent or another type is `None`.
    pub fn object(self, key: &str) -> Option<Object<'a>> {
        Object::of(self.body, self.get(key)?)
    }

    /// A [`DEFERRED`] object member as JSON text, as the body spells it, for the WIT's
    /// free-form fields; null, absent or another type is `{}`.
    pub fn object_text(self, key: &str) -> String {
        debug_assert!(DEFERRED.contains(&key), "{key} is not kept as text");
        match self.get(key) {
            Some(node @ Node::Object(_)) => {
                let mut text = String::new();
                write(self.body, node, &mut text);
                text
            }
            Some(node) => deferred_object(self.body, node)
                .and_then(|t| std::str::from_utf8(t).ok())
                .unwrap_or("{}")
                .to_owned(),
            None => "{}".to_owned(),
        }
    }

    /// A [`DEFERRED`] object member, read now; null, absent or another type is `None`.
    pub fn deferred(self, key: &str) -> Option<Tree<'a>> {
        debug_assert!(DEFERRED.contains(&key), "{key} is not kept as text");
        tree(self.body, self.get(key)?)
    }

    /// The strings of an array member (other elements skipped); absent or not an array is
    /// empty.
    pub fn strings(self, key: &str) -> Vec<String> {
        match self.get(key) {
            Some(Node::Array(items)) => items
                .iter()
                .filter_map(|i| text(self.body, i))
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A [`DEFERRED`] member, read.
pub struct Tree<'a> {
    body: &'a [u8],
    root: Root<'a>,
}

enum Root<'a> {
    /// Read from its text when asked for.
    Owned(Node),
    /// Read with the rest of the body (its name was spelt with escapes).
    Read(&'a Node),
}

impl Tree<'_> {
    /// The member's object.
    pub fn object(&self) -> Option<Object<'_>> {
        let root = match &self.root {
            Root::Owned(node) => node,
            Root::Read(node) => node,
        };
        Object::of(self.body, root)
    }
}

/// A [`DEFERRED`] member's value, read now; `None` when it is not an object.
fn tree<'a>(body: &'a [u8], node: &'a Node) -> Option<Tree<'a>> {
    let root = match node {
        Node::Object(_) => Root::Read(node),
        other => {
            // The text was checked as JSON when the body was read.
            let text = deferred_object(body, other)?;
            let mut de = serde_json::Deserializer::from_slice(text);
            Root::Owned(Reader { body }.deserialize(&mut de).ok()?)
        }
    };
    Some(Tree { body, root })
}

/// A node's JSON text: a free-form member whose name was spelt with escapes is read with the
/// rest of the body (see [`Reader`]), and its text is written back from what was read.
fn write(body: &[u8], node: &Node, out: &mut String) {
    let text = |span: &Range<usize>| std::str::from_utf8(&body[span.clone()]).unwrap_or_default();
    match node {
        Node::Null => out.push_str("null"),
        Node::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Node::Int(i) => out.push_str(&i.to_string()),
        Node::Float(f) => out.push_str(&serde_json::Value::from(*f).to_string()),
        Node::Text(span) => {
            out.push('"');
            out.push_str(text(span));
            out.push('"');
        }
        Node::Decoded(s) => out.push_str(&serde_json::Value::from(&**s).to_string()),
        Node::Deferred(at) => out.push_str(
            value_after(body, *at)
                .and_then(|t| std::str::from_utf8(t).ok())
                .unwrap_or("null"),
        ),
        Node::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(body, item, out);
            }
            out.push(']');
        }
        Node::Object(members) => {
            out.push('{');
            for (i, (name, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(body, name, out);
                out.push(':');
                write(body, value, out);
            }
            out.push('}');
        }
    }
}

/// A whole JSON text read into a tree.
struct Document {
    body: Rc<[u8]>,
    root: Node,
}

impl Document {
    /// Read `body`; the error is serde_json's.
    fn read(body: Vec<u8>) -> Result<Document, String> {
        let body: Rc<[u8]> = body.into();
        let mut reader = serde_json::Deserializer::from_slice(&body);
        let root = Reader { body: &body }
            .deserialize(&mut reader)
            .and_then(|root| reader.end().map(|()| root))
            .map_err(|e| e.to_string())?;
        Ok(Document { body, root })
    }
}

/// A resource of a compound document's `included` array (asked for with `include=`).
struct Included {
    kind: Option<String>,
    id: Option<String>,
    attributes: Option<Node>,
}

/// Takes member `key` out of `members` (the last of a repeated name, as [`Object::get`]).
fn take(body: &[u8], members: &mut Vec<(Node, Node)>, key: &str) -> Option<Node> {
    let at = members.iter().rposition(|(name, _)| is(body, name, key))?;
    Some(members.swap_remove(at).1)
}

/// A resource object: `{type, id, attributes, relationships}`.
pub struct Resource {
    /// Resource id.
    pub id: String,
    body: Rc<[u8]>,
    /// The members of `attributes` (none when null or absent).
    attributes: Vec<(Node, Node)>,
    /// `relationships`, as its text ([`DEFERRED`]).
    relationships: Option<Node>,
    /// The document's included resources, shared by its resources.
    included: Rc<[Included]>,
}

impl Resource {
    /// The resource object `node` of `body`.
    fn new(body: &Rc<[u8]>, node: Node, included: &Rc<[Included]>) -> Result<Self, Error> {
        let Node::Object(mut members) = node else {
            return Err(bad_shape("a resource that is not an object"));
        };
        let id = take(body, &mut members, "id");
        let Some(id) = id.as_ref().and_then(|id| text(body, id)) else {
            return Err(bad_shape("a resource without a string `id`"));
        };
        let attributes = match take(body, &mut members, "attributes") {
            Some(Node::Object(attributes)) => attributes,
            None | Some(Node::Null) => Vec::new(),
            Some(_) => return Err(bad_shape("`attributes` that is not an object")),
        };
        Ok(Resource {
            id: id.to_owned(),
            body: body.clone(),
            attributes,
            relationships: take(body, &mut members, "relationships"),
            included: included.clone(),
        })
    }

    /// A resource read from its JSON text alone (no included resources).
    #[cfg(test)]
    pub fn parse(text: &str) -> Result<Self, Error> {
        let doc = Document::read(text.as_bytes().to_vec()).map_err(|e| bad_shape(&e))?;
        Resource::new(&doc.body, doc.root, &Rc::from([]))
    }

    /// `attributes` (empty when null or absent).
    fn attributes(&self) -> Object<'_> {
        Object {
            body: &self.body,
            members: &self.attributes,
        }
    }

    /// A text attribute; null, absent or another type is `None`.
    pub fn text(&self, key: &str) -> Option<String> {
        self.attributes().text(key)
    }

    /// A boolean attribute.
    pub fn flag(&self, key: &str) -> Option<bool> {
        self.attributes().flag(key)
    }

    /// An integer attribute.
    pub fn integer(&self, key: &str) -> Option<i64> {
        self.attributes().integer(key)
    }

    /// An object attribute (e.g. a profile's `location`).
    pub fn object(&self, key: &str) -> Option<Object<'_>> {
        self.attributes().object(key)
    }

    /// A free-form object attribute as JSON text; null or absent is `{}`.
    pub fn object_text(&self, key: &str) -> String {
        self.attributes().object_text(key)
    }

    /// A [`DEFERRED`] object attribute, read now (e.g. to find `event_properties.$value`).
    pub fn deferred(&self, key: &str) -> Option<Tree<'_>> {
        self.attributes().deferred(key)
    }

    /// `relationships.<name>.data` (the resource linkage `{type, id}`): its `type` and `id`.
    fn linkage(&self, name: &str) -> Option<(Option<String>, Option<String>)> {
        let relationships = tree(&self.body, self.relationships.as_ref()?)?;
        let data = relationships.object()?.object(name)?.object("data")?;
        Some((data.text("type"), data.text("id")))
    }

    /// A text attribute of the related resource `relationships.<name>.data`, when the
    /// response included it (`include=<name>`): the included resource with the linkage's
    /// `type` and `id` both.
    pub fn related_text(&self, name: &str, key: &str) -> Option<String> {
        if self.included.is_empty() {
            return None;
        }
        let (kind, id) = self.linkage(name)?;
        let found = self
            .included
            .iter()
            .find(|i| i.kind == kind && i.id == id)?;
        Object::of(&self.body, found.attributes.as_ref()?)?.text(key)
    }

    /// `relationships.<name>.data.id`, e.g. the profile an event belongs to.
    pub fn related_id(&self, name: &str) -> Option<String> {
        self.linkage(name)?.1
    }
}

fn bad_shape(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidResponse,
        format!("the response is not the JSON:API document expected: {what}"),
    )
}

/// A reply's document: its `data`, the decoded cursor of `links.next` (none when absent or
/// null) and the resources of `included`.
struct Parts {
    body: Rc<[u8]>,
    data: Option<Node>,
    next: Option<String>,
    included: Rc<[Included]>,
}

fn parts(reply: Reply) -> Result<Parts, Error> {
    let status = reply.status;
    let not_json = |why: String| {
        Error::new(
            ErrorKind::InvalidResponse,
            format!("HTTP {status} with a body that is not valid JSON: {why}"),
        )
    };
    let Document { body, root } = Document::read(reply.body).map_err(not_json)?;
    let Node::Object(mut members) = root else {
        return Ok(Parts {
            body,
            data: None,
            next: None,
            included: Rc::from([]),
        });
    };
    let top = Object {
        body: &body,
        members: &members,
    };
    let links = top.deferred("links");
    let next = links.as_ref().and_then(|l| l.object()?.text("next"));
    let next = http::next_cursor(next.as_deref());
    let data = take(&body, &mut members, "data");
    let included: Rc<[Included]> = match take(&body, &mut members, "included") {
        Some(Node::Array(items)) => items
            .into_iter()
            .filter_map(|item| {
                let Node::Object(mut members) = item else {
                    return None;
                };
                let resource = Object {
                    body: &body,
                    members: &members,
                };
                let (kind, id) = (resource.text("type"), resource.text("id"));
                let attributes = take(&body, &mut members, "attributes");
                Some(Included {
                    kind,
                    id,
                    attributes,
                })
            })
            .collect(),
        _ => Rc::from([]),
    };
    Ok(Parts {
        body,
        data,
        next,
        included,
    })
}

/// Parse a single-resource reply (`{"data": {...}}`).
pub fn one(reply: Reply) -> Result<Resource, Error> {
    let parts = parts(reply)?;
    match parts.data {
        Some(data @ Node::Object(_)) => Resource::new(&parts.body, data, &parts.included),
        _ => Err(bad_shape("no `data` object")),
    }
}

/// Parse a collection reply (`{"data": [...], "links": {"next": ...}}`) into its resources
/// and the decoded cursor of the next page.
pub fn page(reply: Reply) -> Result<(Vec<Resource>, Option<String>), Error> {
    let parts = parts(reply)?;
    let Some(Node::Array(items)) = parts.data else {
        return Err(bad_shape("no `data` array"));
    };
    let items = items
        .into_iter()
        .map(|item| Resource::new(&parts.body, item, &parts.included))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, parts.next))
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

    #[test]
    fn values_are_decoded_as_json_says() {
        let r = Resource::parse(
            r#"{"id": "R\u0031", "attributes": {
                "plain": "a b", "escaped": "tab\tquote\" \u00e9 \ud83d\ude00",
                "null": null, "number": 12, "yes": true, "no": false,
                "big": 9223372036854775807, "over": 9223372036854775808, "real": 1.5,
                "exp": 1e3, "negative": -7, "numeric": " -12.25 ", "word": "x",
                "obj": {"k\u0065y": [1, {"a": "b"}], "s": "t"}, "list": ["a", 1, null, "b\n"],
                "properties": { "a" : [1, "\u0041"] }, "event_properties": [],
                "plain": "second"}}"#,
        )
        .unwrap();
        assert_eq!(r.id, "R1");
        assert_eq!(
            r.text("plain").as_deref(),
            Some("second"),
            "the last of a repeated name"
        );
        assert_eq!(
            r.text("escaped").as_deref(),
            Some("tab\tquote\" \u{e9} \u{1F600}")
        );
        for not_text in ["null", "number", "yes", "obj", "list", "absent"] {
            assert_eq!(r.text(not_text), None, "{not_text}");
        }
        assert_eq!(
            (r.flag("yes"), r.flag("no"), r.flag("word")),
            (Some(true), Some(false), None)
        );
        assert_eq!(r.integer("number"), Some(12));
        assert_eq!(r.integer("negative"), Some(-7));
        assert_eq!(r.integer("big"), Some(i64::MAX));
        for not_integer in ["over", "real", "exp", "word", "null"] {
            assert_eq!(r.integer(not_integer), None, "{not_integer}");
        }
        let a = r.attributes();
        assert_eq!(a.number("real"), Some(1.5));
        assert_eq!(a.number("exp"), Some(1000.0));
        assert_eq!(
            a.number("numeric"),
            Some(-12.25),
            "a numeric string, trimmed"
        );
        assert_eq!(
            (a.number("word"), a.number("null"), a.number("yes")),
            (None, None, None)
        );
        let obj = r.object("obj").unwrap();
        assert_eq!(obj.text("s").as_deref(), Some("t"));
        assert_eq!(
            obj.strings("key"),
            Vec::<String>::new(),
            "an escaped name is decoded"
        );
        assert_eq!(a.strings("list"), ["a", "b\n"]);
        assert!(r.object("list").is_none() && r.object("null").is_none());
        // Free-form objects keep the body's own text; one that is not an object is `{}`.
        assert_eq!(r.object_text("properties"), r#"{ "a" : [1, "\u0041"] }"#);
        assert_eq!(r.object_text("event_properties"), "{}");
        let read = r.deferred("properties").unwrap();
        assert_eq!(read.object().unwrap().strings("a"), ["A"]);
        assert!(r.deferred("event_properties").is_none());
        let bare = Resource::parse(r#"{"id": "1"}"#).unwrap();
        assert_eq!(bare.object_text("properties"), "{}");
    }

    #[test]
    fn a_deferred_value_is_found_whole_after_its_name() {
        // `{"key"` then the value: the name's closing quote is at index 5.
        for (text, value) in [
            (r#"{"key":{}}"#, "{}"),
            (
                "{\"key\" :\n\t {\"a\": [1, {\"b\": \"]}\\\"{\"}]} , \"n\": 1}",
                r#"{"a": [1, {"b": "]}\"{"}]}"#,
            ),
            (r#"{"key": "a,\\\"}" }"#, r#""a,\\\"}""#),
            (r#"{"key":null}"#, "null"),
            (r#"{"key": -1.5e3 ,"n":2}"#, "-1.5e3"),
            (r#"{"key":[[], {}] }"#, "[[], {}]"),
        ] {
            let found = value_after(text.as_bytes(), 5).map(|v| std::str::from_utf8(v).unwrap());
            assert_eq!(found, Some(value), "{text}");
        }
        assert_eq!(value_after(br#"{"key" 1}"#, 5), None, "no colon");
        assert_eq!(value_after(br#"{"key": {"#, 5), None, "cut off");
    }

    #[test]
    fn a_deferred_member_spelt_with_escapes_is_read_all_the_same() {
        let r = Resource::parse(
            r#"{"id": "1", "attributes": {"propert\u0069es": {"x": 1.5, "y": "\u00e9\"", "z": [true, null, -2], "w": {"v": "plain"}}},
                "relationships": {"metric": {"data": {"type": "metric", "id": "M1"}}}}"#,
        )
        .unwrap();
        assert_eq!(
            r.object_text("properties"),
            r#"{"x":1.5,"y":"é\"","z":[true,null,-2],"w":{"v":"plain"}}"#,
            "written back from what was read"
        );
        let read = r.deferred("properties").unwrap();
        assert_eq!(read.object().unwrap().number("x"), Some(1.5));
        assert_eq!(r.related_id("metric").as_deref(), Some("M1"));
        assert_eq!(r.related_text("metric", "name"), None, "nothing included");
    }

    #[test]
    fn documents_of_the_wrong_shape_or_not_json_are_refused() {
        let message = |body: &str| one(reply(body)).err().unwrap().message;
        assert!(message("{\"data\": ").contains("not valid JSON"));
        assert!(message("[1, 2").contains("not valid JSON"));
        assert!(message("{\"data\": {\"id\": \"1\"}} x").contains("not valid JSON"));
        assert!(message("[]").contains("no `data` object"));
        assert!(message("{\"data\": {\"id\": 1}}").contains("string `id`"));
        assert!(
            message("{\"data\": {\"id\": \"1\", \"attributes\": []}}").contains("`attributes`")
        );
        let invalid_utf8 = Reply {
            status: 200,
            body: b"{\"data\": \"\xff\"}".to_vec(),
        };
        assert!(
            one(invalid_utf8)
                .err()
                .unwrap()
                .message
                .contains("not valid JSON")
        );
        let no_attributes = one(reply(r#"{"data": {"id": "1", "attributes": null}}"#)).unwrap();
        assert_eq!(no_attributes.text("x"), None);
        assert!(page(reply(r#"{"data": [1]}"#)).is_err());
        let (empty, next) = page(reply(r#"{"data": [], "links": {"next": null}}"#)).unwrap();
        assert!(empty.is_empty() && next.is_none());
    }
}
