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
}

/// Creates confirm-mode channels on the publishing connection.
pub struct ConfirmChannels {
    broker: Broker,
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
        let timeout = self.timeout;
        let publish = self.publish_confirmed(exchange, routing_key, body, properties, mandatory);
        match tokio::time::timeout(timeout, publish).await {
            Ok(result) => result,
            Err(_) => Err(PublishError::Timeout(timeout)),
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
        let options = BasicPublishOptions {
            mandatory,
            ..Default::default()
        };
        // A pooled channel can be stale after a broker restart; the second try gets a fresh one.
        let mut attempts_left = 2;
        let confirm = loop {
            attempts_left -= 1;
            let channel = self
                .channels
                .get()
                .await
                .map_err(|e| PublishError::Unavailable(e.to_string()))?;
            match channel
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    options,
                    body,
                    properties.clone(),
                )
                .await
            {
                Ok(confirm) => break confirm,
                Err(error) => {
                    let _ = managed::Object::take(channel);
                    if attempts_left == 0 {
                        return Err(PublishError::Unavailable(error.to_string()));
                    }
                }
            }
        };
        match confirm
            .await
            .map_err(|e| PublishError::Unavailable(e.to_string()))?
        {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::NotRequested => Err(PublishError::Unavailable(
                "channel not in confirm mode".into(),
            )),
            Confirmation::Ack(Some(_)) => Err(PublishError::Unroutable {
                exchange: exchange.to_string(),
                routing_key: routing_key.to_string(),
            }),
            Confirmation::Nack(_) => Err(PublishError::Nacked),
        }
    }
}
