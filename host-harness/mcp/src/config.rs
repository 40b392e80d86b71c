//! Configured MCP servers, in the format MCP clients already keep:
//!
//! ```json
//! {"mcpServers": {
//!   "everything": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-everything"],
//!                  "env": {"TOKEN": "${MY_TOKEN}"}},
//!   "remote": {"type": "http", "url": "https://example.com/mcp",
//!              "headers": {"Authorization": "Bearer ${REMOTE_TOKEN}"},
//!              "permissions": {"read": "allow", "write": "ask"}}
//! }}
//! ```
//!
//! Two files are read: `.mcp.json` in the project directory and `$KOSMO_HOME/mcp.json`; the
//! project file wins on a name clash (the convention of MCP clients: the project's servers
//! are the ones its scripts expect). Both are validated when loaded: size (at most
//! [`MAX_CONFIG_BYTES`]), server names ([`check_server_name`]), the JSON type of every field
//! kosmo uses. Keys kosmo does not use are ignored, since files shared with other MCP
//! clients carry theirs (`disabled`, `timeout`, `alwaysAllow`, ...).
//!
//! `${VAR}` and `${VAR:-default}` in `command`, `args`, `env` values, `url` and `headers`
//! values are expanded from the environment when the server starts, so a secret can stay
//! out of the file. What kosmo shows of an entry ([`ServerEntry::redacted_json`]) never
//! includes an `env` or header value.
//!
//! `$KOSMO_HOME/mcp.json` is written by [`add_server`] and [`remove_server`] (the future
//! `kosmo mcp:configure`): it may hold tokens, so it is written `0600` (to a temporary file,
//! then renamed), in a `0700` directory when kosmo creates it. A directory that already
//! exists is left as it is: kosmo never changes the mode of a directory it did not create.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use kosmo_runtime::{Access, Policy};
use serde_json::{Map, Value, json};

/// The project file, in the project directory.
pub const PROJECT_FILE: &str = ".mcp.json";

/// The user's file, under `$KOSMO_HOME`.
pub const HOME_FILE: &str = "mcp.json";

/// A configuration file larger than this is refused (1 MiB: a file of server entries is a
/// few kilobytes; anything larger is a mistake, not a configuration).
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Longest server name.
pub const MAX_NAME_LEN: usize = 64;

/// What a configuration problem says: the file, and one readable line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when one is involved.
    pub path: Option<PathBuf>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn new(path: Option<&Path>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.map(Path::to_path_buf),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(p) => write!(f, "{}: {}", p.display(), self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// How to reach a server.
#[derive(Clone, PartialEq, Eq)]
pub enum Transport {
    /// A local process speaking MCP on its standard input and output.
    Stdio {
        /// The program (looked up in `PATH` when it has no `/`).
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Variables added to kosmo's environment for it.
        env: BTreeMap<String, String>,
        /// Working directory (default: kosmo's).
        cwd: Option<String>,
    },
    /// A streamable-HTTP endpoint.
    Http {
        /// `http://` or `https://` URL of the MCP endpoint.
        url: String,
        /// Headers sent with every request (e.g. `Authorization`).
        headers: BTreeMap<String, String>,
    },
}

/// Never shows `env` or header values.
impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Stdio {
                command, args, env, ..
            } => f
                .debug_struct("Stdio")
                .field("command", command)
                .field("args", args)
                .field("env", &env.keys().collect::<Vec<_>>())
                .finish_non_exhaustive(),
            Transport::Http { url, headers } => f
                .debug_struct("Http")
                .field("url", &redact_url(url))
                .field("headers", &headers.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl Transport {
    /// A stdio server.
    pub fn stdio(
        command: impl Into<String>,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    ) -> Transport {
        Transport::Stdio {
            command: command.into(),
            args,
            env,
            cwd: None,
        }
    }

    /// A streamable-HTTP server.
    pub fn http(url: impl Into<String>, headers: BTreeMap<String, String>) -> Transport {
        Transport::Http {
            url: url.into(),
            headers,
        }
    }

    /// `stdio` or `http`.
    pub fn kind(&self) -> &'static str {
        match self {
            Transport::Stdio { .. } => "stdio",
            Transport::Http { .. } => "http",
        }
    }

    /// Check what [`Transport::stdio`] and [`Transport::http`] were given (what loading a
    /// file checks too).
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Transport::Stdio { command, env, .. } => {
                if command.trim().is_empty() {
                    return Err("`command` is empty".into());
                }
                for key in env.keys() {
                    check_env_name(key)?;
                }
                Ok(())
            }
            Transport::Http { url, headers } => {
                check_url(url)?;
                for key in headers.keys() {
                    check_header_name(key)?;
                }
                Ok(())
            }
        }
    }

    /// The entry as it is written in `mcpServers`.
    pub fn to_json(&self) -> Value {
        match self {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let mut m = Map::new();
                m.insert("command".into(), json!(command));
                if !args.is_empty() {
                    m.insert("args".into(), json!(args));
                }
                if !env.is_empty() {
                    m.insert("env".into(), json!(env));
                }
                if let Some(cwd) = cwd {
                    m.insert("cwd".into(), json!(cwd));
                }
                Value::Object(m)
            }
            Transport::Http { url, headers } => {
                let mut m = Map::new();
                m.insert("type".into(), json!("http"));
                m.insert("url".into(), json!(url));
                if !headers.is_empty() {
                    m.insert("headers".into(), json!(headers));
                }
                Value::Object(m)
            }
        }
    }
}

/// Where an entry was read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The project's `.mcp.json`.
    Project(PathBuf),
    /// `$KOSMO_HOME/mcp.json`.
    Home(PathBuf),
    /// Given in code (tests, embedders).
    Inline,
}

impl Source {
    /// `project`, `home` or `inline`.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Project(_) => "project",
            Source::Home(_) => "home",
            Source::Inline => "inline",
        }
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::Project(p) | Source::Home(p) => Some(p),
            Source::Inline => None,
        }
    }
}

/// One configured server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerEntry {
    /// Its name (the key under `mcpServers`).
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// Its `permissions` section, if it has one.
    pub permissions: Option<Permissions>,
    /// Where it was configured.
    pub source: Source,
}

impl ServerEntry {
    /// An entry given in code.
    pub fn new(name: impl Into<String>, transport: Transport) -> ServerEntry {
        ServerEntry {
            name: name.into(),
            transport,
            permissions: None,
            source: Source::Inline,
        }
    }

    /// The same entry with a permissions section.
    pub fn with_permissions(mut self, permissions: Permissions) -> ServerEntry {
        self.permissions = Some(permissions);
        self
    }

    /// The policy its tool calls are under: the `permissions` section over the defaults
    /// (reads allowed, writes asked).
    pub fn policy(&self) -> Policy {
        self.permissions.unwrap_or_default().policy()
    }

    /// What may be shown of the entry: name, transport, source, the command and its
    /// arguments or the URL (without user info or query values), and the names of `env`
    /// variables and headers with `<redacted>` values.
    pub fn redacted_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("name".into(), json!(self.name));
        m.insert("transport".into(), json!(self.transport.kind()));
        match &self.transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                m.insert("command".into(), json!(command));
                m.insert("args".into(), json!(args));
                m.insert("env".into(), redacted_map(env));
                if let Some(cwd) = cwd {
                    m.insert("cwd".into(), json!(cwd));
                }
            }
            Transport::Http { url, headers } => {
                m.insert("url".into(), json!(redact_url(url)));
                m.insert("headers".into(), redacted_map(headers));
            }
        }
        let policy = self.policy();
        m.insert(
            "permissions".into(),
            json!({"read": policy.read.as_str(), "write": policy.write.as_str()}),
        );
        m.insert("source".into(), json!(self.source.kind()));
        if let Some(path) = self.source.path() {
            m.insert("path".into(), json!(path.display().to_string()));
        }
        Value::Object(m)
    }
}

/// A server's `permissions` section: `{"read": "allow", "write": "ask"}`, either optional.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Permissions {
    /// For tools marked `readOnlyHint` (default allow).
    pub read: Option<Access>,
    /// For every other tool (default ask).
    pub write: Option<Access>,
}

impl Permissions {
    /// The policy: the section over [`Policy::default`].
    pub fn policy(self) -> Policy {
        let default = Policy::default();
        Policy {
            read: self.read.unwrap_or(default.read),
            write: self.write.unwrap_or(default.write),
        }
    }

    fn to_json(self) -> Value {
        let mut m = Map::new();
        if let Some(r) = self.read {
            m.insert("read".into(), json!(r.as_str()));
        }
        if let Some(w) = self.write {
            m.insert("write".into(), json!(w.as_str()));
        }
        Value::Object(m)
    }
}

/// The servers of both files, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct McpConfig {
    servers: BTreeMap<String, ServerEntry>,
}

impl McpConfig {
    /// A configuration of these entries (a later one replaces an earlier one of the same
    /// name).
    pub fn from_entries(entries: impl IntoIterator<Item = ServerEntry>) -> McpConfig {
        McpConfig {
            servers: entries.into_iter().map(|e| (e.name.clone(), e)).collect(),
        }
    }

    /// Read `$KOSMO_HOME/mcp.json` (when `home` is given) and `.mcp.json` in `project_dir`
    /// (when given); absent files are empty. The project's entry wins on a name clash.
    pub fn load(project_dir: Option<&Path>, home: Option<&Path>) -> Result<McpConfig, ConfigError> {
        let mut servers = BTreeMap::new();
        if let Some(home) = home {
            let path = home.join(HOME_FILE);
            for entry in read_file(&path, Source::Home(path.clone()))? {
                servers.insert(entry.name.clone(), entry);
            }
        }
        if let Some(dir) = project_dir {
            let path = dir.join(PROJECT_FILE);
            for entry in read_file(&path, Source::Project(path.clone()))? {
                servers.insert(entry.name.clone(), entry);
            }
        }
        Ok(McpConfig { servers })
    }

    /// [`McpConfig::load`] with the current directory and [`kosmo_home`].
    pub fn load_default() -> Result<McpConfig, ConfigError> {
        let cwd = std::env::current_dir().ok();
        McpConfig::load(cwd.as_deref(), kosmo_home().as_deref())
    }

    /// One server.
    pub fn get(&self, name: &str) -> Option<&ServerEntry> {
        self.servers.get(name)
    }

    /// The servers, by name.
    pub fn entries(&self) -> impl Iterator<Item = &ServerEntry> {
        self.servers.values()
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.servers.keys().cloned().collect()
    }

    /// Whether no server is configured.
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

/// `$KOSMO_HOME`, else `~/.kosmo` (the same rule as the accounts file).
pub fn kosmo_home() -> Option<PathBuf> {
    if let Some(home) = std::env::var_os("KOSMO_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".kosmo"))
}

/// Whether `name` can name a server: 1 to [`MAX_NAME_LEN`] ASCII letters, digits, `_` or
/// `-`, starting with a letter or digit. No `.`: a name is one segment of
/// `app.mcp.<server>.<tool>`; names with `-` are reached with `mcp.call(server, ...)`.
pub fn check_server_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a server name is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "server name `{}...` is longer than {MAX_NAME_LEN} characters",
            &name[..name.floor_char_boundary(MAX_NAME_LEN)]
        ));
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric());
    if !ok {
        return Err(format!(
            "`{name}` is not a valid server name: use letters, digits, `_` and `-`, starting with a \
             letter or digit"
        ));
    }
    Ok(())
}

/// `K=V` (for `--env` and `--header`): the key before the first `=`, which must be non-empty.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{}` is not KEY=VALUE", redact_kv(text))),
    }
}

/// `KEY=...` without the value, for messages.
fn redact_kv(text: &str) -> String {
    match text.split_once('=') {
        Some((k, _)) => format!("{k}=<redacted>"),
        None => text.to_string(),
    }
}

fn check_env_name(key: &str) -> Result<(), String> {
    if key.is_empty() || key.contains('=') || key.contains('\0') {
        return Err(format!("`{key}` is not an environment variable name"));
    }
    Ok(())
}

fn check_header_name(key: &str) -> Result<(), String> {
    http::HeaderName::from_bytes(key.as_bytes())
        .map(|_| ())
        .map_err(|_| format!("`{key}` is not an HTTP header name"))
}

fn check_url(url: &str) -> Result<(), String> {
    // A `${VAR}` may stand for any part: check what can be checked before expansion.
    if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("${")) {
        return Err(format!(
            "url `{}` is not an http:// or https:// URL",
            redact_url(url)
        ));
    }
    Ok(())
}

/// A URL without its user info and with its query values replaced, for display (tokens
/// travel in both).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => url.split_at(i + 3),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => format!("<redacted>@{}", &authority[at + 1..]),
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (query, None),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) => format!("{k}=<redacted>"),
                    None => pair.to_string(),
                })
                .collect();
            let mut t = format!("{path}?{}", query.join("&"));
            if let Some(f) = fragment {
                t.push('#');
                t.push_str(f);
            }
            t
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

fn redacted_map(map: &BTreeMap<String, String>) -> Value {
    Value::Object(
        map.keys()
            .map(|k| (k.clone(), json!("<redacted>")))
            .collect(),
    )
}

/// Read a file of bounded size; `None` when it does not exist.
fn read_bounded(path: &Path) -> Result<Option<String>, ConfigError> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ConfigError::new(Some(path), format!("cannot read: {e}"))),
    };
    let mut text = String::new();
    // Read one byte past the cap to tell "exactly the cap" from "larger".
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| ConfigError::new(Some(path), format!("cannot read: {e}")))?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(ConfigError::new(
            Some(path),
            format!("is larger than {MAX_CONFIG_BYTES} bytes: not an MCP configuration"),
        ));
    }
    Ok(Some(text))
}

fn read_file(path: &Path, source: Source) -> Result<Vec<ServerEntry>, ConfigError> {
    let Some(text) = read_bounded(path)? else {
        return Ok(Vec::new());
    };
    parse(&text, source).map_err(|m| ConfigError::new(Some(path), m))
}

/// Parse a configuration text (`{"mcpServers": {...}}`).
pub fn parse(text: &str, source: Source) -> Result<Vec<ServerEntry>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("is not valid JSON: {e}"))?;
    let Value::Object(doc) = doc else {
        return Err("must be a JSON object with an `mcpServers` object".into());
    };
    let servers = match doc.get("mcpServers") {
        None => return Ok(Vec::new()),
        Some(Value::Object(m)) => m,
        Some(other) => {
            return Err(format!(
                "`mcpServers` must be an object, not {}",
                type_name(other)
            ));
        }
    };
    let mut entries = Vec::new();
    for (name, value) in servers {
        check_server_name(name).map_err(|e| format!("mcpServers: {e}"))?;
        let entry = parse_entry(name, value, source.clone())
            .map_err(|e| format!("mcpServers.{name}: {e}"))?;
        entries.push(entry);
    }
    Ok(entries)
}

fn parse_entry(name: &str, value: &Value, source: Source) -> Result<ServerEntry, String> {
    let Value::Object(m) = value else {
        return Err(format!("must be an object, not {}", type_name(value)));
    };
    let kind = match m.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(t.as_str()),
        Some(other) => return Err(format!("`type` must be a string, not {}", type_name(other))),
    };
    let transport = match kind {
        // `type` is optional for stdio entries (most files leave it out).
        None if m.contains_key("command") => stdio_entry(m)?,
        None if m.contains_key("url") => {
            return Err("has a `url` but no `\"type\": \"http\"`".into());
        }
        None => return Err("needs a `command` (stdio) or `\"type\": \"http\"` and a `url`".into()),
        Some("stdio") => stdio_entry(m)?,
        Some("http" | "streamable-http" | "streamableHttp") => {
            let url = string_field(m, "url")?.ok_or("needs a `url`")?;
            Transport::Http {
                url,
                headers: string_map(m, "headers")?,
            }
        }
        Some("sse") => {
            return Err(
                "`\"type\": \"sse\"` (the deprecated HTTP+SSE transport) is not supported: use the \
                 server's streamable-HTTP endpoint with `\"type\": \"http\"`"
                    .into(),
            );
        }
        Some(other) => {
            return Err(format!(
                "`type` is `{other}`: use `stdio` (or leave it out) or `http`"
            ));
        }
    };
    transport.validate()?;
    let permissions = match m.get("permissions") {
        None | Some(Value::Null) => None,
        Some(Value::Object(p)) => {
            let mut perms = Permissions::default();
            for (k, v) in p {
                let access = v
                    .as_str()
                    .ok_or_else(|| format!("permissions.{k} must be a string"))?
                    .parse::<Access>()
                    .map_err(|e| format!("permissions.{k}: {e}"))?;
                match k.as_str() {
                    "read" => perms.read = Some(access),
                    "write" => perms.write = Some(access),
                    other => {
                        return Err(format!("permissions: `{other}` is not `read` or `write`"));
                    }
                }
            }
            Some(perms)
        }
        Some(other) => {
            return Err(format!(
                "`permissions` must be an object like {{\"read\": \"allow\", \"write\": \"ask\"}}, not {}",
                type_name(other)
            ));
        }
    };
    Ok(ServerEntry {
        name: name.to_string(),
        transport,
        permissions,
        source,
    })
}

fn stdio_entry(m: &Map<String, Value>) -> Result<Transport, String> {
    let command = string_field(m, "command")?.ok_or("needs a `command`")?;
    let args = match m.get("args") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("args[{i}] must be a string, not {}", type_name(v)))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "`args` must be an array of strings, not {}",
                type_name(other)
            ));
        }
    };
    Ok(Transport::Stdio {
        command,
        args,
        env: string_map(m, "env")?,
        cwd: string_field(m, "cwd")?,
    })
}

fn string_field(m: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(format!(
            "`{key}` must be a string, not {}",
            type_name(other)
        )),
    }
}

fn string_map(m: &Map<String, Value>, key: &str) -> Result<BTreeMap<String, String>, String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(o)) => o
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!(
                    "`{key}.{k}` must be a string, not {}",
                    type_name(other)
                )),
            })
            .collect(),
        Some(other) => Err(format!(
            "`{key}` must be an object of strings, not {}",
            type_name(other)
        )),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Expand `${VAR}` and `${VAR:-default}` from the environment. An unset variable without a
/// default is an error naming it (a server started with a missing token fails obscurely).
pub fn expand_env(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed `${{` in `{text}`"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (std::env::var(name), default) {
            (Ok(v), _) if !v.is_empty() || default.is_none() => out.push_str(&v),
            (_, Some(d)) => out.push_str(d),
            (Err(_), None) => {
                return Err(format!("environment variable `{name}` is not set"));
            }
            (Ok(v), None) => out.push_str(&v),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The entries of `$KOSMO_HOME/mcp.json` only (what `kosmo mcp:configure --list` shows).
pub fn list_home(home: &Path) -> Result<Vec<ServerEntry>, ConfigError> {
    let path = home.join(HOME_FILE);
    read_file(&path, Source::Home(path.clone()))
}

/// Add or replace server `name` in `$KOSMO_HOME/mcp.json`; the other entries and any other
/// keys of the file are kept. Returns the file's path and whether an entry was replaced.
pub fn add_server(
    home: &Path,
    name: &str,
    transport: &Transport,
    permissions: Option<Permissions>,
) -> Result<(PathBuf, bool), ConfigError> {
    check_server_name(name).map_err(|m| ConfigError::new(None, m))?;
    transport
        .validate()
        .map_err(|m| ConfigError::new(None, format!("server `{name}`: {m}")))?;
    let path = home.join(HOME_FILE);
    let mut doc = read_doc(&path)?;
    let servers = servers_of(&mut doc, &path)?;
    let mut entry = transport.to_json();
    if let Some(p) = permissions
        && let Value::Object(m) = &mut entry
    {
        m.insert("permissions".into(), p.to_json());
    }
    let replaced = servers.insert(name.to_string(), entry).is_some();
    write_private(home, &path, &doc)?;
    Ok((path, replaced))
}

/// Remove server `name` from `$KOSMO_HOME/mcp.json`. `Ok(false)` when it was not there (the
/// file is then left untouched).
pub fn remove_server(home: &Path, name: &str) -> Result<bool, ConfigError> {
    let path = home.join(HOME_FILE);
    if !path.exists() {
        return Ok(false);
    }
    let mut doc = read_doc(&path)?;
    let servers = servers_of(&mut doc, &path)?;
    if servers.remove(name).is_none() {
        return Ok(false);
    }
    write_private(home, &path, &doc)?;
    Ok(true)
}

fn read_doc(path: &Path) -> Result<Value, ConfigError> {
    match read_bounded(path)? {
        None => Ok(json!({"mcpServers": {}})),
        Some(text) => {
            // Validate the whole file first: never rewrite a file kosmo would refuse to read.
            parse(&text, Source::Home(path.to_path_buf()))
                .map_err(|m| ConfigError::new(Some(path), m))?;
            serde_json::from_str(&text)
                .map_err(|e| ConfigError::new(Some(path), format!("is not valid JSON: {e}")))
        }
    }
}

fn servers_of<'a>(
    doc: &'a mut Value,
    path: &Path,
) -> Result<&'a mut Map<String, Value>, ConfigError> {
    let Value::Object(root) = doc else {
        return Err(ConfigError::new(Some(path), "must be a JSON object"));
    };
    let servers = root
        .entry("mcpServers")
        .or_insert_with(|| Value::Object(Map::new()));
    match servers {
        Value::Object(m) => Ok(m),
        _ => Err(ConfigError::new(
            Some(path),
            "`mcpServers` must be an object",
        )),
    }
}

/// Write `doc` to `path` readable by its owner only, in a `home` that is private to the user
/// (created `0700` when absent; a shared one is refused, as for the accounts file: headers and
/// env values in `mcp.json` may hold secrets).
fn write_private(home: &Path, path: &Path, doc: &Value) -> Result<(), ConfigError> {
    kosmo_runtime::cache::ensure_private_dir(home)
        .map_err(|problem| ConfigError::new(Some(home), problem))?;
    let text = serde_json::to_string_pretty(doc).expect("a JSON value serializes");
    let tmp = home.join(format!(".{HOME_FILE}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        ConfigError::new(Some(path), format!("cannot write: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stdio_and_http_entries() {
        let text = r#"{"mcpServers": {
            "everything": {"command": "node", "args": ["x.js", "stdio"], "env": {"TOKEN": "s3cret"}, "disabled": false},
            "remote": {"type": "http", "url": "https://u:p@example.com/mcp?key=abc", "headers": {"Authorization": "Bearer t0k"},
                       "permissions": {"write": "deny"}}
        }}"#;
        let entries = parse(text, Source::Inline).unwrap();
        assert_eq!(entries.len(), 2);
        let e = &entries[0];
        assert_eq!(e.transport.kind(), "stdio");
        assert_eq!(e.policy(), Policy::default());
        let r = &entries[1];
        assert_eq!(r.policy().write, Access::Deny);
        assert_eq!(r.policy().read, Access::Allow);
        let shown = format!("{} {:?}", e.redacted_json(), r.transport);
        let shown = format!("{shown} {}", r.redacted_json());
        for secret in ["s3cret", "t0k", "abc", "u:p"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("TOKEN") && shown.contains("Authorization"),
            "{shown}"
        );
        assert!(
            shown.contains("https://<redacted>@example.com/mcp?key=<redacted>"),
            "{shown}"
        );
    }

    #[test]
    fn refuses_wrong_types_and_names_with_clear_errors() {
        let bad = [
            (r#"[]"#, "must be a JSON object"),
            (r#"{"mcpServers": []}"#, "`mcpServers` must be an object"),
            (
                r#"{"mcpServers": {"a.b": {"command": "x"}}}"#,
                "not a valid server name",
            ),
            (
                r#"{"mcpServers": {"a": {"command": 3}}}"#,
                "mcpServers.a: `command` must be a string",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "args": "y"}}}"#,
                "`args` must be an array",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "args": [1]}}}"#,
                "args[0] must be a string",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}"#,
                "`env.K` must be a string",
            ),
            (
                r#"{"mcpServers": {"a": {"url": "https://x"}}}"#,
                "no `\"type\": \"http\"`",
            ),
            (
                r#"{"mcpServers": {"a": {"type": "sse", "url": "https://x"}}}"#,
                "not supported",
            ),
            (
                r#"{"mcpServers": {"a": {"type": "http", "url": "ftp://x"}}}"#,
                "not an http:// or https:// URL",
            ),
            (
                r#"{"mcpServers": {"a": {"type": "http"}}}"#,
                "needs a `url`",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "permissions": {"write": "maybe"}}}}"#,
                "not a permission",
            ),
            (
                r#"{"mcpServers": {"a": {"command": "x", "permissions": {"delete": "allow"}}}}"#,
                "not `read` or `write`",
            ),
            (r#"{"mcpServers": {"a": {}}}"#, "needs a `command`"),
            (r#"{"mcpServers": "#, "is not valid JSON"),
        ];
        for (text, wanted) in bad {
            let e = parse(text, Source::Inline).unwrap_err();
            assert!(e.contains(wanted), "{text}: {e}");
        }
    }

    #[test]
    fn project_wins_and_home_is_written_private() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let project = dir.path().join("project");
        fs::create_dir(&project).unwrap();
        let (path, replaced) = add_server(
            &home,
            "shared",
            &Transport::stdio("home-cmd", vec![], BTreeMap::new()),
            None,
        )
        .unwrap();
        assert!(!replaced);
        add_server(
            &home,
            "only-home",
            &Transport::http(
                "https://example.com/mcp",
                BTreeMap::from([("X-Key".into(), "v".into())]),
            ),
            Some(Permissions {
                read: None,
                write: Some(Access::Allow),
            }),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                fs::metadata(&home).unwrap().permissions().mode() & 0o777,
                0o700
            );
        }
        fs::write(
            project.join(PROJECT_FILE),
            r#"{"mcpServers": {"shared": {"command": "project-cmd"}}}"#,
        )
        .unwrap();
        let config = McpConfig::load(Some(&project), Some(&home)).unwrap();
        assert_eq!(config.names(), ["only-home", "shared"]);
        let shared = config.get("shared").unwrap();
        assert!(
            matches!(&shared.transport, Transport::Stdio { command, .. } if command == "project-cmd")
        );
        assert_eq!(shared.source.kind(), "project");
        assert_eq!(
            config.get("only-home").unwrap().policy().write,
            Access::Allow
        );
        assert_eq!(list_home(&home).unwrap().len(), 2);
        assert!(remove_server(&home, "shared").unwrap());
        assert!(!remove_server(&home, "shared").unwrap());
        assert_eq!(list_home(&home).unwrap().len(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn an_existing_directory_keeps_its_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        add_server(
            dir.path(),
            "a",
            &Transport::stdio("x", vec![], BTreeMap::new()),
            None,
        )
        .unwrap();
        assert_eq!(
            fs::metadata(dir.path()).unwrap().permissions().mode() & 0o777,
            0o755
        );
        let file = dir.path().join(HOME_FILE);
        assert_eq!(
            fs::metadata(file).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn oversized_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let big = format!(
            r#"{{"mcpServers": {{}}, "pad": "{}"}}"#,
            "x".repeat(MAX_CONFIG_BYTES as usize)
        );
        fs::write(dir.path().join(PROJECT_FILE), big).unwrap();
        let e = McpConfig::load(Some(dir.path()), None).unwrap_err();
        assert!(e.to_string().contains("larger than"), "{e}");
    }

    #[test]
    fn env_expansion_and_key_values() {
        // SAFETY: this test alone uses these variables.
        unsafe { std::env::set_var("KOSMO_MCP_TEST_VAR", "v1") };
        assert_eq!(expand_env("a ${KOSMO_MCP_TEST_VAR} b").unwrap(), "a v1 b");
        assert_eq!(expand_env("${KOSMO_MCP_TEST_UNSET:-dflt}").unwrap(), "dflt");
        assert!(
            expand_env("${KOSMO_MCP_TEST_UNSET}")
                .unwrap_err()
                .contains("KOSMO_MCP_TEST_UNSET")
        );
        assert_eq!(
            parse_key_value("A=b=c").unwrap(),
            ("A".into(), "b=c".into())
        );
        let e = parse_key_value("=secret").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }
}
