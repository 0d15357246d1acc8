//! The RabbitMQ topology in README, "RabbitMQ topology and headers", declared idempotently by every subcommand, and
//! compared with what the broker has by `topology check`.
//!
//! ```text
//! [ns.ingest] --submission--> (ns.submissions, quorum) --worker--> retry/dead/events
//!             --awaiting----> (ns.awaiting, quorum, single active consumer)
//! [ns.retry] --<d>s--> (ns.retry.<d>s, TTL d) --expired, DLX--> [ns.ingest] submission
//! [ns.dlx] (fanout) --> (ns.dead)          [ns.events] (topic)
//! ```

use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

use super::connection::{Broker, BrokerError};
use crate::config::AmqpSettings;

/// Routing key of a submission on the ingest exchange.
pub const SUBMISSION_KEY: &str = "submission";
/// Routing key that parks a submission with no conversation id.
pub const AWAITING_KEY: &str = "awaiting";
/// Routing key of a handoff (the flow's conversation id for a submission id), held by the
/// resolver beside the parked submissions.
pub const HANDOFF_KEY: &str = "handoff";

/// Names and arguments of every exchange and queue, derived from `[amqp]`.
#[derive(Debug, Clone)]
pub struct Topology {
    namespace: String,
    delivery_limit: u32,
    retry_delays_secs: Vec<u64>,
    dead_letter_ttl_hours: u64,
}

/// One exchange or queue the config wants.
#[derive(Debug, Clone)]
pub enum Entity {
    /// An exchange.
    Exchange {
        /// Name.
        name: String,
        /// Kind.
        kind: ExchangeKind,
    },
    /// A queue and the bindings that feed it.
    Queue {
        /// Name.
        name: String,
        /// `x-…` arguments.
        arguments: FieldTable,
        /// (exchange, routing key) bindings.
        bindings: Vec<(String, String)>,
    },
}

impl Entity {
    /// The entity's name.
    pub fn name(&self) -> &str {
        match self {
            Entity::Exchange { name, .. } | Entity::Queue { name, .. } => name,
        }
    }
}

/// A difference between the broker and the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The exchange or queue.
    pub name: String,
    /// What differs.
    pub detail: String,
}

impl Topology {
    /// The topology `[amqp]` describes.
    pub fn new(settings: &AmqpSettings) -> Self {
        Self {
            namespace: settings.namespace.clone(),
            delivery_limit: settings.delivery_limit,
            retry_delays_secs: settings.retry_delays_secs.clone(),
            dead_letter_ttl_hours: settings.dead_letter_ttl_hours,
        }
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.namespace)
    }

    /// Direct exchange the web tier and the service publish submissions to.
    pub fn ingest_exchange(&self) -> String {
        self.name("ingest")
    }
    /// The quorum work queue.
    pub fn submissions_queue(&self) -> String {
        self.name("submissions")
    }
    /// Submissions waiting for their conversation id.
    pub fn awaiting_queue(&self) -> String {
        self.name("awaiting")
    }
    /// Direct exchange of the delay queues.
    pub fn retry_exchange(&self) -> String {
        self.name("retry")
    }
    /// The delay queue of one bucket.
    pub fn retry_queue(&self, delay_secs: u64) -> String {
        self.name(&format!("retry.{delay_secs}s"))
    }
    /// Routing key of a delay bucket on the retry exchange.
    pub fn retry_key(delay_secs: u64) -> String {
        format!("{delay_secs}s")
    }
    /// Dead-letter exchange (fanout).
    pub fn dead_letter_exchange(&self) -> String {
        self.name("dlx")
    }
    /// The dead-letter queue.
    pub fn dead_letter_queue(&self) -> String {
        self.name("dead")
    }
    /// Topic exchange of outcome events.
    pub fn events_exchange(&self) -> String {
        self.name("events")
    }
    /// The smallest bucket that holds `delay_secs`, or the largest.
    pub fn bucket_for(&self, delay_secs: u64) -> u64 {
        let buckets = &self.retry_delays_secs;
        buckets
            .iter()
            .copied()
            .find(|b| *b >= delay_secs)
            .unwrap_or(buckets[buckets.len() - 1])
    }
    /// Where a retry after `delay` goes: the routing key of the smallest bucket that holds
    /// it (or the largest), and the message's expiration in milliseconds, so that it returns
    /// after `delay` exactly (at least 1 ms, at most the bucket's TTL).
    pub fn retry_route(&self, delay: std::time::Duration) -> (String, String) {
        let bucket = self.bucket_for(delay.as_secs_f64().ceil() as u64);
        let expiration = delay.as_millis().clamp(1, u128::from(bucket) * 1000);
        (Self::retry_key(bucket), expiration.to_string())
    }
    /// Every queue name, for depth metrics and cleanup.
    pub fn queues(&self) -> Vec<String> {
        self.entities()
            .into_iter()
            .filter_map(|e| matches!(e, Entity::Queue { .. }).then(|| e.name().to_string()))
            .collect()
    }

    /// Everything to declare, in dependency order.
    pub fn entities(&self) -> Vec<Entity> {
        let exchange = |name: String, kind| Entity::Exchange { name, kind };
        let mut entities = vec![
            exchange(self.ingest_exchange(), ExchangeKind::Direct),
            exchange(self.retry_exchange(), ExchangeKind::Direct),
            exchange(self.dead_letter_exchange(), ExchangeKind::Fanout),
            exchange(self.events_exchange(), ExchangeKind::Topic),
        ];
        let mut work = quorum();
        dead_letter_to(&mut work, &self.dead_letter_exchange(), None);
        set_long(&mut work, "x-delivery-limit", self.delivery_limit.into());
        entities.push(Entity::Queue {
            name: self.submissions_queue(),
            arguments: work,
            bindings: vec![(self.ingest_exchange(), SUBMISSION_KEY.into())],
        });
        let mut awaiting = quorum();
        awaiting.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        dead_letter_to(&mut awaiting, &self.dead_letter_exchange(), None);
        entities.push(Entity::Queue {
            name: self.awaiting_queue(),
            arguments: awaiting,
            bindings: vec![
                (self.ingest_exchange(), AWAITING_KEY.into()),
                (self.ingest_exchange(), HANDOFF_KEY.into()),
            ],
        });
        for delay in &self.retry_delays_secs {
            let mut retry = quorum();
            set_long(&mut retry, "x-message-ttl", (delay * 1000) as i64);
            dead_letter_to(&mut retry, &self.ingest_exchange(), Some(SUBMISSION_KEY));
            entities.push(Entity::Queue {
                name: self.retry_queue(*delay),
                arguments: retry,
                bindings: vec![(self.retry_exchange(), Self::retry_key(*delay))],
            });
        }
        let mut dead = quorum();
        if self.dead_letter_ttl_hours > 0 {
            set_long(
                &mut dead,
                "x-message-ttl",
                (self.dead_letter_ttl_hours * 3_600_000) as i64,
            );
        }
        entities.push(Entity::Queue {
            name: self.dead_letter_queue(),
            arguments: dead,
            bindings: vec![(self.dead_letter_exchange(), String::new())],
        });
        entities
    }

    /// Declares everything; safe to run any number of times, from any replica.
    pub async fn declare(&self, broker: &Broker) -> Result<(), BrokerError> {
        let channel = broker.channel().await?;
        for entity in self.entities() {
            declare_one(&channel, &entity, false)
                .await
                .map_err(|error| refused(&entity, error))?;
            if let Entity::Queue { name, bindings, .. } = &entity {
                for (exchange, key) in bindings {
                    channel
                        .queue_bind(
                            name.as_str().into(),
                            exchange.as_str().into(),
                            key.as_str().into(),
                            QueueBindOptions::default(),
                            FieldTable::default(),
                        )
                        .await?;
                }
            }
        }
        let _ = channel.close(200, "declared".into()).await;
        Ok(())
    }

    /// Compares the broker with the config: missing entities, and entities declared with
    /// other arguments (the broker refuses an inequivalent re-declare and says which argument).
    pub async fn check(&self, broker: &Broker) -> Result<Vec<Difference>, BrokerError> {
        let mut differences = Vec::new();
        for entity in self.entities() {
            let channel = broker.channel().await?;
            if let Err(error) = declare_one(&channel, &entity, true).await {
                differences.push(Difference {
                    name: entity.name().into(),
                    detail: format!("missing ({})", amqp_reason(&error)),
                });
                continue;
            }
            let channel = if channel.status().connected() {
                channel
            } else {
                broker.channel().await?
            };
            if let Err(error) = declare_one(&channel, &entity, false).await {
                differences.push(Difference {
                    name: entity.name().into(),
                    detail: amqp_reason(&error),
                });
                continue;
            }
            let _ = channel.close(200, "checked".into()).await;
        }
        Ok(differences)
    }

    /// Every binding the config wants: (exchange, routing key, queue).
    pub fn bindings(&self) -> Vec<(String, String, String)> {
        self.entities()
            .into_iter()
            .filter_map(|entity| match entity {
                Entity::Queue { name, bindings, .. } => Some(
                    bindings
                        .into_iter()
                        .map(move |(exchange, key)| (exchange, key, name.clone())),
                ),
                Entity::Exchange { .. } => None,
            })
            .flatten()
            .collect()
    }

    /// Deletes every queue and exchange (tests and `topology` tear-down).
    pub async fn delete(&self, broker: &Broker) -> Result<(), BrokerError> {
        let channel = broker.channel().await?;
        for entity in self.entities() {
            match entity {
                Entity::Queue { name, .. } => {
                    channel
                        .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                        .await?;
                }
                Entity::Exchange { name, .. } => {
                    channel
                        .exchange_delete(name.as_str().into(), Default::default())
                        .await?;
                }
            }
        }
        Ok(())
    }
}

async fn declare_one(
    channel: &Channel,
    entity: &Entity,
    passive: bool,
) -> Result<(), lapin::Error> {
    match entity {
        Entity::Exchange { name, kind } => {
            let options = ExchangeDeclareOptions {
                durable: true,
                passive,
                ..Default::default()
            };
            channel
                .exchange_declare(
                    name.as_str().into(),
                    kind.clone(),
                    options,
                    FieldTable::default(),
                )
                .await
        }
        Entity::Queue {
            name, arguments, ..
        } => {
            let options = QueueDeclareOptions {
                durable: true,
                passive,
                ..Default::default()
            };
            let arguments = if passive {
                FieldTable::default()
            } else {
                arguments.clone()
            };
            channel
                .queue_declare(name.as_str().into(), options, arguments)
                .await
                .map(|_| ())
        }
    }
}

/// A refused declare: [`BrokerError::Inequivalent`] for PRECONDITION_FAILED (the entity
/// exists with other arguments), naming the argument the broker names.
fn refused(entity: &Entity, error: lapin::Error) -> BrokerError {
    let text = error.to_string();
    if !text.contains("PRECONDITION_FAILED") {
        return error.into();
    }
    let reason = amqp_reason(&error);
    let argument = reason
        .split_once("inequivalent arg '")
        .and_then(|(_, rest)| rest.split_once('\''))
        .map_or("argument", |(argument, _)| argument)
        .to_string();
    let (kind, name) = match entity {
        Entity::Queue { name, .. } => ("queue", name.clone()),
        Entity::Exchange { name, .. } => ("exchange", name.clone()),
    };
    BrokerError::Inequivalent {
        kind,
        name,
        argument,
        reason,
    }
}

/// The broker's own words for a refused declare (e.g. "inequivalent arg 'x-message-ttl' …").
fn amqp_reason(error: &lapin::Error) -> String {
    let text = error.to_string();
    text.split_once("PRECONDITION_FAILED - ")
        .or_else(|| text.split_once("NOT_FOUND - "))
        .map_or(text.clone(), |(_, reason)| reason.to_string())
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args
}

/// At-least-once dead-lettering: the broker keeps a message until the target confirmed it.
/// It requires `reject-publish` overflow.
fn dead_letter_to(args: &mut FieldTable, exchange: &str, routing_key: Option<&str>) {
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(exchange)),
    );
    if let Some(key) = routing_key {
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(LongString::from(key)),
        );
    }
    args.insert(
        "x-dead-letter-strategy".into(),
        AMQPValue::LongString(LongString::from("at-least-once")),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from("reject-publish")),
    );
}

fn set_long(args: &mut FieldTable, key: &str, value: i64) {
    args.insert(ShortString::from(key), AMQPValue::LongLongInt(value));
}

/// Set once the topology is declared: the ingest reads it for `/readyz`, and every consumer
/// waits for it before it starts.
#[derive(Debug, Clone)]
pub struct Declared(std::sync::Arc<tokio::sync::watch::Sender<bool>>);

impl Default for Declared {
    fn default() -> Self {
        Self(std::sync::Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl Declared {
    /// Marks the topology declared.
    pub fn set(&self) {
        self.0.send_replace(true);
    }

    /// Whether it is.
    pub fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits until it is.
    pub async fn wait(&self) {
        let mut declared = self.0.subscribe();
        // The sender lives in `self`, so the wait ends only when the flag is set.
        let _ = declared.wait_for(|set| *set).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology {
            namespace: "prechat".into(),
            delivery_limit: 20,
            retry_delays_secs: vec![1, 5, 30],
            dead_letter_ttl_hours: 0,
        }
    }

    #[test]
    fn names_follow_the_namespace() {
        let t = topology();
        assert_eq!(t.submissions_queue(), "prechat.submissions");
        assert_eq!(t.retry_queue(5), "prechat.retry.5s");
        assert_eq!(t.dead_letter_queue(), "prechat.dead");
        assert_eq!(t.queues().len(), 6);
    }

    #[test]
    fn a_delay_goes_to_the_smallest_bucket_that_holds_it() {
        let t = topology();
        assert_eq!(t.bucket_for(0), 1);
        assert_eq!(t.bucket_for(2), 5);
        assert_eq!(t.bucket_for(30), 30);
        assert_eq!(t.bucket_for(999), 30);
    }

    #[test]
    fn a_retry_goes_to_the_bucket_that_holds_its_delay_and_expires_after_the_delay() {
        let t = topology();
        for (delay_ms, key, expiration) in [
            (0, "1s", "1"),
            (250, "1s", "250"),
            (1000, "1s", "1000"),
            (1001, "5s", "1001"),
            (4200, "5s", "4200"),
            (30_000, "30s", "30000"),
            (45_000, "30s", "30000"),
        ] {
            let (k, e) = t.retry_route(std::time::Duration::from_millis(delay_ms));
            assert_eq!((k.as_str(), e.as_str()), (key, expiration), "{delay_ms} ms");
        }
    }
}
