//! A reply whose outcome is unknown is reconciled by its status webhook only when the status is
//! about the same number and the same customer as the reply its callback data names; and neither
//! a reconciliation nor a late reply record ever moves the thread's `answered_through` back.

use std::time::Duration;

use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{
    CUSTOMER, Options, World, meta_status, now, spawn_world, thread, to_number,
};
use serde_json::json;
use shared::conversations::model::{
    Integration, IntegrationStatus, Provider, ReplyDraft, ReplyIntent, ReplyPart,
};
use shared::conversations::store::ReplyStore;
use shared::envelope::Source;
use shared::ids::{PhoneNumberId, WaId, Wamid};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use wiremock::matchers::{body_partial_json, method};
use wiremock::{Mock, ResponseTemplate};

/// Another number of the same workspace.
const SECOND_NUMBER: &str = "106540352244444";
/// Another customer of the same number.
const OTHER_CUSTOMER: &str = "16505559999";

async fn answered_through(world: &World) -> OffsetDateTime {
    let contact = world.contact(CUSTOMER).await.unwrap();
    OffsetDateTime::parse(s(&contact, &thread("answered_through")), &Rfc3339)
        .expect("answered_through is set")
}

/// A world in which the reply to `trigger` (sent at `at`) met a 503: flagged unknown. Returns
/// the intent's key, as its callback data carries it.
async fn unknown_reply(world: &World, trigger: &str, at: i64) -> String {
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "type": "text" })))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&world.whatsapp)
        .await;
    world
        .deliver_meta(&integration_tests::processor::meta_texts(&[(
            trigger,
            CUSTOMER,
            "Is my order ready?",
            at,
        )]))
        .await;
    world.pump().await;
    let key = format!("{}#{trigger}", world.conversation_id().await.as_str());
    assert_eq!(
        s(
            &world.intent(&key).await.expect("the intent is kept"),
            "state"
        ),
        "unknown"
    );
    key
}

#[tokio::test]
async fn a_status_naming_an_unknown_reply_from_another_number_or_for_another_customer_stores_nothing_and_the_right_one_reconciles_it()
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
    let key = unknown_reply(&world, "wamid.RECON1", now()).await;

    // The same callback data on a status of the workspace's other number.
    world
        .deliver_meta(&to_number(
            meta_status(
                "wamid.WRONGNUMBER",
                "delivered",
                now(),
                json!({ "biz_opaque_callback_data": key }),
            ),
            SECOND_NUMBER,
        ))
        .await;
    // And on a status of the right number for another customer.
    world
        .deliver_meta(&meta_status(
            "wamid.WRONGRECIPIENT",
            "delivered",
            now(),
            json!({ "biz_opaque_callback_data": key, "recipient_id": OTHER_CUSTOMER }),
        ))
        .await;
    world.pump().await;

    let still = world.intent(&key).await.expect("the intent is kept");
    assert_eq!(s(&still, "state"), "unknown", "{still:?}");
    assert!(!still.contains_key("wamid"), "{still:?}");
    assert!(world.message("wamid.WRONGNUMBER").await.is_none());
    assert!(world.message("wamid.WRONGRECIPIENT").await.is_none());

    world
        .deliver_meta(&meta_status(
            "wamid.RIGHTONE",
            "delivered",
            now(),
            json!({ "biz_opaque_callback_data": key }),
        ))
        .await;
    world.pump().await;

    let reconciled = world.intent(&key).await.expect("the intent is kept");
    assert_eq!(s(&reconciled, "state"), "sent");
    assert_eq!(s(&reconciled, "wamid"), "wamid.RIGHTONE");
    let reply = world.message("wamid.RIGHTONE").await.expect("stored");
    assert_eq!(s(&reply, "direction"), "outbound");
    assert_eq!(s(&reply, "wa_id"), CUSTOMER);
    assert_eq!(s(&reply, "status"), "delivered");
    assert_eq!(world.sent_texts().await.len(), 1, "nothing resent");
}

#[tokio::test]
async fn reconciling_a_reply_to_an_older_message_after_a_newer_one_was_answered_leaves_answered_through_at_the_newer_one()
 {
    let world = spawn_world(Options::default()).await;
    let older = now();
    let key = unknown_reply(&world, "wamid.OLDERASK", older).await;
    // The next message comes a while later (past the unknown reply's draft), and is answered.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let newer = now();
    world
        .deliver_meta(&integration_tests::processor::meta_texts(&[(
            "wamid.NEWERASK",
            CUSTOMER,
            "Hello?",
            newer,
        )]))
        .await;
    world.pump().await;
    assert_eq!(world.sent_texts().await.len(), 2);
    let newer_at = OffsetDateTime::from_unix_timestamp(newer).unwrap();
    assert_eq!(answered_through(&world).await, newer_at);

    // Now the older reply's status arrives: it did land.
    world
        .deliver_meta(&meta_status(
            "wamid.LATELANDED",
            "delivered",
            now(),
            json!({ "biz_opaque_callback_data": key }),
        ))
        .await;
    world.pump().await;

    assert_eq!(
        s(
            &world.intent(&key).await.expect("the intent is kept"),
            "state"
        ),
        "sent"
    );
    assert!(world.message("wamid.LATELANDED").await.is_some());
    assert_eq!(
        answered_through(&world).await,
        newer_at,
        "the reconciliation does not move it back"
    );
}

#[tokio::test]
async fn a_reply_recorded_late_for_an_older_trigger_never_moves_answered_through_back() {
    let world = spawn_world(Options::default()).await;
    let newer = now();
    world
        .deliver_meta(&integration_tests::processor::meta_texts(&[(
            "wamid.ANSWEREDFIRST",
            CUSTOMER,
            "Are you open?",
            newer,
        )]))
        .await;
    world.pump().await;
    let newer_at = OffsetDateTime::from_unix_timestamp(newer).unwrap();
    assert_eq!(answered_through(&world).await, newer_at);

    // A slower invocation recording its reply to an older message of the same conversation.
    let conversation = world.conversation_id().await;
    let intent = ReplyIntent {
        conversation_id: conversation.clone(),
        trigger: Wamid::parse("wamid.ANSWEREDLATE").unwrap(),
    };
    let draft = ReplyDraft {
        workspace_id: world.workspace.clone(),
        phone_number_id: PhoneNumberId::parse(integration_tests::PHONE_NUMBER_ID).unwrap(),
        wa_id: WaId::parse(CUSTOMER).unwrap(),
        conversation_id: conversation,
        text: "Yes, until 6pm.".into(),
        ai: None,
        source: Source::Meta,
        created_at: OffsetDateTime::now_utc(),
        answers_through: Some(newer_at - time::Duration::seconds(30)),
    };
    world.store.begin_reply(&intent, &draft, &[]).await.unwrap();
    let older_at = newer_at - time::Duration::seconds(30);
    world
        .store
        .record_reply(
            &intent,
            &draft.message(Wamid::parse("wamid.LATEREPLY").unwrap(), &draft.text),
            ReplyPart::WHOLE,
            Some(older_at),
        )
        .await
        .expect("the reply is recorded all the same");

    assert!(world.message("wamid.LATEREPLY").await.is_some());
    assert_eq!(
        s(
            &world
                .intent(&intent.key())
                .await
                .expect("the intent is kept"),
            "state"
        ),
        "sent"
    );
    assert_eq!(answered_through(&world).await, newer_at);
}

#[tokio::test]
async fn a_reconciled_reply_moves_answered_through_to_the_time_of_the_message_it_answered_not_to_when_it_was_drafted()
 {
    let world = spawn_world(Options::default()).await;
    // The customer wrote a few seconds ago; the reply was drafted just now and met a 503.
    let asked = now() - 5;
    let key = unknown_reply(&world, "wamid.RECONTIME", asked).await;
    let contact = world.contact(CUSTOMER).await.unwrap();
    assert!(
        !contact.contains_key(&thread("answered_through")),
        "nothing is answered yet"
    );

    world
        .deliver_meta(&meta_status(
            "wamid.RECONTIMELANDED",
            "delivered",
            now(),
            json!({ "biz_opaque_callback_data": key }),
        ))
        .await;
    world.pump().await;

    assert_eq!(
        s(
            &world.intent(&key).await.expect("the intent is kept"),
            "state"
        ),
        "sent"
    );
    // A message the customer sent after `asked` (while the reply was being written) is not
    // covered by this reply, and must still count as unanswered.
    assert_eq!(
        answered_through(&world).await,
        OffsetDateTime::from_unix_timestamp(asked).unwrap()
    );
}
