//! The workspace settings routes besides the AI's: `/v1/templates/transactional`, the templates
//! an opted-out contact may still receive (README, "Opt-out").

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use shared::dashboard::settings::{self, TransactionalTemplates};
use shared::secrets::SecretSource;
use utoipa::OpenApi;

use crate::{ApiError, ApiStore, Caller, ErrorBody, Json, SendApi};

/// The settings routes' part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(get_transactional_templates, put_transactional_templates),
    components(schemas(TransactionalTemplates))
)]
pub struct SettingsDoc;

/// The settings routes, merged into the API's router.
pub(crate) fn routes<S: SecretSource, D: ApiStore>() -> axum::Router<Arc<SendApi<S, D>>> {
    axum::Router::new().route(
        "/v1/templates/transactional",
        get(get_transactional_templates::<S, D>).put(put_transactional_templates::<S, D>),
    )
}

/// The templates the caller's workspace marks as transactional (none until it marks some).
#[utoipa::path(get, path = "/v1/templates/transactional", tag = "templates", security(("bearer" = [])),
    responses(
        (status = 200, description = "The workspace's transactional templates", body = TransactionalTemplates),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The store or the identity provider is unavailable; retry", body = ErrorBody),
    ))]
pub(crate) async fn get_transactional_templates<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
) -> Result<axum::Json<TransactionalTemplates>, ApiError> {
    Ok(axum::Json(settings::get(&api.store, &workspace).await?))
}

/// Replaces the templates the caller's workspace marks as transactional: these, and only
/// these, may still be sent to a contact who opted out. The next send reads the new list.
#[utoipa::path(put, path = "/v1/templates/transactional", tag = "templates", security(("bearer" = [])),
    request_body = TransactionalTemplates,
    responses(
        (status = 200, description = "The list as stored (duplicates dropped)", body = TransactionalTemplates),
        (status = 400, description = "A name is not a template name, or there are more than 100; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The store or the identity provider is unavailable; retry", body = ErrorBody),
    ))]
pub(crate) async fn put_transactional_templates<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Json(input): Json<TransactionalTemplates>,
) -> Result<axum::Json<TransactionalTemplates>, ApiError> {
    Ok(axum::Json(
        settings::put(&api.store, &workspace, input).await?,
    ))
}
