//! Lua values <-> JSON, and `dump`'s readable form.
//!
//! Lua has one table type for arrays and maps; JSON needs to know which. A table is an array
//! when its keys are exactly `1..n`, or when it carries mlua's array marker (which tables made
//! from JSON arrays get, so an empty array survives a round trip); an empty table is an
//! object. Integral floats (`10 / 2`) become JSON integers, since Lua users mean 5, not 5.0.
//!
//! Every conversion has a byte cap, counted while it builds and checked before each copy:
//! Lua shares strings and tables, so a 10 MiB string referenced 200 times costs the script
//! 10 MiB but a naive copy costs the host 2 GiB (the finding that introduced the caps).

use std::collections::HashSet;
use std::ffi::c_void;
use std::fmt;
use std::io;

use mlua::{Either, Lua, LuaSerdeExt, Table, Value as LuaValue};
use serde_json::{Map, Number, Value};

use crate::limits::{VALUE_OVERHEAD, show_bytes};

/// Deepest nesting converted; deeper means a mistake (or a cycle through metatables).
const MAX_DEPTH: usize = 100;

/// Largest float that is still an exact integer (2^53).
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Most host memory the keys of the tables being converted may take while they are sorted
/// (objects are written with sorted keys). A table of a million integer keys, 32 MiB in
/// Lua, once took the host 100 MiB here, whatever the output cap; this allows about 250,000
/// keys at a time.
pub const SORT_BYTES: usize = 16 * 1024 * 1024;

/// What one collected entry costs, besides its key's text.
const ENTRY_BYTES: usize = std::mem::size_of::<(String, LuaValue)>();

/// Why a Lua value could not be converted.
#[derive(Debug)]
pub enum ConvertError {
    /// The result would be larger than this many bytes.
    TooLarge(usize),
    /// Sorting the keys of the tables would take more than this many bytes
    /// ([`SORT_BYTES`]).
    TooManyKeys(usize),
    /// JSON cannot hold something in the value (a function, a cycle, NaN, ...).
    Invalid(String),
    /// Lua failed while the value was read (out of memory).
    Lua(mlua::Error),
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::TooLarge(max) => {
                write!(f, "the result would be larger than {}", show_bytes(*max))
            }
            ConvertError::TooManyKeys(max) => write!(
                f,
                "the tables have too many keys: sorting them would take more than {}",
                show_bytes(*max)
            ),
            ConvertError::Invalid(message) => f.write_str(message),
            ConvertError::Lua(e) => write!(f, "{e}"),
        }
    }
}

impl From<mlua::Error> for ConvertError {
    fn from(e: mlua::Error) -> Self {
        ConvertError::Lua(e)
    }
}

/// A Lua value as JSON; errors name what could not be converted. The value may take at most
/// `max_bytes`, counted as its JSON text plus [`VALUE_OVERHEAD`] and the indentation the CLI
/// prints per value (see [`crate::Limits::result_bytes`]).
pub fn to_json(lua: &Lua, value: &LuaValue, max_bytes: usize) -> Result<Value, ConvertError> {
    let mut builder = ValueBuilder::new(max_bytes);
    Walker::new(lua, false, &mut builder).value(value, 0)?;
    Ok(builder.finish())
}

/// Like [`to_json`], but what JSON cannot hold becomes a descriptive string (`<function>`,
/// `<cycle>`) in its place instead of an error: for showing a script's results. Only the
/// size cap (and Lua running out of memory) make it fail.
pub fn to_json_lossy(lua: &Lua, value: &LuaValue, max_bytes: usize) -> Result<Value, ConvertError> {
    let mut all = to_json_lossy_all(lua, std::slice::from_ref(value), max_bytes)?;
    Ok(all.pop().unwrap_or(Value::Null))
}

/// [`to_json_lossy`] of several values sharing one cap (a script's results).
pub(crate) fn to_json_lossy_all(
    lua: &Lua,
    values: &[LuaValue],
    max_bytes: usize,
) -> Result<Vec<Value>, ConvertError> {
    let mut builder = ValueBuilder::new(max_bytes);
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        Walker::new(lua, true, &mut builder).value(value, 0)?;
        out.push(builder.finish());
    }
    Ok(out)
}

/// `json.encode`: the JSON text of a value, written straight into a buffer of at most
/// `max_bytes` (no intermediate copy), compact or indented like `serde_json`'s pretty form.
pub(crate) fn encode_json(
    lua: &Lua,
    value: &LuaValue,
    pretty: bool,
    max_bytes: usize,
) -> Result<Vec<u8>, ConvertError> {
    let mut writer = TextWriter {
        out: Capped::new(max_bytes),
        pretty,
    };
    Walker::new(lua, false, &mut writer).value(value, 0)?;
    Ok(writer.out.buf)
}

/// `json.decode`: JSON text as a Lua value. The text is parsed into a `serde_json::Value`
/// first, which takes far more memory than the text for many small values (72 bytes for a
/// `0,`): the expansion is estimated before parsing and must stay within `max_bytes`.
pub(crate) fn decode_json(
    lua: &Lua,
    text: &[u8],
    max_bytes: usize,
) -> Result<LuaValue, ConvertError> {
    let estimate = text
        .len()
        .saturating_add(count_values(text).saturating_mul(VALUE_OVERHEAD));
    if estimate > max_bytes {
        return Err(ConvertError::TooLarge(max_bytes));
    }
    let value: Value = serde_json::from_slice(text)
        .map_err(|e| ConvertError::Invalid(format!("invalid JSON: {e}")))?;
    Ok(from_json(lua, &value)?)
}

/// How many values JSON text holds, about: one, plus one per separator or opening bracket
/// outside strings.
fn count_values(text: &[u8]) -> usize {
    let (mut count, mut in_string, mut escaped) = (1usize, false, false);
    for &b in text {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b',' | b':' | b'[' | b'{' => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// Where a conversion writes: JSON text or a `serde_json::Value`, told the value's parts in
/// document order.
trait Sink {
    /// Bytes left before the cap (for checks made before copying).
    fn room(&self) -> usize;
    /// The cap.
    fn max(&self) -> usize;
    /// A scalar (null, boolean, number) at `depth`.
    fn scalar(&mut self, value: Value, depth: usize) -> Result<(), ConvertError>;
    /// A string (already checked to be valid UTF-8) at `depth`.
    fn string(&mut self, text: &str, depth: usize) -> Result<(), ConvertError>;
    /// An array of `len` items begins.
    fn begin_array(&mut self, len: usize, depth: usize) -> Result<(), ConvertError>;
    /// Before item `index` of the innermost array.
    fn item(&mut self, index: usize, depth: usize) -> Result<(), ConvertError>;
    fn end_array(&mut self, len: usize, depth: usize) -> Result<(), ConvertError>;
    /// An object of `len` entries begins.
    fn begin_object(&mut self, len: usize, depth: usize) -> Result<(), ConvertError>;
    /// The key of entry `index` of the innermost object.
    fn key(&mut self, index: usize, key: String, depth: usize) -> Result<(), ConvertError>;
    fn end_object(&mut self, len: usize, depth: usize) -> Result<(), ConvertError>;
}

/// Walks a Lua value for a [`Sink`]: arrays or objects, sorted keys, cycles and depth.
struct Walker<'a, S> {
    lua: &'a Lua,
    /// The tables on the current path (at most [`MAX_DEPTH`]): a cycle comes back to one.
    seen: Vec<*const c_void>,
    lossy: bool,
    sink: &'a mut S,
    /// Host memory the entries being sorted hold (the objects on the current path).
    sorting: usize,
}

impl<'a, S: Sink> Walker<'a, S> {
    fn new(lua: &'a Lua, lossy: bool, sink: &'a mut S) -> Self {
        Walker {
            lua,
            seen: Vec::new(),
            lossy,
            sink,
            sorting: 0,
        }
    }

    fn value(&mut self, value: &LuaValue, depth: usize) -> Result<(), ConvertError> {
        match value {
            LuaValue::Nil => self.sink.scalar(Value::Null, depth),
            LuaValue::LightUserData(p) if p.0.is_null() => self.sink.scalar(Value::Null, depth),
            LuaValue::Boolean(b) => self.sink.scalar(Value::Bool(*b), depth),
            LuaValue::Integer(i) => self.sink.scalar(Value::from(*i), depth),
            LuaValue::Number(n) => match number(*n) {
                Ok(v) => self.sink.scalar(v, depth),
                Err(message) => self.invalid(message, None, depth),
            },
            LuaValue::String(s) => self.bytes(&s.as_bytes(), depth),
            LuaValue::Table(t) => self.table(t, depth),
            other => self.invalid(
                format!("a {} cannot be converted to JSON", other.type_name()),
                Some(format!("<{}>", other.type_name())),
                depth,
            ),
        }
    }

    /// A Lua string: checked against the room before it is copied (lossily: JSON is UTF-8).
    fn bytes(&mut self, bytes: &[u8], depth: usize) -> Result<(), ConvertError> {
        if bytes.len() > self.sink.room() {
            return Err(self.too_large());
        }
        self.sink.string(&String::from_utf8_lossy(bytes), depth)
    }

    fn too_large(&self) -> ConvertError {
        ConvertError::TooLarge(self.sink.max())
    }

    /// Something JSON cannot hold: an error, or in lossy mode `shown` (default `<message>`)
    /// in its place.
    fn invalid(
        &mut self,
        message: String,
        shown: Option<String>,
        depth: usize,
    ) -> Result<(), ConvertError> {
        if !self.lossy {
            return Err(ConvertError::Invalid(message));
        }
        let shown = shown.unwrap_or_else(|| format!("<{message}>"));
        self.sink.string(&shown, depth)
    }

    fn table(&mut self, t: &Table, depth: usize) -> Result<(), ConvertError> {
        if depth >= MAX_DEPTH {
            let message =
                format!("tables nested deeper than {MAX_DEPTH} levels cannot be converted to JSON");
            return self.invalid(message, None, depth);
        }
        let ptr = t.to_pointer();
        if self.seen.contains(&ptr) {
            let message = "a table that contains itself cannot be converted to JSON".to_string();
            return self.invalid(message, Some("<cycle>".into()), depth);
        }
        self.seen.push(ptr);
        let result = if is_array(self.lua, t) {
            self.array(t, depth)
        } else {
            self.object(t, depth)
        };
        self.seen.pop();
        result
    }

    fn array(&mut self, t: &Table, depth: usize) -> Result<(), ConvertError> {
        let len = t.raw_len();
        self.sink.begin_array(len, depth)?;
        for i in 0..len {
            self.sink.item(i, depth + 1)?;
            let v: LuaValue = t.raw_get(i + 1)?;
            self.value(&v, depth + 1)?;
        }
        self.sink.end_array(len, depth)
    }

    fn object(&mut self, t: &Table, depth: usize) -> Result<(), ConvertError> {
        let before = self.sorting;
        let result = self.entries(t).and_then(|entries| {
            self.sink.begin_object(entries.len(), depth)?;
            let len = entries.len();
            for (i, (key, value)) in entries.into_iter().enumerate() {
                self.sink.key(i, key, depth + 1)?;
                self.value(&value, depth + 1)?;
            }
            self.sink.end_object(len, depth)
        });
        self.sorting = before;
        result
    }

    /// A table's entries with their keys as JSON keys, sorted (Lua's order is arbitrary); of
    /// keys that read the same (`1` and `"1"`) the last one seen wins. Every key will be
    /// written, so their total length is checked against the room as they are copied, and
    /// what the entries take is counted against [`SORT_BYTES`] (released by the caller).
    fn entries(&mut self, t: &Table) -> Result<Vec<(String, LuaValue)>, ConvertError> {
        let mut entries: Vec<(String, LuaValue)> = Vec::new();
        let mut key_bytes = 0usize;
        let mut failed = None;
        // `for_each` walks the table under one protected call; `pairs` costs a call into
        // mlua per entry (this runs on the arguments of every Klaviyo call).
        let walked =
            t.for_each::<LuaValue, LuaValue>(|k, v| match self.entry_key(&k, &mut key_bytes) {
                Ok(key) => {
                    entries.push((key, v));
                    Ok(())
                }
                Err(e) => {
                    failed = Some(e);
                    Err(mlua::Error::runtime("stopped"))
                }
            });
        if let Some(e) = failed {
            return Err(e);
        }
        walked?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        entries.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                std::mem::swap(&mut later.1, &mut earlier.1);
            }
            same
        });
        Ok(entries)
    }

    /// An entry's key as JSON writes it, counted against the room and [`SORT_BYTES`].
    fn entry_key(&mut self, k: &LuaValue, key_bytes: &mut usize) -> Result<String, ConvertError> {
        self.sorting = self.sorting.saturating_add(ENTRY_BYTES);
        if self.sorting > SORT_BYTES {
            return Err(ConvertError::TooManyKeys(SORT_BYTES));
        }
        Ok(match k {
            LuaValue::String(s) => {
                let bytes = s.as_bytes();
                *key_bytes = key_bytes.saturating_add(bytes.len());
                if *key_bytes > self.sink.room() {
                    return Err(self.too_large());
                }
                self.sorting = self.sorting.saturating_add(bytes.len());
                String::from_utf8_lossy(&bytes).into_owned()
            }
            LuaValue::Integer(i) => i.to_string(),
            LuaValue::Number(n) if n.fract() == 0.0 && n.abs() < EXACT_INT => {
                (*n as i64).to_string()
            }
            LuaValue::Number(n) => n.to_string(),
            other if self.lossy => format!("<{}>", other.type_name()),
            other => {
                return Err(ConvertError::Invalid(format!(
                    "a table key of type {} cannot be converted to JSON",
                    other.type_name()
                )));
            }
        })
    }
}

/// A byte buffer that refuses to grow past `max`; `used` may also count bytes not written
/// (a [`ValueBuilder`]'s estimate).
struct Capped {
    buf: Vec<u8>,
    used: usize,
    max: usize,
}

impl Capped {
    fn new(max: usize) -> Self {
        Capped {
            buf: Vec::new(),
            used: 0,
            max,
        }
    }

    fn charge(&mut self, n: usize) -> Result<(), ConvertError> {
        self.used = self.used.saturating_add(n);
        if self.used > self.max {
            return Err(ConvertError::TooLarge(self.max));
        }
        Ok(())
    }

    fn push(&mut self, bytes: &[u8]) -> Result<(), ConvertError> {
        self.charge(bytes.len())?;
        self.buf.extend_from_slice(bytes);
        Ok(())
    }

    fn room(&self) -> usize {
        self.max.saturating_sub(self.used)
    }
}

impl io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.push(bytes)
            .map_err(|_| io::Error::other("the cap was reached"))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes JSON text exactly as `serde_json::to_string` (or `to_string_pretty`) would write
/// the equivalent `Value`.
struct TextWriter {
    out: Capped,
    pretty: bool,
}

impl TextWriter {
    fn newline(&mut self, depth: usize) -> Result<(), ConvertError> {
        if self.pretty {
            self.out.push(b"\n")?;
            for _ in 0..depth {
                self.out.push(b"  ")?;
            }
        }
        Ok(())
    }

    /// Through `serde_json`, for its escaping and number formatting; its only possible
    /// failure is the cap.
    fn write_str(&mut self, text: &str) -> Result<(), ConvertError> {
        let max = self.out.max;
        serde_json::to_writer(&mut self.out, text).map_err(|_| ConvertError::TooLarge(max))
    }

    fn write_value(&mut self, value: &Value) -> Result<(), ConvertError> {
        let max = self.out.max;
        serde_json::to_writer(&mut self.out, value).map_err(|_| ConvertError::TooLarge(max))
    }
}

impl Sink for TextWriter {
    fn room(&self) -> usize {
        self.out.room()
    }

    fn max(&self) -> usize {
        self.out.max
    }

    fn scalar(&mut self, value: Value, _depth: usize) -> Result<(), ConvertError> {
        self.write_value(&value)
    }

    fn string(&mut self, text: &str, _depth: usize) -> Result<(), ConvertError> {
        self.write_str(text)
    }

    fn begin_array(&mut self, _len: usize, _depth: usize) -> Result<(), ConvertError> {
        self.out.push(b"[")
    }

    fn item(&mut self, index: usize, depth: usize) -> Result<(), ConvertError> {
        if index > 0 {
            self.out.push(b",")?;
        }
        self.newline(depth)
    }

    fn end_array(&mut self, len: usize, depth: usize) -> Result<(), ConvertError> {
        if len > 0 {
            self.newline(depth)?;
        }
        self.out.push(b"]")
    }

    fn begin_object(&mut self, _len: usize, _depth: usize) -> Result<(), ConvertError> {
        self.out.push(b"{")
    }

    fn key(&mut self, index: usize, key: String, depth: usize) -> Result<(), ConvertError> {
        self.item(index, depth)?;
        self.write_str(&key)?;
        self.out.push(if self.pretty { b": " } else { b":" })
    }

    fn end_object(&mut self, len: usize, depth: usize) -> Result<(), ConvertError> {
        if len > 0 {
            self.newline(depth)?;
        }
        self.out.push(b"}")
    }
}

/// Builds a `serde_json::Value`, charging each value its JSON text, the indentation the CLI
/// prints it with (two spaces a level) and [`VALUE_OVERHEAD`] for its in-memory form.
struct ValueBuilder {
    cap: Capped,
    stack: Vec<Frame>,
    done: Option<Value>,
}

enum Frame {
    Array(Vec<Value>),
    Object(Map<String, Value>, Option<String>),
}

impl ValueBuilder {
    fn new(max: usize) -> Self {
        ValueBuilder {
            cap: Capped::new(max),
            stack: Vec::new(),
            done: None,
        }
    }

    /// The value built since the last call.
    fn finish(&mut self) -> Value {
        self.stack.clear();
        self.done.take().unwrap_or(Value::Null)
    }

    fn charge(&mut self, text: usize, depth: usize) -> Result<(), ConvertError> {
        self.cap
            .charge(text.saturating_add(VALUE_OVERHEAD + 2 * depth + 1))
    }

    fn put(&mut self, value: Value) {
        match self.stack.last_mut() {
            None => self.done = Some(value),
            Some(Frame::Array(items)) => items.push(value),
            Some(Frame::Object(map, key)) => {
                map.insert(key.take().unwrap_or_default(), value);
            }
        }
    }
}

impl Sink for ValueBuilder {
    fn room(&self) -> usize {
        self.cap.room()
    }

    fn max(&self) -> usize {
        self.cap.max
    }

    fn scalar(&mut self, value: Value, depth: usize) -> Result<(), ConvertError> {
        // Numbers are at most 24 characters: within the overhead.
        self.charge(0, depth)?;
        self.put(value);
        Ok(())
    }

    fn string(&mut self, text: &str, depth: usize) -> Result<(), ConvertError> {
        self.charge(text.len() + 2, depth)?;
        self.put(Value::String(text.to_string()));
        Ok(())
    }

    fn begin_array(&mut self, len: usize, depth: usize) -> Result<(), ConvertError> {
        self.charge(2, depth)?;
        // Sized up front (no doubling slack), but never beyond what the cap could let in.
        let fits = self.cap.room() / VALUE_OVERHEAD;
        self.stack
            .push(Frame::Array(Vec::with_capacity(len.min(fits))));
        Ok(())
    }

    fn item(&mut self, _index: usize, _depth: usize) -> Result<(), ConvertError> {
        Ok(())
    }

    fn end_array(&mut self, _len: usize, _depth: usize) -> Result<(), ConvertError> {
        if let Some(Frame::Array(items)) = self.stack.pop() {
            self.put(Value::Array(items));
        }
        Ok(())
    }

    fn begin_object(&mut self, len: usize, depth: usize) -> Result<(), ConvertError> {
        self.charge(2, depth)?;
        // Each entry is charged for its key and its value.
        let fits = self.cap.room() / (2 * VALUE_OVERHEAD);
        self.stack
            .push(Frame::Object(Map::with_capacity(len.min(fits)), None));
        Ok(())
    }

    fn key(&mut self, _index: usize, key: String, depth: usize) -> Result<(), ConvertError> {
        self.charge(key.len() + 4, depth)?;
        if let Some(Frame::Object(_, pending)) = self.stack.last_mut() {
            *pending = Some(key);
        }
        Ok(())
    }

    fn end_object(&mut self, _len: usize, _depth: usize) -> Result<(), ConvertError> {
        if let Some(Frame::Object(map, _)) = self.stack.pop() {
            self.put(Value::Object(map));
        }
        Ok(())
    }
}

fn number(n: f64) -> Result<Value, String> {
    if !n.is_finite() {
        return Err(format!("the number {n} cannot be converted to JSON"));
    }
    if n.fract() == 0.0 && n.abs() < EXACT_INT {
        return Ok(Value::from(n as i64));
    }
    Number::from_f64(n)
        .map(Value::Number)
        .ok_or_else(|| format!("the number {n} cannot be converted to JSON"))
}

/// Whether a table is a sequence `1..n` (n >= 1) or is marked as an array.
fn is_array(lua: &Lua, t: &Table) -> bool {
    if t.metatable()
        .is_some_and(|m| m.to_pointer() == lua.array_metatable().to_pointer())
    {
        return true;
    }
    let len = t.raw_len();
    if len == 0 {
        return false;
    }
    let mut count = 0usize;
    let walked = t.for_each::<LuaValue, LuaValue>(|k, _| match k {
        LuaValue::Integer(i) if i >= 1 && (i as usize) <= len => {
            count += 1;
            Ok(())
        }
        _ => Err(mlua::Error::runtime("not an array")),
    });
    walked.is_ok() && count == len
}

/// A JSON value as Lua: `null` is nil, arrays are tables marked as arrays.
///
/// Every Klaviyo result comes through here, so it must be cheap. Under a memory limit mlua
/// guards each string, table and field it creates with a protected call (a failed allocation
/// raises a Lua error, which must not unwind through Rust frames): that was more than half
/// of what the Lua layer added to a Klaviyo call. So when the value surely fits, the limit
/// is lifted while it is built and mlua skips the guards. "Surely": twice the state's usage
/// plus [`lua_bytes_bound`], plus [`BUILD_HEADROOM`], within the limit; the margin covers
/// what Lua allocates besides the value (its table of interned strings doubles as it fills,
/// 8 bytes a slot for strings of at least 25 bytes; mlua's reference stack). No script code
/// runs meanwhile, and without a limit mlua aborts on a failed allocation rather than
/// unwinding. Should the state still end up over its limit, the value is dropped and built
/// again under the limit, which fails (or collects garbage) just as it would have.
pub fn from_json(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    let need = lua_bytes_bound(value);
    let used = lua.used_memory();
    let Ok(limit) = lua.set_memory_limit(0) else {
        return build(lua, value);
    };
    let fits = limit == 0
        || used
            .saturating_add(need)
            .saturating_mul(2)
            .saturating_add(BUILD_HEADROOM)
            <= limit;
    let lifted = Lifted { lua, limit };
    if !fits {
        drop(lifted);
        return build(lua, value);
    }
    let built = build(lua, value);
    drop(lifted);
    if let Ok(v) = built {
        if limit == 0 || lua.used_memory() <= limit {
            return Ok(v);
        }
        // Released first, for the collector to take back while the value is built again.
        drop(v);
    }
    build(lua, value)
}

/// Puts a lifted memory limit back, however the work done meanwhile ends.
struct Lifted<'a> {
    lua: &'a Lua,
    limit: usize,
}

impl Drop for Lifted<'_> {
    fn drop(&mut self) {
        let _ = self.lua.set_memory_limit(self.limit);
    }
}

/// What Lua may allocate besides the value [`from_json`] builds without a limit (growing
/// its stacks), on top of twice the usage.
const BUILD_HEADROOM: usize = 64 * 1024;

/// Lua 5.4's `TString` header plus the NUL, rounded up.
const LUA_STRING_BYTES: usize = 32;
/// Lua 5.4's `Table` (56 bytes), rounded up.
const LUA_TABLE_BYTES: usize = 64;
/// An array item (a `TValue`).
const LUA_ITEM_BYTES: usize = 16;
/// A hash entry (a 24-byte `Node`), counted twice: the hash part is a power of two.
const LUA_ENTRY_BYTES: usize = 48;

/// At least the bytes building `value` in Lua allocates (strings, tables and their parts;
/// interned strings may share, which only makes it less).
fn lua_bytes_bound(value: &Value) -> usize {
    match value {
        Value::String(s) => LUA_STRING_BYTES.saturating_add(s.len()),
        Value::Array(items) => items.iter().fold(
            LUA_TABLE_BYTES.saturating_add(items.len().saturating_mul(LUA_ITEM_BYTES)),
            |n, item| n.saturating_add(lua_bytes_bound(item)),
        ),
        Value::Object(m) => m.iter().fold(
            LUA_TABLE_BYTES.saturating_add(m.len().saturating_mul(LUA_ENTRY_BYTES)),
            |n, (k, v)| {
                n.saturating_add(LUA_STRING_BYTES + k.len())
                    .saturating_add(lua_bytes_bound(v))
            },
        ),
        _ => 0,
    }
}

/// [`from_json`] under whatever limit the state has. Each table is filled in one go (one
/// lock and one stack check for all its fields, not one each), and a string field is pushed
/// as it is instead of becoming a Lua value first (which takes and frees a reference slot).
fn build(lua: &Lua, value: &Value) -> mlua::Result<LuaValue> {
    let mut failed = None;
    let built = match value {
        Value::Null => return Ok(LuaValue::Nil),
        Value::Bool(b) => return Ok(LuaValue::Boolean(*b)),
        Value::Number(n) => {
            return Ok(match n.as_i64() {
                Some(i) => LuaValue::Integer(i),
                None => LuaValue::Number(n.as_f64().unwrap_or(f64::NAN)),
            });
        }
        Value::String(s) => return Ok(LuaValue::String(lua.create_string(s)?)),
        Value::Array(items) => {
            let t =
                lua.create_sequence_from(items.iter().map(|item| field(lua, item, &mut failed)))?;
            t.set_metatable(Some(lua.array_metatable()))?;
            t
        }
        // A null field is no field in Lua: not set at all (API results have many).
        Value::Object(m) => lua.create_table_from(Counted {
            len: m.values().filter(|v| !v.is_null()).count(),
            items: m
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.as_str(), field(lua, v, &mut failed))),
        })?,
    };
    match failed {
        Some(e) => Err(e),
        None => Ok(LuaValue::Table(built)),
    }
}

/// `items`, of which there are `len`: the size a table is made with (a filter forgets it).
struct Counted<I> {
    len: usize,
    items: I,
}

impl<I: Iterator> Iterator for Counted<I> {
    type Item = I::Item;

    fn next(&mut self) -> Option<I::Item> {
        self.items.next()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len, Some(self.len))
    }
}

/// A field of a table [`build`] fills: a string as it is, anything else built; nil once
/// one has failed (the failure kept in `failed`).
fn field<'a>(
    lua: &Lua,
    value: &'a Value,
    failed: &mut Option<mlua::Error>,
) -> Either<&'a str, LuaValue> {
    if failed.is_some() {
        return Either::Right(LuaValue::Nil);
    }
    match value {
        Value::String(s) => Either::Left(s),
        other => Either::Right(build(lua, other).unwrap_or_else(|e| {
            *failed = Some(e);
            LuaValue::Nil
        })),
    }
}

/// `dump`'s readable form: Lua table syntax, keys sorted, nested tables indented, cycles
/// shown as `<cycle>`. Rendering stops once it has produced more than `max_bytes` (counted
/// generously: separators and indentation as if every table spanned several lines).
pub fn dump(lua: &Lua, value: &LuaValue, max_bytes: usize) -> Result<String, ConvertError> {
    Dumper {
        lua,
        seen: HashSet::new(),
        cap: Capped::new(max_bytes),
    }
    .value(value, 0)
}

struct Dumper<'a> {
    lua: &'a Lua,
    seen: HashSet<*const c_void>,
    cap: Capped,
}

/// Tables whose one-line form is at most this long are shown on one line.
const INLINE_WIDTH: usize = 72;

impl Dumper<'_> {
    /// `text`, charged to the cap.
    fn charged(&mut self, text: String) -> Result<String, ConvertError> {
        self.cap.charge(text.len())?;
        Ok(text)
    }

    fn value(&mut self, value: &LuaValue, indent: usize) -> Result<String, ConvertError> {
        match value {
            LuaValue::Nil => self.charged("nil".into()),
            LuaValue::LightUserData(p) if p.0.is_null() => self.charged("null".into()),
            LuaValue::Boolean(b) => self.charged(b.to_string()),
            LuaValue::Integer(i) => self.charged(i.to_string()),
            LuaValue::Number(n) => self.charged(float_text(*n)),
            LuaValue::String(s) => self.string(&s.as_bytes()),
            LuaValue::Table(t) => self.table(t, indent),
            // The `app` proxies describe themselves through `__tostring` (host code: scripts
            // cannot make userdata).
            LuaValue::UserData(_) => match value.to_string() {
                Ok(text) => self.charged(format!("<{text}>")),
                Err(_) => self.charged("<userdata>".into()),
            },
            other => self.charged(format!("<{}>", other.type_name())),
        }
    }

    /// A quoted string; its length is checked before it is copied.
    fn string(&mut self, bytes: &[u8]) -> Result<String, ConvertError> {
        if bytes.len() + 2 > self.cap.room() {
            return Err(ConvertError::TooLarge(self.cap.max));
        }
        self.charged(quote(bytes))
    }

    fn table(&mut self, t: &Table, indent: usize) -> Result<String, ConvertError> {
        let ptr = t.to_pointer();
        if indent > MAX_INDENT || !self.seen.insert(ptr) {
            return self.charged(CYCLE.into());
        }
        let parts = self.parts(t, indent);
        self.seen.remove(&ptr);
        Ok(layout(&parts?, indent))
    }

    /// The items of a table, each charged its share of separators and indentation.
    fn parts(&mut self, t: &Table, indent: usize) -> Result<Vec<String>, ConvertError> {
        self.cap.charge(indent + 4)?;
        let mut parts = Vec::new();
        if is_array(self.lua, t) {
            for i in 1..=t.raw_len() {
                self.cap.charge(indent + 4)?;
                let v: LuaValue = t.raw_get(i).unwrap_or(LuaValue::Nil);
                parts.push(self.value(&v, indent + 2)?);
            }
            return Ok(parts);
        }
        let mut entries: Vec<(String, String)> = Vec::new();
        for (k, v) in t.pairs::<LuaValue, LuaValue>().flatten() {
            self.cap.charge(indent + 7)?;
            let key = match &k {
                LuaValue::String(s) => {
                    let bytes = s.as_bytes();
                    match std::str::from_utf8(&bytes) {
                        Ok(s) if is_identifier(s) => self.charged(s.to_string())?,
                        _ => key_text(&self.string(&bytes)?),
                    }
                }
                other => key_text(&self.value(other, indent + 2)?),
            };
            entries.push((key, self.value(&v, indent + 2)?));
        }
        Ok(entry_parts(entries))
    }
}

// What `dump` and [`crate::show`] share, so both write one format.

/// Tables nested deeper than this (in indentation: two spaces a level) show as [`CYCLE`].
pub(crate) const MAX_INDENT: usize = 40;

/// What stands for a table already being shown (or nested too deep).
pub(crate) const CYCLE: &str = "<cycle>";

/// A float: `5.0` when integral (Lua's own `tostring` form), else Rust's shortest form.
pub(crate) fn float_text(n: f64) -> String {
    if n.fract() == 0.0 && n.is_finite() {
        format!("{n:.1}")
    } else {
        n.to_string()
    }
}

/// A string, quoted and escaped.
pub(crate) fn quote(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

/// A key that is not an identifier, from its shown value: `["not id"]`, `[1]`.
pub(crate) fn key_text(shown: &str) -> String {
    format!("[{shown}]")
}

/// A map's `key = value` items in their shown order (sorted by key text).
pub(crate) fn entry_parts(mut entries: Vec<(String, String)>) -> Vec<String> {
    entries.sort();
    entries
        .into_iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect()
}

/// A table from its items: `{}`, on one line when short, else one item a line.
pub(crate) fn layout(parts: &[String], indent: usize) -> String {
    if parts.is_empty() {
        return "{}".into();
    }
    let inline = format!("{{ {} }}", parts.join(", "));
    if inline.len() <= INLINE_WIDTH && !inline.contains('\n') {
        return inline;
    }
    let pad = " ".repeat(indent + 2);
    format!(
        "{{\n{pad}{}\n{}}}",
        parts.join(&format!(",\n{pad}")),
        " ".repeat(indent)
    )
}

/// Whether a key shows bare (`a = 1`) rather than bracketed.
pub(crate) fn is_identifier(s: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
        "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while",
    ];
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !KEYWORDS.contains(&s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CAP: usize = 1 << 20;

    fn eval(lua: &Lua, code: &str) -> LuaValue {
        lua.load(code).eval().unwrap()
    }

    /// A value that surely fits is built with the limit lifted, which is then back; one
    /// that does not fit is the memory error, the state still within its limit.
    #[test]
    fn values_are_built_within_the_memory_limit() {
        let limit = 4 << 20;
        let lua = Lua::new();
        lua.set_memory_limit(limit).unwrap();
        let small = json!({"a": "x", "b": [1, 2.5, {"c": null}]});
        let v = from_json(&lua, &small).unwrap();
        assert_eq!(
            to_json(&lua, &v, CAP).unwrap(),
            json!({"a": "x", "b": [1, 2.5, {}]})
        );
        assert_eq!(lua.set_memory_limit(limit).unwrap(), limit);
        // Fits the limit, not the margin of the fast way: built the guarded way.
        let keep = lua.create_string("k".repeat(1 << 20)).unwrap();
        let medium = json!(vec!["m".repeat(100); 10_000]);
        let v = from_json(&lua, &medium).unwrap();
        assert_eq!(to_json(&lua, &v, 4 * CAP).unwrap(), medium);
        drop(v);
        let big = json!(vec!["b".repeat(1000); 5000]);
        let e = from_json(&lua, &big).unwrap_err();
        assert!(matches!(e, mlua::Error::MemoryError(_)), "{e}");
        assert!(lua.used_memory() <= limit);
        assert_eq!(lua.set_memory_limit(limit).unwrap(), limit);
        drop(keep);
    }

    #[test]
    fn tables_become_arrays_or_objects() {
        let lua = Lua::new();
        let v = eval(
            &lua,
            "return {1, 2.0, 2.5, {a = 1, [2] = true}, {}, {n = 1}}",
        );
        assert_eq!(
            to_json(&lua, &v, CAP).unwrap(),
            json!([1, 2, 2.5, {"a": 1, "2": true}, {}, {"n": 1}])
        );
        let bad = eval(&lua, "return {f = print}");
        assert!(
            to_json(&lua, &bad, CAP)
                .unwrap_err()
                .to_string()
                .contains("function")
        );
        assert_eq!(
            to_json_lossy(&lua, &bad, CAP).unwrap(),
            json!({"f": "<function>"})
        );
        let cyclic = eval(&lua, "local t = {} t.t = t return t");
        assert!(matches!(
            to_json(&lua, &cyclic, CAP),
            Err(ConvertError::Invalid(_))
        ));
        assert_eq!(
            to_json_lossy(&lua, &cyclic, CAP).unwrap(),
            json!({"t": "<cycle>"})
        );
        // In lossy mode one bad value does not hide the others.
        let nan = eval(&lua, "return {1, 0/0}");
        let shown = to_json_lossy(&lua, &nan, CAP).unwrap();
        assert_eq!(shown[0], 1);
        assert!(
            shown[1].as_str().unwrap().contains("cannot be converted"),
            "{shown}"
        );
    }

    #[test]
    fn json_round_trips_keep_empty_arrays() {
        let lua = Lua::new();
        let value = json!({"items": [], "next_cursor": null, "n": 3, "x": 1.5, "s": "é"});
        let lua_value = from_json(&lua, &value).unwrap();
        assert_eq!(
            to_json(&lua, &lua_value, CAP).unwrap(),
            json!({"items": [], "n": 3, "x": 1.5, "s": "é"})
        );
    }

    #[test]
    fn encoded_text_is_what_serde_json_writes() {
        let lua = Lua::new();
        let v = eval(
            &lua,
            r#"return {list = {1, 2.5, "a\"b\n", {}, {k = {true}}}, [3] = 0.1, e = {}, u = "é\1"}"#,
        );
        let value = to_json(&lua, &v, CAP).unwrap();
        for pretty in [false, true] {
            let text = String::from_utf8(encode_json(&lua, &v, pretty, CAP).unwrap()).unwrap();
            let expected = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                serde_json::to_string(&value).unwrap()
            };
            assert_eq!(text, expected);
        }
        let arr = from_json(&lua, &json!([])).unwrap();
        assert_eq!(encode_json(&lua, &arr, true, CAP).unwrap(), b"[]");
    }

    /// The finding: one 10 MiB string referenced 200 times made each conversion copy it 200
    /// times. Each must stop at its cap, having copied at most about the cap.
    #[test]
    fn shared_strings_are_counted_per_reference() {
        let lua = Lua::new();
        let t = eval(
            &lua,
            "local s = string.rep('x', 2^20) local t = {} for i = 1, 200 do t[i] = s end return t",
        );
        let cap = 4 << 20;
        assert!(matches!(to_json(&lua, &t, cap), Err(ConvertError::TooLarge(c)) if c == cap));
        assert!(matches!(
            to_json_lossy(&lua, &t, cap),
            Err(ConvertError::TooLarge(_))
        ));
        assert!(matches!(
            encode_json(&lua, &t, false, cap),
            Err(ConvertError::TooLarge(_))
        ));
        assert!(matches!(
            dump(&lua, &t, cap),
            Err(ConvertError::TooLarge(_))
        ));
        let keys = eval(
            &lua,
            "local t = {} for i = 1, 8 do t[string.rep('k', 2^20) .. i] = i end return t",
        );
        assert!(matches!(
            encode_json(&lua, &keys, false, cap),
            Err(ConvertError::TooLarge(_))
        ));
        assert_eq!(
            ConvertError::TooLarge(16 << 20).to_string(),
            "the result would be larger than 16 MiB"
        );
    }

    /// Sorting a table's keys once took the host three times what the table takes in Lua.
    #[test]
    fn sorting_keys_has_its_own_allowance() {
        let lua = Lua::new();
        let sparse = eval(
            &lua,
            "local t = {} for i = 1, 4e5 do t[i * 2] = i end return t",
        );
        for result in [
            encode_json(&lua, &sparse, false, 64 << 20).map(|_| ()),
            to_json(&lua, &sparse, 64 << 20).map(|_| ()),
        ] {
            assert!(matches!(result, Err(ConvertError::TooManyKeys(SORT_BYTES))));
        }
        let nested = eval(
            &lua,
            "local t = {} for i = 1, 1000 do t['k' .. i] = {a = i, b = {c = i}} end return {t, t}",
        );
        assert!(encode_json(&lua, &nested, false, 64 << 20).is_ok());
    }

    #[test]
    fn decoding_refuses_documents_that_would_expand_past_the_cap() {
        let lua = Lua::new();
        let many = format!("[{}0]", "0,".repeat(100_000));
        assert!(matches!(
            decode_json(&lua, many.as_bytes(), 1 << 20),
            Err(ConvertError::TooLarge(_))
        ));
        assert!(decode_json(&lua, many.as_bytes(), 16 << 20).is_ok());
        assert_eq!(count_values(br#"{"a,b:[{": [1, 2]}"#), 5);
    }

    #[test]
    fn dumps_read_like_lua() {
        let lua = Lua::new();
        let v = eval(&lua, r#"return {b = 1, a = "x", ["not id"] = {1, 2}}"#);
        assert_eq!(
            dump(&lua, &v, CAP).unwrap(),
            r#"{ ["not id"] = { 1, 2 }, a = "x", b = 1 }"#
        );
        let long = eval(&lua, "return {text = string.rep('y', 80)}");
        assert!(
            dump(&lua, &long, CAP)
                .unwrap()
                .starts_with("{\n  text = \"yyy")
        );
    }
}
