//! A record that can never succeed because a stored item it needs is corrupt is kept and
//! acknowledged: it holds up neither the other conversations of its batch nor the later messages
//! of its own conversation once the item is repaired.

use integration_tests::PHONE_NUMBER_ID;
use integration_tests::processor::completion;
use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{
    CUSTOMER, Options, World, envelopes_of, meta_text, meta_texts, now, spawn_world, to_number,
};
use integration_tests::unique_name;
use local_stack::bridge::PumpReport;
use serde_json::Value;
use serde_json::json;
use shared::adapters::dynamo;
use shared::conversations::model::{AiConfig, Integration, IntegrationStatus, Provider};
use shared::ids::{PhoneNumberId, WorkspaceId};
use std::time::Duration;
use wiremock::matchers::{body_partial_json, method, path};
use wiremock::{Mock, ResponseTemplate};

/// The number of a second workspace, whose AI config gets corrupted.
const BROKEN_NUMBER: &str = "106540352249999";
const BROKEN_CUSTOMER: &str = "16505557777";

/// The texts sent from `phone_number_id`, in order, as `(to, body)`.
async fn texts_from(world: &World, phone_number_id: &str) -> Vec<(String, String)> {
    world
        .whatsapp
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == format!("/v24.0/{phone_number_id}/messages"))
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .filter(|b| b["type"] == "text")
        .map(|b| {
            (
                b["to"].as_str().unwrap().to_owned(),
                b["text"]["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A second workspace with its own number and AI on.
async fn seed_second_workspace(world: &World) -> (WorkspaceId, Integration, AiConfig) {
    let workspace = WorkspaceId::parse(unique_name("ws-broken")).unwrap();
    let integration = Integration {
        phone_number_id: PhoneNumberId::parse(BROKEN_NUMBER).unwrap(),
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
    world
        .store
        .put_workspace(&workspace, "Broken shop", &integration, &ai)
        .await
        .unwrap();
    (workspace, integration, ai)
}

#[tokio::test]
async fn a_corrupt_ai_config_is_kept_as_a_failed_event_without_delaying_another_workspace_or_the_conversations_next_message()
 {
    let world = spawn_world(Options::default()).await;
    let (broken_ws, broken_integration, ai) = seed_second_workspace(&world).await;
    world.corrupt_ai_config(&broken_ws).await;
    let broken_payload = to_number(
        meta_texts(&[("wamid.BROKEN1", BROKEN_CUSTOMER, "Is the shop open?", now())]),
        BROKEN_NUMBER,
    );
    world.deliver_meta(&broken_payload).await;
    world
        .deliver_meta(&meta_text("wamid.HEALTHY1", "Do you deliver?"))
        .await;

    let first = world.bridge().pump_once(0).await.unwrap();

    assert_eq!(
        first,
        PumpReport {
            received: 2,
            failed: 0,
            deleted: 2
        },
        "both records in one batch, both acknowledged"
    );
    let healthy = texts_from(&world, PHONE_NUMBER_ID).await;
    assert_eq!(
        healthy.len(),
        1,
        "the healthy workspace is answered at once"
    );
    assert_eq!(healthy[0].0, CUSTOMER);
    assert!(
        texts_from(&world, BROKEN_NUMBER).await.is_empty(),
        "no reply without a readable AI config"
    );
    assert!(
        world.message("wamid.BROKEN1").await.is_some(),
        "the message itself is stored"
    );
    let event_id = envelopes_of(&broken_payload).remove(0).event_id.to_string();
    let kept = world
        .store
        .raw_item(dynamo::failed_key(&event_id))
        .await
        .unwrap()
        .expect("the record is kept as a failed event");
    assert!(s(&kept, "body").contains("wamid.BROKEN1"), "{kept:?}");
    assert!(!s(&kept, "reason").is_empty(), "{kept:?}");

    // Someone repairs the config; the customer writes again. Had the first record been left
    // for redelivery, it would still be in flight and hold this one back (FIFO group).
    world
        .store
        .put_workspace(&broken_ws, "Broken shop", &broken_integration, &ai)
        .await
        .unwrap();
    world
        .deliver_meta(&to_number(
            meta_texts(&[("wamid.BROKEN2", BROKEN_CUSTOMER, "Hello again?", now())]),
            BROKEN_NUMBER,
        ))
        .await;

    let second = world.bridge().pump_once(0).await.unwrap();

    assert_eq!(
        second,
        PumpReport {
            received: 1,
            failed: 0,
            deleted: 1
        },
        "only the new message is delivered"
    );
    let repaired = texts_from(&world, BROKEN_NUMBER).await;
    assert_eq!(repaired.len(), 1, "the conversation goes on: {repaired:?}");
    assert_eq!(repaired[0].0, BROKEN_CUSTOMER);
    assert_eq!(texts_from(&world, PHONE_NUMBER_ID).await.len(), 1);
}

#[tokio::test]
async fn a_model_name_the_ai_provider_refuses_is_kept_as_a_failed_event_and_acknowledged_at_once_and_the_next_message_is_answered_once_it_is_fixed()
 {
    let mut options = Options {
        grok_key: true,
        ..Options::default()
    };
    // A fixed setting takes effect at the next message, not after the cache's 30 s.
    options.settings.ai_config_cache_ttl = Duration::ZERO;
    let world = spawn_world(options).await;
    let mut ai = Options::default().ai;
    ai.grok_weight = 100;
    ai.grok_model = Some("grok-typo".into());
    world.set_ai(&ai, Provider::Meta).await;
    // The provider refuses the misspelt model, as xAI does, and answers for the right one.
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .and(body_partial_json(json!({ "model": "grok-typo" })))
        .respond_with(ResponseTemplate::new(404).set_body_json(
            json!({ "error": "The model grok-typo does not exist or your team does not have access to it." }),
        ))
        .mount(&world.grok)
        .await;
    Mock::given(method("POST"))
        .and(path("/chat/completions"))
        .and(body_partial_json(json!({ "model": "grok-test" })))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(completion("We are open.", "grok-test")),
        )
        .mount(&world.grok)
        .await;
    let payload = meta_text("wamid.TYPO1", "Are you open?");
    world.deliver_meta(&payload).await;

    let first = world.bridge().pump_once(0).await.unwrap();

    assert_eq!(
        first,
        PumpReport {
            received: 1,
            failed: 0,
            deleted: 1
        },
        "acknowledged at once: asking the provider again would be refused again"
    );
    assert!(world.sent_texts().await.is_empty(), "no reply");
    assert!(
        world.message("wamid.TYPO1").await.is_some(),
        "the message is stored"
    );
    let event_id = envelopes_of(&payload).remove(0).event_id.to_string();
    let kept = world
        .store
        .raw_item(dynamo::failed_key(&event_id))
        .await
        .unwrap()
        .expect("the record is kept as a failed event");
    assert!(s(&kept, "reason").contains("404"), "{kept:?}");

    // The workspace fixes its model name; the customer's next message is answered, not held
    // back behind a record waiting for its redelivery.
    ai.grok_model = Some("grok-test".into());
    world.set_ai(&ai, Provider::Meta).await;
    world
        .deliver_meta(&meta_texts(&[(
            "wamid.TYPO2",
            CUSTOMER,
            "Hello?",
            now() + 1,
        )]))
        .await;

    let second = world.bridge().pump_once(0).await.unwrap();

    assert_eq!(second.received, 1, "only the new message is delivered");
    let sent = world.sent_texts().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["text"]["body"], "We are open.");
}
