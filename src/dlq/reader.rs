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
//!    *after* the broker confirmed the replayed copy); [`Scan::put_back`] keeps it.
//! 4. **Put back by copy, never by requeue.** A message put back is republished, byte for
//!    byte (body, properties, every header), to the tail of the same queue on a confirm channel,
//!    and the borrowed original is acked once the broker confirmed the copy and the push phase
//!    is over (acking earlier would let the broker push the copies back to the scan). The scan
//!    never reads its own copies: they sit behind its bound. A message is therefore in the queue
//!    at every moment, as the original, the copy, or (killed between the confirm and the ack)
//!    both, with the same `message_id`.
//! 5. [`Scan::release`] waits for the outstanding copies, acks their originals, and returns
//!    with `basic.reject` (`requeue`) only what the caller neither removed nor put back (a
//!    replay that failed half-way), one at a time in queue order; if the process dies instead,
//!    the broker requeues every unacked message when the connection drops: a scan can never
//!    lose a message.
//!
//! # Why not requeue
//!
//! RabbitMQ 4.0 gave quorum queues a default delivery limit of 20 for queues declared without
//! `x-delivery-limit`, and from 4.0 to 4.2 the limit counts every time a message was handed to a
//! consumer and came back, however it came back (reject or nack with requeue, `basic.cancel`,
//! a closed channel or connection); 4.3 counts only failed deliveries, where `basic.reject`
//! with requeue and a closed channel still count. The dead-letter queue has no dead-letter
//! exchange of its own, so on 4.x a letter over the limit is dropped: a scan that requeued
//! would let a nightly `dlq stats` delete every dead letter within three weeks. The limit cannot
//! be switched off by declaration on every supported broker: `x-delivery-limit = -1` means
//! "unlimited" from 4.0 on, but 3.x reads a negative limit as 0 and drops each message at its
//! first return, and a changed queue argument makes the existing queue's declaration fail. A
//! copy starts with no delivery history, on every broker version, so any number of scans leaves
//! every dead letter in place.
//!
//! What a copy changes: it loses the `redelivered` flag and the broker's own counters
//! (`x-delivery-count`, `x-acquired-count`), which describe the borrowing, not the failure; and
//! a copy would restart the queue's `x-message-ttl` clock, so it carries a per-message
//! `expiration` of the retention left since it was dead-lettered ([`Scan::retain_for`]).
//!
//! Order: the copies are published in the order the scan took the originals, so a scan that
//! reads up to its bound ([`Scan::hold_rest`] when a `--limit` is reached early) and puts
//! everything back leaves the whole queue in its order, dead letters that arrived during the
//! scan ahead of it. The order stays best effort: a replay that stops early leaves the queue
//! rotated, and a killed command leaves what it still held in an arbitrary order.
//!
//! # Limits
//!
//! - Two scans at once (two operators) each see only what the other does not hold.
//! - The broker's `consumer_timeout` (30 min by default) closes a channel that holds an unacked
//!   message too long, which returns everything still held; replay and purge therefore stop
//!   taking messages after [`super::replay::RUN_BUDGET`] and say how far they got.
//! - The copies are publishes: while the broker blocks publishers (a memory or disk alarm) a
//!   scan cannot put anything back and fails after [`COPY_WAIT`]; nothing is lost (the
//!   originals are still unacked and return when the connection closes).

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer, PublisherConfirm};

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
/// How long [`Scan::release`] lets the broker apply the last acks before it closes the
/// channel: on a quorum queue, acks still in flight when the channel closes may be applied
/// after the close returned their messages, which would leave an original beside its copy.
const ACK_SETTLE: Duration = Duration::from_millis(300);
/// How long [`Scan::release`] waits for one window of returns to be applied.
const RETURN_WAIT: Duration = Duration::from_secs(2);

/// Copies put back and awaiting their confirm at once.
const COPIES_IN_FLIGHT: usize = 256;
/// Longest wait for the broker to confirm one copy.
pub const COPY_WAIT: Duration = Duration::from_secs(30);
/// Headers the broker keeps about a message's deliveries; a copy starts without them.
const DELIVERY_HEADERS: [&str; 2] = ["x-delivery-count", "x-acquired-count"];

/// A bounded, non-destructive pass over a queue.
pub struct Scan {
    channel: Channel,
    /// The confirm channel copies are put back on (`None` once released).
    copies: Option<Channel>,
    /// Copies published, oldest first, with the delivery tag of their original.
    in_flight: VecDeque<(u64, PublisherConfirm)>,
    /// Originals whose copy the broker confirmed, acked once the consumer is stopped.
    confirmed: Vec<u64>,
    /// How long the queue keeps a message (its `x-message-ttl`), if it expires them.
    retention: Option<Duration>,
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
        let copies = broker.channel().await.context("connecting to RabbitMQ")?;
        copies
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("opening the channel that puts dead letters back")?;
        let mut scan = Self {
            channel,
            copies: Some(copies),
            in_flight: VecDeque::new(),
            confirmed: Vec::new(),
            retention: None,
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

    /// Tells the scan the queue's `x-message-ttl`, so that a copy expires when its original
    /// would have.
    pub fn retain_for(&mut self, retention: Option<Duration>) {
        self.retention = retention;
    }

    /// The next message, held unacked; `None` at the bound or when the queue has no more.
    pub async fn next(&mut self) -> anyhow::Result<Option<Fetched>> {
        if self.taken >= self.bound {
            self.stop_pushing().await?;
            // Anything pushed past the bound (dead letters that arrived meanwhile) goes back
            // by copy like the rest.
            while let Some(delivery) = self.pushed.pop_front() {
                self.held.insert(delivery.delivery_tag);
                let fetched = Fetched::from(delivery);
                self.put_back(fetched).await?;
            }
            self.ack_confirmed().await?;
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
        if self.consumer.is_none() {
            self.ack_confirmed().await?;
        }
        Ok(Some(Fetched::from(delivery)))
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

    /// Takes the rest of the bound and puts it back without looking at it. Copies go to the
    /// tail of the queue, so a command that stops early (`--limit`) does this before
    /// [`release`](Self::release) to leave the queue in its order rather than rotated.
    pub async fn hold_rest(&mut self) -> anyhow::Result<()> {
        while let Some(fetched) = self.next().await? {
            self.put_back(fetched).await?;
        }
        Ok(())
    }

    /// Keeps a taken message in the queue: republishes an exact copy to its tail (see the
    /// module doc) and acks the original once the copy is confirmed. Without a confirm the
    /// original stays held and is requeued by [`release`](Self::release).
    pub async fn put_back(&mut self, fetched: Fetched) -> anyhow::Result<()> {
        let channel = self
            .copies
            .clone()
            .context("the scan is already released")?;
        let properties = copy_properties(
            fetched.properties,
            fetched.letter.dead_lettered_at,
            self.retention,
        );
        let confirm = channel
            .basic_publish(
                "".into(),
                self.queue.as_str().into(),
                BasicPublishOptions::default(),
                &fetched.body,
                properties,
            )
            .await
            .context("putting a dead letter back")?;
        self.in_flight.push_back((fetched.tag, confirm));
        while self.in_flight.len() >= COPIES_IN_FLIGHT {
            self.settle_oldest().await?;
        }
        Ok(())
    }

    /// Waits for the oldest copy's confirm; a confirmed original is acked (now, or once the
    /// consumer is stopped).
    async fn settle_oldest(&mut self) -> anyhow::Result<()> {
        let Some((tag, confirm)) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let confirmation = tokio::time::timeout(COPY_WAIT, confirm)
            .await
            .context("the broker did not confirm a dead letter put back in time")?
            .context("putting a dead letter back")?;
        if confirmation.is_ack() {
            self.confirmed.push(tag);
            if self.consumer.is_none() {
                self.ack_confirmed().await?;
            }
        } else {
            // The original stays held and goes back by requeue.
            tracing::warn!("the broker refused a dead letter put back; it is requeued instead");
        }
        Ok(())
    }

    /// Acks the originals whose copies are confirmed, [`RETURN_WINDOW`] at a time with a
    /// round trip in between: the quorum queue's channel client buffers settlements it cannot
    /// send at once, and a channel closed with settlements still buffered drops them (the
    /// originals would come back beside their copies).
    async fn ack_confirmed(&mut self) -> anyhow::Result<()> {
        let confirmed = std::mem::take(&mut self.confirmed);
        for (i, tag) in confirmed.iter().enumerate() {
            self.ack_now(*tag).await?;
            if (i + 1) % RETURN_WINDOW == 0 {
                let _ = self.ready_count().await;
            }
        }
        Ok(())
    }

    /// Removes a taken message from the queue for good (once the push phase is over: an ack
    /// frees a prefetch slot, which the broker would fill with a copy put back).
    pub async fn ack(&mut self, tag: u64) -> anyhow::Result<()> {
        if self.consumer.is_some() {
            self.confirmed.push(tag);
            return Ok(());
        }
        self.ack_now(tag).await
    }

    async fn ack_now(&mut self, tag: u64) -> anyhow::Result<()> {
        self.channel
            .basic_ack(tag, BasicAckOptions { multiple: false })
            .await
            .context("acknowledging a dead letter")?;
        self.held.remove(&tag);
        Ok(())
    }

    /// Settles the copies put back, returns every message still held to the queue (by requeue,
    /// in queue order), and closes the channels.
    pub async fn release(mut self) -> anyhow::Result<()> {
        // No consumer may be left to take back what is returned.
        self.stop_pushing().await?;
        while let Some(delivery) = self.pushed.pop_front() {
            self.held.insert(delivery.delivery_tag);
            let fetched = Fetched::from(delivery);
            self.put_back(fetched).await?;
        }
        while !self.in_flight.is_empty() {
            self.settle_oldest().await?;
        }
        let acked_any = !self.confirmed.is_empty() || self.taken > 0;
        self.ack_confirmed().await?;
        if acked_any {
            let _ = self.ready_count().await;
            tokio::time::sleep(ACK_SETTLE).await;
        }
        if let Some(copies) = self.copies.take() {
            let _ = copies.close(200, "dlq scan done".into()).await;
        }
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

impl From<Delivery> for Fetched {
    fn from(delivery: Delivery) -> Self {
        Self {
            tag: delivery.delivery_tag,
            letter: Letter::read(&delivery.properties, &delivery.data),
            properties: delivery.properties,
            body: delivery.data,
        }
    }
}

/// The properties of a copy put back: the original's, without the broker's delivery counters,
/// expiring when the original would have (`retention` after it was dead-lettered; at once if
/// that is past) or earlier if the original said so.
pub fn copy_properties(
    original: BasicProperties,
    dead_lettered_at: Option<chrono::DateTime<Utc>>,
    retention: Option<Duration>,
) -> BasicProperties {
    let mut properties = original;
    if let Some(table) = properties.headers().as_ref() {
        if DELIVERY_HEADERS
            .iter()
            .any(|key| table.inner().contains_key(*key))
        {
            let kept: std::collections::BTreeMap<ShortString, lapin::types::AMQPValue> = table
                .inner()
                .iter()
                .filter(|(key, _)| !DELIVERY_HEADERS.contains(&key.as_str()))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect();
            properties = properties.with_headers(FieldTable::from(kept));
        }
    }
    let left = retention.map(|retention| {
        let age = dead_lettered_at
            .and_then(|at| (Utc::now() - at).to_std().ok())
            .unwrap_or_default();
        retention.saturating_sub(age).as_millis().max(1)
    });
    let own = properties
        .expiration()
        .as_ref()
        .and_then(|e| e.as_str().parse::<u128>().ok());
    if let Some(ms) = [left, own].into_iter().flatten().min() {
        properties = properties.with_expiration(ms.to_string().into());
    }
    properties
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::AMQPValue;

    #[test]
    fn a_copy_keeps_every_header_but_the_delivery_counters_and_expires_with_its_original() {
        let mut table = FieldTable::default();
        table.insert("x-delivery-count".into(), AMQPValue::LongLongInt(3));
        table.insert("x-acquired-count".into(), AMQPValue::LongLongInt(4));
        table.insert("prechat-attempt".into(), AMQPValue::LongLongInt(5));
        let original = BasicProperties::default()
            .with_message_id("s-1".into())
            .with_headers(table);
        let an_hour_ago = Utc::now() - chrono::Duration::hours(1);
        let copy = copy_properties(
            original.clone(),
            Some(an_hour_ago),
            Some(Duration::from_secs(3 * 3_600)),
        );
        let headers = copy.headers().clone().unwrap();
        let keys: Vec<&str> = headers.inner().keys().map(|k| k.as_str()).collect();
        assert_eq!(keys, ["prechat-attempt"]);
        assert_eq!(copy.message_id().as_ref().unwrap().as_str(), "s-1");
        let left: u128 = copy
            .expiration()
            .as_ref()
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        assert!((7_100_000..=7_200_000).contains(&left), "{left}");
        // Past its retention: expires at once. No retention: no expiration.
        let old = Utc::now() - chrono::Duration::hours(10);
        let copy = copy_properties(
            original.clone(),
            Some(old),
            Some(Duration::from_secs(3_600)),
        );
        assert_eq!(copy.expiration().as_ref().unwrap().as_str(), "1");
        assert!(copy_properties(original, None, None).expiration().is_none());
    }
}
