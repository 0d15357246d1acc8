//! What a decision publishes before the delivery is acked: which exchange, which routing key,
//! which headers and which expiration. A pure function, pinned by the table test below.

use chrono::{DateTime, Utc};
use lapin::types::FieldTable;

use super::decision::{Decision, CONTACT_PENDING};
use crate::queue::dead_letter::{mark_dead, ErrorClass};
use crate::queue::events::{Event, Outcome};
use crate::queue::headers::{self, HeaderExt};
use crate::queue::topology::AWAITING_KEY;
use crate::queue::Topology;

/// A publish that a decision calls for.
#[derive(Debug, Clone, PartialEq)]
pub struct FollowUp {
    /// The exchange.
    pub exchange: String,
    /// The routing key.
    pub routing_key: String,
    /// The message's headers.
    pub headers: FieldTable,
    /// The per-message TTL in milliseconds (retries only).
    pub expiration: Option<String>,
}

/// The follow-up of `decision` for a message with `headers`; `None` for a plain ack.
pub fn follow_up(
    decision: &Decision,
    mut headers: FieldTable,
    topology: &Topology,
    now: DateTime<Utc>,
) -> Option<FollowUp> {
    match decision {
        Decision::Ack => None,
        Decision::Await => Some(FollowUp {
            exchange: topology.ingest_exchange(),
            routing_key: AWAITING_KEY.into(),
            headers,
            expiration: None,
        }),
        Decision::Retry {
            next_attempt,
            delay,
            ..
        } => {
            headers.set_number(headers::ATTEMPT, (*next_attempt).into());
            if headers.text(headers::FIRST_FAILURE_AT).is_none() {
                headers.set_text(headers::FIRST_FAILURE_AT, headers::timestamp(now));
            }
            let (routing_key, expiration) = topology.retry_route(*delay);
            Some(FollowUp {
                exchange: topology.retry_exchange(),
                routing_key,
                headers,
                expiration: Some(expiration),
            })
        }
        Decision::DeadLetter(dead) => {
            mark_dead(&mut headers, dead, now);
            Some(FollowUp {
                exchange: topology.dead_letter_exchange(),
                routing_key: dead.class.as_str().into(),
                headers,
                expiration: None,
            })
        }
    }
}

/// The outcome event of `decision`.
pub fn event(
    decision: &Decision,
    submission_id: String,
    conversation_id: Option<String>,
    attempt: u32,
    written: Option<std::collections::BTreeMap<String, String>>,
    now: DateTime<Utc>,
) -> Event {
    let mut event = Event {
        submission_id,
        conversation_id,
        outcome: Outcome::Enriched,
        attempt,
        error_class: None,
        reason: None,
        retry_in_ms: None,
        at: now,
        attributes: None,
    };
    match decision {
        Decision::Ack => event.attributes = written,
        Decision::Await => event.outcome = Outcome::Awaiting,
        // The attributes are written and the routing done: enriched, the contact follows.
        Decision::Retry { cause, .. } if *cause == CONTACT_PENDING => {
            event.attributes = written;
            event.reason = Some((*cause).into());
        }
        Decision::Retry { delay, cause, .. } => {
            event.outcome = Outcome::Retrying;
            event.reason = Some((*cause).into());
            event.retry_in_ms = Some(delay.as_millis() as u64);
        }
        Decision::DeadLetter(dead) => {
            event.outcome = if dead.class == ErrorClass::Expired {
                Outcome::Expired
            } else {
                Outcome::DeadLettered
            };
            event.error_class = Some(dead.class.as_str().into());
            event.reason = Some(dead.message.clone());
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::AmqpSettings;
    use crate::queue::dead_letter::DeadLetter;

    fn topology() -> Topology {
        Topology::new(&AmqpSettings {
            url: Vec::new(),
            namespace: "t".into(),
            publish_timeout_ms: 1000,
            delivery_limit: 20,
            retry_delays_secs: vec![1, 5, 30],
            dead_letter_ttl_hours: 0,
            management_url: String::new(),
            consumer_timeout_ms: 1_800_000,
            connect_timeout_ms: 5000,
        })
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn text(headers: &FieldTable, key: &str) -> Option<String> {
        headers.text(key)
    }

    #[test]
    fn each_decision_publishes_to_its_exchange_with_its_key_headers_and_expiration() {
        let dead = DeadLetter {
            class: ErrorClass::GenesysRejected,
            status: Some(400),
            code: Some("bad.request".into()),
            message: "no".into(),
            context_id: Some("ctx".into()),
        };
        let retry = |ms| Decision::Retry {
            next_attempt: 3,
            delay: Duration::from_millis(ms),
            cause: "genesys_error",
        };
        // decision, exchange, key, expiration, attempt header, error class header
        let table: Vec<(
            Decision,
            &str,
            &str,
            Option<&str>,
            Option<i64>,
            Option<&str>,
        )> = vec![
            (Decision::Await, "t.ingest", "awaiting", None, None, None),
            (retry(800), "t.retry", "1s", Some("800"), Some(3), None),
            (retry(4000), "t.retry", "5s", Some("4000"), Some(3), None),
            (
                retry(90_000),
                "t.retry",
                "30s",
                Some("30000"),
                Some(3),
                None,
            ),
            (
                Decision::DeadLetter(dead),
                "t.dlx",
                "genesys_rejected",
                None,
                None,
                Some("genesys_rejected"),
            ),
        ];
        for (decision, exchange, key, expiration, attempt, class) in table {
            let up = follow_up(&decision, FieldTable::default(), &topology(), at()).unwrap();
            assert_eq!(up.exchange, exchange, "{decision:?}");
            assert_eq!(up.routing_key, key, "{decision:?}");
            assert_eq!(up.expiration.as_deref(), expiration, "{decision:?}");
            assert_eq!(up.headers.number(headers::ATTEMPT), attempt, "{decision:?}");
            assert_eq!(text(&up.headers, headers::ERROR_CLASS).as_deref(), class);
            let failed = !matches!(decision, Decision::Await);
            assert_eq!(
                text(&up.headers, headers::FIRST_FAILURE_AT).is_some(),
                failed,
                "{decision:?}"
            );
        }
        assert_eq!(
            follow_up(&Decision::Ack, FieldTable::default(), &topology(), at()),
            None
        );
    }

    #[test]
    fn a_retry_keeps_the_first_failure_time_it_already_has() {
        let mut headers = FieldTable::default();
        headers.set_text(headers::FIRST_FAILURE_AT, "2026-05-01T09:00:00Z");
        let decision = Decision::Retry {
            next_attempt: 2,
            delay: Duration::from_secs(1),
            cause: "x",
        };
        let up = follow_up(&decision, headers, &topology(), at()).unwrap();
        assert_eq!(
            text(&up.headers, headers::FIRST_FAILURE_AT).as_deref(),
            Some("2026-05-01T09:00:00Z")
        );
    }
}
