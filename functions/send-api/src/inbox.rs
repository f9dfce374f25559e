//! The inbox routes: `/v1/conversations`, one conversation, its messages, and `PATCH` (status
//! and handoff).

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use shared::dashboard::DashboardError;
use shared::dashboard::inbox::{
    self, Conversation, ConversationListParams, ConversationPage, ConversationPatch, MessagePage,
    PageParams,
};
use shared::secrets::SecretSource;

use crate::{ApiError, ApiStore, Caller, ErrorBody, Json, Path, SendApi};

/// A query string whose errors name the parameter, in the API's error shape.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, St: Send + Sync> FromRequestParts<St> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &St) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|e| {
                    let text = e.body_text();
                    // serde names an unknown parameter between backticks.
                    let field = text
                        .split('`')
                        .nth(1)
                        .filter(|_| text.contains("unknown field"))
                        .unwrap_or("query")
                        .to_owned();
                    DashboardError::invalid(field, "is not a parameter of this route")
                })?;
        Ok(Self(value))
    }
}

/// The workspace's conversations, newest activity first.
#[utoipa::path(get, path = "/v1/conversations", tag = "inbox", security(("bearer" = [])),
    params(
        ("status" = Option<String>, Query, description = "`active` or `ended`"),
        ("updatedSince" = Option<String>, Query, description = "RFC 3339: only conversations with activity (a message in or out, a status, a change) after this time"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 25)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of conversations", body = ConversationPage),
        (status = 400, description = "A parameter is invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn list_conversations<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Query(params): Query<ConversationListParams>,
) -> Result<axum::Json<ConversationPage>, ApiError> {
    Ok(axum::Json(
        inbox::list(&api.store, &workspace, params).await?,
    ))
}

/// One conversation.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation id")),
    responses(
        (status = 200, description = "The conversation", body = Conversation),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such conversation in this workspace", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn get_conversation<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Conversation>, ApiError> {
    Ok(axum::Json(inbox::get(&api.store, &workspace, &id).await?))
}

/// A conversation's messages, oldest first.
#[utoipa::path(get, path = "/v1/conversations/{id}/messages", tag = "inbox", security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "The conversation id"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 25)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of messages, oldest first", body = MessagePage),
        (status = 400, description = "A parameter is invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such conversation in this workspace", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn list_messages<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
    Query(params): Query<PageParams>,
) -> Result<axum::Json<MessagePage>, ApiError> {
    Ok(axum::Json(
        inbox::messages(&api.store, &workspace, &id, params).await?,
    ))
}

/// Ends a conversation, or hands it to a person (`botPaused`) and back. The message processor
/// reads `botPaused` from the same item: while it is `true`, customer messages are stored and
/// get no AI reply.
#[utoipa::path(patch, path = "/v1/conversations/{id}", tag = "inbox", security(("bearer" = [])),
    params(("id" = String, Path, description = "The conversation id")),
    request_body = ConversationPatch,
    responses(
        (status = 200, description = "The conversation as stored", body = Conversation),
        (status = 400, description = "A field is invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such conversation in this workspace", body = ErrorBody),
        (status = 409, description = "The conversation has ended (it cannot be reopened or paused)", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn patch_conversation<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
    Json(patch): Json<ConversationPatch>,
) -> Result<axum::Json<Conversation>, ApiError> {
    Ok(axum::Json(
        inbox::patch(&api.store, &workspace, &id, patch).await?,
    ))
}
