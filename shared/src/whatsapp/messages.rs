//! What the business can send, and the Cloud API JSON body of each kind.
//!
//! Bodies follow Meta's `POST /<PHONE_NUMBER_ID>/messages` shapes, which Kapso's proxy forwards
//! unchanged. Meta's documented limits are checked here, before any HTTP call, so a message that
//! can never be accepted fails fast instead of costing a round trip and a retry budget.

use serde_json::{Map, Value, json};

use super::error::WhatsAppError;
use crate::ids::{WaId, Wamid};

/// Longest text message body.
/// The longest template name WhatsApp accepts.
pub const MAX_TEMPLATE_NAME: usize = 512;

/// Whether `name` is a template name WhatsApp accepts: 1 to 512 lowercase letters, digits and
/// `_`.
pub fn is_template_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TEMPLATE_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub const MAX_TEXT_BODY: usize = 4096;
/// Longest media caption.
pub const MAX_CAPTION: usize = 1024;
/// Longest body of an interactive (buttons or list) message.
pub const MAX_INTERACTIVE_BODY: usize = 1024;
/// Longest text header or footer of an interactive message.
pub const MAX_HEADER_OR_FOOTER: usize = 60;
/// Most reply buttons in one message.
pub const MAX_REPLY_BUTTONS: usize = 3;
/// Longest reply-button title, and longest list-opening button label.
pub const MAX_BUTTON_TITLE: usize = 20;
/// Longest reply-button id.
pub const MAX_BUTTON_ID: usize = 256;
/// Most list sections.
pub const MAX_LIST_SECTIONS: usize = 10;
/// Most list rows, all sections together.
pub const MAX_LIST_ROWS: usize = 10;
/// Longest list section title and row title.
pub const MAX_LIST_TITLE: usize = 24;
/// Longest list row description.
pub const MAX_ROW_DESCRIPTION: usize = 72;
/// Longest list row id.
pub const MAX_ROW_ID: usize = 200;
/// Longest `biz_opaque_callback_data`.
pub const MAX_CALLBACK_DATA: usize = 512;

/// One message to send, or one inbound message to mark as read.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The customer. `None` only for [`OutgoingKind::MarkRead`], which names a message instead.
    pub to: Option<WaId>,
    pub kind: OutgoingKind,
    /// Echoed back by Meta on this message's status webhooks, so a status can be tied to its cause.
    pub biz_opaque_callback_data: Option<String>,
}

/// The content of an [`Outgoing`] message.
#[derive(Debug, Clone, PartialEq)]
pub enum OutgoingKind {
    Text {
        body: String,
        /// Whether WhatsApp should render a preview of the first URL in the body.
        preview_url: bool,
        /// The message this one quotes.
        reply_to: Option<Wamid>,
    },
    /// An approved template; the only kind allowed outside the 24-hour customer service window.
    Template {
        name: String,
        /// The template's language code, e.g. `en_US`.
        language: String,
        /// Meta's component objects (header/body/button parameters), passed through as given.
        components: Vec<Value>,
    },
    Media {
        kind: MediaKind,
        source: MediaSource,
        /// Only images, videos and documents carry one.
        caption: Option<String>,
        /// Only documents carry one.
        filename: Option<String>,
    },
    /// Up to three quick-reply buttons.
    Buttons {
        body: String,
        buttons: Vec<ReplyButton>,
        header: Option<String>,
        footer: Option<String>,
    },
    /// A button that opens a list of up to ten rows.
    List {
        body: String,
        /// The label of the button that opens the list.
        button: String,
        sections: Vec<ListSection>,
        header: Option<String>,
        footer: Option<String>,
    },
    /// An emoji reaction to a message; an empty emoji removes an earlier reaction.
    Reaction { message_id: Wamid, emoji: String },
    /// Marks an inbound message (and all before it) as read, optionally showing "typing…".
    MarkRead {
        message_id: Wamid,
        typing_indicator: bool,
    },
}

/// Which media message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Image,
    Document,
    Audio,
    Video,
    Sticker,
}

impl MediaKind {
    /// Meta's `type` value, which is also the name of the field holding the media object.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Document => "document",
            Self::Audio => "audio",
            Self::Video => "video",
            Self::Sticker => "sticker",
        }
    }

    fn takes_caption(self) -> bool {
        matches!(self, Self::Image | Self::Video | Self::Document)
    }
}

/// Where the media comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaSource {
    /// A public HTTPS URL Meta downloads from.
    Link(String),
    /// The id of media already uploaded to Meta.
    Id(String),
}

/// One quick-reply button; `id` comes back in the customer's `button_reply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyButton {
    pub id: String,
    pub title: String,
}

/// One section of a list message. The title may be empty only when there is one section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListSection {
    pub title: String,
    pub rows: Vec<ListRow>,
}

/// One choosable row; `id` comes back in the customer's `list_reply`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRow {
    pub id: String,
    pub title: String,
    pub description: Option<String>,
}

impl Outgoing {
    /// A message of any kind to `to`.
    pub fn new(to: WaId, kind: OutgoingKind) -> Self {
        Self {
            to: Some(to),
            kind,
            biz_opaque_callback_data: None,
        }
    }

    /// A plain text message without link preview.
    pub fn text(to: WaId, body: impl Into<String>) -> Self {
        Self::new(
            to,
            OutgoingKind::Text {
                body: body.into(),
                preview_url: false,
                reply_to: None,
            },
        )
    }

    /// A template message.
    pub fn template(
        to: WaId,
        name: impl Into<String>,
        language: impl Into<String>,
        components: Vec<Value>,
    ) -> Self {
        Self::new(
            to,
            OutgoingKind::Template {
                name: name.into(),
                language: language.into(),
                components,
            },
        )
    }

    /// A reaction to `message_id`.
    pub fn reaction(to: WaId, message_id: Wamid, emoji: impl Into<String>) -> Self {
        Self::new(
            to,
            OutgoingKind::Reaction {
                message_id,
                emoji: emoji.into(),
            },
        )
    }

    /// Marks `message_id` as read, with a typing indicator if `typing`.
    pub fn mark_read(message_id: Wamid, typing: bool) -> Self {
        Self {
            to: None,
            kind: OutgoingKind::MarkRead {
                message_id,
                typing_indicator: typing,
            },
            biz_opaque_callback_data: None,
        }
    }

    /// Attaches data Meta echoes back on this message's status webhooks.
    pub fn with_callback_data(mut self, data: impl Into<String>) -> Self {
        self.biz_opaque_callback_data = Some(data.into());
        self
    }

    /// A short name of the kind, safe to log (it carries no content).
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            OutgoingKind::Text { .. } => "text",
            OutgoingKind::Template { .. } => "template",
            OutgoingKind::Media { kind, .. } => kind.as_str(),
            OutgoingKind::Buttons { .. } => "buttons",
            OutgoingKind::List { .. } => "list",
            OutgoingKind::Reaction { .. } => "reaction",
            OutgoingKind::MarkRead { .. } => "mark_read",
        }
    }

    /// Checks the limits Meta documents, so a message it would refuse is never sent.
    pub fn validate(&self) -> Result<(), WhatsAppError> {
        let is_mark_read = matches!(self.kind, OutgoingKind::MarkRead { .. });
        if !is_mark_read && self.to.is_none() {
            return Err(invalid("a message needs a recipient"));
        }
        if let Some(data) = &self.biz_opaque_callback_data {
            at_most("biz_opaque_callback_data", data, MAX_CALLBACK_DATA)?;
        }
        match &self.kind {
            OutgoingKind::Text { body, .. } => {
                not_empty("text body", body)?;
                at_most("text body", body, MAX_TEXT_BODY)
            }
            OutgoingKind::Template { name, language, .. } => {
                not_empty("template name", name)?;
                not_empty("template language", language)
            }
            OutgoingKind::Media {
                kind,
                source,
                caption,
                filename,
            } => {
                let (MediaSource::Link(source) | MediaSource::Id(source)) = source;
                not_empty("media link or id", source)?;
                if let Some(caption) = caption {
                    if !kind.takes_caption() {
                        return Err(invalid(format!("{} cannot carry a caption", kind.as_str())));
                    }
                    at_most("caption", caption, MAX_CAPTION)?;
                }
                if filename.is_some() && *kind != MediaKind::Document {
                    return Err(invalid(format!(
                        "{} cannot carry a filename",
                        kind.as_str()
                    )));
                }
                Ok(())
            }
            OutgoingKind::Buttons {
                body,
                buttons,
                header,
                footer,
            } => {
                interactive_frame(body, header.as_deref(), footer.as_deref())?;
                if buttons.is_empty() || buttons.len() > MAX_REPLY_BUTTONS {
                    return Err(invalid(format!(
                        "a buttons message needs 1 to {MAX_REPLY_BUTTONS} buttons, not {}",
                        buttons.len()
                    )));
                }
                for b in buttons {
                    not_empty("button id", &b.id)?;
                    at_most("button id", &b.id, MAX_BUTTON_ID)?;
                    not_empty("button title", &b.title)?;
                    at_most("button title", &b.title, MAX_BUTTON_TITLE)?;
                }
                Ok(())
            }
            OutgoingKind::List {
                body,
                button,
                sections,
                header,
                footer,
            } => {
                interactive_frame(body, header.as_deref(), footer.as_deref())?;
                not_empty("list button", button)?;
                at_most("list button", button, MAX_BUTTON_TITLE)?;
                if sections.is_empty() || sections.len() > MAX_LIST_SECTIONS {
                    return Err(invalid(format!(
                        "a list needs 1 to {MAX_LIST_SECTIONS} sections, not {}",
                        sections.len()
                    )));
                }
                let rows: usize = sections.iter().map(|s| s.rows.len()).sum();
                if rows == 0 || rows > MAX_LIST_ROWS {
                    return Err(invalid(format!(
                        "a list needs 1 to {MAX_LIST_ROWS} rows in all, not {rows}"
                    )));
                }
                for section in sections {
                    if sections.len() > 1 {
                        not_empty("section title of a multi-section list", &section.title)?;
                    }
                    at_most("section title", &section.title, MAX_LIST_TITLE)?;
                    for row in &section.rows {
                        not_empty("row id", &row.id)?;
                        at_most("row id", &row.id, MAX_ROW_ID)?;
                        not_empty("row title", &row.title)?;
                        at_most("row title", &row.title, MAX_LIST_TITLE)?;
                        if let Some(d) = &row.description {
                            at_most("row description", d, MAX_ROW_DESCRIPTION)?;
                        }
                    }
                }
                Ok(())
            }
            // An empty emoji is how Meta removes a reaction, so it is allowed.
            OutgoingKind::Reaction { .. } | OutgoingKind::MarkRead { .. } => Ok(()),
        }
    }
}

fn invalid(message: impl Into<String>) -> WhatsAppError {
    WhatsAppError::InvalidParameter {
        code: None,
        message: message.into(),
    }
}

fn not_empty(what: &str, value: &str) -> Result<(), WhatsAppError> {
    if value.trim().is_empty() {
        return Err(invalid(format!("{what} is empty")));
    }
    Ok(())
}

fn at_most(what: &str, value: &str, max: usize) -> Result<(), WhatsAppError> {
    let len = value.chars().count();
    if len > max {
        return Err(invalid(format!(
            "{what} has {len} characters, more than the {max} allowed"
        )));
    }
    Ok(())
}

fn interactive_frame(
    body: &str,
    header: Option<&str>,
    footer: Option<&str>,
) -> Result<(), WhatsAppError> {
    not_empty("interactive body", body)?;
    at_most("interactive body", body, MAX_INTERACTIVE_BODY)?;
    if let Some(h) = header {
        at_most("header", h, MAX_HEADER_OR_FOOTER)?;
    }
    if let Some(f) = footer {
        at_most("footer", f, MAX_HEADER_OR_FOOTER)?;
    }
    Ok(())
}

/// The JSON body of `POST …/messages` for this message. Pure: it does not validate, see
/// [`Outgoing::validate`].
pub fn request_body(message: &Outgoing) -> Value {
    let mut reply_context = None;
    let (kind, content) = match &message.kind {
        OutgoingKind::MarkRead {
            message_id,
            typing_indicator,
        } => return mark_read_body(message_id, *typing_indicator),
        OutgoingKind::Text {
            body,
            preview_url,
            reply_to,
        } => {
            reply_context = reply_to
                .as_ref()
                .map(|id| json!({ "message_id": id.as_str() }));
            ("text", json!({ "body": body, "preview_url": preview_url }))
        }
        OutgoingKind::Template {
            name,
            language,
            components,
        } => {
            let mut template = Map::new();
            template.insert("name".into(), json!(name));
            template.insert("language".into(), json!({ "code": language }));
            // Meta treats `components` as optional; a template without parameters needs none.
            if !components.is_empty() {
                template.insert("components".into(), Value::Array(components.clone()));
            }
            ("template", Value::Object(template))
        }
        OutgoingKind::Media {
            kind,
            source,
            caption,
            filename,
        } => {
            let mut media = Map::new();
            match source {
                MediaSource::Link(link) => media.insert("link".into(), json!(link)),
                MediaSource::Id(id) => media.insert("id".into(), json!(id)),
            };
            if let Some(caption) = caption.as_ref().filter(|_| kind.takes_caption()) {
                media.insert("caption".into(), json!(caption));
            }
            if let Some(filename) = filename.as_ref().filter(|_| *kind == MediaKind::Document) {
                media.insert("filename".into(), json!(filename));
            }
            (kind.as_str(), Value::Object(media))
        }
        OutgoingKind::Buttons {
            body,
            buttons,
            header,
            footer,
        } => {
            let buttons: Vec<Value> = buttons
                .iter()
                .map(|b| json!({ "type": "reply", "reply": { "id": b.id, "title": b.title } }))
                .collect();
            (
                "interactive",
                interactive(
                    "button",
                    body,
                    header.as_deref(),
                    footer.as_deref(),
                    json!({ "buttons": buttons }),
                ),
            )
        }
        OutgoingKind::List {
            body,
            button,
            sections,
            header,
            footer,
        } => {
            let sections: Vec<Value> = sections.iter().map(list_section).collect();
            (
                "interactive",
                interactive(
                    "list",
                    body,
                    header.as_deref(),
                    footer.as_deref(),
                    json!({ "button": button, "sections": sections }),
                ),
            )
        }
        OutgoingKind::Reaction { message_id, emoji } => (
            "reaction",
            json!({ "message_id": message_id.as_str(), "emoji": emoji }),
        ),
    };

    let mut body = Map::new();
    body.insert("messaging_product".into(), json!("whatsapp"));
    body.insert("recipient_type".into(), json!("individual"));
    // A customer known only by their business-scoped user id is addressed with `recipient`;
    // Meta reads `to` first, so a BSUID never goes in `to`.
    match message.to.as_ref().map(|to| (to.phone(), to.bsuid())) {
        Some((Some(phone), _)) => {
            body.insert("to".into(), json!(phone));
        }
        Some((None, Some(bsuid))) => {
            body.insert("recipient".into(), json!(bsuid));
        }
        _ => {}
    }
    if let Some(data) = &message.biz_opaque_callback_data {
        body.insert("biz_opaque_callback_data".into(), json!(data));
    }
    if let Some(context) = reply_context {
        body.insert("context".into(), context);
    }
    body.insert("type".into(), json!(kind));
    body.insert(kind.into(), content);
    Value::Object(body)
}

// Mark-as-read names the inbound message rather than a recipient, and has no `type`.
fn mark_read_body(message_id: &Wamid, typing_indicator: bool) -> Value {
    let mut body = Map::new();
    body.insert("messaging_product".into(), json!("whatsapp"));
    body.insert("status".into(), json!("read"));
    body.insert("message_id".into(), json!(message_id.as_str()));
    if typing_indicator {
        body.insert("typing_indicator".into(), json!({ "type": "text" }));
    }
    Value::Object(body)
}

fn interactive(
    kind: &str,
    body: &str,
    header: Option<&str>,
    footer: Option<&str>,
    action: Value,
) -> Value {
    let mut interactive = Map::new();
    interactive.insert("type".into(), json!(kind));
    if let Some(header) = header {
        interactive.insert("header".into(), json!({ "type": "text", "text": header }));
    }
    interactive.insert("body".into(), json!({ "text": body }));
    if let Some(footer) = footer {
        interactive.insert("footer".into(), json!({ "text": footer }));
    }
    interactive.insert("action".into(), action);
    Value::Object(interactive)
}

fn list_section(section: &ListSection) -> Value {
    let rows: Vec<Value> = section
        .rows
        .iter()
        .map(|row| {
            let mut r = Map::new();
            r.insert("id".into(), json!(row.id));
            r.insert("title".into(), json!(row.title));
            if let Some(d) = &row.description {
                r.insert("description".into(), json!(d));
            }
            Value::Object(r)
        })
        .collect();
    let mut s = Map::new();
    // Meta requires a section title only when there are several sections.
    if !section.title.is_empty() {
        s.insert("title".into(), json!(section.title));
    }
    s.insert("rows".into(), Value::Array(rows));
    Value::Object(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer() -> WaId {
        WaId::parse("16505551234").unwrap()
    }

    fn wamid(raw: &str) -> Wamid {
        Wamid::parse(raw).unwrap()
    }

    fn media(kind: MediaKind, source: MediaSource, caption: Option<&str>) -> Outgoing {
        Outgoing::new(
            customer(),
            OutgoingKind::Media {
                kind,
                source,
                caption: caption.map(Into::into),
                filename: None,
            },
        )
    }

    fn buttons(count: usize, title: &str) -> Outgoing {
        Outgoing::new(
            customer(),
            OutgoingKind::Buttons {
                body: "Pick one".into(),
                buttons: (0..count)
                    .map(|i| ReplyButton {
                        id: format!("b{i}"),
                        title: title.into(),
                    })
                    .collect(),
                header: None,
                footer: None,
            },
        )
    }

    fn list(rows_per_section: &[usize]) -> Outgoing {
        Outgoing::new(
            customer(),
            OutgoingKind::List {
                body: "Our menu".into(),
                button: "See options".into(),
                sections: rows_per_section
                    .iter()
                    .enumerate()
                    .map(|(s, n)| ListSection {
                        title: format!("Section {s}"),
                        rows: (0..*n)
                            .map(|r| ListRow {
                                id: format!("s{s}r{r}"),
                                title: format!("Row {r}"),
                                description: None,
                            })
                            .collect(),
                    })
                    .collect(),
                header: None,
                footer: None,
            },
        )
    }

    fn is_invalid(result: Result<(), WhatsAppError>) -> bool {
        matches!(
            result,
            Err(WhatsAppError::InvalidParameter { code: None, .. })
        )
    }

    #[test]
    fn a_text_body_carries_the_text_the_preview_flag_and_the_quoted_message() {
        let message = Outgoing::new(
            customer(),
            OutgoingKind::Text {
                body: "See https://example.com".into(),
                preview_url: true,
                reply_to: Some(wamid("wamid.QUOTED")),
            },
        );
        assert_eq!(
            request_body(&message),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "16505551234",
                "type": "text",
                "context": { "message_id": "wamid.QUOTED" },
                "text": { "body": "See https://example.com", "preview_url": true }
            })
        );
    }

    #[test]
    fn a_message_to_a_customer_known_only_by_bsuid_uses_the_recipient_field_not_to() {
        let bsuid = WaId::parse("US.13491208655302741918").unwrap();
        assert_eq!(
            request_body(&Outgoing::text(bsuid, "Hi")),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "recipient": "US.13491208655302741918",
                "type": "text",
                "text": { "body": "Hi", "preview_url": false }
            })
        );
        let parent = WaId::parse("US.ENT.11815799212886844830").unwrap();
        let body = request_body(&Outgoing::reaction(parent, wamid("wamid.X"), "👍"));
        assert_eq!(body["recipient"], "US.ENT.11815799212886844830");
        assert!(body.get("to").is_none());
        assert!(
            Outgoing::text(WaId::parse("US.1").unwrap(), "Hi")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn a_text_that_quotes_nothing_has_no_context() {
        let body = request_body(&Outgoing::text(customer(), "Hi"));
        assert!(body.get("context").is_none());
        assert_eq!(body["text"], json!({ "body": "Hi", "preview_url": false }));
    }

    #[test]
    fn a_template_body_names_the_template_its_language_and_components() {
        let components = vec![json!({
            "type": "body",
            "parameters": [{ "type": "text", "text": "Ana" }]
        })];
        let message = Outgoing::template(customer(), "appointment_reminder", "en_US", components);
        assert_eq!(
            request_body(&message),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "16505551234",
                "type": "template",
                "template": {
                    "name": "appointment_reminder",
                    "language": { "code": "en_US" },
                    "components": [{
                        "type": "body",
                        "parameters": [{ "type": "text", "text": "Ana" }]
                    }]
                }
            })
        );
    }

    #[test]
    fn a_template_without_parameters_sends_no_components() {
        let body = request_body(&Outgoing::template(
            customer(),
            "hello_world",
            "en_US",
            vec![],
        ));
        assert_eq!(
            body["template"],
            json!({ "name": "hello_world", "language": { "code": "en_US" } })
        );
    }

    #[test]
    fn an_image_by_link_carries_its_caption() {
        let message = media(
            MediaKind::Image,
            MediaSource::Link("https://example.com/a.jpg".into()),
            Some("Our shop"),
        );
        let body = request_body(&message);
        assert_eq!(body["type"], "image");
        assert_eq!(
            body["image"],
            json!({ "link": "https://example.com/a.jpg", "caption": "Our shop" })
        );
    }

    #[test]
    fn a_document_by_id_carries_its_filename_and_caption() {
        let message = Outgoing::new(
            customer(),
            OutgoingKind::Media {
                kind: MediaKind::Document,
                source: MediaSource::Id("1013859600285441".into()),
                caption: Some("Your invoice".into()),
                filename: Some("invoice.pdf".into()),
            },
        );
        let body = request_body(&message);
        assert_eq!(body["type"], "document");
        assert_eq!(
            body["document"],
            json!({ "id": "1013859600285441", "caption": "Your invoice", "filename": "invoice.pdf" })
        );
    }

    #[test]
    fn audio_and_stickers_never_carry_a_caption_or_filename() {
        for kind in [MediaKind::Audio, MediaKind::Sticker] {
            let message = Outgoing::new(
                customer(),
                OutgoingKind::Media {
                    kind,
                    source: MediaSource::Id("42".into()),
                    caption: Some("ignored".into()),
                    filename: Some("ignored.ogg".into()),
                },
            );
            assert_eq!(request_body(&message)[kind.as_str()], json!({ "id": "42" }));
            assert!(is_invalid(message.validate()));
        }
    }

    #[test]
    fn a_buttons_body_follows_the_interactive_reply_button_shape() {
        let message = Outgoing::new(
            customer(),
            OutgoingKind::Buttons {
                body: "Confirm your booking?".into(),
                buttons: vec![
                    ReplyButton {
                        id: "yes".into(),
                        title: "Yes".into(),
                    },
                    ReplyButton {
                        id: "no".into(),
                        title: "No".into(),
                    },
                ],
                header: Some("Booking".into()),
                footer: Some("Reply any time".into()),
            },
        );
        assert_eq!(
            request_body(&message),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "16505551234",
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "header": { "type": "text", "text": "Booking" },
                    "body": { "text": "Confirm your booking?" },
                    "footer": { "text": "Reply any time" },
                    "action": { "buttons": [
                        { "type": "reply", "reply": { "id": "yes", "title": "Yes" } },
                        { "type": "reply", "reply": { "id": "no", "title": "No" } }
                    ] }
                }
            })
        );
    }

    #[test]
    fn a_list_body_follows_the_interactive_list_shape() {
        let message = Outgoing::new(
            customer(),
            OutgoingKind::List {
                body: "Choose a time".into(),
                button: "Times".into(),
                sections: vec![ListSection {
                    title: "Tomorrow".into(),
                    rows: vec![
                        ListRow {
                            id: "t9".into(),
                            title: "09:00".into(),
                            description: Some("With Ana".into()),
                        },
                        ListRow {
                            id: "t10".into(),
                            title: "10:00".into(),
                            description: None,
                        },
                    ],
                }],
                header: None,
                footer: None,
            },
        );
        assert_eq!(
            request_body(&message),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "16505551234",
                "type": "interactive",
                "interactive": {
                    "type": "list",
                    "body": { "text": "Choose a time" },
                    "action": {
                        "button": "Times",
                        "sections": [{
                            "title": "Tomorrow",
                            "rows": [
                                { "id": "t9", "title": "09:00", "description": "With Ana" },
                                { "id": "t10", "title": "10:00" }
                            ]
                        }]
                    }
                }
            })
        );
    }

    #[test]
    fn a_reaction_body_names_the_message_and_the_emoji() {
        let message = Outgoing::reaction(customer(), wamid("wamid.THEIRS"), "\u{1F44D}");
        assert_eq!(
            request_body(&message),
            json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "16505551234",
                "type": "reaction",
                "reaction": { "message_id": "wamid.THEIRS", "emoji": "\u{1F44D}" }
            })
        );
    }

    #[test]
    fn mark_read_has_no_recipient_or_type_and_asks_for_typing_only_when_requested() {
        let typing = Outgoing::mark_read(wamid("wamid.IN"), true).with_callback_data("ignored");
        assert_eq!(
            request_body(&typing),
            json!({
                "messaging_product": "whatsapp",
                "status": "read",
                "message_id": "wamid.IN",
                "typing_indicator": { "type": "text" }
            })
        );
        assert_eq!(
            request_body(&Outgoing::mark_read(wamid("wamid.IN"), false)),
            json!({ "messaging_product": "whatsapp", "status": "read", "message_id": "wamid.IN" })
        );
        assert!(typing.validate().is_ok());
    }

    #[test]
    fn callback_data_is_a_top_level_field() {
        let body = request_body(&Outgoing::text(customer(), "Hi").with_callback_data("conv-42"));
        assert_eq!(body["biz_opaque_callback_data"], "conv-42");
    }

    #[test]
    fn at_most_three_reply_buttons_are_valid() {
        assert!(buttons(3, "Ok").validate().is_ok());
        assert!(is_invalid(buttons(4, "Ok").validate()));
        assert!(is_invalid(buttons(0, "Ok").validate()));
    }

    #[test]
    fn button_titles_longer_than_twenty_characters_are_invalid() {
        assert!(buttons(1, &"é".repeat(20)).validate().is_ok());
        assert!(is_invalid(buttons(1, &"é".repeat(21)).validate()));
    }

    #[test]
    fn more_than_ten_list_rows_in_all_sections_are_invalid() {
        assert!(list(&[5, 5]).validate().is_ok());
        assert!(is_invalid(list(&[6, 5]).validate()));
    }

    #[test]
    fn a_list_of_several_sections_needs_section_titles() {
        let mut message = list(&[1, 1]);
        if let OutgoingKind::List { sections, .. } = &mut message.kind {
            sections[1].title.clear();
        }
        assert!(is_invalid(message.validate()));
    }

    #[test]
    fn a_text_longer_than_4096_characters_is_invalid() {
        assert!(
            Outgoing::text(customer(), "a".repeat(4096))
                .validate()
                .is_ok()
        );
        assert!(is_invalid(
            Outgoing::text(customer(), "a".repeat(4097)).validate()
        ));
        assert!(is_invalid(Outgoing::text(customer(), " ").validate()));
    }

    #[test]
    fn a_message_without_a_recipient_is_invalid() {
        let mut message = Outgoing::text(customer(), "Hi");
        message.to = None;
        assert!(is_invalid(message.validate()));
    }

    #[test]
    fn a_filename_on_anything_but_a_document_is_invalid() {
        let message = Outgoing::new(
            customer(),
            OutgoingKind::Media {
                kind: MediaKind::Image,
                source: MediaSource::Id("42".into()),
                caption: None,
                filename: Some("a.jpg".into()),
            },
        );
        assert!(is_invalid(message.validate()));
    }
}
