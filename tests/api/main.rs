//! The send API suite: the real router in-process (as `lambda_http` hands it API Gateway
//! events) against moto, with wiremock standing in for an identity provider's JWKS.

mod ai_config;
mod auth;
mod console;
mod contacts;
mod helpers;
mod inbox;
mod local_stack;
mod manual_integrations;
mod notes;
mod onboarding;
mod reminders;
mod schemathesis;
mod send;
mod setup_callbacks;
mod spec;
