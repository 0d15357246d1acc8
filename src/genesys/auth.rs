//! OAuth client-credentials tokens for Genesys Cloud: `POST https://login.{domain}/oauth/token`
//! with Basic auth. One token is cached until shortly before it expires.
//!
//! Concurrent callers share one grant (single flight): the first caller that finds no valid
//! token starts the grant as a shared future and every other caller awaits that same future.
//! No lock is held while the grant runs (the mutex only guards the cache and the handle of
//! the grant in flight), and the grant as a whole — connecting, the answer, its body, waits
//! for a login host's `Retry-After` — ends within its timeout, so a stalled login host fails
//! every caller within that time instead of freezing them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::budget::within_wait_budget;
use super::error::{ErrorBody, GenesysError};
use super::model::TokenResponse;
use crate::http_error::{retry_after, transport_reason};
use crate::metrics::{GenesysLabels, Metrics, RouteLabels};

/// The grant's timeout unless [`TokenProvider::with_timeout`] sets one.
pub const DEFAULT_GRANT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one grant waits in all for a login host answering 429 before it gives up with
/// [`GenesysError::RateLimited`] (the caller's message goes to a retry queue): half the
/// grant's timeout, at most this.
pub const MAX_GRANT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(10);
/// Used when the login host answers 429 without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A cached bearer token.
#[derive(Clone)]
pub struct AccessToken {
    value: Arc<SecretString>,
    renew_at: Instant,
}

impl AccessToken {
    /// The secret value, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }

    fn same_as(&self, other: &AccessToken) -> bool {
        Arc::ptr_eq(&self.value, &other.value)
    }
}

type Grant = Shared<BoxFuture<'static, Result<AccessToken, GenesysError>>>;

#[derive(Default)]
struct State {
    cached: Option<AccessToken>,
    in_flight: Option<Grant>,
}

/// What a grant needs, shared with the grant future (which outlives no caller's borrow).
struct Grantor {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    refresh_margin: Duration,
    timeout: Duration,
    max_rate_limit_wait: Duration,
    metrics: Arc<Metrics>,
}

/// Grants and caches tokens.
pub struct TokenProvider {
    grantor: Arc<Grantor>,
    state: Mutex<State>,
}

impl TokenProvider {
    /// Tokens from `{login_url}/oauth/token`.
    pub fn new(
        http: reqwest::Client,
        login_url: &str,
        client_id: String,
        client_secret: SecretString,
        refresh_margin: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            grantor: Arc::new(Grantor {
                http,
                token_url: format!("{login_url}/oauth/token"),
                client_id,
                client_secret,
                refresh_margin,
                timeout: DEFAULT_GRANT_TIMEOUT,
                max_rate_limit_wait: rate_limit_wait(DEFAULT_GRANT_TIMEOUT),
                metrics,
            }),
            state: Mutex::new(State::default()),
        }
    }

    /// The whole grant (waits for a 429's `Retry-After` included) ends within `timeout`
    /// (`genesys.timeout_ms`).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        let grantor = Arc::get_mut(&mut self.grantor).expect("not shared before start");
        grantor.timeout = timeout;
        grantor.max_rate_limit_wait = rate_limit_wait(timeout);
        self
    }

    /// A valid token, granting a new one when none is cached or it is about to expire.
    /// Callers arriving while a grant is in flight wait for that grant.
    pub async fn token(&self) -> Result<AccessToken, GenesysError> {
        let grant = {
            let mut state = self.state.lock().expect("token state lock");
            if let Some(token) = state
                .cached
                .as_ref()
                .filter(|t| t.renew_at > Instant::now())
            {
                return Ok(token.clone());
            }
            match &state.in_flight {
                Some(grant) => grant.clone(),
                None => {
                    let grantor = Arc::clone(&self.grantor);
                    let grant = async move { grantor.grant().await }.boxed().shared();
                    state.in_flight = Some(grant.clone());
                    grant
                }
            }
        };
        let result = grant.clone().await;
        let mut state = self.state.lock().expect("token state lock");
        // The first caller back from this grant stores its outcome; a failed grant is
        // forgotten, so that the next caller tries again.
        if state
            .in_flight
            .as_ref()
            .is_some_and(|current| current.ptr_eq(&grant))
        {
            state.in_flight = None;
            if let Ok(token) = &result {
                state.cached = Some(token.clone());
            }
        }
        result
    }

    /// Drops `token` if it is still the cached one (Genesys answered 401 to it).
    pub async fn invalidate(&self, token: &AccessToken) {
        let mut state = self.state.lock().expect("token state lock");
        if state
            .cached
            .as_ref()
            .is_some_and(|current| current.same_as(token))
        {
            state.cached = None;
        }
    }
}

impl Grantor {
    /// One grant, within the timeout: a stalled login host is an outage of Genesys
    /// ([`GenesysError::Unavailable`], systemic), like a 5xx.
    async fn grant(&self) -> Result<AccessToken, GenesysError> {
        let started = Instant::now();
        match tokio::time::timeout(self.timeout, self.grant_waiting_out_429s(started)).await {
            Ok(result) => result,
            Err(_) => {
                self.count("timeout".into());
                Err(GenesysError::Unavailable {
                    status: None,
                    reason: format!(
                        "token request failed: timed out after {} ms",
                        self.timeout.as_millis()
                    ),
                    body: None,
                })
            }
        }
    }

    async fn grant_waiting_out_429s(&self, started: Instant) -> Result<AccessToken, GenesysError> {
        loop {
            match self.grant_once(started).await? {
                Attempt::Granted(token) => return Ok(token),
                Attempt::RateLimited(wait) => {
                    self.metrics.genesys_rate_limited.inc();
                    if !within_wait_budget(started.elapsed(), wait, self.max_rate_limit_wait) {
                        tracing::warn!(
                            retry_after_ms = wait.as_millis() as u64,
                            "Genesys login host rate limit: waiting longer than allowed in-process"
                        );
                        return Err(GenesysError::RateLimited { retry_after: wait });
                    }
                    tracing::warn!(
                        retry_after_ms = wait.as_millis() as u64,
                        "Genesys login host rate limit hit; waiting"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn count(&self, status: String) {
        self.metrics
            .genesys_requests
            .get_or_create(&GenesysLabels {
                route: "token",
                status,
            })
            .inc();
    }

    async fn grant_once(&self, started: Instant) -> Result<Attempt, GenesysError> {
        let attempt_started = Instant::now();
        let result = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .form(&[("grant_type", "client_credentials")])
            .timeout(self.timeout)
            .send()
            .await;
        let status_label = match &result {
            Ok(response) => response.status().as_u16().to_string(),
            Err(_) => "error".to_string(),
        };
        self.count(status_label);
        self.metrics
            .genesys_latency
            .get_or_create(&RouteLabels { route: "token" })
            .observe(attempt_started.elapsed().as_secs_f64());
        let failed = |e: reqwest::Error| GenesysError::Unavailable {
            status: None,
            reason: format!("token request failed: {}", transport_reason(&e)),
            body: None,
        };
        let response = result.map_err(failed)?;
        let status = response.status().as_u16();
        let wait = retry_after(response.headers());
        let bytes = response.bytes().await.map_err(failed)?;
        match status {
            200 => {
                let grant: TokenResponse =
                    serde_json::from_slice(&bytes).map_err(|e| GenesysError::Unavailable {
                        status: Some(status),
                        reason: format!("token response not understood: {e}"),
                        body: None,
                    })?;
                self.metrics.token_refreshes.inc();
                let lifetime = Duration::from_secs(grant.expires_in);
                // A short-lived token (a test org, the sandbox) is renewed halfway instead.
                let margin = self.refresh_margin.min(lifetime / 2);
                tracing::info!(
                    genesys.token_lifetime_secs = grant.expires_in,
                    duration_ms = started.elapsed().as_millis() as u64,
                    "Genesys token granted"
                );
                Ok(Attempt::Granted(AccessToken {
                    value: Arc::new(grant.access_token),
                    renew_at: Instant::now() + lifetime - margin,
                }))
            }
            429 => Ok(Attempt::RateLimited(wait.unwrap_or(DEFAULT_RETRY_AFTER))),
            400 | 401 | 403 => Err(GenesysError::Unauthorized {
                status,
                body: oauth_error(&bytes),
            }),
            _ => Err(GenesysError::Unavailable {
                status: Some(status),
                reason: format!("token grant answered {status}"),
                body: Some(oauth_error(&bytes)),
            }),
        }
    }
}

/// The share of a grant's `timeout` that waits for a 429's `Retry-After` may take (the rest
/// is for the grant itself).
fn rate_limit_wait(timeout: Duration) -> Duration {
    (timeout / 2).min(MAX_GRANT_RATE_LIMIT_WAIT)
}

enum Attempt {
    Granted(AccessToken),
    RateLimited(Duration),
}

/// The login host answers `{"error","description","error_description"}`.
fn oauth_error(bytes: &[u8]) -> ErrorBody {
    #[derive(serde::Deserialize)]
    struct OAuthError {
        error: Option<String>,
        error_description: Option<String>,
        description: Option<String>,
    }
    match serde_json::from_slice::<OAuthError>(bytes) {
        Ok(e) => ErrorBody {
            code: e.error,
            message: e.error_description.or(e.description),
            ..Default::default()
        },
        Err(_) => ErrorBody::from_bytes(bytes),
    }
}
