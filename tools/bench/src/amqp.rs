//! The driver's side of RabbitMQ: submission bodies, publishing them (one confirm at a time,
//! or pipelined in bulk), queue depth, and a tap on the outcome events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueBindOptions,
    QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation};
use prechat_enricher::queue::headers::json_properties;
use prechat_enricher::queue::{Broker, Topology};
use prechat_sim::wait;

/// Routing key of submissions on the ingest exchange.
pub const SUBMISSION_KEY: &str = "submission";

/// A submission body as the web tier sends it (raw `sessionId`, consent given).
pub fn submission_body(i: usize, submission_id: &str, conversation_id: Option<&str>) -> Vec<u8> {
    let mut body = serde_json::json!({
        "schemaVersion": 1,
        "submissionId": submission_id,
        "guest": {
            "email": format!("guest{i}@example.com"),
            "phone": format!("+1555{:07}", i % 10_000_000),
            "sessionId": format!("bench-browser-session-{i}")
        },
        "survey": {"subject": "Billing question", "priority": "high", "language": "en-US"},
        "consent": {"given": true, "type": "explicit"}
    });
    if let Some(id) = conversation_id {
        body["conversationId"] = id.into();
    }
    serde_json::to_vec(&body).expect("a JSON value serialises")
}

/// A channel in confirm mode.
pub async fn confirm_channel(broker: &Broker) -> anyhow::Result<Channel> {
    let channel = broker.channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

fn check(confirmation: Confirmation) -> anyhow::Result<()> {
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        other => bail!("the broker did not take the message: {other:?}"),
    }
}

/// Publishes one submission and waits for its confirm.
pub async fn publish_one(
    channel: &Channel,
    exchange: &str,
    body: &[u8],
    submission_id: &str,
) -> anyhow::Result<()> {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            SUBMISSION_KEY.into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            json_properties(submission_id, FieldTable::default()),
        )
        .await?;
    check(confirm.await?)
}

/// Publishes `count` bodies from `make(i) -> (body, submission id)` on `channels` channels,
/// each with up to `window` confirms outstanding; returns how long it took.
pub async fn publish_pipelined<F>(
    broker: &Broker,
    exchange: &str,
    count: usize,
    channels: usize,
    window: usize,
    make: F,
) -> anyhow::Result<Duration>
where
    F: Fn(usize) -> (Vec<u8>, String) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for lane in 0..channels {
        let channel = confirm_channel(broker).await?;
        let (make, exchange) = (make.clone(), exchange.to_string());
        tasks.push(tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            for i in (lane..count).step_by(channels) {
                let (body, id) = make(i);
                let confirm = channel
                    .basic_publish(
                        exchange.as_str().into(),
                        SUBMISSION_KEY.into(),
                        BasicPublishOptions::default(),
                        &body,
                        json_properties(&id, FieldTable::default()),
                    )
                    .await?;
                pending.push(confirm);
                while pending.len() >= window {
                    check(pending.next().await.expect("not empty")?)?;
                }
            }
            while let Some(confirmation) = pending.next().await {
                check(confirmation?)?;
            }
            let _ = channel.close(200, "published".into()).await;
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(started.elapsed())
}

/// Messages ready (not unacked) in a queue.
pub async fn ready_messages(broker: &Broker, queue: &str) -> anyhow::Result<u32> {
    let channel = broker.channel().await?;
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
        .with_context(|| format!("queue {queue}"))?;
    let _ = channel.close(200, "checked".into()).await;
    Ok(declared.message_count())
}

/// Empties a queue.
pub async fn purge(broker: &Broker, queue: &str) -> anyhow::Result<u32> {
    let channel = broker.channel().await?;
    let purged = channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await?;
    let _ = channel.close(200, "purged".into()).await;
    Ok(purged)
}

/// Deletes a namespace's queues and exchanges, reporting (not failing on) an error.
pub async fn delete_namespace(broker: &Broker, topology: &Topology) {
    if let Err(error) = topology.delete(broker).await {
        crate::say(&format!(
            "warning: deleting the bench namespace failed: {error}"
        ));
    }
}

/// When each submission's `submission.enriched` event arrived (an exclusive, auto-deleted
/// queue bound to the events exchange, consumed without acks).
pub struct EventTap {
    arrivals: Arc<Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl EventTap {
    /// Starts listening on `topology`'s events exchange for `routing_key`.
    pub async fn start(
        broker: &Broker,
        topology: &Topology,
        routing_key: &str,
    ) -> anyhow::Result<Self> {
        let channel = broker.channel().await?;
        let name = format!(
            "{}.bench-tap.{}",
            topology.events_exchange(),
            uuid::Uuid::new_v4().simple()
        );
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                name.as_str().into(),
                topology.events_exchange().as_str().into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut consumer = channel
            .basic_consume(
                name.as_str().into(),
                "prechat-bench-tap".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let arrivals = Arc::new(Mutex::new(HashMap::new()));
        let seen = arrivals.clone();
        let task = tokio::spawn(async move {
            let _channel = channel;
            while let Some(Ok(delivery)) = consumer.next().await {
                let at = Instant::now();
                let id = serde_json::from_slice::<serde_json::Value>(&delivery.data)
                    .ok()
                    .and_then(|v| v["submissionId"].as_str().map(str::to_owned));
                if let Some(id) = id {
                    seen.lock().expect("tap lock").entry(id).or_insert(at);
                }
            }
        });
        Ok(Self { arrivals, task })
    }

    /// Distinct submissions seen so far.
    pub fn count(&self) -> usize {
        self.arrivals.lock().expect("tap lock").len()
    }

    /// Forgets what was seen (a second round with the same ids).
    pub fn clear(&self) {
        self.arrivals.lock().expect("tap lock").clear();
    }

    /// Arrival times by submission id.
    pub fn arrivals(&self) -> HashMap<String, Instant> {
        self.arrivals.lock().expect("tap lock").clone()
    }

    /// Waits until `want` distinct submissions were seen; false on timeout.
    pub async fn wait_for(&self, want: usize, timeout: Duration) -> bool {
        let seen = async || (self.count() >= want).then_some(());
        wait::until_every(Duration::from_millis(20), timeout, seen)
            .await
            .is_some()
    }
}

impl Drop for EventTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}
