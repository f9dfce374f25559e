//! One customer writing to two numbers of one workspace at the same moment: the queue's groups
//! (number and customer) run concurrently, and each number's thread on the shared contact item is
//! written by its own group only.

use integration_tests::PHONE_NUMBER_ID;
use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{
    CUSTOMER, Options, World, envelopes_of, event, failures, invoke, meta_texts, now, record,
    spawn_world, to_number,
};
use serde_json::Value;
use shared::adapters::dynamo;
use shared::conversations::model::{Direction, Integration, IntegrationStatus, Provider};
use shared::conversations::store::MessageStore;
use shared::ids::{ConversationId, PhoneNumberId};

/// The workspace's second number.
const SECOND_NUMBER: &str = "106540352243333";

fn attr(number: &str, field: &str) -> String {
    dynamo::thread_attr(&PhoneNumberId::parse(number).unwrap(), field)
}

/// The texts sent from `number`, as the API received them.
async fn texts_from(world: &World, number: &str) -> Vec<Value> {
    world
        .whatsapp
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .filter(|r| r.url.path() == format!("/v24.0/{number}/messages"))
        .map(|r| serde_json::from_slice::<Value>(&r.body).unwrap())
        .filter(|b| b["type"] == "text")
        .collect()
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
async fn one_customer_writing_to_two_numbers_of_a_workspace_at_once_gets_one_reply_per_number_without_a_retry()
 {
    let world = spawn_world(Options::default()).await;
    world
        .store
        .put_integration(&Integration {
            phone_number_id: PhoneNumberId::parse(SECOND_NUMBER).unwrap(),
            workspace_id: world.workspace.clone(),
            provider: Provider::Meta,
            status: IntegrationStatus::Active,
            error: None,
            access_token: None,
        })
        .await
        .unwrap();
    let t = now();
    let to_first =
        envelopes_of(&meta_texts(&[("wamid.NUM1", CUSTOMER, "Hi shop one", t)])).remove(0);
    let to_second = envelopes_of(&to_number(
        meta_texts(&[("wamid.NUM2", CUSTOMER, "Hi shop two", t)]),
        SECOND_NUMBER,
    ))
    .remove(0);
    assert_ne!(
        to_first.group_id(),
        to_second.group_id(),
        "two groups: SQS may hand them to two invocations at once"
    );

    // Two Lambda invocations, one per group, at the same time.
    let (first, second) = tokio::join!(
        invoke(&world.processor, event(vec![record("n1", &to_first)])),
        invoke(&world.processor, event(vec![record("n2", &to_second)])),
    );

    assert!(
        failures(&first).is_empty() && failures(&second).is_empty(),
        "no record failed: {:?} {:?}",
        failures(&first),
        failures(&second)
    );
    let contact = world.contact(CUSTOMER).await.expect("one contact item");
    let first_conversation = s(&contact, &attr(PHONE_NUMBER_ID, "conversation_id")).to_owned();
    let second_conversation = s(&contact, &attr(SECOND_NUMBER, "conversation_id")).to_owned();
    assert!(!first_conversation.is_empty() && !second_conversation.is_empty());
    assert_ne!(
        first_conversation, second_conversation,
        "one conversation per number"
    );
    for number in [PHONE_NUMBER_ID, SECOND_NUMBER] {
        for field in ["started_at", "last_inbound_at", "answered_through"] {
            assert!(
                !s(&contact, &attr(number, field)).is_empty(),
                "{} on the contact",
                attr(number, field)
            );
        }
    }

    for (number, wamid, conversation_id) in [
        (PHONE_NUMBER_ID, "wamid.NUM1", &first_conversation),
        (SECOND_NUMBER, "wamid.NUM2", &second_conversation),
    ] {
        let texts = texts_from(&world, number).await;
        assert_eq!(texts.len(), 1, "exactly one reply from {number}");
        assert_eq!(texts[0]["to"], CUSTOMER);
        assert_eq!(
            texts[0]["biz_opaque_callback_data"],
            format!("{conversation_id}#{wamid}"),
            "the reply answers this number's message in this number's conversation"
        );
        let stored = conversation(&world, conversation_id).await;
        assert_eq!(stored.len(), 2, "{stored:?}");
        assert!(stored.contains(&(Direction::Inbound, wamid.to_owned())));
        assert_eq!(
            stored
                .iter()
                .filter(|(direction, _)| *direction == Direction::Outbound)
                .count(),
            1
        );
    }
}
