//! JSON <-> component values, driven by the component's own WIT types: argument checks
//! (required fields, types, unknown names with a suggestion) and result flattening come from
//! the WIT, never from a hand-kept list.
//!
//! Naming: WIT's kebab-case (`phone-number`) is snake_case (`phone_number`) on the JSON/Lua
//! side. Free-form `properties` fields travel through the component as JSON text; callers give
//! and get them as objects.

use serde_json::{Map, Number, Value};
use wasmtime::component::{Type, Val};

use crate::names::{did_you_mean, kebab, snake};

/// An argument refused before the component is called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgumentError {
    /// The argument at fault (snake_case).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Fields whose WIT type is `string` holding a JSON object (documented as such in the WIT).
fn is_json_object_text(field: &str) -> bool {
    field == "properties"
}

/// A readable name for a WIT type, for messages and docs.
pub fn type_name(ty: &Type) -> String {
    match ty {
        Type::Bool => "boolean".into(),
        Type::S8 | Type::S16 | Type::S32 | Type::S64 => "integer".into(),
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => "integer (>= 0)".into(),
        Type::Float32 | Type::Float64 => "number".into(),
        Type::String | Type::Char => "string".into(),
        Type::List(l) => format!("array of {}", type_name(&l.ty())),
        Type::Record(_) => "table".into(),
        Type::Enum(e) => format!(
            "one of {}",
            e.names()
                .map(|n| format!("\"{}\"", snake(n)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Type::Option(o) => type_name(&o.ty()),
        _ => "value".into(),
    }
}

fn err(field: &str, message: impl Into<String>) -> ArgumentError {
    ArgumentError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// Convert the argument object of a function into its WIT argument record.
pub fn args_to_val(ty: &Type, args: &Value) -> Result<Val, ArgumentError> {
    let Type::Record(record) = ty else {
        return value_to_val(ty, args, "args");
    };
    let empty = Map::new();
    let object = match args {
        Value::Object(m) => m,
        Value::Null => &empty,
        other => {
            return Err(err(
                "args",
                format!(
                    "arguments must be a table of named values, got {}",
                    json_kind(other)
                ),
            ));
        }
    };
    let names: Vec<String> = record.fields().map(|f| snake(f.name)).collect();
    for key in object.keys() {
        if !names.iter().any(|n| n == key || kebab(n) == *key) {
            let hint = match did_you_mean(key, names.iter().map(String::as_str)) {
                hint if hint.is_empty() => format!(" Known: {}.", names.join(", ")),
                hint => hint,
            };
            return Err(err(key, format!("unknown argument `{key}`.{hint}")));
        }
    }
    let mut fields = Vec::with_capacity(names.len());
    for field in record.fields() {
        let name = snake(field.name);
        let given = object
            .get(&name)
            .or_else(|| object.get(field.name))
            .filter(|v| !v.is_null());
        let val = match (&field.ty, given) {
            (Type::Option(_), None) => Val::Option(None),
            (_, None) => {
                return Err(err(
                    &name,
                    format!(
                        "missing required argument `{name}` ({})",
                        type_name(&field.ty)
                    ),
                ));
            }
            (ty, Some(v)) => value_to_val(ty, v, &name)?,
        };
        fields.push((field.name.to_string(), val));
    }
    Ok(Val::Record(fields))
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nil",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a table",
    }
}

fn value_to_val(ty: &Type, v: &Value, field: &str) -> Result<Val, ArgumentError> {
    let expected = || {
        err(
            field,
            format!(
                "`{field}` must be {}, got {}",
                article(&type_name(ty)),
                json_kind(v)
            ),
        )
    };
    Ok(match ty {
        Type::Option(o) => match v {
            Value::Null => Val::Option(None),
            _ => Val::Option(Some(Box::new(value_to_val(&o.ty(), v, field)?))),
        },
        Type::String => match v {
            Value::String(s) => Val::String(s.clone()),
            // A table for a JSON-object field is sent as its JSON text.
            Value::Object(_) if is_json_object_text(field) => Val::String(v.to_string()),
            Value::Array(a) if is_json_object_text(field) && a.is_empty() => {
                Val::String("{}".into())
            }
            _ => return Err(expected()),
        },
        Type::Bool => Val::Bool(v.as_bool().ok_or_else(expected)?),
        Type::Float64 => Val::Float64(v.as_f64().ok_or_else(expected)?),
        Type::Float32 => Val::Float32(v.as_f64().ok_or_else(expected)? as f32),
        Type::U32 => Val::U32(integer(v, field, 0, u32::MAX as i128).ok_or_else(expected)?? as u32),
        Type::U16 => Val::U16(integer(v, field, 0, u16::MAX as i128).ok_or_else(expected)?? as u16),
        Type::U8 => Val::U8(integer(v, field, 0, u8::MAX as i128).ok_or_else(expected)?? as u8),
        Type::S64 => Val::S64(
            integer(v, field, i64::MIN as i128, i64::MAX as i128).ok_or_else(expected)?? as i64,
        ),
        Type::S32 => Val::S32(
            integer(v, field, i32::MIN as i128, i32::MAX as i128).ok_or_else(expected)?? as i32,
        ),
        Type::Enum(e) => {
            let s = v.as_str().ok_or_else(expected)?;
            let wanted = kebab(&s.to_ascii_lowercase());
            match e.names().find(|n| *n == wanted) {
                Some(n) => Val::Enum(n.to_string()),
                None => {
                    return Err(err(
                        field,
                        format!("`{field}` must be {}, got {s:?}", type_name(ty)),
                    ));
                }
            }
        }
        Type::Record(_) => args_to_val(ty, v)?,
        Type::List(l) => match v {
            Value::Array(items) => Val::List(
                items
                    .iter()
                    .map(|i| value_to_val(&l.ty(), i, field))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(expected()),
        },
        _ => {
            return Err(err(
                field,
                format!("`{field}` has a type this host cannot convert"),
            ));
        }
    })
}

fn article(s: &str) -> String {
    if s.starts_with("one of") {
        s.to_string()
    } else if s.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {s}")
    } else {
        format!("a {s}")
    }
}

/// An integer within `[min, max]`; Lua and JSON give integral floats (`20.0`) for integers.
fn integer(v: &Value, field: &str, min: i128, max: i128) -> Option<Result<i128, ArgumentError>> {
    let n: i128 = if let Some(i) = v.as_i64() {
        i as i128
    } else if let Some(u) = v.as_u64() {
        u as i128
    } else {
        let f = v.as_f64()?;
        if f.fract() != 0.0 || !f.is_finite() {
            return None;
        }
        f as i128
    };
    if n < min || n > max {
        return Some(Err(err(
            field,
            format!("`{field}` must be between {min} and {max}, got {n}"),
        )));
    }
    Some(Ok(n))
}

/// Convert a component value into JSON: records become objects with snake_case keys, options
/// become the value or null, enums become snake_case strings, and `properties` text becomes
/// the object it holds.
pub fn val_to_json(val: &Val) -> Value {
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => (*n).into(),
        Val::U8(n) => (*n).into(),
        Val::S16(n) => (*n).into(),
        Val::U16(n) => (*n).into(),
        Val::S32(n) => (*n).into(),
        Val::U32(n) => (*n).into(),
        Val::S64(n) => (*n).into(),
        Val::U64(n) => (*n).into(),
        Val::Float32(f) => Number::from_f64(f64::from(*f)).map_or(Value::Null, Value::Number),
        Val::Float64(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) => Value::Array(items.iter().map(val_to_json).collect()),
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, v)| {
                    let key = snake(name);
                    let value = match v {
                        Val::String(text) if is_json_object_text(&key) => {
                            serde_json::from_str::<Value>(text)
                                .unwrap_or_else(|_| Value::String(text.clone()))
                        }
                        other => val_to_json(other),
                    };
                    (key, value)
                })
                .collect(),
        ),
        Val::Option(o) => o.as_deref().map_or(Value::Null, val_to_json),
        Val::Enum(name) => Value::String(snake(name)),
        Val::Variant(case, payload) => {
            let mut m = Map::new();
            m.insert("kind".into(), Value::String(snake(case)));
            if let Some(p) = payload {
                m.insert("value".into(), val_to_json(p));
            }
            Value::Object(m)
        }
        Val::Tuple(items) => Value::Array(items.iter().map(val_to_json).collect()),
        Val::Result(r) => match r {
            Ok(v) => v.as_deref().map_or(Value::Null, val_to_json),
            Err(v) => v.as_deref().map_or(Value::Null, val_to_json),
        },
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::suggest;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("emial", ["email", "phone_number"]), Some("email"));
        assert_eq!(suggest("first", ["email", "first_name"]), None);
        assert_eq!(
            suggest("frist_name", ["email", "first_name"]),
            Some("first_name")
        );
    }

    #[test]
    fn integers_accept_integral_floats_only() {
        assert!(matches!(
            integer(&serde_json::json!(20.0), "limit", 0, 100),
            Some(Ok(20))
        ));
        assert!(integer(&serde_json::json!(2.5), "limit", 0, 100).is_none());
        assert!(matches!(
            integer(&serde_json::json!(-1), "limit", 0, 100),
            Some(Err(_))
        ));
    }
}
