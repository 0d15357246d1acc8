//! Prometheus metrics, served on `/metrics` in the text format.
//!
//! One [`Metrics`] per process, passed to every component that records (never a
//! global), so tests can read the figures of their own app.

use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// `status` label of ingest requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    /// HTTP status code.
    pub status: u16,
}

/// Labels of processed submissions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `enriched`, `awaiting`, `retrying`, `dead_lettered`, `expired`.
    pub outcome: &'static str,
    /// Dead-letter class or retry cause; empty when enriched.
    pub error_class: &'static str,
}

/// Labels of Genesys requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GenesysLabels {
    /// Logical endpoint, e.g. `get_conversation`, `patch_attributes`, `token`.
    pub route: &'static str,
    /// HTTP status, or `error` when no response came.
    pub status: String,
}

/// `route` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// Logical endpoint.
    pub route: &'static str,
}

/// `result` label of CRM lookups.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrmLabels {
    /// `found`, `not_found`, `unavailable`.
    pub result: &'static str,
}

/// Labels of failed External Contact steps.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContactFailureLabels {
    /// `enrich` or `link`.
    pub step: &'static str,
    /// `forbidden`, `rejected`, `not_found`, `unavailable`, `rate_limited`, `unauthorized`.
    pub error: &'static str,
}

/// Depth of one queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// Queue name.
    pub queue: String,
    /// `ready` or `unacked`.
    pub state: &'static str,
}

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    /// `prechat_ingest_requests_total{status}`.
    pub ingest_requests: Family<StatusLabels, Counter>,
    /// `prechat_submissions_total{outcome,error_class}`.
    pub submissions: Family<OutcomeLabels, Counter>,
    /// `prechat_end_to_end_latency_seconds`: accepted → enriched.
    pub end_to_end_latency: Histogram,
    /// `prechat_genesys_requests_total{route,status}`.
    pub genesys_requests: Family<GenesysLabels, Counter>,
    /// `prechat_genesys_request_duration_seconds{route}`.
    pub genesys_latency: Family<RouteLabels, Histogram>,
    /// `prechat_genesys_rate_limited_total`: 429s received.
    pub genesys_rate_limited: Counter,
    /// `prechat_genesys_limiter_wait_seconds`: time spent waiting for the budget.
    pub limiter_wait: Histogram,
    /// `prechat_genesys_token_refreshes_total`.
    pub token_refreshes: Counter,
    /// `prechat_crm_requests_total{result}`.
    pub crm_requests: Family<CrmLabels, Counter>,
    /// `prechat_crm_request_duration_seconds`.
    pub crm_latency: Histogram,
    /// `prechat_crm_cache_hits_total`.
    pub crm_cache_hits: Counter,
    /// `prechat_crm_breaker_open`: 1 while the circuit breaker stops CRM calls.
    pub crm_breaker_open: Gauge,
    /// `prechat_queue_messages{queue,state}`.
    pub queue_messages: Family<QueueLabels, Gauge>,
    /// `prechat_external_contact_failures_total{step,error}`: External Contact steps that
    /// failed; the submission was enriched and routed anyway.
    pub external_contact_failures: Family<ContactFailureLabels, Counter>,
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 18))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("prechat");
        let metrics = Metrics {
            ingest_requests: Family::default(),
            submissions: Family::default(),
            end_to_end_latency: latency_histogram(),
            genesys_requests: Family::default(),
            genesys_latency: Family::new_with_constructor(latency_histogram),
            genesys_rate_limited: Counter::default(),
            limiter_wait: latency_histogram(),
            token_refreshes: Counter::default(),
            crm_requests: Family::default(),
            crm_latency: latency_histogram(),
            crm_cache_hits: Counter::default(),
            crm_breaker_open: Gauge::default(),
            queue_messages: Family::default(),
            external_contact_failures: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "ingest_requests",
            "HTTP submissions by status",
            metrics.ingest_requests.clone(),
        );
        registry.register(
            "submissions",
            "Processed submissions by outcome",
            metrics.submissions.clone(),
        );
        registry.register_with_unit(
            "end_to_end_latency",
            "Accepted to enriched",
            Unit::Seconds,
            metrics.end_to_end_latency.clone(),
        );
        registry.register(
            "genesys_requests",
            "Genesys requests by route and status",
            metrics.genesys_requests.clone(),
        );
        registry.register_with_unit(
            "genesys_request_duration",
            "Genesys request latency",
            Unit::Seconds,
            metrics.genesys_latency.clone(),
        );
        registry.register(
            "genesys_rate_limited",
            "429 answers from Genesys",
            metrics.genesys_rate_limited.clone(),
        );
        registry.register_with_unit(
            "genesys_limiter_wait",
            "Time spent waiting for the Genesys budget",
            Unit::Seconds,
            metrics.limiter_wait.clone(),
        );
        registry.register(
            "genesys_token_refreshes",
            "OAuth token grants",
            metrics.token_refreshes.clone(),
        );
        registry.register(
            "crm_requests",
            "CRM lookups by result",
            metrics.crm_requests.clone(),
        );
        registry.register_with_unit(
            "crm_request_duration",
            "CRM lookup latency",
            Unit::Seconds,
            metrics.crm_latency.clone(),
        );
        registry.register(
            "crm_cache_hits",
            "CRM lookups answered from the cache",
            metrics.crm_cache_hits.clone(),
        );
        registry.register(
            "crm_breaker_open",
            "1 while the CRM circuit breaker is open",
            metrics.crm_breaker_open.clone(),
        );
        registry.register(
            "queue_messages",
            "Messages per queue (ready, unacked)",
            metrics.queue_messages.clone(),
        );
        registry.register(
            "external_contact_failures",
            "External Contact steps that failed (the submission was enriched anyway)",
            metrics.external_contact_failures.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Counts one processed submission.
    pub fn count_submission(&self, outcome: &'static str, error_class: &'static str) {
        self.submissions
            .get_or_create(&OutcomeLabels {
                outcome,
                error_class,
            })
            .inc();
    }

    /// Sets the depth of `queue`: its ready count, and its unacked count when known. An
    /// unknown unacked count withdraws that series rather than leaving a stale figure.
    pub fn set_queue_depth(&self, queue: &str, ready: u64, unacked: Option<u64>) {
        let labels = |state| QueueLabels {
            queue: queue.to_string(),
            state,
        };
        self.queue_messages
            .get_or_create(&labels("ready"))
            .set(saturating_i64(ready));
        match unacked {
            Some(unacked) => {
                self.queue_messages
                    .get_or_create(&labels("unacked"))
                    .set(saturating_i64(unacked));
            }
            None => {
                self.queue_messages.remove(&labels("unacked"));
            }
        }
    }

    /// Withdraws both depth series of `queue` (it does not exist on the broker).
    pub fn forget_queue(&self, queue: &str) {
        for state in ["ready", "unacked"] {
            self.queue_messages.remove(&QueueLabels {
                queue: queue.to_string(),
                state,
            });
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// `Content-Type` of the exposition (OpenMetrics text, which Prometheus reads natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics` and `GET /healthz` alone, for processes without the ingest (`metrics.bind`).
pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()) }),
        )
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})).into_response() }),
        )
}
