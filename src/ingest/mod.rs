//! The HTTP ingest: `POST /v1/submissions` validates a survey, hashes its session id and
//! publishes it with confirms; `202` only once the broker has it. Also `/healthz`,
//! `/readyz` and `/metrics`.

pub mod auth;
pub mod error;
pub mod routes;

pub use routes::{router, IngestState};
