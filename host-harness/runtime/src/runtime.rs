//! The component runtime: compile the Klaviyo component once, then run any of its functions
//! for any account, each call in a `Store` bound to that account (isolation between tenants),
//! with a memory cap, a CPU budget (fuel) and a wall-clock deadline. A Store and its instance
//! serve one account only: fresh for its first call, reused for its later calls while they
//! end cleanly ([`RuntimeConfig::reuse_instances`]).
//!
//! Arguments and results are JSON values converted through the component's WIT types
//! ([`crate::convert`]); where requests may go is [`crate::egress`]'s business.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
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

use crate::account::Account;
use crate::cache;
use crate::convert::{self, ArgumentError};
use crate::egress::{
    EgressHooks, EgressLimits, EgressPolicy, Exchange, ExchangeLog, KlaviyoPolicy,
};
use crate::error::{CallError, ErrorCode};
use crate::names;
use crate::pool::Pools;

/// The Klaviyo component, built from the workspace's root crate by this crate's build script.
pub const COMPONENT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/klaviyo.wasm"));

/// The WIT interface the component exports.
pub const INTERFACE: &str = "kosmo:klaviyo/klaviyo@0.1.0";

impl CallError {
    fn argument(function: &str, e: ArgumentError) -> Self {
        CallError::invalid_argument(function, &e.field, e.message)
    }
}

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
    /// How long an account's idle connections, its pool and its concurrency limiter are
    /// kept after its last call.
    pub idle_account_timeout: Duration,
    /// Run an account's next call in the instance its last call left, when that call ended
    /// cleanly: it saves instantiating and setting up a Store (about 80 µs of a 350-500 µs
    /// call in the bench). An instance only ever serves the account it was made for; it is
    /// dropped after a trap, a limit hit or a timeout, once it has grown past
    /// [`WARM_MEMORY_BYTES`], and with the account's other state when the account is idle.
    /// Off: every call runs in a fresh instance.
    pub reuse_instances: bool,
}

/// A kept instance whose linear memory grew past this is dropped rather than kept: a call
/// that read a large page should not pin its memory for the account's later calls.
pub const WARM_MEMORY_BYTES: usize = 4 << 20;

/// Host resources a kept Store may still hold after a call (see where it is checked).
const WARM_MAX_HOST_RESOURCES: usize = 16;

/// Instances kept per account between calls (more concurrent calls make fresh ones).
const WARM_PER_ACCOUNT: usize = 4;

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
            idle_account_timeout: Duration::from_secs(60),
            reuse_instances: true,
        }
    }
}

/// What a call gave, with the HTTP exchanges it made and where its time went.
#[derive(Clone, Debug)]
pub struct CallOutcome {
    /// The result (or the error) of the call.
    pub result: Result<Value, CallError>,
    /// Every HTTP request the call made, in order.
    pub exchanges: Vec<Exchange>,
    /// Wall-clock time of the call.
    pub duration: Duration,
    /// The call's stages, measured by the runtime itself (what the bench reports).
    pub stages: Stages,
}

/// Where one call's wall-clock time went. The stages follow each other, except `http`, which
/// is the part of `guest` spent waiting for response heads.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stages {
    /// Waiting for the account's concurrency limit.
    pub queued: Duration,
    /// JSON arguments to the component's argument record.
    pub convert_args: Duration,
    /// A fresh instance in a fresh Store (from the pre-instantiated component), or, when
    /// `reused`, only the export looked up in the account's kept instance.
    pub instantiate: Duration,
    /// The exported function, from call to return: the guest's work, wasi-http, retries.
    pub guest: Duration,
    /// Inside `guest`: from each request's send to its response head.
    pub http: Duration,
    /// The result record to JSON.
    pub convert_result: Duration,
    /// The call ran in the instance of an earlier call of the same account
    /// ([`RuntimeConfig::reuse_instances`]); `instantiate` is then only the Store's reset.
    pub reused: bool,
    /// Wasm instructions (fuel units) the instance's start-up ran.
    pub instantiate_fuel: u64,
    /// Wasm instructions (fuel units) the exported function ran: the guest's own work,
    /// independent of the machine's load (what a guest optimisation is measured by).
    pub guest_fuel: u64,
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
    /// The largest size any memory was grown to (whether the instance is worth keeping).
    largest: usize,
}

/// Host resources (fields, requests, bodies, streams, pollables) a Store may hold at once: a
/// call of the Klaviyo component holds about ten. A component that leaked some on every call
/// of a reused instance would otherwise grow the host's table without bound; past this, its
/// own new resources are refused (its calls fail), and the host stays bounded.
const MAX_HOST_RESOURCES: usize = 4096;

/// An empty resource table, capped at [`MAX_HOST_RESOURCES`].
fn resource_table() -> ResourceTable {
    let mut table = ResourceTable::new();
    table.set_max_capacity(MAX_HOST_RESOURCES);
    table
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
        self.largest = self.largest.max(desired);
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
    /// Where guest requests may go.
    policy: Arc<dyn EgressPolicy>,
    /// One concurrency limiter (and the kept instances) per account (the whole identity),
    /// created on first use.
    tenants: Mutex<Tenants>,
    /// Instances kept across all accounts, at most half the pool's slots (so kept instances
    /// never stop a call from getting a slot of its own; see [`Runtime::evict_warm`]).
    warm_count: std::sync::atomic::AtomicUsize,
}

/// Per-account state by account; one nobody holds is dropped at the next sweep.
struct Tenants {
    by_account: HashMap<Account, Arc<Tenant>>,
    last_sweep: Instant,
}

/// One account's concurrency limiter and the instances its finished calls left.
struct Tenant {
    limiter: Semaphore,
    warm: Mutex<Vec<Warm>>,
}

/// An instance a call ended cleanly in, with its Store, kept for the same account's next call.
struct Warm {
    store: Store<CallState>,
    instance: wasmtime::component::Instance,
    /// The limits it was made under: a runtime sharing this one's component with other limits
    /// ([`Runtime::with_config`]) makes its own.
    config: Arc<RuntimeConfig>,
}

/// Builds a [`Runtime`]: limits, the egress policy and the component, each optional.
///
/// ```no_run
/// # fn demo() -> wasmtime::Result<()> {
/// let runtime = kosmo_runtime::Runtime::builder()
///     .config(kosmo_runtime::RuntimeConfig::default())
///     .build()?;
/// # Ok(()) }
/// ```
pub struct RuntimeBuilder {
    config: RuntimeConfig,
    policy: Arc<dyn EgressPolicy>,
    component: Option<Vec<u8>>,
}

impl RuntimeBuilder {
    /// The limits of every call (default: [`RuntimeConfig::default`]).
    pub fn config(mut self, config: RuntimeConfig) -> Self {
        self.config = config;
        self
    }

    /// The egress policy (default: [`KlaviyoPolicy`]).
    pub fn egress_policy(mut self, policy: Arc<dyn EgressPolicy>) -> Self {
        self.policy = policy;
        self
    }

    /// Another component implementing the same WIT world (default: the embedded
    /// [`COMPONENT`]); the sandbox tests use a hostile one.
    pub fn component(mut self, wasm: &[u8]) -> Self {
        self.component = Some(wasm.to_vec());
        self
    }

    /// Compile (or load from the cache) and link the component.
    pub fn build(self) -> wasmtime::Result<Runtime> {
        let config = self.config;
        let wasm = self.component.as_deref().unwrap_or(COMPONENT);
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
        crate::outgoing::add_to_linker(&mut linker)?;
        let pre = linker.instantiate_pre(&component)?;
        let functions = exported_functions(&engine, &component)?;
        let pools = Pools::new(
            config.extra_roots_pem.as_deref(),
            config.idle_account_timeout,
        )
        .map_err(wasmtime::Error::msg)?;

        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                pre,
                functions,
                pools: Arc::new(pools),
                policy: self.policy,
                tenants: Mutex::new(Tenants {
                    by_account: HashMap::new(),
                    last_sweep: Instant::now(),
                }),
                warm_count: std::sync::atomic::AtomicUsize::new(0),
            }),
            config: Arc::new(config),
        })
    }
}

impl Runtime {
    /// A builder, for a policy or component other than the defaults.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            config: RuntimeConfig::default(),
            policy: Arc::new(KlaviyoPolicy),
            component: None,
        }
    }

    /// Compile the embedded component with these limits and Klaviyo's egress policy.
    pub fn new(config: RuntimeConfig) -> wasmtime::Result<Self> {
        Runtime::builder().config(config).build()
    }

    /// Compile a given component (tests use fixture components).
    pub fn with_component(config: RuntimeConfig, wasm: &[u8]) -> wasmtime::Result<Self> {
        Runtime::builder().config(config).component(wasm).build()
    }

    /// The same compiled component with other limits (no recompilation). The instance pool
    /// and trusted roots stay those the runtime was built with.
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
        self.inner.functions.get(&names::short_name(name))
    }

    /// How many accounts hold a connection pool and a concurrency limiter now (both are
    /// dropped once an account is idle for [`RuntimeConfig::idle_account_timeout`]).
    pub fn tracked_accounts(&self) -> (usize, usize) {
        let tenants = self.inner.tenants.lock().unwrap_or_else(|p| p.into_inner());
        (self.inner.pools.len(), tenants.by_account.len())
    }

    fn tenant(&self, account: &Account) -> Arc<Tenant> {
        let now = Instant::now();
        let mut tenants = self.inner.tenants.lock().unwrap_or_else(|p| p.into_inner());
        if now.duration_since(tenants.last_sweep) >= self.config.idle_account_timeout {
            // Only the map holds a tenant nobody is waiting on or running under; its kept
            // instances go with it.
            let inner = &self.inner;
            tenants.by_account.retain(|_, tenant| {
                let keep = Arc::strong_count(tenant) > 1;
                if !keep {
                    let kept = tenant.warm.lock().unwrap_or_else(|p| p.into_inner()).len();
                    inner
                        .warm_count
                        .fetch_sub(kept, std::sync::atomic::Ordering::Relaxed);
                }
                keep
            });
            tenants.last_sweep = now;
        }
        let permits = self.config.max_concurrent_calls_per_account.max(1);
        tenants
            .by_account
            .entry(account.clone())
            .or_insert_with(|| {
                Arc::new(Tenant {
                    limiter: Semaphore::new(permits),
                    warm: Mutex::new(Vec::new()),
                })
            })
            .clone()
    }

    /// An instance an earlier call of this tenant left, made under this runtime's limits.
    fn take_warm(&self, tenant: &Tenant) -> Option<Warm> {
        let mut warm = tenant.warm.lock().unwrap_or_else(|p| p.into_inner());
        let i = warm
            .iter()
            .rposition(|w| Arc::ptr_eq(&w.config, &self.config))?;
        self.inner
            .warm_count
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        Some(warm.swap_remove(i))
    }

    /// Keep an instance for the tenant's next call, if there is room.
    fn keep_warm(&self, tenant: &Tenant, kept: Warm) {
        use std::sync::atomic::Ordering;
        let global_cap = (self.config.pooled_instances as usize) / 2;
        let mut warm = tenant.warm.lock().unwrap_or_else(|p| p.into_inner());
        if warm.len() >= WARM_PER_ACCOUNT {
            return;
        }
        let reserved =
            self.inner
                .warm_count
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < global_cap).then_some(n + 1)
                });
        if reserved.is_ok() {
            warm.push(kept);
        }
    }

    /// Drop every kept instance of every account: their slots go back to the pool (when a
    /// call found the pool full).
    fn evict_warm(&self) -> bool {
        let tenants: Vec<Arc<Tenant>> = {
            let tenants = self.inner.tenants.lock().unwrap_or_else(|p| p.into_inner());
            tenants.by_account.values().cloned().collect()
        };
        let mut evicted = 0;
        for tenant in tenants {
            let dropped =
                std::mem::take(&mut *tenant.warm.lock().unwrap_or_else(|p| p.into_inner()));
            evicted += dropped.len();
        }
        self.inner
            .warm_count
            .fetch_sub(evicted, std::sync::atomic::Ordering::Relaxed);
        evicted > 0
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

    /// Like [`Runtime::call`], and also report the HTTP exchanges, the duration and the
    /// stages.
    pub async fn call_with_log(
        &self,
        account: &Account,
        function: &str,
        args: &Value,
    ) -> CallOutcome {
        let started = Instant::now();
        let log: ExchangeLog = Arc::new(Mutex::new(Vec::new()));
        let mut stages = Stages::default();
        let tenant = self.tenant(account);
        let result = match tenant.limiter.acquire().await {
            Ok(_permit) => {
                stages.queued = started.elapsed();
                self.run(&tenant, account, function, args, log.clone(), &mut stages)
                    .await
            }
            Err(_) => Err(CallError::new(
                ErrorCode::Internal,
                function,
                "the account's call queue closed",
            )),
        };
        drop(tenant);
        let exchanges = std::mem::take(&mut *log.lock().unwrap_or_else(|p| p.into_inner()));
        stages.http = exchanges.iter().map(|e| e.duration).sum();
        let result = result.map_err(|mut e| {
            crate::egress::name_where_it_went(&mut e, &exchanges);
            e
        });
        CallOutcome {
            result,
            exchanges,
            duration: started.elapsed(),
            stages,
        }
    }

    /// A fresh Store bound to `account`: nothing granted, the account's egress hooks, the
    /// memory cap.
    fn new_store(&self, account: &Account, log: ExchangeLog) -> Store<CallState> {
        let config = &*self.config;
        let state = CallState {
            // Nothing is granted: no environment, arguments, preopens, stdio or sockets.
            wasi: WasiCtxBuilder::new().build(),
            http: WasiHttpCtx::new(),
            table: resource_table(),
            hooks: EgressHooks {
                account: account.clone(),
                policy: self.inner.policy.clone(),
                limits: config.egress.clone(),
                log,
                pools: self.inner.pools.clone(),
            },
            limits: MemoryLimiter {
                max_memory: config.memory_limit_bytes,
                hit: false,
                largest: 0,
            },
        };
        let mut store = Store::new(&self.inner.engine, state);
        store.limiter(|s| &mut s.limits);
        store
    }

    async fn run(
        &self,
        tenant: &Tenant,
        account: &Account,
        function: &str,
        args: &Value,
        log: ExchangeLog,
        stages: &mut Stages,
    ) -> Result<Value, CallError> {
        let Some(info) = self.function(function) else {
            let hint =
                names::did_you_mean(function, self.inner.functions.keys().map(String::as_str));
            return Err(CallError::new(
                ErrorCode::UnknownFunction,
                function,
                format!("Unknown function: {function}.{hint}"),
            ));
        };
        let name = info.name.clone();
        let mark = Instant::now();
        let arg =
            convert::args_to_val(&info.args, args).map_err(|e| CallError::argument(&name, e))?;
        stages.convert_args = mark.elapsed();

        let config = &*self.config;
        let warm = if config.reuse_instances {
            self.take_warm(tenant)
        } else {
            None
        };
        let (mut store, kept) = match warm {
            Some(Warm {
                mut store,
                instance,
                ..
            }) => {
                // Everything a call may have changed is reset: its log, the limit flag, fuel.
                let state = store.data_mut();
                state.hooks.log = log;
                state.limits.hit = false;
                stages.reused = true;
                (store, Some(instance))
            }
            None => (self.new_store(account, log), None),
        };
        store
            .set_fuel(config.fuel)
            .map_err(|e| CallError::new(ErrorCode::Internal, &name, e.to_string()))?;

        let mut instantiated = None;
        let mut used = None;
        let mut fuel_after_start = config.fuel;
        let call = async {
            let mark = Instant::now();
            let instance = match kept {
                Some(instance) => instance,
                None => match self.inner.pre.instantiate_async(&mut store).await {
                    // Kept instances hold slots: give them back and try once more.
                    Err(e)
                        if e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                            .is_some()
                            && self.evict_warm() =>
                    {
                        self.inner.pre.instantiate_async(&mut store).await?
                    }
                    other => other?,
                },
            };
            used = Some(instance);
            let func = instance
                .get_func(&mut store, info.export)
                .ok_or_else(|| wasmtime::format_err!("export {} missing", info.wit_name))?;
            let ran = Instant::now();
            instantiated = Some(ran - mark);
            fuel_after_start = store.get_fuel().unwrap_or(config.fuel);
            let mut results = [Val::Bool(false)];
            func.call_async(&mut store, &[arg], &mut results).await?;
            wasmtime::Result::Ok((results, ran.elapsed()))
        };
        let outcome = tokio::time::timeout(config.call_timeout, call).await;
        stages.instantiate = instantiated.unwrap_or_default();
        let fuel_left = store.get_fuel().unwrap_or(0);
        stages.instantiate_fuel = config.fuel.saturating_sub(fuel_after_start);
        stages.guest_fuel = fuel_after_start.saturating_sub(fuel_left);
        let results = match outcome {
            Err(_) => {
                return Err(CallError::new(
                    ErrorCode::Timeout,
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
            Ok(Ok((results, guest))) => {
                stages.guest = guest;
                // Only a call that ran to its end leaves an instance fit for the next one, and
                // only while its Store holds few host resources: a clean call of the Klaviyo
                // component leaves none (`outgoing.rs` deletes what wasmtime-wasi-http 48
                // leaves), and a component that leaves some is renewed before they add up.
                if let Some(instance) = used
                    && config.reuse_instances
                    && store.data().limits.largest <= WARM_MEMORY_BYTES
                    && store.data_mut().table.iter_mut().count() <= WARM_MAX_HOST_RESOURCES
                {
                    self.keep_warm(
                        tenant,
                        Warm {
                            store,
                            instance,
                            config: self.config.clone(),
                        },
                    );
                }
                results
            }
        };
        let mark = Instant::now();
        let result = match &results[0] {
            Val::Result(Ok(value)) => {
                Ok(value.as_deref().map_or(Value::Null, convert::val_to_json))
            }
            Val::Result(Err(Some(error))) => Err(CallError::from_component(
                &name,
                convert::val_to_json(error),
            )),
            _ => Err(CallError::new(
                ErrorCode::Internal,
                &name,
                "the component returned an unexpected value",
            )),
        };
        stages.convert_result = mark.elapsed();
        result
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
    if let Some(t) = trap.downcast_ref::<wasmtime::Trap>()
        && *t == wasmtime::Trap::OutOfFuel
    {
        return CallError::new(
            ErrorCode::CpuLimit,
            function,
            format!(
                "the plugin used more than its CPU budget of {} fuel",
                config.fuel
            ),
        );
    }
    if trap
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return CallError::new(
            ErrorCode::Busy,
            function,
            format!(
                "all {} plugin instance slots are in use; retry shortly",
                config.pooled_instances
            ),
        );
    }
    if memory_hit {
        return CallError::new(
            ErrorCode::MemoryLimit,
            function,
            format!(
                "the plugin exceeded its memory limit of {} bytes",
                config.memory_limit_bytes
            ),
        );
    }
    CallError::new(
        ErrorCode::PluginTrap,
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
        let name = names::snake(wit_name);
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
