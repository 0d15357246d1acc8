//! The HTTP ingest: `POST /v1/submissions` validates a survey, hashes its session id and
//! publishes it with confirms; `202` only once the broker has it. `POST /v1/handoffs` takes
//! the Architect flow's conversation id for a submission and answers with its enrichment.
//! Also `/healthz`, `/readyz`, `/metrics` (unless `metrics.on_ingest = false`) and
//! `/openapi.json`, the OpenAPI document of all of them. [`server`] bounds the time a client
//! has to send its headers and the connections open at once.

pub mod auth;
pub mod error;
pub mod handoff;
pub mod openapi;
pub mod routes;
pub mod server;

pub use routes::{router, IngestState};
