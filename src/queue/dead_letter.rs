//! Dead letters: their classes, the headers a dead letter carries, and the scrubbing of a raw
//! session id from a body that failed validation. The worker, the resolver and the `dlq`
//! commands all read and write dead letters through this module.

use chrono::{DateTime, Utc};
use lapin::types::FieldTable;

use super::headers::{self, HeaderExt};
use crate::privacy::SessionHasher;

/// Dead-letter classes (header `prechat-error-class`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Not a valid submission.
    InvalidPayload,
    /// Genesys answered a 4xx other than 401/403/429.
    GenesysRejected,
    /// Genesys answered 403 (a missing permission).
    GenesysForbidden,
    /// No customer participant on the conversation.
    ConversationNotFound,
    /// Retryable failures until `worker.max_attempts`.
    RetriesExhausted,
    /// The deadline passed before the conversation could be found.
    Expired,
    /// The broker's crash-loop guard (`x-delivery-limit`).
    DeliveryLimit,
}

impl ErrorClass {
    /// Every class, for CLI validation and metrics.
    pub const ALL: [ErrorClass; 7] = [
        ErrorClass::InvalidPayload,
        ErrorClass::GenesysRejected,
        ErrorClass::GenesysForbidden,
        ErrorClass::ConversationNotFound,
        ErrorClass::RetriesExhausted,
        ErrorClass::Expired,
        ErrorClass::DeliveryLimit,
    ];

    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::InvalidPayload => "invalid_payload",
            ErrorClass::GenesysRejected => "genesys_rejected",
            ErrorClass::GenesysForbidden => "genesys_forbidden",
            ErrorClass::ConversationNotFound => "conversation_not_found",
            ErrorClass::RetriesExhausted => "retries_exhausted",
            ErrorClass::Expired => "expired",
            ErrorClass::DeliveryLimit => "delivery_limit",
        }
    }

    /// Parses a header value.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == value)
    }
}

/// The error details a dead letter carries in its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Class.
    pub class: ErrorClass,
    /// HTTP status of the failing call.
    pub status: Option<u16>,
    /// Genesys error code.
    pub code: Option<String>,
    /// A sentence.
    pub message: String,
    /// Genesys `contextId`.
    pub context_id: Option<String>,
}

/// Writes the dead-letter headers (README, "RabbitMQ topology and headers") onto a message's headers.
pub fn mark_dead(headers: &mut FieldTable, dead: &DeadLetter, now: DateTime<Utc>) {
    headers.set_text(headers::ERROR_CLASS, dead.class.as_str());
    headers.set_text(headers::ERROR_MESSAGE, truncate(&dead.message, 1000));
    if let Some(status) = dead.status {
        headers.set_number(headers::ERROR_STATUS, status.into());
    }
    if let Some(code) = &dead.code {
        headers.set_text(headers::ERROR_CODE, code.clone());
    }
    if let Some(context_id) = &dead.context_id {
        headers.set_text(headers::ERROR_CONTEXT_ID, context_id.clone());
    }
    headers.set_text(headers::DEAD_LETTERED_AT, headers::timestamp(now));
    if headers.text(headers::FIRST_FAILURE_AT).is_none() {
        headers.set_text(headers::FIRST_FAILURE_AT, headers::timestamp(now));
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// An invalid body goes to the dead-letter queue as it came, except that a raw
/// `guest.sessionId` is replaced by its hash (in a body that is not even JSON, the value of
/// every `"sessionId"` is cut out): raw session ids never rest on the broker.
pub fn scrub_session_id(body: &[u8], hasher: &SessionHasher) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return redact_session_ids(body);
    };
    let Some(guest) = value.get_mut("guest").and_then(|g| g.as_object_mut()) else {
        return body.to_vec();
    };
    match guest.remove("sessionId") {
        Some(serde_json::Value::String(raw)) => {
            guest.insert("sessionHash".into(), hasher.hash(&raw).into());
        }
        Some(_) => {}
        None => return body.to_vec(),
    }
    serde_json::to_vec(&value).unwrap_or_default()
}

/// `"sessionId": "<anything>"` → `"sessionId": "[redacted]"`, in text that does not parse.
fn redact_session_ids(body: &[u8]) -> Vec<u8> {
    const KEY: &[u8] = b"\"sessionId\"";
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        if !body[i..].starts_with(KEY) {
            out.push(body[i]);
            i += 1;
            continue;
        }
        out.extend_from_slice(KEY);
        i += KEY.len();
        while i < body.len() && (body[i].is_ascii_whitespace() || body[i] == b':') {
            out.push(body[i]);
            i += 1;
        }
        if body.get(i) == Some(&b'"') {
            i += 1;
            while i < body.len() && body[i] != b'"' {
                // An escaped character (`\"` included) is part of the value.
                i += if body[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.extend_from_slice(b"\"[redacted]\"");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_session_id_in_a_body_that_is_not_json_is_cut_out() {
        let hasher = SessionHasher::new(None);
        for body in [
            &br#"{"guest":{"sessionId": "raw-browser-id", "email":"#[..],
            br#"{"guest":{"sessionId":"raw-\"browser-id"#,
            br#"x "sessionId":"raw-browser-id"} "sessionId" : "raw-browser-id2"#,
        ] {
            let text = String::from_utf8(scrub_session_id(body, &hasher)).unwrap();
            assert!(!text.contains("raw-"), "{text}");
            assert!(text.contains(r#""sessionId""#), "{text}");
        }
        assert_eq!(
            scrub_session_id(br#"{"a":"sessionId"}"#, &hasher),
            br#"{"a":"sessionId"}"#
        );
    }

    #[test]
    fn a_raw_session_id_in_an_invalid_body_is_replaced_by_its_hash() {
        let hasher = SessionHasher::new(None);
        let scrubbed = scrub_session_id(
            br#"{"guest":{"sessionId":"raw-browser-id","email":5}}"#,
            &hasher,
        );
        let text = String::from_utf8(scrubbed).unwrap();
        assert!(!text.contains("raw-browser-id"));
        assert!(text.contains(&hasher.hash("raw-browser-id")));
        assert_eq!(scrub_session_id(b"not json", &hasher), b"not json");
    }
}
