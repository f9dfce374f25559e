//! The message processor suite: the real processor against moto (DynamoDB, SQS, Secrets
//! Manager on loopback) and wiremock (the WhatsApp API and the LLM providers).

mod answerless;
mod batches;
mod bsuid;
mod cost;
mod coverage;
mod deadline;
mod early_statuses;
mod echoes;
mod exactly_once;
mod kapso_throttling;
mod load;
mod long_replies;
mod nothing_sent;
mod onboarding;
mod optout;
mod permanent_failure_metric;
mod permanent_failures;
mod reconciliation;
mod replies;
mod sam_local;
mod sending;
mod skip_rules;
mod statuses;
mod storage;
mod two_numbers;
mod unknown_outcome;
