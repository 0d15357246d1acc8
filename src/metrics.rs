//! Prometheus metrics, served on `/metrics` in the text format.
//!
//! One [`Metrics`] per process, passed to every component that records (never a
//! global), so tests can read the figures of their own app.
//!
//! Besides the `prechat_*` families, the exposition carries the conventional
//! `process_cpu_seconds_total` and `process_resident_memory_bytes`, read from `/proc/self` at
//! each scrape (Linux only; elsewhere they are absent).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

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
/// Labels of `prechat_handoffs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandoffLabels {
    /// `enriched`, `pending`, `rejected` (4xx), `unavailable` (503).
    pub status: &'static str,
}

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

/// `queue` label alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct QueueNameLabels {
    /// Queue name.
    pub queue: String,
}

/// `version` label of `prechat_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    /// The package version (`CARGO_PKG_VERSION`).
    pub version: &'static str,
}

/// Every metric of the service.
pub struct Metrics {
    registry: Registry,
    /// The `process_*` families, which carry no `prechat_` prefix.
    process_registry: Registry,
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
    /// `prechat_handoffs_total{status}`: handoff answers by status.
    pub handoffs: Family<HandoffLabels, Counter>,
    /// `prechat_handoffs_matched_total`: handoffs the resolver took (each completes a parked
    /// submission, or waits for one).
    pub handoffs_matched: Counter,
    /// `prechat_crm_breaker_open`: 1 while the circuit breaker stops CRM calls.
    pub crm_breaker_open: Gauge,
    /// `prechat_queue_messages{queue,state}`.
    pub queue_messages: Family<QueueLabels, Gauge>,
    /// `prechat_outage_mode`: 1 while consumption is paused by outage mode.
    pub outage_mode: Gauge,
    /// `prechat_genesys_budget_configured_per_minute`: `genesys.requests_per_minute`.
    pub genesys_budget_configured: Gauge,
    /// `prechat_genesys_budget_rate_per_minute`: the rate the limiter runs at now.
    pub genesys_budget_rate: Gauge,
    /// `prechat_genesys_budget_window_used`: the last `inin-ratelimit-count` from Genesys.
    pub genesys_budget_window_used: Gauge,
    /// `prechat_genesys_budget_window_allowed`: the last `inin-ratelimit-allowed` from Genesys.
    pub genesys_budget_window_allowed: Gauge,
    /// Acceptance times of the messages this process holds, behind
    /// `prechat_queue_oldest_message_age_seconds{queue}`.
    held: Arc<HeldMessages>,
    /// `prechat_external_contact_failures_total{step,error}`: External Contact steps that
    /// failed; the submission was enriched and routed anyway.
    pub external_contact_failures: Family<ContactFailureLabels, Counter>,
    /// `prechat_worker_abandoned_total`: messages whose processing stopped before its next
    /// Genesys write because the consuming channel was lost (the broker redelivers them).
    pub worker_abandoned: Counter,
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
            handoffs: Family::default(),
            handoffs_matched: Counter::default(),
            crm_breaker_open: Gauge::default(),
            queue_messages: Family::default(),
            outage_mode: Gauge::default(),
            genesys_budget_configured: Gauge::default(),
            genesys_budget_rate: Gauge::default(),
            genesys_budget_window_used: Gauge::default(),
            genesys_budget_window_allowed: Gauge::default(),
            held: Arc::default(),
            external_contact_failures: Family::default(),
            worker_abandoned: Counter::default(),
            registry: Registry::default(),
            process_registry: Registry::default(),
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
            "handoffs",
            "Answers of POST /v1/handoffs by status",
            metrics.handoffs.clone(),
        );
        registry.register(
            "handoffs_matched",
            "Handoffs the resolver took",
            metrics.handoffs_matched.clone(),
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
        registry.register_collector(Box::new(OldestMessageAge(metrics.held.clone())));
        registry.register(
            "outage_mode",
            "1 while outage mode pauses consumption",
            metrics.outage_mode.clone(),
        );
        registry.register(
            "genesys_budget_configured_per_minute",
            "Configured Genesys request budget of this process (genesys.requests_per_minute)",
            metrics.genesys_budget_configured.clone(),
        );
        registry.register(
            "genesys_budget_rate_per_minute",
            "Rate the Genesys limiter runs at now (lowered to the server's limit when tighter)",
            metrics.genesys_budget_rate.clone(),
        );
        registry.register(
            "genesys_budget_window_used",
            "Requests Genesys counted in its current rate-limit window (inin-ratelimit-count)",
            metrics.genesys_budget_window_used.clone(),
        );
        registry.register(
            "genesys_budget_window_allowed",
            "Requests Genesys allows per rate-limit window (inin-ratelimit-allowed)",
            metrics.genesys_budget_window_allowed.clone(),
        );
        // A gauge at 1 with the version as label (the usual `*_build_info` shape), so that
        // queries join on it: `... * on (instance) group_left (version) prechat_build_info`.
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "Version of the running build, always 1",
            build_info,
        );
        let mut process_registry = Registry::default();
        process_registry.register_collector(Box::new(ProcessCollector));
        registry.register(
            "external_contact_failures",
            "External Contact steps that failed (the submission was enriched anyway)",
            metrics.external_contact_failures.clone(),
        );
        registry.register(
            "worker_abandoned",
            "Messages left before their next Genesys write because the consuming channel was lost",
            metrics.worker_abandoned.clone(),
        );
        Metrics {
            registry,
            process_registry,
            ..metrics
        }
    }

    /// Sets `prechat_outage_mode` (1 while consumption is paused).
    pub fn set_outage_mode(&self, paused: bool) {
        self.outage_mode.set(i64::from(paused));
    }

    /// Keeps `prechat_outage_mode` equal to an outage flag (`OutageGuard::subscribe`) until
    /// its sender is dropped. Spawn it once per flag.
    pub async fn follow_outage_mode(self: Arc<Self>, mut paused: watch::Receiver<bool>) {
        loop {
            let now = *paused.borrow_and_update();
            self.set_outage_mode(now);
            if paused.changed().await.is_err() {
                return;
            }
        }
    }

    /// Sets the budget gauges: the configured rate and the rate the limiter runs at now
    /// (requests per minute).
    pub fn set_genesys_budget(&self, configured_per_minute: u32, current_per_minute: u32) {
        self.genesys_budget_configured
            .set(i64::from(configured_per_minute));
        self.genesys_budget_rate.set(i64::from(current_per_minute));
    }

    /// Sets the server's view of the budget from a response's `inin-ratelimit-count` and
    /// `inin-ratelimit-allowed` headers.
    pub fn set_genesys_window(&self, used: u32, allowed: u32) {
        self.genesys_budget_window_used.set(i64::from(used));
        self.genesys_budget_window_allowed.set(i64::from(allowed));
    }

    /// Records that this process holds a message of `queue` accepted at `accepted_at`, until
    /// the returned guard is dropped (after the ack, nack or republish).
    /// `prechat_queue_oldest_message_age_seconds{queue}` is the age of the oldest message
    /// held, 0 once `queue` has been seen and nothing of it is held.
    pub fn hold_message(&self, queue: &str, accepted_at: DateTime<Utc>) -> HeldMessage {
        let at = accepted_at.timestamp_millis();
        let mut held = self.held.lock();
        *held
            .entry(queue.to_string())
            .or_default()
            .entry(at)
            .or_default() += 1;
        HeldMessage {
            held: self.held.clone(),
            queue: queue.to_string(),
            at,
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
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut out = String::new();
        encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &self.process_registry))
            .and_then(|()| encode_eof(&mut out))
            .expect("writing to a String cannot fail");
        out
    }
}

/// Acceptance times (Unix milliseconds → how many) of the messages held, per queue.
#[derive(Debug, Default)]
struct HeldMessages(Mutex<HashMap<String, BTreeMap<i64, usize>>>);

impl HeldMessages {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeMap<i64, usize>>> {
        // A panic while holding the lock leaves the counts consistent (single updates).
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Age in seconds of the oldest message held per queue at `now`; 0 for a queue seen
    /// before with nothing held now, never negative.
    fn oldest_ages(&self, now: DateTime<Utc>) -> BTreeMap<String, f64> {
        let now = now.timestamp_millis();
        self.lock()
            .iter()
            .map(|(queue, times)| {
                let age = times
                    .keys()
                    .next()
                    .map_or(0.0, |oldest| (now - oldest).max(0) as f64 / 1000.0);
                (queue.clone(), age)
            })
            .collect()
    }
}

/// One message of a queue held by this process; see [`Metrics::hold_message`].
#[must_use = "the message counts as held until this guard is dropped"]
#[derive(Debug)]
pub struct HeldMessage {
    held: Arc<HeldMessages>,
    queue: String,
    at: i64,
}

impl Drop for HeldMessage {
    fn drop(&mut self) {
        let mut held = self.held.lock();
        if let Some(times) = held.get_mut(&self.queue) {
            if let Some(count) = times.get_mut(&self.at) {
                *count -= 1;
                if *count == 0 {
                    times.remove(&self.at);
                }
            }
        }
    }
}

/// `prechat_queue_oldest_message_age_seconds{queue}`, computed at each scrape so the age
/// keeps growing between updates. The family is described even while empty.
#[derive(Debug)]
struct OldestMessageAge(Arc<HeldMessages>);

impl Collector for OldestMessageAge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let ages = self.0.oldest_ages(Utc::now());
        let mut family = encoder.encode_descriptor(
            "queue_oldest_message_age",
            "Age of the oldest message this process holds, per queue (since prechat-accepted-at)",
            Some(&Unit::Seconds),
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (queue, age) in ages {
            let labels = QueueNameLabels { queue };
            ConstGauge::new(age).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// CPU time and resident memory of this process, as read from `/proc/self`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
}

impl ProcessStats {
    /// This process's figures; `None` where `/proc/self` cannot be read (not Linux).
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        Self::parse(&stat, &status, clock_ticks_per_second())
    }

    /// Parses `/proc/self/stat` (`utime` and `stime`, fields 14 and 15, in clock ticks) and
    /// `/proc/self/status` (`VmRSS`, in kB).
    pub fn parse(stat: &str, status: &str, ticks_per_second: f64) -> Option<Self> {
        // The command name (field 2) is in parentheses and may contain spaces or ')'.
        let after_name = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = after_name.split_whitespace().collect();
        // fields[0] is field 3 (state): utime is field 14, stime field 15.
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        let rss_kb: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        Some(Self {
            cpu_seconds: (utime + stime) as f64 / ticks_per_second,
            resident_bytes: rss_kb.saturating_mul(1024),
        })
    }
}

/// `USER_HZ`, the unit of the CPU times in `/proc`.
fn clock_ticks_per_second() -> f64 {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: sysconf has no preconditions; it returns -1 for an unknown name.
        let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        if ticks > 0 {
            return ticks as f64;
        }
    }
    100.0
}

/// `process_cpu_seconds_total` and `process_resident_memory_bytes`, read at each scrape.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let rss = ConstGauge::new(saturating_i64(stats.resident_bytes));
        rss.encode(encoder.encode_descriptor(
            "process_resident_memory",
            "Resident memory size",
            Some(&Unit::Bytes),
            rss.metric_type(),
        )?)?;
        Ok(())
    }
}

/// `Content-Type` of the exposition (OpenMetrics text, which Prometheus reads natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The listener of `metrics.bind`: `GET /metrics` and `GET /healthz`, and in a process with
/// workers `GET /readyz`, 200 while the worker's consumer is active on the work queue (503
/// before it starts, while it reconnects, in outage mode and on shutdown).
pub fn router(metrics: Arc<Metrics>, consuming: Option<watch::Receiver<bool>>) -> Router {
    let router = Router::new()
        .route(
            "/metrics",
            get(move || async move { ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render()) }),
        )
        .route(
            "/healthz",
            get(|| async { Json(serde_json::json!({"status": "ok"})).into_response() }),
        );
    match consuming {
        Some(consuming) => router.route(
            "/readyz",
            get(move || async move {
                let consuming = *consuming.borrow();
                let status = match consuming {
                    true => axum::http::StatusCode::OK,
                    false => axum::http::StatusCode::SERVICE_UNAVAILABLE,
                };
                (status, Json(serde_json::json!({"consuming": consuming}))).into_response()
            }),
        ),
        None => router,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// The value of the sample line `series` (name and labels exactly as rendered).
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map(|value| value.parse().unwrap())
    }

    #[test]
    fn build_info_names_the_package_version() {
        let text = Metrics::new().render();
        assert!(text.contains("# TYPE prechat_build_info gauge\n"), "{text}");
        let series = format!(
            "prechat_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(sample(&text, &series), Some(1.0), "{text}");
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }

    #[test]
    fn proc_self_stat_and_status_are_parsed() {
        // A command name with spaces and a ')' must not shift the fields.
        let stat = "4242 (prechat) (x y) S 1 4242 4242 0 -1 4194560 1530 0 0 0 250 75 0 0 20 0 9 0 123 456789 2000 18446744073709551615";
        let status = "Name:\tprechat\nVmPeak:\t  900000 kB\nVmRSS:\t   51200 kB\nThreads:\t9\n";
        let stats = ProcessStats::parse(stat, status, 100.0).unwrap();
        assert_eq!(stats.cpu_seconds, 3.25);
        assert_eq!(stats.resident_bytes, 51200 * 1024);
        assert_eq!(ProcessStats::parse("garbage", status, 100.0), None);
        assert_eq!(ProcessStats::parse(stat, "Name:\tx\n", 100.0), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_cpu_and_memory_are_exported_without_the_prefix() {
        let stats = ProcessStats::read().expect("/proc/self on Linux");
        assert!(stats.resident_bytes > 1024 * 1024, "{stats:?}");
        let text = Metrics::new().render();
        assert!(
            text.contains("# TYPE process_cpu_seconds counter\n"),
            "{text}"
        );
        assert!(sample(&text, "process_cpu_seconds_total").unwrap() >= 0.0);
        assert!(text.contains("# TYPE process_resident_memory_bytes gauge\n"));
        assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
        assert!(!text.contains("prechat_process"));
    }

    #[test]
    fn outage_mode_and_budget_gauges_render() {
        let metrics = Metrics::new();
        let text = metrics.render();
        assert_eq!(sample(&text, "prechat_outage_mode"), Some(0.0));
        metrics.set_outage_mode(true);
        metrics.set_genesys_budget(300, 120);
        metrics.set_genesys_window(250, 300);
        let text = metrics.render();
        assert_eq!(sample(&text, "prechat_outage_mode"), Some(1.0));
        assert_eq!(
            sample(&text, "prechat_genesys_budget_configured_per_minute"),
            Some(300.0)
        );
        assert_eq!(
            sample(&text, "prechat_genesys_budget_rate_per_minute"),
            Some(120.0)
        );
        assert_eq!(
            sample(&text, "prechat_genesys_budget_window_used"),
            Some(250.0)
        );
        assert_eq!(
            sample(&text, "prechat_genesys_budget_window_allowed"),
            Some(300.0)
        );
    }

    #[tokio::test]
    async fn outage_mode_follows_the_flag_until_its_sender_is_dropped() {
        let metrics = Arc::new(Metrics::new());
        let (flag, paused) = watch::channel(true);
        let follower = tokio::spawn(metrics.clone().follow_outage_mode(paused));
        let until = |want: i64| {
            let metrics = metrics.clone();
            async move {
                while metrics.outage_mode.get() != want {
                    tokio::task::yield_now().await;
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), until(1))
            .await
            .unwrap();
        flag.send_replace(false);
        tokio::time::timeout(std::time::Duration::from_secs(5), until(0))
            .await
            .unwrap();
        drop(flag);
        tokio::time::timeout(std::time::Duration::from_secs(5), follower)
            .await
            .expect("the follower ends with its flag")
            .unwrap();
    }

    #[test]
    fn the_oldest_held_message_gives_the_queue_age() {
        let metrics = Metrics::new();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap();
        let oldest = metrics.hold_message("prechat.submissions", t0);
        let twin = metrics.hold_message("prechat.submissions", t0);
        let newer = metrics.hold_message("prechat.submissions", t0 + chrono::Duration::seconds(30));
        let awaiting = metrics.hold_message("prechat.awaiting", t0 + chrono::Duration::seconds(50));
        let at = |s| metrics.held.oldest_ages(t0 + chrono::Duration::seconds(s));
        assert_eq!(at(60)["prechat.submissions"], 60.0);
        assert_eq!(at(60)["prechat.awaiting"], 10.0);
        drop(oldest);
        assert_eq!(at(60)["prechat.submissions"], 60.0, "a twin is still held");
        drop(twin);
        assert_eq!(at(60)["prechat.submissions"], 30.0);
        drop(newer);
        assert_eq!(at(60)["prechat.submissions"], 0.0, "seen, nothing held");
        assert_eq!(at(40)["prechat.awaiting"], 0.0, "never negative");
        drop(awaiting);
    }

    #[test]
    fn the_age_family_is_described_even_while_empty() {
        let metrics = Metrics::new();
        let text = metrics.render();
        assert!(
            text.contains("# TYPE prechat_queue_oldest_message_age_seconds gauge\n"),
            "{text}"
        );
        let _held = metrics.hold_message(
            "prechat.awaiting",
            Utc::now() - chrono::Duration::seconds(90),
        );
        let text = metrics.render();
        let age = sample(
            &text,
            "prechat_queue_oldest_message_age_seconds{queue=\"prechat.awaiting\"}",
        )
        .unwrap();
        assert!((90.0..100.0).contains(&age), "{age}");
    }
}
