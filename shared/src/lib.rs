//! The shared crate: the domain of the WhatsApp backend, its ports, and the adapters behind them.
//!
//! Domain modules (`ids`, `envelope`, `webhook`, `signature`, `ingest`) never import an SDK crate;
//! SDK code lives under `adapters`.

pub mod adapters;
pub mod config;
pub mod envelope;
pub mod ids;
pub mod ingest;
pub mod queue;
pub mod secrets;
pub mod signature;
pub mod telemetry;
pub mod webhook;
