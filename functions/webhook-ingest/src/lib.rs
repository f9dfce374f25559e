//! The webhook ingest function: routes, and the one place its errors become HTTP statuses.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;
use shared::ingest::queue::EnvelopeQueue;
use shared::ingest::signature::SignatureError;
use shared::ingest::webhook::PayloadError;
use shared::ingest::{Delivery, Handshake, HandshakeError, Ingest, IngestError};
use shared::secrets::SecretSource;
use shared::telemetry::cause_chain;
use time::OffsetDateTime;
use tracing::Instrument;

/// Every route the ingest function serves; `template.yaml` and the local router mirror them.
pub const ROUTES: [&str; 2] = ["/webhooks/whatsapp", "/webhooks/kapso"];

/// The ingest API as an axum router, served by `lambda_http::run` in Lambda and usable in-process.
pub fn router<Q: EnvelopeQueue, S: SecretSource>(ingest: Arc<Ingest<Q, S>>) -> Router {
    // Size limits are the use case's job (413 with our own body), so axum's default is off.
    let mut router = Router::new();
    for path in ROUTES {
        router = router.route(path, get(verify::<Q, S>).post(deliver::<Q, S>));
    }
    router
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .layer(DefaultBodyLimit::disable())
        .with_state(ingest)
}

async fn verify<Q: EnvelopeQueue, S: SecretSource>(
    State(ingest): State<Arc<Ingest<Q, S>>>,
    Query(query): Query<HashMap<String, String>>,
    context: Option<axum::Extension<lambda_http::Context>>,
) -> Response {
    let handshake = Handshake {
        mode: query.get("hub.mode").map(String::as_str),
        verify_token: query.get("hub.verify_token").map(String::as_str),
        challenge: query.get("hub.challenge").map(String::as_str),
    };
    let span = tracing::info_span!("verify", request_id = request_id(&context));
    match ingest.verify(&handshake).instrument(span.clone()).await {
        Ok(challenge) => {
            span.in_scope(|| tracing::info!("webhook verification accepted"));
            ([(header::CONTENT_TYPE, "text/plain")], challenge).into_response()
        }
        Err(e) => {
            span.in_scope(|| tracing::warn!(error = %e, "webhook verification refused"));
            match e {
                HandshakeError::Refused => {
                    error(StatusCode::FORBIDDEN, "forbidden", "verification refused")
                }
                HandshakeError::SecretsUnavailable(_) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "try again later",
                ),
            }
        }
    }
}

async fn deliver<Q: EnvelopeQueue, S: SecretSource>(
    State(ingest): State<Arc<Ingest<Q, S>>>,
    headers: HeaderMap,
    context: Option<axum::Extension<lambda_http::Context>>,
    body: Bytes,
) -> Response {
    let lookup = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let delivery = Delivery::new(&body, lookup, OffsetDateTime::now_utc());
    let span = tracing::info_span!("deliver", request_id = request_id(&context));
    match ingest.accept(&delivery).instrument(span.clone()).await {
        Ok(accepted) => {
            span.in_scope(|| {
                tracing::info!(
                    source = %accepted.source,
                    enqueued = accepted.enqueued,
                    skipped = accepted.skipped.len(),
                    "delivery accepted"
                )
            });
            let body = json!({ "status": "accepted", "enqueued": accepted.enqueued });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        Err(e) => {
            let response = status_of(&e);
            span.in_scope(|| {
                let chain = cause_chain(&e);
                if response.0.is_server_error() {
                    tracing::error!(error.cause_chain = %chain, status = response.0.as_u16(), "delivery failed");
                } else {
                    tracing::warn!(error.cause_chain = %chain, status = response.0.as_u16(), "delivery rejected");
                }
            });
            error(response.0, response.1, &response.2)
        }
    }
}

/// The one mapping from ingest errors to HTTP. Client messages never include `Debug` output.
fn status_of(e: &IngestError) -> (StatusCode, &'static str, String) {
    match e {
        IngestError::BodyTooLarge { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            e.to_string(),
        ),
        IngestError::Signature(SignatureError::SecretNotConfigured(_)) => (
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "signature cannot be verified".into(),
        ),
        IngestError::Signature(s) => (StatusCode::UNAUTHORIZED, "invalid_signature", s.to_string()),
        IngestError::Payload(PayloadError::MalformedJson(m)) => (
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("body is not valid JSON: {m}"),
        ),
        IngestError::Payload(p @ PayloadError::Unrecognised(_)) => (
            StatusCode::BAD_REQUEST,
            "unrecognised_payload",
            p.to_string(),
        ),
        IngestError::Queue(shared::ingest::queue::QueueError::EnvelopeTooLarge { .. }) => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "event_too_large",
            e.to_string(),
        ),
        IngestError::Queue(_) | IngestError::SecretsUnavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the delivery was not stored; retry later".into(),
        ),
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let mut response = (
        status,
        axum::Json(json!({ "error": code, "message": message })),
    )
        .into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

fn request_id(context: &Option<axum::Extension<lambda_http::Context>>) -> String {
    context
        .as_ref()
        .map(|c| c.request_id.clone())
        .unwrap_or_default()
}
