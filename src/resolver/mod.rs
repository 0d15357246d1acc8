//! The resolver: matches submissions that came without a `conversationId` to their
//! conversation.
//!
//! It consumes `prechat.awaiting` (a quorum queue with a single active consumer, so one
//! resolver in the whole deployment holds the waiting submissions, unacked) and, every
//! `resolver.poll_interval_ms`, scans the recent conversations once with the participant
//! attribute search. The search cannot filter on attribute values, so matching on the
//! `prechatSubmissionId` attribute (set by the web tier with Messenger `Database.set`)
//! happens here: one scan serves every waiting submission, so the Genesys calls per poll do
//! not grow with their number. A match is republished with its conversation id to
//! `prechat.ingest` (confirmed, then acked); a submission still unmatched at its deadline
//! becomes an `expired` dead letter.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;

use crate::genesys::search::SearchRow;
use crate::genesys::GenesysClient;
use crate::handoff::Handoff;
use crate::metrics::{HeldMessage, Metrics};
use crate::privacy::SessionHasher;
use crate::queue::connection::Reconnect;
use crate::queue::dead_letter::{mark_dead, scrub_session_id, DeadLetter, ErrorClass};
use crate::queue::events::{Event, EventPublisher, Outcome};
use crate::queue::headers::{self, json_properties, HeaderExt};
use crate::queue::inbound::{settle, Reader, Settle};
use crate::queue::topology::SUBMISSION_KEY;
use crate::queue::{Broker, BrokerError, Publisher, Topology};
use crate::submission::Submission;

/// The participant attribute the web tier sets to the submission id.
pub const CORRELATION_ATTRIBUTE: &str = crate::merge::attr::SUBMISSION_ID;
/// How long an invalid message is held while its dead letter is refused.
const INVALID_HOLD: Duration = Duration::from_secs(60);
/// The search window accepts at most 24 hours.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Settings of the resolver.
#[derive(Debug, Clone)]
pub struct ResolverOptions {
    /// Time between scans while anything waits.
    pub poll_interval: Duration,
    /// How far before the oldest waiting submission the window starts (clock skew, and
    /// conversations started before the survey was sent).
    pub lookback_margin: Duration,
    /// Unmatched submissions expire this long after `submittedAt`.
    pub deadline: Duration,
    /// Submissions held at once (the consumer's prefetch).
    pub max_waiting: u16,
    /// How long a parked submission is left to the flow's handoff before scans look for it.
    pub handoff_grace: Duration,
}

/// What the resolver needs.
pub struct Resolver {
    /// Genesys (under the process's budget).
    pub genesys: Arc<GenesysClient>,
    /// The consuming connection.
    pub broker: Broker,
    /// Confirmed publishing.
    pub publisher: Publisher,
    /// Outcome events.
    pub events: EventPublisher,
    /// Names.
    pub topology: Topology,
    /// Session hashing (bodies are re-validated, as the workers validate them).
    pub hasher: SessionHasher,
    /// Region for phone numbers without `+` (`ingest.default_phone_region`).
    pub phone_region: Option<phonenumber::country::Id>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: ResolverOptions,
}

struct Waiting {
    delivery: Delivery,
    submission: Submission,
    headers: FieldTable,
    /// When this resolver took it (the handoff grace counts from here).
    parked: Instant,
    /// Republishes of its match the broker did not take, in a row.
    refused: u32,
    /// Counts in the awaiting queue's oldest-message age while held.
    _held: HeldMessage,
}

struct HeldHandoff {
    delivery: Delivery,
    handoff: Handoff,
    since: DateTime<Utc>,
}

fn is_handoff(delivery: &Delivery) -> bool {
    delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.text(crate::handoff::KIND_HEADER))
        .is_some_and(|kind| kind == crate::handoff::KIND)
}

impl Resolver {
    /// Holds and resolves waiting submissions until `shutdown`; reconnects when the broker
    /// goes away. On shutdown every held submission returns to the queue.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut reconnect = Reconnect::default();
        while !shutdown.is_cancelled() {
            match self.hold(&shutdown, &mut reconnect).await {
                Ok(()) => break,
                Err(error) => {
                    if !reconnect.wait(&shutdown, "resolver", &error).await {
                        break;
                    }
                }
            }
        }
    }

    async fn hold(
        &self,
        shutdown: &CancellationToken,
        reconnect: &mut Reconnect,
    ) -> Result<(), BrokerError> {
        let queue = self.topology.awaiting_queue();
        let channel = self.broker.channel().await?;
        channel
            .basic_qos(self.settings.max_waiting, BasicQosOptions::default())
            .await?;
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "prechat-resolver".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        reconnect.reset();
        let mut waiting: HashMap<String, Waiting> = HashMap::new();
        let mut handoffs: HashMap<String, HeldHandoff> = HashMap::new();
        let mut polls = tokio::time::interval(self.settings.poll_interval);
        polls.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let result = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break Ok(()),
                next = consumer.next() => match next {
                    Some(Ok(delivery)) if is_handoff(&delivery) => {
                        self.admit_handoff(delivery, &mut waiting, &mut handoffs).await
                    }
                    Some(Ok(delivery)) => self.admit(delivery, &mut waiting, &handoffs, shutdown).await,
                    Some(Err(error)) => break Err(error.into()),
                    None => break Err(BrokerError::Unavailable("the broker cancelled the resolver".into())),
                },
                _ = polls.tick(), if !waiting.is_empty() || !handoffs.is_empty() => {
                    self.drop_old_handoffs(&mut handoffs).await;
                    self.scan(&mut waiting).await
                }
            }
        };
        // Unacked submissions go back to the queue for the next resolver.
        let _ = channel.close(200, "resolver stopping".into()).await;
        result
    }

    fn held_message(&self, accepted_at: DateTime<Utc>) -> HeldMessage {
        self.metrics
            .hold_message(&self.topology.awaiting_queue(), accepted_at)
    }

    /// A handoff: the conversation of a submission, from the flow. It completes a parked
    /// submission at once (no search) and is held for one that has yet to come.
    async fn admit_handoff(
        &self,
        delivery: Delivery,
        waiting: &mut HashMap<String, Waiting>,
        handoffs: &mut HashMap<String, HeldHandoff>,
    ) {
        let handoff = match serde_json::from_slice::<Handoff>(&delivery.data) {
            Ok(handoff) => handoff,
            Err(error) => {
                // Only a hand-made message gets here: the ingest publishes valid handoffs.
                tracing::warn!(%error, "a handoff message that is not one was dropped");
                return settle(&delivery.acker, Settle::Ack).await;
            }
        };
        let id = handoff.submission_id.clone();
        if handoffs.contains_key(&id) {
            tracing::debug!(submission.id = %id, "repeated handoff; the first one stands");
            return settle(&delivery.acker, Settle::Ack).await;
        }
        self.metrics.handoffs_matched.inc();
        if let Some(mut held) = waiting.remove(&id) {
            if held.submission.conversation_id.is_none() {
                held.submission.conversation_id = Some(handoff.conversation_id.clone());
            }
            if let Err(held) = self.forward(held).await {
                waiting.insert(id.clone(), held);
            }
        }
        let since = handoff.accepted_at.unwrap_or_else(Utc::now);
        handoffs.insert(
            id,
            HeldHandoff {
                delivery,
                handoff,
                since,
            },
        );
    }

    /// Acks the handoffs past the deadline: their submission never came (no dead letter:
    /// nothing was submitted).
    async fn drop_old_handoffs(&self, handoffs: &mut HashMap<String, HeldHandoff>) {
        let deadline = chrono::Duration::from_std(self.settings.deadline).unwrap_or_default();
        let now = Utc::now();
        let old: Vec<String> = handoffs
            .iter()
            .filter(|(_, h)| now >= h.since + deadline)
            .map(|(id, _)| id.clone())
            .collect();
        for id in old {
            if let Some(held) = handoffs.remove(&id) {
                tracing::info!(submission.id = %id, conversation.id = %held.handoff.conversation_id, "handoff dropped at its deadline");
                settle(&held.delivery.acker, Settle::Ack).await;
            }
        }
    }

    async fn admit(
        &self,
        delivery: Delivery,
        waiting: &mut HashMap<String, Waiting>,
        handoffs: &HashMap<String, HeldHandoff>,
        shutdown: &CancellationToken,
    ) {
        // Held, forwarded or dead-lettered, a submission keeps one trace.
        let reader = Reader {
            hasher: &self.hasher,
            phone_region: self.phone_region,
        };
        let inbound = reader.read(&delivery, Utc::now());
        let id = inbound.submission_id();
        let held_since = inbound.accepted_at();
        let headers = inbound.headers;
        match inbound.parsed {
            Ok(mut submission)
                if submission.conversation_id.is_some() || handoffs.contains_key(&id) =>
            {
                if submission.conversation_id.is_none() {
                    submission.conversation_id =
                        handoffs.get(&id).map(|h| h.handoff.conversation_id.clone());
                }
                let held = Waiting {
                    delivery,
                    submission,
                    headers,
                    parked: Instant::now(),
                    refused: 0,
                    _held: self.held_message(held_since),
                };
                if let Err(held) = self.forward(held).await {
                    waiting.insert(id, held);
                }
            }
            Ok(submission) => {
                // The same submission twice (a republish) is held once; the copy is dropped.
                match waiting.entry(id) {
                    std::collections::hash_map::Entry::Occupied(_) => {
                        settle(&delivery.acker, Settle::Ack).await;
                    }
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(Waiting {
                            delivery,
                            submission,
                            headers,
                            parked: Instant::now(),
                            refused: 0,
                            _held: self.held_message(held_since),
                        });
                    }
                }
            }
            Err(error) => {
                let dead = DeadLetter {
                    class: ErrorClass::InvalidPayload,
                    status: None,
                    code: None,
                    message: error.to_string(),
                    context_id: None,
                };
                let body = scrub_session_id(&delivery.data, &self.hasher);
                // A refused dead letter is tried again with a growing pause (an alarm, a lost
                // connection), never handed straight back to loop through the queue.
                let give_up = Instant::now() + INVALID_HOLD;
                let mut pause = Duration::from_millis(250);
                while !self
                    .dead_letter(
                        &delivery,
                        &id,
                        body.clone(),
                        headers.clone(),
                        dead.clone(),
                        None,
                    )
                    .await
                {
                    if Instant::now() >= give_up || shutdown.is_cancelled() {
                        // Not held (it matches nothing): back to the queue, to be read again.
                        settle(&delivery.acker, Settle::Requeue).await;
                        break;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.cancelled() => {}
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One search over the window that covers every waiting submission. A submission whose
    /// republish failed earlier is tried again first; expiry needs a scan that answered, so
    /// a Genesys outage does not expire what the scan could not look for.
    async fn scan(&self, waiting: &mut HashMap<String, Waiting>) {
        let now = Utc::now();
        let matched_before: Vec<String> = waiting
            .iter()
            .filter(|(_, w)| w.submission.conversation_id.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for id in matched_before {
            if let Some(held) = waiting.remove(&id) {
                if let Err(held) = self.forward(held).await {
                    waiting.insert(id, held);
                }
            }
        }
        // Left to the handoff for a while: a scan starts only once one of them waited longer.
        let grace = self.settings.handoff_grace;
        if !waiting.values().any(|w| w.parked.elapsed() >= grace) {
            return;
        }
        let oldest = waiting
            .values()
            .map(|w| w.submission.submitted_at)
            .min()
            .unwrap_or(now);
        let margin = chrono::Duration::from_std(self.settings.lookback_margin).unwrap_or_default();
        let window = chrono::Duration::from_std(MAX_WINDOW).unwrap_or_default();
        let from = (oldest - margin).max(now - window);
        let answered = match self.genesys.search_conversations(from, now).await {
            Ok(scan) => {
                if scan.truncated {
                    tracing::warn!(
                        pages = scan.pages,
                        rows = scan.rows.len(),
                        "conversation scan stopped at its page limit: conversations past it are not matched this poll; shorten worker.deadline_secs or resolver.lookback_margin_secs"
                    );
                }
                let matches = match_rows(&scan.rows);
                tracing::debug!(
                    waiting = waiting.len(),
                    pages = scan.pages,
                    rows = scan.rows.len(),
                    "conversations scanned"
                );
                let found: Vec<(String, String)> = waiting
                    .keys()
                    .filter_map(|id| {
                        matches
                            .get(id.as_str())
                            .map(|cid| (id.clone(), cid.to_string()))
                    })
                    .collect();
                for (submission_id, conversation_id) in found {
                    if let Some(mut held) = waiting.remove(&submission_id) {
                        held.submission.conversation_id = Some(conversation_id);
                        if let Err(held) = self.forward(held).await {
                            waiting.insert(submission_id, held);
                        }
                    }
                }
                true
            }
            Err(error) => {
                tracing::warn!(%error, waiting = waiting.len(), "conversation scan failed; trying again next poll");
                false
            }
        };
        if !answered {
            return;
        }
        let deadline = chrono::Duration::from_std(self.settings.deadline).unwrap_or_default();
        let expired: Vec<String> = waiting
            .iter()
            // A matched one whose republish failed is not expired: it is retried next poll.
            .filter(|(_, w)| {
                w.submission.conversation_id.is_none()
                    && now
                        >= headers::deadline_start(w.submission.submitted_at, &w.headers) + deadline
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(held) = waiting.remove(&id) {
                if let Err(held) = self.expire(held, now).await {
                    waiting.insert(id, held);
                }
            }
        }
    }

    /// Republishes the submission (which has its conversation id), then acks the held copy;
    /// gives the held copy back when the broker did not confirm the republish.
    async fn forward(&self, held: Waiting) -> Result<(), Waiting> {
        let id = held.submission.submission_id.clone();
        let traceparent = trace_of(&held.headers);
        crate::trace::in_submission(&id, traceparent, self.forward_now(held)).await
    }

    async fn forward_now(&self, mut held: Waiting) -> Result<(), Waiting> {
        let submission = &held.submission;
        let conversation_id = submission.conversation_id.as_deref().unwrap_or_default();
        let properties = json_properties(&submission.submission_id, held.headers.clone());
        let published = self
            .publisher
            .publish(
                &self.topology.ingest_exchange(),
                SUBMISSION_KEY,
                &submission.to_json(),
                properties,
            )
            .await;
        match published {
            Ok(()) => {
                tracing::info!(submission.id = %submission.submission_id, conversation.id = conversation_id, "submission matched to its conversation");
                settle(&held.delivery.acker, Settle::Ack).await;
                Ok(())
            }
            // Still held (unacked): the next poll tries again.
            Err(error) => {
                // At warn the 1st, 2nd, 4th, 8th… time in a row: a broker alarm lasts many polls.
                held.refused += 1;
                if held.refused.is_power_of_two() {
                    tracing::warn!(%error, submission.id = %submission.submission_id, refused = held.refused, "matched submission not republished; trying again next poll");
                } else {
                    tracing::debug!(%error, submission.id = %submission.submission_id, refused = held.refused, "matched submission not republished; trying again next poll");
                }
                Err(held)
            }
        }
    }

    /// Dead-letters an unmatched submission as `expired`; gives it back when that failed.
    async fn expire(&self, held: Waiting, now: DateTime<Utc>) -> Result<(), Waiting> {
        let dead = DeadLetter {
            class: ErrorClass::Expired,
            status: None,
            code: None,
            message: format!(
                "no conversation carried the participant attribute {CORRELATION_ATTRIBUTE} = this submission's id before its deadline"
            ),
            context_id: None,
        };
        let id = held.submission.submission_id.clone();
        let published = self
            .dead_letter(
                &held.delivery,
                &id,
                held.submission.to_json(),
                held.headers.clone(),
                dead,
                Some(now),
            )
            .await;
        if published {
            Ok(())
        } else {
            Err(held)
        }
    }

    /// Publishes a dead letter and acks the delivery; whether the broker confirmed it.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        submission_id: &str,
        body: Vec<u8>,
        headers: FieldTable,
        dead: DeadLetter,
        at: Option<DateTime<Utc>>,
    ) -> bool {
        crate::trace::in_submission(
            submission_id,
            trace_of(&headers),
            self.dead_letter_now(delivery, submission_id, body, headers, dead, at),
        )
        .await
    }

    async fn dead_letter_now(
        &self,
        delivery: &Delivery,
        submission_id: &str,
        body: Vec<u8>,
        mut headers: FieldTable,
        dead: DeadLetter,
        at: Option<DateTime<Utc>>,
    ) -> bool {
        let now = at.unwrap_or_else(Utc::now);
        mark_dead(&mut headers, &dead, now);
        let properties = json_properties(submission_id, headers);
        let published = self
            .publisher
            .publish(
                &self.topology.dead_letter_exchange(),
                dead.class.as_str(),
                &body,
                properties,
            )
            .await;
        if let Err(error) = published {
            tracing::warn!(%error, submission.id = submission_id, "dead letter not published; submission kept");
            return false;
        }
        settle(&delivery.acker, Settle::Ack).await;
        let outcome = if dead.class == ErrorClass::Expired {
            Outcome::Expired
        } else {
            Outcome::DeadLettered
        };
        self.metrics
            .count_submission(outcome.as_str(), dead.class.as_str());
        tracing::warn!(
            submission.id = submission_id,
            error.class = dead.class.as_str(),
            "submission dead-lettered by the resolver"
        );
        self.events
            .publish(&Event {
                submission_id: submission_id.to_string(),
                conversation_id: None,
                outcome,
                attempt: 1,
                error_class: Some(dead.class.as_str().into()),
                reason: Some(dead.message),
                retry_in_ms: None,
                at: now,
                attributes: None,
            })
            .await;
        true
    }
}

/// The `traceparent` a held submission carries (set when it was admitted).
fn trace_of(headers: &FieldTable) -> String {
    headers.text(headers::TRACEPARENT).unwrap_or_default()
}

/// `prechatSubmissionId` → conversation id, over every participant of every row (the
/// customer's attributes first).
fn match_rows(rows: &[SearchRow]) -> HashMap<&str, &str> {
    let mut matches = HashMap::new();
    for row in rows {
        let mut participants: Vec<_> = row.participant_data.iter().collect();
        participants.sort_by_key(|p| p.participant_purpose.as_deref() != Some("customer"));
        for participant in participants {
            if let Some(id) = participant
                .participant_attributes
                .get(CORRELATION_ATTRIBUTE)
            {
                matches
                    .entry(id.as_str())
                    .or_insert(row.conversation_id.as_str());
            }
        }
    }
    matches
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_matched_on_the_correlation_attribute() {
        let rows: Vec<SearchRow> = serde_json::from_value(serde_json::json!([
            {"conversationId": "c1", "participantData": [
                {"participantPurpose": "agent", "participantAttributes": {"x": "y"}},
                {"participantPurpose": "customer", "participantAttributes": {"prechatSubmissionId": "s1"}}]},
            {"conversationId": "c2", "participantData": [
                {"participantPurpose": "customer", "participantAttributes": {}}]}
        ]))
        .unwrap();
        let matches = match_rows(&rows);
        assert_eq!(matches.get("s1"), Some(&"c1"));
        assert_eq!(matches.len(), 1);
    }
}
