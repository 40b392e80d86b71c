//! `app` and `app.integrations.klaviyo`: read-only proxies over the Klaviyo functions (and,
//! under `app.mcp`, over MCP servers: see [`crate::mcp`], which builds its node with
//! [`Node::new`]).
//!
//! The proxies are userdata, not tables: `rawset` and `setmetatable` refuse userdata, and
//! mlua protects their metatable (`getmetatable` gives `false`), so no script can change what
//! `app` resolves to. An unknown name raises an error table (`unknown_function`, with a "Did
//! you mean" suggestion) instead of giving nil.
//!
//! `app.integrations.klaviyo` holds both functions and accounts, so a name unknown there is
//! told apart (see [`unknown_function_or_account`]): a typo of a function stays the
//! contract's `Unknown function: ...` (`unknown_function`); anything else says it is neither
//! a function nor a configured account, lists each apart, and is `unknown_name`.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use mlua::{
    AnyUserData, Function, Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods,
    Value as LuaValue,
};
use serde_json::{Value, json};

use kosmo_runtime::names::suggest;
use kosmo_runtime::{CallError, DEFAULT_ACCOUNT, ErrorCode, Host, catalog};

use crate::limits::{Budget, show_bytes};
use crate::location;
use crate::sandbox::{Prelude, error_table};
use crate::values::{self, ConvertError};

const REGISTRY_MAKE_INDEX: &str = "kosmo.make_index";
const REGISTRY_MAKE_NEWINDEX: &str = "kosmo.make_newindex";
const REGISTRY_NODE_ENTRIES: &str = "kosmo.node_entries";

/// One level of `app.integrations.klaviyo.<account>`.
#[derive(Clone)]
pub(crate) struct Node {
    /// Where it is, e.g. `app.integrations.klaviyo`.
    path: String,
    /// What it holds, by every accepted name.
    entries: Table,
    /// The names `pairs` and `tostring` show (short function names, accounts).
    listing: Vec<String>,
    /// What a missing name is called in the error (`function`, `integration`, `name`).
    what: &'static str,
    /// The accounts among the entries (only `app.integrations.klaviyo` has any): a missing
    /// name there is told apart from them.
    accounts: Vec<String>,
}

impl Node {
    /// A node at `path` holding `entries`, listing `listing`; a missing name is a `what`.
    pub(crate) fn new(
        path: String,
        entries: Table,
        listing: Vec<String>,
        what: &'static str,
    ) -> Node {
        Node {
            path,
            entries,
            listing,
            what,
            accounts: Vec::new(),
        }
    }

    /// The proxy: a userdata whose `__index` finds the entries in Lua (the prelude's
    /// `node_entries`), calling the host only for a missing name.
    pub(crate) fn create(self, lua: &Lua) -> mlua::Result<AnyUserData> {
        let entries = self.entries.clone();
        let node = lua.create_userdata(self)?;
        lua.named_registry_value::<Table>(REGISTRY_NODE_ENTRIES)?
            .raw_set(&node, entries)?;
        Ok(node)
    }

    /// The proxy as a [`Fixed`] node: `K` is its index in [`FIXED_INDEX`], one node each.
    fn create_fixed<const K: usize>(self, lua: &Lua) -> mlua::Result<AnyUserData>
    where
        Fixed<K>: UserData,
    {
        // A missing name: the entries' own `__index`, which raises the node's error.
        let make: Function = lua.named_registry_value(REGISTRY_MAKE_INDEX)?;
        let node = self.clone();
        let miss = lua.create_function(move |lua, (_, key): (LuaValue, LuaValue)| {
            lookup_in(lua, &node, key)
        })?;
        let missing = lua.create_table()?;
        missing.raw_set("__index", make.call::<Function>(miss)?)?;
        missing.raw_set("__metatable", false)?;
        self.entries.set_metatable(Some(missing))?;
        lua.set_named_registry_value(FIXED_INDEX[K], self.entries.clone())?;
        lua.create_userdata(Fixed::<K>(self))
    }

    /// `app.integrations.klaviyo (functions: ...)`, for `tostring` and `dump`.
    pub(crate) fn describe(&self) -> String {
        format!("{}: {}", self.path, self.listing.join(", "))
    }
}

impl UserData for Node {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field_with("__index", |lua| {
            let make: Function = lua.named_registry_value(REGISTRY_MAKE_INDEX)?;
            let remember = lua.create_function(|lua, f: Function| {
                location::remember_caller(lua, &f);
                Ok(())
            })?;
            make.call::<Function>((lua.create_function(lookup)?, remember))
        });
        fields.add_meta_field_with("__newindex", |lua| {
            let make: Function = lua.named_registry_value(REGISTRY_MAKE_NEWINDEX)?;
            make.call::<Function>(
                lua.create_function(|_, ud: AnyUserData| Ok(ud.borrow::<Node>()?.path.clone()))?,
            )
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.describe()));
        methods.add_meta_method(MetaMethod::Pairs, |lua, this, ()| pairs(lua, this));
    }
}

/// A node Lua looks names up in by itself: the `__index` of its metatable is its entries
/// table (registered as `FIXED_INDEX[K]`), whose own `__index` raises the error for a
/// missing name ([`Node::create_fixed`]). For the nodes every call goes through (`app`,
/// `app.integrations`, whose entries are no functions to remember the caller of): finding a
/// name there calls no function. One type each, since a metatable is per type.
pub(crate) struct Fixed<const K: usize>(Node);

/// Where the entries of `Fixed<K>` are registered for its metatable.
const FIXED_INDEX: [&str; 2] = ["kosmo.app_index", "kosmo.integrations_index"];

impl<const K: usize> UserData for Fixed<K> {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_meta_field_with("__index", |lua| {
            lua.named_registry_value::<Table>(FIXED_INDEX[K])
        });
        fields.add_meta_field_with("__newindex", |lua| {
            let make: Function = lua.named_registry_value(REGISTRY_MAKE_NEWINDEX)?;
            make.call::<Function>(lua.create_function(|_, ud: AnyUserData| {
                Ok(ud.borrow::<Fixed<K>>()?.0.path.clone())
            })?)
        });
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.0.describe()));
        methods.add_meta_method(MetaMethod::Pairs, |lua, this, ()| pairs(lua, &this.0));
    }
}

/// `pairs` of a node: a copy of what it lists.
fn pairs(lua: &Lua, node: &Node) -> mlua::Result<(Function, Table, LuaValue)> {
    let copy = lua.create_table()?;
    for name in &node.listing {
        copy.raw_set(
            name.as_str(),
            node.entries.raw_get::<LuaValue>(name.as_str())?,
        )?;
    }
    let next: Function = lua.named_registry_value("kosmo.next")?;
    Ok((next, copy, LuaValue::Nil))
}

/// `__index` past the prelude's own lookup (a missing name, or a node it does not know):
/// the entry, or `(nil, error table)` naming the closest known name.
fn lookup(lua: &Lua, (ud, key): (AnyUserData, LuaValue)) -> mlua::Result<(LuaValue, LuaValue)> {
    let node = ud.borrow::<Node>()?;
    lookup_in(lua, &node, key)
}

/// [`lookup`] in `node`.
fn lookup_in(lua: &Lua, node: &Node, key: LuaValue) -> mlua::Result<(LuaValue, LuaValue)> {
    let found: LuaValue = node.entries.raw_get(key.clone())?;
    if let LuaValue::Function(f) = &found {
        location::remember_caller(lua, f);
    }
    if !found.is_nil() {
        return Ok((found, LuaValue::Nil));
    }
    // Copied only up to what is compared or shown (past SUGGEST_BYTES it is neither).
    let full_name = match &key {
        LuaValue::String(s) => {
            let bytes = s.as_bytes();
            String::from_utf8_lossy(&bytes[..bytes.len().min(4 * SUGGEST_BYTES)]).into_owned()
        }
        other => format!("<{}>", other.type_name()),
    };
    let mut known: Vec<String> = Vec::new();
    for pair in node.entries.pairs::<String, LuaValue>() {
        known.push(pair?.0);
    }
    known.sort();
    let suggestion = if full_name.len() <= SUGGEST_BYTES {
        suggest(&full_name, known.iter().map(String::as_str)).map(str::to_owned)
    } else {
        None
    };
    let name = shown_name(&full_name);
    if !node.accounts.is_empty() {
        let error = unknown_function_or_account(node, &name, suggestion);
        return Ok((LuaValue::Nil, LuaValue::Table(error_table(lua, &error)?)));
    }
    let what = node.what;
    let mut message = format!("Unknown {what}: {}.{name}", node.path);
    match &suggestion {
        Some(s) => message.push_str(&format!(". Did you mean `{}.{s}`?", node.path)),
        None if node.listing.is_empty() => message.push_str(" (none is configured)"),
        None => message.push_str(&format!(" (known: {})", node.listing.join(", "))),
    }
    let code = if what == "function" {
        ErrorCode::UnknownFunction
    } else {
        ErrorCode::UnknownName
    };
    let error = json!({
        "code": code.as_str(),
        "status": null,
        "message": message,
        "function": name,
        "suggestion": suggestion.map(|s| format!("{}.{s}", node.path)),
    });
    Ok((LuaValue::Nil, LuaValue::Table(error_table(lua, &error)?)))
}

/// The error for `name`, missing from `app.integrations.klaviyo` (a node with accounts).
///
/// The code follows the closest name: `unknown_function` when it is a function (a typo of
/// one: the message is the contract's `Unknown function: ...`, unchanged), `unknown_name`
/// when it is an account or nothing is close (then the name may as well have been meant as
/// an account, e.g. one not configured yet, and the message says how to add it).
fn unknown_function_or_account(
    node: &Node,
    name: &str,
    suggestion: Option<String>,
) -> serde_json::Value {
    let path = &node.path;
    let close_to_function = suggestion
        .as_ref()
        .is_some_and(|s| !node.accounts.contains(s));
    let (code, mut message) = if close_to_function {
        (
            ErrorCode::UnknownFunction,
            format!("Unknown function: {path}.{name}"),
        )
    } else {
        let functions: Vec<&str> = node
            .listing
            .iter()
            .filter(|n| !node.accounts.contains(n))
            .map(String::as_str)
            .collect();
        let shown = path.strip_prefix("app.integrations.").unwrap_or(path);
        // Only a name that could be an account gets the command to add one.
        let add = if is_account_name(name) {
            format!(" (add one with `kosmo integrations:configure klaviyo --account {name}`)")
        } else {
            String::new()
        };
        let message = format!(
            "`{shown}.{name}` is neither a function nor a configured account. Accounts: {}{add}. \
             Functions: {}",
            node.accounts.join(", "),
            functions.join(", "),
        );
        (ErrorCode::UnknownName, message)
    };
    if let Some(s) = &suggestion {
        message.push_str(&format!(". Did you mean `{path}.{s}`?"));
    } else if code == ErrorCode::UnknownName {
        message.push('.');
    }
    json!({
        "code": code.as_str(),
        "status": null,
        "message": message,
        "function": name,
        "suggestion": suggestion.map(|s| format!("{path}.{s}")),
    })
}

/// Whether `name` may be given to `--account` (the rule of `kosmo integrations:configure`: a
/// letter, then letters, digits and `_`, at most 64): only then is the command suggested.
fn is_account_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Longest name compared for "Did you mean": no known name is longer than about 40
/// characters, so a longer one cannot be close, and the comparison costs its length times
/// theirs.
const SUGGEST_BYTES: usize = 100;

/// Most characters of an unknown name repeated in the error (a script may index with any
/// string, 10 MiB long).
const SHOWN_NAME_CHARS: usize = 64;

/// A missing name as the error repeats it: at most [`SHOWN_NAME_CHARS`] characters.
fn shown_name(name: &str) -> String {
    match name.char_indices().nth(SHOWN_NAME_CHARS) {
        Some((end, _)) => format!("{}...", &name[..end]),
        None => name.to_string(),
    }
}

/// The thread the current evaluation runs on: Klaviyo calls must be made from it (an async
/// call inside a script's coroutine would yield that coroutine instead).
#[derive(Clone, Default)]
pub(crate) struct MainThread(Arc<AtomicUsize>);

impl MainThread {
    pub(crate) fn set(&self, ptr: usize) {
        self.0.store(ptr, Ordering::SeqCst);
    }

    pub(crate) fn is(&self, ptr: usize) -> bool {
        self.0.load(Ordering::SeqCst) == ptr
    }
}

/// Keep the prelude's helpers where the proxies' metatables find them (before any node is
/// made).
pub(crate) fn register(lua: &Lua, prelude: &Prelude) -> mlua::Result<()> {
    lua.set_named_registry_value(REGISTRY_MAKE_INDEX, prelude.make_index.clone())?;
    lua.set_named_registry_value(REGISTRY_MAKE_NEWINDEX, prelude.make_newindex.clone())?;
    lua.set_named_registry_value(REGISTRY_NODE_ENTRIES, prelude.node_entries.clone())?;
    lua.set_named_registry_value("kosmo.next", prelude.next.clone())
}

/// What every call from Lua shares: the CPU budget paused while it waits, the thread calls
/// must come from, the cap on its arguments, and where a Klaviyo call waits for the
/// evaluation to make it.
#[derive(Clone)]
pub(crate) struct Calls {
    pub(crate) budget: Arc<Budget>,
    pub(crate) main: MainThread,
    pub(crate) argument_bytes: usize,
    pub(crate) slot: CallSlot,
}

/// A Klaviyo function of an account (`None`: the default).
pub(crate) struct Target {
    pub(crate) account: Option<String>,
    pub(crate) name: String,
}

/// A Klaviyo call a script made, for the evaluation to make (see [`start_function`]).
pub(crate) struct Request {
    pub(crate) target: Arc<Target>,
    pub(crate) args: Value,
}

/// Where a Klaviyo call passes between the script's thread and the evaluation driving it:
/// the function leaves its [`Request`] and yields; the evaluation makes the call and leaves
/// the outcome; the function, resumed, takes it.
///
/// Why not an mlua async function: that boxes the call's future (several KB: a large
/// allocation, which also makes the allocator consolidate its free lists) and runs mlua's
/// polling glue; together a sixth of what the Lua layer added to a call. Made by the
/// evaluation, the call lives inside the evaluation's own future.
#[derive(Clone, Default)]
pub(crate) struct CallSlot(Arc<Mutex<Slot>>);

#[derive(Default)]
struct Slot {
    request: Option<Request>,
    outcome: Option<Result<Value, CallError>>,
}

impl CallSlot {
    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a call waits to be made.
    pub(crate) fn requested(&self) -> bool {
        self.lock().request.is_some()
    }

    /// The call waiting to be made.
    pub(crate) fn take_request(&self) -> Option<Request> {
        self.lock().request.take()
    }

    /// The outcome of the call taken, for the function to take when resumed.
    pub(crate) fn finish(&self, outcome: Result<Value, CallError>) {
        self.lock().outcome = Some(outcome);
    }

    /// Forget what an evaluation left (one stopped by an error or an interrupt midway).
    pub(crate) fn clear(&self) {
        *self.lock() = Slot::default();
    }
}

/// Install `app` as a global: `app.integrations.klaviyo` when `integrations` is set (`kosmo
/// mcp:lua` has none), and the `others` (`mcp`) beside it.
pub(crate) fn install(
    lua: &Lua,
    prelude: &Prelude,
    host: Arc<Host>,
    calls: &Calls,
    integrations: bool,
    others: Vec<(&'static str, AnyUserData)>,
) -> mlua::Result<()> {
    let app_entries = lua.create_table()?;
    let mut app_listing = Vec::new();
    if integrations {
        let node = integrations_node(lua, prelude, host, calls)?;
        app_entries.raw_set("integrations", node)?;
        app_listing.push("integrations".to_string());
    }
    for (name, node) in others {
        app_entries.raw_set(name, node)?;
        app_listing.push(name.to_string());
    }
    let app = Node::new("app".into(), app_entries, app_listing, "name").create_fixed::<0>(lua)?;
    lua.globals().raw_set("app", app)
}

/// `app.integrations` (with `klaviyo` under it).
fn integrations_node(
    lua: &Lua,
    prelude: &Prelude,
    host: Arc<Host>,
    calls: &Calls,
) -> mlua::Result<AnyUserData> {
    let functions: Vec<&str> = catalog()
        .functions()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    let base = "app.integrations.klaviyo";
    let mut accounts: Vec<String> = vec![DEFAULT_ACCOUNT.to_string()];
    accounts.extend(
        host.account_names()
            .into_iter()
            .filter(|a| a != DEFAULT_ACCOUNT),
    );
    // A function's name wins over an account of the same name (configure refuses those).
    accounts.retain(|a| !functions.contains(&a.as_str()));

    // Every function of every account (`None`: the default), by the index its Lua function
    // gives `start`.
    let bound: Vec<Option<&str>> = std::iter::once(None)
        .chain(accounts.iter().map(|a| Some(a.as_str())))
        .collect();
    let targets: Vec<Arc<Target>> = bound
        .iter()
        .flat_map(|account| {
            functions.iter().map(move |name| {
                Arc::new(Target {
                    account: account.map(str::to_string),
                    name: name.to_string(),
                })
            })
        })
        .collect();
    let start = start_function(lua, host.clone(), calls.clone(), targets)?;
    let finish = finish_function(lua, calls.slot.clone())?;
    let pending = LuaValue::LightUserData(Lua::poll_pending());

    // The functions bound to `bound[b]`.
    let account_node = |b: usize| -> mlua::Result<(Table, Vec<String>)> {
        let entries = lua.create_table()?;
        for (i, name) in functions.iter().enumerate() {
            let target = b * functions.len() + i;
            let f: Function =
                prelude
                    .make_call
                    .call((start.clone(), finish.clone(), pending.clone(), target))?;
            entries.raw_set(*name, f.clone())?;
            entries.raw_set(format!("klaviyo_{name}"), f)?;
        }
        Ok((entries, functions.iter().map(|s| s.to_string()).collect()))
    };

    let (klaviyo_entries, mut klaviyo_listing) = account_node(0)?;
    for (b, account) in accounts.iter().enumerate() {
        let path = format!("{base}.{account}");
        let (entries, listing) = account_node(b + 1)?;
        let node = Node::new(path, entries, listing, "function").create(lua)?;
        klaviyo_entries.raw_set(account.as_str(), node)?;
        klaviyo_listing.push(account.clone());
    }
    let mut klaviyo = Node::new(base.into(), klaviyo_entries, klaviyo_listing, "function");
    klaviyo.accounts = accounts;
    let klaviyo = klaviyo.create(lua)?;

    let integrations_entries = lua.create_table()?;
    integrations_entries.raw_set("klaviyo", klaviyo)?;
    Node::new(
        "app.integrations".into(),
        integrations_entries,
        vec!["klaviyo".into()],
        "integration",
    )
    .create_fixed::<1>(lua)
}

/// A call's arguments as JSON, through the same capped conversion for every surface
/// ([`crate::Limits::argument_bytes`]): `Err` raises (out of memory), `Ok(Err)` is the
/// call's `invalid_argument` error. `path` names the call in messages (made only for one);
/// `note` follows the size message.
pub(crate) fn call_arguments(
    lua: &Lua,
    args: &LuaValue,
    argument_bytes: usize,
    function: &str,
    path: impl FnOnce() -> String,
    note: &str,
) -> mlua::Result<Result<serde_json::Value, CallError>> {
    Ok(match values::to_json(lua, args, argument_bytes) {
        Ok(v) => Ok(v),
        Err(ConvertError::Lua(e)) => return Err(e),
        Err(ConvertError::TooLarge(max)) => Err(CallError::invalid_argument(
            function,
            "args",
            format!(
                "{}: the arguments would be larger than {} as JSON{note}",
                path(),
                show_bytes(max)
            ),
        )),
        Err(e @ ConvertError::TooManyKeys(_)) => Err(CallError::invalid_argument(
            function,
            "args",
            format!("arguments: {e}"),
        )),
        Err(ConvertError::Invalid(m)) => Err(CallError::invalid_argument(
            function,
            "args",
            format!("arguments: {m}"),
        )),
    })
}

/// `start(target, args, yieldable)`: the first half of every Klaviyo function (see the
/// prelude's `make_call`), `target` its index in `targets` (a number: no strings to read on
/// every call). Checks that the call comes from the evaluation's thread and converts the
/// arguments (at most `argument_bytes` as JSON: see [`crate::Limits::argument_bytes`]),
/// then leaves the call in the [`CallSlot`] and gives `pending`, which the function yields
/// to the evaluation ([`crate::Session`] makes the call and resumes it). A call refused
/// here gives `false, error table` at once.
///
/// Where the thread cannot yield (inside a `table.sort` comparator, a `gsub` callback) the
/// call is polled once here, as the async function it replaced did: a call that ends at once
/// (refused by the host) gives its outcome, else it is dropped and `pending` given, whose
/// yield then fails with Lua's own error.
fn start_function(
    lua: &Lua,
    host: Arc<Host>,
    calls: Calls,
    targets: Vec<Arc<Target>>,
) -> mlua::Result<Function> {
    lua.create_function(
        move |lua, (target, args, yieldable): (usize, LuaValue, bool)| {
            let target = targets
                .get(target)
                .ok_or_else(|| mlua::Error::runtime("no such Klaviyo function"))?;
            let name = target.name.as_str();
            let refuse = |mut e: CallError| -> mlua::Result<(LuaValue, LuaValue)> {
                let account = target.account.as_deref().unwrap_or(DEFAULT_ACCOUNT);
                e.details.insert("account".into(), json!(account));
                Ok((
                    LuaValue::Boolean(false),
                    LuaValue::Table(error_table(lua, &e.to_json())?),
                ))
            };
            if !calls.main.is(lua.current_thread().to_pointer() as usize) {
                return refuse(CallError::new(
                    ErrorCode::Unsupported,
                    name,
                    "Klaviyo functions cannot be called from inside a coroutine; call them from the script's \
                     main code (or a function it calls)",
                ));
            }
            let path = || format!("app.integrations.klaviyo.{name}");
            let note = " (Klaviyo itself accepts at most 100 KB for a profile)";
            let args =
                match call_arguments(lua, &args, calls.argument_bytes, name, path, note)? {
                    Ok(v) => v,
                    Err(e) => return refuse(e),
                };
            let pending = LuaValue::LightUserData(Lua::poll_pending());
            if yieldable {
                calls.slot.lock().request = Some(Request {
                    target: target.clone(),
                    args,
                });
                return Ok((pending, LuaValue::Nil));
            }
            let mut call = pin!(host.invoke(target.account.as_deref(), name, &args));
            calls.budget.pause();
            let polled = call
                .as_mut()
                .poll(&mut Context::from_waker(Waker::noop()));
            calls.budget.resume();
            match polled {
                Poll::Ready(outcome) => outcome_values(lua, outcome),
                Poll::Pending => Ok((pending, LuaValue::Nil)),
            }
        },
    )
}

/// `finish() -> true, result | false, error table`: the outcome of the call the evaluation
/// made for the function [`start_function`] began.
fn finish_function(lua: &Lua, slot: CallSlot) -> mlua::Result<Function> {
    lua.create_function(move |lua, ()| {
        let outcome = slot.lock().outcome.take();
        match outcome {
            Some(outcome) => outcome_values(lua, outcome),
            None => outcome_values(
                lua,
                Err(CallError::new(
                    ErrorCode::Internal,
                    "klaviyo",
                    "the call's outcome went missing",
                )),
            ),
        }
    })
}

/// A call's outcome as the function gives it: `true, result` or `false, error table`.
fn outcome_values(
    lua: &Lua,
    outcome: Result<Value, CallError>,
) -> mlua::Result<(LuaValue, LuaValue)> {
    Ok(match outcome {
        Ok(value) => (LuaValue::Boolean(true), values::from_json(lua, &value)?),
        Err(e) => (
            LuaValue::Boolean(false),
            LuaValue::Table(error_table(lua, &e.to_json())?),
        ),
    })
}
