//! The harness of the Klaviyo component: a runtime library that agent hosts embed, the Lua
//! surface `app.integrations.klaviyo`, a stateful Klaviyo emulator, and the `kosmo` CLI.
//!
//! Organisation:
//! - [`runtime`]: wasmtime engine, one Store per call and account, limits;
//! - [`egress`]: the policy for the component's HTTP (allow-list, credentials, timeouts, caps);
//! - [`pool`]: keep-alive connections, one pool per account;
//! - [`cache`]: the compiled-component cache under `$KOSMO_HOME`;
//! - [`convert`]: JSON <-> component values, driven by the component's WIT types;
//! - [`emulator`]: a stateful, spec-validating Klaviyo emulator on loopback;
//! - [`docs`]: documentation generated at runtime from the WIT's doc comments;
//! - [`lua`]: the sandboxed Lua 5.4 surface `app.integrations.klaviyo`, with permissions;
//! - [`cli`]: the `kosmo` command (`integrations:lua`, `:call`, `:configure`, `:docs`).

#![deny(missing_docs)]

pub mod cache;
/// The `kosmo` command line.
pub mod cli;
pub mod convert;
/// Documentation generated from the WIT.
pub mod docs;
pub mod egress;
pub mod emulator;
/// The Lua surface.
pub mod lua;
pub mod pool;
pub mod runtime;

pub use egress::{Account, ApiKey, BaseUrl, EgressLimits};
pub use runtime::{CallError, CallOutcome, Runtime, RuntimeConfig};
