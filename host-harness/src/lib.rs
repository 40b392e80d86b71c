//! The harness of the Klaviyo component: a runtime library that agent hosts embed, the Lua
//! surface `app.integrations.klaviyo`, a stateful Klaviyo emulator, and the `kosmo` CLI.
//!
//! Organisation:
//! - [`runtime`]: wasmtime engine, one Store per call and account, limits;
//! - [`egress`]: the policy for the component's HTTP (allow-list, credentials, timeouts, caps);
//! - [`convert`]: JSON <-> component values, driven by the component's WIT types;
//! - [`emulator`]: a stateful, spec-validating Klaviyo emulator on loopback.

#![deny(missing_docs)]

pub mod convert;
pub mod egress;
pub mod emulator;
pub mod runtime;

pub use egress::{Account, ApiKey, BaseUrl, EgressLimits};
pub use runtime::{CallError, CallOutcome, Runtime, RuntimeConfig};
