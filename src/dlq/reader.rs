//! Reading the dead-letter queue without losing anything.
//!
//! # How a scan works
//!
//! `<ns>.dead` is a quorum queue, and AMQP has no "peek". A [`Scan`] therefore *borrows* the
//! messages:
//!
//! 1. On a channel of its own it declares the queue passively; the answer's message count
//!    (ready messages) is the scan's **bound**: it fetches at most that many, so messages
//!    dead-lettered during the scan are left for the next one and the scan always ends, even
//!    while workers keep adding.
//! 2. It `basic.get`s one message at a time **without auto-ack**. Each stays unacked on the
//!    scan's channel, so the next `get` returns the next message and nothing is read twice.
//!    `basic.get` has no prefetch: the broker holds the unacked messages, the client keeps
//!    only their delivery tags (a few bytes each; 10,000+ messages are fine).
//! 3. The caller decides per message: [`Scan::ack`] removes it for good (a purge, or a replay
//!    *after* the broker confirmed the replayed copy); anything else is simply held.
//! 4. [`Scan::release`] returns every held message with `basic.reject` (`requeue`), one at a
//!    time in queue order, then closes the channel. If the process dies instead, the broker
//!    requeues every unacked message when the connection drops: a scan can never lose a
//!    message.
//!
//! # What "unchanged" means
//!
//! A returned message keeps its body, properties and headers, but the broker marks it
//! `redelivered` and, being a quorum queue, counts the return in `x-delivery-count` on the
//! next delivery. The dead-letter queue has no `x-delivery-limit` (see
//! [`Topology::entities`](crate::queue::Topology::entities)) so the count never dead-letters
//! anything; a replay strips it.
//!
//! Order, as observed on RabbitMQ 3.10.8 (repeated runs of up to 2,000 messages):
//! - a quorum queue puts a returned message at the **tail**, behind every message still in
//!   the queue (fetch 3 of 10 and return them: `3 4 … 9 0 1 2`). A scan therefore always
//!   reads up to its bound ([`Scan::hold_rest`] when a `--limit` is reached early) and
//!   returns everything: the whole queue goes round once and comes back in its order;
//! - the broker's channel batches returns while the queue has many commands in flight, and a
//!   batch is applied in an arbitrary (often reversed) order: one `basic.nack` with
//!   `multiple`, a channel close or a dropped connection scrambled the queue every time, and
//!   single rejects sent back to back (even with a channel round trip every 2 or 4) still
//!   swapped a few dozen neighbours. So [`Scan::release`] rejects one message at a time in
//!   queue order and, every [`RETURN_WINDOW`] messages, waits until the queue's ready count
//!   shows them applied: that kept the order exactly in every run.
//!
//! The order stays best effort, and nothing depends on it: dead letters that arrive during a
//! scan end up ahead of the returned ones, a replay stopped by its time budget leaves the
//! queue rotated, and a killed command leaves its messages in an arbitrary order.
//!
//! # Limits
//!
//! - Two scans at once (two operators) each see only what the other does not hold.
//! - The broker's `consumer_timeout` (30 min by default) closes a channel that holds an unacked
//!   message too long, which returns everything still held; replay and purge therefore stop
//!   taking messages after [`super::replay::RUN_BUDGET`] and say how far they got.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicRejectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

use super::letter::Letter;
use crate::queue::Broker;

/// Messages returned before [`Scan::release`] waits for the queue to have applied them: few
/// enough that the quorum queue's client never batches them (a batch comes back reordered),
/// many enough to stay fast (2,000 messages return in about 0.3 s).
const RETURN_WINDOW: usize = 16;
/// How long [`Scan::release`] waits for one window of returns to be applied.
const RETURN_WAIT: Duration = Duration::from_secs(2);

/// A bounded, non-destructive pass over a queue.
pub struct Scan {
    channel: Channel,
    queue: String,
    bound: u32,
    fetched: u32,
    held: BTreeSet<u64>,
}

/// One borrowed message.
pub struct Fetched {
    /// Its delivery tag on the scan's channel.
    pub tag: u64,
    /// What it says about itself.
    pub letter: Letter,
    /// Its properties, as dead-lettered.
    pub properties: BasicProperties,
    /// Its body.
    pub body: Vec<u8>,
}

impl Scan {
    /// Opens a scan of `queue` on a new channel of `broker`.
    pub async fn open(broker: &Broker, queue: &str) -> anyhow::Result<Self> {
        let channel = broker.channel().await.context("connecting to RabbitMQ")?;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| {
                format!("the dead-letter queue {queue} does not exist (run `topology declare`)")
            })?;
        Ok(Self {
            channel,
            queue: queue.to_string(),
            bound: declared.message_count(),
            fetched: 0,
            held: BTreeSet::new(),
        })
    }

    /// How many messages the queue held when the scan began: the most it will fetch.
    pub fn bound(&self) -> u32 {
        self.bound
    }

    /// The next message, held unacked; `None` at the bound or when the queue has no more.
    pub async fn next(&mut self) -> anyhow::Result<Option<Fetched>> {
        if self.fetched >= self.bound {
            return Ok(None);
        }
        let got = self
            .channel
            .basic_get(
                self.queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .context("reading the dead-letter queue")?;
        let Some(message) = got else {
            return Ok(None);
        };
        self.fetched += 1;
        let delivery = message.delivery;
        self.held.insert(delivery.delivery_tag);
        Ok(Some(Fetched {
            tag: delivery.delivery_tag,
            letter: Letter::read(&delivery.properties, &delivery.data),
            properties: delivery.properties,
            body: delivery.data,
        }))
    }

    /// Fetches and holds the rest of the bound without looking at it. Returned messages go to
    /// the tail of the queue, so a command that stops early (`--limit`) does this before
    /// [`release`](Self::release) to leave the queue in its order rather than rotated.
    pub async fn hold_rest(&mut self) -> anyhow::Result<()> {
        while self.next().await?.is_some() {}
        Ok(())
    }

    /// Removes a fetched message from the queue for good.
    pub async fn ack(&mut self, tag: u64) -> anyhow::Result<()> {
        self.channel
            .basic_ack(tag, BasicAckOptions { multiple: false })
            .await
            .context("acknowledging a dead letter")?;
        self.held.remove(&tag);
        Ok(())
    }

    /// Returns every message still held to the queue, in queue order, and closes the channel.
    pub async fn release(self) -> anyhow::Result<()> {
        // Ready messages now; each return applied by the queue adds one.
        let mut baseline = self.ready_count().await.ok();
        for (i, tag) in self.held.iter().enumerate() {
            self.channel
                .basic_reject(*tag, BasicRejectOptions { requeue: true })
                .await
                .context("returning dead letters to their queue")?;
            let returned = i + 1;
            if returned % RETURN_WINDOW == 0 || returned == self.held.len() {
                if let Some(base) = baseline {
                    let expected = base.saturating_add(u32::try_from(returned).unwrap_or(u32::MAX));
                    if !self.wait_for_ready(expected).await {
                        // Order is best effort: stop pacing, never stop returning.
                        baseline = None;
                    }
                }
            }
        }
        let _ = self.channel.close(200, "dlq scan done".into()).await;
        Ok(())
    }

    async fn ready_count(&self) -> Result<u32, lapin::Error> {
        let declared = self
            .channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        Ok(declared.message_count())
    }

    /// Polls until the queue has `expected` ready messages, i.e. the returns sent so far are
    /// applied; false after [`RETURN_WAIT`] (e.g. expired by the retention TTL meanwhile).
    async fn wait_for_ready(&self, expected: u32) -> bool {
        let deadline = tokio::time::Instant::now() + RETURN_WAIT;
        while tokio::time::Instant::now() < deadline {
            match self.ready_count().await {
                Ok(ready) if ready >= expected => return true,
                Ok(_) => tokio::task::yield_now().await,
                Err(_) => return false,
            }
        }
        false
    }
}
