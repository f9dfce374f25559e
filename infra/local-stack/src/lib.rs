//! The embedded local stack: AWS on loopback (moto), the resources of `template.yaml`, and the
//! functions under `cargo lambda watch`. The demo and the integration tests both stand on it.

pub mod bridge;
pub mod console;
pub mod kapso_platform;
pub mod moto;
pub mod paths;
pub mod scheduler;
pub mod standins;
pub mod state;
pub mod template;
pub mod token;
pub mod watch;

pub use moto::MotoServer;
pub use template::{Provisioned, Template};

/// Test credentials moto accepts; they are not secrets.
pub const LOCAL_REGION: &str = "us-east-1";

/// An SDK configuration that talks to moto at `endpoint`.
pub async fn aws_config_for(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new(LOCAL_REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "local-stack",
        ))
        .load()
        .await
}

/// The environment a function needs to reach moto, besides what the template gives it.
pub fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL", endpoint),
        ("AWS_REGION", LOCAL_REGION),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Picks a free TCP port on loopback.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
