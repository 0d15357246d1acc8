//! The shared CRM client (README, "CRM"): whatever the kind, a lookup goes through the same
//! short cache (moka), the same circuit breaker (failsafe), the same slowdown when the CRM
//! asks to wait (`Retry-After`), the same metrics and the same `crm.on_unavailable` outcome.
//! The kind ([`CrmBackend`]: [`super::rest`], [`super::salesforce`], [`super::dynamics`])
//! only performs the fetch.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::backend::CrmBackend;
use super::model::{matched_by, CrmOutcome, Customer};
use crate::config::{CrmKind, CrmSettings};
use crate::metrics::{CrmLabels, Metrics};
use crate::submission::Submission;

/// The circuit breaker's policy: open after this many failed lookups in a row…
const BREAKER_FAILURES: u32 = 5;
/// …for a jittered, growing while, between these bounds.
const BREAKER_OPEN_MIN: Duration = Duration::from_secs(5);
const BREAKER_OPEN_MAX: Duration = Duration::from_secs(60);

type Breaker = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::EqualJittered>,
    (),
>;

/// The CRM client: one [`CrmBackend`] behind a lookup cache, a circuit breaker that stops
/// calling a failing CRM, and a slowdown that holds calls while the CRM asked to wait.
pub struct CrmClient {
    backend: Box<dyn CrmBackend>,
    timeout: Duration,
    cache: moka::future::Cache<String, Option<Customer>>,
    breaker: Breaker,
    /// Until when the CRM asked not to be called (`Retry-After` of a 429).
    slow_until: Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

impl CrmClient {
    /// The client `crm.*` describes, for its `crm.kind`.
    pub fn from_settings(
        http: reqwest::Client,
        settings: &CrmSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let fields = super::fields::FieldMap::new(settings.kind, &settings.fields);
        let timeout = settings.timeout();
        let backend: Box<dyn CrmBackend> = match settings.kind {
            CrmKind::Rest => Box::new(super::rest::RestCrm::new(
                http,
                &settings.base_url,
                settings.lookup,
                settings.api_key.clone(),
                timeout,
                fields,
            )),
            CrmKind::Salesforce => {
                Box::new(super::salesforce::Salesforce::new(http, settings, fields))
            }
            CrmKind::Dynamics => Box::new(super::dynamics::Dynamics::new(http, settings, fields)),
        };
        Self::with_backend(backend, timeout, settings.cache_ttl(), metrics)
    }

    /// A client around any backend.
    pub fn with_backend(
        backend: Box<dyn CrmBackend>,
        timeout: Duration,
        cache_ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let breaker = failsafe::Config::new()
            .failure_policy(failsafe::failure_policy::consecutive_failures(
                BREAKER_FAILURES,
                failsafe::backoff::equal_jittered(BREAKER_OPEN_MIN, BREAKER_OPEN_MAX),
            ))
            .build();
        Self {
            backend,
            timeout,
            cache: moka::future::Cache::builder()
                .max_capacity(if cache_ttl.is_zero() { 0 } else { 10_000 })
                .time_to_live(cache_ttl.max(Duration::from_millis(1)))
                .build(),
            breaker,
            slow_until: Mutex::new(None),
            metrics,
        }
    }

    /// The kind and host, for messages.
    pub fn target(&self) -> String {
        self.backend.target()
    }

    /// `topology check`: credentials, one harmless query, the mapped fields (not through the
    /// breaker or the cache: it runs once, at the operator's request).
    pub async fn verify(&self) -> Result<String, CrmError> {
        self.backend.verify().await
    }

    /// Waits out a slowdown the CRM asked for, if it ends within the lookup's timeout;
    /// otherwise the CRM counts as unavailable for this lookup, without a call.
    async fn wait_for_slowdown(&self) -> Result<(), CrmError> {
        let until = *self.slow_until.lock().expect("slowdown lock");
        let Some(until) = until else { return Ok(()) };
        let now = Instant::now();
        if until <= now {
            return Ok(());
        }
        let wait = until - now;
        if wait > self.timeout {
            return Err(CrmError::RateLimited(wait));
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    fn slow_down(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut slow = self.slow_until.lock().expect("slowdown lock");
        if slow.is_none_or(|current| current < until) {
            *slow = Some(until);
        }
        tracing::warn!(
            retry_after_ms = wait.as_millis() as u64,
            "CRM asked to slow down; holding CRM calls"
        );
    }

    /// A lookup through the breaker; `Err` when the CRM failed or the breaker is open. A 429
    /// is waited out once when its `Retry-After` fits in the timeout (only the CRM's calls
    /// wait: the Genesys budget is not involved).
    async fn guarded<'a>(
        &'a self,
        call: impl Fn() -> futures_util::future::BoxFuture<'a, Result<Option<Customer>, CrmError>>,
    ) -> Result<Option<Customer>, CrmError> {
        use failsafe::futures::CircuitBreaker;
        let started = Instant::now();
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            if let Err(e) = self.wait_for_slowdown().await {
                break Err(failsafe::Error::Inner(e));
            }
            match self.breaker.call(call()).await {
                Err(failsafe::Error::Inner(CrmError::RateLimited(wait))) => {
                    self.slow_down(wait);
                    if attempts < 2 && started.elapsed() + wait <= self.timeout {
                        continue;
                    }
                    break Err(failsafe::Error::Inner(CrmError::RateLimited(wait)));
                }
                other => break other,
            }
        };
        self.metrics
            .crm_breaker_open
            .set(i64::from(!self.breaker.is_call_permitted()));
        match result {
            Ok(found) => {
                self.metrics
                    .crm_latency
                    .observe(started.elapsed().as_secs_f64());
                Ok(found)
            }
            Err(failsafe::Error::Rejected) => Err(CrmError::BreakerOpen),
            Err(failsafe::Error::Inner(reason)) => {
                self.metrics
                    .crm_latency
                    .observe(started.elapsed().as_secs_f64());
                Err(reason)
            }
        }
    }
}

/// Why a CRM lookup failed (never with the lookup's values: they are personal data, and
/// CRMs echo queries in their messages, so only codes are kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrmError {
    /// The call did not complete.
    Transport(&'static str),
    /// The CRM answered a status it should not have.
    Status(u16),
    /// The CRM refused the call with an error code (`MALFORMED_QUERY`, `0x80060888`, …).
    Refused {
        /// HTTP status.
        status: u16,
        /// The CRM's error code.
        code: String,
    },
    /// The token endpoint refused the credentials (or failed).
    Token {
        /// HTTP status.
        status: u16,
        /// OAuth `error` (`invalid_client`, …).
        code: String,
    },
    /// Salesforce: the org's API request limit is spent (403 `REQUEST_LIMIT_EXCEEDED`).
    LimitExceeded,
    /// The CRM asked to wait this long (429 with `Retry-After`).
    RateLimited(Duration),
    /// Mapped fields the object does not have (`topology check`): `(key, field)`.
    MissingFields(String, Vec<(String, String)>),
    /// The answer was not the expected JSON.
    Unreadable(String),
    /// The breaker is open after a run of failures; no call was made.
    BreakerOpen,
}

impl std::fmt::Display for CrmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CrmError::Transport(reason) => f.write_str(reason),
            CrmError::Status(status) => write!(f, "answered {status}"),
            CrmError::Refused { status, code } => write!(f, "answered {status} {code}"),
            CrmError::Token { status, code } => {
                write!(f, "token request answered {status} {code}")
            }
            CrmError::LimitExceeded => f.write_str("API request limit exceeded"),
            CrmError::RateLimited(wait) => {
                write!(f, "rate limited, retry after {} ms", wait.as_millis())
            }
            CrmError::MissingFields(object, missing) => {
                let list: Vec<String> = missing
                    .iter()
                    .map(|(key, field)| format!("{key} = {field:?}"))
                    .collect();
                write!(f, "{object} has no field {}", list.join(", "))
            }
            CrmError::Unreadable(reason) => write!(f, "answer not understood: {reason}"),
            CrmError::BreakerOpen => f.write_str("circuit breaker open"),
        }
    }
}

impl std::error::Error for CrmError {}

/// The cache key of a submission: its identifiers.
fn cache_key(submission: &Submission) -> String {
    let guest = &submission.guest;
    format!(
        "email={}&phone={}&sessionHash={}",
        guest.email.as_ref().map(|e| e.as_str()).unwrap_or(""),
        guest.phone.as_ref().map(|p| p.as_str()).unwrap_or(""),
        guest.session_hash.as_deref().unwrap_or("")
    )
}

impl CrmClient {
    /// Finds the customer a submission is about; never fails, an unreachable CRM is an
    /// outcome.
    pub async fn lookup(&self, submission: &Submission) -> CrmOutcome {
        // Concurrent lookups of the same identifiers (a redelivery burst) share one fetch;
        // a failed fetch is not cached.
        let entry = self
            .cache
            .entry(cache_key(submission))
            .or_try_insert_with(self.guarded(|| self.backend.fetch(submission)))
            .await;
        let found = match entry {
            Ok(entry) => {
                if !entry.is_fresh() {
                    self.metrics.crm_cache_hits.inc();
                }
                Ok(entry.into_value())
            }
            Err(reason) => Err((*reason).clone()),
        };
        let outcome = match found {
            Ok(Some(customer)) => CrmOutcome::Found {
                matched_by: matched_by(&customer, submission),
                customer,
            },
            Ok(None) => CrmOutcome::NotFound,
            Err(reason) => {
                tracing::warn!(submission.id = %submission.submission_id, crm.error = %reason, "CRM unavailable");
                CrmOutcome::Unavailable
            }
        };
        self.metrics
            .crm_requests
            .get_or_create(&CrmLabels {
                result: outcome.status(),
            })
            .inc();
        outcome
    }

    /// Whether the CRM answers at all (outage probing).
    pub async fn probe(&self) -> bool {
        self.guarded(|| {
            Box::pin(async {
                self.backend.probe().await?;
                Ok(None)
            })
        })
        .await
        .is_ok()
    }
}
