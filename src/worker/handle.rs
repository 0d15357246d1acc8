//! One delivery, from bytes to ack: parse, process, decide, and carry out the decision
//! (publish the retry, parked message or dead letter with confirms, then ack). A message
//! whose follow-up publish fails is nacked back to its queue instead of acked, and a
//! panic in processing is caught and nacked, so no input can take a worker down.

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use lapin::message::Delivery;
use tokio_util::sync::CancellationToken;

use super::decision::{decide, Attempt, Decision, Done, Failure, RetryPolicy};
use super::follow_up::{event, follow_up, FollowUp};
use super::process::Processor;
use crate::metrics::Metrics;
use crate::privacy::SessionHasher;
use crate::queue::dead_letter::scrub_session_id;
use crate::queue::events::EventPublisher;
use crate::queue::headers::{self, json_properties, HeaderExt};
use crate::queue::inbound::{settle, Inbound, Reader, Settle};
use crate::queue::{PublishError, Publisher, Topology};

/// How long a message in hand may wait for its follow-up publish to be taken: well inside
/// RabbitMQ's default `consumer_timeout` (30 minutes), past which the broker would close the
/// channel.
pub const FOLLOW_UP_HOLD: Duration = Duration::from_secs(20 * 60);

/// What every worker task of a process shares.
pub struct WorkerContext {
    /// CRM + merge + Genesys.
    pub processor: Processor,
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

impl WorkerContext {
    /// Handles one delivery to the end (ack or nack); never panics.
    /// `lost` is cancelled when the consuming channel is gone: the broker then redelivers the
    /// message elsewhere, so it is not held any longer.
    pub async fn handle(self: &Arc<Self>, delivery: Delivery, lost: CancellationToken) {
        let reader = Reader {
            hasher: &self.hasher,
            phone_region: self.phone_region,
        };
        let read =
            std::panic::catch_unwind(AssertUnwindSafe(|| reader.read(&delivery, Utc::now())));
        let Ok(inbound) = read else {
            tracing::error!("reading the message panicked; message returned to the queue");
            return settle(&delivery.acker, Settle::Requeue).await;
        };
        let (submission_id, traceparent) = (inbound.submission_id(), inbound.traceparent.clone());
        // Counted in the oldest-message age of the work queue until settled.
        let _held = self
            .metrics
            .hold_message(&self.topology.submissions_queue(), inbound.accepted_at());
        let work = AssertUnwindSafe(self.handle_inner(&delivery, inbound, &lost)).catch_unwind();
        if crate::trace::in_submission(&submission_id, traceparent, work)
            .await
            .is_err()
        {
            tracing::error!("processing panicked; message returned to the queue");
            settle(&delivery.acker, Settle::Requeue).await;
        }
    }

    /// read → process → decide → follow-up → carry out → record.
    async fn handle_inner(&self, delivery: &Delivery, inbound: Inbound, lost: &CancellationToken) {
        let (result, contact_pending) = self.process(&inbound, lost).await;
        if matches!(result, Err(Failure::Abandoned)) {
            // The channel is gone, so there is nothing to settle: the broker has already
            // handed the message to another consumer.
            self.metrics.worker_abandoned.inc();
            tracing::warn!("consuming channel lost: stopped before the next Genesys write; the message is redelivered");
            return;
        }
        let decision = self.decide(&inbound, result.as_ref());
        let now = Utc::now();
        let mut headers = inbound.headers.clone();
        // A retry carries whether its External Contact step is still to do.
        if contact_pending || inbound.headers.text(headers::CONTACT_PENDING).is_some() {
            headers.set_text(headers::CONTACT_PENDING, contact_pending.to_string());
        }
        let follow_up = follow_up(&decision, headers, &self.topology, now);
        if let Err(error) = self.carry_out(delivery, &inbound, follow_up, lost).await {
            tracing::error!(%error, decision = decision_name(&decision), "follow-up publish failed; message returned to the queue");
            return settle(&delivery.acker, Settle::Requeue).await;
        }
        let written = match result {
            Ok(Done::Enriched { written, .. }) => Some(written),
            _ => None,
        };
        self.record(&decision, &inbound, written, now).await;
        settle(&delivery.acker, Settle::Ack).await;
    }

    /// The result, and whether a retry must still do the External Contact step.
    async fn process(
        &self,
        inbound: &Inbound,
        lost: &CancellationToken,
    ) -> (Result<Done, Failure>, bool) {
        match &inbound.parsed {
            Ok(submission) => {
                let pending =
                    inbound.headers.text(headers::CONTACT_PENDING).as_deref() == Some("true");
                let mut still_pending = pending;
                let result = self
                    .processor
                    .process(submission, pending, &mut still_pending, lost)
                    .await;
                if !matches!(result, Err(Failure::Abandoned)) {
                    self.outage
                        .record(result.as_ref().err().is_some_and(Failure::is_systemic));
                }
                (result, still_pending)
            }
            Err(error) => (
                Err(Failure::InvalidPayload {
                    reason: error.to_string(),
                }),
                false,
            ),
        }
    }

    fn decide(&self, inbound: &Inbound, result: Result<&Done, &Failure>) -> Decision {
        let now = Utc::now();
        let deadline_from = inbound.parsed.as_ref().map_or(now, |s| {
            headers::deadline_start(s.submitted_at, &inbound.headers)
        });
        let state = Attempt {
            number: inbound.attempt,
            deadline_from,
            now,
            jitter: fastrand::f64(),
            outage: self.outage.in_outage(),
        };
        decide(result, &state, &self.policy)
    }

    /// Publishes the follow-up, confirmed (the body as validated; an invalid one as it came,
    /// without a raw session id). A refusal holds the message and tries again (see
    /// [`Publisher::publish_held`]) for up to [`FOLLOW_UP_HOLD`], so a blocked broker neither
    /// loops the message through the work queue nor turns it into a `delivery_limit` dead
    /// letter.
    async fn carry_out(
        &self,
        delivery: &Delivery,
        inbound: &Inbound,
        follow_up: Option<FollowUp>,
        lost: &CancellationToken,
    ) -> Result<(), PublishError> {
        let Some(up) = follow_up else {
            return Ok(());
        };
        let body = match &inbound.parsed {
            Ok(submission) => submission.to_json(),
            Err(_) => scrub_session_id(&delivery.data, &self.hasher),
        };
        let mut properties = json_properties(&inbound.submission_id(), up.headers);
        if let Some(expiration) = up.expiration {
            properties = properties.with_expiration(expiration.into());
        }
        self.publisher
            .publish_held(
                &up.exchange,
                &up.routing_key,
                &body,
                properties,
                FOLLOW_UP_HOLD,
                lost,
            )
            .await
    }

    /// Metrics, the log line and the outcome event of a carried-out decision.
    async fn record(
        &self,
        decision: &Decision,
        inbound: &Inbound,
        written: Option<BTreeMap<String, String>>,
        now: DateTime<Utc>,
    ) {
        let submission = inbound.parsed.as_ref().ok();
        let event = event(
            decision,
            inbound.submission_id(),
            submission.and_then(|s| s.conversation_id.clone()),
            inbound.attempt,
            written,
            now,
        );
        let accepted_at = inbound
            .headers
            .time(headers::ACCEPTED_AT)
            .or(submission.map(|s| s.submitted_at));
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
        self.events.publish(&event).await;
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
