//! Inbound messages are stored with their contact and conversation.

use integration_tests::processor::dynamo_item::{n, s};
use integration_tests::processor::{CUSTOMER, Options, meta_text, spawn_world, thread};
use integration_tests::{ApiRequest, fixture_json, meta_signature};

#[tokio::test]
async fn a_text_message_is_stored_with_its_contact_and_conversation() {
    let world = spawn_world(Options::default()).await;
    world
        .deliver_meta(&meta_text("wamid.STORE1", "Hello there"))
        .await;
    world.pump().await;

    let message = world.message("wamid.STORE1").await.expect("message stored");
    assert_eq!(s(&message, "direction"), "inbound");
    assert_eq!(s(&message, "type"), "text");
    assert_eq!(s(&message, "text"), "Hello there");
    assert_eq!(s(&message, "wa_id"), CUSTOMER);
    assert_eq!(n(&message, "status_rank"), Some(0));

    let contact = world.contact(CUSTOMER).await.expect("contact stored");
    assert_eq!(s(&contact, "profile_name"), "Sheena Nelson");
    assert_eq!(s(&contact, "phone"), "+16505551234");
    assert_eq!(
        s(&contact, &thread("conversation_id")),
        s(&message, "conversation_id")
    );
    assert!(!s(&contact, &thread("last_inbound_at")).is_empty());
}

#[tokio::test]
async fn every_meta_message_type_is_stored_with_its_type_text_and_media() {
    let world = spawn_world(Options::default()).await;
    let cases = [
        (
            "text",
            Some("Hi! Do you have the blue jacket in size M?"),
            false,
        ),
        ("image", None, true),
        ("audio", None, true),
        ("video", None, true),
        ("document", None, true),
        ("sticker", None, true),
        ("location", None, false),
        ("contacts", None, false),
        ("interactive_button_reply", None, false),
        ("interactive_list_reply", None, false),
        ("interactive_nfm_reply", None, false),
        ("button", None, false),
        ("reaction", None, false),
        ("order", None, false),
        ("system", None, false),
        ("unsupported", None, false),
        ("unknown", None, false),
    ];
    for (file, text, media) in cases {
        let payload = fixture_json(&format!("meta/{file}.json"));
        let body = integration_tests::fixture(&format!("meta/{file}.json"));
        let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
            .header(meta_signature(&body))
            .send(&world.ingest)
            .await;
        assert_eq!(response.status, 200, "{file}");
        world.pump().await;
        let sent = &payload["entry"][0]["changes"][0]["value"]["messages"][0];
        let stored = world
            .message(sent["id"].as_str().unwrap())
            .await
            .unwrap_or_else(|| panic!("{file} not stored"));
        assert_eq!(s(&stored, "type"), sent["type"].as_str().unwrap(), "{file}");
        if let Some(text) = text {
            assert_eq!(s(&stored, "text"), text, "{file}");
        }
        assert_eq!(!s(&stored, "media_id").is_empty(), media, "{file} media id");
        assert!(
            s(&stored, "raw").contains(sent["id"].as_str().unwrap()),
            "{file} keeps its raw event"
        );
    }
    // Old fixtures (2024) are stored but never answered.
    let texts = world.sent_texts().await;
    assert!(texts.is_empty(), "{texts:?}");
}

#[tokio::test]
async fn a_message_after_the_inactivity_period_starts_a_new_conversation() {
    let mut options = Options::default();
    options.ai.enabled = false;
    options.settings.conversation_inactivity = std::time::Duration::from_secs(60);
    let world = spawn_world(options).await;
    let now = integration_tests::processor::now();
    let first = integration_tests::processor::meta_texts(&[(
        "wamid.OLDCONV",
        CUSTOMER,
        "first",
        now - 3600,
    )]);
    let second =
        integration_tests::processor::meta_texts(&[("wamid.NEWCONV", CUSTOMER, "second", now)]);
    world.deliver_meta(&first).await;
    world.pump().await;
    world.deliver_meta(&second).await;
    world.pump().await;
    let old = world.message("wamid.OLDCONV").await.unwrap();
    let new = world.message("wamid.NEWCONV").await.unwrap();
    assert_ne!(s(&old, "conversation_id"), s(&new, "conversation_id"));
    let contact = world.contact(CUSTOMER).await.unwrap();
    assert_eq!(
        s(&contact, &thread("conversation_id")),
        s(&new, "conversation_id")
    );
}

#[tokio::test]
async fn a_late_older_message_does_not_move_the_last_inbound_time_back() {
    let mut options = Options::default();
    options.ai.enabled = false;
    let world = spawn_world(options).await;
    let now = integration_tests::processor::now();
    let newer =
        integration_tests::processor::meta_texts(&[("wamid.NEWER", CUSTOMER, "newer", now)]);
    let older =
        integration_tests::processor::meta_texts(&[("wamid.OLDER", CUSTOMER, "older", now - 120)]);
    world.deliver_meta(&newer).await;
    world.pump().await;
    let before = s(
        &world.contact(CUSTOMER).await.unwrap(),
        &thread("last_inbound_at"),
    )
    .to_owned();
    world.deliver_meta(&older).await;
    world.pump().await;
    assert!(
        world.message("wamid.OLDER").await.is_some(),
        "the late message is stored"
    );
    let contact = world.contact(CUSTOMER).await.unwrap();
    assert_eq!(s(&contact, &thread("last_inbound_at")), before);
}
