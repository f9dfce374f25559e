//! The setup-callbacks function: where Kapso's setup links send the browser back. Each route
//! hands its query to `shared::onboarding::callbacks` and answers with a `302` to the
//! configured dashboard, whatever the query says.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Query, State},
    http::{HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::de::DeserializeOwned;
use shared::onboarding::callbacks::{self, Landing};
use shared::onboarding::{KapsoPlatform, OnboardingStore};
use time::OffsetDateTime;

/// Every route this function serves; `template.yaml` and the local router mirror them.
pub const ROUTES: [&str; 2] = ["/webhooks/kapso/success", "/webhooks/kapso/failed"];

/// What the callbacks need: the table, Kapso's platform API, and where the dashboard is.
pub struct Callbacks<D, P> {
    pub store: D,
    pub platform: P,
    /// The only place a callback redirects to.
    pub dashboard_url: String,
}

pub fn router<D: OnboardingStore, P: KapsoPlatform>(callbacks: Arc<Callbacks<D, P>>) -> Router {
    Router::new()
        .route(ROUTES[0], get(success::<D, P>))
        .route(ROUTES[1], get(failure::<D, P>))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(callbacks)
}

async fn success<D: OnboardingStore, P: KapsoPlatform>(
    State(c): State<Arc<Callbacks<D, P>>>,
    uri: Uri,
) -> Response {
    let params = query(&uri);
    let landing =
        callbacks::success(&c.store, &c.platform, params, OffsetDateTime::now_utc()).await;
    redirect(&c.dashboard_url, &landing)
}

async fn failure<D: OnboardingStore, P: KapsoPlatform>(
    State(c): State<Arc<Callbacks<D, P>>>,
    uri: Uri,
) -> Response {
    let params = query(&uri);
    let landing = callbacks::failure(&c.store, params, OffsetDateTime::now_utc()).await;
    redirect(&c.dashboard_url, &landing)
}

/// The query's parameters; a query that does not parse (a repeated parameter, say) is read
/// as empty, which the use cases turn into a failed landing rather than an error page.
fn query<T: DeserializeOwned + Default>(uri: &Uri) -> T {
    Query::<T>::try_from_uri(uri)
        .map(|Query(q)| q)
        .unwrap_or_default()
}

/// A `302` to the landing page under the dashboard URL; never cached, so a refresh comes back.
fn redirect(dashboard_url: &str, landing: &Landing) -> Response {
    let location = landing.url(dashboard_url);
    match HeaderValue::from_str(&location) {
        Ok(location) => (
            StatusCode::FOUND,
            [
                (header::LOCATION, location),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
        )
            .into_response(),
        // The dashboard URL is checked at cold start and codes are `[a-z0-9_]`: unreachable.
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}
