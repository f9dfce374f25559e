//! Kapso's project webhooks, as the processor receives them (account events, grouped by number).
//! `whatsapp.phone_number.created` confirms server-side the connection a setup link made, so a
//! business that closed the browser before the success redirect is connected all the same. It
//! goes through [`callbacks::connect`], the one activation path: the webhook's signature (the
//! project secret, checked by ingest) says it came from Kapso, and the platform API must still
//! say the number belongs to the workspace's customer.

use serde::Deserialize;
use time::OffsetDateTime;

use super::callbacks::{self, NumberHints, Rejected};
use super::{KapsoPlatform, OnboardingStore};
use crate::conversations::processor::{AccountEvents, AccountOutcome};
use crate::envelope::Envelope;
use crate::ids::{KapsoCustomerId, PhoneNumberId};

/// The event type of a number connected (or provisioned) for one of the project's customers.
pub const PHONE_NUMBER_CREATED: &str = "whatsapp.phone_number.created";

/// `whatsapp.phone_number.created`'s body: `{phone_number_id, project: {id}, customer: {id}}`.
#[derive(Debug, Deserialize)]
struct PhoneNumberCreated {
    phone_number_id: String,
    customer: Option<Reference>,
}

#[derive(Debug, Deserialize)]
struct Reference {
    id: String,
}

/// The processor's handler of Kapso project events.
pub struct ProjectEvents<D, P> {
    pub store: D,
    pub platform: P,
}

impl<D: OnboardingStore, P: KapsoPlatform> ProjectEvents<D, P> {
    /// Activates the number of a `whatsapp.phone_number.created` event for the workspace of its
    /// customer. `Ok(Some(number))` when the number is (now, or already) connected; `Ok(None)`
    /// when the event connects nothing, for a reason no redelivery can change (logged);
    /// `Err` when Kapso or the table could not be asked, so the event is retried.
    pub async fn phone_number_created(
        &self,
        raw: &str,
        now: OffsetDateTime,
    ) -> Result<Option<PhoneNumberId>, String> {
        let event: PhoneNumberCreated = match serde_json::from_str(raw) {
            Ok(event) => event,
            Err(e) => return Ok(ignored(&format!("unreadable body: {e}"))),
        };
        let Ok(number) = PhoneNumberId::parse(&event.phone_number_id) else {
            return Ok(ignored("malformed phone_number_id"));
        };
        let Some(customer) = event
            .customer
            .and_then(|c| KapsoCustomerId::parse(c.id).ok())
        else {
            return Ok(ignored("no customer"));
        };
        let Some(workspace) = self
            .store
            .customer_workspace(&customer)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(ignored("the customer is not one of our workspaces'"));
        };
        let connected = callbacks::connect(
            &self.store,
            &self.platform,
            &workspace,
            &customer,
            &number,
            NumberHints::default(),
            None,
            now,
        )
        .await;
        match connected {
            Ok(()) => Ok(Some(number)),
            Err(Rejected::Unavailable) => Err(Rejected::Unavailable.to_string()),
            Err(rejected) => Ok(ignored(&rejected.to_string())),
        }
    }
}

fn ignored(reason: &str) -> Option<PhoneNumberId> {
    tracing::warn!(reason, "Kapso project event connects no number");
    None
}

impl<D: OnboardingStore, P: KapsoPlatform> AccountEvents for ProjectEvents<D, P> {
    fn handle<'a>(&'a self, envelope: &'a Envelope) -> AccountOutcome<'a> {
        Box::pin(async move {
            if envelope.event_type != PHONE_NUMBER_CREATED {
                tracing::info!(event_type = %envelope.event_type, "account event recorded in logs only");
                return Ok(None);
            }
            self.phone_number_created(envelope.raw.get(), OffsetDateTime::now_utc())
                .await
        })
    }
}
