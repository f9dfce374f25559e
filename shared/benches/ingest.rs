//! Ingest hot path: verify the signature, parse and normalise, for a 2 KB Meta text webhook and
//! a 100 KB multi-message one. Run with `cargo bench -p shared --bench ingest`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secrecy::SecretString;
use serde_json::json;
use shared::envelope::Source;
use shared::ingest::queue::QueuedMessage;
use shared::ingest::signature::{PresentedSignature, sign_hex};
use shared::ingest::webhook::{DeliveryContext, Normalised, normalise};

const SECRET: &str = "bench-app-secret";

/// A Meta delivery of `messages` text messages, padded so the whole body is about `bytes` long.
fn meta_delivery(messages: usize, bytes: usize) -> Vec<u8> {
    let body_len = (bytes / messages).saturating_sub(420);
    let messages: Vec<_> = (0..messages)
        .map(|i| {
            json!({
                "from": "16505551234",
                "id": format!("wamid.HBgLMTY1MDU1NTEyMzQVAgASGBQzQUZYQkVOQ0g{i:06}AA=="),
                "timestamp": "1732267200",
                "type": "text",
                "text": { "body": "a".repeat(body_len) }
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "object": "whatsapp_business_account",
        "entry": [{ "id": "102290129340398", "changes": [{ "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": { "display_phone_number": "15550100", "phone_number_id": "106540352242922" },
            "contacts": [{ "profile": { "name": "Sheena Nelson" }, "wa_id": "16505551234" }],
            "messages": messages
        }}]}]
    }))
    .expect("serialisable")
}

fn verify_and_normalise(body: &[u8], signature: &str, secret: &SecretString) -> Normalised {
    let header = |name: &str| (name == "x-hub-signature-256").then_some(signature);
    let presented = PresentedSignature::from_headers(header).expect("signature header");
    presented
        .verify(body, Some(secret))
        .expect("valid signature");
    let context = DeliveryContext {
        source: Source::Meta,
        event_header: None,
        idempotency_key: None,
        received_at: time::OffsetDateTime::UNIX_EPOCH,
    };
    normalise(body, &context).expect("a webhook")
}

fn bench(c: &mut Criterion) {
    let secret = SecretString::from(SECRET.to_owned());
    for (name, messages, bytes) in [
        ("meta_text_2kb", 1, 2 * 1024),
        ("meta_multi_100kb", 100, 100 * 1024),
    ] {
        let body = meta_delivery(messages, bytes);
        let signature = format!("sha256={}", sign_hex(SECRET, &body));
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function("verify+parse+normalise", |b| {
            b.iter(|| {
                verify_and_normalise(black_box(&body), &signature, &secret)
                    .envelopes
                    .len()
            })
        });
        group.bench_function("verify+parse+normalise+serialise", |b| {
            b.iter(|| {
                verify_and_normalise(black_box(&body), &signature, &secret)
                    .envelopes
                    .iter()
                    .enumerate()
                    .map(|(i, e)| QueuedMessage::from_envelope(format!("e{i}"), e).body.len())
                    .sum::<usize>()
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
