//! Where Kapso's setup flow comes back: the browser's success and failure redirects (whose
//! query parameters anyone can forge, so nothing in them is trusted until checked against the
//! link we recorded and the Kapso platform API), and the project webhook that confirms the same
//! connection server-side. Both activate through [`connect`]. Every outcome is a redirect to
//! the configured dashboard, never to anything a parameter names.

use serde::Deserialize;
use time::OffsetDateTime;

use super::{
    Activation, ActivationError, ActiveNumber, ConnectionType, KapsoPlatform, OnboardingStore,
    RecordedError,
};
use crate::conversations::model::Provider;
use crate::ids::{KapsoCustomerId, PhoneNumberId, SetupLinkId, WorkspaceId};

/// The success redirect's query: Kapso's current parameters and the older ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SuccessParams {
    pub setup_link_id: Option<String>,
    pub status: Option<String>,
    pub phone_number_id: Option<String>,
    pub business_account_id: Option<String>,
    pub provisioned_phone_number_id: Option<String>,
    pub display_phone_number: Option<String>,
    // Older form.
    pub customer_id: Option<String>,
    pub connection_type: Option<String>,
    pub phone_number: Option<String>,
}

/// The failure redirect's query: `error_code` (current) or `error` / `error_description` (older).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FailureParams {
    pub setup_link_id: Option<String>,
    pub customer_id: Option<String>,
    pub error_code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// Why a callback connected nothing: each is the `error` of the failed page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("the callback is missing or has a malformed parameter")]
    InvalidCallback,
    #[error("the setup link is not one we created")]
    UnknownLink,
    #[error("the setup link has expired")]
    LinkExpired,
    #[error("the setup link was already used for another number")]
    AlreadyUsed,
    #[error("the number does not belong to this workspace's Kapso customer")]
    NotConfirmed,
    #[error("the number is connected to another workspace")]
    NumberTaken,
    #[error("the connection could not be verified right now")]
    Unavailable,
}

impl Rejected {
    /// The code the failed page is given.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidCallback => "invalid_callback",
            Self::UnknownLink => "unknown_link",
            Self::LinkExpired => "link_expired",
            Self::AlreadyUsed => "already_used",
            Self::NotConfirmed => "not_confirmed",
            Self::NumberTaken => "number_taken",
            Self::Unavailable => "verification_unavailable",
        }
    }
}

/// Where the browser goes after a callback: always under the configured dashboard URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landing {
    Connected,
    Failed(String),
}

impl Landing {
    /// The redirect target under `dashboard_url`. The error code is reduced to `[a-z0-9_]`
    /// (at most 64), so no parameter can add a path, a host or another query.
    pub fn url(&self, dashboard_url: &str) -> String {
        match self {
            Self::Connected => format!("{dashboard_url}/whatsapp/connected"),
            Self::Failed(code) => {
                format!("{dashboard_url}/whatsapp/failed?error={}", safe_code(code))
            }
        }
    }
}

/// An error code as a safe token: unknown shapes become `unknown`.
pub fn safe_code(raw: &str) -> String {
    let code = raw.trim().to_ascii_lowercase();
    if !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        code
    } else {
        "unknown".into()
    }
}

/// What is known of a number before it is activated, beyond its id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NumberHints {
    pub display_phone_number: Option<String>,
    pub connection_type: Option<ConnectionType>,
}

/// The success redirect: checks the link is ours, unexpired and unused, confirms the number
/// with Kapso, and activates it. A refresh after success lands on the connected page again.
#[tracing::instrument(skip_all, fields(setup_link_id = params.setup_link_id.as_deref().unwrap_or("")))]
pub async fn success<D: OnboardingStore, P: KapsoPlatform>(
    store: &D,
    platform: &P,
    params: SuccessParams,
    now: OffsetDateTime,
) -> Landing {
    match verify_and_connect(store, platform, params, now).await {
        Ok(()) => Landing::Connected,
        Err(rejected) => {
            tracing::warn!(reason = rejected.code(), "setup callback rejected");
            Landing::Failed(rejected.code().into())
        }
    }
}

async fn verify_and_connect<D: OnboardingStore, P: KapsoPlatform>(
    store: &D,
    platform: &P,
    params: SuccessParams,
    now: OffsetDateTime,
) -> Result<(), Rejected> {
    let link_id = params
        .setup_link_id
        .and_then(|l| SetupLinkId::parse(l).ok())
        .ok_or(Rejected::InvalidCallback)?;
    let phone_number_id = params
        .phone_number_id
        .and_then(|p| PhoneNumberId::parse(p).ok())
        .ok_or(Rejected::InvalidCallback)?;
    let link = store
        .setup_link(&link_id)
        .await
        .map_err(|_| Rejected::Unavailable)?
        .ok_or(Rejected::UnknownLink)?;
    match &link.used_by {
        Some(used) if *used == phone_number_id => return Ok(()),
        Some(_) => return Err(Rejected::AlreadyUsed),
        None => {}
    }
    if link.expires_at <= now {
        return Err(Rejected::LinkExpired);
    }
    if params
        .customer_id
        .is_some_and(|c| c != link.customer_id.as_str())
    {
        return Err(Rejected::NotConfirmed);
    }
    let hints = NumberHints {
        display_phone_number: params.display_phone_number.or(params.phone_number),
        connection_type: params
            .connection_type
            .as_deref()
            .and_then(ConnectionType::parse),
    };
    connect(
        store,
        platform,
        &link.workspace_id,
        &link.customer_id,
        &phone_number_id,
        hints,
        Some(link_id),
        now,
    )
    .await
}

/// Confirms with Kapso that `phone_number_id` belongs to `customer`, then activates it for
/// `workspace_id` (consuming `setup_link`, if any). The one way a Kapso number gets connected.
#[allow(clippy::too_many_arguments)]
pub async fn connect<D: OnboardingStore, P: KapsoPlatform>(
    store: &D,
    platform: &P,
    workspace_id: &WorkspaceId,
    customer: &KapsoCustomerId,
    phone_number_id: &PhoneNumberId,
    hints: NumberHints,
    setup_link: Option<SetupLinkId>,
    now: OffsetDateTime,
) -> Result<(), Rejected> {
    let number = platform
        .phone_number(phone_number_id)
        .await
        .map_err(|e| {
            tracing::error!(error.cause_chain = %e, "the Kapso platform API could not confirm the number");
            Rejected::Unavailable
        })?
        .ok_or(Rejected::NotConfirmed)?;
    if number.customer_id.as_ref() != Some(customer) {
        return Err(Rejected::NotConfirmed);
    }
    let connection_type = hints.connection_type.or(number.is_coexistence.map(|c| {
        if c {
            ConnectionType::Coexistence
        } else {
            ConnectionType::Dedicated
        }
    }));
    let activation = Activation {
        workspace_id: workspace_id.clone(),
        number: ActiveNumber {
            phone_number_id: phone_number_id.clone(),
            provider: Provider::Kapso,
            display_phone_number: number.display_phone_number.or(hints.display_phone_number),
            connection_type,
            connected_at: now,
        },
        setup_link,
    };
    match store.activate(&activation).await {
        Ok(()) => {
            tracing::info!(workspace_id = %workspace_id, phone_number_id = %phone_number_id, "number connected");
            Ok(())
        }
        Err(ActivationError::Taken) => Err(Rejected::NumberTaken),
        Err(ActivationError::Store(e)) => {
            tracing::error!(error.cause_chain = %e, "the activation could not be stored");
            Err(Rejected::Unavailable)
        }
    }
}

/// The failure redirect: records Kapso's error code on the workspace the link (or, in the
/// older form, the customer) belongs to, and lands on the failed page with that code.
/// Parameters that name nothing of ours record nothing.
#[tracing::instrument(skip_all)]
pub async fn failure<D: OnboardingStore>(
    store: &D,
    params: FailureParams,
    now: OffsetDateTime,
) -> Landing {
    let code = safe_code(
        params
            .error_code
            .as_deref()
            .or(params.error.as_deref())
            .unwrap_or("unknown"),
    );
    let workspace = match (
        params
            .setup_link_id
            .and_then(|l| SetupLinkId::parse(l).ok()),
        params
            .customer_id
            .and_then(|c| KapsoCustomerId::parse(c).ok()),
    ) {
        (Some(link), _) => store
            .setup_link(&link)
            .await
            .map(|l| l.filter(|l| l.used_by.is_none()).map(|l| l.workspace_id)),
        (None, Some(customer)) => store.customer_workspace(&customer).await,
        (None, None) => Ok(None),
    };
    let message = params
        .error_description
        .map(|d| d.chars().filter(|c| !c.is_control()).take(500).collect());
    match workspace {
        Ok(Some(workspace)) => {
            let error = RecordedError {
                code: code.clone(),
                message,
                at: now,
            };
            if let Err(e) = store.record_error(&workspace, &error).await {
                tracing::error!(error.cause_chain = %e, "the setup failure could not be recorded");
            } else {
                tracing::info!(workspace_id = %workspace, code, "setup failure recorded");
            }
        }
        Ok(None) => tracing::warn!(code, "a setup failure for nothing of ours"),
        Err(e) => tracing::error!(error.cause_chain = %e, "the setup link could not be read"),
    }
    Landing::Failed(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_error_code_can_move_the_redirect_off_the_dashboard() {
        let dashboard = "https://app.example.com";
        for code in [
            "waba_limit_reached",
            "x&next=https://evil.example",
            "//evil.example",
            "@evil.example",
            "a\r\nLocation: https://evil.example",
            "%2F%2Fevil",
            "",
            &"a".repeat(65),
        ] {
            let url = Landing::Failed(code.into()).url(dashboard);
            let rest = url
                .strip_prefix("https://app.example.com/whatsapp/failed?error=")
                .unwrap_or_else(|| panic!("{url}"));
            assert!(
                rest.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{url}"
            );
        }
        assert_eq!(
            Landing::Failed("WABA_LIMIT_REACHED".into()).url(dashboard),
            "https://app.example.com/whatsapp/failed?error=waba_limit_reached"
        );
        assert_eq!(
            Landing::Connected.url(dashboard),
            "https://app.example.com/whatsapp/connected"
        );
    }
}
