//! The offline responder: what answers when no model is configured, so the pipeline still works end
//! to end in a demo or a fresh deployment, and the customer is never left without a reply.

use std::time::Instant;

use super::{ChatRequest, Completion, ProviderName, Role};

/// The model name recorded on offline replies, so they are never mistaken for a model's.
pub const OFFLINE_MODEL: &str = "offline-responder-v1";

/// How much of the customer's message is quoted back; enough to show it was read, short enough
/// for a phone screen.
const QUOTE_MAX_CHARS: usize = 80;

/// The built-in offline responder: deterministic, clearly labelled (provider Offline, model
/// `offline-responder-v1`), and useful in a demo: it acknowledges the customer's last message
/// (quoted, truncated to 80 characters) and says a person will follow up. Same input → same
/// text. Zero tokens, latency measured.
pub fn offline_reply(request: &ChatRequest) -> Completion {
    let started = Instant::now();
    let last_customer_message = request
        .messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| quote(&m.content))
        .filter(|q| !q.is_empty());
    let text = match last_customer_message {
        Some(quoted) => format!(
            "[Automated reply] Thanks for your message: \"{quoted}\". Our assistant is offline \
             right now, so a member of our team will follow up with you shortly."
        ),
        None => "[Automated reply] Thanks for getting in touch. Our assistant is offline right \
                 now, so a member of our team will follow up with you shortly."
            .to_owned(),
    };
    Completion {
        text,
        provider: ProviderName::Offline,
        model: OFFLINE_MODEL.to_owned(),
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        first_token_ms: None,
        prompt_tokens: Some(0),
        completion_tokens: Some(0),
        total_tokens: Some(0),
        failover_from: None,
    }
}

/// The message on one line, cut at a character (not byte) boundary so multi-byte scripts stay
/// valid.
fn quote(content: &str) -> String {
    let one_line = content.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= QUOTE_MAX_CHARS {
        return one_line;
    }
    let cut: String = one_line.chars().take(QUOTE_MAX_CHARS - 1).collect();
    format!("{}…", cut.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::ChatMessage;

    fn request_with(messages: Vec<ChatMessage>) -> ChatRequest {
        ChatRequest {
            messages,
            temperature: 0.7,
            max_tokens: 256,
        }
    }

    #[test]
    fn the_offline_reply_is_deterministic_and_labelled_offline() {
        let request = request_with(vec![
            ChatMessage::new(Role::System, "be nice"),
            ChatMessage::new(Role::User, "Do you ship to Jakarta?"),
        ]);

        let first = offline_reply(&request);
        let second = offline_reply(&request);

        assert_eq!(first.text, second.text);
        assert_eq!(first.provider, ProviderName::Offline);
        assert_eq!(first.model, OFFLINE_MODEL);
        assert!(first.text.starts_with("[Automated reply]"));
        assert_eq!(first.total_tokens, Some(0));
        assert_eq!(first.failover_from, None);
    }

    #[test]
    fn the_offline_reply_quotes_the_last_customer_message_and_promises_a_person() {
        let request = request_with(vec![
            ChatMessage::new(Role::User, "Hello"),
            ChatMessage::new(Role::Assistant, "Hi! How can I help?"),
            ChatMessage::new(Role::User, "Do you ship\nto Jakarta?"),
        ]);

        let reply = offline_reply(&request);

        assert!(
            reply.text.contains("\"Do you ship to Jakarta?\""),
            "{}",
            reply.text
        );
        assert!(!reply.text.contains("Hello"));
        assert!(reply.text.contains("a member of our team will follow up"));
    }

    #[test]
    fn a_long_customer_message_is_quoted_truncated_to_eighty_characters() {
        let long = "á".repeat(200);
        let reply = offline_reply(&request_with(vec![ChatMessage::new(Role::User, long)]));

        let quoted = reply
            .text
            .split('"')
            .nth(1)
            .expect("the reply quotes the message");
        assert_eq!(quoted.chars().count(), QUOTE_MAX_CHARS);
        assert!(quoted.ends_with('…'));
    }

    #[test]
    fn a_request_without_a_customer_message_still_gets_a_polite_reply() {
        let reply = offline_reply(&request_with(vec![ChatMessage::new(Role::System, "x")]));

        assert!(reply.text.contains("Thanks for getting in touch"));
        assert!(!reply.text.contains('"'));
    }
}
