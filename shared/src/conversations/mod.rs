//! Conversations: the message processor's capability. One SQS batch of envelopes becomes
//! contacts, conversations, messages and statuses, stored exactly once, and at most one AI reply
//! per customer message.
//!
//! - `processor`: the use case;
//! - `model`: the CRM entities it reads and writes (integrations, contacts, conversations,
//!   messages, statuses, reply intents, AI settings);
//! - `store`: its ports, split by capability;
//! - `optout`: the opt-out and opt-in keywords.

pub mod model;
pub mod optout;
pub mod processor;
pub mod store;
