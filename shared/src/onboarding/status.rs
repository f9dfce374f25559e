//! A workspace's WhatsApp connection as the dashboard sees it, derived from its onboarding
//! record and the number's integration (which the processor marks `error` when Meta refuses
//! the token).

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{Connection, ConnectionType, OnboardingStore};
use crate::conversations::model::{Integration, IntegrationStatus, Provider};
use crate::conversations::store::{StoreResult, TenantStore};
use crate::ids::WorkspaceId;

/// `GET /v1/whatsapp/connection`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionStatus {
    pub is_connected: bool,
    #[schema(value_type = Option<String>, example = "kapso")]
    pub provider: Option<Provider>,
    pub phone_number_id: Option<String>,
    pub display_phone_number: Option<String>,
    pub connection_type: Option<ConnectionType>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub connected_at: Option<OffsetDateTime>,
    pub kapso_customer_id: Option<String>,
    pub status: ConnectionState,
    pub error: Option<ConnectionErrorBody>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    Connected,
    /// A setup link is out and has not come back yet.
    Pending,
    /// Never connected, or disconnected.
    Disconnected,
    /// The setup flow failed, or the number's credentials stopped working.
    Error,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ConnectionErrorBody {
    pub code: String,
    pub message: String,
}

impl ConnectionStatus {
    /// The status at `now` of a workspace with this record, whose number (if any) routes as
    /// `integration` says.
    pub fn derive(
        connection: &Connection,
        integration: Option<&Integration>,
        now: OffsetDateTime,
    ) -> Self {
        let number = connection.active.as_ref();
        let integration_status = integration.map(|i| i.status);
        // A link is out while unexpired and newer than the latest connection or disconnection.
        let settled = [number.map(|n| n.connected_at), connection.disconnected_at]
            .into_iter()
            .flatten()
            .max();
        let link_out = connection.link_expires_at.is_some_and(|e| e > now)
            && connection
                .link_created_at
                .is_some_and(|c| settled.is_none_or(|s| c > s));
        let error_after_link = connection
            .error
            .as_ref()
            .filter(|e| connection.link_created_at.is_none_or(|l| e.at >= l));
        let (status, error) = match (number, integration_status) {
            (Some(_), Some(IntegrationStatus::Error)) => (
                ConnectionState::Error,
                Some(ConnectionErrorBody {
                    code: "credentials_rejected".into(),
                    message: integration
                        .and_then(|i| i.error.clone())
                        .unwrap_or_else(|| "WhatsApp refused the number's credentials".into()),
                }),
            ),
            (Some(_), Some(IntegrationStatus::Active)) => (ConnectionState::Connected, None),
            _ => match error_after_link {
                Some(e) => (
                    ConnectionState::Error,
                    Some(ConnectionErrorBody {
                        code: e.code.clone(),
                        message: e
                            .message
                            .clone()
                            .unwrap_or_else(|| describe(&e.code).into()),
                    }),
                ),
                None if link_out => (ConnectionState::Pending, None),
                None => (ConnectionState::Disconnected, None),
            },
        };
        let shown = number.filter(|_| status != ConnectionState::Disconnected);
        Self {
            is_connected: status == ConnectionState::Connected,
            provider: shown.map(|n| n.provider),
            phone_number_id: shown.map(|n| n.phone_number_id.as_str().to_owned()),
            display_phone_number: shown.and_then(|n| n.display_phone_number.clone()),
            connection_type: shown.and_then(|n| n.connection_type),
            connected_at: shown.map(|n| n.connected_at),
            kapso_customer_id: connection
                .kapso_customer_id
                .as_ref()
                .map(|c| c.as_str().to_owned()),
            status,
            error,
        }
    }
}

/// What a Kapso setup error code means, for people.
pub fn describe(code: &str) -> &'static str {
    match code {
        "facebook_auth_failed" => "Facebook login did not complete",
        "phone_verification_failed" => "the phone number could not be verified",
        "waba_limit_reached" => "the business has reached its WhatsApp Business account limit",
        "token_exchange_failed" => "Meta did not grant access to the account",
        "link_expired" => "the setup link has expired",
        "already_used" => "the setup link was already used",
        _ => "the WhatsApp setup did not complete",
    }
}

/// The caller's connection status.
#[tracing::instrument(skip_all, fields(workspace_id = %workspace_id))]
pub async fn get<D: OnboardingStore + TenantStore>(
    store: &D,
    workspace_id: &WorkspaceId,
) -> StoreResult<ConnectionStatus> {
    let connection = store.connection(workspace_id).await?;
    let integration = match &connection.active {
        Some(number) => store
            .integration(&number.phone_number_id)
            .await?
            .filter(|i| &i.workspace_id == workspace_id),
        None => None,
    };
    Ok(ConnectionStatus::derive(
        &connection,
        integration.as_ref(),
        OffsetDateTime::now_utc(),
    ))
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::ids::{KapsoCustomerId, PhoneNumberId};
    use crate::onboarding::{ActiveNumber, RecordedError};

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    fn number() -> ActiveNumber {
        ActiveNumber {
            phone_number_id: PhoneNumberId::parse("123").unwrap(),
            provider: Provider::Kapso,
            display_phone_number: Some("+1 555".into()),
            connection_type: Some(ConnectionType::Dedicated),
            connected_at: now() - Duration::hours(1),
        }
    }

    fn integration(status: IntegrationStatus) -> Integration {
        Integration {
            phone_number_id: PhoneNumberId::parse("123").unwrap(),
            workspace_id: WorkspaceId::parse("ws").unwrap(),
            provider: Provider::Kapso,
            status,
            error: (status == IntegrationStatus::Error).then(|| "190: token expired".into()),
            access_token: None,
        }
    }

    fn with_link(created_minutes_ago: i64) -> Connection {
        Connection {
            kapso_customer_id: Some(KapsoCustomerId::parse("cus").unwrap()),
            link_created_at: Some(now() - Duration::minutes(created_minutes_ago)),
            link_expires_at: Some(
                now() - Duration::minutes(created_minutes_ago) + Duration::days(30),
            ),
            ..Connection::default()
        }
    }

    #[test]
    fn a_workspace_that_never_onboarded_is_disconnected_with_nothing_shown() {
        let s = ConnectionStatus::derive(&Connection::default(), None, now());
        assert_eq!(s.status, ConnectionState::Disconnected);
        assert!(!s.is_connected && s.provider.is_none() && s.kapso_customer_id.is_none());
    }

    #[test]
    fn an_outstanding_link_is_pending_until_it_expires() {
        let s = ConnectionStatus::derive(&with_link(5), None, now());
        assert_eq!(s.status, ConnectionState::Pending);
        assert_eq!(s.kapso_customer_id.as_deref(), Some("cus"));
        let expired = ConnectionStatus::derive(&with_link(60 * 24 * 31), None, now());
        assert_eq!(expired.status, ConnectionState::Disconnected);
    }

    #[test]
    fn an_active_number_is_connected_and_shown() {
        let c = Connection {
            active: Some(number()),
            ..with_link(60)
        };
        let s = ConnectionStatus::derive(&c, Some(&integration(IntegrationStatus::Active)), now());
        assert_eq!(s.status, ConnectionState::Connected);
        assert!(s.is_connected);
        assert_eq!(s.phone_number_id.as_deref(), Some("123"));
        assert_eq!(s.connection_type, Some(ConnectionType::Dedicated));
    }

    #[test]
    fn a_failure_after_the_latest_link_is_an_error_with_its_code_and_a_new_link_clears_it() {
        let failed = Connection {
            error: Some(RecordedError {
                code: "waba_limit_reached".into(),
                message: None,
                at: now() - Duration::minutes(1),
            }),
            ..with_link(5)
        };
        let s = ConnectionStatus::derive(&failed, None, now());
        assert_eq!(s.status, ConnectionState::Error);
        assert_eq!(s.error.as_ref().unwrap().code, "waba_limit_reached");
        let relinked = Connection {
            link_created_at: Some(now()),
            ..failed
        };
        assert_eq!(
            ConnectionStatus::derive(&relinked, None, now()).status,
            ConnectionState::Pending
        );
    }

    #[test]
    fn a_number_whose_credentials_were_refused_is_an_error() {
        let c = Connection {
            active: Some(number()),
            ..Connection::default()
        };
        let s = ConnectionStatus::derive(&c, Some(&integration(IntegrationStatus::Error)), now());
        assert_eq!(s.status, ConnectionState::Error);
        assert!(!s.is_connected);
        assert!(s.error.unwrap().message.contains("190"));
    }

    #[test]
    fn a_disconnected_number_is_disconnected_and_not_shown() {
        let c = Connection {
            active: Some(number()),
            ..Connection::default()
        };
        let s = ConnectionStatus::derive(
            &c,
            Some(&integration(IntegrationStatus::Disconnected)),
            now(),
        );
        assert_eq!(s.status, ConnectionState::Disconnected);
        assert!(s.phone_number_id.is_none());
    }
}
