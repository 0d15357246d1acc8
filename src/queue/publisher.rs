//! Publishing with publisher confirms over a small pool of reused confirm channels.
//!
//! A publish succeeds only when the broker confirmed it (a Nack, an unroutable
//! message or no confirm within `amqp.publish_timeout_ms` is an error), so a caller that
//! acks or answers 202 after `publish` returns can never lose the message. The channel goes
//! back to the pool as soon as the frame is written, so confirms pipeline on it.

use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation};

use super::connection::{Broker, BrokerError};

/// Channels kept open for publishing.
const CHANNELS: usize = 4;

/// First pause of [`Publisher::publish_held`] after a refusal.
const HELD_FIRST_PAUSE: Duration = Duration::from_millis(250);
/// Longest pause of [`Publisher::publish_held`].
const HELD_MAX_PAUSE: Duration = Duration::from_secs(10);

/// Why a publish did not become the broker's responsibility.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No connection or channel (broker down, restarting, unreachable).
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused the message (e.g. a queue at its length limit).
    #[error("broker refused the message (nack)")]
    Nacked,
    /// No queue is bound for the routing key.
    #[error("no queue bound for {exchange}/{routing_key}")]
    Unroutable {
        /// Exchange.
        exchange: String,
        /// Routing key.
        routing_key: String,
    },
    /// No confirm in time (e.g. publishers blocked by a memory or disk alarm).
    #[error("no confirm from the broker within {0:?}")]
    Timeout(Duration),
    /// The broker blocks publishing (a memory or disk alarm); nothing was sent.
    #[error("the broker blocks publishing (memory or disk alarm)")]
    Blocked,
}

/// Creates confirm-mode channels on the publishing connection.
pub struct ConfirmChannels {
    broker: Broker,
}

impl ConfirmChannels {
    /// Whether the broker blocks the publishing connection.
    fn blocked(&self) -> bool {
        self.broker.blocked()
    }
}

impl managed::Manager for ConfirmChannels {
    type Type = Channel;
    type Error = BrokerError;

    async fn create(&self) -> Result<Channel, BrokerError> {
        let channel = self.broker.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(channel)
    }

    async fn recycle(&self, channel: &mut Channel, _: &Metrics) -> RecycleResult<BrokerError> {
        if channel.status().connected() {
            Ok(())
        } else {
            Err(RecycleError::message("channel closed"))
        }
    }
}

/// Publishes with confirms; cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    channels: managed::Pool<ConfirmChannels>,
    timeout: Duration,
}

impl Publisher {
    /// A publisher on its own connection (`connection_name` in the management UI).
    pub fn new(broker: Broker, timeout: Duration) -> Self {
        let channels = managed::Pool::builder(ConfirmChannels { broker })
            .max_size(CHANNELS)
            .runtime(deadpool::Runtime::Tokio1)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .build()
            .expect("a pool with a runtime and timeouts builds");
        Self { channels, timeout }
    }

    /// Publishes one persistent message and waits for the broker's confirm; a message no
    /// queue is bound for is an error ([`PublishError::Unroutable`]).
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        self.publish_with(exchange, routing_key, body, properties, true)
            .await
    }

    /// Like [`publish`](Self::publish), but a message no queue is bound for is simply
    /// dropped by the broker (events nobody listens to).
    pub async fn publish_unrouted_ok(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        self.publish_with(exchange, routing_key, body, properties, false)
            .await
    }

    async fn publish_with(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), PublishError> {
        if self.channels.manager().blocked() {
            return Err(PublishError::Blocked);
        }
        let timeout = self.timeout;
        let publish = self.publish_confirmed(exchange, routing_key, body, properties, mandatory);
        match tokio::time::timeout(timeout, publish).await {
            Ok(result) => result,
            Err(_) => Err(PublishError::Timeout(timeout)),
        }
    }

    /// [`publish`](Self::publish) for a follow-up of a message in hand: a refusal (an alarm
    /// blocking publishers, a lost connection, a moving queue leader, an unroutable key) is
    /// tried again with a growing pause instead of handing the message back at once, which
    /// would only have it delivered, processed and refused again in a tight loop. Gives up
    /// (with the last error) after `hold` in all, or as soon as `stop` is cancelled.
    pub async fn publish_held(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        hold: Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<(), PublishError> {
        let started = tokio::time::Instant::now();
        let mut pause = HELD_FIRST_PAUSE;
        loop {
            let error = match self
                .publish(exchange, routing_key, body, properties.clone())
                .await
            {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            let left = hold.saturating_sub(started.elapsed());
            if left.is_zero() || stop.is_cancelled() {
                return Err(error);
            }
            tracing::warn!(%error, retry_in_ms = pause.as_millis() as u64, "follow-up publish refused; the message stays in hand and the publish is tried again");
            tokio::select! {
                _ = tokio::time::sleep(pause.min(left)) => {}
                _ = stop.cancelled() => return Err(error),
            }
            pause = (pause * 2).min(HELD_MAX_PAUSE);
        }
    }

    /// Whether a confirm channel can be had now (readiness).
    pub async fn ready(&self) -> bool {
        self.channels.get().await.is_ok()
    }

    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), PublishError> {
        // A pooled channel can be stale after a broker restart, and after a quorum queue's
        // leader moved a channel can go on getting nacks; either way the second try runs on
        // a fresh channel. A retry after a nack may duplicate the message, which consumers
        // tolerate (at-least-once); answering 503 would make the client resend it anyway.
        let mut attempts_left = 2;
        loop {
            attempts_left -= 1;
            match self
                .try_publish(exchange, routing_key, body, properties.clone(), mandatory)
                .await
            {
                Err(error @ (PublishError::Nacked | PublishError::Unavailable(_)))
                    if attempts_left > 0 =>
                {
                    tracing::warn!(%error, "publish failed; retrying on a fresh channel");
                }
                result => return result,
            }
        }
    }

    /// One publish on one pooled channel. A channel that failed is taken out of the pool;
    /// after a nack every idle channel is, since they share the state that produced it.
    async fn try_publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: bool,
    ) -> Result<(), PublishError> {
        let options = BasicPublishOptions {
            mandatory,
            ..Default::default()
        };
        let channel = self
            .channels
            .get()
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?;
        let confirm = match channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                options,
                body,
                properties,
            )
            .await
        {
            Ok(confirm) => confirm,
            Err(error) => {
                let _ = managed::Object::take(channel);
                return Err(PublishError::Unavailable(error.to_string()));
            }
        };
        // The channel goes back to the pool now so confirms pipeline on it; a handle stays
        // here to close it should its confirm be a nack or an error.
        let handle = Channel::clone(&channel);
        drop(channel);
        let outcome = match confirm.await {
            Ok(Confirmation::Ack(None)) => return Ok(()),
            Ok(Confirmation::Ack(Some(_))) => {
                return Err(PublishError::Unroutable {
                    exchange: exchange.to_string(),
                    routing_key: routing_key.to_string(),
                })
            }
            Ok(Confirmation::NotRequested) => {
                PublishError::Unavailable("channel not in confirm mode".into())
            }
            Ok(Confirmation::Nack(_)) => PublishError::Nacked,
            Err(error) => PublishError::Unavailable(error.to_string()),
        };
        self.discard(&handle).await;
        Err(outcome)
    }

    /// Closes `channel` (the pool's recycle check then drops it) and drops every idle
    /// channel of the pool, which lapin closes.
    async fn discard(&self, channel: &Channel) {
        let removed = self.channels.retain(|_, _| false).removed.len();
        tracing::info!(
            channel.id = channel.id(),
            idle_channels_dropped = removed,
            "confirm channel discarded"
        );
        if channel.status().connected() {
            let _ = channel
                .close(200, "discarded by the publisher".into())
                .await;
        }
    }
}
