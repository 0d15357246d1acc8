//! The generic REST CRM (`crm.kind = "rest"`, README, "CRM", `crm.*`):
//! `GET {base_url}/customers?email=…&phone=…&sessionHash=…` with a bearer key, or with
//! `crm.lookup = "post"` the same identifiers as a JSON body to `POST {base_url}/customers/search`
//! (out of the URL, which proxies and access logs keep); the first customer of the array
//! wins; `[]` or 404 means not found; anything else (errors, timeouts, a body that is not an
//! array) means the CRM is unavailable.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};

use super::backend::CrmBackend;
use super::client::CrmError;
use super::fields::FieldMap;
use super::model::Customer;
use crate::config::RestLookup;
use crate::http_error::transport_reason;
use crate::submission::Submission;

/// The generic REST contract.
pub struct RestCrm {
    http: reqwest::Client,
    url: String,
    lookup: RestLookup,
    api_key: SecretString,
    timeout: Duration,
    fields: FieldMap,
}

impl RestCrm {
    /// A client of `{base_url}/customers` (or `…/customers/search`).
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        lookup: RestLookup,
        api_key: SecretString,
        timeout: Duration,
        fields: FieldMap,
    ) -> Self {
        let base = base_url.trim_end_matches('/');
        Self {
            http,
            url: match lookup {
                RestLookup::Get => format!("{base}/customers"),
                RestLookup::Post => format!("{base}/customers/search"),
            },
            lookup,
            api_key,
            timeout,
            fields,
        }
    }

    async fn get(&self, submission: &Submission) -> Result<Option<Customer>, CrmError> {
        let identifiers = query(submission);
        let request = match self.lookup {
            RestLookup::Get => self.http.get(&self.url).query(&identifiers),
            RestLookup::Post => {
                let body: Map<String, Value> = identifiers
                    .into_iter()
                    .map(|(key, value)| (key.to_string(), Value::from(value)))
                    .collect();
                self.http.post(&self.url).json(&body)
            }
        };
        let mut request = request.timeout(self.timeout);
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
                let customers: Vec<Map<String, Value>> = response
                    .json()
                    .await
                    .map_err(|e| CrmError::Unreadable(e.without_url().to_string()))?;
                customers
                    .first()
                    .map(|record| self.fields.customer(record))
                    .transpose()
            }
            status => Err(CrmError::Status(status)),
        }
    }
}

/// The identifiers a submission has, as query parameters (or body keys).
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

impl CrmBackend for RestCrm {
    fn target(&self) -> String {
        format!("rest at {}", self.url)
    }

    fn fetch<'a>(
        &'a self,
        submission: &'a Submission,
    ) -> BoxFuture<'a, Result<Option<Customer>, CrmError>> {
        self.get(submission).boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), CrmError>> {
        async {
            let probe = Submission::probe("prechat-enricher-probe");
            self.get(&probe).await.map(|_| ())
        }
        .boxed()
    }

    fn verify(&self) -> BoxFuture<'_, Result<String, CrmError>> {
        async {
            self.probe().await?;
            Ok(format!("{} answered a lookup", self.target()))
        }
        .boxed()
    }
}
