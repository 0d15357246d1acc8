//! The merge rule (README, "The merge rule"): survey + CRM outcome + routing table → what Genesys receives.
//!
//! Kept pure, without clocks or I/O (the caller passes `enriched_at`), because it decides what
//! an agent sees and whether personal data leaves the service: the same inputs must always
//! give the same attributes, and that is only checkable when nothing else can vary.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::crm::model::{CrmMatch, CrmOutcome, Customer};
use crate::privacy::{mask_email, mask_name, mask_phone, Phone};
use crate::submission::{Priority, Submission};

/// The tier used without a CRM match, and the route for tiers the table does not know.
pub const DEFAULT_TIER: &str = "standard";
/// The account status used without a CRM match.
pub const DEFAULT_ACCOUNT_STATUS: &str = "active";
/// The attribute keys that carry personal data, written only with consent.
pub const PII_KEYS: [&str; 4] = ["firstName", "lastName", "email", "phone"];

/// A Genesys routing queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueTarget {
    /// The queue's name, as configured in `routing.queues`.
    pub name: String,
    /// The queue's Genesys id.
    pub id: String,
}

/// Loyalty tier → routing queue, resolved once at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTable {
    by_tier: BTreeMap<String, QueueTarget>,
}

impl RouteTable {
    /// A table from tier names (any case, trimmed here) to queues.
    pub fn new(map: BTreeMap<String, QueueTarget>) -> Self {
        let by_tier = map
            .into_iter()
            .map(|(tier, target)| (normalise(&tier), target))
            .collect();
        Self { by_tier }
    }

    /// A table that routes nothing (routing disabled).
    pub fn empty() -> Self {
        Self::default()
    }

    /// The queue for `tier` (any case); a tier without an entry gets the `standard` entry.
    pub fn target_for(&self, tier: &str) -> Option<&QueueTarget> {
        self.by_tier
            .get(&normalise(tier))
            .or_else(|| self.by_tier.get(DEFAULT_TIER))
    }
}

/// The participant attribute names written onto the conversation, for every reader.
pub mod attr {
    /// The CRM's customer id (empty when not found).
    pub const CRM_CUSTOMER_ID: &str = "crmCustomerId";
    /// The loyalty tier, lower case.
    pub const LOYALTY_TIER: &str = "loyaltyTier";
    /// The account status.
    pub const ACCOUNT_STATUS: &str = "accountStatus";
    /// Loyalty points, a whole number.
    pub const LOYALTY_POINTS: &str = "loyaltyPoints";
    /// Earlier tickets, a whole number.
    pub const PREVIOUS_TICKETS: &str = "previousTickets";
    /// The survey's subject.
    pub const SUBJECT: &str = "preChatSubject";
    /// The survey's priority.
    pub const PRIORITY: &str = "preChatPriority";
    /// The survey's language.
    pub const LANGUAGE: &str = "preChatLanguage";
    /// How the CRM record matched.
    pub const CRM_MATCH: &str = "crmMatch";
    /// `found|not_found|unavailable`.
    pub const CRM_STATUS: &str = "crmStatus";
    /// The tier's queue name.
    pub const TARGET_QUEUE_NAME: &str = "targetQueueName";
    /// The tier's queue id (what a flow transfers on).
    pub const TARGET_QUEUE_ID: &str = "targetQueueId";
    /// The submission id; the web tier sets it too, for the resolver to match on.
    pub const SUBMISSION_ID: &str = "prechatSubmissionId";
    /// When the enrichment was made (differs between redeliveries).
    pub const ENRICHED_AT: &str = "enrichedAt";
    /// `identityVerified`: `true` when the web tier vouched for the guest's email and phone
    /// (`guest.verified`), else `false`, so that agents verify before they disclose anything.
    pub const IDENTITY_VERIFIED: &str = "identityVerified";
}

/// The merged view of one submission, ready to become participant attributes.
#[derive(Clone, PartialEq)]
pub struct Enrichment {
    /// The CRM's id of the customer, when one was found.
    pub customer_id: Option<String>,
    /// Given name, from the CRM.
    pub first_name: Option<String>,
    /// Family name, from the CRM.
    pub last_name: Option<String>,
    /// The survey's email when given, else the CRM's.
    pub email: Option<String>,
    /// The survey's phone when given, else the CRM's (E.164 when it can be read as such).
    pub phone: Option<String>,
    /// Lower-case loyalty tier from the CRM, `standard` by default.
    pub loyalty_tier: String,
    /// Lower-case account status from the CRM, `active` by default.
    pub account_status: String,
    /// Loyalty points from the CRM, 0 by default.
    pub loyalty_points: i64,
    /// Earlier tickets from the CRM, 0 by default.
    pub previous_tickets: i64,
    /// The survey's subject.
    pub subject: String,
    /// The survey's priority.
    pub priority: Priority,
    /// The survey's language tag.
    pub language: Option<String>,
    /// How the customer was matched; `none` without a match.
    pub crm_match: CrmMatch,
    /// `found|not_found|unavailable`.
    pub crm_status: &'static str,
    /// Where the tier routes, when the route table has an entry.
    pub target_queue: Option<QueueTarget>,
    /// The submission's id (`prechatSubmissionId`).
    pub submission_id: String,
    /// When the merge happened.
    pub enriched_at: DateTime<Utc>,
    /// Whether the guest consented to PII being written.
    pub consent: bool,
    /// Whether the web tier vouched for the guest's identity (`guest.verified`).
    pub identity_verified: bool,
}

/// Merges a submission with its CRM outcome by the rule in README, "The merge rule": the CRM wins for the
/// persistent fields, the survey for the session fields, email and phone come from the survey
/// when given, and missing values take their defaults.
pub fn merge(
    sub: &Submission,
    crm: &CrmOutcome,
    routes: &RouteTable,
    enriched_at: DateTime<Utc>,
) -> Enrichment {
    let (customer, crm_match) = match crm {
        CrmOutcome::Found {
            customer,
            matched_by,
        } => (Some(customer), *matched_by),
        CrmOutcome::NotFound | CrmOutcome::Unavailable => (None, CrmMatch::None),
    };
    let field = |get: fn(&Customer) -> &Option<String>| -> Option<String> {
        customer.and_then(|c| non_blank(get(c).as_deref()))
    };
    let loyalty_tier = field(|c| &c.loyalty_tier)
        .map(|t| normalise(&t))
        .unwrap_or_else(|| DEFAULT_TIER.to_owned());
    let account_status = field(|c| &c.account_status)
        .map(|s| normalise(&s))
        .unwrap_or_else(|| DEFAULT_ACCOUNT_STATUS.to_owned());
    let email = match &sub.guest.email {
        Some(email) => Some(email.as_str().to_owned()),
        None => field(|c| &c.email).map(|e| e.to_lowercase()),
    };
    let phone = match &sub.guest.phone {
        Some(phone) => Some(phone.as_str().to_owned()),
        None => field(|c| &c.phone).map(|p| match Phone::parse(&p, None) {
            Ok(e164) => e164.as_str().to_owned(),
            Err(_) => p,
        }),
    };
    Enrichment {
        customer_id: customer.and_then(|c| non_blank(Some(&c.id))),
        first_name: field(|c| &c.first_name),
        last_name: field(|c| &c.last_name),
        email,
        phone,
        target_queue: routes.target_for(&loyalty_tier).cloned(),
        loyalty_tier,
        account_status,
        loyalty_points: customer.and_then(|c| c.loyalty_points).unwrap_or(0),
        previous_tickets: customer.and_then(|c| c.previous_tickets).unwrap_or(0),
        subject: sub.survey.subject.clone(),
        priority: sub.survey.priority,
        language: sub.survey.language.clone(),
        crm_match,
        crm_status: crm.status(),
        submission_id: sub.submission_id.clone(),
        enriched_at,
        consent: sub.has_consent(),
        identity_verified: sub.is_verified(),
    }
}

impl Enrichment {
    /// The participant attributes to write (all strings). The PII keys ([`PII_KEYS`]) appear
    /// only with consent, and each only when its value is known.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        let target = self.target_queue.as_ref();
        let mut attrs: BTreeMap<String, String> = [
            (
                attr::CRM_CUSTOMER_ID,
                self.customer_id.clone().unwrap_or_default(),
            ),
            (attr::LOYALTY_TIER, self.loyalty_tier.clone()),
            (attr::ACCOUNT_STATUS, self.account_status.clone()),
            (attr::LOYALTY_POINTS, self.loyalty_points.to_string()),
            (attr::PREVIOUS_TICKETS, self.previous_tickets.to_string()),
            (attr::SUBJECT, self.subject.clone()),
            (attr::PRIORITY, self.priority.as_str().to_owned()),
            (attr::LANGUAGE, self.language.clone().unwrap_or_default()),
            (attr::CRM_MATCH, self.crm_match.as_str().to_owned()),
            (attr::CRM_STATUS, self.crm_status.to_owned()),
            (
                attr::TARGET_QUEUE_NAME,
                target.map(|t| t.name.clone()).unwrap_or_default(),
            ),
            (
                attr::TARGET_QUEUE_ID,
                target.map(|t| t.id.clone()).unwrap_or_default(),
            ),
            (attr::SUBMISSION_ID, self.submission_id.clone()),
            (
                attr::ENRICHED_AT,
                self.enriched_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            ),
            (attr::IDENTITY_VERIFIED, self.identity_verified.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        if self.consent {
            let pii = [&self.first_name, &self.last_name, &self.email, &self.phone];
            for (key, value) in PII_KEYS.into_iter().zip(pii) {
                if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                    attrs.insert(key.to_owned(), value.to_owned());
                }
            }
        }
        attrs
    }
}

impl fmt::Debug for Enrichment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked = |v: &Option<String>, mask: fn(&str) -> String| v.as_deref().map(mask);
        f.debug_struct("Enrichment")
            .field("customer_id", &self.customer_id)
            .field("first_name", &masked(&self.first_name, mask_name))
            .field("last_name", &masked(&self.last_name, mask_name))
            .field("email", &masked(&self.email, mask_email))
            .field("phone", &masked(&self.phone, mask_phone))
            .field("loyalty_tier", &self.loyalty_tier)
            .field("account_status", &self.account_status)
            .field("loyalty_points", &self.loyalty_points)
            .field("previous_tickets", &self.previous_tickets)
            .field("subject", &self.subject)
            .field("priority", &self.priority)
            .field("language", &self.language)
            .field("crm_match", &self.crm_match)
            .field("crm_status", &self.crm_status)
            .field("target_queue", &self.target_queue)
            .field("submission_id", &self.submission_id)
            .field("enriched_at", &self.enriched_at)
            .field("consent", &self.consent)
            .field("identity_verified", &self.identity_verified)
            .finish()
    }
}

fn normalise(tier_or_status: &str) -> String {
    tier_or_status.trim().to_lowercase()
}

fn non_blank(value: Option<&str>) -> Option<String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests;
