//! Every fixture payload becomes exactly the envelopes expected, read back from the moto FIFO
//! queue with their message group and de-duplication ids.

use integration_tests::{
    ApiRequest, PHONE_NUMBER_ID, Received, TestStack, fixture, fixture_json, kapso_headers,
    meta_signature, spawn_stack,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// What one envelope should be: event id, kind, event type, message group.
type Expected = (String, &'static str, String, String);

fn group(wa_id: &str) -> String {
    format!("{PHONE_NUMBER_ID}:{wa_id}")
}

fn dedup_of(event_id: &str) -> String {
    hex::encode(Sha256::digest(event_id.as_bytes()))
}

/// What a Meta payload should become, read straight from its JSON: one envelope per message,
/// one per status, one per value-level error; nothing for other fields.
fn expected_from_meta(payload: &Value) -> Vec<Expected> {
    let mut out = Vec::new();
    for entry in payload["entry"].as_array().into_iter().flatten() {
        for change in entry["changes"].as_array().into_iter().flatten() {
            if change["field"] != "messages" {
                continue;
            }
            let value = &change["value"];
            for m in value["messages"].as_array().into_iter().flatten() {
                let id = m["id"].as_str().unwrap();
                // The phone number when there is one, else the business-scoped user id.
                let wa_id = m["from"].as_str().or(m["from_user_id"].as_str()).unwrap();
                let kind = m["type"].as_str().unwrap().to_owned();
                out.push((format!("msg:{id}"), "inbound_message", kind, group(wa_id)));
            }
            for s in value["statuses"].as_array().into_iter().flatten() {
                let (id, status) = (s["id"].as_str().unwrap(), s["status"].as_str().unwrap());
                let wa_id = s["recipient_id"]
                    .as_str()
                    .or(s["recipient_user_id"].as_str())
                    .unwrap();
                out.push((
                    format!("status:{id}:{status}"),
                    "status",
                    status.to_owned(),
                    group(wa_id),
                ));
            }
        }
    }
    out
}

fn actual(received: &[Received]) -> Vec<Expected> {
    received
        .iter()
        .map(|r| {
            let event_id = r.body["event_id"].as_str().unwrap().to_owned();
            assert_eq!(r.dedup_id, dedup_of(&event_id), "dedup id of {event_id}");
            assert_eq!(r.attributes["event_id"], event_id, "correlation attribute");
            let kind = match r.body["kind"].as_str().unwrap() {
                "inbound_message" => "inbound_message",
                "outbound_message" => "outbound_message",
                "status" => "status",
                "conversation" => "conversation",
                "account" => "account",
                "error" => "error",
                other => panic!("unknown kind {other}"),
            };
            (
                event_id,
                kind,
                r.body["event_type"].as_str().unwrap().to_owned(),
                r.group_id.clone(),
            )
        })
        .collect()
}

async fn post_meta(stack: &TestStack, file: &str) -> Vec<Received> {
    let body = fixture(file);
    let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
        .header(meta_signature(&body))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 200, "{file}: {}", response.body);
    stack.drain().await
}

async fn post_kapso(stack: &TestStack, file: &str) -> Vec<Received> {
    let response = ApiRequest::post("/webhooks/kapso", fixture(&format!("kapso/{file}")))
        .headers(kapso_headers(file))
        .send(&stack.ingest())
        .await;
    assert_eq!(response.status, 200, "{file}: {}", response.body);
    stack.drain().await
}

fn sorted(mut v: Vec<Expected>) -> Vec<Expected> {
    v.sort();
    v
}

#[tokio::test]
async fn every_meta_fixture_becomes_one_envelope_per_message_and_status() {
    let stack = spawn_stack().await;
    let mut files: Vec<_> = std::fs::read_dir(integration_tests::fixture_path("meta"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".json") && f != "headers.json" && f != "value_errors.json")
        .collect();
    files.sort();
    assert!(files.len() >= 20, "fixtures are present: {files:?}");
    for file in files {
        let path = format!("meta/{file}");
        let expected = expected_from_meta(&fixture_json(&path));
        let received = post_meta(&stack, &path).await;
        assert_eq!(sorted(actual(&received)), sorted(expected), "{path}");
        for r in &received {
            assert_eq!(r.body["source"], "meta");
            assert_eq!(r.body["phone_number_id"], PHONE_NUMBER_ID);
            assert!(r.body["raw"].is_object(), "{path}: raw event kept");
            assert!(
                r.body.to_string().len() < shared::envelope::ENVELOPE_TARGET_BYTES,
                "{path}: an envelope fits one 64 KiB SQS billing chunk"
            );
        }
    }
}

#[tokio::test]
async fn a_text_message_envelope_carries_the_customer_profile_and_the_raw_message() {
    let stack = spawn_stack().await;
    let received = post_meta(&stack, "meta/text.json").await;
    let fixture = fixture_json("meta/text.json");
    let message = &fixture["entry"][0]["changes"][0]["value"]["messages"][0];
    assert_eq!(received.len(), 1);
    let envelope = &received[0].body;
    assert_eq!(envelope["profile_name"], "Sheena Nelson");
    assert_eq!(envelope["conversation"]["wa_id"], "16505551234");
    assert_eq!(&envelope["raw"], message);
    assert_eq!(envelope["occurred_at"], "2024-11-22T09:20:00Z");
    assert_eq!(received[0].group_id, "106540352242922:16505551234");
}

#[tokio::test]
async fn a_multi_message_delivery_is_split_per_event_and_per_conversation() {
    let stack = spawn_stack().await;
    let received = post_meta(&stack, "meta/multi.json").await;
    assert_eq!(received.len(), 5);
    let groups: std::collections::BTreeSet<_> =
        received.iter().map(|r| r.group_id.as_str()).collect();
    assert_eq!(groups.len(), 2, "two customers, two message groups");
    // Within one conversation the queue keeps delivery order.
    let sheena: Vec<_> = received
        .iter()
        .filter(|r| r.group_id.ends_with("16505551234"))
        .map(|r| r.body["kind"].as_str().unwrap())
        .collect();
    assert_eq!(sheena, ["inbound_message", "inbound_message", "status"]);
}

#[tokio::test]
async fn a_value_level_error_becomes_an_error_envelope_for_the_tenant() {
    let stack = spawn_stack().await;
    let received = post_meta(&stack, "meta/value_errors.json").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["kind"], "error");
    assert_eq!(received[0].group_id, PHONE_NUMBER_ID);
    assert!(received[0].body["raw"]["code"].is_i64());
}

#[tokio::test]
async fn a_kapso_received_message_is_an_inbound_message_keyed_by_its_wamid() {
    let stack = spawn_stack().await;
    let received = post_kapso(&stack, "message_received.json").await;
    let wamid = fixture_json("kapso/message_received.json")["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        actual(&received),
        vec![(
            format!("msg:{wamid}"),
            "inbound_message",
            "text".into(),
            group("16505551234")
        )]
    );
    assert_eq!(received[0].body["source"], "kapso");
    assert_eq!(received[0].body["profile_name"], "Sheena Nelson");
}

#[tokio::test]
async fn kapso_message_status_events_become_statuses_keyed_by_wamid_and_status() {
    let stack = spawn_stack().await;
    for (file, status) in [
        ("message_sent.json", "sent"),
        ("message_delivered.json", "delivered"),
        ("message_read.json", "read"),
        ("message_failed.json", "failed"),
    ] {
        let payload = fixture_json(&format!("kapso/{file}"));
        let wamid = payload["message"]["id"].as_str().unwrap();
        let wa_id = payload["conversation"]["phone_number"]
            .as_str()
            .unwrap()
            .trim_start_matches('+');
        let received = post_kapso(&stack, file).await;
        assert_eq!(
            actual(&received),
            vec![(
                format!("status:{wamid}:{status}"),
                "status",
                status.into(),
                group(wa_id)
            )],
            "{file}"
        );
    }
}

#[tokio::test]
async fn a_kapso_batch_becomes_one_envelope_per_message_in_one_group() {
    let stack = spawn_stack().await;
    let received = post_kapso(&stack, "batch_received.json").await;
    let payload = fixture_json("kapso/batch_received.json");
    let expected: Vec<Expected> = payload["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            let id = item["message"]["id"].as_str().unwrap();
            (
                format!("msg:{id}"),
                "inbound_message",
                "text".into(),
                group("16505551234"),
            )
        })
        .collect();
    assert_eq!(expected.len(), 3);
    assert_eq!(actual(&received), expected, "in order, one group");
}

#[tokio::test]
async fn a_business_app_echo_is_an_outbound_message_not_an_inbound_one() {
    let stack = spawn_stack().await;
    let received = post_kapso(&stack, "message_received_business_app.json").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["kind"], "outbound_message");
    assert!(
        received[0].body["event_id"]
            .as_str()
            .unwrap()
            .starts_with("out:wamid.")
    );
    assert_eq!(
        received[0].body["raw"]["message"]["kapso"]["origin"],
        "business_app"
    );
}

#[tokio::test]
async fn a_history_sync_message_is_kept_with_its_origin_for_the_processor_to_skip() {
    let stack = spawn_stack().await;
    let received = post_kapso(&stack, "message_received_history_sync.json").await;
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].body["raw"]["message"]["kapso"]["origin"],
        "history_sync"
    );
}

#[tokio::test]
async fn kapso_conversation_events_are_keyed_by_the_idempotency_key() {
    let stack = spawn_stack().await;
    for file in [
        "conversation_created.json",
        "conversation_ended.json",
        "conversation_inactive.json",
    ] {
        let headers = kapso_headers(file);
        let key = &headers
            .iter()
            .find(|(k, _)| k == "X-Idempotency-Key")
            .unwrap()
            .1;
        let event = &headers
            .iter()
            .find(|(k, _)| k == "X-Webhook-Event")
            .unwrap()
            .1;
        let payload = fixture_json(&format!("kapso/{file}"));
        let wa_id = payload["conversation"]["phone_number"]
            .as_str()
            .unwrap()
            .trim_start_matches('+');
        let received = post_kapso(&stack, file).await;
        assert_eq!(
            actual(&received),
            vec![(
                format!("kapso:{key}"),
                "conversation",
                event.clone(),
                group(wa_id)
            )],
            "{file}"
        );
    }
}

#[tokio::test]
async fn a_project_event_is_an_account_event_grouped_by_tenant() {
    let stack = spawn_stack().await;
    let received = post_kapso(&stack, "phone_number_created.json").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["kind"], "account");
    assert_eq!(
        received[0].body["event_type"],
        "whatsapp.phone_number.created"
    );
    assert_eq!(received[0].group_id, PHONE_NUMBER_ID);
    assert!(received[0].body["conversation"].is_null());
}

#[tokio::test]
async fn a_meta_payload_forwarded_by_kapso_is_read_as_meta_but_sourced_from_kapso() {
    let stack = spawn_stack().await;
    let received = post_kapso(&stack, "meta_forward.json").await;
    let expected = expected_from_meta(&fixture_json("kapso/meta_forward.json"));
    assert!(!expected.is_empty());
    assert_eq!(sorted(actual(&received)), sorted(expected));
    assert!(received.iter().all(|r| r.body["source"] == "kapso"));
}

const BSUID: &str = "US.13491208655302741918";

#[tokio::test]
async fn a_meta_message_from_a_user_who_hides_their_number_is_keyed_by_their_bsuid() {
    let stack = spawn_stack().await;
    let received = post_meta(&stack, "meta/text_bsuid_only.json").await;
    assert_eq!(received.len(), 1);
    let envelope = &received[0].body;
    assert_eq!(envelope["kind"], "inbound_message");
    assert_eq!(envelope["conversation"]["wa_id"], BSUID);
    assert_eq!(
        envelope["profile_name"], "Ana Souza",
        "matched by contacts[].user_id"
    );
    assert_eq!(received[0].group_id, group(BSUID));
    assert!(envelope["raw"].get("from").is_none());
    assert_eq!(envelope["raw"]["from_user_id"], BSUID);
}

#[tokio::test]
async fn a_meta_message_with_a_phone_number_and_a_bsuid_stays_in_the_phone_number_conversation() {
    let stack = spawn_stack().await;
    let received = post_meta(&stack, "meta/text_bsuid_and_phone.json").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["conversation"]["wa_id"], "16505551234");
    assert_eq!(received[0].body["profile_name"], "Sheena Nelson");
    assert_eq!(received[0].group_id, group("16505551234"));
}

#[tokio::test]
async fn a_status_of_a_message_sent_to_a_bsuid_is_grouped_with_that_customer() {
    let stack = spawn_stack().await;
    let received = post_meta(&stack, "meta/status_delivered_bsuid.json").await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body["kind"], "status");
    assert_eq!(received[0].body["event_type"], "delivered");
    assert_eq!(received[0].group_id, group(BSUID));
}

#[tokio::test]
async fn a_kapso_message_without_a_phone_number_is_keyed_by_the_conversations_bsuid() {
    let stack = spawn_stack().await;
    let received = post_kapso(&stack, "message_received_bsuid.json").await;
    let wamid = fixture_json("kapso/message_received_bsuid.json")["message"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        actual(&received),
        vec![(
            format!("msg:{wamid}"),
            "inbound_message",
            "text".into(),
            group(BSUID)
        )]
    );
    assert_eq!(received[0].body["profile_name"], "Ana Souza");
}

#[tokio::test]
async fn a_kapso_sent_business_app_message_is_the_same_outbound_echo_as_its_received_copy() {
    let stack = spawn_stack().await;
    let payload = fixture_json("kapso/message_sent_business_app.json");
    let wamid = payload["message"]["id"].as_str().unwrap();
    assert_eq!(payload["message"]["kapso"]["origin"], "business_app");

    // Kapso's `received` copy of the same echo is the same event, so the queue keeps one.
    let router = stack.ingest();
    for file in [
        "message_sent_business_app.json",
        "message_received_business_app.json",
    ] {
        let response = ApiRequest::post("/webhooks/kapso", fixture(&format!("kapso/{file}")))
            .headers(kapso_headers(file))
            .send(&router)
            .await;
        assert_eq!(response.status, 200, "{file}: {}", response.body);
    }
    let received = stack.drain().await;
    assert_eq!(
        actual(&received),
        vec![(
            format!("out:{wamid}"),
            "outbound_message",
            "text".into(),
            group("16505551234")
        )]
    );
}
