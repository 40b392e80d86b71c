//! `app` and `app.integrations.klaviyo`: read-only proxies over the Klaviyo functions (and,
//! under `app.mcp`, over MCP servers: see [`crate::mcp`], which builds its node with
//! [`Node::new`]).
//!
//! The proxies are userdata, not tables: `rawset` and `setmetatable` refuse userdata, and
//! mlua protects their metatable (`getmetatable` gives `false`), so no script can change what
//! `app` resolves to. An unknown name raises an error table (`unknown_function`, with a "Did
//! you mean" suggestion) instead of giving nil.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mlua::{
    AnyUserData, Function, Lua, MetaMethod, Table, UserData, UserDataFields, UserDataMethods,
    Value as LuaValue,
};
use serde_json::json;

use kosmo_runtime::names::suggest;
use kosmo_runtime::{CallError, DEFAULT_ACCOUNT, ErrorCode, Host, catalog};

use crate::limits::{Budget, show_bytes};
use crate::sandbox::{Prelude, error_table};
use crate::values::{self, ConvertError};

const REGISTRY_MAKE_INDEX: &str = "kosmo.make_index";
const REGISTRY_MAKE_NEWINDEX: &str = "kosmo.make_newindex";

/// One level of `app.integrations.klaviyo.<account>`.
pub(crate) struct Node {
    /// Where it is, e.g. `app.integrations.klaviyo`.
    path: String,
    /// What it holds, by every accepted name.
    entries: Table,
    /// The names `pairs` and `tostring` show (short function names, accounts).
    listing: Vec<String>,
    /// What a missing name is called in the error (`function`, `integration`, `name`).
    what: &'static str,
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
        }
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
            make.call::<Function>(lua.create_function(lookup)?)
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
        methods.add_meta_method(MetaMethod::Pairs, |lua, this, ()| {
            let copy = lua.create_table()?;
            for name in &this.listing {
                copy.raw_set(
                    name.as_str(),
                    this.entries.raw_get::<LuaValue>(name.as_str())?,
                )?;
            }
            let next: Function = lua.named_registry_value("kosmo.next")?;
            Ok((next, copy, LuaValue::Nil))
        });
    }
}

/// `__index`: the entry, or `(nil, error table)` naming the closest known name.
fn lookup(lua: &Lua, (ud, key): (AnyUserData, LuaValue)) -> mlua::Result<(LuaValue, LuaValue)> {
    let node = ud.borrow::<Node>()?;
    let found: LuaValue = node.entries.raw_get(key.clone())?;
    if !found.is_nil() {
        return Ok((found, LuaValue::Nil));
    }
    let name = match &key {
        LuaValue::String(s) => s.to_string_lossy(),
        other => format!("<{}>", other.type_name()),
    };
    let mut known: Vec<String> = Vec::new();
    for pair in node.entries.pairs::<String, LuaValue>() {
        known.push(pair?.0);
    }
    known.sort();
    let suggestion = suggest(&name, known.iter().map(String::as_str)).map(str::to_owned);
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
    lua.set_named_registry_value("kosmo.next", prelude.next.clone())
}

/// What every call from Lua shares: the CPU budget paused while it waits, the thread calls
/// must come from, and the cap on its arguments.
#[derive(Clone)]
pub(crate) struct Calls {
    pub(crate) budget: Arc<Budget>,
    pub(crate) main: MainThread,
    pub(crate) argument_bytes: usize,
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
    let app = lua.create_userdata(Node::new("app".into(), app_entries, app_listing, "name"))?;
    lua.globals().raw_set("app", app)
}

/// `app.integrations` (with `klaviyo` under it).
fn integrations_node(
    lua: &Lua,
    prelude: &Prelude,
    host: Arc<Host>,
    calls: &Calls,
) -> mlua::Result<AnyUserData> {
    let invoke = invoke_function(lua, host.clone(), calls.clone())?;
    let functions: Vec<&str> = catalog()
        .functions()
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    let base = "app.integrations.klaviyo";

    // Functions bound to one account (`None`: the default).
    let account_node = |account: Option<&str>| -> mlua::Result<(Table, Vec<String>)> {
        let entries = lua.create_table()?;
        for name in &functions {
            let f: Function = prelude.make_fn.call((invoke.clone(), account, *name))?;
            entries.raw_set(*name, f.clone())?;
            entries.raw_set(format!("klaviyo_{name}"), f)?;
        }
        Ok((entries, functions.iter().map(|s| s.to_string()).collect()))
    };

    let (klaviyo_entries, mut klaviyo_listing) = account_node(None)?;
    let mut accounts: Vec<String> = vec![DEFAULT_ACCOUNT.to_string()];
    accounts.extend(
        host.account_names()
            .into_iter()
            .filter(|a| a != DEFAULT_ACCOUNT),
    );
    for account in &accounts {
        // A function's name wins over an account of the same name (configure refuses those).
        if functions.contains(&account.as_str()) {
            continue;
        }
        let path = format!("{base}.{account}");
        let (entries, listing) = account_node(Some(account))?;
        let node = lua.create_userdata(Node {
            path,
            entries,
            listing,
            what: "function",
        })?;
        klaviyo_entries.raw_set(account.as_str(), node)?;
        klaviyo_listing.push(account.clone());
    }
    let klaviyo = lua.create_userdata(Node {
        path: base.into(),
        entries: klaviyo_entries,
        listing: klaviyo_listing,
        what: "function",
    })?;

    let integrations_entries = lua.create_table()?;
    integrations_entries.raw_set("klaviyo", klaviyo)?;
    lua.create_userdata(Node {
        path: "app.integrations".into(),
        entries: integrations_entries,
        listing: vec!["klaviyo".into()],
        what: "integration",
    })
}

/// A call's arguments as JSON, through the same capped conversion for every surface
/// ([`crate::Limits::argument_bytes`]): `Err` raises (out of memory), `Ok(Err)` is the
/// call's `invalid_argument` error. `path` names the call in messages; `note` follows the
/// size message.
pub(crate) fn call_arguments(
    lua: &Lua,
    args: &LuaValue,
    argument_bytes: usize,
    function: &str,
    path: &str,
    note: &str,
) -> mlua::Result<Result<serde_json::Value, CallError>> {
    Ok(match values::to_json(lua, args, argument_bytes) {
        Ok(v) => Ok(v),
        Err(ConvertError::Lua(e)) => return Err(e),
        Err(ConvertError::TooLarge(max)) => Err(CallError::invalid_argument(
            function,
            "args",
            format!(
                "{path}: the arguments would be larger than {} as JSON{note}",
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

/// `invoke(account, name, args) -> true, result | false, error table`: the one Rust entry
/// point of every Klaviyo function. The arguments may take at most `argument_bytes` as JSON
/// (see [`crate::Limits::argument_bytes`]).
fn invoke_function(lua: &Lua, host: Arc<Host>, calls: Calls) -> mlua::Result<Function> {
    lua.create_async_function(move |lua, (account, name, args): (Option<String>, String, LuaValue)| {
        let host = host.clone();
        let budget = calls.budget.clone();
        let argument_bytes = calls.argument_bytes;
        let on_main = calls.main.is(lua.current_thread().to_pointer() as usize);
        async move {
            let account_name = account.clone().unwrap_or_else(|| DEFAULT_ACCOUNT.to_string());
            let refuse = |mut e: CallError| -> mlua::Result<(bool, LuaValue)> {
                e.details.insert("account".into(), json!(account_name));
                Ok((false, LuaValue::Table(error_table(&lua, &e.to_json())?)))
            };
            if !on_main {
                return refuse(CallError::new(
                    ErrorCode::Unsupported,
                    &name,
                    "Klaviyo functions cannot be called from inside a coroutine; call them from the script's \
                     main code (or a function it calls)",
                ));
            }
            let path = format!("app.integrations.klaviyo.{name}");
            let note = " (Klaviyo itself accepts at most 100 KB for a profile)";
            let args = match call_arguments(&lua, &args, argument_bytes, &name, &path, note)? {
                Ok(v) => v,
                Err(e) => return refuse(e),
            };
            budget.pause();
            let result = host.invoke(account.as_deref(), &name, &args).await;
            budget.resume();
            match result {
                Ok(value) => Ok((true, values::from_json(&lua, &value)?)),
                Err(e) => Ok((false, LuaValue::Table(error_table(&lua, &e.to_json())?))),
            }
        }
    })
}
