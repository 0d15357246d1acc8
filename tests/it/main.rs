//! The integration tests, as one test binary: the service against a real RabbitMQ (from
//! `AMQP_URL`, default the local one) and the in-process `prechat-sim` sandbox.
//!
//! One module per area, so that a filter picks an area by its path:
//! `cargo nextest run --test it pipeline::`, `scripts/test genesys::budget`.
//!
//! - `common` — the harness: settings, a running app in a namespace of its own (deleted when
//!   the app is dropped), taps, waiting helpers, `TEST_LOG`;
//! - `pipeline` — HTTP ingest → RabbitMQ → workers → CRM → merge → Genesys, retries and dead
//!   letters;
//! - `ingest` — the HTTP edge: 4xx for bad input, 503 without a broker;
//! - `connections` — slow and surplus connections, `/metrics` off the public port, a
//!   worker's `/readyz`;
//! - `hostile_input` — oversized AMQP bodies, client clocks far off;
//! - `genesys` — the resolver, External Contacts, transfers, the 429-aware budget, outage mode;
//! - `crm` — the REST, Salesforce and Dynamics CRMs on one table of customers, hostile values,
//!   limits, calls per lookup and the cache on a redelivery burst;
//! - `dlq` — `prechat-enricher dlq`: stats, list, replay, purge;
//! - `metrics` — `/metrics` against what happened, and the dashboards;
//! - `openapi` — `/openapi.json` against the routes the ingest serves;
//! - `refusal` — follow-up publishes the broker refuses are held, not looped;
//! - `security` — no secret or PII in the logs, traces on every line, TLS with a given CA;
//! - `shutdown` — SIGTERM during a load loses nothing;
//! - `topology` — declared idempotently, `topology check`;
//! - `verify` — `genesys verify` against the sandbox: passing, a missing permission, facts that
//!   differ (attribute PATCH replaces, a slow search index), bad usage;
//! - `chaos` — the `#[ignore]`d chaos scenarios that `scripts/chaos` runs one at a time.

mod chaos;
mod common;
mod connections;
mod crm;
mod dlq;
mod failures;
mod genesys;
mod hostile_input;
mod ingest;
mod metrics;
mod openapi;
mod pipeline;
mod refusal;
mod security;
mod shutdown;
mod topology;
mod verify;
