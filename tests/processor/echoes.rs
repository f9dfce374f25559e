//! A message the business sent from the WhatsApp Business app, as Kapso reports it (a
//! `whatsapp.message.sent` with `kapso.origin: business_app`, or its outbound
//! `whatsapp.message.received` copy), is an outbound echo: stored as the business's message,
//! opening the conversation when there is none, never answered, and, when the workspace says
//! so, handing the conversation to the person who wrote it.

use integration_tests::fixture_json;
use integration_tests::processor::dynamo_item::{Item, bool, s};
use integration_tests::processor::{CUSTOMER, Options, World, meta_text, now, spawn_world, thread};
use serde_json::Value;
use shared::conversations::model::{Direction, Provider};
use shared::conversations::store::MessageStore;
use shared::ids::ConversationId;

/// The two ways Kapso reports a Business-app message: `(event header, fixture)`.
const ECHOES: [(&str, &str); 2] = [
    (
        "whatsapp.message.sent",
        "kapso/message_sent_business_app.json",
    ),
    (
        "whatsapp.message.received",
        "kapso/message_received_business_app.json",
    ),
];

/// A Kapso fixture with a fresh timestamp on its message (and its statuses), and its wamid.
fn fresh_echo(file: &str) -> (Value, String) {
    let mut payload = fixture_json(file);
    // A few seconds ago: before the customer's answer in the tests below.
    let t = (now() - 5).to_string();
    payload["message"]["timestamp"] = t.clone().into();
    if let Some(statuses) = payload
        .pointer_mut("/message/kapso/statuses")
        .and_then(Value::as_array_mut)
    {
        for status in statuses {
            status["timestamp"] = t.clone().into();
        }
    }
    let wamid = payload["message"]["id"].as_str().unwrap().to_owned();
    (payload, wamid)
}

async fn kapso_world(pause_on_human_reply: bool) -> World {
    let mut options = Options {
        provider: Provider::Kapso,
        ..Options::default()
    };
    options.ai.pause_on_human_reply = pause_on_human_reply;
    spawn_world(options).await
}

async fn contact(world: &World) -> Item {
    world
        .contact(CUSTOMER)
        .await
        .expect("the contact is stored")
}

/// `(direction, wamid)` of every message stored in the conversation, oldest first.
async fn conversation(world: &World, id: &str) -> Vec<(Direction, String)> {
    world
        .store
        .history(&ConversationId::parse(id).unwrap(), 50)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.direction, m.wamid.as_str().to_owned()))
        .collect()
}

#[tokio::test]
async fn a_business_app_echo_for_a_customer_without_a_conversation_is_stored_once_as_outbound_opens_the_conversation_and_pauses_the_bot()
 {
    for (event_type, file) in ECHOES {
        let world = kapso_world(true).await;
        assert!(
            world.contact(CUSTOMER).await.is_none(),
            "no conversation yet"
        );
        let (echo, wamid) = fresh_echo(file);
        world.deliver_kapso(event_type, &echo).await;
        world.pump().await;

        let stored = world
            .message(&wamid)
            .await
            .unwrap_or_else(|| panic!("{event_type}: the echo is stored"));
        assert_eq!(s(&stored, "direction"), "outbound", "{event_type}");
        assert_eq!(s(&stored, "origin"), "business_app", "{event_type}");
        assert_eq!(s(&stored, "wa_id"), CUSTOMER, "{event_type}");
        assert_eq!(
            s(&stored, "text"),
            "Sure, I'll hold it for you until 6pm.",
            "{event_type}"
        );
        let conversation_id = s(&stored, "conversation_id").to_owned();
        let thread_of = contact(&world).await;
        assert_eq!(
            s(&thread_of, &thread("conversation_id")),
            conversation_id,
            "{event_type}: the echo opened the customer's conversation"
        );
        assert!(
            bool(&thread_of, &thread("bot_paused")),
            "{event_type}: a person answered, so the bot is paused"
        );
        let requests = world.whatsapp.received_requests().await.unwrap_or_default();
        assert!(
            requests.is_empty(),
            "{event_type}: an echo is never answered nor marked read"
        );

        // Kapso delivers the same echo again.
        world.deliver_kapso(event_type, &echo).await;
        world.pump().await;
        assert_eq!(
            conversation(&world, &conversation_id).await,
            [(Direction::Outbound, wamid.clone())],
            "{event_type}: stored once"
        );

        // The customer answers: stored in the conversation the echo opened, not answered by AI.
        world
            .deliver_meta(&meta_text("wamid.AFTERECHO", "Great, I'll come by at 5"))
            .await;
        world.pump().await;
        let customer = world
            .message("wamid.AFTERECHO")
            .await
            .expect("the customer's message is stored");
        assert_eq!(
            s(&customer, "conversation_id"),
            conversation_id,
            "{event_type}"
        );
        assert_eq!(
            conversation(&world, &conversation_id).await,
            [
                (Direction::Outbound, wamid.clone()),
                (Direction::Inbound, "wamid.AFTERECHO".to_owned())
            ],
            "{event_type}"
        );
        let texts = world.sent_texts().await;
        assert!(texts.is_empty(), "{event_type}: no AI reply: {texts:?}");
    }
}

#[tokio::test]
async fn a_business_app_echo_does_not_pause_the_bot_when_the_workspace_turned_pausing_off() {
    for (event_type, file) in ECHOES {
        let world = kapso_world(false).await;
        let (echo, wamid) = fresh_echo(file);
        world.deliver_kapso(event_type, &echo).await;
        world.pump().await;

        let stored = world.message(&wamid).await.expect("the echo is stored");
        assert_eq!(s(&stored, "direction"), "outbound", "{event_type}");
        assert!(
            !bool(&contact(&world).await, &thread("bot_paused")),
            "{event_type}"
        );
        assert!(
            world.sent_texts().await.is_empty(),
            "{event_type}: the echo itself is not answered"
        );

        world
            .deliver_meta(&meta_text("wamid.AFTERECHO", "Great, I'll come by at 5"))
            .await;
        world.pump().await;

        let texts = world.sent_texts().await;
        assert_eq!(texts.len(), 1, "{event_type}: the customer is answered");
        assert_eq!(texts[0]["to"], CUSTOMER, "{event_type}");
        assert!(
            texts[0]["biz_opaque_callback_data"]
                .as_str()
                .unwrap()
                .ends_with("#wamid.AFTERECHO"),
            "{event_type}"
        );
    }
}
