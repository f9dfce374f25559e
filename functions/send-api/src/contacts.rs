//! The contact routes: `/v1/contacts` (search), one contact, and `PATCH` (name, tags, opt-out).

use std::sync::Arc;

use axum::extract::State;
use shared::dashboard::contacts::{self, Contact, ContactListParams, ContactPage, ContactPatch};
use shared::secrets::SecretSource;

use crate::inbox::Query;
use crate::{ApiError, ApiStore, Caller, ErrorBody, Json, Path, SendApi};

/// The workspace's contacts: all of them by phone number, or those whose phone number or name
/// starts with the given prefix.
#[utoipa::path(get, path = "/v1/contacts", tag = "contacts", security(("bearer" = [])),
    params(
        ("phone" = Option<String>, Query, description = "The start of a phone number, e.g. `+6591` (digits, optionally after +)"),
        ("name" = Option<String>, Query, description = "The start of a name, any case (not together with `phone`)"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 100 (default 25)"),
        ("cursor" = Option<String>, Query, description = "`nextCursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of contacts, by phone number or by name", body = ContactPage),
        (status = 400, description = "A parameter is invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn list_contacts<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Query(params): Query<ContactListParams>,
) -> Result<axum::Json<ContactPage>, ApiError> {
    Ok(axum::Json(
        contacts::list(&api.store, &workspace, params).await?,
    ))
}

/// One contact.
#[utoipa::path(get, path = "/v1/contacts/{id}", tag = "contacts", security(("bearer" = [])),
    params(("id" = String, Path, description = "The contact's WhatsApp id")),
    responses(
        (status = 200, description = "The contact", body = Contact),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such contact in this workspace", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn get_contact<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Contact>, ApiError> {
    Ok(axum::Json(
        contacts::get(&api.store, &workspace, &id).await?,
    ))
}

/// Names, tags, or opts a contact out (or back in). Opt-out is the flag the message processor
/// honours: an opted-out contact gets no AI replies.
#[utoipa::path(patch, path = "/v1/contacts/{id}", tag = "contacts", security(("bearer" = [])),
    params(("id" = String, Path, description = "The contact's WhatsApp id")),
    request_body = ContactPatch,
    responses(
        (status = 200, description = "The contact as stored", body = Contact),
        (status = 400, description = "A field is invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such contact in this workspace", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry", body = ErrorBody),
    ))]
pub async fn patch_contact<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Path(id): Path<String>,
    Json(patch): Json<ContactPatch>,
) -> Result<axum::Json<Contact>, ApiError> {
    Ok(axum::Json(
        contacts::patch(&api.store, &workspace, &id, patch).await?,
    ))
}
