//! The function catalog and the documentation for agents and people, read at run time from the
//! `///` comments of `wit/klaviyo.wit`: the WIT is the single source of truth, so nothing here
//! is kept by hand per function. A function's doc gives its one-line summary (first sentence),
//! its endpoint (`` `METHOD /path` ``), its access (a paragraph that is exactly
//! `Access: read` or `Access: write`; any other or a missing one is a parse error, so the
//! permission decision never rests on prose) and a Lua example (`` Example: `...` ``); argument
//! and result records give the parameter and result tables. The error-code table comes from
//! [`ErrorCode::ALL`].
//!
//! Topics: `klaviyo` (overview) and `klaviyo.<function>`; [`Catalog::full_reference`] is
//! everything at once (what `lua_read_doc("integrations.klaviyo")` returns).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::OnceLock;

use regex::Regex;
use serde_json::json;
use wit_parser::{Resolve, Type, TypeDefKind, TypeId};

use crate::error::ErrorCode;
use crate::names::{self, did_you_mean, snake};

/// The WIT contract, embedded so the docs always match the component this binary carries.
pub const WIT: &str = include_str!("../../../wit/klaviyo.wit");

/// The interface the docs describe.
const INTERFACE: &str = "klaviyo";

/// Whether a function only reads or also changes data (its doc's `Access:` line); account
/// policies allow, ask or deny each kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Reads data only.
    Read,
    /// Creates or changes data.
    Write,
}

impl Kind {
    /// `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Read => "read",
            Kind::Write => "write",
        }
    }
}

/// One argument of a function.
#[derive(Clone, Debug)]
pub struct Param {
    /// snake_case name, as Lua callers write it.
    pub name: String,
    /// Readable type (e.g. `integer`, `string`, `"email" | "sms"`).
    pub ty: String,
    /// Whether it must be given (its WIT type is not an `option`).
    pub required: bool,
    /// Its doc comment, with WIT names in Lua spelling.
    pub doc: String,
}

/// A record shown in a result: its fields and their docs.
#[derive(Clone, Debug)]
pub struct RecordDoc {
    /// snake_case name (e.g. `profile_page`).
    pub name: String,
    /// Its doc comment.
    pub doc: String,
    /// Its fields (`required` = always present, i.e. not an `option`).
    pub fields: Vec<Param>,
}

/// One function of the interface.
#[derive(Clone, Debug)]
pub struct FunctionDoc {
    /// Short (Lua) name, e.g. `create_profile`.
    pub name: String,
    /// Name in the WIT, e.g. `create-profile`.
    pub wit_name: String,
    /// First sentence of the doc.
    pub summary: String,
    /// The doc without its example, one line a paragraph.
    pub description: String,
    /// HTTP method of the endpoint, from the doc.
    pub method: Option<String>,
    /// Path of the endpoint, from the doc.
    pub path: Option<String>,
    /// Read or write, from the doc.
    pub kind: Kind,
    /// The doc's Lua example.
    pub example: Option<String>,
    /// The argument record's fields.
    pub params: Vec<Param>,
    /// Name of the result record.
    pub result: String,
    /// The result record, then the records nested in it.
    pub records: Vec<RecordDoc>,
    /// JSON Schema (draft 2020-12) of the arguments as callers give them (snake_case names,
    /// `properties` as an object), generated from the argument record: what MCP tools
    /// advertise as `inputSchema`.
    pub input_schema: serde_json::Value,
    /// JSON Schema of the result as callers get it (absent fields are `null`): MCP's
    /// `outputSchema`.
    pub output_schema: serde_json::Value,
}

impl FunctionDoc {
    /// `POST /api/profiles`, when the doc names the endpoint.
    pub fn endpoint(&self) -> Option<String> {
        Some(format!(
            "{} {}",
            self.method.as_deref()?,
            self.path.as_deref()?
        ))
    }
}

/// A documented error code.
#[derive(Clone, Debug)]
pub struct ErrorCodeDoc {
    /// The `code` field's value.
    pub code: String,
    /// When it happens.
    pub doc: String,
}

/// One entry of [`Catalog::list`] or [`Catalog::search`].
#[derive(Clone, Debug, PartialEq)]
pub struct TopicSummary {
    /// The topic to pass to [`Catalog::read`].
    pub topic: String,
    /// One line about it.
    pub summary: String,
    /// How well it matched a search (0 for a listing).
    pub score: u32,
    /// For a search, the line of the topic's text that matched best (markdown table pipes
    /// and heading marks removed), cut to about [`SNIPPET_CHARS`] characters around the
    /// match with `…`; empty for a listing.
    pub snippet: String,
}

/// About how long a search snippet is: one line of a terminal or a tool result.
pub const SNIPPET_CHARS: usize = 120;

/// The globals a Lua script has besides `app`, as the overview lists them (the Lua crate
/// defines them; this is what users read about them).
const LUA_GLOBALS: &str = "## Lua globals\n\n\
- `print(...)`: shown as it happens on a terminal; with `--json`, collected into the envelope's \
`output`.\n\
- `log(...)`: a progress line to standard error, never in the envelope (the same output cap as \
`print`).\n\
- `dump(v)`: prints a readable form of `v` and returns `v`.\n\
- `json.encode(v)`, `json.decode(text)`.\n\
- `regex.match`, `regex.match_all`, `regex.gsub`: Rust regex syntax, no delimiters.\n\
- `time`: `time.now()` gives RFC 3339 UTC text such as `\"2026-11-30T02:10:00Z\"`; \
`time.unix([ts])` Unix seconds (of `ts`, or now); `time.format(seconds)` RFC 3339 text; \
`time.add(ts, seconds)` a later (or, negative, earlier) time; `time.days(n)`, `time.hours(n)`, \
`time.minutes(n)` seconds. E.g. `local since = time.add(time.now(), -time.days(7))`.\n\
- `docs.list()`, `docs.search(words)`, `docs.read(topic)`; \
`lua_read_doc(\"integrations.klaviyo\")` gives every page at once.\n\n\
In the REPL, a `local` at the top level of a line persists like a global.\n";

/// The documentation of the Klaviyo integration, parsed from the WIT.
#[derive(Clone, Debug)]
pub struct Catalog {
    package_doc: String,
    interface_doc: String,
    functions: Vec<FunctionDoc>,
    errors: Vec<ErrorCodeDoc>,
    error_fields: Vec<Param>,
}

/// The catalog of the embedded WIT (parsed once).
pub fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog::parse(WIT).expect("the embedded WIT parses (checked by tests)"))
}

/// Whether `function` (short, full or WIT name) reads or writes; `None` for unknown names.
pub fn kind(function: &str) -> Option<Kind> {
    catalog().kind(function)
}

impl Catalog {
    /// Parse a WIT text holding the `klaviyo` interface.
    pub fn parse(wit: &str) -> Result<Catalog, String> {
        // wit-parser keeps every comment before an item as its docs; only `///` ones are.
        let wit: String = wit
            .lines()
            .map(|l| {
                let t = l.trim_start();
                if t.starts_with("//") && !t.starts_with("///") {
                    ""
                } else {
                    l
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let mut resolve = Resolve::new();
        let package = resolve
            .push_str("klaviyo.wit", &wit)
            .map_err(|e| format!("{e:#}"))?;
        let package = &resolve.packages[package];
        let interface_id = *package
            .interfaces
            .get(INTERFACE)
            .ok_or_else(|| format!("the WIT has no interface `{INTERFACE}`"))?;
        let interface = &resolve.interfaces[interface_id];
        let reader = Reader::new(&resolve, interface_id);

        let mut functions = Vec::new();
        for function in interface.functions.values() {
            functions.push(reader.function(function)?);
        }

        // One row per code: the component's kinds documented by the WIT, the host's by the
        // enum. A kind without a code (or a code naming a missing kind) is an error.
        let mut kind_docs = std::collections::HashMap::new();
        if let Some(&id) = interface.types.get("error-kind")
            && let TypeDefKind::Enum(e) = &resolve.types[id].kind
        {
            for case in &e.cases {
                if ErrorCode::from_kind(&case.name).is_none() {
                    return Err(format!("error-kind `{}` has no ErrorCode", case.name));
                }
                kind_docs.insert(
                    case.name.clone(),
                    case.docs.contents.clone().unwrap_or_default(),
                );
            }
        }
        let mut errors = Vec::new();
        for &code in ErrorCode::ALL {
            let doc = match (code.wit_kind(), code.host_doc()) {
                (Some(kind), _) => reader.text(
                    kind_docs
                        .get(kind)
                        .ok_or_else(|| format!("the WIT has no error-kind `{kind}`"))?,
                ),
                (None, Some(doc)) => doc.to_string(),
                (None, None) => return Err(format!("error code `{code}` has no documentation")),
            };
            errors.push(ErrorCodeDoc {
                code: code.as_str().to_string(),
                doc,
            });
        }
        let mut error_fields = Vec::new();
        if let Some(&id) = interface.types.get("error")
            && let TypeDefKind::Record(r) = &resolve.types[id].kind
        {
            for field in &r.fields {
                // `kind` is the table's `code`; Klaviyo's own `code` moves aside.
                let name = match field.name.as_str() {
                    "kind" => "code".to_string(),
                    "code" => "klaviyo_code".to_string(),
                    other => snake(other),
                };
                // The code is a string (see the codes table), whatever the WIT enum says.
                let ty = if field.name == "kind" {
                    "string".into()
                } else {
                    reader.type_name(&field.ty, &field.name)
                };
                error_fields.push(Param {
                    name,
                    ty,
                    required: !reader.is_option(&field.ty),
                    doc: reader.text(field.docs.contents.as_deref().unwrap_or("")),
                });
            }
        }
        Ok(Catalog {
            package_doc: reader.text(package.docs.contents.as_deref().unwrap_or("")),
            interface_doc: reader.text(interface.docs.contents.as_deref().unwrap_or("")),
            functions,
            errors,
            error_fields,
        })
    }

    /// The functions, in WIT order.
    pub fn functions(&self) -> &[FunctionDoc] {
        &self.functions
    }

    /// A function by short (`get_profile`), full (`klaviyo_get_profile`) or WIT name.
    pub fn function(&self, name: &str) -> Option<&FunctionDoc> {
        let short = names::short_name(name);
        self.functions.iter().find(|f| f.name == short)
    }

    /// Whether a function reads or writes.
    pub fn kind(&self, name: &str) -> Option<Kind> {
        self.function(name).map(|f| f.kind)
    }

    /// The documented error codes.
    pub fn errors(&self) -> &[ErrorCodeDoc] {
        &self.errors
    }

    /// Every topic with a one-line summary.
    pub fn list(&self) -> Vec<TopicSummary> {
        let mut topics = vec![TopicSummary {
            topic: "klaviyo".into(),
            summary: first_sentence(&self.interface_doc),
            score: 0,
            snippet: String::new(),
        }];
        topics.extend(self.functions.iter().map(|f| TopicSummary {
            topic: format!("klaviyo.{}", f.name),
            summary: f.line(),
            score: 0,
            snippet: String::new(),
        }));
        topics
    }

    /// Topics matching the words of `query`, best first, each with the line of its text that
    /// matched best ([`TopicSummary::snippet`]). A word in a topic's name or summary counts
    /// far more than one in its body, a topic holding every word beats one holding some, the
    /// words as a phrase beat them scattered, and weak matches (under a third of the best
    /// score) are left out, so a two-word query does not return every topic that happens to
    /// contain one common word (`name`).
    pub fn search(&self, query: &str) -> Vec<TopicSummary> {
        let all = tokens(query);
        // Short words ("a", "of", "id") match everything: keep them only when nothing else is
        // asked.
        let long: Vec<String> = all.iter().filter(|w| w.len() >= 3).cloned().collect();
        let words = if long.is_empty() { all } else { long };
        if words.is_empty() {
            return Vec::new();
        }
        let mut topics = Vec::with_capacity(self.functions.len() + 1);
        // The overview's function table repeats the functions' summaries: a match there is
        // the function's, not the overview's.
        let rows: Vec<String> = self
            .functions
            .iter()
            .map(|f| format!("| `{}` |", f.name))
            .collect();
        let overview: String = self
            .overview()
            .lines()
            .filter(|l| !rows.iter().any(|r| l.starts_with(r.as_str())))
            .flat_map(|l| [l, "\n"])
            .collect();
        // The overview holds the general topics (accounts, errors, pagination): its section
        // headings count as its summary.
        let headings: Vec<&str> = overview
            .lines()
            .filter_map(|l| l.strip_prefix("## "))
            .collect();
        let summary_words = tokens(&format!(
            "{} {}",
            first_sentence(&self.interface_doc),
            headings.join(" ")
        ));
        topics.push(Searched {
            topic: "klaviyo".into(),
            summary: first_sentence(&self.interface_doc),
            name: tokens("klaviyo"),
            summary_words,
            field_words: Vec::new(),
            text: overview,
        });
        for f in &self.functions {
            topics.push(Searched {
                topic: format!("klaviyo.{}", f.name),
                summary: f.line(),
                name: tokens(&f.name),
                summary_words: tokens(&format!(
                    "{} {}",
                    f.summary,
                    f.endpoint().unwrap_or_default()
                )),
                field_words: f
                    .params
                    .iter()
                    .chain(f.records.iter().flat_map(|r| r.fields.iter()))
                    .map(|p| tokens(&format!("{} {}", p.name, p.doc)))
                    .collect(),
                text: self.function_page(f),
            });
        }
        let mut hits: Vec<TopicSummary> = topics
            .iter()
            .filter_map(|t| {
                let score = t.score(&words);
                (score > 0).then(|| TopicSummary {
                    topic: t.topic.clone(),
                    summary: t.summary.clone(),
                    score,
                    snippet: snippet(&t.text, &words),
                })
            })
            .collect();
        let best = hits.iter().map(|h| h.score).max().unwrap_or(0);
        hits.retain(|h| h.score * 3 >= best);
        hits.sort_by(|a, b| b.score.cmp(&a.score).then_with(|| a.topic.cmp(&b.topic)));
        hits
    }

    /// The markdown of a topic: `klaviyo` or `klaviyo.<function>` (also accepted:
    /// `integrations.klaviyo...`, `app.integrations.klaviyo...`, full and WIT names).
    pub fn read(&self, topic: &str) -> Result<String, String> {
        let t = names::strip_path(topic.trim());
        if t.is_empty() || t == "klaviyo" {
            return Ok(self.overview());
        }
        let name = t.strip_prefix("klaviyo.").unwrap_or(t);
        if let Some(f) = self.function(name) {
            return Ok(self.function_page(f));
        }
        let topics: Vec<String> = self.list().into_iter().map(|t| t.topic).collect();
        let wanted = if t.starts_with("klaviyo.") {
            t.to_string()
        } else {
            format!("klaviyo.{t}")
        };
        let hint = match did_you_mean(&wanted, topics.iter().map(String::as_str)) {
            hint if hint.is_empty() => " Try docs.list() or docs.search(words).".to_string(),
            hint => hint,
        };
        Err(format!("No documentation topic `{topic}`.{hint}"))
    }

    /// Everything: the overview, then every function's page.
    pub fn full_reference(&self) -> String {
        let mut out = self.overview();
        out.push_str("\n# Function reference\n");
        for f in &self.functions {
            out.push('\n');
            out.push_str(
                &self
                    .function_page(f)
                    .replacen("# ", "## ", 1)
                    .replace("\n## ", "\n### "),
            );
        }
        out
    }

    /// The `klaviyo` topic.
    fn overview(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# klaviyo\n");
        let _ = writeln!(
            o,
            "{}\n",
            self.package_doc.split("\n\n").next().unwrap_or_default()
        );
        let _ = writeln!(o, "{}\n", self.interface_doc);
        o.push_str(
            "Call a function as `app.integrations.klaviyo.<name>(args)` with one table of named \
             arguments (snake_case). Short names (`create_profile`) and full names \
             (`klaviyo_create_profile`) both work. Read a function's page with \
             `docs.read(\"klaviyo.<name>\")`.\n\n",
        );
        o.push_str("## Accounts\n\n");
        o.push_str(
            "- `app.integrations.klaviyo.<name>` and `app.integrations.klaviyo.default.<name>`: the \
             default account, from `KLAVIYO_API_KEY` (and `KLAVIYO_BASE_URL`, default \
             `https://a.klaviyo.com`) with no other set-up, or else the account configured as \
             `default`.\n\
             - `app.integrations.klaviyo.<account>.<name>`: a named account, with its own key, \
             stored once with `kosmo integrations:configure klaviyo --account <account> --set \
             api_key=- [--set base_url=<url>] [--read allow|ask|deny] [--write allow|ask|deny]` \
             in `$KOSMO_HOME/accounts.json` (default `~/.kosmo`, readable by its owner only); \
             `api_key=-` reads the key from standard input without echo, keeping it out of shell \
             history. An account's name is a Lua name: letters, digits and `_`, not a Lua \
             keyword (`local`, `end`, ...) nor a function's name.\n\n",
        );
        o.push_str("## Authentication\n\n");
        o.push_str(
            "The host adds `Authorization: Klaviyo-API-Key <key>` to each request as it leaves; \
             neither the plugin nor your script ever sees the key, and no output, error or log \
             shows it. Requests can only go to Klaviyo (or the account's base URL).\n\n",
        );
        o.push_str("## Permissions\n\n");
        o.push_str(
            "Each function is a read or a write (see the list below). An account allows, asks or \
             denies each kind: reads default to `allow`, writes to `ask`. With no terminal to ask \
             on, `ask` is refused with a `permission_denied` error; `--force` lifts `ask` and \
             `deny` for one run (the envelope's `meta.permission_bypassed` says so).\n\n",
        );
        o.push_str("## Results and pagination\n\n");
        o.push_str(
            "Results are plain tables: a resource is `{id = ..., <attributes>}` (e.g. `p.id`, \
             `p.email`, `p.properties.plan`). A list function returns `{items = {...}, next_cursor \
             = ...}`; `next_cursor` is nil on the last page, and passes straight back as \
             `page_cursor`:\n\n",
        );
        o.push_str(
            "```lua\nlocal klaviyo = app.integrations.klaviyo\nlocal cursor, count = nil, 0\n\
             repeat\n  local page = klaviyo.list_profiles({limit = 100, page_cursor = cursor})\n  \
             count = count + #page.items\n  cursor = page.next_cursor\nuntil cursor == nil\n\
             return count\n```\n\n",
        );
        o.push_str("## Errors\n\n");
        o.push_str(
            "A failed call raises a table that `pcall` catches; `tostring(err)` gives one line \
             `code: message`. Its fields:\n\n| field | type | description |\n|---|---|---|\n",
        );
        let _ = writeln!(o, "| `function` | string | The function that failed. |");
        let _ = writeln!(o, "| `account` | string | The account it ran for. |");
        for f in &self.error_fields {
            let _ = writeln!(o, "| `{}` | {} | {} |", f.name, cell(&f.ty), cell(&f.doc));
        }
        o.push_str(
            "\nA script's uncaught error, and an error table a call raises, also has `line` (where \
             in the script), `source` (the script's name) and `traceback`.\n",
        );
        o.push_str("\nCodes:\n\n| code | when |\n|---|---|\n");
        for e in &self.errors {
            let _ = writeln!(o, "| `{}` | {} |", e.code, cell(&e.doc));
        }
        o.push_str(
            "\n```lua\nlocal ok, err = pcall(app.integrations.klaviyo.get_profile, {profile_id = \"nope\"})\n\
             if not ok then print(err.code, err.status, err.message) end\n```\n\n",
        );
        o.push_str("## Functions\n\n| function | kind | endpoint | summary |\n|---|---|---|---|\n");
        for f in &self.functions {
            let _ = writeln!(
                o,
                "| `{}` | {} | `{}` | {} |",
                f.name,
                f.kind.as_str(),
                f.endpoint().unwrap_or_default(),
                cell(&f.summary)
            );
        }
        o.push_str("\n## Worked example\n\n");
        o.push_str(
            "```lua\nlocal klaviyo = app.integrations.klaviyo\n\
             local p = klaviyo.create_profile({email = \"ada@example.com\", first_name = \"Ada\", properties = {plan = \"pro\"}})\n\
             local list = klaviyo.create_list({name = \"Newsletter\"})\n\
             klaviyo.subscribe_profile({list_id = list.id, email = p.email})\n\
             klaviyo.create_event({profile_id = p.id, event_name = \"Placed Order\", value = 42.5})\n\
             local again = klaviyo.get_profile({profile_id = p.id})\n\
             return {id = again.id, plan = again.properties.plan, list = list.id}\n```\n\n",
        );
        o.push_str(LUA_GLOBALS);
        o
    }

    /// The `klaviyo.<function>` topic.
    fn function_page(&self, f: &FunctionDoc) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# klaviyo.{}\n", f.name);
        let _ = writeln!(o, "{}\n", f.description);
        let _ = writeln!(
            o,
            "- Kind: **{}** (default policy: {})",
            f.kind.as_str(),
            if f.kind == Kind::Read { "allow" } else { "ask" }
        );
        if let Some(endpoint) = f.endpoint() {
            let _ = writeln!(o, "- Endpoint: `{endpoint}`");
        }
        let _ = writeln!(
            o,
            "- Call: `app.integrations.klaviyo.{0}(args)`, also `klaviyo_{0}`, `.default.{0}` and \
             `.<account>.{0}`\n",
            f.name
        );
        o.push_str("## Signature\n\n```\n");
        let args: Vec<String> = f
            .params
            .iter()
            .map(|p| format!("{}{}: {}", p.name, if p.required { "" } else { "?" }, p.ty))
            .collect();
        let _ = writeln!(
            o,
            "{}({{{}}}) -> {}\n```\n",
            f.name,
            args.join(", "),
            f.result
        );
        o.push_str("## Parameters\n\n");
        if f.params.is_empty() {
            o.push_str("None: pass `{}`.\n\n");
        } else {
            o.push_str("| name | type | required | description |\n|---|---|---|---|\n");
            for p in &f.params {
                let _ = writeln!(
                    o,
                    "| `{}` | {} | {} | {} |",
                    p.name,
                    cell(&p.ty),
                    if p.required { "yes" } else { "no" },
                    cell(&p.doc)
                );
            }
            o.push('\n');
        }
        let _ = writeln!(o, "## Result: `{}`\n", f.result);
        for (i, r) in f.records.iter().enumerate() {
            if i > 0 {
                let _ = writeln!(o, "`{}`:\n", r.name);
            }
            if !r.doc.is_empty() {
                let _ = writeln!(o, "{}\n", r.doc);
            }
            o.push_str("| field | type | description |\n|---|---|---|\n");
            for field in &r.fields {
                let ty = if field.required {
                    field.ty.clone()
                } else {
                    format!("{} or nil", field.ty)
                };
                let _ = writeln!(
                    o,
                    "| `{}` | {} | {} |",
                    field.name,
                    cell(&ty),
                    cell(&field.doc)
                );
            }
            o.push('\n');
        }
        o.push_str("## Errors\n\n");
        o.push_str(
            "Raised as a table (catch it with `pcall`) with `code`, `status`, `message`, \
             `function` and what Klaviyo said; see `docs.read(\"klaviyo\")` for every code. \
             Arguments are checked before any request: a missing, unknown or mistyped one gives \
             `invalid_argument` with `field` naming it.",
        );
        let codes: Vec<&str> = self
            .errors
            .iter()
            .map(|e| e.code.as_str())
            .filter(|c| f.description.contains(&format!("`{c}`")))
            .collect();
        if !codes.is_empty() {
            let _ = write!(
                o,
                " This function also documents: {}.",
                codes
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        o.push_str("\n\n");
        if let Some(example) = &f.example {
            let _ = writeln!(
                o,
                "## Example\n\n```lua\nlocal klaviyo = app.integrations.klaviyo\n{example}\n```"
            );
        }
        o
    }
}

impl FunctionDoc {
    /// One line for listings: `(write) POST /api/profiles: Create a profile.`
    fn line(&self) -> String {
        match self.endpoint() {
            Some(e) => format!("({}) {e}: {}", self.kind.as_str(), self.summary),
            None => format!("({}) {}", self.kind.as_str(), self.summary),
        }
    }
}

/// A topic as [`Catalog::search`] weighs it: its words by where they stand.
struct Searched {
    topic: String,
    summary: String,
    /// The topic's name (`list_metrics` -> `list`, `metric`).
    name: Vec<String>,
    /// Its summary and endpoint (the overview: its first sentence and section headings).
    summary_words: Vec<String>,
    /// Its parameters' and result fields' names and docs, one list a field.
    field_words: Vec<Vec<String>>,
    /// The whole topic as `docs.read` gives it.
    text: String,
}

/// Search weights of one query word by where it stands: the name and the summary say what a
/// topic is about, a parameter or result field what it handles, the body only mentions it.
const IN_NAME: u32 = 40;
const IN_SUMMARY: u32 = 20;
const IN_FIELD: u32 = 6;
/// Body mentions count one each, up to this many: a long page is not more relevant for
/// repeating a word.
const BODY_MENTIONS: usize = 5;
/// The query's words in a row: in the name, the summary, a field's name, the body.
const PHRASE_IN_NAME: u32 = 80;
const PHRASE_IN_SUMMARY: u32 = 40;
const PHRASE_IN_FIELD: u32 = 20;
const PHRASE_IN_BODY: u32 = 20;
/// The query is the topic's name (`list metrics`, `list_metrics`): that topic, well ahead of
/// the ones that merely share a word of it.
const EXACT_NAME: u32 = 200;

impl Searched {
    /// 0 when no word matches. Otherwise the words' weights, scaled by the share of the
    /// words found and doubled when all are there (a topic with every word beats one with
    /// some), plus a bonus for the words as a phrase (beats the same words scattered).
    fn score(&self, words: &[String]) -> u32 {
        let body = tokens(&self.text);
        let mut raw = 0;
        let mut matched = 0;
        for w in words {
            let mut s = 0;
            if self.name.contains(w) {
                s += IN_NAME;
            }
            if self.summary_words.contains(w) {
                s += IN_SUMMARY;
            }
            if self.field_words.iter().any(|f| f.contains(w)) {
                s += IN_FIELD;
            }
            s += body.iter().filter(|t| *t == w).take(BODY_MENTIONS).count() as u32;
            if s > 0 {
                matched += 1;
                raw += s;
            }
        }
        if matched == 0 {
            return 0;
        }
        let n = words.len() as u32;
        let mut score = raw * matched / n;
        // `klaviyo_list_metrics` and `klaviyo.list_metrics` name the topic too.
        let named = match words {
            [first, rest @ ..] if first == "klaviyo" && !rest.is_empty() => rest,
            _ => words,
        };
        if self.name == named {
            score += EXACT_NAME;
        }
        if n > 1 && matched == n {
            score *= 2;
            if contains_run(&self.name, words) {
                score += PHRASE_IN_NAME;
            }
            if contains_run(&self.summary_words, words) {
                score += PHRASE_IN_SUMMARY;
            }
            if self.field_words.iter().any(|f| contains_run(f, words)) {
                score += PHRASE_IN_FIELD;
            }
            if contains_run(&body, words) {
                score += PHRASE_IN_BODY;
            }
        }
        score
    }
}

/// The words of a text as search compares them: runs of letters and digits (so `metric_name`
/// and `metric's name` both read `metric`, `name`), lowercased, single letters dropped, and a
/// plural's `s` taken off so `metrics` finds `metric`.
fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() > 1)
        .map(|w| stem(&w.to_lowercase()))
        .collect()
}

/// `metrics` -> `metric`, `categories` -> `category`; `class`, `has` stay.
fn stem(word: &str) -> String {
    if word.len() > 4
        && let Some(base) = word.strip_suffix("ies")
    {
        return format!("{base}y");
    }
    match word.strip_suffix('s') {
        Some(base) if word.len() > 3 && !base.ends_with('s') => base.to_string(),
        _ => word.to_string(),
    }
}

/// Whether `run` occurs in `haystack` as consecutive words.
fn contains_run(haystack: &[String], run: &[String]) -> bool {
    !run.is_empty() && haystack.windows(run.len()).any(|w| w == run)
}

/// The line of `text` that matches `words` best (the phrase, then the most distinct words,
/// then the earliest), without its markdown marks, cut to about [`SNIPPET_CHARS`] around
/// its first match. The title (`# klaviyo.x`, which the hit's topic already says) and table
/// headers (`name | type | ...`) say nothing: they are taken only when no other line matches.
fn snippet(text: &str, words: &[String]) -> String {
    let mut best: Option<((bool, bool, usize), String)> = None;
    let lines: Vec<&str> = text.lines().collect();
    for (i, raw) in lines.iter().enumerate() {
        let line = plain_line(raw);
        let found = tokens(&line);
        let distinct = words.iter().filter(|w| found.contains(w)).count();
        if distinct == 0 {
            continue;
        }
        let title = raw.starts_with("# ");
        let header = lines
            .get(i + 1)
            .is_some_and(|next| next.starts_with("|---"));
        let key = (
            !(title || header),
            words.len() > 1 && contains_run(&found, words),
            distinct,
        );
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, line));
        }
    }
    let Some((_, line)) = best else {
        return String::new();
    };
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= SNIPPET_CHARS {
        return line;
    }
    // Where the first matching word starts, in characters.
    let mut at = 0;
    let mut start_of_word = None;
    for (i, c) in chars.iter().enumerate() {
        if c.is_alphanumeric() {
            start_of_word.get_or_insert(i);
            continue;
        }
        if let Some(s) = start_of_word.take() {
            let word: String = chars[s..i].iter().collect();
            if tokens(&word).iter().any(|t| words.contains(t)) {
                at = s;
                break;
            }
        }
    }
    // Some context before the match, then as much after as fits.
    let mut start = at.saturating_sub(SNIPPET_CHARS / 4);
    let end = (start + SNIPPET_CHARS).min(chars.len());
    start = end.saturating_sub(SNIPPET_CHARS).min(start);
    // Cut at spaces, not inside words.
    let start = if start == 0 {
        0
    } else {
        chars[start..at]
            .iter()
            .position(|c| *c == ' ')
            .map_or(start, |i| start + i + 1)
    };
    let end = if end == chars.len() {
        end
    } else {
        chars[at..end]
            .iter()
            .rposition(|c| *c == ' ')
            .map_or(end, |i| at + i)
    };
    let mut out = String::new();
    if start > 0 {
        out.push('…');
    }
    out.extend(chars[start..end].iter());
    if end < chars.len() {
        out.push('…');
    }
    out
}

/// A markdown line as plain text: heading marks dropped, a table row's cells joined by ` · `.
fn plain_line(line: &str) -> String {
    let line = line.trim().trim_start_matches('#').trim();
    match line.strip_prefix('|').and_then(|l| l.strip_suffix('|')) {
        Some(row) => row
            .split(" | ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect::<Vec<_>>()
            .join(" · "),
        None => line.to_string(),
    }
}

/// Text usable inside a markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The first sentence of a text (a period followed by a space or the end, outside backticks).
fn first_sentence(text: &str) -> String {
    let first = text
        .split("\n\n")
        .next()
        .unwrap_or_default()
        .replace('\n', " ");
    let mut in_code = false;
    let chars: Vec<char> = first.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        match c {
            '`' => in_code = !in_code,
            '.' if !in_code && chars.get(i + 1).is_none_or(|n| *n == ' ') => {
                let so_far: String = chars[..=i].iter().collect();
                // Abbreviations do not end a sentence.
                if !(so_far.ends_with("e.g.") || so_far.ends_with("i.e.")) {
                    return so_far;
                }
            }
            _ => {}
        }
    }
    first
}

/// Walks the resolved WIT and turns its names into the Lua spelling.
/// The largest integer a JSON number (an IEEE 754 double) holds exactly: 2^53 - 1.
const MAX_SAFE_INTEGER: i128 = (1 << 53) - 1;

/// Which way a value travels: arguments in, results out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Input,
    Output,
}

struct Reader<'a> {
    resolve: &'a Resolve,
    /// WIT identifiers of the interface (functions, types, fields, cases): in docs, a
    /// backticked one is shown snake_case; anything else (e.g. the filter operator
    /// `greater-or-equal`) is left as written.
    names: BTreeSet<String>,
    code_span: Regex,
    endpoint: Regex,
}

impl<'a> Reader<'a> {
    fn new(resolve: &'a Resolve, interface: wit_parser::InterfaceId) -> Self {
        let iface = &resolve.interfaces[interface];
        let mut names: BTreeSet<String> = iface.functions.keys().cloned().collect();
        for (name, &id) in &iface.types {
            names.insert(name.clone());
            match &resolve.types[id].kind {
                TypeDefKind::Record(r) => names.extend(r.fields.iter().map(|f| f.name.clone())),
                TypeDefKind::Enum(e) => names.extend(e.cases.iter().map(|c| c.name.clone())),
                _ => {}
            }
        }
        Reader {
            resolve,
            names,
            code_span: Regex::new(r"`([a-z][a-z0-9]*(?:-[a-z0-9]+)+)`").expect("valid regex"),
            endpoint: Regex::new(r"`(GET|POST|PATCH|PUT|DELETE) (/[^`\s]*)`").expect("valid regex"),
        }
    }

    /// A doc comment as shown to Lua users: paragraphs kept, lines joined, WIT names in
    /// snake_case.
    fn text(&self, doc: &str) -> String {
        let joined: Vec<String> = doc
            .split("\n\n")
            .map(|p| p.trim().replace('\n', " "))
            .collect();
        self.code_span
            .replace_all(&joined.join("\n\n"), |c: &regex::Captures<'_>| {
                if self.names.contains(&c[1]) {
                    format!("`{}`", snake(&c[1]))
                } else {
                    c[0].to_string()
                }
            })
            .into_owned()
    }

    fn function(&self, function: &wit_parser::Function) -> Result<FunctionDoc, String> {
        let name = snake(&function.name);
        let doc = self.text(function.docs.contents.as_deref().unwrap_or(""));
        let (example, described): (Vec<&str>, Vec<&str>) = doc
            .split("\n\n")
            .partition(|p| p.trim_start().starts_with("Example:"));
        let example = example.first().and_then(|p| {
            let start = p.find('`')?;
            let end = p.rfind('`')?;
            (end > start).then(|| p[start + 1..end].to_string())
        });
        let (access, described): (Vec<&str>, Vec<&str>) = described
            .into_iter()
            .partition(|p| p.trim_start().starts_with("Access:"));
        let kind = match access.as_slice() {
            [line] => match line.trim() {
                "Access: read" => Kind::Read,
                "Access: write" => Kind::Write,
                other => {
                    return Err(format!(
                        "{}: `{other}` is not `Access: read` or `Access: write`",
                        function.name
                    ));
                }
            },
            [] => return Err(format!("{}: the doc has no `Access:` line", function.name)),
            _ => {
                return Err(format!(
                    "{}: the doc has more than one `Access:` line",
                    function.name
                ));
            }
        };
        let description = described.join("\n\n");
        let first = described.first().copied().unwrap_or_default();
        let endpoint = self.endpoint.captures(&description);

        let mut params = Vec::new();
        if let [param] = function.params.as_slice() {
            if let Some(fields) = self.record_fields(&param.ty) {
                params = fields;
            }
        } else {
            return Err(format!(
                "{} does not take one argument record",
                function.name
            ));
        }
        let ok = match &function.result {
            Some(Type::Id(id)) => match &self.resolve.types[*id].kind {
                TypeDefKind::Result(r) => r.ok,
                _ => function.result,
            },
            other => *other,
        };
        let result = ok
            .map(|t| self.type_name(&t, ""))
            .unwrap_or_else(|| "nothing".into());
        let mut records = Vec::new();
        if let Some(t) = ok {
            self.collect_records(&t, &mut records);
        }
        let input_schema = self.schema(&function.params[0].ty, "", Side::Input);
        let output_schema = ok
            .map(|t| self.schema(&t, "", Side::Output))
            .unwrap_or_else(|| json!({"type": "null"}));
        Ok(FunctionDoc {
            input_schema,
            output_schema,
            summary: first_sentence(first),
            method: endpoint.as_ref().map(|c| c[1].to_string()),
            path: endpoint.as_ref().map(|c| c[2].to_string()),
            name,
            wit_name: function.name.clone(),
            description,
            kind,
            example,
            params,
            result,
            records,
        })
    }

    fn record_fields(&self, ty: &Type) -> Option<Vec<Param>> {
        let Type::Id(id) = ty else { return None };
        let TypeDefKind::Record(r) = &self.resolve.types[*id].kind else {
            return None;
        };
        Some(
            r.fields
                .iter()
                .map(|f| Param {
                    name: snake(&f.name),
                    ty: self.type_name(&f.ty, &f.name),
                    required: !self.is_option(&f.ty),
                    doc: self.text(f.docs.contents.as_deref().unwrap_or("")),
                })
                .collect(),
        )
    }

    /// The records a result shows, the outer one first, each once.
    fn collect_records(&self, ty: &Type, out: &mut Vec<RecordDoc>) {
        let Type::Id(id) = ty else { return };
        let def = &self.resolve.types[*id];
        match &def.kind {
            TypeDefKind::Record(r) => {
                let name = snake(def.name.as_deref().unwrap_or("record"));
                if out.iter().any(|r| r.name == name) {
                    return;
                }
                out.push(RecordDoc {
                    name,
                    doc: self.text(def.docs.contents.as_deref().unwrap_or("")),
                    fields: self.record_fields(ty).unwrap_or_default(),
                });
                for f in &r.fields {
                    self.collect_records(&f.ty, out);
                }
            }
            TypeDefKind::Option(t) | TypeDefKind::List(t) | TypeDefKind::Type(t) => {
                self.collect_records(t, out)
            }
            _ => {}
        }
    }

    /// The JSON Schema of a WIT type as callers see it (see [`crate::convert`]): kebab-case
    /// names become snake_case, enums their snake_case case names, `properties` text a JSON
    /// object. An `option` is left out of `required` on input and may be `null` on output.
    fn schema(&self, ty: &Type, field: &str, side: Side) -> serde_json::Value {
        let integer =
            |min: i128, max: i128| json!({"type": "integer", "minimum": min, "maximum": max});
        match ty {
            Type::Bool => json!({"type": "boolean"}),
            Type::U8 => integer(0, u8::MAX.into()),
            Type::U16 => integer(0, u16::MAX.into()),
            Type::U32 => integer(0, u32::MAX.into()),
            // JSON numbers are doubles in most clients (RFC 8259 §6): bound 64-bit integers
            // at 2^53 - 1, which a double still holds exactly.
            Type::U64 => integer(0, MAX_SAFE_INTEGER),
            Type::S8 => integer(i8::MIN.into(), i8::MAX.into()),
            Type::S16 => integer(i16::MIN.into(), i16::MAX.into()),
            Type::S32 => integer(i32::MIN.into(), i32::MAX.into()),
            Type::S64 => integer(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER),
            Type::F32 | Type::F64 => json!({"type": "number"}),
            // A JSON object travelling as text (WIT docs of `properties`); input also takes
            // the text itself.
            Type::String if field == "properties" => match side {
                Side::Input => json!({"type": ["object", "string"]}),
                Side::Output => json!({"type": "object"}),
            },
            Type::Char | Type::String => json!({"type": "string"}),
            Type::ErrorContext => json!({}),
            Type::Id(id) => self.schema_of_id(*id, field, side),
        }
    }

    fn schema_of_id(&self, id: TypeId, field: &str, side: Side) -> serde_json::Value {
        let def = &self.resolve.types[id];
        let described = |mut schema: serde_json::Value| {
            if let Some(doc) = def.docs.contents.as_deref() {
                schema["description"] = json!(self.text(doc));
            }
            schema
        };
        match &def.kind {
            TypeDefKind::Type(t) => self.schema(t, field, side),
            TypeDefKind::Option(t) => match side {
                Side::Input => self.schema(t, field, side),
                Side::Output => json!({"anyOf": [self.schema(t, field, side), {"type": "null"}]}),
            },
            TypeDefKind::List(t) => json!({"type": "array", "items": self.schema(t, field, side)}),
            TypeDefKind::Enum(e) => described(json!({
                "type": "string",
                "enum": e.cases.iter().map(|c| snake(&c.name)).collect::<Vec<_>>(),
            })),
            TypeDefKind::Record(r) => {
                let mut properties = serde_json::Map::new();
                let mut required = Vec::new();
                for f in &r.fields {
                    let name = snake(&f.name);
                    let mut schema = self.schema(&f.ty, &f.name, side);
                    if let Some(doc) = f.docs.contents.as_deref() {
                        schema["description"] = json!(self.text(doc));
                    }
                    if side == Side::Output || !self.is_option(&f.ty) {
                        required.push(json!(name));
                    }
                    properties.insert(name, schema);
                }
                described(json!({
                    "type": "object",
                    "properties": properties,
                    "required": required,
                    "additionalProperties": false,
                }))
            }
            _ => json!({}),
        }
    }

    fn is_option(&self, ty: &Type) -> bool {
        matches!(ty, Type::Id(id) if matches!(self.resolve.types[*id].kind, TypeDefKind::Option(_)))
    }

    /// A readable type. `field` matters for `properties`: a string holding a JSON object on
    /// the WIT side, a table on the Lua side (see `crate::convert`).
    fn type_name(&self, ty: &Type, field: &str) -> String {
        match ty {
            Type::Bool => "boolean".into(),
            Type::U8
            | Type::U16
            | Type::U32
            | Type::U64
            | Type::S8
            | Type::S16
            | Type::S32
            | Type::S64 => "integer".into(),
            Type::F32 | Type::F64 => "number".into(),
            Type::String if field == "properties" => "table (JSON object)".into(),
            Type::Char | Type::String => "string".into(),
            Type::ErrorContext => "error-context".into(),
            Type::Id(id) => self.type_id_name(*id, field),
        }
    }

    fn type_id_name(&self, id: TypeId, field: &str) -> String {
        let def = &self.resolve.types[id];
        match &def.kind {
            TypeDefKind::Option(t) | TypeDefKind::Type(t) => self.type_name(t, field),
            TypeDefKind::List(t) => format!("array of {}", self.type_name(t, field)),
            TypeDefKind::Enum(e) => format!(
                "one of {}",
                e.cases
                    .iter()
                    .map(|c| format!("\"{}\"", snake(&c.name)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            TypeDefKind::Result(r) => {
                r.ok.map(|t| self.type_name(&t, field))
                    .unwrap_or_else(|| "nothing".into())
            }
            _ => snake(def.name.as_deref().unwrap_or("value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_wit_gives_fifteen_functions_with_kinds() {
        let c = Catalog::parse(WIT).unwrap();
        let declared = WIT.matches(": func(").count();
        assert_eq!(c.functions().len(), declared);
        let writes: Vec<&str> = c
            .functions()
            .iter()
            .filter(|f| f.kind == Kind::Write)
            .map(|f| f.name.as_str())
            .collect();
        assert_eq!(
            writes,
            [
                "create_profile",
                "update_profile",
                "subscribe_profile",
                "create_event",
                "create_list"
            ]
        );
        assert_eq!(kind("klaviyo_get_profile"), Some(Kind::Read));
        assert_eq!(kind("nope"), None);
        for f in c.functions() {
            assert!(f.endpoint().is_some(), "{} names its endpoint", f.name);
            assert!(f.example.is_some(), "{} has an example", f.name);
        }
    }

    #[test]
    fn pages_show_ranges_filters_and_lua_names() {
        let c = catalog();
        let page = c.read("klaviyo.list_events").unwrap();
        assert!(page.contains("1-1000"), "{page}");
        assert!(page.contains("greater-or-equal(datetime"), "{page}");
        assert!(page.contains("`page_cursor`"), "{page}");
        let page = c.read("klaviyo.create_profile").unwrap();
        assert!(
            !page.contains("-----"),
            "plain comments are not docs: {page}"
        );
        assert!(page.contains("| `email` | string | no |"), "{page}");
        assert!(page.contains("| `external_id` | string | no |"), "{page}");
        assert!(page.contains("`duplicate_profile`"), "{page}");
        assert!(page.contains("`location`:"), "{page}");
        assert!(
            c.read("klaviyo.create_profil")
                .unwrap_err()
                .contains("klaviyo.create_profile")
        );
        assert_eq!(
            c.read("integrations.klaviyo.get_flow").unwrap(),
            c.read("klaviyo.get_flow").unwrap()
        );
    }

    #[test]
    fn search_ranks_names_first() {
        let hits = catalog().search("subscribe");
        assert_eq!(hits[0].topic, "klaviyo.subscribe_profile");
        for name in [
            "list metrics",
            "list_metrics",
            "klaviyo_list_metrics",
            "klaviyo.list_metrics",
        ] {
            let hits = catalog().search(name);
            assert_eq!(hits[0].topic, "klaviyo.list_metrics", "{name}: {hits:?}");
            assert_eq!(
                hits.len(),
                1,
                "a name finds its topic alone: {name}: {hits:?}"
            );
        }
        assert!(catalog().search("").is_empty());
        assert_eq!(catalog().search("cursor pagination")[0].topic, "klaviyo");
        assert!(catalog().full_reference().contains("### Parameters"));
    }

    /// `search("metric name")` ranks the metric functions first, leaves out topics that only
    /// share the common word `name`, and shows where each matched. Guards: body mentions
    /// weighed like name ones (create_list's `name` would rank), the weak-match cut-off removed
    /// (every topic with `name` would return), or the snippet taken from a line that does not
    /// match (e.g. always the first).
    #[test]
    fn search_ranks_by_where_words_stand_and_drops_weak_matches() {
        let hits = catalog().search("metric name");
        let topics: Vec<&str> = hits.iter().map(|h| h.topic.as_str()).collect();
        let metric_functions = [
            "klaviyo.list_metrics",
            "klaviyo.get_event",
            "klaviyo.list_events",
            "klaviyo.create_event",
        ];
        for t in metric_functions {
            assert!(topics.contains(&t), "{t} missing: {topics:?}");
        }
        // The metric functions come first (list_metrics ties with the two whose summary says
        // "metric's name"); at most the overview follows.
        let first_other = topics
            .iter()
            .position(|t| !metric_functions.contains(t))
            .unwrap_or(topics.len());
        assert_eq!(first_other, metric_functions.len(), "{topics:?}");
        assert!(
            topics[first_other..].iter().all(|t| *t == "klaviyo"),
            "{topics:?}"
        );
        for unrelated in [
            "klaviyo.create_list",
            "klaviyo.get_profile",
            "klaviyo.get_flow",
        ] {
            assert!(!topics.contains(&unrelated), "{unrelated} in {topics:?}");
        }
        for h in &hits {
            let snippet = h.snippet.to_lowercase();
            assert!(
                snippet.contains("metric") || snippet.contains("name"),
                "{}: {}",
                h.topic,
                h.snippet
            );
            assert!(
                h.snippet.chars().count() <= SNIPPET_CHARS + 2,
                "{}",
                h.snippet
            );
            assert!(!h.snippet.contains('|'), "no table pipes: {}", h.snippet);
        }
        // A listing has no snippet.
        assert!(catalog().list().iter().all(|t| t.snippet.is_empty()));
    }

    /// The overview documents the Lua globals, the extra fields of a script's error and the
    /// REPL's `local`. Guards: a globals line dropped or renamed (e.g. `time` or `log` left
    /// out when the section is edited).
    #[test]
    fn the_overview_documents_the_lua_globals() {
        let o = catalog().read("klaviyo").unwrap();
        for needle in [
            "## Lua globals",
            "`print(...)`",
            "`log(...)`",
            "`dump(v)`",
            "`json.encode(v)`",
            "`regex.match_all`",
            "`time.now()`",
            "\"2026-11-30T02:10:00Z\"",
            "`time.unix([ts])`",
            "`time.format(seconds)`",
            "`time.add(ts, seconds)`",
            "`time.days(n)`",
            "`time.hours(n)`",
            "`time.minutes(n)`",
            "`docs.search(words)`",
            "`lua_read_doc(",
            "`traceback`",
            "`source`",
            "a `local` at the top level",
        ] {
            assert!(o.contains(needle), "the overview lacks {needle}");
        }
        assert!(!o.contains("Other globals"), "replaced by the section");
        assert_eq!(catalog().search("time now")[0].topic, "klaviyo");
    }

    /// All the words beat some of them, and the words as a phrase beat them scattered.
    /// Guards: dropping the all-words doubling or the phrase bonus (the scores compared here
    /// would tie or flip).
    #[test]
    fn all_words_and_phrases_score_higher() {
        let topic = |name: &str, summary: &str, text: &str| Searched {
            topic: name.into(),
            summary: String::new(),
            name: tokens(name),
            summary_words: tokens(summary),
            field_words: Vec::new(),
            text: text.into(),
        };
        let words = tokens("metric name");
        let both = topic("a", "", "the metric has a name");
        let one = topic("b", "", "name name name name name name name name");
        assert!(both.score(&words) > one.score(&words));
        let phrase = topic("c", "", "the metric name is here");
        let scattered = topic("d", "", "the metric is here with a name");
        assert!(phrase.score(&words) > scattered.score(&words));
        assert_eq!(topic("e", "", "nothing").score(&words), 0);
        let named = topic("list_metrics", "", "x");
        let mentioned = topic("x", "", "metric metric metric metric metric metric");
        let words = tokens("metrics");
        assert!(named.score(&words) > 2 * mentioned.score(&words));
    }

    /// A long line is cut around its match, with `…` where it was cut. Guards: cutting from
    /// the line's start (the match at its end would be lost) or dropping the ellipses.
    #[test]
    fn snippets_are_cut_around_the_match() {
        let long = format!(
            "{} the metric name is here {}",
            "lead ".repeat(40),
            "tail ".repeat(40)
        );
        let s = snippet(&long, &tokens("metric name"));
        assert!(s.contains("metric name"), "{s}");
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert!(s.chars().count() <= SNIPPET_CHARS + 2, "{s}");
        let s = snippet(
            "short\n| `metric_name` | string | The metric. |\n",
            &tokens("metric"),
        );
        assert_eq!(s, "`metric_name` · string · The metric.");
        assert_eq!(snippet("nothing here", &tokens("metric")), "");
    }

    #[test]
    fn the_access_marker_is_strict() {
        let marked = |line: &str| WIT.replacen("/// Access: read\n", &format!("/// {line}\n"), 1);
        for bad in ["Access: reads", "Access: Read", "Access: read-only"] {
            let e = Catalog::parse(&marked(bad)).unwrap_err();
            assert!(e.contains("is not `Access: read`"), "{bad}: {e}");
        }
        let e = Catalog::parse(&WIT.replacen("/// Access: read\n", "/// Reads.\n", 1)).unwrap_err();
        assert!(e.contains("no `Access:` line"), "{e}");
    }

    #[test]
    fn schemas_come_from_the_wit_types() {
        let c = catalog();
        let get = c.function("get_profile").unwrap();
        assert_eq!(get.input_schema["required"], json!(["profile_id"]));
        assert_eq!(get.input_schema["additionalProperties"], json!(false));
        assert_eq!(
            get.input_schema["properties"]["profile_id"]["type"],
            "string"
        );
        let out = &get.output_schema;
        assert_eq!(out["properties"]["properties"]["type"], "object");
        assert_eq!(
            out["properties"]["email"]["anyOf"][1],
            json!({"type": "null"}),
            "absent fields are null"
        );
        let campaigns = c.function("list_campaigns").unwrap();
        let channel = &campaigns.input_schema["properties"]["channel"];
        assert_eq!(channel["enum"], json!(["email", "sms", "mobile_push"]));
        assert_eq!(campaigns.input_schema["properties"]["limit"]["minimum"], 0);
        for f in c.functions() {
            assert_eq!(f.input_schema["type"], "object", "{}", f.name);
            assert_eq!(f.output_schema["type"], "object", "{}", f.name);
        }
    }

    #[test]
    fn every_error_code_is_documented() {
        let documented: Vec<&str> = catalog().errors().iter().map(|e| e.code.as_str()).collect();
        let all: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(documented, all);
        assert!(catalog().errors().iter().all(|e| !e.doc.is_empty()));
    }

    #[test]
    fn first_sentences_skip_code_spans() {
        assert_eq!(first_sentence("Get one. `GET /a.b` (read)."), "Get one.");
        assert_eq!(first_sentence("Uses `a.b` here. More."), "Uses `a.b` here.");
        assert_eq!(
            first_sentence("Record (e.g. an order). More."),
            "Record (e.g. an order)."
        );
    }
}
