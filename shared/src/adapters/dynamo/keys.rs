//! Every key of the table, in one place (docs/data-model.md lists them with their access
//! patterns).

use time::OffsetDateTime;

use crate::conversations::model::{MessageStatus, ReplyIntent};
use crate::dashboard::contacts::fold_name;
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

/// A point in time as the keys that sort by it write it: epoch milliseconds.
pub(super) fn millis(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}

// ----- workspaces and their numbers ------------------------------------------------------------

/// A workspace's partition, `WS#<workspace_id>`: the table partition of its own items
/// (settings, quick replies, reminders) and the GSI1 partition of its lists (contacts,
/// conversations, numbers, reminders).
pub fn workspace_partition(ws: &WorkspaceId) -> String {
    format!("WS#{}", ws.as_str())
}
pub fn integration_key(pn: &PhoneNumberId) -> (String, String) {
    (format!("PN#{}", pn.as_str()), "INTEGRATION".into())
}
/// A number's place in its workspace's list of numbers (GSI1): `INTEGRATION#<phone_number_id>`.
pub fn integration_list_sk(pn: &PhoneNumberId) -> String {
    format!("{INTEGRATION_PREFIX}{}", pn.as_str())
}
pub(super) const INTEGRATION_PREFIX: &str = "INTEGRATION#";
/// The number an [`integration_list_sk`] names; `None` for any other string.
pub(super) fn integration_list_number(sk: &str) -> Option<PhoneNumberId> {
    sk.strip_prefix(INTEGRATION_PREFIX)
        .and_then(|pn| PhoneNumberId::parse(pn).ok())
}
pub fn workspace_key(ws: &WorkspaceId) -> (String, String) {
    (workspace_partition(ws), "WORKSPACE".into())
}
pub fn ai_config_key(ws: &WorkspaceId) -> (String, String) {
    (workspace_partition(ws), "AI_CONFIG".into())
}
/// A workspace's onboarding record (its Kapso customer, latest setup link, connected number).
pub fn onboarding_key(ws: &WorkspaceId) -> (String, String) {
    (workspace_partition(ws), "ONBOARDING".into())
}
/// Which workspace a Kapso customer belongs to.
pub fn kapso_customer_key(customer: &KapsoCustomerId) -> (String, String) {
    (format!("KC#{}", customer.as_str()), "KAPSO_CUSTOMER".into())
}
/// A setup link we created.
pub fn setup_link_key(id: &SetupLinkId) -> (String, String) {
    (format!("SETUP#{}", id.as_str()), "SETUP".into())
}

// ----- contacts, their notes and conversations -------------------------------------------------

/// A contact's partition, `CT#<workspace_id>#<wa_id>`: the contact, its notes and its
/// conversations.
pub fn contact_partition(ws: &WorkspaceId, wa_id: &WaId) -> String {
    format!("{}{}", workspace_contacts_prefix(ws), wa_id.as_str())
}
/// What every contact partition of a workspace starts with, `CT#<workspace_id>#`.
pub(super) fn workspace_contacts_prefix(ws: &WorkspaceId) -> String {
    format!("CT#{}#", ws.as_str())
}
pub fn contact_key(ws: &WorkspaceId, wa_id: &WaId) -> (String, String) {
    (contact_partition(ws, wa_id), "CONTACT".into())
}
/// A contact's GSI1 sort key, `CONTACT#<wa_id>`: contacts list by WhatsApp id, so a phone
/// prefix is a key condition.
pub(super) fn contact_phone_sk(wa_id: &WaId) -> String {
    contact_phone_prefix(wa_id.as_str())
}
/// The GSI1 sort key prefix of the contacts whose WhatsApp id starts with `digits` (all of
/// them for `""`).
pub(super) fn contact_phone_prefix(digits: &str) -> String {
    format!("{CONTACT_PHONE_PREFIX}{digits}")
}
pub(super) const CONTACT_PHONE_PREFIX: &str = "CONTACT#";
/// The sort key prefix of the contact item itself (`CONTACT`), for cursor checks.
pub(super) const CONTACT_SK: &str = "CONTACT";
/// The GSI2 partition of a workspace's contacts by name, `CTNAME#<workspace_id>`.
pub(super) fn contact_name_partition(ws: &WorkspaceId) -> String {
    format!("CTNAME#{}", ws.as_str())
}
/// A contact's GSI2 sort key: its folded name, then its id (names are not unique).
pub(super) fn contact_name_sk(name: &str, wa_id: &WaId) -> String {
    format!("{}#{}", fold_name(name), wa_id.as_str())
}
/// A note on a contact: `CT#<workspace_id>#<wa_id>` / `NOTE#<ulid>`.
pub fn note_key(ws: &WorkspaceId, wa_id: &WaId, id: &str) -> (String, String) {
    (contact_partition(ws, wa_id), format!("{NOTE_PREFIX}{id}"))
}
pub(super) const NOTE_PREFIX: &str = "NOTE#";
pub fn conversation_key(ws: &WorkspaceId, wa_id: &WaId, id: &ConversationId) -> (String, String) {
    (
        contact_partition(ws, wa_id),
        format!("{CONVERSATION_PREFIX}{}", id.as_str()),
    )
}
/// What the sort key of a conversation (table) and its place in the activity list (GSI1)
/// start with.
pub(super) const CONVERSATION_PREFIX: &str = "CONV#";
/// A conversation's GSI1 sort key: `CONV#<activity ms, 15 digits>#<id>`, so a workspace's
/// conversations list newest activity first, and `updatedSince` is a key condition.
pub(super) fn conversation_activity_sk(id: &ConversationId, at: OffsetDateTime) -> String {
    format!("{}{}", conversation_activity_from(millis(at)), id.as_str())
}
/// The lowest activity sort key at `ms`: every conversation active then or later sorts at or
/// after it.
pub(super) fn conversation_activity_from(ms: i128) -> String {
    format!("{CONVERSATION_PREFIX}{ms:015}#")
}
/// Above every activity sort key.
pub(super) const CONVERSATION_ACTIVITY_END: &str = "CONV#~";
/// The GSI2 key that finds a conversation by its id, within its workspace only.
pub(super) fn conversation_id_key(ws: &WorkspaceId, id: &ConversationId) -> (String, String) {
    (
        format!("{CONVERSATION_PREFIX}{}#{}", ws.as_str(), id.as_str()),
        "CONVERSATION".into(),
    )
}

// ----- messages -------------------------------------------------------------------------------

pub fn message_key(wamid: &Wamid) -> (String, String) {
    (
        format!("{MESSAGE_PREFIX}{}", wamid.as_str()),
        MESSAGE_SK.into(),
    )
}
pub(super) const MESSAGE_PREFIX: &str = "MSG#";
pub(super) const MESSAGE_SK: &str = "MESSAGE";
/// The GSI1 partition of a conversation's messages, `CONV#<conversation_id>`.
pub(super) fn conversation_messages_partition(id: &ConversationId) -> String {
    format!("{CONVERSATION_PREFIX}{}", id.as_str())
}
/// A message's GSI1 sort key: `<timestamp ms, 15 digits>#<wamid>`, chronological.
pub(super) fn message_position_sk(at: OffsetDateTime, wamid: &Wamid) -> String {
    format!("{:015}#{}", millis(at), wamid.as_str())
}
/// Below every [`message_position_sk`].
pub(super) const MESSAGE_POSITION_START: &str = "0";
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
        early_partition(wamid),
        format!("STATUS#{}", status.as_str()),
    )
}
/// The partition of the statuses that arrived before `wamid` was stored.
pub(super) fn early_partition(wamid: &Wamid) -> String {
    format!("EARLY#{}", wamid.as_str())
}

// ----- quick replies ----------------------------------------------------------------------------

/// A quick reply: `WS#<workspace_id>` / `QUICK_REPLY#<id>`.
pub fn quick_reply_key(ws: &WorkspaceId, id: &str) -> (String, String) {
    (workspace_partition(ws), format!("{QUICK_REPLY_PREFIX}{id}"))
}
pub(super) const QUICK_REPLY_PREFIX: &str = "QUICK_REPLY#";
/// How many quick replies a workspace has: `WS#<workspace_id>` / `QUICK_REPLY_COUNT`, moved in
/// the transaction that creates or deletes one.
pub fn quick_reply_count_key(ws: &WorkspaceId) -> (String, String) {
    (workspace_partition(ws), "QUICK_REPLY_COUNT".into())
}
/// The guard item of a quick reply's shortcut: `WS#<workspace_id>` / `SHORTCUT#<shortcut>`.
pub(super) fn shortcut_key(ws: &WorkspaceId, shortcut: &str) -> (String, String) {
    (workspace_partition(ws), format!("SHORTCUT#{shortcut}"))
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
        workspace_partition(ws),
        format!("{REMINDER_PREFIX}{}", id.as_str()),
    )
}
/// What a reminder's sort key and its place in the list (GSI1) start with.
pub(super) const REMINDER_PREFIX: &str = "REMINDER#";
/// An `Idempotency-Key` of a reminder creation (`WS#<workspace_id>` /
/// `REMINDER_IDEMPOTENCY#<sha256 of the key>`), kept a day.
pub fn reminder_idempotency_key(ws: &WorkspaceId, idempotency_key: &str) -> (String, String) {
    use sha2::Digest;
    (
        workspace_partition(ws),
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
    format!("{REMINDER_PREFIX}{due_ms:015}#{}", id.as_str())
}
/// The lowest list sort key of a reminder due at `due_ms`.
pub(super) fn reminder_list_from(due_ms: i128) -> String {
    format!("{REMINDER_PREFIX}{due_ms:015}")
}
/// The highest list sort key of a reminder due at `due_ms`.
pub(super) fn reminder_list_through(due_ms: i128) -> String {
    format!("{REMINDER_PREFIX}{due_ms:015}#~")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout of docs/data-model.md, written out: a change here is a data migration.
    #[test]
    fn every_key_is_laid_out_as_the_data_model_says() {
        let ws = WorkspaceId::parse("ws1").unwrap();
        let wa = WaId::parse("15551234567").unwrap();
        let pn = PhoneNumberId::parse("987654321").unwrap();
        let conv = ConversationId::parse("01JCONV").unwrap();
        let wamid = Wamid::parse("wamid.X").unwrap();
        let at = OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_000_000).unwrap();
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());

        assert_eq!(workspace_key(&ws), pair("WS#ws1", "WORKSPACE"));
        assert_eq!(integration_list_sk(&pn), "INTEGRATION#987654321");
        assert_eq!(
            integration_list_number("INTEGRATION#987654321"),
            Some(pn.clone())
        );
        assert_eq!(integration_list_number("PN#987654321"), None);
        assert_eq!(contact_key(&ws, &wa), pair("CT#ws1#15551234567", "CONTACT"));
        assert_eq!(contact_phone_sk(&wa), "CONTACT#15551234567");
        assert_eq!(contact_phone_prefix("1555"), "CONTACT#1555");
        assert_eq!(contact_name_partition(&ws), "CTNAME#ws1");
        assert_eq!(
            contact_name_sk("  Ana  Maria ", &wa),
            "ana maria#15551234567"
        );
        assert_eq!(
            note_key(&ws, &wa, "01JNOTE"),
            pair("CT#ws1#15551234567", "NOTE#01JNOTE")
        );
        assert_eq!(
            conversation_key(&ws, &wa, &conv),
            pair("CT#ws1#15551234567", "CONV#01JCONV")
        );
        assert_eq!(
            conversation_activity_sk(&conv, at),
            "CONV#001700000000123#01JCONV"
        );
        assert_eq!(
            conversation_id_key(&ws, &conv),
            pair("CONV#ws1#01JCONV", "CONVERSATION")
        );
        assert_eq!(conversation_messages_partition(&conv), "CONV#01JCONV");
        assert_eq!(message_position_sk(at, &wamid), "001700000000123#wamid.X");
        assert_eq!(message_key(&wamid), pair("MSG#wamid.X", "MESSAGE"));
        assert_eq!(
            early_key(&wamid, MessageStatus::Delivered),
            pair("EARLY#wamid.X", "STATUS#delivered")
        );
        assert_eq!(
            quick_reply_key(&ws, "01JQR"),
            pair("WS#ws1", "QUICK_REPLY#01JQR")
        );
        assert_eq!(
            shortcut_key(&ws, "/hours"),
            pair("WS#ws1", "SHORTCUT#/hours")
        );
        assert_eq!(
            quick_reply_count_key(&ws),
            pair("WS#ws1", "QUICK_REPLY_COUNT")
        );
        assert_eq!(reminder_list_from(5), "REMINDER#000000000000005");
        assert_eq!(reminder_list_through(5), "REMINDER#000000000000005#~");
        assert_eq!(integration_key(&pn), pair("PN#987654321", "INTEGRATION"));
        assert_eq!(ai_config_key(&ws), pair("WS#ws1", "AI_CONFIG"));
        assert_eq!(onboarding_key(&ws), pair("WS#ws1", "ONBOARDING"));
        assert_eq!(
            kapso_customer_key(&KapsoCustomerId::parse("cus_1").unwrap()),
            pair("KC#cus_1", "KAPSO_CUSTOMER")
        );
        assert_eq!(
            setup_link_key(&SetupLinkId::parse("sl_1").unwrap()),
            pair("SETUP#sl_1", "SETUP")
        );
        let intent = ReplyIntent {
            conversation_id: conv.clone(),
            trigger: wamid.clone(),
        };
        assert_eq!(
            intent_key(&intent),
            pair("INTENT#01JCONV#wamid.X", "INTENT")
        );
        assert_eq!(idempotency_key(&ws, "k-1"), pair("IDEMP#ws1#k-1", "IDEMP"));
        assert_eq!(failed_key("evt"), pair("FAILED#evt", "FAILED"));
        assert_eq!(thread_attr(&pn, "bot_paused"), "pn#987654321#bot_paused");
        let reminder = ReminderId::parse("01JREM0000000000000000000A").unwrap();
        assert_eq!(
            reminder_key(&ws, &reminder),
            pair("WS#ws1", "REMINDER#01JREM0000000000000000000A")
        );
        assert_eq!(
            reminder_idempotency_key(&ws, "verify-me"),
            pair(
                "WS#ws1",
                // `printf verify-me | sha256sum`
                "REMINDER_IDEMPOTENCY#d757afa8f14ef7434c81a75fd826537c6b13a8dadd65363b0fd10f1ec2cb211f"
            )
        );
        let shard = reminder_due_pk(&reminder);
        let n: u16 = shard
            .strip_prefix("REMINDER_DUE#")
            .unwrap()
            .parse()
            .unwrap();
        assert!(n < REMINDER_DUE_SHARDS, "{shard}");
        assert_eq!(
            shard,
            reminder_due_pk(&reminder),
            "the same shard every time"
        );
        assert_eq!(
            reminder_due_sk(5, &reminder),
            "000000000000005#01JREM0000000000000000000A"
        );
        assert_eq!(reminder_due_bound(5), "000000000000005#~");
        assert_eq!(
            reminder_list_sk(5, &reminder),
            "REMINDER#000000000000005#01JREM0000000000000000000A"
        );
    }
}
