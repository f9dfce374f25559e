//! Reminders: messages a business schedules for a contact (appointment reminders, follow-ups),
//! sent once each by the scheduled `reminders` function, by WhatsApp template or text, or by
//! email.
//!
//! - `api`: the send API's reminder use cases (`/v1/reminders`);
//! - `model`: the reminder, its channel and status, validated once;
//! - `store`: the ports (the send API's `ReminderStore`, a run's `ReminderQueue`);
//! - `email`: the email port and its typed errors;
//! - `run`: one scheduled run, claim → send → record, exactly once.

pub mod api;
pub mod config;
pub mod email;
pub mod model;
pub mod run;
pub mod store;
