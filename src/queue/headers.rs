//! Our own AMQP headers (README, "RabbitMQ topology and headers") and the message properties every publish carries.
//!
//! RabbitMQ ignores client-set `x-death`, so attempts and errors travel in
//! `prechat-*` headers that the worker writes on every retry and dead letter.

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;

/// When the service accepted the submission (RFC 3339, its own clock): set by the ingest, or
/// by the first worker or resolver to read a message published straight to RabbitMQ, and
/// kept through retries. End-to-end latency and the deadline count from here.
pub const ACCEPTED_AT: &str = "prechat-accepted-at";
/// Attempt number of this delivery (1 for the first).
pub const ATTEMPT: &str = "prechat-attempt";
/// When the submission first failed (RFC 3339).
pub const FIRST_FAILURE_AT: &str = "prechat-first-failure-at";
/// Dead-letter class (`invalid_payload`, `genesys_rejected`, …).
pub const ERROR_CLASS: &str = "prechat-error-class";
/// HTTP status of the failing call.
pub const ERROR_STATUS: &str = "prechat-error-status";
/// Genesys error `code`.
pub const ERROR_CODE: &str = "prechat-error-code";
/// Genesys error `message`, or ours.
pub const ERROR_MESSAGE: &str = "prechat-error-message";
/// Genesys `contextId` (for Genesys support).
pub const ERROR_CONTEXT_ID: &str = "prechat-error-context-id";
/// When the message was dead-lettered (RFC 3339).
pub const DEAD_LETTERED_AT: &str = "prechat-dead-lettered-at";
/// When an operator replayed the message from the dead-letter queue (RFC 3339).
pub const REPLAYED_AT: &str = "prechat-replayed-at";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
/// On a retry whose attributes are written: the External Contact step is still to be done.
pub const CONTACT_PENDING: &str = "prechat-contact-pending";

/// Persistent JSON message properties with `message_id` = submission id.
pub fn json_properties(message_id: &str, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/json"))
        .with_message_id(ShortString::from(message_id))
        .with_timestamp(Utc::now().timestamp().max(0) as u64)
        .with_headers(headers)
}

/// Typed access to a header table.
pub trait HeaderExt {
    /// A header as text, whatever AMQP type it was sent with.
    fn text(&self, key: &str) -> Option<String>;
    /// A header as a whole number.
    fn number(&self, key: &str) -> Option<i64>;
    /// A header as a time.
    fn time(&self, key: &str) -> Option<DateTime<Utc>>;
    /// Sets a text header.
    fn set_text(&mut self, key: &str, value: impl Into<String>);
    /// Sets a number header.
    fn set_number(&mut self, key: &str, value: i64);
}

impl HeaderExt for FieldTable {
    fn text(&self, key: &str) -> Option<String> {
        match self.inner().get(key)? {
            AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
            AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
            AMQPValue::ByteArray(b) => Some(String::from_utf8_lossy(b.as_slice()).into_owned()),
            other => number_of(other).map(|n| n.to_string()),
        }
    }

    fn number(&self, key: &str) -> Option<i64> {
        let value = self.inner().get(key)?;
        number_of(value).or_else(|| self.text(key)?.trim().parse().ok())
    }

    fn time(&self, key: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.text(key)?)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    fn set_text(&mut self, key: &str, value: impl Into<String>) {
        self.insert(
            ShortString::from(key),
            AMQPValue::LongString(LongString::from(value.into())),
        );
    }

    fn set_number(&mut self, key: &str, value: i64) {
        self.insert(ShortString::from(key), AMQPValue::LongLongInt(value));
    }
}

fn number_of(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(n) => (*n).into(),
        AMQPValue::ShortShortUInt(n) => (*n).into(),
        AMQPValue::ShortInt(n) => (*n).into(),
        AMQPValue::ShortUInt(n) => (*n).into(),
        AMQPValue::LongInt(n) => (*n).into(),
        AMQPValue::LongUInt(n) => (*n).into(),
        AMQPValue::LongLongInt(n) => *n,
        _ => return None,
    })
}

/// The `x-death` reason the broker recorded last (e.g. `delivery_limit`, `expired`), if any.
pub fn broker_death_reason(headers: &FieldTable) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    first.text("reason")
}

/// RFC 3339 with seconds precision, as every time header is written.
pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Where a submission's deadline counts from: when the service accepted it
/// ([`ACCEPTED_AT`], by the service's own clock; the client's `submittedAt` only for a
/// message without it), or the operator's replay when that is later, so a replayed
/// submission (an `expired` one above all) gets a whole deadline again instead of expiring
/// at once.
pub fn deadline_start(submitted_at: DateTime<Utc>, headers: &FieldTable) -> DateTime<Utc> {
    let accepted = headers.time(ACCEPTED_AT).unwrap_or(submitted_at);
    headers
        .time(REPLAYED_AT)
        .map_or(accepted, |replayed| replayed.max(accepted))
}

/// RFC 3339 with milliseconds, as [`ACCEPTED_AT`] is written.
pub fn timestamp_millis(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_replay_restarts_the_deadline_and_nothing_else_does() {
        use super::*;
        let submitted = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut headers = FieldTable::default();
        assert_eq!(deadline_start(submitted, &headers), submitted);
        headers.set_text(REPLAYED_AT, "2026-11-23T08:00:00Z");
        assert_eq!(
            timestamp(deadline_start(submitted, &headers)),
            "2026-11-23T08:00:00Z"
        );
        headers.set_text(REPLAYED_AT, "2026-11-21T08:00:00Z");
        assert_eq!(deadline_start(submitted, &headers), submitted);
    }

    use super::*;

    #[test]
    fn the_deadline_counts_from_the_services_acceptance_not_the_clients_clock() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut headers = FieldTable::default();
        headers.set_text(ACCEPTED_AT, "2026-11-22T12:00:00.250Z");
        // A client clock two hours behind, or two hours ahead: the service's time wins.
        for submitted in ["2026-11-22T10:00:00Z", "2026-11-22T14:00:00Z"] {
            assert_eq!(
                deadline_start(at(submitted), &headers),
                at("2026-11-22T12:00:00.250Z"),
                "submittedAt {submitted}"
            );
        }
        // A replay after that restarts it.
        headers.set_text(REPLAYED_AT, "2026-11-23T08:00:00Z");
        assert_eq!(
            deadline_start(at("2026-11-22T10:00:00Z"), &headers),
            at("2026-11-23T08:00:00Z")
        );
    }

    #[test]
    fn headers_read_back_whatever_type_they_were_written_with() {
        let mut table = FieldTable::default();
        table.set_number(ATTEMPT, 3);
        table.insert("a".into(), AMQPValue::LongString("7".into()));
        table.set_text(FIRST_FAILURE_AT, "2026-11-22T10:00:00Z");
        assert_eq!(table.number(ATTEMPT), Some(3));
        assert_eq!(table.number("a"), Some(7));
        assert_eq!(table.text(ATTEMPT).as_deref(), Some("3"));
        assert_eq!(
            timestamp(table.time(FIRST_FAILURE_AT).unwrap()),
            "2026-11-22T10:00:00Z"
        );
        assert_eq!(table.number("missing"), None);
    }
}
