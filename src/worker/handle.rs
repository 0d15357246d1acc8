//! One delivery, from bytes to ack: parse, process, decide, and carry out the decision
//! (publish the retry, parked message or dead letter with confirms, then ack). A message
//! whose follow-up publish fails is nacked back to its queue instead of acked, and a
//! panic in processing is caught and nacked, so no input can take a worker down.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;

use super::decision::{decide, Attempt, DeadLetter, Decision, ErrorClass, RetryPolicy};
use super::process::Processor;
use crate::crm::CustomerDirectory;
use crate::metrics::Metrics;
use crate::privacy::SessionHasher;
use crate::queue::events::{Event, EventPublisher, Outcome};
use crate::queue::headers::{self, json_properties, HeaderExt};
use crate::queue::topology::AWAITING_KEY;
use crate::queue::{Publisher, Topology};
use crate::submission::{parse_submission, Origin, ParseContext};

/// What every worker task of a process shares.
pub struct WorkerContext<C> {
    /// CRM + merge + Genesys.
    pub processor: Processor<C>,
    /// Confirmed publishing (retries, parked messages, dead letters).
    pub publisher: Publisher,
    /// Outcome events.
    pub events: EventPublisher,
    /// Queue and exchange names.
    pub topology: Topology,
    /// Attempts, backoff and deadline.
    pub policy: RetryPolicy,
    /// Hashes raw session ids of messages published straight to RabbitMQ.
    pub hasher: SessionHasher,
    /// Region for phone numbers without `+`.
    pub phone_region: Option<phonenumber::country::Id>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Outage detection shared by every task.
    pub outage: Arc<super::outage::OutageGuard>,
}

/// A follow-up publish that the decision calls for.
struct FollowUp {
    exchange: String,
    routing_key: String,
    properties: BasicProperties,
}

impl<C: CustomerDirectory> WorkerContext<C> {
    /// Handles one delivery to the end (ack or nack); never panics.
    pub async fn handle(self: &Arc<Self>, delivery: Delivery) {
        let mut headers = delivery.properties.headers().clone().unwrap_or_default();
        // A message published straight to RabbitMQ without a trace gets one here, and keeps
        // it through retries and dead-lettering.
        let traceparent = crate::trace::or_new(headers.text(headers::TRACEPARENT).as_deref());
        headers.set_text(headers::TRACEPARENT, traceparent.clone());
        let submission_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_default();
        let work = AssertUnwindSafe(self.handle_inner(&delivery, headers)).catch_unwind();
        if crate::trace::in_submission(&submission_id, traceparent, work)
            .await
            .is_err()
        {
            tracing::error!("processing panicked; message returned to the queue");
            let _ = delivery
                .acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
        }
    }

    async fn handle_inner(&self, delivery: &Delivery, mut headers: FieldTable) {
        let attempt = headers
            .number(headers::ATTEMPT)
            .filter(|n| *n >= 1)
            .unwrap_or(1) as u32;
        let message_id = delivery
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.to_string());
        let origin = Origin::Queue {
            message_id: message_id.clone(),
            timestamp: delivery
                .properties
                .timestamp()
                .and_then(|t| DateTime::from_timestamp(t as i64, 0)),
        };
        let parse_context = ParseContext {
            origin,
            now: Utc::now(),
            hasher: &self.hasher,
            default_phone_region: self.phone_region,
        };
        let parsed = parse_submission(&delivery.data, &parse_context);
        let result = match &parsed {
            Ok(submission) => self.processor.process(submission).await,
            Err(error) => Err(super::decision::Failure::InvalidPayload {
                reason: error.to_string(),
            }),
        };
        let now = Utc::now();
        if parsed.is_ok() {
            self.outage
                .record(result.as_ref().err().is_some_and(|f| f.is_systemic()));
        }
        let deadline_from = parsed
            .as_ref()
            .map_or(now, |s| headers::deadline_start(s.submitted_at, &headers));
        let state = Attempt {
            number: attempt,
            deadline_from,
            now,
            jitter: fastrand::f64(),
            outage: self.outage.in_outage(),
        };
        let decision = decide(result.as_ref(), &state, &self.policy);

        let submission_id = parsed
            .as_ref()
            .map(|s| s.submission_id.clone())
            .ok()
            .or(message_id)
            .unwrap_or_default();
        let conversation_id = parsed.as_ref().ok().and_then(|s| s.conversation_id.clone());
        let body = match &parsed {
            Ok(submission) => submission.to_json(),
            Err(_) => scrub_session_id(&delivery.data, &self.hasher),
        };
        let mut event = Event {
            submission_id: submission_id.clone(),
            conversation_id,
            outcome: Outcome::Enriched,
            attempt,
            error_class: None,
            reason: None,
            retry_in_ms: None,
            at: now,
        };
        let follow_up = match &decision {
            Decision::Ack => None,
            Decision::Await => {
                event.outcome = Outcome::Awaiting;
                Some(FollowUp {
                    exchange: self.topology.ingest_exchange(),
                    routing_key: AWAITING_KEY.into(),
                    properties: json_properties(&submission_id, headers.clone()),
                })
            }
            Decision::Retry {
                next_attempt,
                delay,
                cause,
            } => {
                event.outcome = Outcome::Retrying;
                event.reason = Some((*cause).into());
                event.retry_in_ms = Some(delay.as_millis() as u64);
                headers.set_number(headers::ATTEMPT, (*next_attempt).into());
                if headers.text(headers::FIRST_FAILURE_AT).is_none() {
                    headers.set_text(headers::FIRST_FAILURE_AT, headers::timestamp(now));
                }
                let bucket = self.topology.bucket_for(delay.as_secs_f64().ceil() as u64);
                let expiration = delay
                    .as_millis()
                    .clamp(1, u128::from(bucket) * 1000)
                    .to_string();
                Some(FollowUp {
                    exchange: self.topology.retry_exchange(),
                    routing_key: Topology::retry_key(bucket),
                    properties: json_properties(&submission_id, headers.clone())
                        .with_expiration(expiration.into()),
                })
            }
            Decision::DeadLetter(dead) => {
                event.outcome = if dead.class == ErrorClass::Expired {
                    Outcome::Expired
                } else {
                    Outcome::DeadLettered
                };
                event.error_class = Some(dead.class.as_str().into());
                event.reason = Some(dead.message.clone());
                mark_dead(&mut headers, dead, now);
                Some(FollowUp {
                    exchange: self.topology.dead_letter_exchange(),
                    routing_key: dead.class.as_str().into(),
                    properties: json_properties(&submission_id, headers.clone()),
                })
            }
        };
        if let Some(follow_up) = follow_up {
            if let Err(error) = self
                .publisher
                .publish(
                    &follow_up.exchange,
                    &follow_up.routing_key,
                    &body,
                    follow_up.properties,
                )
                .await
            {
                tracing::error!(%error, decision = ?decision_name(&decision), "follow-up publish failed; message returned to the queue");
                let _ = delivery
                    .acker
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..Default::default()
                    })
                    .await;
                return;
            }
        }
        let accepted_at = headers
            .time(headers::ACCEPTED_AT)
            .or(parsed.as_ref().ok().map(|s| s.submitted_at));
        self.record(&decision, &event, accepted_at);
        self.events.publish(&event).await;
        if let Err(error) = delivery.acker.ack(BasicAckOptions::default()).await {
            tracing::warn!(%error, "ack failed; the broker will redeliver (the write is idempotent)");
        }
    }

    fn record(&self, decision: &Decision, event: &Event, accepted_at: Option<DateTime<Utc>>) {
        let class = match decision {
            Decision::DeadLetter(dead) => dead.class.as_str(),
            Decision::Retry { cause, .. } => cause,
            _ => "",
        };
        self.metrics.count_submission(event.outcome.as_str(), class);
        match decision {
            Decision::Ack => {
                if let Some(accepted_at) = accepted_at {
                    let latency = (Utc::now() - accepted_at).to_std().unwrap_or_default();
                    self.metrics
                        .end_to_end_latency
                        .observe(latency.as_secs_f64());
                }
                tracing::info!(
                    conversation.id = event.conversation_id.as_deref().unwrap_or(""),
                    attempt = event.attempt,
                    "submission enriched"
                );
            }
            Decision::Await => tracing::info!("no conversation id yet; parked until it is known"),
            Decision::Retry {
                next_attempt,
                delay,
                cause,
            } => {
                tracing::info!(
                    attempt = event.attempt,
                    next_attempt,
                    retry_in_ms = delay.as_millis() as u64,
                    cause,
                    "submission will be retried"
                )
            }
            Decision::DeadLetter(dead) => tracing::warn!(
                error.class = dead.class.as_str(),
                genesys.status = dead.status,
                genesys.code = dead.code.as_deref().unwrap_or(""),
                error.message = %dead.message,
                "submission dead-lettered"
            ),
        }
    }
}

fn decision_name(decision: &Decision) -> &'static str {
    match decision {
        Decision::Ack => "ack",
        Decision::Await => "await",
        Decision::Retry { .. } => "retry",
        Decision::DeadLetter(_) => "dead_letter",
    }
}

/// Writes the dead-letter headers of DESIGN §6 onto a message's headers.
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
