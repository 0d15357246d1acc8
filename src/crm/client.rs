//! The generic REST CRM adapter (DESIGN §5):
//! `GET {base_url}/customers?email=…&phone=…&sessionHash=…` with a bearer key; the first
//! customer of the array wins; `[]` or 404 means not found; anything else (errors,
//! timeouts, a body that is not an array) means the CRM is unavailable.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use super::model::{matched_by, CrmOutcome, Customer};
use crate::metrics::{CrmLabels, Metrics};
use crate::submission::Submission;

/// Looks customers up in the CRM.
pub trait CustomerDirectory: Send + Sync {
    /// Finds the customer a submission is about; never fails, an unreachable CRM is an outcome.
    fn lookup(
        &self,
        submission: &Submission,
    ) -> impl std::future::Future<Output = CrmOutcome> + Send;
}

/// The HTTP CRM client.
pub struct CrmClient {
    http: reqwest::Client,
    url: String,
    api_key: SecretString,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl CrmClient {
    /// A client of `{base_url}/customers`.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        api_key: SecretString,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            http,
            url: format!("{}/customers", base_url.trim_end_matches('/')),
            api_key,
            timeout,
            metrics,
        }
    }

    async fn fetch(&self, submission: &Submission) -> Result<Option<Customer>, String> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(email) = &submission.guest.email {
            query.push(("email", email.as_str()));
        }
        if let Some(phone) = &submission.guest.phone {
            query.push(("phone", phone.as_str()));
        }
        if let Some(hash) = &submission.guest.session_hash {
            query.push(("sessionHash", hash.as_str()));
        }
        let mut request = self.http.get(&self.url).query(&query).timeout(self.timeout);
        if !self.api_key.expose_secret().is_empty() {
            request = request.bearer_auth(self.api_key.expose_secret());
        }
        let response = request
            .send()
            .await
            .map_err(|e| crate::genesys::client::transport_reason(&e).to_string())?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => {
                let customers: Vec<Customer> = response
                    .json()
                    .await
                    .map_err(|e| format!("answer not understood: {}", e.without_url()))?;
                Ok(customers.into_iter().next())
            }
            status => Err(format!("answered {status}")),
        }
    }
}

impl CustomerDirectory for CrmClient {
    async fn lookup(&self, submission: &Submission) -> CrmOutcome {
        let started = Instant::now();
        let outcome = match self.fetch(submission).await {
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
            .crm_latency
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .crm_requests
            .get_or_create(&CrmLabels {
                result: outcome.status(),
            })
            .inc();
        outcome
    }
}
