//! `kosmo integrations:check [--account NAME] [--json] [--sandbox]`: prove that an account's
//! key works with the cheapest read there is (`list_lists` with `limit = 1`: one request for
//! one list), and say how long Klaviyo took to answer.

use serde_json::{Value, json};

use kosmo_runtime::DEFAULT_ACCOUNT;

use crate::args::CheckArgs;
use crate::context::Context;
use crate::envelope::Envelope;
use crate::run::usage;
use crate::watchdog::tokio_runtime;

/// The read that proves a key: a list function with the smallest page.
const CHECK_FUNCTION: &str = "list_lists";

/// `integrations:check`.
pub(super) fn check(args: CheckArgs) -> i32 {
    let options = args.run.clone();
    let runtime = match tokio_runtime() {
        Ok(rt) => rt,
        Err(e) => return usage(&options, &format!("cannot start the async runtime: {e}")),
    };
    let exit = runtime.block_on(async {
        // The component is loaded first, so the time reported is the call's, not a compile's.
        let ctx = match Context::build_loaded(&options).await {
            Ok(ctx) => ctx,
            Err(e) => return e.report(&options),
        };
        let name = args.account.as_deref().unwrap_or(DEFAULT_ACCOUNT);
        let result = ctx
            .host
            .invoke(Some(name), CHECK_FUNCTION, &json!({"limit": 1}))
            .await;
        let records = ctx.host.take_records();
        // The call's own time (a permission question's wait is not the account's).
        let ms = records
            .first()
            .map(|r| r.duration.as_millis() as u64)
            .unwrap_or(0);
        let base_url = ctx.base_urls.get(name).cloned();
        let mut envelope = Envelope {
            success: result.is_ok(),
            output: String::new(),
            error: None,
            result: Vec::new(),
            execution_time_ms: ms,
            memory_usage: 0,
            integration_calls: records.iter().map(|r| r.to_json()).collect(),
            meta: ctx.meta(),
        };
        match result {
            Ok(_) => {
                // What was listed is not shown: the check proves the key, nothing more.
                envelope.result = vec![json!({
                    "account": name,
                    "base_url": base_url,
                    "duration_ms": ms,
                })];
                if options.json {
                    return envelope.print(true, &ctx.redactor);
                }
                let line = format!(
                    "ok: account `{name}` ({}) answered in {ms} ms",
                    base_url.as_deref().unwrap_or("?")
                );
                println!("{}", ctx.redactor.text(&line));
                0
            }
            Err(e) => {
                envelope.error = Some(e.to_json());
                if let Some(url) = &base_url
                    && let Some(Value::Object(error)) = &mut envelope.error
                {
                    error.insert("base_url".into(), json!(url));
                }
                envelope.print(options.json, &ctx.redactor)
            }
        }
    });
    runtime.shutdown_background();
    exit
}
