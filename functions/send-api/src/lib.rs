//! The send API, the dashboard's HTTP API under `/v1/`: its routes, the Bearer-token extractor
//! every route but the OpenAPI document goes through, its OpenAPI description, and the one place
//! its errors become HTTP statuses.

pub mod whatsapp;

use std::sync::Arc;

use axum::{
    Router,
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, State},
    http::{HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;
use shared::conversations::store::StoreError;
use shared::dashboard::ai_settings::{self, AiConfigStore, AiSettings, ProviderModel, Providers};
use shared::dashboard::auth::{AuthError, Authenticator};
use shared::dashboard::{DashboardError, from_json};
use shared::ids::WorkspaceId;
use shared::secrets::SecretSource;
use shared::telemetry::cause_chain;
use tracing::Instrument;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// What every request needs: the token verifier and the store.
pub struct SendApi<S, D> {
    pub auth: Authenticator<S>,
    pub store: D,
    pub onboarding: whatsapp::Onboarding<S>,
}

/// The API as an axum router, served by `lambda_http::run` in Lambda and usable in-process.
pub fn router<S: SecretSource, D: AiConfigStore + whatsapp::WhatsAppStore>(
    api: Arc<SendApi<S, D>>,
) -> Router {
    Router::new()
        .route("/v1/openapi.json", get(openapi_document))
        .route(
            "/v1/ai-config",
            get(get_ai_config::<S, D>).put(put_ai_config::<S, D>),
        )
        .merge(whatsapp::routes::<S, D>())
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
async fn get_ai_config<S: SecretSource, D: AiConfigStore>(
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
async fn put_ai_config<S: SecretSource, D: AiConfigStore>(
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
    ([(header::CONTENT_TYPE, "application/json")], openapi_json()).into_response()
}

// ----- OpenAPI ----------------------------------------------------------------------------------

#[derive(OpenApi)]
#[openapi(
    info(title = "send-api", description = "The dashboard's API: every route but this document needs `Authorization: Bearer <JWT>`, and reads or writes only the token's workspace."),
    paths(get_ai_config, put_ai_config, openapi_document),
    components(schemas(AiSettings, Providers, ProviderModel, ErrorBody, ErrorDetail, ErrorDetails)),
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
    doc
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

impl<S: SecretSource, D: AiConfigStore> FromRequestParts<Arc<SendApi<S, D>>> for Caller {
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
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| DashboardError::invalid("body", e.body_text()))?;
        Ok(Self(from_json(&bytes)?))
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
    #[error("no such route")]
    NoRoute,
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error(transparent)]
    Platform(#[from] shared::onboarding::PlatformError),
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
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message) = self.status();
        if status.is_server_error() {
            tracing::error!(error.cause_chain = %cause_chain(&self), status = status.as_u16(), "request failed");
        } else {
            tracing::warn!(error.cause_chain = %cause_chain(&self), status = status.as_u16(), "request refused");
        }
        let details = match &self {
            Self::Dashboard(DashboardError::Validation { field, .. }) => Some(ErrorDetails {
                field: field.clone(),
            }),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                details,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
