//! The reminder routes: `/v1/reminders` (create, list) and `/v1/reminders/{id}` (read,
//! cancel). The scheduled `reminders` function sends them; see README, "Reminders".

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use shared::dashboard::send::SendError;
use shared::reminders::api::{
    self, CreateReminderRequest, EmailChannel, ReminderChannelBody, ReminderError, ReminderList,
    ReminderListParams, ReminderView, TemplateBody, TemplateChannel, TextChannel,
};
use shared::reminders::model::ReminderStatus;
use shared::secrets::SecretSource;
use utoipa::OpenApi;

use crate::inbox::Query;
use crate::{ApiError, ApiStore, Caller, ErrorBody, Idempotency, Json, Path, SendApi};

/// The reminder routes' part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    paths(create_reminder, list_reminders, get_reminder, cancel_reminder),
    components(schemas(
        CreateReminderRequest,
        ReminderView,
        ReminderList,
        ReminderChannelBody,
        TemplateChannel,
        TextChannel,
        EmailChannel,
        TemplateBody,
        ReminderStatus,
    ))
)]
pub struct RemindersDoc;

/// The reminder routes, merged into the API's router.
pub(crate) fn routes<S: SecretSource, D: ApiStore>() -> axum::Router<Arc<SendApi<S, D>>> {
    axum::Router::new()
        .route(
            "/v1/reminders",
            get(list_reminders::<S, D>).post(create_reminder::<S, D>),
        )
        .route(
            "/v1/reminders/{id}",
            get(get_reminder::<S, D>).delete(cancel_reminder::<S, D>),
        )
}

impl From<ReminderError> for ApiError {
    fn from(e: ReminderError) -> Self {
        match e {
            ReminderError::Dashboard(e) => Self::Dashboard(e),
            // The same answer as a reused key on `POST /v1/messages`.
            ReminderError::IdempotencyKeyReused => Self::Send(SendError::IdempotencyKeyReused),
        }
    }
}

/// Schedules a reminder for a contact of the workspace. The `reminders` function sends it at
/// its first run at or after `dueAt`, exactly once. With an `Idempotency-Key`, a retry answers
/// with the reminder the first request created and creates nothing.
#[utoipa::path(post, path = "/v1/reminders", tag = "reminders", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes retries safe: the same key and body answer with the reminder the first request created, for 24 hours. 1 to 255 visible ASCII characters, no `#`.")),
    request_body = CreateReminderRequest,
    responses(
        (status = 201, description = "The reminder, pending (or as it stands now, for a retry with the same `Idempotency-Key`)", body = ReminderView),
        (status = 400, description = "A field is missing or invalid, the contact or the number is not the workspace's, or `dueAt` is in the past without `sendNow`; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the key came with another body", body = ErrorBody),
        (status = 503, description = "The store or the identity provider is unavailable; retry", body = ErrorBody),
    ))]
pub(crate) async fn create_reminder<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Idempotency(key): Idempotency,
    Json(request): Json<CreateReminderRequest>,
) -> Result<(StatusCode, axum::Json<ReminderView>), ApiError> {
    let created = api::create(&api.store, &workspace, key.as_ref(), request).await?;
    Ok((StatusCode::CREATED, axum::Json(created.reminder)))
}

/// The workspace's reminders by due time, oldest first.
#[utoipa::path(get, path = "/v1/reminders", tag = "reminders", security(("bearer" = [])),
    params(
        ("status" = Option<String>, Query, description = "`pending`, `sending`, `sent`, `failed` or `cancelled`"),
        ("contactId" = Option<String>, Query, description = "Only this contact's"),
        ("dueFrom" = Option<String>, Query, description = "RFC 3339: due at or after this time"),
        ("dueTo" = Option<String>, Query, description = "RFC 3339: due before this time"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 25)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of reminders", body = ReminderList),
        (status = 400, description = "A parameter is invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub(crate) async fn list_reminders<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Query(params): Query<ReminderListParams>,
) -> Result<axum::Json<ReminderList>, ApiError> {
    Ok(axum::Json(api::list(&api.store, &workspace, params).await?))
}

/// One reminder.
#[utoipa::path(get, path = "/v1/reminders/{id}", tag = "reminders", security(("bearer" = [])),
    params(("id" = String, Path, description = "The reminder id")),
    responses(
        (status = 200, description = "The reminder", body = ReminderView),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such reminder in this workspace", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub(crate) async fn get_reminder<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<ReminderView>, ApiError> {
    Ok(axum::Json(api::get(&api.store, &workspace, &id).await?))
}

/// Cancels a pending reminder: no run sends it afterwards.
#[utoipa::path(delete, path = "/v1/reminders/{id}", tag = "reminders", security(("bearer" = [])),
    params(("id" = String, Path, description = "The reminder id")),
    responses(
        (status = 200, description = "The reminder, cancelled", body = ReminderView),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such reminder in this workspace", body = ErrorBody),
        (status = 409, description = "The reminder is not pending (being sent, sent, failed or cancelled already)", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub(crate) async fn cancel_reminder<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<ReminderView>, ApiError> {
    Ok(axum::Json(api::cancel(&api.store, &workspace, &id).await?))
}
