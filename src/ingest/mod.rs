//! The HTTP ingest: `POST /v1/submissions` validates a survey, hashes its session id and
//! publishes it with confirms; `202` only once the broker has it. `POST /v1/handoffs` takes
//! the Architect flow's conversation id for a submission and answers with its enrichment.
//! Also `/healthz`, `/readyz`, `/metrics`, and `/openapi.json`, the OpenAPI document of all
//! of them.

pub mod auth;
pub mod error;
pub mod handoff;
pub mod openapi;
pub mod routes;

pub use routes::{router, IngestState};
