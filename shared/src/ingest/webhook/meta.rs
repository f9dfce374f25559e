//! Meta WhatsApp Cloud API webhook payloads (`object: whatsapp_business_account`).
//!
//! Two depths of parsing. Ingest reads only the outline ([`Notification`] with each message and
//! status kept raw, plus a small head) so that a field it does not need can never make it drop a
//! delivery. The processor reads the whole [`InboundMessage`], whose content covers every message
//! type Meta documents and keeps unknown types instead of rejecting them.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The outline of a delivery.
#[derive(Debug, Deserialize)]
pub struct Notification<'a> {
    pub object: String,
    #[serde(default, borrow)]
    pub entry: Vec<Entry<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Entry<'a> {
    /// The WhatsApp Business Account id.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default, borrow)]
    pub changes: Vec<Change<'a>>,
}

#[derive(Debug, Deserialize)]
pub struct Change<'a> {
    pub field: String,
    #[serde(borrow)]
    pub value: Option<&'a RawValue>,
}

/// The value of a `messages` change, with each event kept raw.
#[derive(Debug, Deserialize)]
pub struct MessagesValue<'a> {
    pub metadata: Metadata,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default, borrow)]
    pub messages: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    pub statuses: Vec<&'a RawValue>,
    #[serde(default, borrow)]
    pub errors: Vec<&'a RawValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    #[serde(default)]
    pub display_phone_number: Option<String>,
    pub phone_number_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    #[serde(default)]
    pub profile: Option<Profile>,
    /// The phone number. Omitted for a user who hides it behind a username.
    #[serde(default)]
    pub wa_id: Option<String>,
    /// The business-scoped user id (BSUID), sent for every user since April 2026.
    #[serde(default)]
    pub user_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub name: Option<String>,
}

/// What ingest needs of a message: who, which, when, what type.
#[derive(Debug, Deserialize)]
pub struct MessageHead {
    pub id: String,
    /// The sender's phone number; omitted when they hide it behind a username.
    #[serde(default)]
    pub from: Option<String>,
    /// The sender's business-scoped user id (BSUID).
    #[serde(default)]
    pub from_user_id: Option<String>,
    #[serde(default)]
    pub timestamp: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// What ingest needs of a status.
#[derive(Debug, Deserialize)]
pub struct StatusHead {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The recipient's phone number; may be omitted for a message sent to a BSUID.
    #[serde(default)]
    pub recipient_id: Option<String>,
    /// The recipient's business-scoped user id (BSUID).
    #[serde(default)]
    pub recipient_user_id: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// The full message model, read by the processor.

/// A message a customer sent. Meta names the type in `type` and puts the content in the
/// sibling field of that name, so every content field is optional here and [`content`] picks.
///
/// [`content`]: InboundMessage::content
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub id: String,
    /// The customer's wa_id. Kapso's copy of the message leaves it out, and so does Meta's
    /// for a user who hides their number behind a username.
    #[serde(default)]
    pub from: Option<String>,
    /// The customer's business-scoped user id (BSUID).
    #[serde(default)]
    pub from_user_id: Option<String>,
    pub timestamp: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub context: Option<Context>,
    #[serde(default)]
    pub text: Option<Text>,
    #[serde(default)]
    pub image: Option<Media>,
    #[serde(default)]
    pub audio: Option<Media>,
    #[serde(default)]
    pub video: Option<Media>,
    #[serde(default)]
    pub document: Option<Media>,
    #[serde(default)]
    pub sticker: Option<Media>,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub contacts: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    pub interactive: Option<Interactive>,
    #[serde(default)]
    pub button: Option<Button>,
    #[serde(default)]
    pub reaction: Option<Reaction>,
    #[serde(default)]
    pub order: Option<Order>,
    #[serde(default)]
    pub system: Option<System>,
    #[serde(default)]
    pub referral: Option<serde_json::Value>,
    #[serde(default)]
    pub errors: Option<Vec<ErrorObject>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Context {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub forwarded: Option<bool>,
    #[serde(default)]
    pub frequently_forwarded: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Text {
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Media {
    pub id: String,
    #[serde(default)]
    pub mime_type: Option<String>,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub caption: Option<String>,
    #[serde(default)]
    pub filename: Option<String>,
    #[serde(default)]
    pub voice: Option<bool>,
    #[serde(default)]
    pub animated: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub latitude: f64,
    pub longitude: f64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interactive {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub button_reply: Option<Choice>,
    #[serde(default)]
    pub list_reply: Option<Choice>,
    #[serde(default)]
    pub nfm_reply: Option<NfmReply>,
}

/// A tapped reply button or list row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// A WhatsApp Flow's reply. `response_json` is a JSON document in a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NfmReply {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    pub response_json: String,
}

/// A tapped quick-reply button of a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Button {
    #[serde(default)]
    pub payload: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reaction {
    pub message_id: String,
    /// Absent when a reaction is removed.
    #[serde(default)]
    pub emoji: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub catalog_id: String,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub product_items: Vec<ProductItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductItem {
    pub product_retailer_id: String,
    pub quantity: serde_json::Value,
    pub item_price: serde_json::Value,
    pub currency: String,
}

/// A system notice, e.g. the customer changed their number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct System {
    #[serde(default)]
    pub body: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub wa_id: Option<String>,
    #[serde(default)]
    pub new_wa_id: Option<String>,
    #[serde(default)]
    pub customer: Option<String>,
    #[serde(default)]
    pub identity: Option<String>,
}

/// Meta's error object, in webhooks and in API responses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorObject {
    pub code: i64,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub error_data: Option<ErrorData>,
    #[serde(default)]
    pub href: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorData {
    #[serde(default)]
    pub details: Option<String>,
}

/// The content of an inbound message, picked by its `type`.
#[derive(Debug, Clone, PartialEq)]
pub enum Content<'a> {
    Text(&'a Text),
    Image(&'a Media),
    Audio(&'a Media),
    Video(&'a Media),
    Document(&'a Media),
    Sticker(&'a Media),
    Location(&'a Location),
    Contacts(&'a [serde_json::Value]),
    ButtonReply(&'a Choice),
    ListReply(&'a Choice),
    FlowReply(&'a NfmReply),
    Button(&'a Button),
    Reaction(&'a Reaction),
    Order(&'a Order),
    System(&'a System),
    /// Meta's `unsupported` type, a type this code does not know yet, or a type whose content
    /// field is missing. Kept so nothing a customer sent is lost.
    Unsupported {
        kind: &'a str,
    },
}

impl InboundMessage {
    pub fn content(&self) -> Content<'_> {
        let unsupported = Content::Unsupported { kind: &self.kind };
        match self.kind.as_str() {
            "text" => self.text.as_ref().map(Content::Text),
            "image" => self.image.as_ref().map(Content::Image),
            "audio" => self.audio.as_ref().map(Content::Audio),
            "video" => self.video.as_ref().map(Content::Video),
            "document" => self.document.as_ref().map(Content::Document),
            "sticker" => self.sticker.as_ref().map(Content::Sticker),
            "location" => self.location.as_ref().map(Content::Location),
            "contacts" => self.contacts.as_deref().map(Content::Contacts),
            "interactive" => self
                .interactive
                .as_ref()
                .and_then(|i| match i.kind.as_str() {
                    "button_reply" => i.button_reply.as_ref().map(Content::ButtonReply),
                    "list_reply" => i.list_reply.as_ref().map(Content::ListReply),
                    "nfm_reply" => i.nfm_reply.as_ref().map(Content::FlowReply),
                    _ => None,
                }),
            "button" => self.button.as_ref().map(Content::Button),
            "reaction" => self.reaction.as_ref().map(Content::Reaction),
            "order" => self.order.as_ref().map(Content::Order),
            "system" => self.system.as_ref().map(Content::System),
            _ => None,
        }
        .unwrap_or(unsupported)
    }

    /// The text a person would read: the body, caption, choice title, and so on.
    pub fn text(&self) -> Option<&str> {
        match self.content() {
            Content::Text(t) => Some(&t.body),
            Content::Image(m) | Content::Video(m) | Content::Document(m) => m.caption.as_deref(),
            Content::ButtonReply(c) | Content::ListReply(c) => Some(&c.title),
            Content::Button(b) => Some(&b.text),
            Content::Reaction(r) => r.emoji.as_deref(),
            Content::Order(o) => o.text.as_deref(),
            Content::System(s) => s.body.as_deref(),
            Content::FlowReply(f) => f.body.as_deref(),
            Content::Location(l) => l.name.as_deref(),
            _ => None,
        }
    }
}

/// A delivery status of a message the business sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub id: String,
    pub status: String,
    pub timestamp: String,
    /// The recipient's phone number; may be omitted for a message sent to a BSUID.
    #[serde(default)]
    pub recipient_id: Option<String>,
    /// The recipient's business-scoped user id (BSUID).
    #[serde(default)]
    pub recipient_user_id: Option<String>,
    #[serde(default)]
    pub biz_opaque_callback_data: Option<String>,
    #[serde(default)]
    pub conversation: Option<serde_json::Value>,
    #[serde(default)]
    pub pricing: Option<serde_json::Value>,
    #[serde(default)]
    pub errors: Vec<ErrorObject>,
}
