//! Outcome events on the `prechat.events` topic exchange, for anything that wants to
//! follow submissions (dashboards, audit, the demo script).

use chrono::{DateTime, Utc};
use lapin::types::FieldTable;
use serde::{Deserialize, Serialize};

use super::headers::{json_properties, timestamp};
use super::{Publisher, Topology};

/// What happened to a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Attributes written to the conversation.
    Enriched,
    /// Parked until its conversation id is known.
    Awaiting,
    /// Will be tried again after a delay.
    Retrying,
    /// Moved to the dead-letter queue.
    DeadLettered,
    /// Its deadline passed (a dead letter of class `expired`).
    Expired,
}

impl Outcome {
    /// Routing key on the events exchange.
    pub fn routing_key(self) -> &'static str {
        match self {
            Outcome::Enriched => "submission.enriched",
            Outcome::Awaiting => "submission.awaiting",
            Outcome::Retrying => "submission.retrying",
            Outcome::DeadLettered => "submission.dead_lettered",
            Outcome::Expired => "submission.expired",
        }
    }

    /// Label for metrics and logs.
    pub fn as_str(self) -> &'static str {
        &self.routing_key()["submission.".len()..]
    }
}

/// An event body: ids and the decision, never PII.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// The submission.
    pub submission_id: String,
    /// Its conversation, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    /// What happened.
    pub outcome: Outcome,
    /// Attempt number that produced this outcome.
    pub attempt: u32,
    /// Dead-letter class, when dead-lettered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// Why, in a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Delay before the next attempt, when retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
    /// When.
    pub at: DateTime<Utc>,
    /// On `enriched`: the attributes written, without the personal ones (names, email,
    /// phone), for the Architect handoff's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attributes: Option<std::collections::BTreeMap<String, String>>,
}

/// Publishes events (confirmed, but an event that cannot be published never fails the work).
#[derive(Clone)]
pub struct EventPublisher {
    publisher: Publisher,
    exchange: String,
}

impl EventPublisher {
    /// Publishes to the topology's events exchange.
    pub fn new(publisher: Publisher, topology: &Topology) -> Self {
        Self {
            publisher,
            exchange: topology.events_exchange(),
        }
    }

    /// Publishes one event; no queue bound to the key is fine.
    pub async fn publish(&self, event: &Event) {
        let body = serde_json::to_vec(event).expect("events serialize");
        let mut headers = FieldTable::default();
        super::headers::HeaderExt::set_text(&mut headers, "prechat-event-at", timestamp(event.at));
        let properties = json_properties(&event.submission_id, headers);
        match self
            .publisher
            .publish_unrouted_ok(
                &self.exchange,
                event.outcome.routing_key(),
                &body,
                properties,
            )
            .await
        {
            Ok(()) => {}
            Err(error) => {
                tracing::warn!(submission.id = %event.submission_id, %error, "outcome event not published")
            }
        }
    }
}
