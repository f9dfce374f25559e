//! AI replies: which model answers a contact, how it is called, and what answers when none can.
//!
//! `router` picks Grok or SEA-LION per contact, `llm` calls an OpenAI-compatible chat endpoint,
//! `responder` ties them together with failover inside a deadline, and `offline` is the
//! deterministic fallback used when no provider is configured.

mod llm;
mod offline;
mod responder;
mod router;

use std::fmt;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

pub use llm::{LlmClient, LlmError};
pub use offline::{OFFLINE_MODEL, offline_reply};
pub use responder::AiResponder;
pub use router::route;

/// xAI's OpenAI-compatible API root.
pub const GROK_DEFAULT_BASE_URL: &str = "https://api.x.ai/v1";
/// The Grok model used when none is configured: the faster of the two offered.
pub const GROK_DEFAULT_MODEL: &str = "grok-3";
/// The SEA-LION model as Ollama names it.
pub const SEALION_DEFAULT_MODEL: &str = "aisingapore/Gemma-SEA-LION-v4-27B-IT";
/// Ollama ignores the key, but OpenAI-compatible clients must send one.
pub const SEALION_DUMMY_KEY: &str = "ollama";

/// Who produced a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderName {
    /// xAI's Grok.
    Grok,
    /// AI Singapore's SEA-LION, served by Ollama.
    Sealion,
    /// The built-in offline responder; no model was called.
    Offline,
}

impl ProviderName {
    /// The name as stored and logged; the same as its serialised form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grok => "grok",
            Self::Sealion => "sealion",
            Self::Offline => "offline",
        }
    }
}

impl fmt::Display for ProviderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where and how to reach one OpenAI-compatible chat provider.
///
/// `Debug` is safe to log: the key prints redacted.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Which provider this is, recorded on every completion it produces.
    pub name: ProviderName,
    /// The API root, e.g. `https://api.x.ai/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// The model to ask for.
    pub model: String,
    /// Sent as `Authorization: Bearer <key>`.
    pub api_key: SecretString,
}

impl ProviderConfig {
    /// Grok at `base_url`, with `grok-3` unless another model is given.
    pub fn grok(base_url: impl Into<String>, model: Option<String>, api_key: SecretString) -> Self {
        Self {
            name: ProviderName::Grok,
            base_url: base_url.into(),
            model: model.unwrap_or_else(|| GROK_DEFAULT_MODEL.to_owned()),
            api_key,
        }
    }

    /// SEA-LION behind Ollama's OpenAI-compatible `/v1` at `base_url`, with the dummy key Ollama
    /// accepts.
    pub fn sealion(base_url: impl Into<String>, model: Option<String>) -> Self {
        Self {
            name: ProviderName::Sealion,
            base_url: base_url.into(),
            model: model.unwrap_or_else(|| SEALION_DEFAULT_MODEL.to_owned()),
            api_key: SecretString::from(SEALION_DUMMY_KEY),
        }
    }
}

/// Who said a chat message, in the OpenAI chat format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions to the model.
    System,
    /// The customer.
    User,
    /// The business (earlier model or human replies).
    Assistant,
}

/// One turn of a conversation as sent to a model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role.
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// What to ask a model: the conversation so far and the sampling limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The conversation, oldest first, usually starting with a system prompt.
    pub messages: Vec<ChatMessage>,
    /// Sampling temperature.
    pub temperature: f32,
    /// Upper bound on the reply's length, in tokens.
    pub max_tokens: u32,
}

/// What a reply cost and where it came from; stored on the outbound message.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Completion {
    /// The reply to send.
    pub text: String,
    /// Who produced it.
    pub provider: ProviderName,
    /// The model that produced it, as the provider reported it.
    pub model: String,
    /// Wall time of the call that produced it.
    pub latency_ms: u64,
    /// Time to the first token; `None` because replies are not streamed.
    pub first_token_ms: Option<u64>,
    /// Tokens in the prompt, if the provider reported usage.
    pub prompt_tokens: Option<u32>,
    /// Tokens in the reply, if the provider reported usage.
    pub completion_tokens: Option<u32>,
    /// Prompt plus reply tokens, if the provider reported usage.
    pub total_tokens: Option<u32>,
    /// The provider that was tried first and failed, when this reply came from the other one.
    pub failover_from: Option<ProviderName>,
}
