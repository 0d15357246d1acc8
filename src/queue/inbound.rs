//! Reading a delivery and settling it. The worker and the resolver read a message the same
//! way (body, headers, trace, attempt, parse), and every ack and nack goes through
//! [`settle`], which logs a settlement the broker did not take.

use chrono::{DateTime, Utc};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::Acker;

use super::headers::{self, HeaderExt};
use crate::privacy::SessionHasher;
use crate::submission::{parse_submission, Origin, ParseContext, Submission, ValidationError};

/// A delivery as read: its headers (with a trace), attempt, ids and the parsed submission.
#[derive(Debug)]
pub struct Inbound {
    /// The message's headers; a message without a `traceparent` has a new one here, kept
    /// through retries and dead-lettering.
    pub headers: FieldTable,
    /// The trace of the submission.
    pub traceparent: String,
    /// The AMQP `message_id`.
    pub message_id: Option<String>,
    /// This delivery's attempt number (1 = first).
    pub attempt: u32,
    /// The validated submission, or why the body is not one.
    pub parsed: Result<Submission, ValidationError>,
}

impl Inbound {
    /// When the service accepted the submission: its header (set on reading when absent),
    /// else its `submittedAt`, else now.
    pub fn accepted_at(&self) -> DateTime<Utc> {
        self.headers
            .time(headers::ACCEPTED_AT)
            .or(self.parsed.as_ref().ok().map(|s| s.submitted_at))
            .unwrap_or_else(Utc::now)
    }

    /// The submission id: the body's, else the message id, else empty.
    pub fn submission_id(&self) -> String {
        self.parsed
            .as_ref()
            .map(|s| s.submission_id.clone())
            .ok()
            .or_else(|| self.message_id.clone())
            .unwrap_or_default()
    }
}

/// How bodies are validated (the same rules as the HTTP ingest).
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    /// Hashes a raw session id of a message published straight to RabbitMQ.
    pub hasher: &'a SessionHasher,
    /// Region for phone numbers without `+`.
    pub phone_region: Option<phonenumber::country::Id>,
}

impl Reader<'_> {
    /// Reads one delivery.
    pub fn read(&self, delivery: &Delivery, now: DateTime<Utc>) -> Inbound {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        let traceparent = crate::trace::or_new(headers.text(headers::TRACEPARENT).as_deref());
        headers.set_text(headers::TRACEPARENT, traceparent.clone());
        // A message published straight to RabbitMQ: the service accepts it now, the first
        // time it reads it, and its follow-ups carry that on.
        if headers.time(headers::ACCEPTED_AT).is_none() {
            headers.set_text(headers::ACCEPTED_AT, headers::timestamp_millis(now));
        }
        let attempt = headers
            .number(headers::ATTEMPT)
            .filter(|n| *n >= 1)
            .map_or(1, |n| u32::try_from(n).unwrap_or(u32::MAX));
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string());
        let context = ParseContext {
            origin: Origin::Queue {
                message_id: message_id.clone(),
                timestamp: delivery
                    .properties
                    .timestamp()
                    .and_then(|t| DateTime::from_timestamp(t as i64, 0)),
            },
            now,
            hasher: self.hasher,
            default_phone_region: self.phone_region,
        };
        Inbound {
            parsed: parse_submission(&delivery.data, &context),
            headers,
            traceparent,
            message_id,
            attempt,
        }
    }
}

/// How a delivery is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Done with it (its follow-up, if any, was confirmed).
    Ack,
    /// Back to its queue, to be delivered again.
    Requeue,
}

/// Acks or requeues a delivery; a settlement the broker did not take is logged (the message
/// then returns when the channel closes, and its processing is idempotent).
pub async fn settle(acker: &Acker, how: Settle) {
    let result = match how {
        Settle::Ack => acker.ack(BasicAckOptions::default()).await,
        Settle::Requeue => {
            acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                })
                .await
        }
    };
    if let Err(error) = result {
        tracing::warn!(%error, settlement = ?how, "settlement not taken by the broker; the message will be delivered again");
    }
}
