//! Processor test support: a seeded workspace in moto, wiremock fakes of the WhatsApp API and
//! both LLM providers, the real processor in-process, and the real ingest in front of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use local_stack::bridge::{Bridge, Invoke};
use serde_json::{Value, json};
use shared::adapters::dynamo::{self, DynamoStore};
use shared::adapters::kapso_platform::KapsoPlatformClient;
use shared::adapters::secrets_manager::SecretsManagerSource;
use shared::ai::LlmClient;
use shared::conversations::model::{
    AiConfig, ContactRef, Integration, IntegrationStatus, Provider, ReplyIntent,
};
use shared::conversations::processor::{Processor, ProcessorSettings};
use shared::conversations::store::{ContactStore, ProcessorStore};
use shared::ids::{ConversationId, PhoneNumberId, WaId, Wamid, WorkspaceId};
use shared::onboarding::project_events::ProjectEvents;
use shared::retry::RetryPolicy;
use shared::secrets::SecretsCache;
use shared::whatsapp::{WhatsAppClient, WhatsAppConfig};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::{
    ApiRequest, PHONE_NUMBER_ID, TestStack, meta_signature, spawn_stack_with, unique_name,
};

pub type TestProcessor = Processor<DynamoStore, SecretsManagerSource>;

/// How a test wants its world.
#[derive(Clone)]
pub struct Options {
    pub provider: Provider,
    pub ai: AiConfig,
    pub grok_key: bool,
    pub sealion: bool,
    pub settings: ProcessorSettings,
    /// The longest one WhatsApp API request may take (the function's default is 10 s).
    pub whatsapp_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            provider: Provider::Meta,
            ai: AiConfig {
                enabled: true,
                ..AiConfig::default()
            },
            grok_key: false,
            sealion: false,
            settings: ProcessorSettings::default(),
            whatsapp_timeout: Duration::from_secs(5),
        }
    }
}

pub struct World {
    pub stack: TestStack,
    pub store: DynamoStore,
    pub workspace: WorkspaceId,
    pub whatsapp: MockServer,
    pub grok: MockServer,
    pub sealion: MockServer,
    pub processor: Arc<TestProcessor>,
    pub ingest: axum::Router,
    /// The Kapso platform API fake (`/platform/v1/...`) the processor confirms project
    /// webhooks' numbers with.
    pub kapso: MockServer,
}

/// Answers sends like the Cloud API, with a new wamid each time; mark-read gets `success`.
pub struct CloudApi {
    counter: AtomicUsize,
}

impl Respond for CloudApi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if body["status"] == "read" {
            return ResponseTemplate::new(200).set_body_json(json!({ "success": true }));
        }
        let n = self.counter.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({
            "messaging_product": "whatsapp",
            "contacts": [{ "input": body["to"], "wa_id": body["to"] }],
            "messages": [{ "id": format!("wamid.REPLY{n:04}") }]
        }))
    }
}

pub fn cloud_api() -> CloudApi {
    CloudApi {
        counter: AtomicUsize::new(0),
    }
}

/// An OpenAI-compatible completion body.
pub fn completion(text: &str, model: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "model": model,
        "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }],
        "usage": { "prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30 }
    })
}

pub async fn spawn_world(options: Options) -> World {
    let mut secrets = crate::default_secrets();
    secrets["kapso_project_webhook_secret"] = crate::KAPSO_PROJECT_SECRET.into();
    secrets["meta_access_token"] = "test-meta-token".into();
    secrets["kapso_api_key"] = "test-kapso-key".into();
    if options.grok_key {
        secrets["grok_api_key"] = "xai-test-key".into();
    }
    let stack = spawn_stack_with(secrets).await;
    let whatsapp = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"/messages$"))
        .respond_with(cloud_api())
        .mount(&whatsapp)
        .await;
    let grok = MockServer::start().await;
    let sealion = MockServer::start().await;
    let workspace = WorkspaceId::parse(unique_name("ws")).unwrap();
    let store = DynamoStore::new(&stack.aws, &stack.provisioned.tables["AppTable"]);
    seed(&store, &workspace, options.provider, &options.ai).await;

    let mut settings = options.settings.clone();
    settings.grok_base_url = grok.uri();
    settings.sealion_base_url = options.sealion.then(|| sealion.uri());
    // As main builds it: Kapso project webhooks go to onboarding, confirmed with the platform.
    let kapso = MockServer::start().await;
    let project_events = ProjectEvents {
        store: store.clone(),
        platform: KapsoPlatformClient::new(
            format!("{}/platform/v1", kapso.uri()),
            Arc::new(SecretsCache::new(
                SecretsManagerSource::new(&stack.aws, stack.secret_id()),
                Duration::from_secs(300),
            )),
        ),
    };
    let processor = Arc::new(
        processor_with_timeout(
            &stack,
            store.clone(),
            &whatsapp.uri(),
            settings,
            &stack.aws,
            options.whatsapp_timeout,
        )
        .with_account_events(Arc::new(project_events)),
    );
    let ingest = stack.ingest();
    World {
        stack,
        store,
        workspace,
        whatsapp,
        grok,
        sealion,
        processor,
        ingest,
        kapso,
    }
}

pub async fn seed(store: &DynamoStore, workspace: &WorkspaceId, provider: Provider, ai: &AiConfig) {
    let integration = Integration {
        phone_number_id: PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap(),
        workspace_id: workspace.clone(),
        provider,
        status: IntegrationStatus::Active,
        error: None,
        access_token: None,
    };
    store
        .put_workspace(workspace, "Test shop", &integration, ai)
        .await
        .unwrap();
}

/// The processor as `main` builds it, over any store, with outside services at the given fakes.
pub fn build_processor<S: ProcessorStore>(
    stack: &TestStack,
    store: S,
    whatsapp_url: &str,
    settings: ProcessorSettings,
    secrets_aws: &aws_config::SdkConfig,
) -> Arc<Processor<S, SecretsManagerSource>> {
    Arc::new(processor_with_timeout(
        stack,
        store,
        whatsapp_url,
        settings,
        secrets_aws,
        Duration::from_secs(5),
    ))
}

fn processor_with_timeout<S: ProcessorStore>(
    stack: &TestStack,
    store: S,
    whatsapp_url: &str,
    settings: ProcessorSettings,
    secrets_aws: &aws_config::SdkConfig,
    whatsapp_timeout: Duration,
) -> Processor<S, SecretsManagerSource> {
    let whatsapp = WhatsAppClient::new(
        WhatsAppConfig {
            kapso_base_url: whatsapp_url.to_owned(),
            meta_base_url: whatsapp_url.to_owned(),
            graph_version: "v24.0".into(),
            request_timeout: whatsapp_timeout,
            connect_timeout: shared::whatsapp::DEFAULT_CONNECT_TIMEOUT,
        },
        RetryPolicy::new(3, Duration::from_millis(5), Duration::from_millis(20)),
    );
    let secrets = SecretsCache::new(
        SecretsManagerSource::new(secrets_aws, stack.secret_id()),
        Duration::from_secs(300),
    );
    Processor::new(store, whatsapp, LlmClient::new(), secrets, settings)
}

/// Runs the processor in-process, as Lambda would run the function.
pub struct InProcess(pub Arc<TestProcessor>);

impl Invoke for InProcess {
    async fn invoke(&self, event: SqsEvent) -> anyhow::Result<SqsBatchResponse> {
        Ok(invoke(&self.0, event).await)
    }
}

/// Calls the function's handler with a 30-second deadline.
pub async fn invoke<S: ProcessorStore>(
    processor: &Arc<Processor<S, SecretsManagerSource>>,
    event: SqsEvent,
) -> SqsBatchResponse {
    invoke_with_time_left(processor, event, Duration::from_secs(30)).await
}

/// Calls the function's handler with an invocation deadline `time_left` from now, sent as Lambda
/// sends it (epoch milliseconds).
pub async fn invoke_with_time_left<S: ProcessorStore>(
    processor: &Arc<Processor<S, SecretsManagerSource>>,
    event: SqsEvent,
    time_left: Duration,
) -> SqsBatchResponse {
    let mut context = lambda_runtime::Context::default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    context.deadline = now + u64::try_from(time_left.as_millis()).unwrap();
    let event = lambda_runtime::LambdaEvent::new(event, context);
    message_processor::handle(Arc::clone(processor), event)
        .await
        .expect("the handler never fails whole")
}

/// The ids `batchItemFailures` names.
pub fn failures(response: &SqsBatchResponse) -> Vec<String> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect()
}

/// An SQS record carrying an envelope, as the event source mapping builds it.
pub fn record(id: &str, envelope: &shared::envelope::Envelope) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.body = Some(envelope.to_json());
    m.attributes
        .insert("MessageGroupId".into(), envelope.group_id());
    m
}

pub fn event(records: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = records;
    e
}

/// The envelopes ingest would make of a Meta payload.
pub fn envelopes_of(payload: &Value) -> Vec<shared::envelope::Envelope> {
    let body = serde_json::to_vec(payload).unwrap();
    shared::ingest::webhook::normalise(
        &body,
        &shared::ingest::webhook::DeliveryContext {
            source: shared::envelope::Source::Meta,
            event_header: None,
            idempotency_key: None,
            received_at: time::OffsetDateTime::now_utc(),
        },
    )
    .unwrap()
    .envelopes
}

impl World {
    /// Posts a Meta payload, signed, to the real ingest handler (and so onto the moto queue).
    pub async fn deliver_meta(&self, payload: &Value) {
        let body = serde_json::to_vec(payload).unwrap();
        let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
            .header(meta_signature(&body))
            .send(&self.ingest)
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
    }

    /// Posts a Kapso event body, signed, with its event header.
    pub async fn deliver_kapso(&self, event_type: &str, payload: &Value) {
        let body = serde_json::to_vec(payload).unwrap();
        let response = ApiRequest::post("/webhooks/kapso", body.clone())
            .header(crate::kapso_signature(&body))
            .header(("X-Webhook-Event".into(), event_type.into()))
            .send(&self.ingest)
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
    }

    /// Posts a Kapso project event body, signed with the project webhook secret.
    pub async fn deliver_kapso_project(&self, event_type: &str, payload: &Value) {
        let body = serde_json::to_vec(payload).unwrap();
        let signature = shared::ingest::signature::sign_hex(crate::KAPSO_PROJECT_SECRET, &body);
        let response = ApiRequest::post("/webhooks/kapso", body)
            .header(("X-Webhook-Signature".into(), signature))
            .header(("X-Webhook-Event".into(), event_type.into()))
            .send(&self.ingest)
            .await;
        assert_eq!(response.status, 200, "{}", response.body);
    }

    pub fn bridge(&self) -> Bridge<InProcess> {
        let queue = &self.stack.provisioned.queues["EventsQueue"];
        Bridge::new(
            self.stack.sqs.clone(),
            &queue.url,
            &queue.arn,
            InProcess(Arc::clone(&self.processor)),
        )
    }

    /// Pumps the queue through the processor until it is empty, and panics if the processor
    /// reported any record as failed on the way: a failed record is invisible for the queue's
    /// visibility timeout, so an empty receive would otherwise hide it. Tests that expect a
    /// failure drive `bridge().pump_once(0)` and assert its `PumpReport`.
    pub async fn pump(&self) {
        let bridge = self.bridge();
        let mut failed = 0;
        for _ in 0..20 {
            let report = bridge.pump_once(0).await.unwrap();
            if report.received == 0 {
                assert_eq!(
                    failed, 0,
                    "the processor reported {failed} record(s) as failed (left for redelivery)"
                );
                return;
            }
            failed += report.failed;
        }
        panic!("the queue did not drain");
    }

    /// The text messages the WhatsApp fake received (replies, not read receipts).
    pub async fn sent_texts(&self) -> Vec<Value> {
        self.whatsapp
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .filter(|b| b["type"] == "text")
            .collect()
    }

    pub async fn read_receipts(&self) -> Vec<Value> {
        self.whatsapp
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
            .filter(|b| b["status"] == "read")
            .collect()
    }

    pub async fn message(&self, wamid: &str) -> Option<dynamo_item::Item> {
        self.store
            .raw_item(dynamo::message_key(&Wamid::parse(wamid).unwrap()))
            .await
            .unwrap()
    }

    pub async fn contact(&self, wa_id: &str) -> Option<dynamo_item::Item> {
        self.store
            .raw_item(dynamo::contact_key(
                &self.workspace,
                &WaId::parse(wa_id).unwrap(),
            ))
            .await
            .unwrap()
    }

    /// The customer's current conversation with the test number.
    pub async fn conversation_id(&self) -> ConversationId {
        let contact = self.contact(CUSTOMER).await.expect("contact stored");
        ConversationId::parse(dynamo_item::s(&contact, &thread("conversation_id")))
            .expect("a conversation id")
    }

    /// Overwrites `workspace`'s AI config with one that cannot be read (a string where a bool
    /// and a number belong), so a message of that workspace can never be answered.
    pub async fn corrupt_ai_config(&self, workspace: &WorkspaceId) {
        use aws_sdk_dynamodb::types::AttributeValue;
        let (pk, sk) = dynamo::ai_config_key(workspace);
        aws_sdk_dynamodb::Client::new(&self.stack.aws)
            .put_item()
            .table_name(self.store.table())
            .item("pk", AttributeValue::S(pk))
            .item("sk", AttributeValue::S(sk))
            .item("enabled", AttributeValue::S("tru".into()))
            .item("grok_weight", AttributeValue::S("fifty".into()))
            .send()
            .await
            .unwrap();
    }

    /// The stored reply intent `key_or_trigger` names: a whole intent key
    /// (`<conversation>#<wamid>`, as sent in `biz_opaque_callback_data`), or the wamid of a
    /// message in the customer's current conversation.
    pub async fn intent(&self, key_or_trigger: &str) -> Option<dynamo_item::Item> {
        let intent = match ReplyIntent::parse_key(key_or_trigger) {
            Some(intent) => intent,
            None => ReplyIntent {
                conversation_id: self.conversation_id().await,
                trigger: Wamid::parse(key_or_trigger).expect("a wamid or an intent key"),
            },
        };
        self.store
            .raw_item(dynamo::intent_key(&intent))
            .await
            .unwrap()
    }

    /// Hands the customer's current conversation to a person (or back), through the store as
    /// the dashboard will.
    pub async fn set_bot_paused(&self, paused: bool) {
        let conversation = self.conversation_id().await;
        let contact = ContactRef {
            workspace_id: self.workspace.clone(),
            phone_number_id: PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap(),
            wa_id: WaId::parse(CUSTOMER).unwrap(),
        };
        assert!(
            self.store
                .set_bot_paused(&contact, &conversation, paused)
                .await
                .unwrap(),
            "the conversation is current"
        );
    }

    /// Changes the workspace's AI settings (the processor's cache is bypassed by a fresh world).
    pub async fn set_ai(&self, ai: &AiConfig, provider: Provider) {
        seed(&self.store, &self.workspace, provider, ai).await;
    }
}

/// The contact item's attribute for one field of its thread with the test number.
pub fn thread(field: &str) -> String {
    dynamo::thread_attr(&PhoneNumberId::parse(PHONE_NUMBER_ID).unwrap(), field)
}

/// Reading DynamoDB items in assertions.
pub mod dynamo_item {
    use aws_sdk_dynamodb::types::AttributeValue;

    pub type Item = std::collections::HashMap<String, AttributeValue>;

    pub fn s<'a>(item: &'a Item, name: &str) -> &'a str {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .map_or("", String::as_str)
    }

    pub fn n(item: &Item, name: &str) -> Option<i64> {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
    }

    pub fn bool(item: &Item, name: &str) -> bool {
        item.get(name)
            .and_then(|v| v.as_bool().ok())
            .copied()
            .unwrap_or(false)
    }

    pub fn map_keys(item: &Item, name: &str) -> Vec<String> {
        let mut keys: Vec<String> = item
            .get(name)
            .and_then(|v| v.as_m().ok())
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }
}

// ----- payloads with fresh timestamps ----------------------------------------------------------

pub const CUSTOMER: &str = "16505551234";

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn meta_value(value: Value) -> Value {
    json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": value }] }]
    })
}

/// A Meta delivery of text messages `(wamid, from, text, unix seconds)`.
pub fn meta_texts(messages: &[(&str, &str, &str, i64)]) -> Value {
    let contacts: Vec<Value> = messages
        .iter()
        .map(|(_, from, _, _)| json!({ "profile": { "name": "Sheena Nelson" }, "wa_id": from }))
        .collect();
    let messages: Vec<Value> = messages
        .iter()
        .map(|(id, from, text, at)| {
            json!({ "from": from, "id": id, "timestamp": at.to_string(), "type": "text", "text": { "body": text } })
        })
        .collect();
    meta_value(json!({
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550100", "phone_number_id": PHONE_NUMBER_ID },
        "contacts": contacts,
        "messages": messages
    }))
}

pub fn meta_text(wamid: &str, text: &str) -> Value {
    meta_texts(&[(wamid, CUSTOMER, text, now())])
}

/// A Meta status delivery for `wamid`.
pub fn meta_status(wamid: &str, status: &str, at: i64, extra: Value) -> Value {
    let mut s = json!({ "id": wamid, "status": status, "timestamp": at.to_string(), "recipient_id": CUSTOMER });
    if let (Some(s), Some(extra)) = (s.as_object_mut(), extra.as_object()) {
        s.extend(extra.clone());
    }
    meta_value(json!({
        "messaging_product": "whatsapp",
        "metadata": { "display_phone_number": "15550100", "phone_number_id": PHONE_NUMBER_ID },
        "statuses": [s]
    }))
}

/// The same message as Kapso's v2 `whatsapp.message.received` event.
pub fn kapso_text(wamid: &str, text: &str, at: i64, origin: &str) -> Value {
    json!({
        "message": {
            "id": wamid, "timestamp": at.to_string(), "type": "text", "text": { "body": text },
            "kapso": { "direction": "inbound", "status": "received", "origin": origin, "has_media": false, "content": text }
        },
        "conversation": {
            "id": "8b0e2f4a-1c3d-4e5f-9a7b-6c5d4e3f2a10", "phone_number": format!("+{CUSTOMER}"),
            "status": "active", "phone_number_id": PHONE_NUMBER_ID,
            "kapso": { "contact_name": "Sheena Nelson" }
        },
        "is_new_conversation": false,
        "phone_number_id": PHONE_NUMBER_ID
    })
}

/// The same Meta payload, delivered to another number.
pub fn to_number(mut payload: Value, phone_number_id: &str) -> Value {
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] =
        phone_number_id.into();
    payload
}
