//! The webhook ingest suite: the real handler against moto (SQS, Secrets Manager on loopback),
//! driven by API Gateway v2 events built from real payload fixtures.

mod bench_smoke;
mod deliveries;
mod demo;
mod end_to_end;
mod handshake;
mod logging;
mod normalisation;
mod robustness;
mod signatures;
mod template;
