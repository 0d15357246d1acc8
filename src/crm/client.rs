//! The generic REST CRM adapter (README, "Configuration", `crm.*`):
//! `GET {base_url}/customers?email=…&phone=…&sessionHash=…` with a bearer key; the first
//! customer of the array wins; `[]` or 404 means not found; anything else (errors,
//! timeouts, a body that is not an array) means the CRM is unavailable.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::model::{matched_by, CrmOutcome, Customer};
use crate::http_error::transport_reason;
use crate::metrics::{CrmLabels, Metrics};
use crate::submission::Submission;

/// Looks customers up in the CRM.
pub trait CustomerDirectory: Send + Sync {
    /// Finds the customer a submission is about; never fails, an unreachable CRM is an outcome.
    fn lookup(
        &self,
        submission: &Submission,
    ) -> impl std::future::Future<Output = CrmOutcome> + Send;
    /// Whether the CRM answers at all (outage probing).
    fn probe(&self) -> impl std::future::Future<Output = bool> + Send;
}

/// The circuit breaker's policy: open after this many failed lookups in a row…
const BREAKER_FAILURES: u32 = 5;
/// …for a jittered, growing while, between these bounds.
const BREAKER_OPEN_MIN: Duration = Duration::from_secs(5);
const BREAKER_OPEN_MAX: Duration = Duration::from_secs(60);

type Breaker = failsafe::StateMachine<
    failsafe::failure_policy::ConsecutiveFailures<failsafe::backoff::EqualJittered>,
    (),
>;

/// The HTTP CRM client, with a short lookup cache (moka) and a circuit breaker (failsafe)
/// that stops calling a failing CRM.
pub struct CrmClient {
    http: reqwest::Client,
    url: String,
    api_key: SecretString,
    timeout: Duration,
    cache: moka::future::Cache<String, Option<Customer>>,
    breaker: Breaker,
    metrics: Arc<Metrics>,
}

/// Connection and cache settings of the CRM client.
pub struct CrmClientConfig<'a> {
    /// `{base_url}/customers`.
    pub base_url: &'a str,
    /// Bearer key.
    pub api_key: SecretString,
    /// Lookup timeout.
    pub timeout: Duration,
    /// How long a found / not-found answer is reused (zero = no cache).
    pub cache_ttl: Duration,
}

impl CrmClient {
    /// A client of `{base_url}/customers`.
    pub fn new(http: reqwest::Client, config: CrmClientConfig<'_>, metrics: Arc<Metrics>) -> Self {
        let breaker = failsafe::Config::new()
            .failure_policy(failsafe::failure_policy::consecutive_failures(
                BREAKER_FAILURES,
                failsafe::backoff::equal_jittered(BREAKER_OPEN_MIN, BREAKER_OPEN_MAX),
            ))
            .build();
        Self {
            http,
            url: format!("{}/customers", config.base_url.trim_end_matches('/')),
            api_key: config.api_key,
            timeout: config.timeout,
            cache: moka::future::Cache::builder()
                .max_capacity(if config.cache_ttl.is_zero() {
                    0
                } else {
                    10_000
                })
                .time_to_live(config.cache_ttl.max(Duration::from_millis(1)))
                .build(),
            breaker,
            metrics,
        }
    }

    async fn fetch(&self, submission: &Submission) -> Result<Option<Customer>, CrmError> {
        let mut request = self
            .http
            .get(&self.url)
            .query(&query(submission))
            .timeout(self.timeout);
        if !self.api_key.expose_secret().is_empty() {
            request = request.bearer_auth(self.api_key.expose_secret());
        }
        if let Some(traceparent) = crate::trace::outgoing() {
            request = request.header("traceparent", traceparent);
        }
        let response = request
            .send()
            .await
            .map_err(|e| CrmError::Transport(transport_reason(&e)))?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => {
                let customers: Vec<Customer> = response
                    .json()
                    .await
                    .map_err(|e| CrmError::Unreadable(e.without_url().to_string()))?;
                Ok(customers.into_iter().next())
            }
            status => Err(CrmError::Status(status)),
        }
    }

    /// A lookup through the breaker; `Err` when the CRM failed or the breaker is open.
    async fn guarded_fetch(&self, submission: &Submission) -> Result<Option<Customer>, CrmError> {
        use failsafe::futures::CircuitBreaker;
        let started = Instant::now();
        let result = self.breaker.call(self.fetch(submission)).await;
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

/// Why a CRM lookup failed (never with the lookup's values: they are personal data).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrmError {
    /// The call did not complete.
    Transport(&'static str),
    /// The CRM answered a status other than 200 or 404.
    Status(u16),
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
            CrmError::Unreadable(reason) => write!(f, "answer not understood: {reason}"),
            CrmError::BreakerOpen => f.write_str("circuit breaker open"),
        }
    }
}

impl std::error::Error for CrmError {}

/// The identifiers a submission has, as query parameters.
fn query(submission: &Submission) -> Vec<(&'static str, &str)> {
    let mut query = Vec::new();
    if let Some(email) = &submission.guest.email {
        query.push(("email", email.as_str()));
    }
    if let Some(phone) = &submission.guest.phone {
        query.push(("phone", phone.as_str()));
    }
    if let Some(hash) = &submission.guest.session_hash {
        query.push(("sessionHash", hash.as_str()));
    }
    query
}

impl CustomerDirectory for CrmClient {
    async fn lookup(&self, submission: &Submission) -> CrmOutcome {
        let key = query(submission)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let found = match self.cache.get(&key).await {
            Some(found) => {
                self.metrics.crm_cache_hits.inc();
                Ok(found)
            }
            None => {
                let fetched = self.guarded_fetch(submission).await;
                if let Ok(found) = &fetched {
                    self.cache.insert(key, found.clone()).await;
                }
                fetched
            }
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

    async fn probe(&self) -> bool {
        let probe = Submission::probe("prechat-enricher-probe");
        self.guarded_fetch(&probe).await.is_ok()
    }
}
