//! Reactions (added or removed), system notices (`user_changed_number`) and messages the API
//! cannot show us (`unsupported`) are stored and never answered, even when they are fresh: the
//! model would only see a placeholder. They do not hold up the next real message's reply.

use integration_tests::processor::dynamo_item::s;
use integration_tests::processor::{CUSTOMER, Options, meta_text, now, spawn_world};
use integration_tests::{ApiRequest, fixture_json, meta_signature};
use serde_json::Value;

/// A Meta fixture with its message's timestamp set to now, and its wamid.
fn fresh_fixture(file: &str) -> (Value, String) {
    let mut payload = fixture_json(&format!("meta/{file}.json"));
    let message = &mut payload["entry"][0]["changes"][0]["value"]["messages"][0];
    message["timestamp"] = now().to_string().into();
    let wamid = message["id"].as_str().unwrap().to_owned();
    (payload, wamid)
}

#[tokio::test]
async fn fresh_reactions_removed_reactions_system_notices_and_unsupported_messages_are_stored_with_no_request_to_whatsapp_and_a_text_after_them_is_answered()
 {
    let world = spawn_world(Options::default()).await;
    for file in ["reaction", "reaction_removed", "system", "unsupported"] {
        let (payload, wamid) = fresh_fixture(file);
        let body = serde_json::to_vec(&payload).unwrap();
        let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
            .header(meta_signature(&body))
            .send(&world.ingest)
            .await;
        assert_eq!(response.status, 200, "{file}");
        world.pump().await;

        let stored = world
            .message(&wamid)
            .await
            .unwrap_or_else(|| panic!("{file} is stored"));
        assert_eq!(s(&stored, "direction"), "inbound", "{file}");
        assert_eq!(
            s(&stored, "type"),
            payload["entry"][0]["changes"][0]["value"]["messages"][0]["type"]
                .as_str()
                .unwrap(),
            "{file}"
        );
        // Not answered, and not even marked read: the read receipt belongs to a reply.
        let requests = world.whatsapp.received_requests().await.unwrap_or_default();
        assert!(
            requests.is_empty(),
            "{file} made requests to WhatsApp: {:?}",
            requests
                .iter()
                .map(|r| String::from_utf8_lossy(&r.body).into_owned())
                .collect::<Vec<_>>()
        );
        assert!(
            !stored.contains_key("reply_intent"),
            "{file} is covered by no reply"
        );
    }

    world
        .deliver_meta(&meta_text("wamid.AFTERREACTIONS", "Do you have it in red?"))
        .await;
    world.pump().await;

    let texts = world.sent_texts().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["to"], CUSTOMER);
    assert!(
        texts[0]["biz_opaque_callback_data"]
            .as_str()
            .unwrap()
            .ends_with("#wamid.AFTERREACTIONS"),
        "the reply answers the text, not a reaction"
    );
    assert_eq!(world.read_receipts().await.len(), 1);
}
