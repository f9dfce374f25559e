//! Who is calling the dashboard API: a Bearer JWT verified inside the function (so the local
//! stack and `sam local` enforce it too), and the workspace it names. Everything fails closed:
//! a token that is missing, malformed, expired, signed with a key or algorithm we do not trust,
//! for another issuer or audience, or without a workspace, is refused.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use super::jwks::JwksCache;
use crate::ids::WorkspaceId;
use crate::secrets::{SecretSource, SecretsCache};

/// The workspace claim Clerk's organisation tokens carry.
pub const DEFAULT_WORKSPACE_CLAIM: &str = "org_id";
/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// How tokens are verified; read from the environment at cold start (see `config::SendApiConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// The only accepted `iss`.
    pub issuer: String,
    /// The only accepted `aud`.
    pub audience: String,
    /// Accepted signature algorithms; a token signed otherwise is refused before any key is looked up.
    pub algorithms: Vec<Algorithm>,
    /// The claim that names the caller's workspace (a top-level name, or a dotted path such as
    /// `o.id` for Clerk's v2 session tokens).
    pub workspace_claim: String,
    pub keys: KeySource,
}

/// Where verification keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// The identity provider's JSON Web Key Set (Clerk, Cognito, Auth0): public keys by `kid`.
    Jwks(JwksSettings),
    /// An HS256 secret, `dashboard_jwt_secret` in the app secret (the local stack mints with it).
    AppSecret,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JwksSettings {
    pub url: String,
    /// The least time between two fetches: a flood of tokens with unknown `kid`s costs at most
    /// one fetch per floor.
    pub refresh_floor: Duration,
    /// Keys older than this are fetched again, so a key the provider withdrew stops working.
    pub max_age: Duration,
    pub timeout: Duration,
}

impl JwksSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            refresh_floor: Duration::from_secs(10),
            max_age: Duration::from_secs(3600),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("the Authorization header must be `Bearer <token>`")]
    MissingToken,
    #[error("the token has expired")]
    Expired,
    #[error("the token is signed with an algorithm that is not accepted")]
    DisallowedAlgorithm,
    #[error("the token is not signed by a known key")]
    UnknownKey,
    #[error("the token is not for this API (issuer or audience)")]
    WrongIssuerOrAudience,
    #[error("the token carries no workspace")]
    NoWorkspace,
    #[error("the token is invalid")]
    Invalid,
    #[error("no key to verify tokens with is configured")]
    NoKeyConfigured,
    /// The keys could not be had (JWKS endpoint or secret store down): not the caller's fault.
    #[error("the verification keys could not be fetched: {0}")]
    KeysUnavailable(String),
}

/// Verifies Bearer tokens and says which workspace they are for.
pub struct Authenticator<S> {
    validation: Validation,
    workspace_claim: String,
    keys: Keys<S>,
}

enum Keys<S> {
    Jwks(JwksCache),
    Secret(Arc<SecretsCache<S>>),
}

impl<S: SecretSource> Authenticator<S> {
    /// `secrets` is the function's one secrets cache; it is read only in [`KeySource::AppSecret`] mode.
    pub fn new(config: AuthConfig, secrets: Arc<SecretsCache<S>>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = config.algorithms;
        validation.set_issuer(&[config.issuer]);
        validation.set_audience(&[config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY.as_secs();
        let keys = match config.keys {
            KeySource::Jwks(settings) => Keys::Jwks(JwksCache::new(settings)),
            KeySource::AppSecret => Keys::Secret(secrets),
        };
        Self {
            validation,
            workspace_claim: config.workspace_claim,
            keys,
        }
    }

    /// The workspace of the request whose `Authorization` header is `authorization`.
    pub async fn authenticate(
        &self,
        authorization: Option<&str>,
    ) -> Result<WorkspaceId, AuthError> {
        let token = bearer(authorization).ok_or(AuthError::MissingToken)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        if !self.validation.algorithms.contains(&header.alg) {
            return Err(AuthError::DisallowedAlgorithm);
        }
        let key = match &self.keys {
            Keys::Jwks(jwks) => {
                jwks.key(header.kid.as_deref().ok_or(AuthError::UnknownKey)?)
                    .await?
            }
            Keys::Secret(secrets) => Arc::new(hmac_key(secrets).await?),
        };
        let claims = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                    AuthError::WrongIssuerOrAudience
                }
                ErrorKind::InvalidAlgorithm => AuthError::DisallowedAlgorithm,
                _ => AuthError::Invalid,
            })?
            .claims;
        workspace_of(&claims, &self.workspace_claim)
    }
}

async fn hmac_key<S: SecretSource>(secrets: &SecretsCache<S>) -> Result<DecodingKey, AuthError> {
    let secrets = secrets
        .get()
        .await
        .map_err(|e| AuthError::KeysUnavailable(e.to_string()))?;
    let secret = secrets
        .dashboard_jwt_secret
        .as_ref()
        .map(|s| s.expose_secret().as_bytes())
        .filter(|s| !s.is_empty())
        .ok_or(AuthError::NoKeyConfigured)?;
    Ok(DecodingKey::from_secret(secret))
}

/// The token of an `Authorization: Bearer <token>` header (the scheme is case-insensitive).
fn bearer(authorization: Option<&str>) -> Option<&str> {
    let (scheme, token) = authorization?.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The workspace named by `claim`: a top-level claim of that exact name (names may contain
/// dots, e.g. Auth0's namespaced claims), or else the dotted path into nested objects.
fn workspace_of(claims: &Map<String, Value>, claim: &str) -> Result<WorkspaceId, AuthError> {
    let value = claims.get(claim).or_else(|| {
        let mut parts = claim.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |v, part| v.get(part))
    });
    value
        .and_then(Value::as_str)
        .and_then(|raw| WorkspaceId::parse(raw).ok())
        .ok_or(AuthError::NoWorkspace)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;
    use time::OffsetDateTime;

    use super::*;
    use crate::secrets::SecretsError;

    const SECRET: &str = "test-dashboard-secret";

    struct Fixed(&'static str);
    impl SecretSource for Fixed {
        async fn fetch(&self) -> Result<String, SecretsError> {
            Ok(self.0.to_owned())
        }
    }

    fn config() -> AuthConfig {
        AuthConfig {
            issuer: "https://issuer.test".into(),
            audience: "send-api".into(),
            algorithms: vec![Algorithm::HS256],
            workspace_claim: DEFAULT_WORKSPACE_CLAIM.into(),
            keys: KeySource::AppSecret,
        }
    }

    fn authenticator(secret_json: &'static str, config: AuthConfig) -> Authenticator<Fixed> {
        let secrets = SecretsCache::new(Fixed(secret_json), Duration::from_secs(60));
        Authenticator::new(config, Arc::new(secrets))
    }

    fn with_secret() -> Authenticator<Fixed> {
        authenticator(
            r#"{"dashboard_jwt_secret":"test-dashboard-secret"}"#,
            config(),
        )
    }

    fn claims() -> Value {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        json!({ "iss": "https://issuer.test", "aud": "send-api", "exp": now + 300, "iat": now, "org_id": "ws-a" })
    }

    fn hs256(claims: &Value) -> String {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
    }

    async fn check(auth: &Authenticator<Fixed>, token: &str) -> Result<WorkspaceId, AuthError> {
        auth.authenticate(Some(&format!("Bearer {token}"))).await
    }

    #[tokio::test]
    async fn a_valid_token_yields_the_workspace_of_its_claim() {
        let workspace = check(&with_secret(), &hs256(&claims())).await.unwrap();
        assert_eq!(workspace.as_str(), "ws-a");
    }

    #[tokio::test]
    async fn the_bearer_scheme_is_case_insensitive_but_required() {
        let auth = with_secret();
        let token = hs256(&claims());
        assert!(
            auth.authenticate(Some(&format!("bearer {token}")))
                .await
                .is_ok()
        );
        assert_eq!(
            auth.authenticate(Some(&format!("Basic {token}"))).await,
            Err(AuthError::MissingToken)
        );
        assert_eq!(
            auth.authenticate(Some(&token)).await,
            Err(AuthError::MissingToken)
        );
        assert_eq!(auth.authenticate(None).await, Err(AuthError::MissingToken));
        assert_eq!(
            auth.authenticate(Some("Bearer ")).await,
            Err(AuthError::MissingToken)
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_refused() {
        let mut claims = claims();
        claims["exp"] = json!(OffsetDateTime::now_utc().unix_timestamp() - 3600);
        assert_eq!(
            check(&with_secret(), &hs256(&claims)).await,
            Err(AuthError::Expired)
        );
    }

    #[tokio::test]
    async fn a_token_not_valid_yet_is_refused() {
        let mut claims = claims();
        claims["nbf"] = json!(OffsetDateTime::now_utc().unix_timestamp() + 3600);
        assert_eq!(
            check(&with_secret(), &hs256(&claims)).await,
            Err(AuthError::Invalid)
        );
    }

    #[tokio::test]
    async fn a_token_for_another_issuer_or_audience_is_refused() {
        for (claim, value) in [("iss", "https://evil.test"), ("aud", "another-api")] {
            let mut claims = claims();
            claims[claim] = json!(value);
            assert_eq!(
                check(&with_secret(), &hs256(&claims)).await,
                Err(AuthError::WrongIssuerOrAudience),
                "{claim}"
            );
        }
    }

    #[tokio::test]
    async fn a_token_without_expiry_issuer_or_audience_is_refused() {
        for claim in ["exp", "iss", "aud"] {
            let mut claims = claims();
            claims.as_object_mut().unwrap().remove(claim);
            assert!(
                check(&with_secret(), &hs256(&claims)).await.is_err(),
                "{claim}"
            );
        }
    }

    #[tokio::test]
    async fn a_token_signed_with_another_secret_is_refused() {
        let key = EncodingKey::from_secret(b"not-the-secret");
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims(), &key).unwrap();
        assert_eq!(check(&with_secret(), &token).await, Err(AuthError::Invalid));
    }

    #[tokio::test]
    async fn a_tampered_payload_is_refused() {
        let token = hs256(&claims());
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut other = claims();
        other["org_id"] = json!("ws-b");
        parts[1] = hs256(&other).split('.').nth(1).unwrap().to_owned();
        assert_eq!(
            check(&with_secret(), &parts.join(".")).await,
            Err(AuthError::Invalid)
        );
    }

    #[tokio::test]
    async fn an_algorithm_outside_the_allowed_list_is_refused_before_any_key_is_used() {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &claims(), &key).unwrap();
        assert_eq!(
            check(&with_secret(), &token).await,
            Err(AuthError::DisallowedAlgorithm)
        );
        let unsigned = format!(
            "{}.{}.",
            base64_url(r#"{"alg":"none","typ":"JWT"}"#),
            base64_url(&claims().to_string())
        );
        assert!(check(&with_secret(), &unsigned).await.is_err());
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[tokio::test]
    async fn a_token_without_the_workspace_claim_is_refused() {
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove("org_id");
        assert_eq!(
            check(&with_secret(), &hs256(&claims)).await,
            Err(AuthError::NoWorkspace)
        );
        let mut claims = self::claims();
        claims["org_id"] = json!("has spaces");
        assert_eq!(
            check(&with_secret(), &hs256(&claims)).await,
            Err(AuthError::NoWorkspace)
        );
    }

    #[tokio::test]
    async fn the_workspace_claim_is_configurable_and_may_be_a_nested_path() {
        let mut config = config();
        config.workspace_claim = "o.id".into();
        let auth = authenticator(
            r#"{"dashboard_jwt_secret":"test-dashboard-secret"}"#,
            config,
        );
        let mut claims = claims();
        claims["o"] = json!({ "id": "org_2abc", "rol": "admin" });
        assert_eq!(
            check(&auth, &hs256(&claims)).await.unwrap().as_str(),
            "org_2abc"
        );
    }

    #[tokio::test]
    async fn without_a_configured_secret_every_token_is_refused() {
        let auth = authenticator("{}", config());
        assert_eq!(
            check(&auth, &hs256(&claims())).await,
            Err(AuthError::NoKeyConfigured)
        );
    }
}
