//! Replay and purge: one [`Scan`] over the dead-letter queue, where the selected messages are
//! moved (replayed to `<ns>.ingest`, or dropped) and every other one is handed back untouched.
//!
//! A replay never loses a message and never leaves one both replayed and dead unless it can be
//! told apart: the copy is published with publisher confirms, and the dead letter is acked only
//! after the broker confirmed the copy. Killed in between, both exist, and the copy carries
//! `prechat-replayed-at` (same `message_id`); killed before the confirm, the dead letter is
//! still there (and the copy, if the broker got it, is again marked). Up to [`IN_FLIGHT`]
//! copies wait for their confirms at once, so a large replay is not one round trip per message.
//!
//! Replayed messages are processed by the workers like any other, so they spend the same
//! Genesys budget as live traffic; `--rate` additionally paces the republishing itself.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use indicatif::ProgressBar;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;
use serde::Serialize;

use super::filter::Filter;
use super::letter::Letter;
use super::reader::{Fetched, Scan};
use crate::queue::headers::{self, HeaderExt};
use crate::queue::topology::SUBMISSION_KEY;
use crate::queue::{PublishError, Publisher, Topology};

/// A replay or purge stops taking new messages after this long, well inside RabbitMQ's default
/// `consumer_timeout` (30 min), after which the broker would close the channel holding the
/// messages it passed over. Run the command again to go on.
pub const RUN_BUDGET: Duration = Duration::from_secs(20 * 60);

/// Replayed copies awaiting their confirm at once.
pub const IN_FLIGHT: usize = 64;

/// Headers that describe the previous life of a message and are dropped on replay, besides
/// every `prechat-error-*`.
const STALE_HEADERS: [&str; 4] = [
    headers::DEAD_LETTERED_AT,
    headers::FIRST_FAILURE_AT,
    "x-death",
    "x-delivery-count",
];

/// What to do with the selected dead letters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// Republish to `<ns>.ingest` with attempts reset, paced to `rate` per second.
    Replay {
        /// Messages per second, if limited.
        rate: Option<f64>,
    },
    /// Drop them.
    Purge,
}

/// A replay or purge to carry out.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Which dead letters.
    pub filter: Filter,
    /// At most this many.
    pub limit: Option<u64>,
    /// Only report what would move.
    pub dry_run: bool,
    /// Replay or purge.
    pub action: Action,
}

/// What a replay or purge did.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Messages in the queue when the command started.
    pub queued: u64,
    /// Messages looked at.
    pub scanned: u64,
    /// Messages the filter selected (within `--limit`).
    pub matched: u64,
    /// Messages replayed or purged.
    pub moved: u64,
    /// Whether this was a dry run (nothing moved).
    pub dry_run: bool,
    /// Why the command stopped before the end of the queue, if it did.
    pub stopped_early: Option<String>,
    /// With `--dry-run`, the messages that would move, in queue order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub would_move: Vec<Letter>,
}

/// Carries out `plan` over `scan`, then returns every message it did not move. An error (a
/// refused publish, a lost connection) stops it; what was moved until then is reported along
/// with the error, and every message is either moved or still dead-lettered.
pub async fn execute(
    scan: Scan,
    publisher: &Publisher,
    topology: &Topology,
    plan: &Plan,
    progress: &ProgressBar,
) -> (Report, Option<anyhow::Error>) {
    let mut run = Run {
        report: Report {
            queued: scan.bound().into(),
            dry_run: plan.dry_run,
            ..Report::default()
        },
        scan,
        failure: None,
        started: Instant::now(),
    };
    let limiter = match plan.action {
        Action::Replay { rate: Some(rate) } => Some(rate_limiter(rate)),
        _ => None,
    };
    let exchange = topology.ingest_exchange();
    let mut in_flight = FuturesUnordered::new();
    while let Some(fetched) = run.next_selected(plan, progress).await {
        if plan.dry_run {
            run.report.would_move.push(fetched.letter.clone());
            if let Err(error) = run.scan.put_back(fetched).await {
                run.fail(error);
            }
            continue;
        }
        if plan.action == Action::Purge {
            match run.scan.ack(fetched.tag).await {
                Ok(()) => run.report.moved += 1,
                Err(error) => run.fail(error),
            }
            continue;
        }
        if let Some(limiter) = &limiter {
            // Settle confirms while waiting, so that a dead letter is acked as soon as its
            // copy is confirmed, not one rate period later.
            loop {
                tokio::select! {
                    _ = limiter.until_ready() => break,
                    Some((tag, result)) = in_flight.next(), if !in_flight.is_empty() => {
                        run.settle(tag, result).await;
                    }
                }
            }
        }
        if run.failure.is_some() {
            break; // this one stays dead-lettered
        }
        let properties = replay_properties(&fetched.properties, Utc::now());
        let (exchange, tag) = (exchange.as_str(), fetched.tag);
        in_flight.push(async move {
            let body = fetched.body;
            let result = publisher
                .publish(exchange, SUBMISSION_KEY, &body, properties)
                .await;
            (tag, result)
        });
        while in_flight.len() >= IN_FLIGHT {
            if let Some((tag, result)) = in_flight.next().await {
                run.settle(tag, result).await;
            }
        }
        while let Some(Some((tag, result))) = in_flight.next().now_or_never() {
            run.settle(tag, result).await;
        }
    }
    while let Some((tag, result)) = in_flight.next().await {
        run.settle(tag, result).await;
    }
    let Run {
        scan,
        report,
        mut failure,
        ..
    } = run;
    if let Err(error) = scan.release().await {
        // Closing the connection returns the held messages anyway.
        failure.get_or_insert(error);
    }
    (report, failure)
}

/// The state of one replay or purge.
struct Run {
    scan: Scan,
    report: Report,
    failure: Option<anyhow::Error>,
    started: Instant,
}

impl Run {
    /// The next dead letter the plan selects; `None` at the end of the scan, at the limit
    /// (after taking the rest, to keep the queue's order), past the time budget, or after a
    /// failure.
    async fn next_selected(&mut self, plan: &Plan, progress: &ProgressBar) -> Option<Fetched> {
        loop {
            if self.failure.is_some() {
                return None;
            }
            if plan.limit.is_some_and(|limit| self.report.matched >= limit) {
                progress.set_message("restoring the order");
                if let Err(error) = self.scan.hold_rest().await {
                    self.fail(error);
                }
                return None;
            }
            if self.started.elapsed() >= RUN_BUDGET {
                self.report.stopped_early = Some(format!(
                    "time budget of {} min used up; run the command again to go on",
                    RUN_BUDGET.as_secs() / 60
                ));
                return None;
            }
            let fetched = match self.scan.next().await {
                Ok(fetched) => fetched?,
                Err(error) => {
                    self.fail(error);
                    return None;
                }
            };
            self.report.scanned += 1;
            progress.inc(1);
            if plan.filter.matches(&fetched.letter) {
                self.report.matched += 1;
                return Some(fetched);
            }
            if let Err(error) = self.scan.put_back(fetched).await {
                self.fail(error);
            }
        }
    }

    /// Acks the dead letter whose copy the broker confirmed; keeps the one whose copy failed.
    async fn settle(&mut self, tag: u64, result: Result<(), PublishError>) {
        match result {
            Ok(()) => {
                self.report.moved += 1;
                if let Err(error) = self.scan.ack(tag).await {
                    self.fail(error.context(
                        "a replayed message is also still dead-lettered (its copy has prechat-replayed-at)",
                    ));
                }
            }
            Err(error) => self.fail(
                anyhow::Error::new(error).context("republishing a dead letter to the ingest"),
            ),
        }
    }

    /// Keeps the first failure: it stops the run.
    fn fail(&mut self, error: anyhow::Error) {
        self.failure.get_or_insert(error);
    }
}

/// One message every `1 / rate` seconds, no burst.
fn rate_limiter(rate: f64) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_nanos(1));
    let quota = Quota::with_period(period)
        .expect("a positive period")
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

/// The properties of a replayed copy: the submission's own (`message_id`, content type,
/// timestamp, trace context and other headers), persistent, with the attempt count reset to 1,
/// the error and dead-letter headers of its previous life removed, `prechat-replayed-at`, and
/// `prechat-accepted-at` set to the replay time.
pub fn replay_properties(original: &BasicProperties, now: DateTime<Utc>) -> BasicProperties {
    let kept = original
        .headers()
        .as_ref()
        .map(|table| {
            table
                .inner()
                .iter()
                .filter(|(key, _)| {
                    let key = key.as_str();
                    !key.starts_with("prechat-error-")
                        && !key.starts_with("x-first-death-")
                        && !key.starts_with("x-last-death-")
                        && !STALE_HEADERS.contains(&key)
                })
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect::<std::collections::BTreeMap<ShortString, AMQPValue>>()
        })
        .unwrap_or_default();
    let mut table = FieldTable::from(kept);
    table.set_number(headers::ATTEMPT, 1);
    table.set_text(headers::REPLAYED_AT, headers::timestamp(now));
    // The copy enters the pipeline now: end-to-end latency must not count its days as a
    // dead letter.
    table.set_text(headers::ACCEPTED_AT, headers::timestamp(now));
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(
            original
                .content_type()
                .clone()
                .unwrap_or_else(|| "application/json".into()),
        )
        .with_timestamp(
            original
                .timestamp()
                .unwrap_or(now.timestamp().max(0) as u64),
        )
        .with_headers(table);
    if let Some(id) = original.message_id() {
        properties = properties.with_message_id(id.clone());
    }
    if let Some(encoding) = original.content_encoding() {
        properties = properties.with_content_encoding(encoding.clone());
    }
    if let Some(correlation_id) = original.correlation_id() {
        properties = properties.with_correlation_id(correlation_id.clone());
    }
    properties
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    #[test]
    fn a_replayed_copy_starts_over_and_says_when_it_was_replayed() {
        let mut table = FieldTable::default();
        table.set_number(headers::ATTEMPT, 5);
        table.set_text(headers::TRACEPARENT, "00-abc-def-01");
        table.set_text(headers::ERROR_CLASS, "retries_exhausted");
        table.set_text(headers::ERROR_MESSAGE, "boom");
        table.set_number(headers::ERROR_STATUS, 503);
        table.set_text(headers::ERROR_CODE, "service.unavailable");
        table.set_text(headers::ERROR_CONTEXT_ID, "ctx");
        table.set_text(headers::DEAD_LETTERED_AT, "2026-11-22T10:00:00Z");
        table.set_text(headers::FIRST_FAILURE_AT, "2026-11-22T09:00:00Z");
        table.set_number("x-delivery-count", 3);
        table.set_text(headers::ACCEPTED_AT, "2026-11-22T08:59:00Z");
        table.set_text("x-first-death-reason", "delivery_limit");
        table.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![])),
        );
        let original = BasicProperties::default()
            .with_message_id("sub-1".into())
            .with_content_type("application/json".into())
            .with_timestamp(1_700_000_000)
            .with_expiration("5000".into())
            .with_headers(table);
        let now: DateTime<Utc> = "2026-11-23T08:00:00Z".parse().unwrap();
        let copy = replay_properties(&original, now);
        let headers_out = copy.headers().clone().unwrap();
        let mut keys: Vec<&str> = headers_out.inner().keys().map(|k| k.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                headers::ACCEPTED_AT,
                headers::ATTEMPT,
                headers::REPLAYED_AT,
                headers::TRACEPARENT
            ]
        );
        assert_eq!(
            headers_out.text(headers::ACCEPTED_AT).as_deref(),
            Some("2026-11-23T08:00:00Z")
        );
        assert_eq!(headers_out.number(headers::ATTEMPT), Some(1));
        assert_eq!(
            headers_out.text(headers::REPLAYED_AT).as_deref(),
            Some("2026-11-23T08:00:00Z")
        );
        assert_eq!(copy.message_id().as_ref().unwrap().as_str(), "sub-1");
        assert_eq!(*copy.delivery_mode(), Some(2));
        assert_eq!(*copy.timestamp(), Some(1_700_000_000));
        assert_eq!(*copy.expiration(), None);
    }

    #[test]
    fn a_rate_of_two_per_second_lets_one_through_every_half_second() {
        let limiter = rate_limiter(2.0);
        assert!(limiter.check().is_ok());
        assert!(limiter.check().is_err());
        let fractional = rate_limiter(0.5);
        assert!(fractional.check().is_ok());
        assert!(fractional.check().is_err());
    }
}
