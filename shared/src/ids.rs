//! Typed identifiers. Raw strings are parsed once at the edge; past it they are these types.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a raw string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} must contain only digits")]
    NotDigits { kind: &'static str },
    #[error("{kind} contains whitespace or control characters")]
    BadCharacter { kind: &'static str },
    #[error(
        "{kind} must be a phone number (digits) or a business-scoped user id (e.g. US.13491208655302741918)"
    )]
    NotCustomerId { kind: &'static str },
}

fn check_token(kind: &'static str, raw: &str, max: usize) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if raw.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(IdError::BadCharacter { kind });
    }
    Ok(())
}

fn check_digits(kind: &'static str, raw: &str, max: usize) -> Result<(), IdError> {
    check_token(kind, raw, max)?;
    if !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::NotDigits { kind });
    }
    Ok(())
}

/// Longest BSUID body Meta documents (after the country code and any `ENT.`).
const MAX_BSUID_BODY: usize = 128;
/// `CC.` + `ENT.` + the body: the longest parent BSUID.
const MAX_BSUID: usize = 3 + 4 + MAX_BSUID_BODY;

/// Whether `raw` has the shape of a business-scoped user id: a two-letter ISO 3166 country code,
/// a period, and up to 128 ASCII alphanumerics, with `ENT.` after the period for a parent BSUID.
fn is_bsuid(raw: &str) -> bool {
    let Some((country, rest)) = raw.split_once('.') else {
        return false;
    };
    let body = rest.strip_prefix("ENT.").unwrap_or(rest);
    country.len() == 2
        && country.bytes().all(|b| b.is_ascii_alphabetic())
        && !body.is_empty()
        && body.len() <= MAX_BSUID_BODY
        && body.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn check_customer(kind: &'static str, raw: &str) -> Result<(), IdError> {
    check_token(kind, raw, MAX_BSUID)?;
    if raw.bytes().all(|b| b.is_ascii_digit()) {
        return check_digits(kind, raw, 32);
    }
    if is_bsuid(raw) {
        return Ok(());
    }
    Err(IdError::NotCustomerId { kind })
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $check:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates a raw identifier.
            pub fn parse(raw: impl Into<String>) -> Result<Self, IdError> {
                let raw = raw.into();
                ($check)($kind, raw.as_str())?;
                Ok(Self(raw))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                Self::parse(raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// Meta's id of a business phone number; the tenant key.
    PhoneNumberId, "phone_number_id", |k, r| check_digits(k, r, 32)
);
string_id!(
    /// A customer's WhatsApp identity: their phone number in international form (digits only,
    /// Meta's `wa_id`), or, for a user who hides their number behind a username, their
    /// business-scoped user id (BSUID, e.g. `US.13491208655302741918`, Meta's `user_id`).
    /// Both key the same conversations, contacts and queue groups; [`WaId::phone`] and
    /// [`WaId::bsuid`] tell them apart where it matters (sending, storing a phone number).
    /// It prints masked to its last four characters, so it can never leak into a log whole.
    WaId, "wa_id", check_customer
);

impl WaId {
    /// The phone number (digits, no `+`), if this customer is identified by one.
    pub fn phone(&self) -> Option<&str> {
        (!self.is_bsuid()).then_some(self.0.as_str())
    }

    /// The business-scoped user id, if this customer is identified by one.
    pub fn bsuid(&self) -> Option<&str> {
        self.is_bsuid().then_some(self.0.as_str())
    }

    /// Whether this is a BSUID rather than a phone number. Parsing guarantees it is one or
    /// the other, and a phone number is digits only, so a period tells them apart.
    pub fn is_bsuid(&self) -> bool {
        self.0.contains('.')
    }
}
string_id!(
    /// A WhatsApp message id (`wamid.…`).
    Wamid, "wamid", |k, r| check_token(k, r, 256)
);
string_id!(
    /// The stable identity of one webhook event, used for de-duplication.
    EventId, "event_id", |k, r| check_token(k, r, 512)
);
string_id!(
    /// A workspace (tenant) of the dashboard.
    WorkspaceId, "workspace_id", |k, r| check_token(k, r, 64)
);

string_id!(
    /// One conversation with a contact: a ULID, so conversation ids sort by start time.
    ConversationId, "conversation_id", |k, r| check_token(k, r, 64)
);

string_id!(
    /// Kapso's id of a customer: one per workspace that onboards through a setup link.
    KapsoCustomerId, "kapso_customer_id", |k, r| check_token(k, r, 128)
);
string_id!(
    /// Kapso's id of a setup link; the callback's only reference to what we created.
    SetupLinkId, "setup_link_id", |k, r| check_token(k, r, 128)
);

impl ConversationId {
    /// A new id for a conversation starting at `at`.
    pub fn new_at(at: time::OffsetDateTime) -> Self {
        Self(ulid::Ulid::from_datetime(at.into()).to_string())
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConversationId({})", self.0)
    }
}

impl fmt::Display for PhoneNumberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for PhoneNumberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumberId({})", self.0)
    }
}
impl fmt::Display for Wamid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for Wamid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wamid({})", self.0)
    }
}
impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({})", self.0)
    }
}
impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkspaceId({})", self.0)
    }
}

impl fmt::Debug for KapsoCustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KapsoCustomerId({})", self.0)
    }
}
impl fmt::Debug for SetupLinkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SetupLinkId({})", self.0)
    }
}

/// Masks a phone number to its last four characters, e.g. `*******1234`.
pub fn mask_phone(raw: &str) -> String {
    let n = raw.chars().count();
    let keep = n.min(4);
    let mut out: String = "*".repeat(n - keep);
    out.extend(raw.chars().skip(n - keep));
    out
}

impl WaId {
    /// The masked form: a phone number keeps its last four digits; a BSUID also keeps its
    /// country code, which says nothing about the person but helps reading logs.
    fn masked(&self) -> String {
        match self.0.split_once('.') {
            Some((country, rest)) if self.is_bsuid() => format!("{country}.{}", mask_phone(rest)),
            _ => mask_phone(&self.0),
        }
    }
}

impl fmt::Display for WaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}
impl fmt::Debug for WaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WaId({})", self.masked())
    }
}

/// One conversation: a business number talking to one customer.
/// It is the SQS FIFO message group, so each conversation is processed in order.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConversationKey {
    pub phone_number_id: PhoneNumberId,
    pub wa_id: WaId,
}

impl ConversationKey {
    pub fn new(phone_number_id: PhoneNumberId, wa_id: WaId) -> Self {
        Self {
            phone_number_id,
            wa_id,
        }
    }

    /// The unmasked `phone_number_id:wa_id` form, used as a message group and storage key.
    pub fn to_key(&self) -> String {
        format!("{}:{}", self.phone_number_id.as_str(), self.wa_id.as_str())
    }
}

impl fmt::Debug for ConversationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ConversationKey({}:{})",
            self.phone_number_id, self.wa_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_number_ids_must_be_digits() {
        assert!(PhoneNumberId::parse("106540352242922").is_ok());
        assert_eq!(
            PhoneNumberId::parse("10654a").unwrap_err(),
            IdError::NotDigits {
                kind: "phone_number_id"
            }
        );
        assert_eq!(
            PhoneNumberId::parse("").unwrap_err(),
            IdError::Empty {
                kind: "phone_number_id"
            }
        );
    }

    #[test]
    fn wa_ids_print_masked_to_their_last_four_digits() {
        let id = WaId::parse("16505551234").unwrap();
        assert_eq!(id.to_string(), "*******1234");
        assert_eq!(format!("{id:?}"), "WaId(*******1234)");
        assert_eq!(id.as_str(), "16505551234");
    }

    #[test]
    fn a_customer_id_is_a_phone_number_or_a_business_scoped_user_id() {
        let phone = WaId::parse("16505551234").unwrap();
        assert_eq!(phone.phone(), Some("16505551234"));
        assert_eq!(phone.bsuid(), None);
        assert!(!phone.is_bsuid());

        for raw in [
            "US.13491208655302741918",
            "US.ENT.11815799212886844830",
            "BR.1502576394655843",
            "IN.1410018717833190",
            &format!("US.{}", "a1".repeat(64)),
        ] {
            let id = WaId::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert!(id.is_bsuid(), "{raw}");
            assert_eq!(id.bsuid(), Some(raw));
            assert_eq!(id.phone(), None);
            assert_eq!(id.as_str(), raw, "kept exactly as received");
        }
    }

    #[test]
    fn anything_else_is_not_a_customer_id() {
        for raw in [
            "+16505551234",
            "1650 555",
            "USA.1349120865",
            "U.1349120865",
            "US.",
            "US.ENT.",
            "US.1349-1208",
            "US.1349.1208",
            "12.13491208655302741918",
            "@sheena",
            "sheena",
        ] {
            assert!(WaId::parse(raw).is_err(), "{raw} must be refused");
        }
        assert!(WaId::parse(format!("US.{}", "1".repeat(129))).is_err());
        assert!(WaId::parse("1".repeat(33)).is_err());
    }

    #[test]
    fn a_bsuid_prints_masked_but_keeps_its_country_code() {
        let id = WaId::parse("US.13491208655302741918").unwrap();
        assert_eq!(id.to_string(), "US.****************1918");
        assert_eq!(format!("{id:?}"), "WaId(US.****************1918)");
        let key = ConversationKey::new(PhoneNumberId::parse("106540352242922").unwrap(), id);
        assert_eq!(key.to_key(), "106540352242922:US.13491208655302741918");
        assert!(!format!("{key:?}").contains("134912086553"));
    }

    #[test]
    fn masking_short_numbers_keeps_what_there_is() {
        assert_eq!(mask_phone("123"), "123");
        assert_eq!(mask_phone(""), "");
    }

    #[test]
    fn wamids_reject_whitespace() {
        assert!(Wamid::parse("wamid.HBgL==").is_ok());
        assert!(Wamid::parse("wamid .x").is_err());
    }

    #[test]
    fn conversation_keys_join_tenant_and_customer_unmasked() {
        let key = ConversationKey::new(
            PhoneNumberId::parse("106540352242922").unwrap(),
            WaId::parse("16505551234").unwrap(),
        );
        assert_eq!(key.to_key(), "106540352242922:16505551234");
        assert!(!format!("{key:?}").contains("5551234"));
    }

    #[test]
    fn ids_deserialize_through_validation() {
        let ok: Result<WaId, _> = serde_json::from_str("\"16505551234\"");
        assert!(ok.is_ok());
        let bad: Result<WaId, _> = serde_json::from_str("\"+1 650\"");
        assert!(bad.is_err());
    }
}
