//! One module per figure of `bench/results.md`; each starts what it needs (sandbox, service
//! processes, its own namespace) and tears it down.

pub mod budget;
pub mod calls;
pub mod handoff;
pub mod ingest;
pub mod latency;
pub mod memory;
pub mod workers;
