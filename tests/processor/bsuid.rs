//! A customer known only by a business-scoped user id (BSUID, no `wa_id`): stored under that id
//! and answered through Meta's `recipient` field, never `to`.

use integration_tests::PHONE_NUMBER_ID;
use integration_tests::fixture_json;
use integration_tests::processor::dynamo_item::{n, s};
use integration_tests::processor::{Options, now, spawn_world, thread};
use shared::adapters::dynamo;
use shared::ids::WaId;

const BSUID: &str = "US.13491208655302741918";

#[tokio::test]
async fn a_customer_known_only_by_a_bsuid_is_stored_under_it_and_answered_with_the_recipient_field()
{
    let world = spawn_world(Options::default()).await;
    let mut payload = fixture_json("meta/text_bsuid_only.json");
    let message = &mut payload["entry"][0]["changes"][0]["value"]["messages"][0];
    message["timestamp"] = now().to_string().into();
    let wamid = message["id"].as_str().unwrap().to_owned();
    world.deliver_meta(&payload).await;
    world.pump().await;

    let stored = world.message(&wamid).await.expect("the message is stored");
    assert_eq!(s(&stored, "wa_id"), BSUID);
    assert_eq!(s(&stored, "direction"), "inbound");
    assert_eq!(s(&stored, "text"), "Hi, is the store open on Sunday?");
    let contact = world
        .store
        .raw_item(dynamo::contact_key(
            &world.workspace,
            &WaId::parse(BSUID).unwrap(),
        ))
        .await
        .unwrap()
        .expect("the contact is stored under the BSUID");
    assert_eq!(
        s(&contact, &thread("conversation_id")),
        s(&stored, "conversation_id")
    );

    let requests = world.whatsapp.received_requests().await.unwrap();
    let texts: Vec<_> = requests
        .iter()
        .filter(|r| serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["type"] == "text")
        .collect();
    assert_eq!(texts.len(), 1, "one AI reply");
    assert_eq!(
        texts[0].url.path(),
        format!("/v24.0/{PHONE_NUMBER_ID}/messages"),
        "sent through Meta, not Kapso"
    );
    assert_eq!(
        texts[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer test-meta-token")
    );
    let body: serde_json::Value = serde_json::from_slice(&texts[0].body).unwrap();
    assert_eq!(body["recipient"], BSUID);
    assert!(
        body.get("to").is_none(),
        "a BSUID never goes in `to`: {body}"
    );
    assert_eq!(body["recipient_type"], "individual");
    assert!(
        body["biz_opaque_callback_data"]
            .as_str()
            .unwrap()
            .ends_with(&format!("#{wamid}"))
    );

    let reply = world
        .message("wamid.REPLY0001")
        .await
        .expect("the reply is stored");
    assert_eq!(s(&reply, "wa_id"), BSUID);
    assert_eq!(s(&reply, "direction"), "outbound");
    assert_eq!(n(&reply, "status_rank"), Some(1));
}
