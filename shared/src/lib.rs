//! The shared crate: the domain of the WhatsApp backend, its ports, and the adapters behind them.
//!
//! One folder per capability, each with its use case, its ports and its domain types:
//! - `ingest`: verify a webhook delivery, split it into envelopes, enqueue them;
//! - `conversations`: the message processor, storing contacts, conversations, messages and
//!   statuses exactly once and answering with the AI;
//! - `dashboard`: the send API's use cases (who is calling, and what they may read and change in
//!   their own workspace);
//! - `onboarding`: connecting a WhatsApp number to a workspace (Kapso setup links and their
//!   callbacks, connection status).
//!
//! The cross-cutting pieces sit beside them: `ids`, `envelope` (the unit that travels from
//! ingest to the processor), `whatsapp` (the one WhatsApp client), `ai`, `secrets`, `config`,
//! `telemetry` and `retry`. Domain modules never import an SDK crate; SDK code lives under
//! `adapters`.

pub mod adapters;
pub mod ai;
pub mod config;
pub mod conversations;
pub mod dashboard;
pub mod deadline;
pub mod envelope;
pub mod ids;
pub mod ingest;
pub mod onboarding;
pub mod reminders;
pub mod retry;
pub mod secrets;
pub mod telemetry;
pub mod whatsapp;
