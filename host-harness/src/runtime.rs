//! The component runtime: compile the Klaviyo component once, then run any of its functions
//! for any account, each call in a fresh `Store` bound to that account (isolation between
//! tenants), with a memory cap, a CPU budget (fuel) and a wall-clock deadline.
//!
//! Arguments and results are JSON values converted through the component's WIT types
//! ([`crate::convert`]); where requests may go is [`crate::egress`]'s business.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use wasmtime::component::types::{ComponentExtern, ComponentItem};
use wasmtime::component::{
    Component, ComponentExportIndex, InstancePre, Linker, ResourceTable, Type, Val,
};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, ResourceLimiter, Store,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::cache;
use crate::convert::{self, ArgumentError};
use crate::egress::{Account, EgressHooks, EgressLimits, Exchange, ExchangeLog};
use crate::pool::Pools;

/// The Klaviyo component, built from the workspace's root crate by this crate's build script.
pub const COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/klaviyo.wasm"));

/// The WIT interface the component exports.
pub const INTERFACE: &str = "kosmo:klaviyo/klaviyo@0.1.0";

/// Limits of every call.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Largest linear memory a call's instance may grow to.
    pub memory_limit_bytes: usize,
    /// Guest work a call may do, in wasmtime fuel (about one unit per wasm instruction). Fuel
    /// is spent only while guest code runs: time blocked in HTTP or backoff sleeps is free,
    /// which an epoch deadline (wall-clock, checked when the guest resumes) would not allow.
    /// A real call uses well under a million.
    pub fuel: u64,
    /// Wall-clock deadline of a whole call, retries included.
    pub call_timeout: Duration,
    /// Limits on each HTTP request.
    pub egress: EgressLimits,
    /// Calls of one account that may run at once; more wait their turn, so one busy tenant
    /// cannot take every connection and instance from the others (and stays within Klaviyo's
    /// per-account rate limits sooner).
    pub max_concurrent_calls_per_account: usize,
    /// Calls that may be in flight at once across all accounts (instance slots reserved by
    /// the pooling allocator; fixed when the runtime is created).
    pub pooled_instances: u32,
    /// Extra trusted root certificates (PEM) for HTTPS base URLs, beside the web's roots:
    /// for a private proxy, or an emulator's test certificate. Fixed when the runtime is
    /// created.
    pub extra_roots_pem: Option<String>,
    /// Where compiled components are cached (`$KOSMO_HOME/cache` for the CLI); `None`
    /// compiles in memory every time.
    pub cache_dir: Option<std::path::PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            memory_limit_bytes: 64 * 1024 * 1024,
            fuel: 2_000_000_000,
            call_timeout: Duration::from_secs(60),
            egress: EgressLimits::default(),
            max_concurrent_calls_per_account: 16,
            pooled_instances: 256,
            extra_roots_pem: None,
            cache_dir: None,
        }
    }
}

/// Why a call failed: the contract's error table (`code`, `status`, `message`, `function`,
/// plus what Klaviyo said). It never contains the API key.
#[derive(Clone, Debug, PartialEq)]
pub struct CallError {
    /// Stable code, e.g. `invalid_argument`, `not_found`, `duplicate_profile`, `rate_limited`.
    pub code: String,
    /// HTTP status, when Klaviyo answered.
    pub status: Option<u16>,
    /// One readable line.
    pub message: String,
    /// The function's short name.
    pub function: String,
    /// The rest of what is known: `field`, `duplicate_profile_id`, `retry_after`,
    /// `klaviyo_code`, `title`, `detail`, `pointer`, `parameter`, `error_id`, `attempts`.
    pub details: Map<String, Value>,
}

impl CallError {
    /// An error with no details.
    pub fn new(code: &str, function: &str, message: impl Into<String>) -> Self {
        CallError {
            code: code.into(),
            status: None,
            message: message.into(),
            function: function.into(),
            details: Map::new(),
        }
    }

    fn argument(function: &str, e: ArgumentError) -> Self {
        let mut err = CallError::new("invalid_argument", function, e.message);
        err.details.insert("field".into(), Value::String(e.field));
        err
    }

    /// The error as one JSON object (the shape Lua and `--json` show).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("code".into(), self.code.clone().into());
        m.insert(
            "status".into(),
            self.status.map_or(Value::Null, Value::from),
        );
        m.insert("message".into(), self.message.clone().into());
        m.insert("function".into(), self.function.clone().into());
        for (k, v) in &self.details {
            m.insert(k.clone(), v.clone());
        }
        Value::Object(m)
    }

    /// Build from the component's `error` record (already converted to JSON).
    fn from_component(function: &str, record: Value) -> Self {
        let Value::Object(mut m) = record else {
            return CallError::new(
                "internal",
                function,
                "the component returned a malformed error",
            );
        };
        let kind = m
            .remove("kind")
            .and_then(|k| k.as_str().map(str::to_owned))
            .unwrap_or_default();
        let code = match kind.as_str() {
            "forbidden" => "permission_denied".to_string(),
            "server" => "server_error".to_string(),
            other => other.to_string(),
        };
        let message = m
            .remove("message")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let status = m
            .remove("status")
            .and_then(|v| v.as_u64())
            .map(|s| s as u16);
        // Klaviyo's own code would clash with ours: keep it under its own name.
        if let Some(k) = m.remove("code") {
            m.insert("klaviyo_code".into(), k);
        }
        m.retain(|_, v| !v.is_null());
        CallError {
            code,
            status,
            message,
            function: function.into(),
            details: m,
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} ({})", self.function, self.message, self.code)
    }
}

impl std::error::Error for CallError {}

/// What a successful call gave, with the HTTP exchanges it made.
#[derive(Clone, Debug)]
pub struct CallOutcome {
    /// The result (or the error) of the call.
    pub result: Result<Value, CallError>,
    /// Every HTTP request the call made, in order.
    pub exchanges: Vec<Exchange>,
    /// Wall-clock time of the call.
    pub duration: Duration,
}

/// One exported function, with its WIT types.
#[derive(Clone)]
pub struct FunctionInfo {
    /// Short (Lua) name, e.g. `create_profile`.
    pub name: String,
    /// The WIT name, e.g. `create-profile`.
    pub wit_name: String,
    /// The argument record's type.
    pub args: Type,
    /// The `result<T, error>` type.
    pub result: Type,
    export: ComponentExportIndex,
}

/// State of one call's Store: WASI (nothing granted), wasi-http with the account's hooks, and
/// the memory limits.
struct CallState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: EgressHooks,
    limits: MemoryLimiter,
}

/// Caps each linear memory and table of a call's instance, and remembers whether the cap was
/// hit, so a trap caused by it is reported as `memory_limit` rather than guessed from text.
struct MemoryLimiter {
    max_memory: usize,
    hit: bool,
}

/// Table elements an instance may have: generous for Rust components (a few hundred).
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory {
            self.hit = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.max_memory);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.hit = true;
            wasmtime::bail!("table limit of {MAX_TABLE_ELEMENTS} elements reached");
        }
        Ok(true)
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Loads the component once; calls it for any account. Cheap to clone and share.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
    config: Arc<RuntimeConfig>,
}

/// What is compiled once and shared by every call.
struct Inner {
    engine: Engine,
    pre: InstancePre<CallState>,
    functions: BTreeMap<String, FunctionInfo>,
    /// Keep-alive connections, one pool per account.
    pools: Arc<Pools>,
    /// One semaphore per account name, created on first use.
    tenants: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl Runtime {
    /// Compile the embedded component with these limits.
    pub fn new(config: RuntimeConfig) -> wasmtime::Result<Self> {
        Self::with_component(config, COMPONENT)
    }

    /// Compile a given component (tests use fixture components).
    pub fn with_component(config: RuntimeConfig, wasm: &[u8]) -> wasmtime::Result<Self> {
        let mut wasmtime_config = Config::new();
        wasmtime_config.consume_fuel(true);
        // Instances come from pre-reserved slots instead of fresh mmaps per call: the bench
        // measured ~100 us less per call, mostly mmap/munmap/mprotect kernel time.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(config.pooled_instances)
            .total_core_instances(config.pooled_instances * 4)
            .total_memories(config.pooled_instances * 2)
            .total_tables(config.pooled_instances * 4)
            .max_memory_size(config.memory_limit_bytes)
            .max_unused_warm_slots(64);
        wasmtime_config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasmtime_config)?;
        let component = match &config.cache_dir {
            Some(dir) => cache::load_or_compile(&engine, wasm, dir)?,
            None => Component::new(&engine, wasm)?,
        };
        let mut linker = Linker::<CallState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        let pre = linker.instantiate_pre(&component)?;
        let functions = exported_functions(&engine, &component)?;

        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                pre,
                functions,
                tenants: Mutex::new(HashMap::new()),
                pools: Arc::new(
                    Pools::new(config.extra_roots_pem.as_deref()).map_err(wasmtime::Error::msg)?,
                ),
            }),
            config: Arc::new(config),
        })
    }

    /// The same compiled component with other limits (no recompilation).
    pub fn with_config(&self, config: RuntimeConfig) -> Runtime {
        Runtime {
            inner: self.inner.clone(),
            config: Arc::new(config),
        }
    }

    /// The exported functions, by short name.
    pub fn functions(&self) -> impl Iterator<Item = &FunctionInfo> {
        self.inner.functions.values()
    }

    /// Look a function up by short (`get_profile`), full (`klaviyo_get_profile`) or WIT
    /// (`get-profile`) name.
    pub fn function(&self, name: &str) -> Option<&FunctionInfo> {
        let short = name.strip_prefix("klaviyo_").unwrap_or(name);
        self.inner.functions.get(&convert::snake(short))
    }

    fn tenant(&self, account: &str) -> Arc<Semaphore> {
        let mut tenants = self.inner.tenants.lock().unwrap_or_else(|p| p.into_inner());
        let permits = self.config.max_concurrent_calls_per_account.max(1);
        tenants
            .entry(account.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(permits)))
            .clone()
    }

    /// The limits calls run with.
    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Call `function` for `account` with JSON arguments.
    pub async fn call(
        &self,
        account: &Account,
        function: &str,
        args: &Value,
    ) -> Result<Value, CallError> {
        self.call_with_log(account, function, args).await.result
    }

    /// Like [`Runtime::call`], and also report the HTTP exchanges and the duration.
    pub async fn call_with_log(
        &self,
        account: &Account,
        function: &str,
        args: &Value,
    ) -> CallOutcome {
        let started = Instant::now();
        let log: ExchangeLog = Arc::new(Mutex::new(Vec::new()));
        let tenant = self.tenant(&account.name);
        let result = match tenant.acquire().await {
            Ok(_permit) => self.run(account, function, args, log.clone()).await,
            Err(_) => Err(CallError::new(
                "internal",
                function,
                "the account's call queue closed",
            )),
        };
        let exchanges = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
        CallOutcome {
            result,
            exchanges,
            duration: started.elapsed(),
        }
    }

    async fn run(
        &self,
        account: &Account,
        function: &str,
        args: &Value,
        log: ExchangeLog,
    ) -> Result<Value, CallError> {
        let Some(info) = self.function(function) else {
            let names = self.inner.functions.keys().map(String::as_str);
            let hint = convert::suggest(function, names)
                .map(|s| format!(" Did you mean {s}?"))
                .unwrap_or_default();
            return Err(CallError::new(
                "unknown_function",
                function,
                format!("Unknown function: {function}.{hint}"),
            ));
        };
        let name = info.name.clone();
        let arg =
            convert::args_to_val(&info.args, args).map_err(|e| CallError::argument(&name, e))?;

        let config = &*self.config;
        let state = CallState {
            // Nothing is granted: no environment, arguments, preopens, stdio or sockets.
            wasi: WasiCtxBuilder::new().build(),
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks: EgressHooks::new(
                account.clone(),
                config.egress.clone(),
                log,
                self.inner.pools.clone(),
            ),
            limits: MemoryLimiter {
                max_memory: config.memory_limit_bytes,
                hit: false,
            },
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limits);
        store
            .set_fuel(config.fuel)
            .map_err(|e| CallError::new("internal", &name, e.to_string()))?;

        let call = async {
            let instance = self.inner.pre.instantiate_async(&mut store).await?;
            let func = instance
                .get_func(&mut store, &info.export)
                .ok_or_else(|| wasmtime::format_err!("export {} missing", info.wit_name))?;
            let mut results = [Val::Bool(false)];
            func.call_async(&mut store, &[arg], &mut results).await?;
            wasmtime::Result::Ok(results)
        };
        let results = match tokio::time::timeout(config.call_timeout, call).await {
            Err(_) => {
                return Err(CallError::new(
                    "timeout",
                    &name,
                    format!(
                        "the call did not finish within {} s",
                        config.call_timeout.as_secs_f64()
                    ),
                ));
            }
            Ok(Err(trap)) => {
                let memory_hit = store.data().limits.hit;
                return Err(trap_error(&name, &trap, config, memory_hit));
            }
            Ok(Ok(results)) => results,
        };
        match &results[0] {
            Val::Result(Ok(value)) => {
                Ok(value.as_deref().map_or(Value::Null, convert::val_to_json))
            }
            Val::Result(Err(Some(error))) => Err(CallError::from_component(
                &name,
                convert::val_to_json(error),
            )),
            _ => Err(CallError::new(
                "internal",
                &name,
                "the component returned an unexpected value",
            )),
        }
    }
}

/// A trap or a limit hit, as a clear error (the Store is dropped with the call).
fn trap_error(
    function: &str,
    trap: &wasmtime::Error,
    config: &RuntimeConfig,
    memory_hit: bool,
) -> CallError {
    let text = format!("{trap:#}");
    if let Some(t) = trap.downcast_ref::<wasmtime::Trap>() {
        if *t == wasmtime::Trap::OutOfFuel {
            return CallError::new(
                "cpu_limit",
                function,
                format!(
                    "the plugin used more than its CPU budget of {} fuel",
                    config.fuel
                ),
            );
        }
    }
    if trap
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return CallError::new(
            "busy",
            function,
            format!(
                "all {} plugin instance slots are in use; retry shortly",
                config.pooled_instances
            ),
        );
    }
    if memory_hit {
        return CallError::new(
            "memory_limit",
            function,
            format!(
                "the plugin exceeded its memory limit of {} bytes",
                config.memory_limit_bytes
            ),
        );
    }
    CallError::new(
        "plugin_trap",
        function,
        format!(
            "the plugin failed: {}",
            text.lines().next().unwrap_or("trap")
        ),
    )
}

/// The interface's functions, with their argument and result types.
fn exported_functions(
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<BTreeMap<String, FunctionInfo>> {
    let interface = component
        .get_export_index(None, INTERFACE)
        .ok_or_else(|| wasmtime::format_err!("the component does not export {INTERFACE}"))?;
    let ty = component.component_type();
    let Some((
        _,
        ComponentExtern {
            ty: ComponentItem::ComponentInstance(instance),
            ..
        },
    )) = ty.exports(engine).find(|(n, _)| *n == INTERFACE)
    else {
        wasmtime::bail!("{INTERFACE} is not an instance export");
    };
    let mut functions = BTreeMap::new();
    for (wit_name, item) in instance.exports(engine) {
        let ComponentItem::ComponentFunc(func) = item.ty else {
            continue;
        };
        let params: Vec<(&str, Type)> = func.params().collect();
        let mut results = func.results();
        let ([(_, args)], Some(result)) = (params.as_slice(), results.next()) else {
            wasmtime::bail!("{wit_name} does not take one argument record and return one result");
        };
        let export = component
            .get_export_index(Some(&interface), wit_name)
            .ok_or_else(|| wasmtime::format_err!("no export index for {wit_name}"))?;
        let name = convert::snake(wit_name);
        functions.insert(
            name.clone(),
            FunctionInfo {
                name,
                wit_name: wit_name.to_string(),
                args: args.clone(),
                result,
                export,
            },
        );
    }
    Ok(functions)
}
