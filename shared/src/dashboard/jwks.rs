//! The identity provider's public keys (a JSON Web Key Set), fetched over HTTP once and kept in
//! memory. An unknown `kid` (the provider rotated its keys) triggers one refresh, but never more
//! than one per refresh floor, so tokens with made-up `kid`s cannot hammer the endpoint.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;

use super::auth::{AuthError, JwksSettings};

type Keys = HashMap<String, Arc<DecodingKey>>;

pub struct JwksCache {
    http: reqwest::Client,
    settings: JwksSettings,
    /// The keys of the last successful fetch, and when it happened.
    keys: RwLock<(Arc<Keys>, Option<Instant>)>,
    /// Held while fetching, so concurrent misses share one fetch; holds the last attempt's
    /// time and whether it failed.
    attempt: tokio::sync::Mutex<Option<(Instant, bool)>>,
}

impl JwksCache {
    pub fn new(settings: JwksSettings) -> Self {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .unwrap_or_default();
        Self {
            http,
            settings,
            keys: RwLock::new((Arc::new(Keys::new()), None)),
            attempt: tokio::sync::Mutex::new(None),
        }
    }

    /// The key with id `kid`: from memory while the set is fresh, otherwise after a refresh
    /// (unless the last fetch is more recent than the floor).
    pub async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, AuthError> {
        if let Some(key) = self.cached(kid, true) {
            return Ok(key);
        }
        let mut attempt = self.attempt.lock().await;
        // Another caller may have refreshed while this one waited.
        if let Some(key) = self.cached(kid, true) {
            return Ok(key);
        }
        if let Some((at, failed)) = *attempt
            && at.elapsed() < self.settings.refresh_floor
        {
            return match self.cached(kid, false) {
                Some(key) => Ok(key),
                None if failed => Err(AuthError::KeysUnavailable(
                    "the JWKS endpoint failed recently".into(),
                )),
                None => Err(AuthError::UnknownKey),
            };
        }
        let fetched = self.fetch().await;
        *attempt = Some((Instant::now(), fetched.is_err()));
        match fetched {
            Ok(keys) => {
                let found = keys.get(kid).cloned();
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) =
                    (Arc::new(keys), Some(Instant::now()));
                found.ok_or(AuthError::UnknownKey)
            }
            // Keys past their age still verify while the endpoint is down.
            Err(e) => self.cached(kid, false).ok_or(e),
        }
    }

    fn cached(&self, kid: &str, fresh_only: bool) -> Option<Arc<DecodingKey>> {
        let guard = self.keys.read().unwrap_or_else(|p| p.into_inner());
        let (keys, fetched_at) = &*guard;
        let fresh = fetched_at.is_some_and(|at| at.elapsed() < self.settings.max_age);
        if fresh_only && !fresh {
            return None;
        }
        keys.get(kid).cloned()
    }

    async fn fetch(&self) -> Result<Keys, AuthError> {
        let unavailable = |e: reqwest::Error| AuthError::KeysUnavailable(e.to_string());
        let set: JwkSet = self
            .http
            .get(&self.settings.url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(unavailable)?
            .json()
            .await
            .map_err(unavailable)?;
        let keys: Keys = set
            .keys
            .iter()
            .filter_map(|jwk| {
                let kid = jwk.common.key_id.clone()?;
                // A key we cannot use (an unknown type) is skipped, not fatal for the others.
                let key = DecodingKey::from_jwk(jwk).ok()?;
                Some((kid, Arc::new(key)))
            })
            .collect();
        tracing::info!(keys = keys.len(), "fetched the JWKS");
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::{Value, json};
    use time::OffsetDateTime;
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::dashboard::auth::{AuthConfig, Authenticator, KeySource};
    use crate::ids::WorkspaceId;
    use crate::secrets::{SecretSource, SecretsCache, SecretsError};

    macro_rules! fixture {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../tests/fixtures/jwt/",
                $name
            ))
        };
    }
    const KEY_A: &str = fixture!("rsa-a.pem");
    const KEY_B: &str = fixture!("rsa-b.pem");
    const JWKS_A: &str = fixture!("jwks-a.json");
    const JWKS_A_B: &str = fixture!("jwks-a-b.json");

    struct NoSecrets;
    impl SecretSource for NoSecrets {
        async fn fetch(&self) -> Result<String, SecretsError> {
            Ok("{}".into())
        }
    }

    async fn serve(server: &MockServer, jwks: &str, status: u16) {
        server.reset().await;
        Mock::given(method("GET"))
            .and(path("/.well-known/jwks.json"))
            .respond_with(
                ResponseTemplate::new(status).set_body_raw(jwks.to_owned(), "application/json"),
            )
            .mount(server)
            .await;
    }

    fn verifier(server: &MockServer, refresh_floor: Duration) -> Authenticator<NoSecrets> {
        let config = AuthConfig {
            issuer: "https://idp.test".into(),
            audience: "send-api".into(),
            algorithms: vec![Algorithm::RS256],
            workspace_claim: "org_id".into(),
            keys: KeySource::Jwks(JwksSettings {
                refresh_floor,
                ..JwksSettings::new(format!("{}/.well-known/jwks.json", server.uri()))
            }),
        };
        let secrets = SecretsCache::new(NoSecrets, Duration::from_secs(60));
        Authenticator::new(config, Arc::new(secrets))
    }

    fn claims() -> Value {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        json!({ "iss": "https://idp.test", "aud": "send-api", "exp": now + 300, "org_id": "ws-a" })
    }

    fn rs256(pem: &str, kid: &str) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims(), &key).unwrap()
    }

    async fn check(auth: &Authenticator<NoSecrets>, token: &str) -> Result<WorkspaceId, AuthError> {
        auth.authenticate(Some(&format!("Bearer {token}"))).await
    }

    async fn fetches(server: &MockServer) -> usize {
        server.received_requests().await.unwrap_or_default().len()
    }

    #[tokio::test]
    async fn a_token_signed_by_a_key_of_the_jwks_is_accepted_and_the_set_is_fetched_once() {
        let server = MockServer::start().await;
        serve(&server, JWKS_A, 200).await;
        let auth = verifier(&server, Duration::from_secs(30));
        for _ in 0..3 {
            let workspace = check(&auth, &rs256(KEY_A, "test-key-a")).await.unwrap();
            assert_eq!(workspace.as_str(), "ws-a");
        }
        assert_eq!(fetches(&server).await, 1);
    }

    #[tokio::test]
    async fn a_rotated_key_is_picked_up_by_refreshing_on_its_unknown_kid() {
        let server = MockServer::start().await;
        serve(&server, JWKS_A, 200).await;
        let auth = verifier(&server, Duration::ZERO);
        check(&auth, &rs256(KEY_A, "test-key-a")).await.unwrap();
        // The provider rotates: key B appears in its JWKS.
        serve(&server, JWKS_A_B, 200).await;
        assert_eq!(
            check(&auth, &rs256(KEY_B, "test-key-b"))
                .await
                .unwrap()
                .as_str(),
            "ws-a"
        );
        assert_eq!(fetches(&server).await, 1, "one refresh since the rotation");
        check(&auth, &rs256(KEY_A, "test-key-a")).await.unwrap();
        assert_eq!(
            fetches(&server).await,
            1,
            "known keys are served from memory"
        );
    }

    #[tokio::test]
    async fn a_flood_of_unknown_kids_costs_one_fetch_per_refresh_floor() {
        let server = MockServer::start().await;
        serve(&server, JWKS_A, 200).await;
        let auth = Arc::new(verifier(&server, Duration::from_millis(300)));
        let tokens: Vec<String> = (0..20)
            .map(|i| rs256(KEY_B, &format!("bogus-{i}")))
            .collect();
        let results = futures_util::future::join_all(tokens.iter().map(|t| check(&auth, t))).await;
        assert!(results.iter().all(|r| *r == Err(AuthError::UnknownKey)));
        assert_eq!(fetches(&server).await, 1);
        check(&auth, &rs256(KEY_A, "test-key-a")).await.unwrap();
        assert_eq!(fetches(&server).await, 1);
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert_eq!(check(&auth, &tokens[0]).await, Err(AuthError::UnknownKey));
        assert_eq!(
            fetches(&server).await,
            2,
            "past the floor, an unknown kid refreshes again"
        );
    }

    #[tokio::test]
    async fn a_key_signed_by_no_key_of_the_set_is_refused() {
        let server = MockServer::start().await;
        serve(&server, JWKS_A, 200).await;
        let auth = verifier(&server, Duration::from_secs(30));
        // Key B's signature under key A's kid.
        assert_eq!(
            check(&auth, &rs256(KEY_B, "test-key-a")).await,
            Err(AuthError::Invalid)
        );
        let no_kid = {
            let key = EncodingKey::from_rsa_pem(KEY_A.as_bytes()).unwrap();
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(), &key).unwrap()
        };
        assert_eq!(check(&auth, &no_kid).await, Err(AuthError::UnknownKey));
    }

    #[tokio::test]
    async fn an_hmac_token_keyed_with_the_public_key_is_refused() {
        let server = MockServer::start().await;
        serve(&server, JWKS_A, 200).await;
        let auth = verifier(&server, Duration::from_secs(30));
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("test-key-a".into());
        let key = EncodingKey::from_secret(JWKS_A.as_bytes());
        let token = jsonwebtoken::encode(&header, &claims(), &key).unwrap();
        assert_eq!(
            check(&auth, &token).await,
            Err(AuthError::DisallowedAlgorithm)
        );
        assert_eq!(
            fetches(&server).await,
            0,
            "refused before any key is looked up"
        );
    }

    #[tokio::test]
    async fn a_failing_jwks_endpoint_makes_keys_unavailable_and_is_not_retried_within_the_floor() {
        let server = MockServer::start().await;
        serve(&server, "oops", 500).await;
        let auth = verifier(&server, Duration::from_secs(30));
        for _ in 0..3 {
            assert!(matches!(
                check(&auth, &rs256(KEY_A, "test-key-a")).await,
                Err(AuthError::KeysUnavailable(_))
            ));
        }
        assert_eq!(fetches(&server).await, 1);
    }
}
