//! A stand-in for Kapso's platform API and its hosted setup page, so onboarding runs on the local
//! stack with nothing leaving the machine.
//!
//! - `POST /platform/v1/customers` and `POST /platform/v1/customers/{id}/setup_links` answer as
//!   Kapso does (`{data: ...}`), and need an `X-API-Key`;
//! - `GET /setup/{link id}` is the hosted page: it plays the business finishing Kapso's flow, gives
//!   the link's customer a new number, sends the browser to the link's success redirect, and posts
//!   the signed `whatsapp.phone_number.created` project webhook to our ingest route, as Kapso would.
//!   `?error_code=<code>` plays a failed flow instead (the failure redirect);
//! - `GET /platform/v1/whatsapp/phone_numbers/{id}` tells whose number it is.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use shared::ingest::signature::{KAPSO_SIGNATURE_HEADER, sign_hex};
use shared::ingest::webhook::kapso::EVENT_HEADER;
use shared::onboarding::project_events::PHONE_NUMBER_CREATED;

use crate::standins::{Served, loopback, serve};

/// Where the stand-in posts project webhooks: our ingest route and the project's secret.
#[derive(Clone)]
pub struct ProjectWebhook {
    pub url: String,
    pub secret: String,
}

struct Link {
    customer: String,
    success: String,
    failure: String,
}

#[derive(Default)]
struct Platform {
    customers: Vec<String>,
    links: HashMap<String, Link>,
    /// Number id -> (customer, display number).
    numbers: HashMap<String, (String, String)>,
}

#[derive(Clone)]
struct Shared {
    base_url: String,
    platform: Arc<Mutex<Platform>>,
    webhook: Option<ProjectWebhook>,
    http: reqwest::Client,
}

impl Shared {
    fn platform(&self) -> std::sync::MutexGuard<'_, Platform> {
        self.platform.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running stand-in; it stops when dropped.
pub struct KapsoPlatformStandIn {
    pub base_url: String,
    _server: Served,
}

impl KapsoPlatformStandIn {
    /// The platform API base URL the functions are configured with.
    pub fn api_url(&self) -> String {
        format!("{}/platform/v1", self.base_url)
    }
}

/// Starts the stand-in on a free loopback port. The hosted page posts project webhooks to
/// `webhook`, when given.
pub async fn start(webhook: Option<ProjectWebhook>) -> anyhow::Result<KapsoPlatformStandIn> {
    let listener = loopback(None).await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let state = Shared {
        base_url: base_url.clone(),
        platform: Arc::default(),
        webhook,
        http: reqwest::Client::new(),
    };
    let router = Router::new()
        .route("/platform/v1/customers", post(create_customer))
        .route(
            "/platform/v1/customers/{id}/setup_links",
            post(create_setup_link),
        )
        .route(
            "/platform/v1/whatsapp/phone_numbers/{id}",
            get(phone_number),
        )
        .route("/setup/{id}", get(hosted_page))
        .with_state(state);
    let server = serve(listener, router, "Kapso platform stand-in")?;
    Ok(KapsoPlatformStandIn {
        base_url,
        _server: server,
    })
}

fn unauthorised(headers: &HeaderMap) -> Option<Response> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    key.is_none_or(str::is_empty).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "Invalid API key" })),
        )
            .into_response()
    })
}

async fn create_customer(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = unauthorised(&headers) {
        return refused;
    }
    let mut platform = state.platform();
    let id = format!("cus_local_{}", platform.customers.len() + 1);
    platform.customers.push(id.clone());
    let customer = &body["customer"];
    (
        StatusCode::CREATED,
        Json(json!({ "data": {
            "id": id,
            "name": customer["name"],
            "external_customer_id": customer["external_customer_id"],
        }})),
    )
        .into_response()
}

async fn create_setup_link(
    State(state): State<Shared>,
    Path(customer): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Some(refused) = unauthorised(&headers) {
        return refused;
    }
    let mut platform = state.platform();
    if !platform.customers.contains(&customer) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "Customer not found" })),
        )
            .into_response();
    }
    let link = &body["setup_link"];
    let (Some(success), Some(failure)) = (
        link["success_redirect_url"].as_str(),
        link["failure_redirect_url"].as_str(),
    ) else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({ "error": "redirect URLs are required" })),
        )
            .into_response();
    };
    let id = format!("sl_local_{}", platform.links.len() + 1);
    platform.links.insert(
        id.clone(),
        Link {
            customer,
            success: success.to_owned(),
            failure: failure.to_owned(),
        },
    );
    let expires_at = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    (
        StatusCode::CREATED,
        Json(json!({ "data": {
            "id": id,
            "url": format!("{}/setup/{id}", state.base_url),
            "expires_at": expires_at,
        }})),
    )
        .into_response()
}

async fn phone_number(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = unauthorised(&headers) {
        return refused;
    }
    match state.platform().numbers.get(&id) {
        Some((customer, display)) => Json(json!({ "data": {
            "id": id,
            "phone_number_id": id,
            "customer_id": customer,
            "display_phone_number": display,
            "is_coexistence": false,
        }}))
        .into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "Phone number not found" })),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct HostedPage {
    error_code: Option<String>,
}

async fn hosted_page(
    State(state): State<Shared>,
    Path(id): Path<String>,
    Query(page): Query<HostedPage>,
) -> Response {
    let (redirect, created) = {
        let mut platform = state.platform();
        let Some(link) = platform.links.get(&id) else {
            return (StatusCode::NOT_FOUND, "This setup link does not exist.").into_response();
        };
        if let Some(code) = page.error_code {
            let params = [("setup_link_id", id.as_str()), ("error_code", &code)];
            (with_query(&link.failure, &params), None)
        } else {
            let customer = link.customer.clone();
            let success = link.success.clone();
            let n = platform.numbers.len() + 1;
            let number = format!("20000000000{n:04}");
            let display = format!("+1 555-02{n:02}");
            platform
                .numbers
                .insert(number.clone(), (customer.clone(), display.clone()));
            let params = [
                ("setup_link_id", id.as_str()),
                ("status", "completed"),
                ("phone_number_id", &number),
                ("display_phone_number", &display),
            ];
            (with_query(&success, &params), Some((number, customer)))
        }
    };
    if let (Some((number, customer)), Some(webhook)) = (created, &state.webhook) {
        let body = json!({
            "phone_number_id": number,
            "project": { "id": "local-project" },
            "customer": { "id": customer },
        })
        .to_string();
        let sent = state
            .http
            .post(&webhook.url)
            .header("content-type", "application/json")
            .header(EVENT_HEADER, PHONE_NUMBER_CREATED)
            .header(
                KAPSO_SIGNATURE_HEADER,
                sign_hex(&webhook.secret, body.as_bytes()),
            )
            .body(body)
            .send()
            .await;
        if let Err(e) = sent {
            eprintln!("Kapso platform stand-in: the project webhook was not delivered: {e}");
        }
    }
    (StatusCode::FOUND, [(header::LOCATION, redirect)]).into_response()
}

/// `base` with `params` as its query string, encoded.
fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    reqwest::Url::parse_with_params(base, params)
        .map(String::from)
        .unwrap_or_else(|_| base.to_owned())
}
