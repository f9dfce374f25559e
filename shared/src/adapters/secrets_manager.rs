//! The Secrets Manager adapter of [`SecretSource`].

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::DisplayErrorContext;

use crate::secrets::{SecretSource, SecretsError};

pub struct SecretsManagerSource {
    client: Client,
    secret_id: String,
}

impl SecretsManagerSource {
    pub fn new(aws: &aws_config::SdkConfig, secret_id: impl Into<String>) -> Self {
        Self {
            client: Client::new(aws),
            secret_id: secret_id.into(),
        }
    }
}

impl SecretSource for SecretsManagerSource {
    async fn fetch(&self) -> Result<String, SecretsError> {
        let output = self
            .client
            .get_secret_value()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| {
                let not_found = e
                    .as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception());
                if not_found {
                    SecretsError::NotFound
                } else {
                    SecretsError::Unavailable(DisplayErrorContext(e).to_string())
                }
            })?;
        output.secret_string.ok_or(SecretsError::NotFound)
    }
}
