//! `KlaviyoServer` driven by an rmcp client in-process over a duplex pipe, against the
//! emulator.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kosmo_emulator::Emulator;
use kosmo_mcp::{ElicitationPrompter, KlaviyoServer, ServeOptions, serve_io};
use kosmo_runtime::{
    Account, AccountConfig, ApiKey, Host, HostOptions, Kind, Policy, Prompter, Runtime,
    RuntimeConfig, catalog,
};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, ElicitRequestParams,
    ElicitResult, ElicitationAction, Implementation, ProtocolVersion, Tool,
};
use rmcp::service::{RequestContext, RunningService};
use rmcp::{ClientHandler, ErrorData, RoleClient, ServiceExt};
use serde_json::{Value, json};

/// The component compiled once for the whole file.
fn runtime() -> Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME
        .get_or_init(|| Runtime::new(RuntimeConfig::default()).expect("the component loads"))
        .clone()
}

struct Setup<H: ClientHandler> {
    client: RunningService<RoleClient, H>,
    host: Arc<Host>,
    _emulator: Emulator,
}

/// A server over a fresh emulator account with `policy`, and a client `handler` connected to it.
async fn setup<H: ClientHandler>(options: ServeOptions, policy: Policy, handler: H) -> Setup<H> {
    let emulator = Emulator::start().await.unwrap();
    let account = Account::new(
        "default",
        ApiKey::new("pk_mcp_server_test"),
        &emulator.base_url(),
    )
    .unwrap();
    let prompter = ElicitationPrompter::new(Duration::from_secs(10));
    let host = Arc::new(
        Host::new(
            vec![AccountConfig { account, policy }],
            HostOptions {
                prompter: Some(prompter.clone() as Arc<dyn Prompter>),
                ..HostOptions::default()
            },
        )
        .with_runtime(tokio::task::spawn_blocking(runtime).await.unwrap()),
    );
    let server = KlaviyoServer::new(host.clone(), options).with_prompter(prompter);
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let (read, write) = tokio::io::split(theirs);
    tokio::spawn(serve_io(server, read, write));
    let client = handler.serve(ours).await.expect("initialize");
    Setup {
        client,
        host,
        _emulator: emulator,
    }
}

fn everything() -> ServeOptions {
    ServeOptions {
        allow_user_content: true,
        ..ServeOptions::default()
    }
}

fn allow_all() -> Policy {
    Policy::default().without_asking()
}

async fn call<H: ClientHandler>(s: &Setup<H>, tool: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else { panic!() };
    s.client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// The error table of an `isError` result: its one text item, parsed.
fn error_table(result: &CallToolResult) -> Value {
    assert_eq!(result.is_error, Some(true), "{result:?}");
    assert!(
        result.structured_content.is_none(),
        "errors stay out of structuredContent"
    );
    assert_eq!(result.content.len(), 1);
    let text = &result.content[0].as_text().expect("a text item").text;
    serde_json::from_str(text).expect("the error table is JSON")
}

async fn tools<H: ClientHandler>(s: &Setup<H>) -> Vec<Tool> {
    s.client.list_all_tools().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn initialize_and_list_every_catalog_function_with_its_schemas() {
    let s = setup(everything(), allow_all(), ()).await;
    let info = s.client.peer_info().expect("initialized");
    assert_eq!(info.server_info.as_ref().unwrap().name, "kosmo-klaviyo");
    assert!(info.capabilities.tools.is_some());
    let tools = tools(&s).await;
    let functions = catalog().functions();
    assert_eq!(tools.len(), functions.len());
    for f in functions {
        let name = format!("klaviyo_{}", f.name);
        let tool = tools
            .iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name}"));
        assert_eq!(
            Value::Object((*tool.input_schema).clone()),
            f.input_schema,
            "{name} input"
        );
        assert_eq!(
            Value::Object((**tool.output_schema.as_ref().unwrap()).clone()),
            f.output_schema,
            "{name} output"
        );
        let a = tool.annotations.as_ref().expect("annotations");
        assert_eq!(
            a.read_only_hint,
            Some(f.kind == Kind::Read),
            "{name} readOnlyHint"
        );
        assert_eq!(a.open_world_hint, Some(true));
        let idempotent = f.kind == Kind::Read || f.name == "update_profile";
        assert_eq!(a.idempotent_hint, Some(idempotent), "{name} idempotentHint");
        match f.kind {
            Kind::Write => assert_eq!(a.destructive_hint, Some(false), "{name}"),
            Kind::Read => assert_eq!(a.destructive_hint, None, "{name}"),
        }
        let description = tool.description.as_deref().unwrap();
        assert!(
            description.starts_with(&f.description),
            "{name}: {description}"
        );
        assert!(description.contains("isError"), "{name}");
    }
    let described = |n: &str| {
        tools
            .iter()
            .find(|t| t.name == n)
            .unwrap()
            .description
            .clone()
            .unwrap()
    };
    assert!(described("klaviyo_get_profile").contains("`profile.properties`"));
    assert!(described("klaviyo_list_events").contains("`event.properties`"));
    assert!(!described("klaviyo_get_flow").contains("User-generated"));
}

#[tokio::test(flavor = "multi_thread")]
async fn create_then_get_against_the_emulator() {
    let s = setup(everything(), allow_all(), ()).await;
    let created = call(
        &s,
        "klaviyo_create_profile",
        json!({"email": "ada@example.com", "first_name": "Ada", "properties": {"plan": "pro"}}),
    )
    .await;
    assert_ne!(created.is_error, Some(true), "{created:?}");
    let profile = created
        .structured_content
        .clone()
        .expect("structuredContent");
    let id = profile["id"].as_str().expect("an id").to_string();
    // The text item is the same JSON (spec: structured content SHOULD be mirrored as text).
    let text = &created.content[0].as_text().unwrap().text;
    assert_eq!(serde_json::from_str::<Value>(text).unwrap(), profile);
    // And it conforms to the advertised outputSchema.
    let schema = &catalog().function("create_profile").unwrap().output_schema;
    let validator = jsonschema::validator_for(schema).unwrap();
    assert!(validator.is_valid(&profile), "{profile}");

    let got = call(&s, "klaviyo_get_profile", json!({"profile_id": id})).await;
    let got = got.structured_content.expect("structuredContent");
    assert_eq!(got["email"], "ada@example.com");
    assert_eq!(got["properties"]["plan"], "pro");
    let records = s.host.take_records();
    let paths: Vec<&str> = records.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["klaviyo.create_profile", "klaviyo.get_profile"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn not_found_bad_argument_and_unknown_tool() {
    let s = setup(everything(), allow_all(), ()).await;
    let missing = call(
        &s,
        "klaviyo_get_profile",
        json!({"profile_id": "01JZZZZZZZZZZZZZZZZZZZZZZZ"}),
    )
    .await;
    let e = error_table(&missing);
    assert_eq!(e["code"], "not_found", "{e}");
    assert_eq!(e["status"], 404, "{e}");
    assert_eq!(e["function"], "get_profile", "{e}");

    let bad = call(
        &s,
        "klaviyo_create_profile",
        json!({"emial": "x@example.com"}),
    )
    .await;
    let e = error_table(&bad);
    assert_eq!(e["code"], "invalid_argument", "{e}");
    assert!(e["field"].as_str().is_some_and(|f| !f.is_empty()), "{e}");

    let wrong_type = call(&s, "klaviyo_create_profile", json!({"email": 42})).await;
    let e = error_table(&wrong_type);
    assert_eq!(e["code"], "invalid_argument", "{e}");
    assert_eq!(e["field"], "email", "{e}");

    // A name that is no tool at all is a protocol error (spec example: -32602).
    let err = s
        .client
        .call_tool(CallToolRequestParams::new("klaviyo_get_profil"))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("Did you mean `klaviyo_get_profile`"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn read_only_mode_hides_and_refuses_writes() {
    let options = ServeOptions {
        read_only: true,
        ..everything()
    };
    let s = setup(options, allow_all(), ()).await;
    let tools = tools(&s).await;
    let reads = catalog()
        .functions()
        .iter()
        .filter(|f| f.kind == Kind::Read)
        .count();
    assert_eq!(tools.len(), reads);
    assert!(
        tools
            .iter()
            .all(|t| t.annotations.as_ref().unwrap().read_only_hint == Some(true))
    );
    let refused = call(&s, "klaviyo_create_list", json!({"name": "Nope"})).await;
    let e = error_table(&refused);
    assert_eq!(e["code"], "permission_denied", "{e}");
    assert_eq!(e["reason"], "read_only", "{e}");
    assert!(s.host.take_records().is_empty(), "nothing reached the host");
}

#[tokio::test(flavor = "multi_thread")]
async fn user_content_tools_are_withheld_unless_allowed() {
    let s = setup(ServeOptions::default(), allow_all(), ()).await;
    let names: Vec<String> = tools(&s).await.iter().map(|t| t.name.to_string()).collect();
    for withheld in [
        "klaviyo_get_profile",
        "klaviyo_list_events",
        "klaviyo_create_profile",
    ] {
        assert!(
            !names.iter().any(|n| n == withheld),
            "{withheld} in {names:?}"
        );
    }
    for served in [
        "klaviyo_list_flows",
        "klaviyo_create_list",
        "klaviyo_list_metrics",
    ] {
        assert!(
            names.iter().any(|n| n == served),
            "{served} not in {names:?}"
        );
    }
    let refused = call(&s, "klaviyo_get_profile", json!({"profile_id": "x"})).await;
    let e = error_table(&refused);
    assert_eq!(e["code"], "permission_denied", "{e}");
    assert_eq!(e["reason"], "user_content", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("--allow-user-content")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ask_without_elicitation_is_refused_with_the_way_out() {
    let s = setup(everything(), Policy::default(), ()).await;
    let refused = call(&s, "klaviyo_create_list", json!({"name": "Asked"})).await;
    let e = error_table(&refused);
    assert_eq!(e["code"], "permission_denied", "{e}");
    let message = e["message"].as_str().unwrap();
    assert!(message.contains("--force"), "{message}");
    assert!(message.contains("--write allow"), "{message}");
    assert!(message.contains("elicitation"), "{message}");
    // Reads are allowed by the default policy.
    let listed = call(&s, "klaviyo_list_lists", json!({})).await;
    assert_ne!(listed.is_error, Some(true), "{listed:?}");
}

/// A client that declares form elicitation and answers with `action`.
#[derive(Clone)]
struct Answering {
    action: ElicitationAction,
    asked: Arc<Mutex<Vec<String>>>,
}

impl ClientHandler for Answering {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::builder().enable_elicitation().build(),
            Implementation::new("answering-test-client", "1"),
        )
        .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        if let ElicitRequestParams::FormElicitationParams { message, .. } = request {
            self.asked.lock().unwrap().push(message);
        }
        Ok(ElicitResult::new(self.action.clone()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn asks_go_to_the_client_through_elicitation() {
    let asked = Arc::new(Mutex::new(Vec::new()));
    let accepting = Answering {
        action: ElicitationAction::Accept,
        asked: asked.clone(),
    };
    let s = setup(everything(), Policy::default(), accepting).await;
    let created = call(&s, "klaviyo_create_list", json!({"name": "Approved"})).await;
    assert_ne!(created.is_error, Some(true), "{created:?}");
    let questions = asked.lock().unwrap().clone();
    assert_eq!(questions.len(), 1, "{questions:?}");
    assert!(
        questions[0].contains("klaviyo.create_list"),
        "{questions:?}"
    );
    let records = s.host.take_records();
    assert_eq!(records[0].permission, "approved");

    let declining = Answering {
        action: ElicitationAction::Decline,
        asked: Arc::new(Mutex::new(Vec::new())),
    };
    let s = setup(everything(), Policy::default(), declining).await;
    let refused = call(&s, "klaviyo_create_list", json!({"name": "Declined"})).await;
    let e = error_table(&refused);
    assert_eq!(e["code"], "permission_denied", "{e}");
    assert!(e["message"].as_str().unwrap().contains("declined"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn several_accounts_add_an_account_argument() {
    let options = ServeOptions {
        accounts: vec!["default".into(), "other".into()],
        ..everything()
    };
    let s = setup(options, allow_all(), ()).await;
    let tools = tools(&s).await;
    let tool = tools
        .iter()
        .find(|t| t.name == "klaviyo_list_lists")
        .unwrap();
    assert_eq!(
        tool.input_schema["properties"]["account"]["enum"],
        json!(["default", "other"])
    );
    let ok = call(&s, "klaviyo_list_lists", json!({"account": "default"})).await;
    assert_ne!(ok.is_error, Some(true), "{ok:?}");
    let e = error_table(&call(&s, "klaviyo_list_lists", json!({"account": "defualt"})).await);
    assert_eq!(e["code"], "invalid_argument", "{e}");
    assert_eq!(e["field"], "account", "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("Did you mean `default`"),
        "{e}"
    );
}
