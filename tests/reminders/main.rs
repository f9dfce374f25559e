//! The reminders suite: the real run use case and send API routes against moto (DynamoDB,
//! Secrets Manager on loopback) and wiremock (the WhatsApp API and Resend), counting sends at the
//! fakes.

mod demo;
mod function;
mod helpers;
mod runs;
mod store;
