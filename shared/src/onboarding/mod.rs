//! WhatsApp onboarding: how a business connects its number to a workspace. Through Kapso's
//! hosted setup link (`setup_links`: a Kapso customer per workspace, a link recorded with its
//! expiry; `callbacks`: the browser comes back and the connection is verified and activated),
//! and what the dashboard sees of it (`status`). Or by hand with the workspace's own Meta
//! credentials (`manual`, the token sealed at rest by `sealed`). The ports are here; the DynamoDB adapter is
//! `adapters::dynamo::onboarding`, the Kapso platform client `adapters::kapso_platform`.

pub mod callbacks;
pub mod manual;
pub mod project_events;
pub mod sealed;
pub mod settings;
pub mod setup_links;
pub mod status;

use std::future::Future;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::conversations::model::Provider;
use crate::conversations::store::{StoreError, StoreResult};
use crate::ids::{KapsoCustomerId, PhoneNumberId, SetupLinkId, WorkspaceId};

/// How a number shares WhatsApp: alongside the WhatsApp Business app, or API only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionType {
    Coexistence,
    Dedicated,
}

impl ConnectionType {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "coexistence" => Some(Self::Coexistence),
            "dedicated" => Some(Self::Dedicated),
            _ => None,
        }
    }
}

/// A workspace's onboarding record: everything the connection status is derived from. Each
/// event of the flow sets its own fields; [`status::ConnectionStatus::derive`] reads them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Connection {
    /// The workspace's Kapso customer, created once and reused by every later setup link.
    pub kapso_customer_id: Option<KapsoCustomerId>,
    /// The connected number, set when a connection is activated.
    pub active: Option<ActiveNumber>,
    /// When the latest setup link was created, and when it expires.
    pub link_created_at: Option<OffsetDateTime>,
    pub link_expires_at: Option<OffsetDateTime>,
    /// The latest failure reported by the setup flow.
    pub error: Option<RecordedError>,
    /// When the number was disconnected.
    pub disconnected_at: Option<OffsetDateTime>,
}

/// The number a workspace is connected with.
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveNumber {
    pub phone_number_id: PhoneNumberId,
    pub provider: Provider,
    pub display_phone_number: Option<String>,
    pub connection_type: Option<ConnectionType>,
    pub connected_at: OffsetDateTime,
}

/// A failure of the setup flow, as Kapso reported it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedError {
    pub code: String,
    pub message: Option<String>,
    pub at: OffsetDateTime,
}

/// A setup link we created: the callback trusts nothing but this record.
#[derive(Debug, Clone, PartialEq)]
pub struct SetupLinkRecord {
    pub id: SetupLinkId,
    pub workspace_id: WorkspaceId,
    pub customer_id: KapsoCustomerId,
    pub expires_at: OffsetDateTime,
    pub created_at: OffsetDateTime,
    /// The number the link connected, once it has been used.
    pub used_by: Option<PhoneNumberId>,
}

/// A number to connect to a workspace: what the success callback and the project webhook both
/// hand to [`OnboardingStore::activate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Activation {
    pub workspace_id: WorkspaceId,
    pub number: ActiveNumber,
    /// The setup link this activation consumes, if it came through one.
    pub setup_link: Option<SetupLinkId>,
}

/// Why an activation was not written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActivationError {
    /// The number is connected to another workspace, or the link was used for another number.
    #[error("the number or the setup link is already taken")]
    Taken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Port: the onboarding items of the table.
pub trait OnboardingStore: Send + Sync + 'static {
    /// The workspace's onboarding record (the default when it never started onboarding).
    fn connection(
        &self,
        workspace_id: &WorkspaceId,
    ) -> impl Future<Output = StoreResult<Connection>> + Send;
    /// Records `customer` as the workspace's Kapso customer unless it already has one, and
    /// returns the one it has from then on.
    fn claim_customer(
        &self,
        workspace_id: &WorkspaceId,
        customer: &KapsoCustomerId,
    ) -> impl Future<Output = StoreResult<KapsoCustomerId>> + Send;
    /// The workspace a Kapso customer belongs to.
    fn customer_workspace(
        &self,
        customer: &KapsoCustomerId,
    ) -> impl Future<Output = StoreResult<Option<WorkspaceId>>> + Send;
    /// Records a setup link, and on the workspace when it was created and expires.
    fn record_setup_link(
        &self,
        link: &SetupLinkRecord,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    fn setup_link(
        &self,
        id: &SetupLinkId,
    ) -> impl Future<Output = StoreResult<Option<SetupLinkRecord>>> + Send;
    /// In one transaction: routes the number to the workspace (the processor's `INTEGRATION`
    /// item), sets it on the workspace's record (clearing any error), and consumes the setup
    /// link. Refused, with nothing written, when the number belongs to another workspace or
    /// the link was used for another number.
    fn activate(
        &self,
        activation: &Activation,
    ) -> impl Future<Output = Result<(), ActivationError>> + Send;
    /// Records a failure of the setup flow on the workspace.
    fn record_error(
        &self,
        workspace_id: &WorkspaceId,
        error: &RecordedError,
    ) -> impl Future<Output = StoreResult<()>> + Send;
}

/// Why the Kapso platform API did not do what was asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlatformError {
    /// No `kapso_api_key` in the app secret.
    #[error("the Kapso platform API key is not configured")]
    NotConfigured,
    #[error("the Kapso platform API could not be reached: {0}")]
    Unavailable(String),
    /// Kapso answered, but refused or with something we cannot read.
    #[error("the Kapso platform API refused the request ({status}): {message}")]
    Refused { status: u16, message: String },
}

/// What a setup link is created with (Kapso's `setup_link` object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetupLinkSpec {
    pub success_redirect_url: String,
    pub failure_redirect_url: String,
    pub allowed_connection_types: Vec<ConnectionType>,
    pub provision_phone_number: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub phone_number_country_isos: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number_area_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theme_config: Option<serde_json::Value>,
}

/// A setup link as Kapso created it.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatedSetupLink {
    pub id: SetupLinkId,
    pub url: String,
    pub expires_at: OffsetDateTime,
}

/// A number as the Kapso platform knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PlatformNumber {
    pub customer_id: Option<KapsoCustomerId>,
    pub display_phone_number: Option<String>,
    pub is_coexistence: Option<bool>,
}

/// Port: Kapso's platform API (customers, setup links, phone numbers).
pub trait KapsoPlatform: Send + Sync + 'static {
    fn create_customer(
        &self,
        name: &str,
        external_id: &WorkspaceId,
    ) -> impl Future<Output = Result<KapsoCustomerId, PlatformError>> + Send;
    fn create_setup_link(
        &self,
        customer: &KapsoCustomerId,
        spec: &SetupLinkSpec,
    ) -> impl Future<Output = Result<CreatedSetupLink, PlatformError>> + Send;
    /// The number, or `None` when Kapso does not know it.
    fn phone_number(
        &self,
        phone_number_id: &PhoneNumberId,
    ) -> impl Future<Output = Result<Option<PlatformNumber>, PlatformError>> + Send;
}
