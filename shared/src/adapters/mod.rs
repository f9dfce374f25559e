//! Adapters: the AWS SDK behind the domain's ports. Only this module imports SDK crates.

pub mod dynamo;
pub mod kapso_platform;
pub mod resend;
pub mod secrets_manager;
pub mod sqs;

use std::time::Duration;

use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;

/// How long one AWS request may take, connection included, before it is abandoned and retried.
/// Our requests are small and answered in milliseconds; without a bound, a stalled connection
/// would hold an invocation until the Lambda timeout.
pub const AWS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long opening a connection to an AWS endpoint may take.
pub const AWS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Loads the AWS SDK configuration once, at cold start. It honours `AWS_ENDPOINT_URL`
/// (and the per-service variants), which is how the local stack points the SDK at moto.
pub async fn aws_config() -> aws_config::SdkConfig {
    configured(aws_config::defaults(aws_config::BehaviorVersion::latest()))
        .load()
        .await
}

/// The SDK settings every function uses on top of the defaults. Each request attempt is bounded
/// by [`AWS_ATTEMPT_TIMEOUT`], which also ends a stalled body, so the stalled-stream monitor
/// (a throughput-measuring wrapper and timer around every request and response body) is off.
fn configured(loader: aws_config::ConfigLoader) -> aws_config::ConfigLoader {
    loader
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(AWS_CONNECT_TIMEOUT)
                .operation_attempt_timeout(AWS_ATTEMPT_TIMEOUT)
                .build(),
        )
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
}

/// The app secrets cache every function uses, backed by Secrets Manager.
pub fn secrets_cache(
    aws: &aws_config::SdkConfig,
    common: &crate::config::CommonConfig,
) -> crate::secrets::SecretsCache<secrets_manager::SecretsManagerSource> {
    crate::secrets::SecretsCache::new(
        secrets_manager::SecretsManagerSource::new(aws, common.app_secret_id.clone()),
        common.secrets_ttl,
    )
}

#[cfg(test)]
mod tests {
    use aws_config::Region;
    use aws_sdk_sqs::config::Credentials;

    use super::*;

    /// Region and credentials are given, so loading looks nothing up outside the process.
    async fn loaded() -> aws_config::SdkConfig {
        configured(aws_config::defaults(aws_config::BehaviorVersion::latest()))
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .load()
            .await
    }

    #[tokio::test]
    async fn every_aws_request_attempt_is_bounded_in_time() {
        let config = loaded().await;
        let timeouts = config.timeout_config().expect("timeouts are set");
        assert_eq!(
            timeouts.operation_attempt_timeout(),
            Some(AWS_ATTEMPT_TIMEOUT)
        );
        assert_eq!(timeouts.connect_timeout(), Some(AWS_CONNECT_TIMEOUT));
    }

    #[tokio::test]
    async fn the_stalled_stream_monitor_is_off_because_attempts_are_bounded() {
        let config = loaded().await;
        let protection = config
            .stalled_stream_protection()
            .expect("stalled-stream protection is configured");
        assert!(!protection.is_enabled());
    }
}
