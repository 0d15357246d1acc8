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
//! Order, as observed on RabbitMQ 3.10.8 (2,000 messages): a quorum queue puts returned
//! messages back at the **head**, ahead of anything dead-lettered meanwhile, in the order the
//! returns reach it. But its channel-side client batches returns while the queue is busy and a
//! batch comes back in an arbitrary (often reversed) order: one `basic.nack` with `multiple`,
//! a channel close or a dropped connection scrambled the whole queue every time, and even
//! single rejects sent back to back scrambled long runs. Single rejects in queue order with a
//! round trip every [`RETURN_WINDOW`] messages kept the order exactly in our runs; but the
//! broker promises nothing, so the order is best effort and nothing here depends on it. A
//! killed command leaves its messages in the queue in an arbitrary order.
//!
//! # Limits
//!
//! - Two scans at once (two operators) each see only what the other does not hold.
//! - The broker's `consumer_timeout` (30 min by default) closes a channel that holds an unacked
//!   message too long, which returns everything still held; replay and purge therefore stop
//!   taking messages after [`super::replay::RUN_BUDGET`] and say how far they got.

use std::collections::BTreeSet;

use anyhow::Context;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicQosOptions, BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

use super::letter::Letter;
use crate::queue::Broker;

/// Messages returned between two round trips in [`Scan::release`]: few enough that the
/// quorum queue's client does not batch them (which reorders), many enough to stay fast
/// (2,000 messages return in about 0.3 s).
const RETURN_WINDOW: usize = 4;

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

    /// Removes a fetched message from the queue for good.
    pub async fn ack(&mut self, tag: u64) -> anyhow::Result<()> {
        self.channel
            .basic_ack(tag, BasicAckOptions { multiple: false })
            .await
            .context("acknowledging a dead letter")?;
        self.held.remove(&tag);
        Ok(())
    }

    /// Returns every message still held to the queue, oldest first, and closes the channel.
    pub async fn release(self) -> anyhow::Result<()> {
        for (i, tag) in self.held.iter().enumerate() {
            self.channel
                .basic_reject(*tag, BasicRejectOptions { requeue: true })
                .await
                .context("returning dead letters to their queue")?;
            if (i + 1) % RETURN_WINDOW == 0 {
                // A round trip, so that returns reach the queue a few at a time (see the
                // module doc: batched returns lose their order).
                self.channel
                    .basic_qos(0, BasicQosOptions::default())
                    .await
                    .context("returning dead letters to their queue")?;
            }
        }
        let _ = self.channel.close(200, "dlq scan done".into()).await;
        Ok(())
    }
}
