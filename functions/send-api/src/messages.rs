//! `POST /v1/messages`: the dashboard sends a message to a contact (see README, "Sending a
//! message").

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use shared::dashboard::send::{self, SendMessageRequest, Sender, SentMessage};
use shared::secrets::SecretSource;

use crate::{ApiError, ApiStore, Caller, ErrorBody, Idempotency, Json, SendApi};

/// Sends a message from one of the workspace's numbers to a contact, named by id or by E.164
/// phone number. Text, media, interactive and reaction messages need the contact's last
/// message to be less than 24 hours old; outside that window only a template may be sent.
/// An opted-out contact gets only templates the workspace marks as transactional. With an
/// `Idempotency-Key`, a retry answers as the first request did and sends nothing.
#[utoipa::path(post, path = "/v1/messages", tag = "messages", security(("bearer" = [])),
    params(("Idempotency-Key" = Option<String>, Header,
        description = "Makes retries safe: the same key and body answer as the first request did, for 24 hours. 1 to 255 visible ASCII characters, no `#`.")),
    request_body = SendMessageRequest,
    responses(
        (status = 201, description = "WhatsApp accepted the message; it is stored in the contact's conversation", body = SentMessage),
        (status = 400, description = "A field is missing or invalid; `details.field` names it", body = ErrorBody),
        (status = 401, description = "Not authenticated", body = ErrorBody),
        (status = 404, description = "No such contact or number in the workspace", body = ErrorBody),
        (status = 409, description = "`contact_opted_out`, `whatsapp_number_unavailable`, or `idempotency_key_in_flight` (the first request with this key has not finished)", body = ErrorBody),
        (status = 422, description = "`outside_customer_service_window` (send a template), or `idempotency_key_reused` (the key came with another body)", body = ErrorBody),
        (status = 429, description = "WhatsApp is throttling the number; retry after `Retry-After` seconds", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 502, description = "WhatsApp failed: `whatsapp_token_invalid`, `whatsapp_rejected`, `whatsapp_unreachable`, or `whatsapp_outcome_unknown` (it may have been sent: do not resend)", body = ErrorBody),
        (status = 503, description = "The store or the identity provider is unavailable; retry", body = ErrorBody),
    ))]
pub(crate) async fn send<S: SecretSource, D: ApiStore>(
    State(api): State<Arc<SendApi<S, D>>>,
    Caller(workspace): Caller,
    Idempotency(key): Idempotency,
    Json(request): Json<SendMessageRequest>,
) -> Result<(StatusCode, axum::Json<SentMessage>), ApiError> {
    let sender = Sender {
        store: &api.store,
        whatsapp: &api.whatsapp,
        secrets: &api.secrets,
    };
    let sent = send::send(&sender, &workspace, key.as_ref(), request).await?;
    Ok((StatusCode::CREATED, axum::Json(sent)))
}
