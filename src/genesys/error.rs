//! Genesys Cloud errors, shaped for the decisions callers make on them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Genesys' standard error body (`ErrorBody`); every field optional because proxies and
/// outages answer with anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// Machine code, e.g. `bad.request`, `too.many.requests.retry.after`.
    #[serde(default)]
    pub code: Option<String>,
    /// HTTP status as Genesys saw it.
    #[serde(default)]
    pub status: Option<u16>,
    /// Correlation id to quote to Genesys support.
    #[serde(default)]
    pub context_id: Option<String>,
}

impl ErrorBody {
    /// Parses a body, keeping the start of a non-JSON one as the message. Emails and phone
    /// numbers in the message (Genesys may quote the values it refused) are masked here, so
    /// that no log line, event or dead-letter header made from it holds them.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        let body: ErrorBody = serde_json::from_slice(bytes).unwrap_or_else(|_| ErrorBody {
            message: (!bytes.is_empty())
                .then(|| String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()),
            ..Default::default()
        });
        body.masked()
    }

    /// The body with emails and phone numbers in its message masked.
    pub fn masked(mut self) -> Self {
        self.message = self.message.as_deref().map(crate::privacy::mask_text);
        self
    }
}

/// What a Genesys call can end in, by what the caller does about it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GenesysError {
    /// 429 still answered after the waits allowed for one call: try the message later,
    /// without counting an attempt.
    #[error("rate limited by Genesys; retry after {retry_after:?}")]
    RateLimited {
        /// The server's `Retry-After`.
        retry_after: Duration,
    },
    /// 401 even with a fresh token, or the token grant refused the credentials.
    #[error("Genesys refused the credentials ({status}): {}", body.message.as_deref().unwrap_or(""))]
    Unauthorized {
        /// 400 or 401.
        status: u16,
        /// Error body.
        body: ErrorBody,
    },
    /// 403: the OAuth client's role lacks a permission.
    #[error("Genesys forbade the call: {}", body.message.as_deref().unwrap_or(""))]
    Forbidden {
        /// Error body.
        body: ErrorBody,
    },
    /// 404.
    #[error("not found in Genesys: {}", body.message.as_deref().unwrap_or(""))]
    NotFound {
        /// Error body.
        body: ErrorBody,
    },
    /// Another 4xx: the request itself is wrong and retrying won't help.
    #[error("Genesys rejected the request ({status}): {}", body.message.as_deref().unwrap_or(""))]
    Rejected {
        /// HTTP status.
        status: u16,
        /// Error body.
        body: ErrorBody,
    },
    /// 5xx, a timeout or a connection failure: worth retrying.
    #[error("Genesys unavailable: {reason}")]
    Unavailable {
        /// HTTP status, when there was a response.
        status: Option<u16>,
        /// What happened.
        reason: String,
        /// Error body, when there was one.
        body: Option<ErrorBody>,
    },
}

impl GenesysError {
    /// HTTP status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            GenesysError::RateLimited { .. } => Some(429),
            GenesysError::Unauthorized { status, .. } | GenesysError::Rejected { status, .. } => {
                Some(*status)
            }
            GenesysError::Forbidden { .. } => Some(403),
            GenesysError::NotFound { .. } => Some(404),
            GenesysError::Unavailable { status, .. } => *status,
        }
    }

    /// The error body, when there was one.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            GenesysError::Unauthorized { body, .. }
            | GenesysError::Forbidden { body }
            | GenesysError::NotFound { body }
            | GenesysError::Rejected { body, .. } => Some(body),
            GenesysError::Unavailable { body, .. } => body.as_ref(),
            GenesysError::RateLimited { .. } => None,
        }
    }

    /// A short name of the failure, for metric labels: `rate_limited`, `unauthorized`,
    /// `forbidden`, `not_found`, `rejected`, `unavailable`.
    pub fn kind(&self) -> &'static str {
        match self {
            GenesysError::RateLimited { .. } => "rate_limited",
            GenesysError::Unauthorized { .. } => "unauthorized",
            GenesysError::Forbidden { .. } => "forbidden",
            GenesysError::NotFound { .. } => "not_found",
            GenesysError::Rejected { .. } => "rejected",
            GenesysError::Unavailable { .. } => "unavailable",
        }
    }

    /// A failure of Genesys as a whole rather than of one message (outage detection).
    pub fn is_systemic(&self) -> bool {
        matches!(
            self,
            GenesysError::Unavailable { .. } | GenesysError::Unauthorized { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PII: [&str; 4] = [
        "jane.doe@example.com",
        "5551234567",
        "555 123 4567",
        "+44 20 7946 0958",
    ];

    fn assert_masked(text: &str) {
        for raw in PII {
            assert!(!text.contains(raw), "{raw} in {text:?}");
        }
    }

    #[test]
    fn emails_and_phones_in_an_error_body_are_masked_as_it_is_read() {
        let json = br#"{"message":"Contact jane.doe@example.com (+1 555 123 4567, alt 5551234567, +44 20 7946 0958) already exists","code":"bad.request","status":400,"contextId":"0f8fad5b-d9cb-469f-a165-70867728950e"}"#;
        let body = ErrorBody::from_bytes(json);
        let message = body.message.clone().unwrap();
        assert_masked(&message);
        assert!(message.contains("j***@example.com"), "{message}");
        assert!(message.contains("already exists"), "{message}");
        assert_eq!(body.code.as_deref(), Some("bad.request"));
        assert_eq!(
            body.context_id.as_deref(),
            Some("0f8fad5b-d9cb-469f-a165-70867728950e")
        );
        let error = GenesysError::Rejected { status: 400, body };
        assert_masked(&error.to_string());

        let text =
            ErrorBody::from_bytes(b"<html>no user jane.doe@example.com, 555 123 4567</html>");
        assert_masked(text.message.as_deref().unwrap());
    }
}
