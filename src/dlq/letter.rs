//! One dead letter as an operator sees it: its class, the error it died of, when, and whose
//! submission it was, read from our `prechat-*` headers, the broker's `x-death` and the body.
//!
//! The body may be anything (an `invalid_payload` is often not JSON at all), so every field is
//! optional and reading never fails: what cannot be read is shown as missing.

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde::{Serialize, Serializer};

use crate::privacy::{mask_email, mask_phone};
use crate::queue::dead_letter::ErrorClass;
use crate::queue::headers::{self, broker_death_reason, HeaderExt};

/// The `x-death` reason the broker's crash-loop guard records.
const DELIVERY_LIMIT_REASON: &str = "delivery_limit";

/// The class of a dead letter: one of ours, or whatever else the message says.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Class {
    /// A class in README, "RabbitMQ topology and headers".
    Known(ErrorClass),
    /// A `prechat-error-class` this version does not know, or `unknown` (no class header and
    /// no `delivery_limit` death, e.g. a message published to the dead-letter exchange by hand).
    Other(String),
}

impl Class {
    /// The class as written in headers and on screen.
    pub fn as_str(&self) -> &str {
        match self {
            Class::Known(class) => class.as_str(),
            Class::Other(name) => name,
        }
    }
}

impl Serialize for Class {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// What a dead letter says about itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Letter {
    /// Error class.
    pub class: Class,
    /// HTTP status of the failing call.
    pub status: Option<i64>,
    /// Genesys error `code`.
    pub code: Option<String>,
    /// Genesys error `message`, or ours.
    pub message: Option<String>,
    /// Genesys `contextId`.
    pub context_id: Option<String>,
    /// Attempt number of the delivery that died (`prechat-attempt`, else the broker's count).
    pub attempts: Option<i64>,
    /// When it was dead-lettered: `prechat-dead-lettered-at`, else the broker's `x-death`
    /// time, else the message timestamp.
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// When the submission first failed.
    pub first_failure_at: Option<DateTime<Utc>>,
    /// When an operator last replayed it (it died again since).
    pub replayed_at: Option<DateTime<Utc>>,
    /// The submission id: the AMQP `message_id`, else the body's `submissionId`.
    pub submission_id: Option<String>,
    /// The body's `conversationId`.
    pub conversation_id: Option<String>,
    /// The body's `guest.email` (personal data).
    pub email: Option<String>,
    /// The body's `guest.phone` (personal data).
    pub phone: Option<String>,
    /// Whether the body is a JSON object.
    pub body_is_json: bool,
    /// Body size in bytes.
    pub body_bytes: usize,
}

impl Letter {
    /// Reads a dead letter's properties and body; never fails.
    pub fn read(properties: &BasicProperties, body: &[u8]) -> Self {
        let empty = FieldTable::default();
        let table = properties.headers().as_ref().unwrap_or(&empty);
        let death = last_death(table);
        let class = match table.text(headers::ERROR_CLASS) {
            Some(name) => ErrorClass::parse(&name).map_or(Class::Other(name), Class::Known),
            None if broker_death_reason(table).as_deref() == Some(DELIVERY_LIMIT_REASON) => {
                Class::Known(ErrorClass::DeliveryLimit)
            }
            None => Class::Other("unknown".into()),
        };
        let json = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .filter(serde_json::Value::is_object);
        let field = |path: &[&str]| {
            let mut value = json.as_ref()?;
            for key in path {
                value = value.get(key)?;
            }
            value.as_str().map(str::to_owned)
        };
        let message_id = properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .filter(|id| !id.is_empty());
        let timestamp = properties
            .timestamp()
            .and_then(|t| DateTime::from_timestamp(i64::try_from(t).ok()?, 0));
        Self {
            class,
            status: table.number(headers::ERROR_STATUS),
            code: table.text(headers::ERROR_CODE),
            message: table.text(headers::ERROR_MESSAGE),
            context_id: table.text(headers::ERROR_CONTEXT_ID),
            attempts: table
                .number(headers::ATTEMPT)
                .or_else(|| death.and_then(|d| d.number("count"))),
            dead_lettered_at: table
                .time(headers::DEAD_LETTERED_AT)
                .or_else(|| death.and_then(death_time))
                .or(timestamp),
            first_failure_at: table.time(headers::FIRST_FAILURE_AT),
            replayed_at: table.time(headers::REPLAYED_AT),
            submission_id: message_id.or_else(|| field(&["submissionId"])),
            conversation_id: field(&["conversationId"]),
            email: field(&["guest", "email"]),
            phone: field(&["guest", "phone"]),
            body_is_json: json.is_some(),
            body_bytes: body.len(),
        }
    }

    /// The same letter with emails and phones masked, in the guest fields and in the error
    /// message (Genesys error messages may quote the attribute values they refused).
    pub fn masked(&self) -> Self {
        Self {
            email: self.email.as_deref().map(mask_email),
            phone: self.phone.as_deref().map(mask_phone),
            message: self.message.as_deref().map(mask_pii_in_text),
            ..self.clone()
        }
    }
}

/// The most recent `x-death` entry (the broker puts it first).
fn last_death(table: &FieldTable) -> Option<&FieldTable> {
    let AMQPValue::FieldArray(deaths) = table.inner().get("x-death")? else {
        return None;
    };
    match deaths.as_slice().first()? {
        AMQPValue::FieldTable(death) => Some(death),
        _ => None,
    }
}

fn death_time(death: &FieldTable) -> Option<DateTime<Utc>> {
    match death.inner().get("time")? {
        AMQPValue::Timestamp(t) => DateTime::from_timestamp(i64::try_from(*t).ok()?, 0),
        _ => death.time("time"),
    }
}

/// Masks what looks like an email or a phone number in `text`, keeping the rest: the one
/// free-text masker of the service, [`crate::privacy::mask_text`].
pub fn mask_pii_in_text(text: &str) -> String {
    crate::privacy::mask_text(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString, ShortString};

    fn properties(table: FieldTable, message_id: Option<&str>) -> BasicProperties {
        let mut properties = BasicProperties::default()
            .with_headers(table)
            .with_timestamp(1_700_000_000);
        if let Some(id) = message_id {
            properties = properties.with_message_id(ShortString::from(id));
        }
        properties
    }

    #[test]
    fn a_worker_dead_letter_is_read_from_its_headers_and_body() {
        let mut table = FieldTable::default();
        table.set_text(headers::ERROR_CLASS, "genesys_rejected");
        table.set_number(headers::ERROR_STATUS, 400);
        table.set_text(headers::ERROR_CODE, "bad.request");
        table.set_text(headers::ERROR_MESSAGE, "value jane@example.com refused");
        table.set_number(headers::ATTEMPT, 2);
        table.set_text(headers::DEAD_LETTERED_AT, "2026-11-22T10:00:00Z");
        let body = br#"{"submissionId":"s-1","conversationId":"c-1","guest":{"email":"jane@example.com","phone":"+15551234567"}}"#;
        let letter = Letter::read(&properties(table, Some("s-1")), body);
        assert_eq!(letter.class, Class::Known(ErrorClass::GenesysRejected));
        assert_eq!(letter.status, Some(400));
        assert_eq!(letter.code.as_deref(), Some("bad.request"));
        assert_eq!(letter.attempts, Some(2));
        assert_eq!(
            headers::timestamp(letter.dead_lettered_at.unwrap()),
            "2026-11-22T10:00:00Z"
        );
        assert_eq!(letter.submission_id.as_deref(), Some("s-1"));
        assert_eq!(letter.conversation_id.as_deref(), Some("c-1"));
        let masked = letter.masked();
        assert_eq!(masked.email.as_deref(), Some("j***@example.com"));
        assert_eq!(masked.phone.as_deref(), Some("+1******4567"));
        assert_eq!(
            masked.message.as_deref(),
            Some("value j***@example.com refused")
        );
    }

    #[test]
    fn a_broker_dead_letter_without_our_class_is_a_delivery_limit() {
        let mut death = FieldTable::default();
        death.set_text("reason", "delivery_limit");
        death.set_number("count", 20);
        death.insert("time".into(), AMQPValue::Timestamp(1_700_000_100));
        let mut table = FieldTable::default();
        table.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        let letter = Letter::read(&properties(table, None), b"not json");
        assert_eq!(letter.class, Class::Known(ErrorClass::DeliveryLimit));
        assert_eq!(letter.attempts, Some(20));
        assert_eq!(letter.dead_lettered_at.unwrap().timestamp(), 1_700_000_100);
        assert!(!letter.body_is_json);
        assert_eq!(letter.submission_id, None);
    }

    #[test]
    fn a_message_without_class_or_death_is_unknown_and_dated_by_its_timestamp() {
        let mut table = FieldTable::default();
        table.insert(
            headers::ERROR_CLASS.into(),
            AMQPValue::LongString(LongString::from("from_the_future")),
        );
        let letter = Letter::read(&properties(table, None), br#"{"submissionId":"s-2"}"#);
        assert_eq!(letter.class.as_str(), "from_the_future");
        assert_eq!(letter.submission_id.as_deref(), Some("s-2"));
        let letter = Letter::read(&properties(FieldTable::default(), None), b"");
        assert_eq!(letter.class.as_str(), "unknown");
        assert_eq!(letter.dead_lettered_at.unwrap().timestamp(), 1_700_000_000);
    }

    #[test]
    fn emails_and_phones_inside_a_sentence_are_masked_and_the_rest_kept() {
        assert_eq!(
            mask_pii_in_text("Refused 'jane@example.com', phone +1 (555) 123-4567; id 42."),
            "Refused 'j***@example.com', phone +1******4567; id 42."
        );
        assert_eq!(
            mask_pii_in_text("phone +15551234567 and 555-123-4567 here"),
            "phone +1******4567 and ******4567 here"
        );
        for kept in [
            "status 400 at 2026-11-22T10:00:00Z",
            "conversation 0f8fad5b-d9cb-469f-a165-70867728950e not found",
            "contextId abc1234567",
            "conversation 5e1d0c01-7a3b-4c2d-9e10-000000000005",
        ] {
            assert_eq!(mask_pii_in_text(kept), kept);
        }
    }
}
