//! `prechat-enricher dlq` on a real RabbitMQ: stats, list, replay and purge in process, and
//! the binary's exit codes, a replay killed half-way, and usage errors that change nothing.
//!
//! Layout (`tests/it/dlq/`):
//! - `support` — the `dlq` command in process and as the binary, fabricated dead letters
//!   (straight to the DLX, or from a real crash loop), and reading queues back;
//! - `inspect` — stats, list, scan and purge by class, in queue order, and usage errors;
//! - `replay` — a replay killed half-way, one the broker refuses, and a 10,000-letter timing;
//! - `operate` — `show`, `export`, `stats --by`, `--url`/`--namespace`, the confirmations of
//!   purge and replay, and dead letters that stay put through many scans.

mod inspect;
mod operate;
mod replay;
mod support;
