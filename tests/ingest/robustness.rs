//! Random bytes and random JSON never panic the parser or the handler, and never get a 5xx:
//! whatever a sender posts, the answer is a deliberate 200, 400, 401 or 413.

use integration_tests::{ApiRequest, meta_signature, spawn_stack};
use proptest::prelude::*;
use serde_json::{Value, json};
use shared::envelope::Source;
use shared::ingest::webhook::{DeliveryContext, normalise};

fn context(source: Source) -> DeliveryContext<'static> {
    DeliveryContext {
        source,
        event_header: Some("whatsapp.message.received"),
        idempotency_key: Some("key"),
        received_at: time::OffsetDateTime::UNIX_EPOCH,
    }
}

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z0-9_.+:= ]{0,12}".prop_map(Value::from),
        Just(Value::from("whatsapp_business_account")),
        Just(Value::from("messages")),
        Just(Value::from("106540352242922")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop_oneof![
            Just("object".to_owned()),
            Just("entry".to_owned()),
            Just("changes".to_owned()),
            Just("field".to_owned()),
            Just("value".to_owned()),
            Just("metadata".to_owned()),
            Just("phone_number_id".to_owned()),
            Just("messages".to_owned()),
            Just("statuses".to_owned()),
            Just("id".to_owned()),
            Just("from".to_owned()),
            Just("type".to_owned()),
            Just("data".to_owned()),
            Just("message".to_owned()),
            Just("conversation".to_owned()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(keys, inner, 0..5)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Random JSON under a real Meta outline, so the fuzzing reaches the per-event parsing.
fn meta_shaped() -> impl Strategy<Value = Value> {
    (any_json(), any_json(), any_json()).prop_map(|(message, status, contact)| {
        json!({
            "object": "whatsapp_business_account",
            "entry": [{ "id": "1", "changes": [{ "field": "messages", "value": {
                "metadata": { "phone_number_id": "106540352242922" },
                "contacts": [contact],
                "messages": [message],
                "statuses": [status]
            }}]}]
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic_the_parser(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = normalise(&body, &context(Source::Meta));
    }

    #[test]
    fn random_json_never_panics_the_parser(value in any_json()) {
        let body = serde_json::to_vec(&value).unwrap();
        for source in [Source::Meta, Source::Kapso] {
            let _ = normalise(&body, &context(source));
        }
    }

    #[test]
    fn meta_shaped_random_events_never_panic_and_never_yield_invalid_envelopes(value in meta_shaped()) {
        let body = serde_json::to_vec(&value).unwrap();
        if let Ok(normalised) = normalise(&body, &context(Source::Meta)) {
            for envelope in normalised.envelopes {
                prop_assert!(!envelope.group_id().is_empty());
                prop_assert_eq!(envelope.dedup_id().len(), 64);
                prop_assert!(shared::envelope::Envelope::from_json(&envelope.to_json()).is_ok());
            }
        }
    }
}

#[test]
fn signed_random_input_gets_a_deliberate_answer_from_the_handler() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let stack = runtime.block_on(spawn_stack());
    let router = stack.ingest();
    let strategy = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256)
            .prop_map(|b| b.into_iter().filter(|c| c.is_ascii()).collect::<Vec<u8>>()),
        any_json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        meta_shaped().prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    runner
        .run(&strategy, |body| {
            let response = runtime.block_on(
                ApiRequest::post("/webhooks/whatsapp", body.clone())
                    .header(meta_signature(&body))
                    .send(&router),
            );
            prop_assert!(
                matches!(response.status, 200 | 400),
                "status {} for {:?}",
                response.status,
                String::from_utf8_lossy(&body)
            );
            Ok(())
        })
        .unwrap();
}
