//! The local stack and the SAM template agree: resources are created from the template's own
//! properties, and the local routes mirror the API Gateway routes.

use aws_sdk_sqs::types::QueueAttributeName as Attr;
use integration_tests::{spawn_stack, template};
use local_stack::paths;

#[test]
fn the_ingest_routes_in_the_template_the_router_and_the_local_stack_agree() {
    let mut from_template = template().http_routes("WebhookIngestFunction").unwrap();
    from_template.sort();
    let mut from_router: Vec<(String, String)> = webhook_ingest::ROUTES
        .iter()
        .flat_map(|p| {
            [
                ("GET".to_owned(), p.to_string()),
                ("POST".to_owned(), p.to_string()),
            ]
        })
        .collect();
    from_router.sort();
    assert_eq!(from_template, from_router);

    let manifest: toml::Table = std::fs::read_to_string(paths::root().join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let router = &manifest["workspace"]["metadata"]["lambda"]["watch"]["router"];
    for path in webhook_ingest::ROUTES {
        assert_eq!(
            router[path].as_str(),
            Some("webhook-ingest"),
            "{path} in cargo-lambda's router"
        );
    }
}

#[tokio::test]
async fn the_events_queue_is_created_fifo_with_high_throughput_and_a_dead_letter_queue() {
    let stack = spawn_stack().await;
    let attributes = stack
        .sqs
        .get_queue_attributes()
        .queue_url(stack.queue_url())
        .attribute_names(Attr::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(attributes[&Attr::FifoQueue], "true");
    assert_eq!(attributes[&Attr::DeduplicationScope], "messageGroup");
    assert_eq!(attributes[&Attr::FifoThroughputLimit], "perMessageGroupId");
    assert_eq!(attributes[&Attr::VisibilityTimeout], "180");
    let redrive: serde_json::Value =
        serde_json::from_str(&attributes[&Attr::RedrivePolicy]).unwrap();
    assert_eq!(redrive["maxReceiveCount"], 5);
    assert_eq!(
        redrive["deadLetterTargetArn"],
        stack.provisioned.queues["EventsDeadLetterQueue"]
            .arn
            .as_str()
    );
}

#[tokio::test]
async fn the_table_is_created_with_its_keys_and_ttl() {
    let stack = spawn_stack().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&stack.aws);
    let table = &stack.provisioned.tables["AppTable"];
    let described = dynamo
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let keys: Vec<_> = described
        .key_schema()
        .iter()
        .map(|k| k.attribute_name().to_owned())
        .collect();
    assert_eq!(keys, ["pk", "sk"]);
    let ttl = dynamo
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(ttl.attribute_name(), Some("ttl"));
}

#[tokio::test]
async fn the_function_environment_is_resolved_from_the_template() {
    let stack = spawn_stack().await;
    let env = template()
        .function_env("WebhookIngestFunction", &stack.provisioned)
        .unwrap();
    assert_eq!(env["EVENTS_QUEUE_URL"], stack.queue_url());
    assert_eq!(env["APP_SECRET_ID"], stack.secret_id());
    let config = shared::config::IngestConfig::from_env(&shared::config::Env::from_pairs(
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ));
    assert!(
        config.is_ok(),
        "the template gives the function a valid configuration: {config:?}"
    );
}

/// The `events/` fixtures for `sam local invoke`, run through the handler with the local
/// stack's secrets: each gets the status its name promises.
#[tokio::test]
async fn the_sam_local_event_fixtures_get_the_statuses_they_are_named_for() {
    let stack = integration_tests::spawn_stack_with(serde_json::json!({
        "meta_app_secret": "local-meta-app-secret",
        "meta_verify_token": "local-verify-token",
        "kapso_webhook_secret": "local-kapso-webhook-secret",
    }))
    .await;
    let router = stack.ingest();
    for (file, status) in [
        ("webhook-verify.json", 200),
        ("webhook-meta-text.json", 200),
        ("webhook-meta-text-base64.json", 200),
        ("webhook-kapso-batch.json", 200),
        ("webhook-bad-signature.json", 401),
    ] {
        let event = std::fs::read_to_string(paths::root().join("events").join(file)).unwrap();
        let response = integration_tests::send_event(&event, &router).await;
        assert_eq!(response.status, status, "{file}: {}", response.body);
    }
    assert_eq!(
        stack.drain().await.len(),
        4,
        "one text message and a batch of three"
    );
}

#[test]
fn the_queue_visibility_timeout_is_at_least_six_times_the_processor_timeout() {
    let template = template();
    let queue = template.properties("EventsQueue").unwrap();
    let visibility = queue["VisibilityTimeout"].as_u64().unwrap();
    let timeout = template.properties("MessageProcessorFunction").unwrap()["Timeout"]
        .as_u64()
        .unwrap();
    assert!(visibility >= 6 * timeout, "{visibility} < 6 x {timeout}");
    assert_eq!(queue["RedrivePolicy"]["maxReceiveCount"].as_u64(), Some(5));
}

#[test]
fn the_processor_consumes_the_queue_in_batches_of_ten_reporting_partial_failures() {
    let template = template();
    let events = &template.properties("MessageProcessorFunction").unwrap()["Events"];
    let sqs = events
        .as_mapping()
        .unwrap()
        .values()
        .find(|e| e["Type"].as_str() == Some("SQS"))
        .expect("an SQS event source");
    assert_eq!(sqs["Properties"]["BatchSize"].as_u64(), Some(10));
    assert_eq!(
        sqs["Properties"]["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
}

#[tokio::test]
async fn the_table_has_the_gsi_the_data_model_lists() {
    let stack = spawn_stack().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&stack.aws);
    let table = &stack.provisioned.tables["AppTable"];
    let described = dynamo
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    let indexes: Vec<_> = described
        .global_secondary_indexes()
        .iter()
        .map(|i| i.index_name().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(indexes, ["GSI1", "GSI2"]);
}

#[tokio::test]
async fn the_processor_environment_from_the_template_is_a_valid_configuration() {
    let stack = spawn_stack().await;
    let env = template()
        .function_env("MessageProcessorFunction", &stack.provisioned)
        .unwrap();
    assert_eq!(env["TABLE_NAME"], stack.provisioned.tables["AppTable"]);
    let config = shared::config::ProcessorConfig::from_env(&shared::config::Env::from_pairs(
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ))
    .expect("a valid processor configuration");
    assert_eq!(config.whatsapp.graph_version, "v24.0");
    assert_eq!(
        config.settings.sealion_base_url, None,
        "an empty SealionBaseUrl disables SEA-LION"
    );
}
