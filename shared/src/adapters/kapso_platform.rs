//! The Kapso platform API client (customers, setup links, phone numbers) behind the
//! [`KapsoPlatform`] port. It authenticates with `X-API-Key`, the app secret's `kapso_api_key`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;

use crate::ids::{KapsoCustomerId, PhoneNumberId, SetupLinkId, WorkspaceId};
use crate::onboarding::{
    CreatedSetupLink, KapsoPlatform, PlatformError, PlatformNumber, SetupLinkSpec,
};
use crate::secrets::{SecretSource, SecretsCache};

/// How long one platform call may take: the dashboard (or a browser) is waiting.
pub const PLATFORM_TIMEOUT: Duration = Duration::from_secs(10);

pub struct KapsoPlatformClient<S> {
    /// Built on first use: the processor holds a client for the rare project webhook, and its
    /// cold start should not pay for a TLS-configured HTTP client it may never use.
    http: OnceLock<reqwest::Client>,
    base_url: String,
    secrets: Arc<SecretsCache<S>>,
}

impl<S: SecretSource> KapsoPlatformClient<S> {
    pub fn new(base_url: impl Into<String>, secrets: Arc<SecretsCache<S>>) -> Self {
        Self {
            http: OnceLock::new(),
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            secrets,
        }
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(PLATFORM_TIMEOUT)
                .build()
                .expect("the HTTP client (TLS backend, resolver) could not be initialised")
        })
    }

    async fn send<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Option<T>, PlatformError> {
        let secrets = self
            .secrets
            .get()
            .await
            .map_err(|e| PlatformError::Unavailable(e.to_string()))?;
        let key = secrets
            .kapso_api_key
            .as_ref()
            .ok_or(PlatformError::NotConfigured)?;
        let response = request
            .header("X-API-Key", key.expose_secret())
            .send()
            .await
            .map_err(|e| PlatformError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(PlatformError::Unavailable(format!("HTTP {status}")));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| PlatformError::Unavailable(e.without_url().to_string()))?;
        if !status.is_success() {
            return Err(PlatformError::Refused {
                status: status.as_u16(),
                message: String::from_utf8_lossy(&body).chars().take(300).collect(),
            });
        }
        serde_json::from_slice::<Data<T>>(&body)
            .map(|d| Some(d.data))
            .map_err(|e| PlatformError::Refused {
                status: status.as_u16(),
                message: format!("unreadable response: {e}"),
            })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// Kapso wraps every answer in `data`.
#[derive(Deserialize)]
struct Data<T> {
    data: T,
}

#[derive(Deserialize)]
struct CustomerRow {
    id: KapsoCustomerId,
}

#[derive(Deserialize)]
struct SetupLinkRow {
    id: SetupLinkId,
    url: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
}

#[derive(Deserialize)]
struct PhoneNumberRow {
    #[serde(default)]
    customer_id: Option<String>,
    #[serde(default)]
    display_phone_number: Option<String>,
    #[serde(default)]
    is_coexistence: Option<bool>,
}

fn missing(what: &str) -> PlatformError {
    PlatformError::Refused {
        status: 404,
        message: format!("{what} not found"),
    }
}

impl<S: SecretSource> KapsoPlatform for KapsoPlatformClient<S> {
    async fn create_customer(
        &self,
        name: &str,
        external_id: &WorkspaceId,
    ) -> Result<KapsoCustomerId, PlatformError> {
        let body = serde_json::json!({
            "customer": { "name": name, "external_customer_id": external_id.as_str() }
        });
        let row: Option<CustomerRow> = self
            .send(self.http().post(self.url("/customers")).json(&body))
            .await?;
        Ok(row.ok_or_else(|| missing("the customers route"))?.id)
    }

    async fn create_setup_link(
        &self,
        customer: &KapsoCustomerId,
        spec: &SetupLinkSpec,
    ) -> Result<CreatedSetupLink, PlatformError> {
        let path = format!("/customers/{}/setup_links", urlencode(customer.as_str()));
        let body = serde_json::json!({ "setup_link": spec });
        let row: SetupLinkRow = self
            .send(self.http().post(self.url(&path)).json(&body))
            .await?
            .ok_or_else(|| missing("the customer"))?;
        Ok(CreatedSetupLink {
            id: row.id,
            url: row.url,
            expires_at: row.expires_at,
        })
    }

    async fn phone_number(
        &self,
        phone_number_id: &PhoneNumberId,
    ) -> Result<Option<PlatformNumber>, PlatformError> {
        let path = format!("/whatsapp/phone_numbers/{}", phone_number_id.as_str());
        let row: Option<PhoneNumberRow> = self.send(self.http().get(self.url(&path))).await?;
        Ok(row.map(|r| PlatformNumber {
            customer_id: r.customer_id.and_then(|c| KapsoCustomerId::parse(c).ok()),
            display_phone_number: r.display_phone_number,
            is_coexistence: r.is_coexistence,
        }))
    }
}

/// Percent-encodes a path segment (ids are tokens, but a path must never be steered by one).
fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use wiremock::matchers::{body_partial_json, header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::onboarding::ConnectionType;
    use crate::secrets::SecretsError;

    struct Fixed(&'static str);
    impl SecretSource for Fixed {
        async fn fetch(&self) -> Result<String, SecretsError> {
            Ok(self.0.to_owned())
        }
    }

    fn client(server: &MockServer, secret: &'static str) -> KapsoPlatformClient<Fixed> {
        KapsoPlatformClient::new(
            format!("{}/platform/v1/", server.uri()),
            Arc::new(SecretsCache::new(Fixed(secret), Duration::from_secs(60))),
        )
    }

    #[tokio::test]
    async fn a_setup_link_is_created_with_the_api_key_and_kapsos_shape() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/platform/v1/customers/cus%2F1/setup_links"))
            .and(header("X-API-Key", "k-123"))
            .and(body_partial_json(serde_json::json!({"setup_link": {
                "allowed_connection_types": ["dedicated"], "provision_phone_number": true}})))
            .respond_with(
                ResponseTemplate::new(201).set_body_json(serde_json::json!({"data": {
                "id": "link-1", "url": "https://app.kapso.ai/whatsapp/setup/x",
                "expires_at": "2030-01-01T00:00:00Z", "status": "active"}})),
            )
            .expect(1)
            .mount(&server)
            .await;
        let spec = SetupLinkSpec {
            success_redirect_url: "https://a/s".into(),
            failure_redirect_url: "https://a/f".into(),
            allowed_connection_types: vec![ConnectionType::Dedicated],
            provision_phone_number: true,
            phone_number_country_isos: vec![],
            phone_number_area_code: None,
            theme_config: None,
        };
        let link = client(&server, r#"{"kapso_api_key":"k-123"}"#)
            .create_setup_link(&KapsoCustomerId::parse("cus/1").unwrap(), &spec)
            .await
            .unwrap();
        assert_eq!(link.id.as_str(), "link-1");
        assert_eq!(link.expires_at.year(), 2030);
    }

    #[tokio::test]
    async fn an_unknown_number_is_none_and_a_server_error_is_unavailable() {
        let server = MockServer::start().await;
        Mock::given(path("/platform/v1/whatsapp/phone_numbers/111"))
            .respond_with(ResponseTemplate::new(404))
            .mount(&server)
            .await;
        Mock::given(path("/platform/v1/whatsapp/phone_numbers/222"))
            .respond_with(ResponseTemplate::new(503))
            .mount(&server)
            .await;
        let c = client(&server, r#"{"kapso_api_key":"k"}"#);
        let pn = |p: &str| PhoneNumberId::parse(p).unwrap();
        assert_eq!(c.phone_number(&pn("111")).await, Ok(None));
        assert!(matches!(
            c.phone_number(&pn("222")).await,
            Err(PlatformError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn without_an_api_key_nothing_is_sent() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(200))
            .expect(0)
            .mount(&server)
            .await;
        let result = client(&server, "{}")
            .create_customer("ws", &WorkspaceId::parse("ws").unwrap())
            .await;
        assert_eq!(result, Err(PlatformError::NotConfigured));
    }
}
