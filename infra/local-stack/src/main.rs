//! `local-stack demo` pushes a signed WhatsApp message through the real functions and shows
//! every step; `local-stack reminders` schedules a reminder through the send API and shows the
//! scheduled run send it once; `local-stack up` keeps the stack running for manual requests; `local-stack token
//! [WORKSPACE]` prints a Bearer token for the send API of a running stack.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use local_stack::bridge::{Bridge, HttpInvoker};
use local_stack::console;
use local_stack::kapso_platform::{KapsoPlatformStandIn, ProjectWebhook};
use local_stack::standins::{self, StandIn};
use local_stack::state;
use local_stack::token::{LOCAL_JWT_SECRET, TokenSpec};
use local_stack::watch::LambdaWatch;
use local_stack::{MotoServer, Template, aws_config_for, aws_env, free_port, paths};
use serde_json::{Value, json};
use shared::adapters::dynamo::{self, DynamoStore};
use shared::conversations::model::{AiConfig, Integration, IntegrationStatus, Provider};
use shared::ids::{PhoneNumberId, WaId, Wamid, WorkspaceId};
use shared::ingest::signature::sign_hex;

mod reminders_demo;

/// Local-only secrets. They protect nothing: the stack listens on loopback only.
const META_APP_SECRET: &str = "local-meta-app-secret";
const VERIFY_TOKEN: &str = "local-verify-token";
const KAPSO_SECRET: &str = "local-kapso-webhook-secret";
const KAPSO_PROJECT_SECRET: &str = "local-kapso-project-webhook-secret";
const STACK_NAME: &str = "whatsapp-local";
/// Where the setup callbacks land the browser on the local stack (no dashboard runs there).
const LOCAL_DASHBOARD_URL: &str = "http://localhost:3000";
const PHONE_NUMBER_ID: &str = "106540352242922";
const CUSTOMER: &str = "16505551234";
const WORKSPACE: &str = "demo-shop";
/// Concurrent pollers (and so invocations) of the SQS -> Lambda bridge; `cargo lambda watch`
/// runs as many instances of each function, so they are served at once.
const BRIDGE_POLLERS: usize = local_stack::watch::CONCURRENCY;

struct Stack {
    _moto: MotoServer,
    watch: LambdaWatch,
    whatsapp: StandIn,
    _kapso: KapsoPlatformStandIn,
    _llm: Option<StandIn>,
    resend: StandIn,
    store: DynamoStore,
}

async fn start_stack() -> anyhow::Result<Stack> {
    let moto_host = std::env::var("MOTO_HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let moto =
        MotoServer::start_on(&moto_host, port_from_env("MOTO_PORT")?).context("starting moto")?;
    step(&format!("moto is serving AWS APIs at {}", moto.endpoint));

    let template = Template::load(&paths::template())?;
    let aws = aws_config_for(&moto.endpoint).await;
    let secrets = json!({
        "meta_app_secret": META_APP_SECRET,
        "meta_verify_token": VERIFY_TOKEN,
        "kapso_webhook_secret": KAPSO_SECRET,
        "kapso_project_webhook_secret": KAPSO_PROJECT_SECRET,
        "meta_access_token": "local-meta-access-token",
        "kapso_api_key": "local-kapso-api-key",
        "dashboard_jwt_secret": LOCAL_JWT_SECRET,
        "resend_api_key": "local-resend-api-key",
        "integration_encryption_key": "bG9jYWwtc3RhY2staW50ZWdyYXRpb24ta2V5LTMyYiE=",
    });
    // DEMO_LLM=real: a real LLM the person running the stack configures, GROK_API_KEY (with
    // GROK_BASE_URL, default xAI) and/or SEALION_URL (SEA-LION on Ollama). Otherwise nothing
    // leaves the machine, whatever the shell holds.
    let use_real = std::env::var("DEMO_LLM").as_deref() == Ok("real");
    let real = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| use_real && !v.is_empty())
    };
    ensure!(
        !use_real || real("GROK_API_KEY").is_some() || real("SEALION_URL").is_some(),
        "DEMO_LLM=real needs SEALION_URL (SEA-LION on Ollama) and/or GROK_API_KEY"
    );
    let mut secrets = secrets;
    if let Some(key) = real("GROK_API_KEY") {
        secrets["grok_api_key"] = json!(key);
    }
    let provisioned = template
        .provision(&aws, STACK_NAME, &secrets.to_string())
        .await?;
    for (id, queue) in &provisioned.queues {
        detail(&format!("queue   {id:<24} {}", queue.url));
    }
    for (id, table) in &provisioned.tables {
        detail(&format!("table   {id:<24} {table}"));
    }
    for (id, secret) in &provisioned.secrets {
        detail(&format!("secret  {id:<24} {}", secret.name));
    }

    let whatsapp = standins::whatsapp().await?;
    detail(&format!("WhatsApp API stand-in at {}", whatsapp.base_url));
    // The offline responder answers by default; DEMO_LLM=standin routes to the LLM stand-in.
    let llm = match std::env::var("DEMO_LLM").as_deref() {
        Ok("standin") => Some(standins::llm().await?),
        _ => None,
    };

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for function in template.of_type("AWS::Serverless::Function") {
        env.extend(template.function_env(function, &provisioned)?);
    }
    env.extend(aws_env(&moto.endpoint));
    // The send API verifies HS256 tokens the stack mints (`local-stack token`).
    env.extend(local_stack::token::auth_env());
    // Outside services point at the stand-ins: nothing leaves the machine.
    env.insert("KAPSO_BASE_URL".into(), whatsapp.base_url.clone());
    env.insert("META_GRAPH_BASE_URL".into(), whatsapp.base_url.clone());
    let resend = standins::resend().await?;
    env.insert("RESEND_BASE_URL".into(), resend.base_url.clone());
    detail(&format!("Resend stand-in at {}", resend.base_url));
    match (real("GROK_API_KEY"), real("GROK_BASE_URL")) {
        (Some(_), url) => {
            if let Some(url) = url {
                env.insert("GROK_BASE_URL".into(), url);
            }
            detail("Grok answers too (GROK_API_KEY is set)");
        }
        (None, _) => {
            env.insert(
                "GROK_BASE_URL".into(),
                "http://127.0.0.1:9/unreachable".into(),
            );
        }
    }
    match (&llm, real("SEALION_URL")) {
        (Some(llm), _) => {
            env.insert("SEALION_URL".into(), format!("{}/v1", llm.base_url));
            detail(&format!("LLM stand-in at {} (as SEA-LION)", llm.base_url));
        }
        (None, Some(url)) => {
            detail(&format!("SEA-LION at {url} (SEALION_URL)"));
            env.insert("SEALION_URL".into(), url);
        }
        (None, None) => {
            env.remove("SEALION_URL");
            detail("no LLM configured: the built-in offline responder answers");
        }
    }

    let store = DynamoStore::new(&aws, &provisioned.tables["AppTable"]);
    seed(&store).await?;
    detail(&format!(
        "workspace {WORKSPACE} owns number {PHONE_NUMBER_ID} (provider meta, AI on)"
    ));
    let port = match port_from_env("WATCH_PORT")? {
        Some(p) => p,
        None => free_port()?,
    };
    // Onboarding: setup links come back to this stack, and land on a local dashboard.
    env.insert(
        "SETUP_CALLBACK_BASE_URL".into(),
        format!("http://127.0.0.1:{port}"),
    );
    env.insert("DASHBOARD_URL".into(), LOCAL_DASHBOARD_URL.into());
    // Kapso's platform API and hosted setup page; the page posts the signed project webhook to
    // this stack's ingest route, as Kapso does.
    let kapso = local_stack::kapso_platform::start(Some(ProjectWebhook {
        url: format!("http://127.0.0.1:{port}/webhooks/kapso"),
        secret: KAPSO_PROJECT_SECRET.into(),
    }))
    .await?;
    detail(&format!(
        "Kapso platform stand-in at {} (setup links, hosted page)",
        kapso.base_url
    ));
    env.insert("KAPSO_PLATFORM_BASE_URL".into(), kapso.api_url());
    let mut watch = LambdaWatch::start(port, &env)?;
    watch.wait_listening(Duration::from_secs(60))?;
    step(&format!(
        "cargo lambda watch is serving the functions at {} (log: {})",
        watch.base_url(),
        watch.log.display()
    ));
    let queue = &provisioned.queues["EventsQueue"];
    let bridge = Bridge::new(
        aws_sdk_sqs::Client::new(&aws),
        &queue.url,
        &queue.arn,
        HttpInvoker::new(&watch.base_url(), "message-processor"),
    );
    tokio::spawn(Arc::new(bridge).run(BRIDGE_POLLERS, |round| match round {
        Ok(report) => println!(
            "    [bridge] {} record(s) -> message-processor: {} deleted, {} left for retry",
            report.received, report.deleted, report.failed
        ),
        Err(e) => println!("    [bridge] {e:#}"),
    }));
    step(&format!(
        "the SQS -> Lambda bridge is polling the events queue for message-processor \
         ({BRIDGE_POLLERS} pollers, one invocation per message group at a time)"
    ));
    Ok(Stack {
        _moto: moto,
        watch,
        whatsapp,
        _kapso: kapso,
        _llm: llm,
        resend,
        store,
    })
}

async fn seed(store: &DynamoStore) -> anyhow::Result<()> {
    let workspace = WorkspaceId::parse(WORKSPACE)?;
    let integration = Integration {
        phone_number_id: PhoneNumberId::parse(PHONE_NUMBER_ID)?,
        workspace_id: workspace.clone(),
        provider: Provider::Meta,
        status: IntegrationStatus::Active,
        error: None,
        access_token: None,
    };
    let ai = AiConfig {
        enabled: true,
        ..AiConfig::default()
    };
    store
        .put_workspace(&workspace, "Demo shop", &integration, &ai)
        .await?;
    Ok(())
}

async fn demo() -> anyhow::Result<()> {
    let stack = start_stack().await?;
    let base = stack.watch.base_url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;

    step("Meta's GET verification handshake (the first call compiles the function)");
    let url = format!(
        "{base}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token={VERIFY_TOKEN}&hub.challenge=1158201444"
    );
    let response = http.get(&url).send().await?;
    let status = response.status();
    let body = response.text().await?;
    detail(&format!("GET /webhooks/whatsapp -> {status} {body:?}"));
    ensure!(status == 200 && body == "1158201444", "handshake failed");

    step("A signed inbound WhatsApp text message, as Meta delivers it");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let wamid = format!("wamid.LOCALDEMO{now}");
    let payload = serde_json::to_vec(&meta_text_message(&wamid, now))?;
    let signature = format!("sha256={}", sign_hex(META_APP_SECRET, &payload));
    detail(&format!("X-Hub-Signature-256: {}…", &signature[..23]));
    let post = || {
        http.post(format!("{base}/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", &signature)
            .body(payload.clone())
            .send()
    };
    let response = post().await?;
    let status = response.status();
    detail(&format!(
        "POST /webhooks/whatsapp -> {status} {}",
        response.text().await?
    ));
    ensure!(status == 200, "delivery was not accepted");

    step("The same delivery again, as Meta retries: accepted, but enqueued once");
    let response = post().await?;
    detail(&format!("POST /webhooks/whatsapp -> {}", response.status()));
    ensure!(response.status() == 200, "retry was not accepted");

    step("A tampered body with the old signature");
    let response = http
        .post(format!("{base}/webhooks/whatsapp"))
        .header("x-hub-signature-256", &signature)
        .body(String::from_utf8_lossy(&payload).replace("Hello", "Hellp"))
        .send()
        .await?;
    detail(&format!(
        "POST /webhooks/whatsapp -> {} {}",
        response.status(),
        response.text().await?
    ));

    step("The message processor stores the contact, conversation and message");
    let reply = wait_for(Duration::from_secs(300), || async {
        Ok(stack
            .whatsapp
            .requests()
            .into_iter()
            .find(|r| r.body["type"] == "text"))
    })
    .await
    .context("no reply reached the WhatsApp stand-in")?;
    let workspace = WorkspaceId::parse(WORKSPACE)?;
    let customer = WaId::parse(CUSTOMER)?;
    let contact = stack
        .store
        .raw_item(dynamo::contact_key(&workspace, &customer))
        .await?
        .context("contact not stored")?;
    // The contact keeps its conversation state per business number (its "thread").
    let pn = PhoneNumberId::parse(PHONE_NUMBER_ID)?;
    let thread = |field: &str| dynamo::thread_attr(&pn, field);
    let (conversation_attr, last_inbound_attr, answered_attr) = (
        thread("conversation_id"),
        thread("last_inbound_at"),
        thread("answered_through"),
    );
    show_item(
        "contact",
        &contact,
        &[
            "wa_id",
            "profile_name",
            "opted_out",
            &conversation_attr,
            &last_inbound_attr,
            &answered_attr,
        ],
    );
    let conversation_id = shared::ids::ConversationId::parse(attr(&contact, &conversation_attr))?;
    let conversation = stack
        .store
        .raw_item(dynamo::conversation_key(
            &workspace,
            &customer,
            &conversation_id,
        ))
        .await?
        .context("conversation not stored")?;
    show_item(
        "conversation",
        &conversation,
        &[
            "conversation_id",
            "status",
            "started_at",
            "last_inbound_at",
            "last_message_at",
        ],
    );
    let inbound = stack
        .store
        .raw_item(dynamo::message_key(&Wamid::parse(wamid.as_str())?))
        .await?
        .context("inbound message not stored")?;
    show_item(
        "inbound message",
        &inbound,
        &["wamid", "direction", "type", "text", "timestamp", "source"],
    );

    step("The reply the A/B router produced, as sent to the WhatsApp stand-in");
    let read = stack
        .whatsapp
        .requests()
        .into_iter()
        .find(|r| r.body["status"] == "read");
    if let Some(read) = read {
        detail(&format!(
            "POST {} (auth: {}) {}",
            read.path,
            read.auth.unwrap_or("none"),
            read.body
        ));
    }
    detail(&format!(
        "POST {} (auth: {}) {}",
        reply.path,
        reply.auth.unwrap_or("none"),
        reply.body
    ));
    let reply_wamid = Wamid::parse(reply.wamid.clone().context("the stand-in named no wamid")?)?;
    let outbound = wait_for(Duration::from_secs(30), || async {
        Ok(stack
            .store
            .raw_item(dynamo::message_key(&reply_wamid))
            .await?)
    })
    .await?;
    show_item(
        "outbound message",
        &outbound,
        &["wamid", "direction", "text", "status", "origin"],
    );
    if let Some(ai) = outbound.get("ai").and_then(|a| a.as_m().ok()) {
        let field = |k: &str| {
            ai.get(k)
                .and_then(|v| v.as_s().or_else(|_| v.as_n()).ok().cloned())
                .unwrap_or_else(|| "-".into())
        };
        detail(&format!(
            "routed provider: {} / model {} / latency {} ms",
            field("provider"),
            field("model"),
            field("latency_ms")
        ));
    }

    step("Status webhooks for the reply: delivered, then read");
    for status in ["delivered", "read"] {
        let payload = serde_json::to_vec(&meta_status(reply_wamid.as_str(), status, now + 1))?;
        let response = http
            .post(format!("{base}/webhooks/whatsapp"))
            .header(
                "x-hub-signature-256",
                format!("sha256={}", sign_hex(META_APP_SECRET, &payload)),
            )
            .body(payload)
            .send()
            .await?;
        detail(&format!(
            "POST /webhooks/whatsapp ({status}) -> {}",
            response.status()
        ));
        ensure!(response.status() == 200, "status delivery was not accepted");
    }
    let read_item = wait_for(Duration::from_secs(60), || async {
        let item = stack
            .store
            .raw_item(dynamo::message_key(&reply_wamid))
            .await?;
        Ok(item.filter(|i| attr(i, "status") == "read"))
    })
    .await
    .context("the reply never reached status read")?;
    show_item("outbound message", &read_item, &["wamid", "status"]);
    if let Some(history) = read_item.get("status_at").and_then(|v| v.as_m().ok()) {
        let mut entries: Vec<_> = history
            .iter()
            .map(|(k, v)| format!("{k} at {}", v.as_s().map(String::as_str).unwrap_or("?")))
            .collect();
        entries.sort();
        detail(&format!("status history: {}", entries.join(", ")));
    }
    let texts = stack
        .whatsapp
        .requests()
        .iter()
        .filter(|r| r.body["type"] == "text")
        .count();
    ensure!(
        texts == 1,
        "expected exactly one reply, the stand-in saw {texts}"
    );

    step("The dashboard API reads the workspace's AI settings, with a token and without");
    let token = TokenSpec::local(WORKSPACE).mint()?;
    let response = http
        .get(format!("{base}/v1/ai-config"))
        .bearer_auth(&token)
        .send()
        .await?;
    let status = response.status();
    let settings: Value = response.json().await?;
    detail(&format!(
        "GET /v1/ai-config (Bearer token for {WORKSPACE}) -> {status} enabled={} grokWeight={}",
        settings["enabled"], settings["grokWeight"]
    ));
    ensure!(
        status == 200 && settings["enabled"] == true,
        "the send API did not serve the seeded AI settings"
    );
    let response = http.get(format!("{base}/v1/ai-config")).send().await?;
    detail(&format!(
        "GET /v1/ai-config (no token) -> {}",
        response.status()
    ));
    ensure!(
        response.status() == 401,
        "the send API served a request without a token"
    );

    onboarding(&base, &stack).await?;

    step(
        "Demo complete: verified, enqueued once, stored once, answered once, delivered and read; \
         a number connected through a setup link",
    );
    Ok(())
}

/// Onboarding through Kapso setup links, against the platform stand-in: the link, the hosted
/// flow, the success redirect through setup-callbacks, and the project webhook through ingest and
/// the processor, which connects a number by itself when the browser never comes back.
async fn onboarding(base: &str, stack: &Stack) -> anyhow::Result<()> {
    // Redirects are shown, not followed: each hop is a function of this stack.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(300))
        .build()?;
    let location = |response: &reqwest::Response| {
        response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .context("no redirect")
    };

    let workspace = "demo-onboarding";
    step(&format!(
        "Onboarding: workspace {workspace} asks for a Kapso setup link (send API)"
    ));
    let setup_url = setup_link(&http, base, workspace).await?;
    step("The business finishes Kapso's hosted flow; Kapso sends the browser back to us");
    let hosted = http.get(&setup_url).send().await?;
    let callback = location(&hosted)?;
    detail(&format!(
        "GET {setup_url} -> {} {callback}",
        hosted.status()
    ));
    detail(
        "(the stand-in also posts Kapso's signed whatsapp.phone_number.created webhook to \
         /webhooks/kapso; whichever comes first connects the number, the other changes nothing)",
    );
    let landed = http.get(&callback).send().await?;
    let dashboard = location(&landed)?;
    detail(&format!(
        "GET /webhooks/kapso/success (setup-callbacks) -> {} {dashboard}",
        landed.status()
    ));
    ensure!(
        dashboard.ends_with("/whatsapp/connected"),
        "the callback did not land on the connected page"
    );
    connected(&http, base, workspace, stack).await?;

    let workspace = "demo-onboarding-2";
    step(&format!(
        "Workspace {workspace} finishes the hosted flow but closes the browser before the redirect"
    ));
    let setup_url = setup_link(&http, base, workspace).await?;
    let hosted = http.get(&setup_url).send().await?;
    detail(&format!(
        "GET {setup_url} -> {} (the redirect is never followed)",
        hosted.status()
    ));
    detail("Kapso's project webhook alone: ingest -> SQS -> message-processor -> onboarding");
    connected(&http, base, workspace, stack).await
}

/// Creates a setup link for `workspace` through the send API; its URL.
async fn setup_link(http: &reqwest::Client, base: &str, workspace: &str) -> anyhow::Result<String> {
    let response = http
        .post(format!("{base}/v1/whatsapp/setup-links"))
        .bearer_auth(TokenSpec::local(workspace).mint()?)
        .json(&json!({ "provisionPhoneNumber": false }))
        .send()
        .await?;
    let status = response.status();
    let link: Value = response.json().await?;
    detail(&format!("POST /v1/whatsapp/setup-links -> {status} {link}"));
    ensure!(status == 201, "no setup link was created");
    Ok(link["setupUrl"].as_str().context("no setupUrl")?.to_owned())
}

/// Waits until the send API shows `workspace` connected through Kapso, and shows its number.
async fn connected(
    http: &reqwest::Client,
    base: &str,
    workspace: &str,
    stack: &Stack,
) -> anyhow::Result<()> {
    let token = TokenSpec::local(workspace).mint()?;
    let status = wait_for(Duration::from_secs(120), || async {
        let status: Value = http
            .get(format!("{base}/v1/whatsapp/connection"))
            .bearer_auth(&token)
            .send()
            .await?
            .json()
            .await?;
        Ok((status["status"] == "connected").then_some(status))
    })
    .await
    .with_context(|| format!("{workspace} never showed as connected"))?;
    detail(&format!(
        "GET /v1/whatsapp/connection -> status={} provider={} phoneNumberId={} displayPhoneNumber={}",
        status["status"], status["provider"], status["phoneNumberId"], status["displayPhoneNumber"]
    ));
    ensure!(
        status["provider"] == "kapso",
        "not a Kapso number: {status}"
    );
    let number = PhoneNumberId::parse(status["phoneNumberId"].as_str().unwrap_or_default())?;
    let routed = stack
        .store
        .raw_item(dynamo::integration_key(&number))
        .await?
        .context("the number routes nowhere")?;
    show_item(
        "integration",
        &routed,
        &["phone_number_id", "workspace_id", "provider", "status"],
    );
    Ok(())
}

/// Polls `probe` until it finds something or `timeout` passes.
async fn wait_for<T, F, Fut>(timeout: Duration, probe: F) -> anyhow::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(found) = probe().await? {
            return Ok(found);
        }
        ensure!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

fn attr<'a>(item: &'a Item, name: &str) -> &'a str {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str)
}

fn show_item(what: &str, item: &Item, fields: &[&str]) {
    let shown: Vec<String> = fields
        .iter()
        .filter_map(|f| {
            let v = item.get(*f)?;
            let text = match v {
                aws_sdk_dynamodb::types::AttributeValue::S(s) => s.clone(),
                aws_sdk_dynamodb::types::AttributeValue::N(n) => n.clone(),
                aws_sdk_dynamodb::types::AttributeValue::Bool(b) => b.to_string(),
                other => format!("{other:?}"),
            };
            Some(format!("{f}={text}"))
        })
        .collect();
    detail(&format!(
        "{what}: {} / {}",
        attr(item, "pk"),
        attr(item, "sk")
    ));
    for line in shown {
        detail(&format!("    {line}"));
    }
}

/// A Meta delivery of one `messages` change for the demo number.
fn meta_delivery(value: Value) -> Value {
    let mut value = value;
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] =
        json!({ "display_phone_number": "15550100", "phone_number_id": PHONE_NUMBER_ID });
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": value }] }]
    })
}

fn meta_status(wamid: &str, status: &str, at: i64) -> Value {
    meta_delivery(json!({
        "statuses": [{ "id": wamid, "status": status, "timestamp": at.to_string(), "recipient_id": CUSTOMER }]
    }))
}

fn meta_text_message(wamid: &str, now: i64) -> Value {
    meta_delivery(json!({
        "contacts": [{ "profile": { "name": "Sheena Nelson" }, "wa_id": CUSTOMER }],
        "messages": [{
            "from": CUSTOMER,
            "id": wamid,
            "timestamp": now.to_string(),
            "type": "text",
            "text": { "body": "Hello! Is the blue jacket in stock in size M?" }
        }]
    }))
}

async fn up() -> anyhow::Result<()> {
    let stack = start_stack().await?;
    reminders_demo::start_ticks(&stack.watch)?;
    step("The stack is up. Ctrl-C stops it.");
    detail(&format!(
        "webhook URL:        {}/webhooks/whatsapp",
        stack.watch.base_url()
    ));
    detail(&format!("Meta app secret:    {META_APP_SECRET}"));
    detail(&format!("Meta verify token:  {VERIFY_TOKEN}"));
    detail(&format!("Kapso secret:       {KAPSO_SECRET}"));
    detail(&format!("Kapso project:      {KAPSO_PROJECT_SECRET}"));
    detail(
        "onboarding:         POST /v1/whatsapp/setup-links gives a setupUrl on the Kapso stand-in; \
         opening it plays the hosted flow (add ?error_code=link_expired for a failed one)",
    );
    let token = TokenSpec::local(WORKSPACE).mint()?;
    detail(&format!(
        "send API (an hour's token for {WORKSPACE}; `local-stack token` mints more):"
    ));
    detail(&local_stack::token::curl_line(
        &token,
        &stack.watch.base_url(),
    ));
    let console = console::serve(
        console::ConsoleConfig {
            functions_url: stack.watch.base_url(),
            whatsapp_url: stack.whatsapp.base_url.clone(),
            meta_app_secret: META_APP_SECRET.into(),
            kapso_webhook_secret: KAPSO_SECRET.into(),
            businesses: vec![console::Business {
                workspace: WORKSPACE.into(),
                name: "Demo shop".into(),
                phone_number_id: PHONE_NUMBER_ID.into(),
                display_phone_number: "15550100".into(),
            }],
            customer: CUSTOMER.into(),
            customer_name: "Sheena Nelson".into(),
        },
        port_from_env("CONSOLE_PORT")?,
    )
    .await?;
    detail(&format!("console:            {}", console.url));
    // `local-stack token` finds this stack's port here.
    let state_file = state::path();
    state::write(
        &state_file,
        &state::StackState {
            port: stack.watch.port,
        },
    )?;
    let stopped = tokio::signal::ctrl_c().await;
    state::clear(&state_file);
    Ok(stopped?)
}

/// Prints a token for `workspace` on stdout and, on stderr, a `curl` line with it for the
/// running stack: the one `up` recorded, or the one on `WATCH_PORT`.
fn token(workspace: &str) -> anyhow::Result<()> {
    let token = TokenSpec::local(workspace).mint()?;
    let stack = match port_from_env("WATCH_PORT")? {
        Some(port) => Some(state::StackState { port }),
        None => state::running(&state::path()),
    };
    eprintln!("# a token for workspace {workspace}, valid for an hour");
    match stack {
        Some(stack) => eprintln!(
            "{}",
            local_stack::token::curl_line(&token, &stack.functions_url())
        ),
        None => eprintln!(
            "# no running stack found: `infra/demo up` starts one (or set WATCH_PORT to its port)"
        ),
    }
    println!("{token}");
    Ok(())
}

fn port_from_env(name: &str) -> anyhow::Result<Option<u16>> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .with_context(|| format!("{name} must be a port number"))
        })
        .transpose()
}

fn step(text: &str) {
    println!("\n==> {text}");
}

fn detail(text: &str) {
    println!("    {text}");
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match std::env::args().nth(1).as_deref() {
        Some("demo") => demo().await,
        Some("up") => up().await,
        Some("reminders") => reminders_demo::demo().await,
        Some("token") => {
            let workspace = std::env::args().nth(2).unwrap_or_else(|| WORKSPACE.into());
            token(&workspace)
        }
        _ => bail!("usage: local-stack <demo|reminders|up|token [WORKSPACE]>"),
    }
}
