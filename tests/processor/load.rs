//! The local stack under load: hundreds of messages from many customers, posted concurrently
//! through the real ingest handler, drained by the bridge's concurrent pollers into the real
//! processor, with moto behind both. Nothing is lost, every conversation keeps its order, one
//! message group is never in two invocations at once, and no message is answered twice.
//!
//! `cargo test -p integration-tests --test processor load:: -- --nocapture` prints the rate at
//! which messages were stored; `LOAD_POLLERS=1` measures the bridge as it was (one poller, one invocation at a time).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, KeySchemaElement, KeyType,
    Put, ScalarAttributeType, TransactWriteItem,
};
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};
use integration_tests::processor::{InProcess, Options, meta_texts, now, spawn_world};
use integration_tests::{ApiRequest, meta_signature, moto_endpoint, unique_name};
use local_stack::bridge::{Bridge, DrainReport, Invoke};
use serde_json::Value;

const CUSTOMERS: usize = 25;
const MESSAGES_PER_CUSTOMER: usize = 12;
const POSTERS: usize = 8;
const POLLERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hundred_messages_from_25_customers_posted_concurrently_are_all_stored_in_order_and_answered_at_most_once()
 {
    let world = spawn_world(Options::default()).await;
    let deliveries = deliveries();
    let posted: Vec<&str> = deliveries
        .iter()
        .flat_map(|d| d.wamids.iter().map(String::as_str))
        .collect();
    assert_eq!(posted.len(), CUSTOMERS * MESSAGES_PER_CUSTOMER);

    let log = Arc::new(Mutex::new(InvocationLog::default()));
    let queue = &world.stack.provisioned.queues["EventsQueue"];
    let bridge = Arc::new(Bridge::new(
        world.stack.sqs.clone(),
        &queue.url,
        &queue.arn,
        Recording {
            inner: InProcess(Arc::clone(&world.processor)),
            log: Arc::clone(&log),
        },
    ));
    let pollers = std::env::var("LOAD_POLLERS")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(POLLERS);

    // The bridge drains while the posters post, as in production: records of a conversation
    // arrive while its earlier ones are being processed.
    let started = Instant::now();
    let posting = tokio::spawn(post_concurrently(
        world.ingest.clone(),
        deliveries_bodies(&deliveries),
    ));
    let mut drained = DrainReport::default();
    loop {
        let posted_all = posting.is_finished();
        let round = Arc::clone(&bridge)
            .drain(pollers, Duration::from_secs(100))
            .await
            .expect("the queue drains");
        drained.invocations += round.invocations;
        drained.records += round.records;
        drained.failed += round.failed;
        if posted_all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let post_time = posting.await.expect("every delivery is accepted");
    let elapsed = started.elapsed();
    println!(
        "{} messages in {} deliveries by {POSTERS} posters (posted in {:.1?}), drained by {pollers} \
         pollers: all stored after {:.1?}, {:.1} messages/s ({} invocations, {} records, {} failed)",
        posted.len(),
        deliveries.len(),
        post_time,
        elapsed,
        posted.len() as f64 / elapsed.as_secs_f64(),
        drained.invocations,
        drained.records,
        drained.failed,
    );

    {
        let log = log.lock().unwrap();
        assert!(
            log.max_active > 1,
            "invocations ran concurrently (at most {} at once), so keeping groups apart was tested",
            log.max_active
        );
        assert!(
            log.overlaps.is_empty(),
            "a message group was in two invocations at once: {:?}",
            log.overlaps
        );
        for customer in 0..CUSTOMERS {
            let wa_id = customer_wa_id(customer);
            let expected: Vec<&str> = deliveries
                .iter()
                .filter(|d| d.wa_id == wa_id)
                .flat_map(|d| d.wamids.iter().map(String::as_str))
                .collect();
            let seen: Vec<&str> = log
                .processed
                .get(&wa_id)
                .map(|w| w.iter().map(String::as_str).collect())
                .unwrap_or_default();
            assert_eq!(
                seen, expected,
                "customer {customer}'s messages reached the processor in post order"
            );
        }
    }

    let mut lost = Vec::new();
    for wamid in &posted {
        if world.message(wamid).await.is_none() {
            lost.push(*wamid);
        }
    }
    assert!(lost.is_empty(), "{} messages lost: {lost:?}", lost.len());

    let texts = world.sent_texts().await;
    let mut per_intent: HashMap<String, usize> = HashMap::new();
    let mut per_customer: HashMap<String, usize> = HashMap::new();
    for text in &texts {
        let intent = text["biz_opaque_callback_data"]
            .as_str()
            .expect("every reply carries its intent key")
            .to_owned();
        *per_intent.entry(intent).or_default() += 1;
        *per_customer
            .entry(text["to"].as_str().unwrap_or_default().to_owned())
            .or_default() += 1;
    }
    let repeated: Vec<_> = per_intent.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "a trigger was answered more than once: {repeated:?}"
    );
    for customer in 0..CUSTOMERS {
        let wa_id = customer_wa_id(customer);
        let replies = per_customer.get(&wa_id).copied().unwrap_or(0);
        // A burst the bridge splits over two batches is two triggers, each answered once; what
        // must never happen is more replies than the customer sent messages.
        let messages: usize = deliveries
            .iter()
            .filter(|d| d.wa_id == wa_id)
            .map(|d| d.wamids.len())
            .sum();
        assert!(
            (1..=messages).contains(&replies),
            "customer {customer} got {replies} replies for {messages} messages: \
             at least one, at most one per message"
        );
    }
}

/// moto's `TransactWriteItems` copies the table and puts the copy back when the transaction is
/// cancelled; without the local stack's per-service lock, that erases concurrent writes and
/// answers some transactions with HTTP 500 (`infra/local/moto_server.py`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_transactions_racing_plain_writes_in_the_local_moto_lose_no_write_and_never_answer_500()
 {
    let aws = local_stack::aws_config_for(moto_endpoint()).await;
    let config = aws_sdk_dynamodb::config::Builder::from(&aws)
        // A 500 must show, not be retried away.
        .retry_config(RetryConfig::disabled())
        .build();
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(config);
    let table = unique_name("race");
    dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    // A table of some size, so each transaction's copy of it takes a while.
    for i in 0..200 {
        dynamodb
            .put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S(format!("seed-{i}")))
            .item("pad", AttributeValue::S("x".repeat(200)))
            .send()
            .await
            .unwrap();
    }

    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..6 {
        let (writer, writer_table) = (dynamodb.clone(), table.clone());
        tasks.spawn(async move {
            let mut acknowledged = Vec::new();
            let mut server_errors = Vec::new();
            for i in 0..25 {
                let key = format!("w{worker}-{i}");
                match writer
                    .put_item()
                    .table_name(&writer_table)
                    .item("pk", AttributeValue::S(key.clone()))
                    .send()
                    .await
                {
                    Ok(_) => acknowledged.push(key),
                    Err(e) => server_errors.push(format!("put {key}: {}", outcome(&e))),
                }
            }
            (acknowledged, server_errors)
        });
        let (dynamodb, table) = (dynamodb.clone(), table.clone());
        tasks.spawn(async move {
            let mut server_errors = Vec::new();
            for i in 0..25 {
                let result = dynamodb
                    .transact_write_items()
                    .transact_items(
                        TransactWriteItem::builder()
                            .condition_check(
                                ConditionCheck::builder()
                                    .table_name(&table)
                                    .key("pk", AttributeValue::S("never-there".into()))
                                    .condition_expression("attribute_exists(pk)")
                                    .build()
                                    .unwrap(),
                            )
                            .build(),
                    )
                    .transact_items(
                        TransactWriteItem::builder()
                            .put(
                                Put::builder()
                                    .table_name(&table)
                                    .item("pk", AttributeValue::S(format!("c{worker}-{i}")))
                                    .build()
                                    .unwrap(),
                            )
                            .build(),
                    )
                    .send()
                    .await;
                match result {
                    Err(e) if e.code() == Some("TransactionCanceledException") => {}
                    Err(e) => server_errors.push(format!("transaction: {}", outcome(&e))),
                    Ok(_) => {
                        server_errors.push("a transaction with a failing check succeeded".into())
                    }
                }
            }
            (Vec::new(), server_errors)
        });
    }
    let mut acknowledged = Vec::new();
    let mut unexpected = Vec::new();
    while let Some(done) = tasks.join_next().await {
        let (acked, errors) = done.unwrap();
        acknowledged.extend(acked);
        unexpected.extend(errors);
    }

    assert!(
        unexpected.is_empty(),
        "every put succeeds and every transaction is cancelled, none fails otherwise: {unexpected:?}"
    );
    assert_eq!(acknowledged.len(), 150);
    let mut stored = HashSet::new();
    let mut start = None;
    loop {
        let page = dynamodb
            .scan()
            .table_name(&table)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        for item in page.items() {
            if let Some(AttributeValue::S(pk)) = item.get("pk") {
                stored.insert(pk.clone());
            }
        }
        start = page.last_evaluated_key;
        if start.is_none() {
            break;
        }
    }
    let lost: Vec<_> = acknowledged
        .iter()
        .filter(|k| !stored.contains(*k))
        .collect();
    assert!(lost.is_empty(), "acknowledged writes were erased: {lost:?}");
    let kept: Vec<_> = stored.iter().filter(|k| k.starts_with('c')).collect();
    assert!(
        kept.is_empty(),
        "cancelled transactions' puts were kept: {kept:?}"
    );
}

/// An SDK error in a few words: its code, or the HTTP status when the body was not AWS's.
fn outcome<E: ProvideErrorMetadata, R: std::fmt::Debug>(
    e: &aws_sdk_dynamodb::error::SdkError<E, R>,
) -> String {
    match (e.code(), e.raw_response()) {
        (Some(code), _) => code.to_owned(),
        (None, Some(raw)) => format!("{raw:?}").chars().take(40).collect(),
        (None, None) => e.to_string(),
    }
}

/// Plain moto frees a group's timed-out messages one at a time while scanning, so the first of
/// them is skipped (its siblings still look in flight) and a later one is returned first.
#[tokio::test]
async fn a_message_groups_timed_out_records_come_back_from_the_local_moto_in_their_original_order()
{
    let stack = integration_tests::spawn_stack().await;
    let queue_url = stack.queue_url();
    stack
        .sqs
        .set_queue_attributes()
        .queue_url(queue_url)
        .attributes(QueueAttributeName::VisibilityTimeout, "1")
        .send()
        .await
        .unwrap();
    for n in 1..=3 {
        stack
            .sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(format!("m{n}"))
            .message_group_id("conversation")
            .message_deduplication_id(format!("m{n}"))
            .send()
            .await
            .unwrap();
    }
    let first = receive(&stack.sqs, queue_url).await;
    assert_eq!(bodies(&first), ["m1", "m2", "m3"]);
    // m1 is processed; m2 and m3 fail and come back after the visibility timeout.
    stack
        .sqs
        .delete_message()
        .queue_url(queue_url)
        .receipt_handle(first[0].receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let again = receive(&stack.sqs, queue_url).await;

    assert_eq!(bodies(&again), ["m2", "m3"]);
    let sequence = |m: &Message| {
        m.attributes().unwrap()[&MessageSystemAttributeName::SequenceNumber]
            .parse::<u128>()
            .unwrap()
    };
    assert!(
        sequence(&again[0]) < sequence(&again[1]),
        "sequence numbers increase within the group, as in SQS"
    );
}

async fn receive(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Vec<Message> {
    sqs.receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap()
        .messages
        .unwrap_or_default()
}

fn bodies(messages: &[Message]) -> Vec<&str> {
    messages.iter().filter_map(|m| m.body()).collect()
}

/// One signed Meta delivery: one or two messages of one customer.
struct Delivery {
    wa_id: String,
    wamids: Vec<String>,
    body: Vec<u8>,
}

fn customer_wa_id(customer: usize) -> String {
    format!("6591{customer:06}")
}

/// Each customer's messages, mostly one per delivery and every fifth delivery a burst of two.
fn deliveries() -> Vec<Delivery> {
    let at = now();
    let mut out = Vec::new();
    for customer in 0..CUSTOMERS {
        let wa_id = customer_wa_id(customer);
        let mut n = 0;
        let mut delivery = 0;
        while n < MESSAGES_PER_CUSTOMER {
            let size = if delivery % 5 == 4 { 2 } else { 1 }.min(MESSAGES_PER_CUSTOMER - n);
            let wamids: Vec<String> = (n..n + size)
                .map(|m| format!("wamid.LOAD{customer:02}M{m:02}"))
                .collect();
            let texts: Vec<String> = (n..n + size)
                .map(|m| format!("Question {m} from customer {customer}"))
                .collect();
            let messages: Vec<(&str, &str, &str, i64)> = wamids
                .iter()
                .zip(&texts)
                .map(|(w, t)| (w.as_str(), wa_id.as_str(), t.as_str(), at))
                .collect();
            let body = serde_json::to_vec(&meta_texts(&messages)).unwrap();
            out.push(Delivery {
                wa_id: wa_id.clone(),
                wamids,
                body,
            });
            n += size;
            delivery += 1;
        }
    }
    out
}

/// The deliveries' customers and bodies, for the posters.
fn deliveries_bodies(deliveries: &[Delivery]) -> Vec<(String, Vec<u8>)> {
    deliveries
        .iter()
        .map(|d| (d.wa_id.clone(), d.body.clone()))
        .collect()
}

/// `POSTERS` concurrent posters; each customer belongs to one poster, which posts that
/// customer's deliveries in order (interleaved with its other customers'), as Meta does.
/// Returns how long posting took.
async fn post_concurrently(router: axum::Router, deliveries: Vec<(String, Vec<u8>)>) -> Duration {
    let started = Instant::now();
    let mut posters = tokio::task::JoinSet::new();
    for poster in 0..POSTERS {
        let router = router.clone();
        let mut mine: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut turn: HashMap<&str, usize> = HashMap::new();
        for (wa_id, body) in &deliveries {
            let customer = wa_id[4..].parse::<usize>().unwrap();
            if customer % POSTERS == poster {
                let k = turn.entry(wa_id).or_default();
                mine.push((*k, body.clone()));
                *k += 1;
            }
        }
        // Round-robin over this poster's customers, each customer's deliveries in order.
        mine.sort_by_key(|(k, _)| *k);
        posters.spawn(async move {
            for (_, body) in mine {
                let response = ApiRequest::post("/webhooks/whatsapp", body.clone())
                    .header(meta_signature(&body))
                    .send(&router)
                    .await;
                assert_eq!(response.status, 200, "{}", response.body);
            }
        });
    }
    while let Some(done) = posters.join_next().await {
        done.expect("a poster failed");
    }
    started.elapsed()
}

/// What the function was handed, invocation by invocation.
#[derive(Default)]
struct InvocationLog {
    /// Message groups with an invocation running.
    running: HashSet<String>,
    /// Groups that were handed to a second invocation while one was running.
    overlaps: Vec<String>,
    /// Invocations running now, and the most that ever ran at once.
    active: usize,
    max_active: usize,
    /// Each customer's inbound wamids, in the order the processor accepted them (records it
    /// reported failed are not counted; their redelivery is).
    processed: BTreeMap<String, Vec<String>>,
}

/// An inbound message's customer and wamid.
type Inbound = (String, String);

/// Wraps the in-process processor and records what each invocation saw.
struct Recording {
    inner: InProcess,
    log: Arc<Mutex<InvocationLog>>,
}

impl Invoke for Recording {
    async fn invoke(&self, event: SqsEvent) -> anyhow::Result<SqsBatchResponse> {
        let records: Vec<(String, String, Option<Inbound>)> = event
            .records
            .iter()
            .map(|r| {
                let group = r
                    .attributes
                    .get("MessageGroupId")
                    .cloned()
                    .unwrap_or_default();
                let id = r.message_id.clone().unwrap_or_default();
                let envelope: Value =
                    serde_json::from_str(r.body.as_deref().unwrap_or("{}")).unwrap_or_default();
                let inbound = (envelope["kind"] == "inbound_message").then(|| {
                    (
                        envelope["raw"]["from"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        envelope["raw"]["id"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    )
                });
                (group, id, inbound)
            })
            .collect();
        let groups: HashSet<String> = records.iter().map(|(g, _, _)| g.clone()).collect();
        {
            let mut log = self.log.lock().unwrap();
            for group in &groups {
                if !log.running.insert(group.clone()) {
                    log.overlaps.push(group.clone());
                }
            }
            log.active += 1;
            log.max_active = log.max_active.max(log.active);
        }
        let response = self.inner.invoke(event).await;
        let mut log = self.log.lock().unwrap();
        log.active -= 1;
        for group in &groups {
            log.running.remove(group);
        }
        if let Ok(response) = &response {
            let failed: HashSet<&str> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            for (_, id, inbound) in &records {
                if let (Some((from, wamid)), false) = (inbound, failed.contains(id.as_str())) {
                    log.processed
                        .entry(from.clone())
                        .or_default()
                        .push(wamid.clone());
                }
            }
        }
        response
    }
}
