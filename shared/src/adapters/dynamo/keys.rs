//! Every key of the table, in one place (docs/data-model.md lists them with their access
//! patterns).

use crate::conversations::model::{MessageStatus, ReplyIntent};

use crate::ids::{
    ConversationId, KapsoCustomerId, PhoneNumberId, SetupLinkId, WaId, Wamid, WorkspaceId,
};
use crate::reminders::model::ReminderId;

/// Reply intents are kept a month: long enough for any redelivery or status to find them.
pub(super) const INTENT_TTL: time::Duration = time::Duration::days(30);
/// Idempotency keys of the send API are kept a day, as Stripe keeps them.
pub(super) const IDEMPOTENCY_TTL: time::Duration = time::Duration::hours(24);
/// Statuses for messages not stored yet are kept a week, then DynamoDB's TTL drops them.
pub(super) const EARLY_STATUS_TTL: time::Duration = time::Duration::days(7);
/// Events that could never be processed are kept a fortnight for inspection and replay.
pub(super) const FAILED_EVENT_TTL: time::Duration = time::Duration::days(14);

pub fn integration_key(pn: &PhoneNumberId) -> (String, String) {
    (format!("PN#{}", pn.as_str()), "INTEGRATION".into())
}
pub fn workspace_key(ws: &WorkspaceId) -> (String, String) {
    (format!("WS#{}", ws.as_str()), "WORKSPACE".into())
}
pub fn ai_config_key(ws: &WorkspaceId) -> (String, String) {
    (format!("WS#{}", ws.as_str()), "AI_CONFIG".into())
}
/// A workspace's onboarding record (its Kapso customer, latest setup link, connected number).
pub fn onboarding_key(ws: &WorkspaceId) -> (String, String) {
    (format!("WS#{}", ws.as_str()), "ONBOARDING".into())
}
/// Which workspace a Kapso customer belongs to.
pub fn kapso_customer_key(customer: &KapsoCustomerId) -> (String, String) {
    (format!("KC#{}", customer.as_str()), "KAPSO_CUSTOMER".into())
}
/// A setup link we created.
pub fn setup_link_key(id: &SetupLinkId) -> (String, String) {
    (format!("SETUP#{}", id.as_str()), "SETUP".into())
}
pub fn contact_key(ws: &WorkspaceId, wa_id: &WaId) -> (String, String) {
    (
        format!("CT#{}#{}", ws.as_str(), wa_id.as_str()),
        "CONTACT".into(),
    )
}
pub fn conversation_key(ws: &WorkspaceId, wa_id: &WaId, id: &ConversationId) -> (String, String) {
    (
        format!("CT#{}#{}", ws.as_str(), wa_id.as_str()),
        format!("CONV#{}", id.as_str()),
    )
}
pub fn message_key(wamid: &Wamid) -> (String, String) {
    (format!("MSG#{}", wamid.as_str()), "MESSAGE".into())
}
pub fn intent_key(intent: &ReplyIntent) -> (String, String) {
    (format!("INTENT#{}", intent.key()), "INTENT".into())
}
/// A dashboard request's idempotency key; the key itself never holds `#`, so the last `#` splits.
pub fn idempotency_key(ws: &WorkspaceId, key: &str) -> (String, String) {
    (format!("IDEMP#{}#{key}", ws.as_str()), "IDEMP".into())
}
pub fn failed_key(id: &str) -> (String, String) {
    (format!("FAILED#{id}"), "FAILED".into())
}
pub(super) fn early_key(wamid: &Wamid, status: MessageStatus) -> (String, String) {
    (
        format!("EARLY#{}", wamid.as_str()),
        format!("STATUS#{}", status.as_str()),
    )
}

/// The attribute of a contact item holding one field of its thread with `pn` (see
/// [`ContactState`]): `pn#<phone_number_id>#<field>`.
pub fn thread_attr(pn: &PhoneNumberId, field: &str) -> String {
    format!("pn#{}#{field}", pn.as_str())
}

/// Expression names for a thread's attributes: `#conv`, `#started`, `#last`, `#answered`,
/// `#paused`.
pub(super) fn thread_names(pn: &PhoneNumberId) -> [(&'static str, String); 5] {
    [
        ("#conv", thread_attr(pn, "conversation_id")),
        ("#started", thread_attr(pn, "started_at")),
        ("#last", thread_attr(pn, "last_inbound_at")),
        ("#answered", thread_attr(pn, "answered_through")),
        ("#paused", thread_attr(pn, "bot_paused")),
    ]
}

/// A reminder (`WS#<workspace_id>` / `REMINDER#<reminder_id>`): under its workspace's partition,
/// so a reminder id from another workspace finds nothing.
pub fn reminder_key(ws: &WorkspaceId, id: &ReminderId) -> (String, String) {
    (
        format!("WS#{}", ws.as_str()),
        format!("REMINDER#{}", id.as_str()),
    )
}
/// An `Idempotency-Key` of a reminder creation (`WS#<workspace_id>` /
/// `REMINDER_IDEMPOTENCY#<sha256 of the key>`), kept a day.
pub fn reminder_idempotency_key(ws: &WorkspaceId, idempotency_key: &str) -> (String, String) {
    use sha2::Digest;
    (
        format!("WS#{}", ws.as_str()),
        format!(
            "REMINDER_IDEMPOTENCY#{}",
            hex::encode(sha2::Sha256::digest(idempotency_key.as_bytes()))
        ),
    )
}
pub(super) const REMINDER_IDEMPOTENCY_TTL: time::Duration = time::Duration::days(1);

/// How many partitions the due-reminder index (GSI2) is spread over. Each run queries all of
/// them, so a burst of reminders due in the same minute never lands on one hot partition.
pub const REMINDER_DUE_SHARDS: u16 = 8;

/// The due index's partition of a reminder: `REMINDER_DUE#<shard>`, the shard from a hash of
/// its id.
pub fn reminder_due_pk(id: &ReminderId) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(id.as_str().as_bytes());
    let shard = u16::from_be_bytes([digest[0], digest[1]]) % REMINDER_DUE_SHARDS;
    reminder_due_shard_pk(shard)
}
pub fn reminder_due_shard_pk(shard: u16) -> String {
    format!("REMINDER_DUE#{shard}")
}
/// The due index's sort key: the due time in epoch milliseconds, zero-padded, then the id.
pub fn reminder_due_sk(due_ms: i128, id: &ReminderId) -> String {
    format!("{due_ms:015}#{}", id.as_str())
}
/// The highest due-index sort key at `due_ms`: every reminder due then or earlier sorts before it.
pub fn reminder_due_bound(due_ms: i128) -> String {
    format!("{due_ms:015}#~")
}
/// A reminder's place in its workspace's list (GSI1): `REMINDER#<due ms>#<id>`, by due time.
pub fn reminder_list_sk(due_ms: i128, id: &ReminderId) -> String {
    format!("REMINDER#{due_ms:015}#{}", id.as_str())
}
