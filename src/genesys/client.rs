//! The Genesys Cloud Platform API client: every call goes through the process's
//! [`Budget`], carries a cached token (401 → drop it, try once more), and waits out
//! 429s for `Retry-After` without counting them as failures — within a total wait per call
//! (`genesys.max_wait_ms`): a wait that would go past it ends the call at once with
//! [`GenesysError::RateLimited`], so the message goes to a retry queue instead of being held
//! unacknowledged towards the broker's `consumer_timeout`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::time::Instant;

use super::auth::TokenProvider;
use super::budget::{within_wait_budget, Budget, ServerBudget};
use super::error::{ErrorBody, GenesysError};
use super::model::{Conversation, MessageConversation, ParticipantAttributes};
use crate::http_error::{retry_after, transport_reason};
use crate::metrics::{GenesysLabels, Metrics, RouteLabels};

/// 429s one call waits out before it hands the message back for a later try.
const MAX_RATE_LIMITED_WAITS: u32 = 10;
/// Used when a 429 comes without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);

/// Where and how to reach Genesys.
pub struct GenesysConfig {
    /// `https://api.{domain}` or an override.
    pub api_url: String,
    /// Per-call timeout.
    pub timeout: Duration,
    /// The longest one call waits in the process for the rate limit, in all.
    pub max_wait: Duration,
}

/// A Genesys Cloud API client; one per process, shared.
pub struct GenesysClient {
    http: reqwest::Client,
    api_url: String,
    timeout: Duration,
    max_wait: Duration,
    tokens: TokenProvider,
    budget: Arc<Budget>,
    metrics: Arc<Metrics>,
}

impl GenesysClient {
    /// A client calling `config.api_url` with tokens from `tokens`, under `budget`.
    pub fn new(
        http: reqwest::Client,
        config: GenesysConfig,
        tokens: TokenProvider,
        budget: Arc<Budget>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            http,
            api_url: config.api_url,
            timeout: config.timeout,
            max_wait: config.max_wait,
            tokens,
            budget,
            metrics,
        }
    }

    /// Grants (or reuses) a token: proves the credentials work.
    pub async fn check_credentials(&self) -> Result<(), GenesysError> {
        self.tokens.token().await.map(|_| ())
    }

    /// `GET /api/v2/conversations/messages/{id}`.
    pub async fn get_message_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<MessageConversation, GenesysError> {
        let path = format!("/api/v2/conversations/messages/{conversation_id}");
        self.call_json("get_conversation", Method::GET, &path, None::<&()>)
            .await
    }

    /// `GET /api/v2/conversations/{id}` (permission `conversation:communication:view`): the
    /// same participants as [`Self::get_message_conversation`], plus each one's communication
    /// id, which linking an External Contact needs.
    pub async fn get_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<MessageConversation, GenesysError> {
        let path = format!("/api/v2/conversations/{conversation_id}");
        self.call_json::<Conversation, ()>("get_generic_conversation", Method::GET, &path, None)
            .await
            .map(MessageConversation::from)
    }

    /// The process's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// `PATCH /api/v2/conversations/messages/{cid}/participants/{pid}/attributes` (202).
    pub async fn patch_participant_attributes(
        &self,
        conversation_id: &str,
        participant_id: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), GenesysError> {
        let path = format!("/api/v2/conversations/messages/{conversation_id}/participants/{participant_id}/attributes");
        self.call(
            "patch_attributes",
            Method::PATCH,
            &path,
            Some(&ParticipantAttributes { attributes }),
        )
        .await
        .map(|_| ())
    }

    /// A call whose answer is JSON of type `T`.
    pub async fn call_json<T: DeserializeOwned, B: Serialize>(
        &self,
        route: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<T, GenesysError> {
        let bytes = self.call(route, method, path_and_query, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| GenesysError::Unavailable {
            status: None,
            reason: format!("{route}: answer not understood: {e}"),
            body: None,
        })
    }

    /// One logical call: budget, token, 401 and 429 handling; returns the body of a 2xx.
    pub async fn call<B: Serialize>(
        &self,
        route: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<&B>,
    ) -> Result<Vec<u8>, GenesysError> {
        let url = format!("{}{}", self.api_url, path_and_query);
        let mut refreshed_token = false;
        let mut rate_limited = 0;
        let started = Instant::now();
        let wait_deadline = started + self.max_wait;
        loop {
            let token = self.tokens.token().await?;
            if let Err(wait) = self.budget.acquire_by(wait_deadline).await {
                tracing::info!(
                    genesys.route = route,
                    retry_after_ms = wait.as_millis() as u64,
                    "Genesys rate limit wait longer than allowed in-process; handing back"
                );
                return Err(GenesysError::RateLimited { retry_after: wait });
            }
            let mut request = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose())
                .timeout(self.timeout);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(traceparent) = crate::trace::outgoing() {
                request = request.header("traceparent", traceparent);
            }
            let started = Instant::now();
            let result = request.send().await;
            self.metrics
                .genesys_latency
                .get_or_create(&RouteLabels { route })
                .observe(started.elapsed().as_secs_f64());
            let response = match result {
                Ok(response) => response,
                Err(error) => {
                    self.count(route, "error".into());
                    return Err(GenesysError::Unavailable {
                        status: None,
                        reason: format!("{route}: {}", transport_reason(&error)),
                        body: None,
                    });
                }
            };
            let status = response.status();
            self.count(route, status.as_u16().to_string());
            let retry_after = retry_after(response.headers());
            self.budget.observe(server_budget(response.headers()));
            let bytes = match response.bytes().await {
                Ok(bytes) => bytes.to_vec(),
                Err(error) => {
                    return Err(GenesysError::Unavailable {
                        status: Some(status.as_u16()),
                        reason: format!("{route}: {}", transport_reason(&error)),
                        body: None,
                    })
                }
            };
            match status {
                s if s.is_success() => return Ok(bytes),
                StatusCode::TOO_MANY_REQUESTS => {
                    self.metrics.genesys_rate_limited.inc();
                    let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
                    self.budget.pause_for(wait);
                    rate_limited += 1;
                    tracing::warn!(
                        genesys.route = route,
                        retry_after_ms = wait.as_millis() as u64,
                        "Genesys rate limit hit; pausing every caller"
                    );
                    if rate_limited >= MAX_RATE_LIMITED_WAITS
                        || !within_wait_budget(started.elapsed(), wait, self.max_wait)
                    {
                        return Err(GenesysError::RateLimited { retry_after: wait });
                    }
                }
                StatusCode::UNAUTHORIZED if !refreshed_token => {
                    self.tokens.invalidate(&token).await;
                    refreshed_token = true;
                }
                _ => return Err(classify(status, ErrorBody::from_bytes(&bytes))),
            }
        }
    }

    fn count(&self, route: &'static str, status: String) {
        self.metrics
            .genesys_requests
            .get_or_create(&GenesysLabels { route, status })
            .inc();
    }
}

fn classify(status: StatusCode, body: ErrorBody) -> GenesysError {
    let code = status.as_u16();
    match status {
        StatusCode::UNAUTHORIZED => GenesysError::Unauthorized { status: code, body },
        StatusCode::FORBIDDEN => GenesysError::Forbidden { body },
        StatusCode::NOT_FOUND => GenesysError::NotFound { body },
        StatusCode::REQUEST_TIMEOUT => GenesysError::Unavailable {
            status: Some(code),
            reason: "request timeout".into(),
            body: Some(body),
        },
        s if s.is_server_error() => GenesysError::Unavailable {
            status: Some(code),
            reason: format!("answered {code}"),
            body: Some(body),
        },
        _ => GenesysError::Rejected { status: code, body },
    }
}

/// The `inin-ratelimit-count/allowed/reset` headers.
fn server_budget(headers: &reqwest::header::HeaderMap) -> ServerBudget {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u32>().ok();
    ServerBudget {
        count: number("inin-ratelimit-count"),
        allowed: number("inin-ratelimit-allowed"),
        reset: number("inin-ratelimit-reset").map(|s| Duration::from_secs(s.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_is_classified_as_the_failure_policy_needs() {
        // status, class, systemic (counts toward outage mode)
        for (status, class, systemic) in [
            (400, "rejected", false),
            (409, "rejected", false),
            (422, "rejected", false),
            (401, "unauthorized", true), // after a fresh token: the credentials, not the message
            (403, "forbidden", false),
            (404, "not_found", false),
            (408, "unavailable", true),
            (500, "unavailable", true),
            (502, "unavailable", true),
            (503, "unavailable", true),
            (504, "unavailable", true),
        ] {
            let error = classify(StatusCode::from_u16(status).unwrap(), ErrorBody::default());
            let got = match &error {
                GenesysError::Rejected { .. } => "rejected",
                GenesysError::Unauthorized { .. } => "unauthorized",
                GenesysError::Forbidden { .. } => "forbidden",
                GenesysError::NotFound { .. } => "not_found",
                GenesysError::Unavailable { .. } => "unavailable",
                GenesysError::RateLimited { .. } => "rate_limited",
            };
            assert_eq!(got, class, "{status}");
            assert_eq!(error.is_systemic(), systemic, "{status}");
        }
    }
}
