//! The pre-chat submission: the message body shared by the HTTP ingest and the worker.
//!
//! The web tier may publish straight to RabbitMQ, so the worker cannot trust that ingest saw a
//! message first: both sides run the same [`parse_submission`], and what ingest publishes
//! ([`Submission::to_json`]) parses back to an equal value. Validation walks a
//! `serde_json::Value` by hand rather than deriving `Deserialize`, so that every rejection
//! names its field and gets a code and a sentence a web developer can act on, without ever
//! repeating the personal data it rejected.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::privacy::{Email, Phone, SessionHasher};

mod parse;
pub use parse::parse_submission;

/// The only body version this service understands; an absent `schemaVersion` means this one.
pub const SCHEMA_VERSION: u32 = 1;
/// Largest accepted body, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// Subject used when the survey gives none.
pub const DEFAULT_SUBJECT: &str = "General Inquiry";

/// A validated, normalised submission (JSON, camelCase, `schemaVersion` 1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Submission {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The idempotency key, also the AMQP `message_id` and the `prechatSubmissionId` attribute.
    pub submission_id: String,
    /// When the guest submitted the survey; deadlines count from here.
    pub submitted_at: DateTime<Utc>,
    /// The Genesys conversation (lower-case UUID), when the web tier knew it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// Who the guest is; at least one identifier is present.
    pub guest: Guest,
    /// What the guest asked about.
    pub survey: Survey,
    /// Whether personal data may be written to Genesys.
    pub consent: Consent,
}

/// The guest's identifiers. Never holds a raw session id, only its hash.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Guest {
    /// Lower-cased email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// Phone number in E.164 form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Phone>,
    /// Lower-case hex hash of the browser session id ([`SessionHasher::hash`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_hash: Option<String>,
    /// Whether the web tier's backend knows the visitor signed in as the owner of this email
    /// or phone (`guest.verified`, default `false`). Anyone can type someone else's email into
    /// a survey: an unverified identity is still looked up, but agents are told so, and no
    /// External Contact is touched for it (README, "External Contacts").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verified: bool,
}

/// The survey answers that describe this chat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Survey {
    /// What the chat is about, at most 200 characters; [`DEFAULT_SUBJECT`] when not given.
    pub subject: String,
    /// How urgent the guest says it is.
    pub priority: Priority,
    /// A language tag such as `en-US`, as the guest's page sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// The survey's priority.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// `low`
    Low,
    /// `normal`, the default.
    #[default]
    Normal,
    /// `high`
    High,
    /// `urgent`
    Urgent,
}

impl Priority {
    /// The wire name: `low|normal|high|urgent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Urgent => "urgent",
        }
    }

    /// Reads a wire name, ignoring case and surrounding whitespace.
    pub fn parse(raw: &str) -> Option<Self> {
        [Self::Low, Self::Normal, Self::High, Self::Urgent]
            .into_iter()
            .find(|p| raw.trim().eq_ignore_ascii_case(p.as_str()))
    }
}

/// The guest's consent to having personal data stored with the conversation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Consent {
    /// Only `true` allows names, email and phone to reach Genesys.
    pub given: bool,
    /// How consent was obtained, when the page said.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ConsentType>,
}

/// How consent was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentType {
    /// The guest ticked a box or clicked "I agree".
    Explicit,
    /// Consent inferred from the guest's use of the page.
    Implicit,
}

impl ConsentType {
    /// The wire name: `explicit|implicit`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentType::Explicit => "explicit",
            ConsentType::Implicit => "implicit",
        }
    }
}

impl Submission {
    /// A submission that identifies nobody (an all-zero session hash), for probing the CRM.
    pub fn probe(submission_id: &str) -> Self {
        Submission {
            schema_version: SCHEMA_VERSION,
            submission_id: submission_id.to_string(),
            submitted_at: Utc::now(),
            conversation_id: None,
            guest: Guest {
                session_hash: Some("0".repeat(64)),
                ..Default::default()
            },
            survey: Survey {
                subject: DEFAULT_SUBJECT.to_string(),
                priority: Priority::Normal,
                language: None,
            },
            consent: Consent::default(),
        }
    }

    /// Whether the web tier vouches for the guest's email and phone (`guest.verified`).
    pub fn is_verified(&self) -> bool {
        self.guest.verified
    }

    /// Whether the guest consented (`consent.given == true`): without it no PII is written.
    pub fn has_consent(&self) -> bool {
        self.consent.given
    }

    /// The JSON body to publish; [`parse_submission`] reads it back to an equal value.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a Submission has only string keys and plain values")
    }
}

/// Where a body came from, which decides the defaults for `submissionId` and `submittedAt`.
#[derive(Clone, Debug, PartialEq)]
pub enum Origin {
    /// `POST /v1/submissions`: a missing `submissionId` is generated.
    Http,
    /// A message consumed from RabbitMQ, with its AMQP properties.
    Queue {
        /// The AMQP `message_id`, used when the body has no `submissionId`.
        message_id: Option<String>,
        /// The AMQP `timestamp`, used when the body has no `submittedAt`.
        timestamp: Option<DateTime<Utc>>,
    },
}

/// Everything [`parse_submission`] needs besides the body.
#[derive(Clone, Debug)]
pub struct ParseContext<'a> {
    /// Where the body came from.
    pub origin: Origin,
    /// The time to record when neither the body nor the message carries one.
    pub now: DateTime<Utc>,
    /// Hashes a raw `guest.sessionId`.
    pub hasher: &'a SessionHasher,
    /// The region assumed for phone numbers written without a leading `+`.
    pub default_phone_region: Option<phonenumber::country::Id>,
}

/// Why a body was rejected: a stable `code`, a sentence for the developer, and the JSON path
/// of the offending field when there is one. Never contains the rejected personal data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ValidationError {
    /// Machine-readable reason, e.g. `invalid_email`.
    pub code: &'static str,
    /// A sentence saying what is wrong and how to fix it.
    pub message: String,
    /// The offending field as a dotted path, e.g. `survey.subject`.
    pub field: Option<String>,
}

impl ValidationError {
    /// A rejection with `code` and `message`, about `field` when given.
    pub fn new(code: &'static str, message: impl Into<String>, field: Option<&str>) -> Self {
        Self {
            code,
            message: message.into(),
            field: field.map(str::to_owned),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
