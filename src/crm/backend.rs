//! The seam between the shared client ([`super::CrmClient`]: cache, breaker, slowdowns,
//! metrics, `on_unavailable`) and one CRM's API. A CRM is one module implementing
//! [`CrmBackend`]: how to fetch a customer, how to check the CRM answers, and what
//! `topology check` proves about it.

use futures_util::future::BoxFuture;

use super::client::CrmError;
use super::model::Customer;
use crate::submission::Submission;

/// One CRM's API, reached with its own authentication; never caches, never retries on its
/// own (beyond renewing a token the CRM refused).
pub trait CrmBackend: Send + Sync {
    /// What to name in messages: the kind and its host (never a credential).
    fn target(&self) -> String;

    /// The customer `submission` is about, or `None`; `Err` means the CRM is unavailable.
    fn fetch<'a>(
        &'a self,
        submission: &'a Submission,
    ) -> BoxFuture<'a, Result<Option<Customer>, CrmError>>;

    /// One harmless call that succeeds when the CRM answers (outage probing).
    fn probe(&self) -> BoxFuture<'_, Result<(), CrmError>>;

    /// What `topology check` proves: credentials accepted, one harmless query answered and
    /// every mapped field present on the object. `Ok` says what was checked.
    fn verify(&self) -> BoxFuture<'_, Result<String, CrmError>>;
}
