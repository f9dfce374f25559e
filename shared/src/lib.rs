//! The shared crate: the domain of the WhatsApp backend, its ports, and the adapters behind them.
//!
//! Domain modules (`ids`, `envelope`, `webhook`, `signature`, `ingest`) never import an SDK crate;
//! SDK code lives under `adapters`.

pub mod adapters;
pub mod ai;
pub mod config;
pub mod crm;
pub mod dashboard;
pub mod envelope;
pub mod ids;
pub mod ingest;
pub mod optout;
pub mod processor;
pub mod queue;
pub mod retry;
pub mod secrets;
pub mod signature;
pub mod store;
pub mod telemetry;
pub mod webhook;
pub mod whatsapp;
