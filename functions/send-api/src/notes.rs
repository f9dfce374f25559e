//! Notes on a contact, and quick replies.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use shared::dashboard::inbox::PageParams;
use shared::dashboard::notes::{self, NewNote, Note, NotePage};
use shared::dashboard::quick_replies::{self, QuickReply, QuickReplyInput, QuickReplyPage};
use shared::secrets::SecretSource;

use crate::inbox::Query;
use crate::{ApiError, ApiStore, Caller, ErrorBody, Json, Path, SendApi};

/// Writes a note on a contact.
#[utoipa::path(post, path = "/v1/contacts/{id}/notes", tag = "contacts", security(("bearer" = [])),
    params(("id" = String, Path, description = "The contact's WhatsApp id")),
    request_body = NewNote,
    responses(
        (status = 201, description = "The note as stored", body = Note),
        (status = 400, description = "A field is invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such contact in this workspace", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn add_note<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
    Json(note): Json<NewNote>,
) -> Result<(StatusCode, axum::Json<Note>), ApiError> {
    let note = notes::add(&api.store, &workspace, &id, note).await?;
    Ok((StatusCode::CREATED, axum::Json(note)))
}

/// A contact's notes, newest first.
#[utoipa::path(get, path = "/v1/contacts/{id}/notes", tag = "contacts", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The contact's WhatsApp id"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 25)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of notes, newest first", body = NotePage),
        (status = 400, description = "A parameter is invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such contact in this workspace", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn list_notes<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<axum::Json<NotePage>, ApiError> {
    Ok(axum::Json(
        notes::list(&api.store, &workspace, &id, params.limit, params.cursor).await?,
    ))
}

/// The workspace's quick replies, oldest first.
#[utoipa::path(get, path = "/v1/quick-replies", tag = "quick-replies", security(("bearer" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 25)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of quick replies, oldest first (a workspace keeps at most 500)", body = QuickReplyPage),
        (status = 400, description = "A parameter is invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn list_quick_replies<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Query(params): Query<PageParams>,
) -> Result<axum::Json<QuickReplyPage>, ApiError> {
    Ok(axum::Json(
        quick_replies::list(&api.store, &workspace, params.limit, params.cursor).await?,
    ))
}

/// Creates a quick reply.
#[utoipa::path(post, path = "/v1/quick-replies", tag = "quick-replies", security(("bearer" = [])),
    request_body = QuickReplyInput,
    responses(
        (status = 201, description = "The quick reply as stored", body = QuickReply),
        (status = 400, description = "A field is invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 409, description = "Another quick reply has this shortcut, or the workspace has 500 already", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn create_quick_reply<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Json(input): Json<QuickReplyInput>,
) -> Result<(StatusCode, axum::Json<QuickReply>), ApiError> {
    let reply = quick_replies::create(&api.store, &workspace, input).await?;
    Ok((StatusCode::CREATED, axum::Json(reply)))
}

/// One quick reply.
#[utoipa::path(get, path = "/v1/quick-replies/{id}", tag = "quick-replies", security(("bearer" = [])),
    params(("id" = String, Path, description = "The quick reply id")),
    responses(
        (status = 200, description = "The quick reply", body = QuickReply),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such quick reply in this workspace", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn get_quick_reply<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<QuickReply>, ApiError> {
    Ok(axum::Json(
        quick_replies::get(&api.store, &workspace, &id).await?,
    ))
}

/// Replaces a quick reply's title, text and shortcut.
#[utoipa::path(put, path = "/v1/quick-replies/{id}", tag = "quick-replies", security(("bearer" = [])),
    params(("id" = String, Path, description = "The quick reply id")),
    request_body = QuickReplyInput,
    responses(
        (status = 200, description = "The quick reply as stored", body = QuickReply),
        (status = 400, description = "A field is invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such quick reply in this workspace", body = ErrorBody),
        (status = 409, description = "Another quick reply has this shortcut", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn replace_quick_reply<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
    Json(input): Json<QuickReplyInput>,
) -> Result<axum::Json<QuickReply>, ApiError> {
    Ok(axum::Json(
        quick_replies::replace(&api.store, &workspace, &id, input).await?,
    ))
}

/// Deletes a quick reply (its shortcut becomes free).
#[utoipa::path(delete, path = "/v1/quick-replies/{id}", tag = "quick-replies", security(("bearer" = [])),
    params(("id" = String, Path, description = "The quick reply id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such quick reply in this workspace", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn delete_quick_reply<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    quick_replies::delete(&api.store, &workspace, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
