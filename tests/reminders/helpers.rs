//! A world for reminder tests: a stack in moto with workspaces and their numbers, fakes of the
//! WhatsApp API and Resend that count what they receive, and the runner as `main` builds it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use integration_tests::processor::cloud_api;
use integration_tests::{TestStack, spawn_stack_with, unique_name};
use serde_json::{Value, json};
use shared::adapters::dynamo::{DynamoStore, contact_key, thread_attr};
use shared::conversations::model::{Integration, IntegrationStatus, Provider};
use shared::ids::{PhoneNumberId, WaId, WorkspaceId};
use shared::reminders::model::{
    EmailAddress, NewReminder, Reminder, ReminderChannel, ReminderId, TemplateSpec,
};
use shared::reminders::run::{RunSettings, RunSummary};
use shared::reminders::store::{Created, ReminderStore};
use time::OffsetDateTime;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

pub use integration_tests::reminders::{Runner, fast_run_settings, reminder_runner};

pub const CUSTOMER: &str = "16505551234";

/// The suite's heavy tests take turns: `infra/demo reminders` (a build, moto and `cargo lambda
/// watch`) would otherwise starve the large runs' 2 s sends into timeouts on a small machine.
pub static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct World {
    pub stack: TestStack,
    pub store: DynamoStore,
    /// Workspaces and the number each one sends from.
    pub workspaces: Vec<(WorkspaceId, PhoneNumberId)>,
    pub whatsapp: MockServer,
    pub resend: MockServer,
}

/// Answers like Resend: a new email id each time.
struct ResendApi;

impl Respond for ResendApi {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        ResponseTemplate::new(200).set_body_json(json!({ "id": ulid_like() }))
    }
}

fn ulid_like() -> String {
    format!("email-{}", unique_name("e"))
}

/// A world with `workspaces` workspaces, each with its own number. The fakes answer every send
/// with success unless a test mounts something more specific first.
pub async fn spawn_world(workspaces: usize) -> World {
    let mut secrets = integration_tests::default_secrets();
    secrets["meta_access_token"] = "test-meta-token".into();
    secrets["resend_api_key"] = "re_test_key".into();
    let stack = spawn_stack_with(secrets).await;
    let store = DynamoStore::new(&stack.aws, &stack.provisioned.tables["AppTable"]);
    let mut list = Vec::new();
    for i in 0..workspaces {
        let ws = WorkspaceId::parse(unique_name("ws")).unwrap();
        let pn = PhoneNumberId::parse(format!("10654035224{i:04}")).unwrap();
        store
            .put_integration(&Integration {
                phone_number_id: pn.clone(),
                workspace_id: ws.clone(),
                provider: Provider::Meta,
                status: IntegrationStatus::Active,
                error: None,
                access_token: None,
            })
            .await
            .unwrap();
        list.push((ws, pn));
    }
    World {
        stack,
        store,
        workspaces: list,
        whatsapp: MockServer::start().await,
        resend: MockServer::start().await,
    }
}

impl World {
    /// Mounts the default answers (after anything a test mounted, so theirs win).
    pub async fn answer_everything(&self) {
        Mock::given(method("POST"))
            .and(path_regex(r"/messages$"))
            .respond_with(cloud_api())
            .mount(&self.whatsapp)
            .await;
        Mock::given(method("POST"))
            .and(path("/emails"))
            .respond_with(ResendApi)
            .mount(&self.resend)
            .await;
    }

    pub fn ws(&self) -> &WorkspaceId {
        &self.workspaces[0].0
    }

    pub fn pn(&self) -> &PhoneNumberId {
        &self.workspaces[0].1
    }

    pub fn runner(&self, settings: RunSettings) -> Runner {
        reminder_runner(
            &self.stack,
            self.store.clone(),
            &self.whatsapp.uri(),
            &self.resend.uri(),
            settings,
        )
    }

    /// Stores a reminder due at `due_at` (in the past is fine: it is due).
    pub async fn reminder_at(
        &self,
        ws: &WorkspaceId,
        channel: ReminderChannel,
        due_at: OffsetDateTime,
    ) -> Reminder {
        let now = OffsetDateTime::now_utc();
        let new = NewReminder::parse(wa(), channel, due_at, true, now.max(due_at)).unwrap();
        let reminder = new.into_reminder(ws.clone(), now);
        match self.store.create_reminder(&reminder, None).await.unwrap() {
            Created::New(r) => r,
            Created::Existing { .. } => panic!("no idempotency key was given"),
        }
    }

    pub async fn due_reminder(&self, channel: ReminderChannel) -> Reminder {
        self.reminder_at(self.ws(), channel, OffsetDateTime::now_utc())
            .await
    }

    pub async fn get(&self, id: &ReminderId) -> Reminder {
        for (ws, _) in &self.workspaces {
            if let Some(r) = self.store.reminder(ws, id).await.unwrap() {
                return r;
            }
        }
        panic!("no reminder {id}")
    }

    /// The WhatsApp sends the fake received, by reminder id (from the callback data).
    pub async fn whatsapp_sends(&self) -> HashMap<String, Vec<Value>> {
        let mut by_id: HashMap<String, Vec<Value>> = HashMap::new();
        for request in self.whatsapp.received_requests().await.unwrap_or_default() {
            let body: Value = serde_json::from_slice(&request.body).unwrap();
            let id = body["biz_opaque_callback_data"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("reminder:")
                .to_owned();
            by_id.entry(id).or_default().push(body);
        }
        by_id
    }

    /// The emails the Resend fake received, by idempotency key.
    pub async fn emails(&self) -> HashMap<String, Vec<wiremock::Request>> {
        let mut by_key: HashMap<String, Vec<wiremock::Request>> = HashMap::new();
        for request in self.resend.received_requests().await.unwrap_or_default() {
            let key = request
                .headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            by_key.entry(key).or_default().push(request);
        }
        by_key
    }

    /// Writes the contact's opt-out flag and when they last wrote to `pn`.
    pub async fn contact(&self, opted_out: bool, last_inbound_at: Option<OffsetDateTime>) {
        let client = aws_sdk_dynamodb::Client::new(&self.stack.aws);
        let (pk, sk) = contact_key(self.ws(), &wa());
        let mut request = client
            .put_item()
            .table_name(self.store.table())
            .item("pk", av(pk))
            .item("sk", av(sk))
            .item("wa_id", av(CUSTOMER))
            .item(
                "opted_out",
                aws_sdk_dynamodb::types::AttributeValue::Bool(opted_out),
            );
        if let Some(at) = last_inbound_at {
            let stamp = at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            request = request.item(thread_attr(self.pn(), "last_inbound_at"), av(stamp));
        }
        request.send().await.unwrap();
    }
}

fn av(v: impl Into<String>) -> aws_sdk_dynamodb::types::AttributeValue {
    aws_sdk_dynamodb::types::AttributeValue::S(v.into())
}

pub fn wa() -> WaId {
    WaId::parse(CUSTOMER).unwrap()
}

pub fn template_channel(pn: &PhoneNumberId) -> ReminderChannel {
    ReminderChannel::WhatsappTemplate {
        phone_number_id: pn.clone(),
        template: template("appointment_reminder"),
    }
}

pub fn template(name: &str) -> TemplateSpec {
    TemplateSpec {
        name: name.into(),
        language: "en_US".into(),
        components: vec![json!({
            "type": "body",
            "parameters": [{ "type": "text", "text": "Tuesday 10:00" }]
        })],
    }
}

pub fn email_channel() -> ReminderChannel {
    ReminderChannel::Email {
        to: EmailAddress::parse("ana@example.com").unwrap(),
        subject: "Your appointment".into(),
        body: "See you on Tuesday at 10:00.".into(),
    }
}

/// One run with `secs` seconds before its deadline.
pub async fn run_for(runner: &Runner, secs: f64) -> RunSummary {
    runner
        .run(Instant::now() + Duration::from_secs_f64(secs))
        .await
}
