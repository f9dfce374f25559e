//! App secrets: one JSON secret, fetched through a port and cached in memory with a TTL,
//! so a rotation is picked up without a redeploy and a warm container makes no secret calls.

use std::{future::Future, sync::Arc, time::Duration};

use moka::future::Cache;
use secrecy::SecretString;
use serde::Deserialize;

/// Every key the app secret may hold. All are optional: a feature whose secret is absent is
/// off, and a webhook scheme whose secret is absent rejects every delivery (fail closed).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AppSecrets {
    /// Meta app secret: the HMAC key of `X-Hub-Signature-256`.
    pub meta_app_secret: Option<SecretString>,
    /// The token Meta echoes in the GET verification handshake.
    pub meta_verify_token: Option<SecretString>,
    /// Kapso webhook secret: the HMAC key of `X-Webhook-Signature` on phone-number webhooks.
    pub kapso_webhook_secret: Option<SecretString>,
    /// Kapso project webhook secret: project webhooks (e.g. `whatsapp.phone_number.created`)
    /// may be signed with it instead. A second key for the same header.
    pub kapso_project_webhook_secret: Option<SecretString>,
    /// Kapso API key, sent as `X-API-Key` to the Kapso Meta proxy.
    pub kapso_api_key: Option<SecretString>,
    /// Meta Graph API access token, for direct Cloud API sends from numbers that have no token
    /// of their own (the seeded local and demo ones); a manually connected number uses its own.
    pub meta_access_token: Option<SecretString>,
    /// Base64 of 32 bytes: the AES-256-GCM key manual integrations' access tokens are sealed
    /// under. Absent or malformed: manual integrations can be neither connected nor used.
    pub integration_encryption_key: Option<SecretString>,
    /// xAI API key for Grok.
    pub grok_api_key: Option<SecretString>,
    /// HS256 key of the dashboard API's Bearer tokens, when no JWKS URL is configured (the local
    /// stack mints tokens with it). Absent: every dashboard request is refused.
    pub dashboard_jwt_secret: Option<SecretString>,
    /// Resend API key, sent as a Bearer token: reminders by email.
    pub resend_api_key: Option<SecretString>,
}

impl AppSecrets {
    /// Parses the secret's JSON string. Unknown keys are ignored so new keys can be rolled out first.
    pub fn parse(raw: &str) -> Result<Self, SecretsError> {
        serde_json::from_str(raw).map_err(|e| SecretsError::Malformed(e.to_string()))
    }
}

/// Why the app secret could not be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SecretsError {
    #[error("the secret store could not be reached: {0}")]
    Unavailable(String),
    #[error("the secret does not exist or has no string value")]
    NotFound,
    #[error("the secret is not a JSON object of app secrets: {0}")]
    Malformed(String),
}

/// Port: where the raw secret string comes from (Secrets Manager in production).
pub trait SecretSource: Send + Sync + 'static {
    fn fetch(&self) -> impl Future<Output = Result<String, SecretsError>> + Send;
}

/// The one secrets cache. Concurrent callers on a cold or expired cache share one fetch.
pub struct SecretsCache<S> {
    source: Arc<S>,
    cache: Cache<(), Arc<AppSecrets>>,
}

/// A clone shares the cache (and its one fetch) with the original.
impl<S> Clone for SecretsCache<S> {
    fn clone(&self) -> Self {
        Self {
            source: Arc::clone(&self.source),
            cache: self.cache.clone(),
        }
    }
}

impl<S: SecretSource> SecretsCache<S> {
    pub fn new(source: S, ttl: Duration) -> Self {
        Self {
            source: Arc::new(source),
            cache: Cache::builder().max_capacity(1).time_to_live(ttl).build(),
        }
    }

    /// The current secrets: from memory while fresh, otherwise fetched and parsed once.
    /// Failures are not cached, so the next request tries again.
    pub async fn get(&self) -> Result<Arc<AppSecrets>, SecretsError> {
        let source = Arc::clone(&self.source);
        self.cache
            .try_get_with((), async move {
                let raw = source.fetch().await?;
                AppSecrets::parse(&raw).map(Arc::new)
            })
            .await
            .map_err(|e: Arc<SecretsError>| (*e).clone())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use secrecy::ExposeSecret;

    use super::*;

    struct Counting {
        calls: Arc<AtomicUsize>,
        value: Result<&'static str, SecretsError>,
    }

    impl SecretSource for Counting {
        async fn fetch(&self) -> Result<String, SecretsError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.value.clone().map(str::to_owned)
        }
    }

    fn counting(value: Result<&'static str, SecretsError>) -> (Counting, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        (
            Counting {
                calls: calls.clone(),
                value,
            },
            calls,
        )
    }

    #[tokio::test]
    async fn a_warm_cache_serves_secrets_without_fetching_again() {
        let (source, calls) = counting(Ok(r#"{"meta_app_secret":"s3cret"}"#));
        let cache = SecretsCache::new(source, Duration::from_secs(60));
        for _ in 0..5 {
            let secrets = cache.get().await.unwrap();
            assert_eq!(
                secrets.meta_app_secret.as_ref().unwrap().expose_secret(),
                "s3cret"
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_clone_shares_the_cache_so_two_users_of_it_fetch_once() {
        let (source, calls) = counting(Ok(r#"{"meta_app_secret":"s3cret"}"#));
        let cache = SecretsCache::new(source, Duration::from_secs(60));
        let other = cache.clone();
        cache.get().await.unwrap();
        other.get().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_expired_entry_is_fetched_again_so_rotation_is_picked_up() {
        let (source, calls) = counting(Ok("{}"));
        let cache = SecretsCache::new(source, Duration::from_millis(50));
        cache.get().await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        cache.get().await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let (source, calls) = counting(Err(SecretsError::Unavailable("down".into())));
        let cache = SecretsCache::new(source, Duration::from_secs(60));
        assert!(cache.get().await.is_err());
        assert!(cache.get().await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn secrets_never_print_their_values() {
        let secrets = AppSecrets::parse(
            r#"{"kapso_webhook_secret":"hunter2","kapso_project_webhook_secret":"hunter3"}"#,
        )
        .unwrap();
        let printed = format!("{secrets:?}");
        assert!(!printed.contains("hunter2") && !printed.contains("hunter3"));
        assert_eq!(
            secrets
                .kapso_project_webhook_secret
                .as_ref()
                .map(|s| s.expose_secret().to_owned()),
            Some("hunter3".to_owned())
        );
    }

    #[test]
    fn a_secret_that_is_not_a_json_object_is_malformed() {
        assert!(matches!(
            AppSecrets::parse("hunter2"),
            Err(SecretsError::Malformed(_))
        ));
    }
}
