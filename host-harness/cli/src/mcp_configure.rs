//! `kosmo mcp:configure NAME (--command CMD [--arg A]... [--env K=V]... | --url URL
//! [--header K=V]...) [--read P] [--write P]`, `--list`, `NAME --remove`: the servers of
//! `$KOSMO_HOME/mcp.json` (written `0600` by `kosmo_mcp::config::add_server`).
//!
//! Nothing it prints shows an `env` or header value (they often hold tokens): `--list` shows
//! their names only, and the values given on the command line are cut from every message.
//! With `--json` it prints one envelope (`success`, `result`, `error`, `meta`), usage errors
//! included, as the other commands do.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use kosmo_mcp::config::{
    self, add_server, check_server_name, kosmo_home, parse_key_value, remove_server,
};
use kosmo_mcp::{McpConfig, Permissions, Transport};
use kosmo_runtime::ErrorCode;

use crate::args::{EXIT_FAILURE, EXIT_USAGE, McpConfigureArgs};
use crate::envelope::Envelope;
use crate::redact::Redactor;

/// `mcp:configure`.
pub(super) fn configure(args: McpConfigureArgs) -> i32 {
    // Every value given with --env or --header is a possible secret.
    let values = args
        .env
        .iter()
        .chain(&args.headers)
        .filter_map(|kv| kv.split_once('=').map(|(_, v)| v.to_string()))
        .filter(|v| v.len() >= 4);
    let redactor = Redactor::new(values);
    let outcome = run(&args);
    let mut meta = Map::new();
    meta.insert("kosmo_version".into(), json!(env!("CARGO_PKG_VERSION")));
    match outcome {
        Ok((text, value)) => {
            if args.json {
                let envelope = Envelope {
                    success: true,
                    output: String::new(),
                    error: None,
                    result: vec![value],
                    execution_time_ms: 0,
                    memory_usage: 0,
                    integration_calls: Vec::new(),
                    meta,
                };
                envelope.print(true, &redactor)
            } else {
                println!("{}", redactor.text(&text));
                0
            }
        }
        Err((exit, message)) => {
            let code = if exit == EXIT_USAGE {
                ErrorCode::Usage
            } else {
                ErrorCode::Setup
            };
            if args.json {
                Envelope::failure(code, &message, meta).print(true, &redactor);
            } else {
                eprintln!("error: {code}: {}", redactor.text(&message));
            }
            exit
        }
    }
}

type Outcome = Result<(String, Value), (i32, String)>;

fn run(args: &McpConfigureArgs) -> Outcome {
    let usage = |m: String| (EXIT_USAGE, m);
    if args.list {
        return list();
    }
    let name = args.name.clone().unwrap_or_default();
    check_server_name(&name).map_err(usage)?;
    let home =
        kosmo_home().ok_or_else(|| usage("set KOSMO_HOME or HOME to store MCP servers".into()))?;
    if args.remove {
        let removed = remove_server(&home, &name).map_err(|e| (EXIT_FAILURE, e.to_string()))?;
        let path = home.join(config::HOME_FILE);
        if !removed {
            return Err(usage(format!(
                "no MCP server `{name}` in {} to remove",
                path.display()
            )));
        }
        let text = format!("Removed MCP server `{name}` from {}", path.display());
        return Ok((
            text,
            json!({"removed": name, "path": path.display().to_string()}),
        ));
    }
    let pairs = |items: &[String]| -> Result<BTreeMap<String, String>, (i32, String)> {
        items
            .iter()
            .map(|kv| parse_key_value(kv).map_err(usage))
            .collect()
    };
    let transport = match (&args.command, &args.url) {
        (Some(command), None) => {
            Transport::stdio(command.clone(), args.args.clone(), pairs(&args.env)?)
        }
        (None, Some(url)) => Transport::http(url.clone(), pairs(&args.headers)?),
        _ => {
            return Err(usage(format!(
                "give --command CMD (a stdio server) or --url URL (a streamable-HTTP server) for `{name}`"
            )));
        }
    };
    let permissions = (args.read.is_some() || args.write.is_some()).then_some(Permissions {
        read: args.read,
        write: args.write,
    });
    let (path, replaced) = add_server(&home, &name, &transport, permissions).map_err(|e| {
        // A bad name, URL, variable or header name is the caller's; an unreadable file is not.
        let exit = if e.path.is_none() {
            EXIT_USAGE
        } else {
            EXIT_FAILURE
        };
        (exit, e.to_string())
    })?;
    let verb = if replaced { "Replaced" } else { "Added" };
    let text = format!(
        "{verb} MCP server `{name}` ({}) in {}",
        transport.kind(),
        path.display()
    );
    Ok((
        text,
        json!({"name": name, "transport": transport.kind(), "replaced": replaced, "path": path.display().to_string()}),
    ))
}

/// The servers of both files, without any `env` or header value.
fn list() -> Outcome {
    let config = McpConfig::load_default().map_err(|e| (EXIT_USAGE, e.to_string()))?;
    let entries: Vec<Value> = config.entries().map(|e| e.redacted_json()).collect();
    if entries.is_empty() {
        let text = "No MCP servers: add one with `kosmo mcp:configure NAME --command CMD` or in ./.mcp.json";
        return Ok((text.to_string(), Value::Array(entries)));
    }
    let lines: Vec<String> = entries.iter().map(describe).collect();
    Ok((lines.join("\n"), Value::Array(entries)))
}

/// One line: name, where it runs, the names of its variables or headers, its policy, its file.
fn describe(entry: &Value) -> String {
    let s = |k: &str| entry.get(k).and_then(Value::as_str).unwrap_or_default();
    let names = |k: &str| -> String {
        entry
            .get(k)
            .and_then(Value::as_object)
            .map(|m| m.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    };
    let target = if s("transport") == "http" {
        format!("{}  headers: [{}]", s("url"), names("headers"))
    } else {
        let args: Vec<&str> = entry
            .get("args")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        format!(
            "{} {}  env: [{}]",
            s("command"),
            args.join(" "),
            names("env")
        )
    };
    let policy = &entry["permissions"];
    format!(
        "{}  {}: {target}  read={} write={}  ({})",
        s("name"),
        s("transport"),
        policy["read"].as_str().unwrap_or("allow"),
        policy["write"].as_str().unwrap_or("ask"),
        s("path")
    )
}
