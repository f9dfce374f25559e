//! Bearer tokens for the send API on the local stack: HS256, signed with the
//! `dashboard_jwt_secret` the stack seeds into its app secret, for the issuer and audience it
//! configures the function with. They protect nothing: the stack listens on loopback only.

use std::time::Duration;

use anyhow::Context;
use serde_json::json;

/// The HS256 key the local stack puts in its app secret.
pub const LOCAL_JWT_SECRET: &str = "local-dashboard-jwt-secret";
pub const LOCAL_JWT_ISSUER: &str = "https://local-stack.invalid";
pub const LOCAL_JWT_AUDIENCE: &str = "send-api";
/// The claim naming the workspace: the template's default, Clerk's `org_id`.
pub const LOCAL_WORKSPACE_CLAIM: &str = "org_id";

/// The send API's auth settings on the local stack, on top of the template's environment.
pub fn auth_env() -> Vec<(String, String)> {
    [
        ("JWT_ISSUER", LOCAL_JWT_ISSUER),
        ("JWT_AUDIENCE", LOCAL_JWT_AUDIENCE),
        ("JWT_WORKSPACE_CLAIM", LOCAL_WORKSPACE_CLAIM),
        ("JWT_ALGORITHMS", "HS256"),
        ("JWKS_URL", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A `curl` line, ready to paste, that reads the workspace's AI settings with `token` from the
/// send API at `functions_url`.
pub fn curl_line(token: &str, functions_url: &str) -> String {
    format!("curl -H 'Authorization: Bearer {token}' {functions_url}/v1/ai-config")
}

/// Claims of a token for `workspace`, valid from now for `ttl`.
#[derive(Debug, Clone)]
pub struct TokenSpec<'a> {
    pub secret: &'a str,
    pub issuer: &'a str,
    pub audience: &'a str,
    pub workspace_claim: &'a str,
    pub workspace: &'a str,
    pub ttl: Duration,
}

impl<'a> TokenSpec<'a> {
    /// A token the local stack's send API accepts, for `workspace`, valid for an hour.
    pub fn local(workspace: &'a str) -> Self {
        Self {
            secret: LOCAL_JWT_SECRET,
            issuer: LOCAL_JWT_ISSUER,
            audience: LOCAL_JWT_AUDIENCE,
            workspace_claim: LOCAL_WORKSPACE_CLAIM,
            workspace,
            ttl: Duration::from_secs(3600),
        }
    }

    /// Signs the token (HS256). A negative age can be had with [`TokenSpec::mint_at`].
    pub fn mint(&self) -> anyhow::Result<String> {
        self.mint_at(time::OffsetDateTime::now_utc().unix_timestamp())
    }

    /// Signs the token as if issued at `issued_at` (Unix seconds): tests make expired ones.
    pub fn mint_at(&self, issued_at: i64) -> anyhow::Result<String> {
        let ttl = i64::try_from(self.ttl.as_secs()).context("ttl too long")?;
        let mut claims = json!({
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "local-user",
            "iat": issued_at,
            "exp": issued_at + ttl,
        });
        claims[self.workspace_claim] = json!(self.workspace);
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        let key = jsonwebtoken::EncodingKey::from_secret(self.secret.as_bytes());
        jsonwebtoken::encode(&header, &claims, &key).context("signing the token")
    }
}
