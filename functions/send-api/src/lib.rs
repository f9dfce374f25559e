//! The send API, the dashboard's HTTP API under `/v1/`: its routes, the Bearer-token extractor
//! every route but the OpenAPI document goes through, its OpenAPI description, and the one place
//! its errors become HTTP statuses.

mod contacts;
mod inbox;
mod notes;
mod reminders;
mod settings;
pub mod whatsapp;

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Serialize;
use shared::conversations::store::{ContactStore, StoreError};
use shared::dashboard::ai_settings::{self, AiConfigStore, AiSettings, ProviderModel, Providers};
use shared::dashboard::auth::{AuthConfig, AuthError, Authenticator};
use shared::dashboard::contacts::{Contact, ContactDirectory, ContactPage, ContactPatch};
use shared::dashboard::inbox::{
    AiReply, Conversation, ConversationPage, ConversationPatch, ConversationStatus, InboxStore,
    Message, MessageError, MessagePage, StatusChange,
};
use shared::dashboard::notes::{NewNote, Note, NotePage, NoteStore};
use shared::dashboard::quick_replies::{
    QuickReply, QuickReplyInput, QuickReplyPage, QuickReplyStore,
};
use shared::dashboard::send::{IdempotencyKey, SendError, SendStore, UpstreamFailure};
use shared::dashboard::{DashboardError, from_json};
use shared::ids::WorkspaceId;
use shared::onboarding::manual::ManualIntegrationError;
use shared::secrets::{SecretSource, SecretsCache};
use shared::telemetry::cause_chain;
use shared::whatsapp::WhatsAppClient;
use tracing::Instrument;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

mod messages;

/// What every request needs: the token verifier, the store, and for sending the WhatsApp
/// client and the app's credentials (the same cache the verifier reads).
pub struct SendApi<S, D> {
    pub auth: Authenticator<S>,
    pub store: D,
    pub whatsapp: WhatsAppClient,
    pub secrets: Arc<SecretsCache<S>>,
    pub onboarding: whatsapp::Onboarding<S>,
}

impl<S: SecretSource, D> SendApi<S, D> {
    /// Builds the API; `secrets` serves both the token verifier and the WhatsApp credentials.
    pub fn new(
        auth: AuthConfig,
        secrets: Arc<SecretsCache<S>>,
        whatsapp: WhatsAppClient,
        store: D,
        onboarding: whatsapp::Onboarding<S>,
    ) -> Self {
        Self {
            auth: Authenticator::new(auth, Arc::clone(&secrets)),
            store,
            whatsapp,
            secrets,
            onboarding,
        }
    }
}

/// Every store port the routes use; the DynamoDB adapter implements them all.
pub trait ApiStore:
    AiConfigStore
    + SendStore
    + InboxStore
    + ContactStore
    + ContactDirectory
    + NoteStore
    + QuickReplyStore
    + whatsapp::WhatsAppStore
    + shared::reminders::store::ReminderStore
    + shared::dashboard::settings::TemplateSettingsStore
{
}

impl<T> ApiStore for T where
    T: AiConfigStore
        + SendStore
        + InboxStore
        + ContactStore
        + ContactDirectory
        + NoteStore
        + QuickReplyStore
        + whatsapp::WhatsAppStore
        + shared::reminders::store::ReminderStore
        + shared::dashboard::settings::TemplateSettingsStore
{
}

/// The API as an axum router, served by `lambda_http::run` in Lambda and usable in-process.
pub fn router<S: SecretSource, D: ApiStore>(api: Arc<SendApi<S, D>>) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi_document))
        .route("/v1/messages", post(messages::send::<S, D>))
        .route(
            "/v1/ai-config",
            get(get_ai_config::<S, D>).put(put_ai_config::<S, D>),
        )
        .route("/v1/conversations", get(inbox::list_conversations::<S, D>))
        .route(
            "/v1/conversations/{id}",
            get(inbox::get_conversation::<S, D>).patch(inbox::patch_conversation::<S, D>),
        )
        .route(
            "/v1/conversations/{id}/messages",
            get(inbox::list_messages::<S, D>),
        )
        .route("/v1/contacts", get(contacts::list_contacts::<S, D>))
        .route(
            "/v1/contacts/{id}",
            get(contacts::get_contact::<S, D>).patch(contacts::patch_contact::<S, D>),
        )
        .route(
            "/v1/contacts/{id}/notes",
            get(notes::list_notes::<S, D>).post(notes::add_note::<S, D>),
        )
        .route(
            "/v1/quick-replies",
            get(notes::list_quick_replies::<S, D>).post(notes::create_quick_reply::<S, D>),
        )
        .route(
            "/v1/quick-replies/{id}",
            get(notes::get_quick_reply::<S, D>)
                .put(notes::replace_quick_reply::<S, D>)
                .delete(notes::delete_quick_reply::<S, D>),
        )
        .merge(whatsapp::routes::<S, D>())
        .merge(reminders::routes::<S, D>())
        .merge(settings::routes::<S, D>())
        .fallback(|| async { ApiError::NoRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(middleware::from_fn(request_span))
        .with_state(api)
}

// ----- routes ---------------------------------------------------------------------------------

/// The caller's AI settings (the defaults, AI off, until they are first saved).
#[utoipa::path(get, path = "/v1/ai-config", tag = "ai", security(("bearer" = [])),
    responses(
        (status = 200, description = "The workspace's AI settings", body = AiSettings),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The store or the identity provider is unavailable; retry", body = ErrorBody),
    ))]
async fn get_ai_config<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
) -> Result<axum::Json<AiSettings>, ApiError> {
    Ok(axum::Json(ai_settings::get(&api.store, &workspace).await?))
}

/// Replaces the caller's AI settings. The message processor answers with them within 30
/// seconds (it caches a workspace's settings that long).
#[utoipa::path(put, path = "/v1/ai-config", tag = "ai", security(("bearer" = [])),
    request_body = AiSettings,
    responses(
        (status = 200, description = "The settings as stored", body = AiSettings),
        (status = 400, description = "A field is missing or out of range; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The store or the identity provider is unavailable; retry", body = ErrorBody),
    ))]
async fn put_ai_config<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Json(settings): Json<AiSettings>,
) -> Result<axum::Json<AiSettings>, ApiError> {
    Ok(axum::Json(
        ai_settings::put(&api.store, &workspace, settings).await?,
    ))
}

/// This document. The only route that needs no token.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta", security(()),
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
async fn openapi_document() -> Response {
    // The committed copy, which `spec::` tests keep equal to [`openapi_json`]: the function
    // does not carry the code that generates it (a smaller package, nothing built per request).
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../../docs/openapi.json"),
    )
        .into_response()
}

// ----- OpenAPI ----------------------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(title = "send-api", description = "The dashboard's API: every route but this document needs `Authorization: Bearer <JWT>`, and reads or writes only the token's workspace."),
    paths(
        get_ai_config, put_ai_config, messages::send, openapi_document,
        inbox::list_conversations, inbox::get_conversation, inbox::list_messages,
        inbox::patch_conversation,
        contacts::list_contacts, contacts::get_contact, contacts::patch_contact,
        notes::add_note, notes::list_notes, notes::list_quick_replies, notes::create_quick_reply,
        notes::get_quick_reply, notes::replace_quick_reply, notes::delete_quick_reply,
    ),
    components(schemas(
        AiSettings, Providers, ProviderModel, ErrorBody, ErrorDetail, ErrorDetails,
        Conversation, ConversationPage, ConversationPatch, ConversationStatus, Message,
        MessagePage, MessageError, StatusChange, AiReply, Contact, ContactPage, ContactPatch,
        Note, NewNote, NotePage, QuickReply, QuickReplyInput, QuickReplyPage,
    )),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
    }
}

/// The OpenAPI document, generated from the code; `docs/openapi.json` is a copy of it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(whatsapp::WhatsAppDoc::openapi());
    doc.merge(reminders::RemindersDoc::openapi());
    doc.merge(settings::SettingsDoc::openapi());
    document_refusals(&mut doc);
    doc
}

/// The refusals every route may answer before its handler runs, documented on each operation
/// (each route's own list names its handler's): 415 for a body that is not JSON, 400 for a
/// path parameter that is not UTF-8.
fn document_refusals(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let refusal = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build(),
        )
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
        ];
        for operation in operations.into_iter().flatten() {
            let responses = &mut operation.responses.responses;
            if operation.request_body.is_some() {
                responses.entry("415".into()).or_insert_with(|| {
                    refusal("The body is declared as something other than JSON (`Content-Type`)")
                });
            }
            let path_parameter =
                operation.parameters.iter().flatten().any(
                    |p| matches!(p, RefOr::T(p) if matches!(p.parameter_in, ParameterIn::Path)),
                );
            if path_parameter {
                responses.entry("400".into()).or_insert_with(|| {
                    refusal("A path parameter is not valid UTF-8; `details.field` names it")
                });
            }
        }
    }
}

/// The OpenAPI document as served and as committed, with a closing newline.
pub fn openapi_json() -> String {
    let mut json = openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| String::from("{}"));
    json.push('\n');
    json
}

// ----- extractors -------------------------------------------------------------------------------

/// The verified caller's workspace. A handler that takes it cannot run unauthenticated.
pub struct Caller(pub WorkspaceId);

impl<S: SecretSource, D: ApiStore> FromRequestParts<Arc<SendApi<S, D>>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        api: &Arc<SendApi<S, D>>,
    ) -> Result<Self, ApiError> {
        let authorization = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let workspace = api.auth.authenticate(authorization).await?;
        tracing::Span::current().record("workspace_id", workspace.as_str());
        Ok(Self(workspace))
    }
}

/// A JSON body whose errors name the field (axum's own `Json` answers in its own shape).
pub struct Json<T>(pub T);

impl<T: serde::de::DeserializeOwned, St: Send + Sync> FromRequest<St> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &St) -> Result<Self, ApiError> {
        // A body without a Content-Type is read as JSON; one declared as anything else is not.
        let declared_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().is_ok_and(is_json));
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| DashboardError::invalid("body", e.body_text()))?;
        // No body at all is a missing body (400, below), whatever the headers say.
        if declared_json == Some(false) && !bytes.is_empty() {
            return Err(ApiError::NotJson);
        }
        Ok(Self(from_json(&bytes)?))
    }
}

/// `application/json` or an `application/…+json` type, with or without parameters.
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The optional `Idempotency-Key` header, validated: a malformed key is a 400 naming it.
pub struct Idempotency(pub Option<IdempotencyKey>);

impl<St: Send + Sync> FromRequestParts<St> for Idempotency {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get("idempotency-key")
            .map(|value| IdempotencyKey::parse(value.to_str().unwrap_or_default()))
            .transpose()?;
        Ok(Self(key))
    }
}

/// A path parameter whose refusal answers in the error shape (axum's own `Path` answers in
/// plain text), naming the parameter as the route and the document do (`id`, `phoneNumberId`).
pub struct Path<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, St: Send + Sync> FromRequestParts<St> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, ApiError> {
        use axum::extract::{path::ErrorKind, rejection::PathRejection};
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let field = match e.kind() {
                    ErrorKind::InvalidUtf8InPathParam { key }
                    | ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::DeserializeError { key, .. } => key.clone(),
                    _ => "path".to_owned(),
                };
                Err(DashboardError::invalid(field, e.body_text()).into())
            }
            Err(e) => Err(DashboardError::invalid("path", e.body_text()).into()),
        }
    }
}

/// One span per request, so every line it logs carries the Lambda request id.
async fn request_span(request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .get::<lambda_http::Context>()
        .map(|c| c.request_id.clone())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        request_id,
        method = %request.method(),
        path = request.uri().path(),
        workspace_id = tracing::field::Empty,
    );
    next.run(request).instrument(span).await
}

// ----- errors -----------------------------------------------------------------------------------

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Dashboard(#[from] DashboardError),
    #[error(transparent)]
    Send(SendError),
    #[error("no such route")]
    NoRoute,
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error("the body must be JSON, sent with `Content-Type: application/json`")]
    NotJson,
    #[error(transparent)]
    Platform(#[from] shared::onboarding::PlatformError),
    #[error(transparent)]
    Integration(ManualIntegrationError),
}

impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Dashboard(e) => Self::Dashboard(e),
            e => Self::Send(e),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::Dashboard(e.into())
    }
}

/// The error body every failure has: `{ "error": { "code", "message", "details"? } }`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `unauthenticated`, `validation_failed`, `not_found`, …
    pub code: &'static str,
    /// For people; never internal detail.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorDetails>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetails {
    /// The request field that failed validation, as a JSON path (e.g. `providers.grok.model`).
    pub field: String,
}

impl ApiError {
    /// The one mapping from errors to HTTP: status, code, and what the client may be told.
    fn status(&self) -> (StatusCode, &'static str, String) {
        use DashboardError as D;
        use shared::onboarding::PlatformError;
        match self {
            Self::Dashboard(D::Unauthenticated(AuthError::KeysUnavailable(_))) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "auth_unavailable",
                "the token cannot be verified right now; retry".into(),
            ),
            Self::Dashboard(D::Unauthenticated(e)) => {
                (StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
            }
            Self::Dashboard(e @ D::Validation { .. }) => {
                (StatusCode::BAD_REQUEST, "validation_failed", e.to_string())
            }
            Self::Dashboard(D::NotFound) | Self::NoRoute => {
                (StatusCode::NOT_FOUND, "not_found", self.to_string())
            }
            Self::Dashboard(e @ D::Conflict(_)) => {
                (StatusCode::CONFLICT, "conflict", e.to_string())
            }
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                self.to_string(),
            ),
            Self::Dashboard(D::Store(StoreError::Conflict(_))) => (
                StatusCode::CONFLICT,
                "conflict",
                "a concurrent change came first; read and retry".into(),
            ),
            Self::Dashboard(D::Store(StoreError::Unavailable(_))) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the store is unavailable; retry".into(),
            ),
            Self::Platform(PlatformError::Refused { .. }) => (
                StatusCode::BAD_GATEWAY,
                "upstream_refused",
                "Kapso refused the request".into(),
            ),
            Self::Platform(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_unavailable",
                "Kapso is unavailable or not configured; retry".into(),
            ),
            Self::Dashboard(D::Store(StoreError::Corrupt(_))) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "something went wrong on our side".into(),
            ),
            Self::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                self.to_string(),
            ),
            Self::Send(e) => send_status(e),
            Self::Integration(e) => integration_status(e),
        }
    }

    /// The request field a validation failure names.
    fn field(&self) -> Option<String> {
        match self {
            Self::Dashboard(DashboardError::Validation { field, .. }) => Some(field.clone()),
            _ => None,
        }
    }
}

/// The statuses of the manual integration's own failures (the typed codes).
fn integration_status(e: &ManualIntegrationError) -> (StatusCode, &'static str, String) {
    use ManualIntegrationError as E;
    let (status, code) = match e {
        E::InvalidCredentials(_) => (StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS"),
        E::InvalidPhoneNumber(_) => (StatusCode::BAD_REQUEST, "INVALID_PHONE_NUMBER"),
        E::ConnectionFailed(_) => (StatusCode::BAD_GATEWAY, "CONNECTION_FAILED"),
        E::Taken => (StatusCode::CONFLICT, "number_taken"),
        E::EncryptionUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        // Turned into `ApiError::Dashboard` by `From<ManualIntegrationError>`.
        E::Invalid { .. } | E::NotFound | E::Store(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
    };
    // The variants' own text: never Meta's answer, never the token.
    (status, code, e.to_string())
}

/// The statuses of a send (`POST /v1/messages`); see README, "Sending a message".
fn send_status(e: &SendError) -> (StatusCode, &'static str, String) {
    use SendError as E;
    use UpstreamFailure as U;
    let (status, code) = match e {
        E::OutsideWindow => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "outside_customer_service_window",
        ),
        E::OptedOut => (StatusCode::CONFLICT, "contact_opted_out"),
        E::NumberUnavailable(_) => (StatusCode::CONFLICT, "whatsapp_number_unavailable"),
        E::IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
        E::IdempotencyInFlight => (StatusCode::CONFLICT, "idempotency_key_in_flight"),
        E::SecretsUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        E::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "whatsapp_throttled"),
        E::Upstream(U::TokenInvalid) => (StatusCode::BAD_GATEWAY, "whatsapp_token_invalid"),
        E::Upstream(U::Rejected { .. }) => (StatusCode::BAD_GATEWAY, "whatsapp_rejected"),
        E::Upstream(U::Unreachable) => (StatusCode::BAD_GATEWAY, "whatsapp_unreachable"),
        E::Upstream(U::OutcomeUnknown) => (StatusCode::BAD_GATEWAY, "whatsapp_outcome_unknown"),
        // Unwrapped into `ApiError::Dashboard` by `From<SendError>`.
        E::Dashboard(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    (status, code, e.to_string())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.status();
        if status.is_server_error() {
            tracing::error!(error.cause_chain = %cause_chain(&self), status = status.as_u16(), "request failed");
        } else {
            tracing::warn!(error.cause_chain = %cause_chain(&self), status = status.as_u16(), "request refused");
        }
        let details = self.field().map(|field| ErrorDetails { field });
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                details,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        // Only the caller's own token is a Bearer challenge (not Meta refusing a workspace's).
        if status == StatusCode::UNAUTHORIZED && matches!(self, Self::Dashboard(_)) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if let Self::Send(SendError::Throttled { retry_after }) = &self {
            // WhatsApp's own delay when it gave one; a minute otherwise (its rate windows).
            let seconds = retry_after.map_or(60, |d| d.as_secs().max(1));
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
