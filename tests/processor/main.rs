//! The message processor suite: the real processor against moto (DynamoDB, SQS, Secrets
//! Manager on loopback) and wiremock (the WhatsApp API and the LLM providers).

mod batches;
mod cost;
mod coverage;
mod exactly_once;
mod load;
mod optout;
mod replies;
mod sam_local;
mod sending;
mod skip_rules;
mod statuses;
mod storage;
mod unknown_outcome;
