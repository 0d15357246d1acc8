//! Reading the dead-letter queue without losing anything.
//!
//! # How a scan works
//!
//! `<ns>.dead` is a quorum queue, and AMQP has no "peek". A [`Scan`] therefore *borrows* the
//! messages: it takes them **without auto-ack**, so each stays unacked on the scan's channel
//! (the next one taken is the next in the queue, nothing is read twice), and gives back what
//! it does not remove.
//!
//! 1. On a channel of its own it declares the queue passively; the answer's message count
//!    (ready messages) is the scan's **bound**: it takes at most that many, so messages
//!    dead-lettered during the scan are left for the next one and the scan always ends, even
//!    while workers keep adding.
//! 2. **Push, then pull.** It first consumes with a prefetch of `min(bound, cap)`: the broker
//!    streams the messages (10,000 in 1 to 4 s on our shared test broker, where `basic.get`,
//!    one replicated command per message, took 12 to 30 s). It cancels the consumer at the bound,
//!    or when nothing arrived for [`PUSH_IDLE`] (the prefetch is used up by held messages, or
//!    another client holds the rest), keeps what the broker sent before the cancel, and goes
//!    on with `basic.get` (no prefetch, so never stalled) up to the bound. The prefetch is also
//!    what bounds client memory: a paced replay, which reads slowly, pushes at most
//!    [`PACED_PREFETCH`] messages ahead; the fast commands drop each body as soon as it is read.
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
//!   the queue (take 3 of 10 and return them: `3 4 … 9 0 1 2`). A scan therefore always
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

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicQosOptions,
    BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Consumer};

use super::letter::Letter;
use crate::queue::Broker;

/// Largest prefetch of a scan that reads as fast as it can (the AMQP maximum).
pub const FAST_PREFETCH: u16 = u16::MAX;
/// Largest prefetch of a scan that reads slowly (a paced replay): the messages the broker may
/// push ahead of it, into client memory.
pub const PACED_PREFETCH: u16 = 1_000;
/// Silence after which the push phase gives way to `basic.get`.
pub const PUSH_IDLE: Duration = Duration::from_secs(2);
/// Longest wait for the deliveries the broker sent before it confirmed a cancel.
const CANCEL_WAIT: Duration = Duration::from_secs(10);
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
    taken: u32,
    held: BTreeSet<u64>,
    consumer: Option<Consumer>,
    /// Deliveries the broker sent before it confirmed the cancel, in order.
    pushed: VecDeque<Delivery>,
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
    /// Opens a scan of `queue` on a new channel of `broker`, the broker pushing at most
    /// `max_prefetch` messages ahead ([`FAST_PREFETCH`] or [`PACED_PREFETCH`]).
    pub async fn open(broker: &Broker, queue: &str, max_prefetch: u16) -> anyhow::Result<Self> {
        let channel = broker.channel().await.context("connecting to RabbitMQ")?;
        let mut scan = Self {
            channel,
            queue: queue.to_string(),
            bound: 0,
            taken: 0,
            held: BTreeSet::new(),
            consumer: None,
            pushed: VecDeque::new(),
        };
        scan.bound = scan.ready_count().await.with_context(|| {
            format!("the dead-letter queue {queue} does not exist (run `topology declare`)")
        })?;
        let prefetch = u16::try_from(scan.bound)
            .unwrap_or(u16::MAX)
            .min(max_prefetch);
        if prefetch > 0 {
            scan.channel
                .basic_qos(prefetch, BasicQosOptions { global: false })
                .await
                .context("setting the scan's prefetch")?;
            let consumer = scan
                .channel
                .basic_consume(
                    queue.into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .context("reading the dead-letter queue")?;
            scan.consumer = Some(consumer);
        }
        Ok(scan)
    }

    /// How many messages the queue held when the scan began: the most it will take.
    pub fn bound(&self) -> u32 {
        self.bound
    }

    /// The next message, held unacked; `None` at the bound or when the queue has no more.
    pub async fn next(&mut self) -> anyhow::Result<Option<Fetched>> {
        if self.taken >= self.bound {
            self.stop_pushing().await?;
            // Anything pushed past the bound is held, and returned with the rest.
            self.held
                .extend(self.pushed.drain(..).map(|d| d.delivery_tag));
            return Ok(None);
        }
        let mut delivery = self.pushed.pop_front();
        if delivery.is_none() && self.consumer.is_some() {
            delivery = self.next_pushed().await?;
            // A consumer that went quiet may have brought more before its cancel.
            delivery = delivery.or_else(|| self.pushed.pop_front());
        }
        if delivery.is_none() {
            delivery = self.pull().await?;
        }
        let Some(delivery) = delivery else {
            return Ok(None);
        };
        self.taken += 1;
        self.held.insert(delivery.delivery_tag);
        Ok(Some(Fetched {
            tag: delivery.delivery_tag,
            letter: Letter::read(&delivery.properties, &delivery.data),
            properties: delivery.properties,
            body: delivery.data,
        }))
    }

    /// A delivery from the consumer; `None` once it went quiet or was cancelled (the
    /// consumer is then stopped and what it still brought is in `pushed`).
    async fn next_pushed(&mut self) -> anyhow::Result<Option<Delivery>> {
        let Some(consumer) = self.consumer.as_mut() else {
            return Ok(None);
        };
        match tokio::time::timeout(PUSH_IDLE, consumer.next()).await {
            Ok(Some(delivery)) => Ok(Some(delivery.context("reading the dead-letter queue")?)),
            Ok(None) => {
                self.consumer = None;
                Ok(None)
            }
            Err(_idle) => {
                tracing::debug!(
                    taken = self.taken,
                    bound = self.bound,
                    "dead-letter consumer idle; going on with basic.get"
                );
                self.stop_pushing().await?;
                Ok(None)
            }
        }
    }

    /// Cancels the consumer and keeps, in order, what the broker sent before the cancel.
    async fn stop_pushing(&mut self) -> anyhow::Result<()> {
        let Some(mut consumer) = self.consumer.take() else {
            return Ok(());
        };
        self.channel
            .basic_cancel(consumer.tag(), BasicCancelOptions::default())
            .await
            .context("stopping the dead-letter consumer")?;
        // After cancel-ok the stream yields what was already delivered, then ends.
        let drain = async {
            while let Some(delivery) = consumer.next().await {
                self.pushed
                    .push_back(delivery.context("reading the dead-letter queue")?);
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(CANCEL_WAIT, drain)
            .await
            .context("the broker did not confirm the consumer's cancel")?
    }

    async fn pull(&self) -> anyhow::Result<Option<Delivery>> {
        let got = self
            .channel
            .basic_get(
                self.queue.as_str().into(),
                BasicGetOptions { no_ack: false },
            )
            .await
            .context("reading the dead-letter queue")?;
        Ok(got.map(|message| message.delivery))
    }

    /// Takes and holds the rest of the bound without looking at it. Returned messages go to
    /// the tail of the queue, so a command that stops early (`--limit`) does this before
    /// [`release`](Self::release) to leave the queue in its order rather than rotated.
    pub async fn hold_rest(&mut self) -> anyhow::Result<()> {
        while self.next().await?.is_some() {}
        Ok(())
    }

    /// Removes a taken message from the queue for good.
    pub async fn ack(&mut self, tag: u64) -> anyhow::Result<()> {
        self.channel
            .basic_ack(tag, BasicAckOptions { multiple: false })
            .await
            .context("acknowledging a dead letter")?;
        self.held.remove(&tag);
        Ok(())
    }

    /// Returns every message still held to the queue, in queue order, and closes the channel.
    pub async fn release(mut self) -> anyhow::Result<()> {
        // No consumer may be left to take back what is returned.
        self.stop_pushing().await?;
        self.held
            .extend(self.pushed.drain(..).map(|d| d.delivery_tag));
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
                    let returned = u32::try_from(returned).unwrap_or(u32::MAX);
                    if !self.wait_for_ready(base.saturating_add(returned)).await {
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
