//! The manual Meta integration: a workspace connects its number with its own Cloud API
//! credentials (`POST /v1/whatsapp/integrations`) or disconnects it (`DELETE …/{id}`).
//!
//! The token is tested against Graph (`GET /{phone_number_id}`) through the one WhatsApp client
//! before anything is stored, then stored only sealed ([`super::sealed`]); it is opened again
//! only where a send is handed to the client (`conversations::processor::channel`). No route
//! returns it and its wrappers never print it.

use std::future::Future;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::ActivationError;
use super::sealed::{EncryptionKey, SealError, SealedToken};
use crate::conversations::store::{StoreError, StoreResult};
use crate::ids::{PhoneNumberId, WorkspaceId};
use crate::secrets::{SecretSource, SecretsCache};
use crate::whatsapp::{WhatsAppClient, WhatsAppError};

/// How long the connection test may take: someone is waiting for the answer.
const CONNECTION_TEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Meta's tokens are a few hundred characters; anything far longer is not one.
const MAX_TOKEN_LEN: usize = 4096;
const MAX_VERIFY_TOKEN_LEN: usize = 256;

/// `POST /v1/whatsapp/integrations`. Its `Debug` shows neither token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ManualIntegrationRequest {
    /// Meta's id of the business phone number (digits).
    #[schema(example = "106540352242922")]
    pub phone_number_id: String,
    /// A Cloud API access token (a system user's permanent token) with
    /// `whatsapp_business_messaging` on the number. Stored encrypted; never returned.
    #[schema(value_type = String, write_only)]
    pub access_token: SecretString,
    /// The WhatsApp Business account the number belongs to (digits).
    #[schema(example = "102290129340398")]
    pub business_account_id: String,
    /// The token Meta echoes when the webhook is verified; only its SHA-256 is stored.
    #[schema(value_type = Option<String>, write_only)]
    #[serde(default)]
    pub webhook_verify_token: Option<SecretString>,
}

/// The connected number, as Graph described it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManualIntegration {
    pub phone_number_id: String,
    pub business_account_id: String,
    /// The business name WhatsApp shows (Meta's `verified_name`).
    pub display_name: Option<String>,
    pub display_phone_number: Option<String>,
    /// Meta's `code_verification_status`: `VERIFIED`, `NOT_VERIFIED`, `EXPIRED`, …
    pub verification_status: Option<String>,
    pub quality_rating: Option<String>,
    #[schema(value_type = String, example = "connected")]
    pub status: &'static str,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub connected_at: OffsetDateTime,
}

/// What is stored for a manual integration.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualConnection {
    pub workspace_id: WorkspaceId,
    pub phone_number_id: PhoneNumberId,
    pub access_token: SealedToken,
    pub business_account_id: String,
    pub display_phone_number: Option<String>,
    /// Hex SHA-256 of the webhook verify token, when one was given.
    pub webhook_verify_token_sha256: Option<String>,
    pub connected_at: OffsetDateTime,
}

/// Port: the manual integrations' writes.
pub trait ManualIntegrationStore: Send + Sync + 'static {
    /// In one transaction: routes the number to the workspace as an active Meta integration
    /// with its sealed token (replacing any earlier token and clearing an error), and sets it
    /// on the workspace's record. [`ActivationError::Taken`], with nothing written, when the
    /// number is connected to another workspace.
    fn connect_manual(
        &self,
        connection: &ManualConnection,
    ) -> impl Future<Output = Result<(), ActivationError>> + Send;
    /// Marks the workspace's number disconnected and drops its token; its history stays.
    /// `false`, with nothing changed, when the number is not the workspace's.
    fn disconnect(
        &self,
        workspace_id: &WorkspaceId,
        phone_number_id: &PhoneNumberId,
        at: OffsetDateTime,
    ) -> impl Future<Output = StoreResult<bool>> + Send;
}

/// Why a manual integration was not connected or disconnected.
#[derive(Debug, thiserror::Error)]
pub enum ManualIntegrationError {
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// Meta refused the token, or it has no access to the number.
    #[error("Meta refused the access token for this number")]
    InvalidCredentials(#[source] WhatsAppError),
    /// Meta does not know the number, or it is not a WhatsApp business number.
    #[error("Meta does not know this phone number id")]
    InvalidPhoneNumber(#[source] WhatsAppError),
    /// Meta could not be reached, or answered with something else.
    #[error("the connection test with Meta failed")]
    ConnectionFailed(#[source] WhatsAppError),
    /// The number is connected to another workspace.
    #[error("this phone number is connected to another workspace")]
    Taken,
    /// The number is not connected to the caller's workspace.
    #[error("no such number in the workspace")]
    NotFound,
    /// The encryption key is missing or malformed, or the app secret cannot be read: nothing
    /// is stored rather than a token left unencrypted.
    #[error("credentials cannot be stored securely right now")]
    EncryptionUnavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<SealError> for ManualIntegrationError {
    fn from(e: SealError) -> Self {
        Self::EncryptionUnavailable(e.to_string())
    }
}

/// Checked input.
struct Checked {
    phone_number_id: PhoneNumberId,
    business_account_id: String,
    webhook_verify_token_sha256: Option<String>,
}

fn invalid(field: &str, message: impl Into<String>) -> ManualIntegrationError {
    ManualIntegrationError::Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Visible ASCII only: what a token may hold and an HTTP header may carry.
fn visible_ascii(raw: &str) -> bool {
    raw.bytes().all(|b| b.is_ascii_graphic())
}

fn check(request: &ManualIntegrationRequest) -> Result<Checked, ManualIntegrationError> {
    let phone_number_id = PhoneNumberId::parse(request.phone_number_id.trim())
        .map_err(|e| invalid("phoneNumberId", e.to_string()))?;
    let token = request.access_token.expose_secret();
    if token.is_empty() {
        return Err(invalid("accessToken", "must not be empty"));
    }
    if token.len() > MAX_TOKEN_LEN || !visible_ascii(token) {
        return Err(invalid(
            "accessToken",
            format!("must be at most {MAX_TOKEN_LEN} visible ASCII characters, no spaces"),
        ));
    }
    let waba = request.business_account_id.trim();
    if waba.is_empty() || waba.len() > 32 || !waba.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(
            "businessAccountId",
            "must be Meta's WhatsApp Business account id: 1 to 32 digits",
        ));
    }
    let verify = match &request.webhook_verify_token {
        Some(v) => {
            let v = v.expose_secret();
            if v.is_empty() || v.len() > MAX_VERIFY_TOKEN_LEN || !visible_ascii(v) {
                return Err(invalid(
                    "webhookVerifyToken",
                    format!("must be 1 to {MAX_VERIFY_TOKEN_LEN} visible ASCII characters"),
                ));
            }
            Some(hex::encode(Sha256::digest(v.as_bytes())))
        }
        None => None,
    };
    Ok(Checked {
        phone_number_id,
        business_account_id: waba.to_owned(),
        webhook_verify_token_sha256: verify,
    })
}

/// What a refused connection test means for the person connecting.
fn classify(error: WhatsAppError) -> ManualIntegrationError {
    use ManualIntegrationError as E;
    match &error {
        WhatsAppError::TokenInvalid { .. } => E::InvalidCredentials(error),
        // 10 and 200–299: the token lacks a permission on the number.
        WhatsAppError::Rejected { status, code, .. }
            if matches!(status, 401 | 403)
                || code.is_some_and(|c| c == 10 || (200..300).contains(&c)) =>
        {
            E::InvalidCredentials(error)
        }
        // 100: "Unsupported get request. Object with ID … does not exist".
        WhatsAppError::InvalidParameter { .. } => E::InvalidPhoneNumber(error),
        WhatsAppError::Rejected {
            status: 400 | 404, ..
        } => E::InvalidPhoneNumber(error),
        _ => E::ConnectionFailed(error),
    }
}

/// Tests the credentials with Graph and, if Meta accepts them, connects the number to the
/// workspace with its token sealed. Connecting the same number again replaces the token and
/// re-activates it (how a number whose token expired is reconnected).
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn connect<D: ManualIntegrationStore, S: SecretSource>(
    store: &D,
    whatsapp: &WhatsAppClient,
    secrets: &SecretsCache<S>,
    workspace_id: &WorkspaceId,
    request: ManualIntegrationRequest,
) -> Result<ManualIntegration, ManualIntegrationError> {
    let checked = check(&request)?;
    let pn = &checked.phone_number_id;
    // Fail closed before Meta is even asked: a token we could not seal is not taken.
    let app = secrets
        .get()
        .await
        .map_err(|e| ManualIntegrationError::EncryptionUnavailable(e.to_string()))?;
    let key = EncryptionKey::from_secrets(&app)?;
    let deadline = Instant::now() + CONNECTION_TEST_TIMEOUT;
    let info = whatsapp
        .phone_number(&request.access_token, pn, deadline)
        .await
        .map_err(classify)?;
    let connection = ManualConnection {
        workspace_id: workspace_id.clone(),
        phone_number_id: pn.clone(),
        access_token: key.seal(pn, &request.access_token)?,
        business_account_id: checked.business_account_id.clone(),
        display_phone_number: info.display_phone_number.clone(),
        webhook_verify_token_sha256: checked.webhook_verify_token_sha256,
        connected_at: OffsetDateTime::now_utc(),
    };
    store
        .connect_manual(&connection)
        .await
        .map_err(|e| match e {
            ActivationError::Taken => ManualIntegrationError::Taken,
            ActivationError::Store(e) => e.into(),
        })?;
    tracing::info!(phone_number_id = %pn, "manual integration connected");
    Ok(ManualIntegration {
        phone_number_id: pn.as_str().to_owned(),
        business_account_id: checked.business_account_id,
        display_name: info.verified_name,
        display_phone_number: info.display_phone_number,
        verification_status: info.code_verification_status,
        quality_rating: info.quality_rating,
        status: "connected",
        connected_at: connection.connected_at,
    })
}

/// Disconnects one of the workspace's numbers: its webhooks are dropped from then on.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn disconnect<D: ManualIntegrationStore>(
    store: &D,
    workspace_id: &WorkspaceId,
    phone_number_id: &str,
) -> Result<(), ManualIntegrationError> {
    // A malformed id is no number of the workspace's.
    let pn = PhoneNumberId::parse(phone_number_id).map_err(|_| ManualIntegrationError::NotFound)?;
    if store
        .disconnect(workspace_id, &pn, OffsetDateTime::now_utc())
        .await?
    {
        tracing::info!(phone_number_id = %pn, "number disconnected");
        Ok(())
    } else {
        Err(ManualIntegrationError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pn: &str, token: &str, waba: &str) -> ManualIntegrationRequest {
        ManualIntegrationRequest {
            phone_number_id: pn.into(),
            access_token: SecretString::from(token),
            business_account_id: waba.into(),
            webhook_verify_token: None,
        }
    }

    fn field_of(r: Result<Checked, ManualIntegrationError>) -> String {
        match r {
            Err(ManualIntegrationError::Invalid { field, .. }) => field,
            Err(e) => panic!("not a validation error: {e}"),
            Ok(_) => panic!("accepted"),
        }
    }

    #[test]
    fn each_malformed_field_is_named() {
        assert_eq!(field_of(check(&request("12ab", "t", "1"))), "phoneNumberId");
        assert_eq!(field_of(check(&request("1", "", "1"))), "accessToken");
        assert_eq!(
            field_of(check(&request("1", "a token", "1"))),
            "accessToken"
        );
        assert_eq!(
            field_of(check(&request("1", "t", "waba"))),
            "businessAccountId"
        );
        let mut r = request("1", "t", "1");
        r.webhook_verify_token = Some(SecretString::from(""));
        assert_eq!(field_of(check(&r)), "webhookVerifyToken");
    }

    #[test]
    fn the_verify_token_is_kept_only_as_its_digest() {
        let mut r = request("1", "t", "2");
        r.webhook_verify_token = Some(SecretString::from("verify-me"));
        let checked = check(&r).unwrap();
        let digest = checked.webhook_verify_token_sha256.unwrap();
        // `printf verify-me | sha256sum`
        assert_eq!(
            digest,
            "d757afa8f14ef7434c81a75fd826537c6b13a8dadd65363b0fd10f1ec2cb211f"
        );
    }

    #[test]
    fn the_request_debug_output_shows_no_token() {
        let mut r = request("1", "EAAJ-secret", "2");
        r.webhook_verify_token = Some(SecretString::from("verify-secret"));
        let shown = format!("{r:?}");
        assert!(!shown.contains("EAAJ-secret") && !shown.contains("verify-secret"));
    }

    #[test]
    fn refusals_of_the_connection_test_are_classified() {
        let token = WhatsAppError::TokenInvalid {
            code: 190,
            message: "expired".into(),
        };
        assert!(matches!(
            classify(token),
            ManualIntegrationError::InvalidCredentials(_)
        ));
        let unknown = WhatsAppError::InvalidParameter {
            code: Some(100),
            message: "Unsupported get request".into(),
        };
        assert!(matches!(
            classify(unknown),
            ManualIntegrationError::InvalidPhoneNumber(_)
        ));
        let down = WhatsAppError::Transient {
            status: Some(503),
            message: "down".into(),
        };
        assert!(matches!(
            classify(down),
            ManualIntegrationError::ConnectionFailed(_)
        ));
    }

    mod sending_credentials {
        use secrecy::ExposeSecret;

        use crate::conversations::model::{Integration, IntegrationStatus, Provider};
        use crate::conversations::processor::{Unsendable, channel};
        use crate::ids::{PhoneNumberId, WorkspaceId};
        use crate::onboarding::sealed::EncryptionKey;
        use crate::secrets::AppSecrets;
        use crate::whatsapp::Channel;

        const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

        fn secrets(key: Option<&str>) -> AppSecrets {
            AppSecrets::parse(
                &serde_json::json!({
                    "meta_access_token": "app-wide",
                    "kapso_api_key": "platform",
                    "integration_encryption_key": key,
                })
                .to_string(),
            )
            .unwrap()
        }

        fn meta_number(own: Option<&str>) -> Integration {
            let pn = PhoneNumberId::parse("111").unwrap();
            let key = EncryptionKey::parse(KEY).unwrap();
            Integration {
                access_token: own.map(|t| key.seal(&pn, &t.into()).unwrap()),
                phone_number_id: pn,
                workspace_id: WorkspaceId::parse("ws").unwrap(),
                provider: Provider::Meta,
                status: IntegrationStatus::Active,
                error: None,
            }
        }

        fn bearer(channel: Result<Channel, Unsendable>) -> Option<String> {
            match channel.ok()? {
                Channel::Meta { access_token } => Some(access_token.expose_secret().to_owned()),
                Channel::Kapso { .. } => None,
            }
        }

        #[test]
        fn a_number_with_its_own_token_sends_with_it_and_one_without_uses_the_apps() {
            let s = secrets(Some(KEY));
            assert_eq!(
                bearer(channel(&meta_number(Some("own")), &s)).as_deref(),
                Some("own")
            );
            assert_eq!(
                bearer(channel(&meta_number(None), &s)).as_deref(),
                Some("app-wide")
            );
        }

        #[test]
        fn a_number_whose_token_cannot_be_opened_sends_nothing_rather_than_the_apps_token() {
            let other_key = "MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=";
            for key in [None, Some("bad"), Some(other_key)] {
                assert_eq!(
                    channel(&meta_number(Some("own")), &secrets(key)).err(),
                    Some(Unsendable::NoCredentials),
                    "{key:?}"
                );
            }
        }

        #[test]
        fn a_number_in_error_or_disconnected_sends_nothing_whatever_its_credentials() {
            let s = secrets(Some(KEY));
            for own in [Some("own"), None] {
                let mut refused = meta_number(own);
                refused.status = IntegrationStatus::Error;
                refused.error = Some("Error validating access token".into());
                assert_eq!(
                    channel(&refused, &s).err(),
                    Some(Unsendable::Inactive("Error validating access token".into()))
                );
                let mut gone = meta_number(own);
                gone.status = IntegrationStatus::Disconnected;
                assert!(matches!(channel(&gone, &s), Err(Unsendable::Inactive(_))));
            }
        }
    }
}
