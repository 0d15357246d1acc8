//! The chaos suite: the real service (`prechat-enricher ingest` and `worker` as child
//! processes) against private RabbitMQ nodes and the in-process sandbox, while something
//! breaks: workers killed, the broker restarted, alarmed, a cluster losing its leader,
//! Genesys and the CRM failing. Every scenario counts what became of each submission and of
//! each side effect and asserts that no accepted submission was lost and no effect was
//! duplicated.
//!
//! The tests are `#[ignore]`d (the normal test run skips them); `scripts/chaos` runs them one
//! at a time (`CHAOS_MODE=quick|long`) and prints the report table it collects in
//! `target/chaos/report.md`:
//!
//! ```text
//! scripts/chaos            # quick mode, as CI runs it (through scripts/test)
//! scripts/chaos --long     # the full sizes
//! CHAOS_MODE=quick cargo test --test it chaos:: -- --ignored --test-threads=1 --nocapture
//! ```
//!
//! Layout (`tests/it/chaos/`):
//! - `rabbit` — private RabbitMQ nodes and a 3-node cluster (never the shared broker);
//! - `service` — the service binary as a child process (SIGKILL, SIGTERM, restart);
//! - `load` — seeded conversations, unique guests, the HTTP sender;
//! - `proxy` — a TCP proxy that holds back Genesys' answers (write done, answer late);
//! - `audit` — drain, count (enriched, dead-lettered, lost, duplicated effects), report;
//! - `scenario` — what every scenario shares;
//! - `broker` — worker SIGKILL, RabbitMQ restart (clean and crash), memory and disk alarms;
//! - `cluster` — a 3-node cluster losing its quorum queues' leader;
//! - `dependencies` — Genesys 5xx storms, token revocation, slow and failing CRM, Genesys
//!   slower than the client's timeout.

mod audit;
mod broker;
mod cluster;
mod dependencies;
mod load;
mod mode;
mod pids;
mod proxy;
mod rabbit;
mod scenario;
mod service;
