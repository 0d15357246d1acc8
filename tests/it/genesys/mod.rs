//! Genesys Cloud, complete: the resolver, External Contacts, transfer by tier, privacy, the
//! shared 429-aware budget and outage mode, against a real RabbitMQ and the sandbox.
//!
//! Layout (`tests/it/genesys/`):
//! - `support` — CRM customers, correlated conversations, waiting for an enrichment, counting
//!   Genesys calls in `/metrics`;
//! - `resolver` — submissions without a conversation id matched as conversations appear, and
//!   one resolver scanning among several;
//! - `contacts` — External Contacts created once, updated, never duplicated, only with
//!   consent, and session ids published as an HMAC;
//! - `handoff` — the Architect handoff in either order, on a restart, across replicas;
//! - `routing` — transfer by tier, exactly once, and routing queues Genesys does not know;
//! - `budget` — the shared 429-aware budget and outage mode.

mod budget;
mod contacts;
mod handoff;
mod resolver;
mod routing;
pub mod support;
