//! OAuth client-credentials tokens for Genesys Cloud: `POST https://login.{domain}/oauth/token`
//! with Basic auth. One token is cached until shortly before it expires; the lock is held
//! while refreshing so that concurrent callers wait for one grant instead of each asking.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::error::{ErrorBody, GenesysError};
use super::model::TokenResponse;
use crate::metrics::{GenesysLabels, Metrics, RouteLabels};

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

/// Grants and caches tokens.
pub struct TokenProvider {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    refresh_margin: Duration,
    cached: Mutex<Option<AccessToken>>,
    metrics: Arc<Metrics>,
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
            http,
            token_url: format!("{login_url}/oauth/token"),
            client_id,
            client_secret,
            refresh_margin,
            cached: Mutex::new(None),
            metrics,
        }
    }

    /// A valid token, granting a new one when none is cached or it is about to expire.
    pub async fn token(&self) -> Result<AccessToken, GenesysError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.renew_at > Instant::now()) {
            return Ok(token.clone());
        }
        let token = self.grant().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Drops `token` if it is still the cached one (Genesys answered 401 to it).
    pub async fn invalidate(&self, token: &AccessToken) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|current| current.same_as(token))
        {
            *cached = None;
        }
    }

    async fn grant(&self) -> Result<AccessToken, GenesysError> {
        let started = Instant::now();
        let result = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await;
        let status_label = match &result {
            Ok(response) => response.status().as_u16().to_string(),
            Err(_) => "error".to_string(),
        };
        self.metrics
            .genesys_requests
            .get_or_create(&GenesysLabels {
                route: "token",
                status: status_label,
            })
            .inc();
        self.metrics
            .genesys_latency
            .get_or_create(&RouteLabels { route: "token" })
            .observe(started.elapsed().as_secs_f64());
        let response = result.map_err(|e| GenesysError::Unavailable {
            status: None,
            reason: format!(
                "token request failed: {}",
                crate::http_error::transport_reason(&e)
            ),
            body: None,
        })?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.unwrap_or_default();
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
                Ok(AccessToken {
                    value: Arc::new(grant.access_token),
                    renew_at: Instant::now() + lifetime - margin,
                })
            }
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
