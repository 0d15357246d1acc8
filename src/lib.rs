//! prechat-enricher: enriches Genesys Cloud Web Messaging conversations with
//! pre-chat survey answers and CRM data, through RabbitMQ.
//!
//! Layout (arrows point one way: a module uses only those listed after it, and
//! `startup` wires them all):
//! - `cli`, `startup` — the commands, and building then running the roles of a process;
//! - `ingest` — `POST /v1/submissions`: authenticate, validate, publish with confirms;
//! - `worker` — consume, process (CRM → merge → Genesys), decide, follow up, settle;
//!   `worker::decision` is the pure verdict, `worker::follow_up` the pure publish it needs;
//! - `resolver` — holds submissions without a conversation id and matches them with the
//!   flow's handoff, or else by search;
//! - `handoff` — the Architect data action's handoff: its message, its answer, and the wait
//!   for the enrichment;
//! - `dlq` — the operators' dead-letter commands (list, show, stats, replay, purge);
//! - `verify` — `genesys verify`: what the configured org allows and how it behaves, before
//!   go-live;
//! - `genesys` — the Platform API client: OAuth, the shared budget, errors, each API;
//! - `crm` — the CRM adapter with its cache and breaker;
//! - `merge` — the merge rule and the attribute names (`merge::attr`);
//! - `submission` — the message schema, validated and normalised;
//! - `queue` — RabbitMQ: connections, topology, confirmed publishing, headers, reading and
//!   settling deliveries, dead letters, events, depth;
//! - `config`, `metrics`, `telemetry`, `trace`, `privacy`, `shutdown`, `http_error` — shared
//!   ground: settings, `/metrics`, logs, W3C trace context, hashing and masking, signals,
//!   what a failed HTTP call says.

pub mod cli;
pub mod config;
pub mod crm;
pub mod dlq;
pub mod genesys;
pub mod handoff;
pub mod http_error;
pub mod ingest;
pub mod merge;
pub mod metrics;
pub mod privacy;
pub mod queue;
pub mod resolver;
pub mod shutdown;
pub mod startup;
pub mod submission;
pub mod telemetry;
pub mod trace;
pub mod verify;
pub mod worker;
