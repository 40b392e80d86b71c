//! `kosmo-runtime`: the embeddable runtime of the Klaviyo component. An agent host takes this
//! crate alone (no Lua, CLI or emulator in its tree) to run the component's functions for many
//! accounts in one process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kosmo_runtime::{Account, ApiKey, Runtime, RuntimeConfig};
//! let runtime = Runtime::new(RuntimeConfig::default())?; // compile once, share
//! let account = Account::new("shop-1", ApiKey::new("pk_..."), "https://a.klaviyo.com")?;
//! let profile = runtime
//!     .call(&account, "get_profile", &serde_json::json!({"profile_id": "01H..."}))
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! Organisation, one concern a module:
//! - [`runtime`]: the wasmtime engine and [`Runtime`] (built by [`RuntimeBuilder`]): one Store
//!   per call and account, memory, fuel and deadline limits, per-account concurrency, the
//!   stage timings every call reports;
//! - [`account`]: [`Account`], [`ApiKey`] (never printed), [`BaseUrl`];
//! - [`egress`]: the policy seam [`EgressPolicy`] with Klaviyo's rules ([`KlaviyoPolicy`]),
//!   apart from the wasi-http plumbing that applies it, clamps timeouts and caps bodies;
//! - `pool`: keep-alive connections, one pool per account, dropped when idle;
//! - `outgoing`: `wasi:http/outgoing-handler` as wasmtime-wasi-http ships it, less its leak of
//!   `request-options`;
//! - [`cache`]: the compiled-component cache;
//! - [`convert`]: JSON <-> component values, driven by the component's WIT types;
//! - [`catalog`]: the functions, their parameters, access kinds and docs, read from the WIT;
//! - [`policy`]: per-account permissions (allow, ask, deny) by access kind;
//! - [`host`]: named accounts with their policies, the permission check and call records,
//!   shared by every surface (Lua, `integrations:call`, MCP);
//! - [`error`]: the one error model, [`CallError`] with its [`ErrorCode`];
//! - [`names`]: how names are spelled and looked up.

#![deny(missing_docs)]

pub mod account;
pub mod cache;
pub mod catalog;
pub mod convert;
pub mod egress;
pub mod error;
pub mod host;
pub mod names;
mod outgoing;
pub mod policy;
mod pool;
pub mod runtime;

pub use account::{Account, ApiKey, BaseUrl};
pub use catalog::{Catalog, Kind, catalog};
pub use egress::{Denied, EgressLimits, EgressPolicy, Exchange, KlaviyoPolicy};
pub use error::{CallError, ErrorCode};
pub use host::{AccountConfig, Authorization, CallRecord, DEFAULT_ACCOUNT, Host, HostOptions};
pub use policy::{Access, Answer, Decision, Policy, Prompter, decide};
pub use runtime::{
    COMPONENT, CallOutcome, FunctionInfo, INTERFACE, Runtime, RuntimeBuilder, RuntimeConfig, Stages,
};
