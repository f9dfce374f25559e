//! The WhatsApp connection routes under `/v1/whatsapp/`: creating a Kapso setup link, connecting
//! and disconnecting a number by hand with Meta credentials, and the workspace's connection
//! status. The use cases are `shared::onboarding`.

use std::sync::Arc;

use axum::{
    Router,
    extract::State,
    http::StatusCode,
    routing::{delete, get, post},
};
use shared::adapters::kapso_platform::KapsoPlatformClient;
use shared::conversations::store::TenantStore;
use shared::dashboard::DashboardError;
use shared::onboarding::manual::{
    self, ManualIntegration, ManualIntegrationError, ManualIntegrationRequest,
    ManualIntegrationStore,
};
use shared::onboarding::settings::SetupLinkSettings;
use shared::onboarding::setup_links::{self, SetupLinkCreated, SetupLinkError, SetupLinkRequest};
use shared::onboarding::status::{self, ConnectionErrorBody, ConnectionState, ConnectionStatus};
use shared::onboarding::{ConnectionType, OnboardingStore};
use shared::secrets::SecretSource;
use utoipa::OpenApi;

use crate::{ApiError, Caller, ErrorBody, Json, Path, SendApi};

/// What the connection routes need besides the store: the Kapso platform client and the
/// setup-link settings.
pub struct Onboarding<S> {
    pub platform: KapsoPlatformClient<S>,
    pub settings: SetupLinkSettings,
}

/// The store the connection routes read and write.
pub trait WhatsAppStore: OnboardingStore + ManualIntegrationStore + TenantStore {}
impl<T: OnboardingStore + ManualIntegrationStore + TenantStore> WhatsAppStore for T {}

pub fn routes<S: SecretSource, D: crate::ApiStore>() -> Router<Arc<SendApi<S, D>>> {
    Router::new()
        .route("/v1/whatsapp/setup-links", post(create_setup_link::<S, D>))
        .route("/v1/whatsapp/connection", get(get_connection::<S, D>))
        .route(
            "/v1/whatsapp/integrations",
            post(create_integration::<S, D>),
        )
        .route(
            "/v1/whatsapp/integrations/{phoneNumberId}",
            delete(delete_integration::<S, D>),
        )
}

/// Creates a Kapso setup link for the caller's workspace: open `setupUrl` to connect an
/// existing WhatsApp Business account or get a new number. The workspace's Kapso customer is
/// created on its first link and reused after. Kapso sends the browser back to
/// `/webhooks/kapso/success` or `/webhooks/kapso/failed`, which land on the dashboard.
#[utoipa::path(post, path = "/v1/whatsapp/setup-links", tag = "whatsapp", security(("bearer" = [])),
    request_body = SetupLinkRequest,
    responses(
        (status = 201, description = "The setup link", body = SetupLinkCreated),
        (status = 400, description = "A field is malformed; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 502, description = "Kapso refused the request", body = ErrorBody),
        (status = 503, description = "The store, Kapso or the identity provider is unavailable; retry", body = ErrorBody),
    ))]
async fn create_setup_link<S: SecretSource, D: crate::ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Json(request): Json<SetupLinkRequest>,
) -> Result<(StatusCode, axum::Json<SetupLinkCreated>), ApiError> {
    let onboarding = &api.onboarding;
    let created = setup_links::create(
        &api.store,
        &onboarding.platform,
        &onboarding.settings,
        &workspace,
        request,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(created)))
}

/// The caller's WhatsApp connection: `disconnected` (never connected, or disconnected),
/// `pending` (a setup link is out), `connected`, or `error` (the setup failed, or WhatsApp
/// refused the number's credentials; `error` says why).
#[utoipa::path(get, path = "/v1/whatsapp/connection", tag = "whatsapp", security(("bearer" = [])),
    responses(
        (status = 200, description = "The connection status", body = ConnectionStatus),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The store or the identity provider is unavailable; retry", body = ErrorBody),
    ))]
async fn get_connection<S: SecretSource, D: crate::ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
) -> Result<axum::Json<ConnectionStatus>, ApiError> {
    let status = status::get(&api.store, &workspace)
        .await
        .map_err(DashboardError::from)?;
    Ok(axum::Json(status))
}

/// Connects a number by hand with the workspace's own Meta Cloud API credentials. The token is
/// tested first (Graph `GET /{phoneNumberId}`) and stored, encrypted, only if Meta accepts it;
/// it is never returned. Posting again for the same number replaces the token and reconnects a
/// number whose token expired.
#[utoipa::path(post, path = "/v1/whatsapp/integrations", tag = "whatsapp", security(("bearer" = [])),
    request_body = ManualIntegrationRequest,
    responses(
        (status = 201, description = "Connected: the number as Meta describes it", body = ManualIntegration),
        (status = 400, description = "`validation_failed` (`details.field` names the field), or `INVALID_PHONE_NUMBER`: Meta does not know the number", body = ErrorBody),
        (status = 401, description = "`unauthenticated`, or `INVALID_CREDENTIALS`: Meta refused the access token for the number", body = ErrorBody),
        (status = 409, description = "`number_taken`: the number is connected to another workspace", body = ErrorBody),
        (status = 502, description = "`CONNECTION_FAILED`: the connection test with Meta failed; retry", body = ErrorBody),
        (status = 503, description = "The store, the identity provider or the encryption key is unavailable; nothing was stored", body = ErrorBody),
    ))]
async fn create_integration<S: SecretSource, D: crate::ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Json(request): Json<ManualIntegrationRequest>,
) -> Result<(StatusCode, axum::Json<ManualIntegration>), ApiError> {
    let connected =
        manual::connect(&api.store, &api.whatsapp, &api.secrets, &workspace, request).await?;
    Ok((StatusCode::CREATED, axum::Json(connected)))
}

/// Disconnects one of the workspace's numbers: its webhooks are dropped from then on, its
/// conversations are kept, and its stored token is deleted.
#[utoipa::path(delete, path = "/v1/whatsapp/integrations/{phoneNumberId}", tag = "whatsapp", security(("bearer" = [])),
    params(("phoneNumberId" = String, Path, description = "Meta's id of the number")),
    responses(
        (status = 204, description = "Disconnected"),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such number in the workspace", body = ErrorBody),
        (status = 503, description = "The store or the identity provider is unavailable; retry", body = ErrorBody),
    ))]
async fn delete_integration<S: SecretSource, D: crate::ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(phone_number_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    manual::disconnect(&api.store, &workspace, &phone_number_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

impl From<ManualIntegrationError> for ApiError {
    fn from(e: ManualIntegrationError) -> Self {
        use ManualIntegrationError as E;
        match e {
            E::Invalid { field, message } => DashboardError::Validation { field, message }.into(),
            E::NotFound => DashboardError::NotFound.into(),
            E::Store(e) => DashboardError::Store(e).into(),
            e => Self::Integration(e),
        }
    }
}

impl From<SetupLinkError> for ApiError {
    fn from(e: SetupLinkError) -> Self {
        match e {
            SetupLinkError::Invalid { field, message } => {
                DashboardError::Validation { field, message }.into()
            }
            SetupLinkError::Store(e) => DashboardError::Store(e).into(),
            SetupLinkError::Platform(e) => Self::Platform(e),
        }
    }
}

/// The connection routes' part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(
        create_setup_link,
        get_connection,
        create_integration,
        delete_integration
    ),
    components(schemas(
        ManualIntegrationRequest,
        ManualIntegration,
        SetupLinkRequest,
        SetupLinkCreated,
        ConnectionStatus,
        ConnectionState,
        ConnectionErrorBody,
        ConnectionType
    ))
)]
pub struct WhatsAppDoc;
