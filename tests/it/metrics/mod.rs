//! `/metrics` against what really happened: counters equal to the traffic and to the
//! sandbox's own counts, queue depth polled from the broker, and a dashboard that queries
//! only metrics the service exports.
//!
//! Layout (`tests/it/metrics/`):
//! - `support` — reading the text exposition (samples, sums, queue depths) and waiting for
//!   `/metrics` to show something;
//! - `service` — the running service's `/metrics`: counts against the traffic and the
//!   sandbox, queue depths with or without the management API, the worker's own listener,
//!   and metrics settings that cannot work;
//! - `dashboard` — the Grafana dashboards query only metrics and labels the service exports.

mod dashboard;
mod service;
mod support;
