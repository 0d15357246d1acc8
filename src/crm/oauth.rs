//! OAuth 2.0 client-credentials tokens for the CRMs (Salesforce's My Domain, the Microsoft
//! identity platform): one token cached until shortly before it expires, one grant at a time
//! (callers arriving during a grant wait for it), and dropped when the CRM answers 401, like
//! the Genesys token provider.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;

use super::client::CrmError;
use crate::http_error::transport_reason;

/// A cached bearer token.
#[derive(Clone)]
pub struct CrmToken {
    value: Arc<SecretString>,
    renew_at: Instant,
}

impl CrmToken {
    /// The secret value, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }
}

/// What a grant sends and how long its token is kept.
pub struct Grant {
    /// The token endpoint.
    pub token_url: String,
    /// Form fields besides `grant_type`, the secret included.
    pub form: Vec<(&'static str, SecretString)>,
    /// Used when the answer has no `expires_in` (Salesforce).
    pub default_lifetime: Duration,
    /// Timeout of the grant.
    pub timeout: Duration,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: SecretString,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthError {
    error: Option<String>,
}

/// Grants and caches tokens for one CRM.
pub struct TokenCache {
    http: reqwest::Client,
    grant: Grant,
    cached: tokio::sync::Mutex<Option<CrmToken>>,
    grants: std::sync::atomic::AtomicU64,
}

impl TokenCache {
    /// A cache of tokens from `grant`.
    pub fn new(http: reqwest::Client, grant: Grant) -> Self {
        Self {
            http,
            grant,
            cached: tokio::sync::Mutex::new(None),
            grants: Default::default(),
        }
    }

    /// Tokens granted so far.
    pub fn grants(&self) -> u64 {
        self.grants.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A valid token; the lock is held during a grant, so concurrent callers share it.
    pub async fn token(&self) -> Result<CrmToken, CrmError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.renew_at > Instant::now()) {
            return Ok(token.clone());
        }
        let token = self.grant_once().await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Drops `token` if it is still the cached one (the CRM answered 401 to it).
    pub async fn invalidate(&self, token: &CrmToken) {
        let mut cached = self.cached.lock().await;
        if cached
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(&c.value, &token.value))
        {
            *cached = None;
        }
    }

    async fn grant_once(&self) -> Result<CrmToken, CrmError> {
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        form.extend(self.grant.form.iter().map(|(k, v)| (*k, v.expose_secret())));
        let response = self
            .http
            .post(&self.grant.token_url)
            .form(&form)
            .timeout(self.grant.timeout)
            .send()
            .await
            .map_err(|e| CrmError::Transport(transport_reason(&e)))?;
        let status = response.status().as_u16();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| CrmError::Transport(transport_reason(&e)))?;
        match status {
            200 => {
                let answer: TokenAnswer = serde_json::from_slice(&bytes)
                    .map_err(|e| CrmError::Unreadable(format!("token answer: {e}")))?;
                self.grants
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let lifetime = answer
                    .expires_in
                    .map(Duration::from_secs)
                    .unwrap_or(self.grant.default_lifetime);
                // Renewed a minute early, or halfway through a short lifetime.
                let margin = Duration::from_secs(60).min(lifetime / 2);
                tracing::info!(
                    crm.token_lifetime_secs = lifetime.as_secs(),
                    "CRM token granted"
                );
                Ok(CrmToken {
                    value: Arc::new(answer.access_token),
                    renew_at: Instant::now() + lifetime - margin,
                })
            }
            _ => {
                let code = serde_json::from_slice::<OAuthError>(&bytes)
                    .ok()
                    .and_then(|e| e.error)
                    .unwrap_or_default();
                Err(CrmError::Token { status, code })
            }
        }
    }
}

/// A CRM answer: status, headers, body.
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl TokenCache {
    /// `GET url` with the cached token (and `traceparent`); a 401 drops the token and the
    /// call is made once more with a new one.
    pub async fn get(
        &self,
        url: &str,
        headers: &[(&'static str, &'static str)],
        timeout: Duration,
    ) -> Result<Answer, CrmError> {
        self.send(reqwest::Method::GET, url, headers, None, timeout)
            .await
    }

    /// `POST url` with a body of the given content type.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, &'static str)],
        content_type: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Answer, CrmError> {
        let body = (content_type.to_string(), body);
        self.send(reqwest::Method::POST, url, headers, Some(body), timeout)
            .await
    }

    /// `POST url` with a JSON body, as [`TokenCache::get`] does a `GET`.
    pub async fn post_json(
        &self,
        url: &str,
        headers: &[(&'static str, &'static str)],
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<Answer, CrmError> {
        let body = (
            "application/json".to_string(),
            serde_json::to_vec(body).unwrap_or_default(),
        );
        self.send(reqwest::Method::POST, url, headers, Some(body), timeout)
            .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        headers: &[(&'static str, &'static str)],
        body: Option<(String, Vec<u8>)>,
        timeout: Duration,
    ) -> Result<Answer, CrmError> {
        let mut retried = false;
        loop {
            let token = self.token().await?;
            let mut request = self
                .http
                .request(method.clone(), url)
                .bearer_auth(token.expose())
                .timeout(timeout);
            if let Some((content_type, bytes)) = &body {
                request = request
                    .header("content-type", content_type.as_str())
                    .body(bytes.clone());
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(traceparent) = crate::trace::outgoing() {
                request = request.header("traceparent", traceparent);
            }
            let response = request
                .send()
                .await
                .map_err(|e| CrmError::Transport(transport_reason(&e)))?;
            let status = response.status().as_u16();
            if status == 401 && !retried {
                tracing::info!("CRM refused its token (401); granting a new one");
                self.invalidate(&token).await;
                retried = true;
                continue;
            }
            let headers = response.headers().clone();
            let body = response
                .bytes()
                .await
                .map_err(|e| CrmError::Transport(transport_reason(&e)))?
                .to_vec();
            return Ok(Answer {
                status,
                headers,
                body,
            });
        }
    }
}

/// Percent-encodes a query parameter value (spaces as `%20`, never `+`).
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
