//! `kosmo integrations:call klaviyo.<fn> --args '{...}'` (or `--name value` pairs): one call,
//! with the same permissions, redaction and envelope as a script.

use std::time::Instant;

use serde_json::{Map, Value};

use kosmo_runtime::catalog;
use kosmo_runtime::names::{self, did_you_mean};

use crate::args::{CallArgs, RunOptions};
use crate::context::Context;
use crate::envelope::Envelope;
use crate::run::usage;
use crate::watchdog::tokio_runtime;

/// The function's short name from `klaviyo.<fn>` (or `app.integrations.klaviyo.<fn>`, or a
/// bare name).
fn function_name(text: &str) -> Result<String, String> {
    let t = names::strip_path(text.trim());
    let name = match t.split_once('.') {
        Some(("klaviyo", name)) => name,
        Some((other, _)) => {
            return Err(format!(
                "unknown integration `{other}`: only `klaviyo` is available"
            ));
        }
        None => t,
    };
    match catalog().function(name) {
        Some(f) => Ok(f.name.clone()),
        None => {
            let paths: Vec<String> = catalog()
                .functions()
                .iter()
                .map(|f| format!("klaviyo.{}", f.name))
                .collect();
            let hint = did_you_mean(&format!("klaviyo.{name}"), paths.iter().map(String::as_str));
            Err(format!("Unknown function: klaviyo.{name}.{hint}"))
        }
    }
}

/// Pull the command's own flags out of the trailing pairs (clap stops at the first unknown
/// `--name`), then read the rest as arguments, typed by the function's parameters.
fn parse_pairs(
    function: &str,
    pairs: &[String],
    args: &mut CallArgs,
) -> Result<Map<String, Value>, String> {
    let doc = catalog()
        .function(function)
        .expect("checked by function_name");
    let mut out = Map::new();
    let mut i = 0;
    while i < pairs.len() {
        let item = &pairs[i];
        let Some(flag) = item.strip_prefix("--") else {
            return Err(format!(
                "unexpected `{item}`: arguments are `--name value` pairs"
            ));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        match name.as_str() {
            "json" | "force" | "sandbox" if inline.is_none() => {
                match name.as_str() {
                    "json" => args.run.json = true,
                    "force" => args.run.force = true,
                    _ => args.run.sandbox = true,
                }
                i += 1;
                continue;
            }
            _ => {}
        }
        let value = match inline {
            Some(v) => v,
            None => {
                i += 1;
                pairs
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("`--{name}` needs a value"))?
            }
        };
        i += 1;
        match name.as_str() {
            "account" => args.account = Some(value),
            "args" => args.args = Some(value),
            _ => {
                let key = name.replace('-', "_");
                let ty = doc
                    .params
                    .iter()
                    .find(|p| p.name == key)
                    .map(|p| p.ty.as_str())
                    .unwrap_or("string");
                out.insert(key, typed(ty, &value));
            }
        }
    }
    Ok(out)
}

/// A command-line text as the parameter's type wants it: numbers, booleans and JSON objects
/// are parsed; text stays text (so `--first_name 123` is the name "123").
fn typed(ty: &str, text: &str) -> Value {
    let parsed = serde_json::from_str::<Value>(text).ok();
    match (ty, parsed) {
        ("integer" | "number", Some(v @ Value::Number(_))) => v,
        ("boolean", Some(v @ Value::Bool(_))) => v,
        (t, Some(v @ Value::Object(_))) if t.starts_with("table") => v,
        _ => Value::String(text.to_string()),
    }
}

/// `integrations:call`.
pub(super) fn call(mut args: CallArgs) -> i32 {
    let function = match function_name(&args.function) {
        Ok(f) => f,
        Err(message) => return usage(&args.run, &message),
    };
    let pairs = std::mem::take(&mut args.pairs);
    let from_pairs = match parse_pairs(&function, &pairs, &mut args) {
        Ok(p) => p,
        Err(message) => return usage(&args.run, &message),
    };
    let mut call_args = match &args.args {
        None => Map::new(),
        Some(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return usage(&args.run, "--args must be a JSON object"),
            Err(e) => return usage(&args.run, &format!("--args is not valid JSON: {e}")),
        },
    };
    call_args.extend(from_pairs);
    let options: RunOptions = args.run.clone();
    let runtime = match tokio_runtime() {
        Ok(rt) => rt,
        Err(e) => return usage(&options, &format!("cannot start the async runtime: {e}")),
    };
    let exit = runtime.block_on(async {
        let ctx = match Context::build(&options).await {
            Ok(ctx) => ctx,
            Err(e) => return e.report(&options),
        };
        let started = Instant::now();
        let result = ctx
            .host
            .invoke(
                args.account.as_deref(),
                &function,
                &Value::Object(call_args),
            )
            .await;
        let calls: Vec<Value> = ctx
            .host
            .take_records()
            .iter()
            .map(|r| r.to_json())
            .collect();
        let (success, error, result) = match result {
            Ok(v) => (true, None, vec![v]),
            Err(e) => (false, Some(e.to_json()), Vec::new()),
        };
        let envelope = Envelope {
            success,
            output: String::new(),
            error,
            result,
            execution_time_ms: started.elapsed().as_millis() as u64,
            memory_usage: 0,
            integration_calls: calls,
            meta: ctx.meta(),
        };
        envelope.print(options.json, &ctx.redactor)
    });
    runtime.shutdown_background();
    exit
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_typed_pairs() {
        assert_eq!(function_name("klaviyo.get_profile").unwrap(), "get_profile");
        assert_eq!(
            function_name("app.integrations.klaviyo.klaviyo_list_lists").unwrap(),
            "list_lists"
        );
        assert!(
            function_name("klaviyo.get_profil")
                .unwrap_err()
                .contains("klaviyo.get_profile")
        );
        assert!(function_name("shopify.x").is_err());
        assert_eq!(typed("integer", "5"), json!(5));
        assert_eq!(typed("string", "5"), json!("5"));
        assert_eq!(typed("table (JSON object)", r#"{"a":1}"#), json!({"a": 1}));
    }
}
