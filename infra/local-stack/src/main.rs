//! `local-stack demo` pushes a signed WhatsApp message through the real functions and shows
//! every step; `local-stack up` keeps the stack running for manual requests.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use local_stack::watch::LambdaWatch;
use local_stack::{MotoServer, Provisioned, Template, aws_config_for, aws_env, free_port, paths};
use serde_json::{Value, json};
use shared::signature::sign_hex;

/// Local-only secrets. They protect nothing: the stack listens on loopback only.
const META_APP_SECRET: &str = "local-meta-app-secret";
const VERIFY_TOKEN: &str = "local-verify-token";
const KAPSO_SECRET: &str = "local-kapso-webhook-secret";
const STACK_NAME: &str = "whatsapp-local";
const PHONE_NUMBER_ID: &str = "106540352242922";
const CUSTOMER: &str = "16505551234";

struct Stack {
    _moto: MotoServer,
    watch: LambdaWatch,
    provisioned: Provisioned,
    aws: aws_config::SdkConfig,
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
    });
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

    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for function in template.of_type("AWS::Serverless::Function") {
        env.extend(template.function_env(function, &provisioned)?);
    }
    env.extend(aws_env(&moto.endpoint));
    let port = match port_from_env("WATCH_PORT")? {
        Some(p) => p,
        None => free_port()?,
    };
    let mut watch = LambdaWatch::start(port, &env)?;
    watch.wait_listening(Duration::from_secs(60))?;
    step(&format!(
        "cargo lambda watch is serving the functions at {} (log: {})",
        watch.base_url(),
        watch.log.display()
    ));
    Ok(Stack {
        _moto: moto,
        watch,
        provisioned,
        aws,
    })
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

    step("What is on the FIFO queue");
    let queue = &stack.provisioned.queues["EventsQueue"];
    let sqs = aws_sdk_sqs::Client::new(&stack.aws);
    let received = sqs
        .receive_message()
        .queue_url(&queue.url)
        .max_number_of_messages(10)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
        .message_attribute_names("All")
        .wait_time_seconds(1)
        .send()
        .await?;
    let messages = received.messages.unwrap_or_default();
    detail(&format!("{} message(s) on {}", messages.len(), queue.name));
    for message in &messages {
        let attributes = message.attributes.clone().unwrap_or_default();
        for name in ["MessageGroupId", "MessageDeduplicationId"] {
            let key = aws_sdk_sqs::types::MessageSystemAttributeName::from(name);
            detail(&format!(
                "{name}: {}",
                attributes.get(&key).map_or("-", String::as_str)
            ));
        }
        let envelope: Value = serde_json::from_str(message.body().unwrap_or_default())?;
        println!("{}", serde_json::to_string_pretty(&envelope)?);
    }
    ensure!(
        messages.len() == 1,
        "expected exactly one envelope, found {}",
        messages.len()
    );
    let envelope: Value = serde_json::from_str(messages[0].body().unwrap_or_default())?;
    ensure!(
        envelope["event_id"] == format!("msg:{wamid}"),
        "unexpected envelope"
    );

    step("Demo complete: verified, normalised, enqueued once");
    Ok(())
}

fn meta_text_message(wamid: &str, now: i64) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{
            "id": "102290129340398",
            "changes": [{
                "field": "messages",
                "value": {
                    "messaging_product": "whatsapp",
                    "metadata": { "display_phone_number": "15550100", "phone_number_id": PHONE_NUMBER_ID },
                    "contacts": [{ "profile": { "name": "Sheena Nelson" }, "wa_id": CUSTOMER }],
                    "messages": [{
                        "from": CUSTOMER,
                        "id": wamid,
                        "timestamp": now.to_string(),
                        "type": "text",
                        "text": { "body": "Hello! Is the blue jacket in stock in size M?" }
                    }]
                }
            }]
        }]
    })
}

async fn up() -> anyhow::Result<()> {
    let stack = start_stack().await?;
    step("The stack is up. Ctrl-C stops it.");
    detail(&format!(
        "webhook URL:        {}/webhooks/whatsapp",
        stack.watch.base_url()
    ));
    detail(&format!("Meta app secret:    {META_APP_SECRET}"));
    detail(&format!("Meta verify token:  {VERIFY_TOKEN}"));
    detail(&format!("Kapso secret:       {KAPSO_SECRET}"));
    tokio::signal::ctrl_c().await?;
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
        _ => bail!("usage: local-stack <demo|up>"),
    }
}
