//! Adapters: the AWS SDK behind the domain's ports. Only this module imports SDK crates.

pub mod dynamo;
pub mod secrets_manager;
pub mod sqs;

/// Loads the AWS SDK configuration once, at cold start. It honours `AWS_ENDPOINT_URL`
/// (and the per-service variants), which is how the local stack points the SDK at moto.
pub async fn aws_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
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
