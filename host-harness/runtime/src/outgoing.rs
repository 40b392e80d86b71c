//! `wasi:http/outgoing-handler`: wasmtime-wasi-http 48's own `handle`, after which the
//! `request-options` the guest handed over are deleted. wasmtime-wasi-http reads them and
//! leaves them in the Store's resource table, one entry per request with options, so a Store
//! kept for an account's next calls would grow with every call. The rest of `wasi:http` is
//! wasmtime-wasi-http's, linked as it ships.

use wasmtime::component::{Linker, Resource};
use wasmtime_wasi_http::p2::bindings::http::{outgoing_handler, types::ErrorCode};
use wasmtime_wasi_http::p2::types::{HostFutureIncomingResponse, HostOutgoingRequest};
use wasmtime_wasi_http::{RequestOptions, WasiHttpView};

/// The interface, at the version wasmtime-wasi-http 48 implements (the linker also serves the
/// components that import an older 0.2 patch release).
const INTERFACE: &str = "wasi:http/outgoing-handler@0.2.12";

/// Add `wasi:http` as wasmtime-wasi-http ships it, with `handle` wrapped as above.
pub(crate) fn add_to_linker<T: WasiHttpView + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)?;
    linker.allow_shadowing(true);
    let defined = linker.instance(INTERFACE)?.func_wrap(
        "handle",
        |mut store,
         (request, options): (
            Resource<HostOutgoingRequest>,
            Option<Resource<RequestOptions>>,
        )| {
            let state: &mut T = store.data_mut();
            let mut http = state.http();
            // `handle` owns the options (an `own<request-options>` parameter): nothing else
            // refers to them once it has read them.
            let handed_over = options
                .as_ref()
                .map(|o| Resource::<RequestOptions>::new_own(o.rep()));
            let future = outgoing_handler::Host::handle(&mut http, request, options);
            if let Some(options) = handed_over {
                let _ = http.table.delete(options);
            }
            // As the generated binding does: an `error-code` goes to the guest, a trap traps.
            let result: Result<Resource<HostFutureIncomingResponse>, ErrorCode> = match future {
                Ok(future) => Ok(future),
                Err(e) => Err(e.downcast()?),
            };
            Ok((result,))
        },
    );
    linker.allow_shadowing(false);
    defined
}
