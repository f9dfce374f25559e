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

    let cargo: toml_like::Manifest = toml_like::read(&paths::root().join("Cargo.toml"));
    for path in webhook_ingest::ROUTES {
        assert_eq!(
            cargo.route(path).as_deref(),
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

/// Just enough TOML reading to find cargo-lambda's router table without another dependency.
mod toml_like {
    use std::path::Path;

    pub struct Manifest(String);

    pub fn read(path: &Path) -> Manifest {
        Manifest(std::fs::read_to_string(path).unwrap())
    }

    impl Manifest {
        pub fn route(&self, path: &str) -> Option<String> {
            let table = self
                .0
                .split("[workspace.metadata.lambda.watch.router]")
                .nth(1)?;
            table
                .lines()
                .take_while(|l| !l.starts_with('['))
                .find_map(|l| {
                    let (key, value) = l.split_once('=')?;
                    (key.trim().trim_matches('"') == path)
                        .then(|| value.trim().trim_matches('"').to_owned())
                })
        }
    }
}
