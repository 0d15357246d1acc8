//! Waiting for a submission's enrichment: each ingest process binds a queue of its own
//! (server-named, exclusive, auto-deleted) to the `submission.enriched` events and hands each
//! event to the handoff answers waiting for that submission. Recent enrichments are kept for a
//! few minutes, so a handoff that comes after the work was done is answered at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::queue::connection::Reconnect;
use crate::queue::events::{Event, Outcome};
use crate::queue::{Broker, BrokerError, Topology};

/// The attributes an enrichment wrote (the shareable ones).
pub type Written = Arc<BTreeMap<String, String>>;

/// How long an enrichment is remembered for a late handoff.
const RECENT_TTL: Duration = Duration::from_secs(600);
/// How many are remembered.
const RECENT_MAX: u64 = 50_000;

/// Shared by the handoff route (waiting) and the consumer (delivering).
#[derive(Clone)]
pub struct EnrichmentWatch {
    waiters: Arc<Mutex<HashMap<String, Vec<oneshot::Sender<Written>>>>>,
    recent: moka::future::Cache<String, Written>,
    consuming: Arc<std::sync::atomic::AtomicBool>,
}

impl Default for EnrichmentWatch {
    fn default() -> Self {
        Self {
            waiters: Arc::default(),
            recent: moka::future::Cache::builder()
                .max_capacity(RECENT_MAX)
                .time_to_live(RECENT_TTL)
                .build(),
            consuming: Arc::default(),
        }
    }
}

impl EnrichmentWatch {
    /// The submission's enrichment, waiting at most `wait` for it.
    pub async fn wait(&self, submission_id: &str, wait: Duration) -> Option<Written> {
        if let Some(found) = self.recent.get(submission_id).await {
            return Some(found);
        }
        let (tx, rx) = oneshot::channel();
        self.lock()
            .entry(submission_id.to_string())
            .or_default()
            .push(tx);
        // It may have landed between the look and the registration.
        if let Some(found) = self.recent.get(submission_id).await {
            self.forget_closed(submission_id);
            return Some(found);
        }
        let answer = tokio::time::timeout(wait, rx)
            .await
            .ok()
            .and_then(Result::ok);
        if answer.is_none() {
            self.forget_closed(submission_id);
        }
        answer
    }

    /// Whether the consumer is bound (a handoff answered before can only be `pending`).
    pub fn is_consuming(&self) -> bool {
        self.consuming.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Hands an enrichment to its waiters and remembers it.
    pub async fn deliver(&self, submission_id: &str, written: Written) {
        self.recent
            .insert(submission_id.to_string(), written.clone())
            .await;
        let waiting = self.lock().remove(submission_id).unwrap_or_default();
        for waiter in waiting {
            let _ = waiter.send(written.clone()); // a waiter that gave up is gone: fine
        }
    }

    /// Consumes the enriched events until `shutdown`, reconnecting when the broker goes away.
    pub async fn run(self, broker: Broker, topology: Topology, shutdown: CancellationToken) {
        let mut reconnect = Reconnect::default();
        while !shutdown.is_cancelled() {
            let result = self
                .consume(&broker, &topology, &shutdown, &mut reconnect)
                .await;
            self.consuming
                .store(false, std::sync::atomic::Ordering::Release);
            match result {
                Ok(()) => break,
                Err(error) => {
                    if !reconnect.wait(&shutdown, "handoff watch", &error).await {
                        break;
                    }
                }
            }
        }
    }

    async fn consume(
        &self,
        broker: &Broker,
        topology: &Topology,
        shutdown: &CancellationToken,
        reconnect: &mut Reconnect,
    ) -> Result<(), BrokerError> {
        let channel = broker.channel().await?;
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.name().as_str().into(),
                topology.events_exchange().as_str().into(),
                Outcome::Enriched.routing_key().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut consumer = channel
            .basic_consume(
                queue.name().as_str().into(),
                "prechat-handoff-watch".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        reconnect.reset();
        self.consuming
            .store(true, std::sync::atomic::Ordering::Release);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        if let Ok(event) = serde_json::from_slice::<Event>(&delivery.data) {
                            if let Some(attributes) = event.attributes {
                                self.deliver(&event.submission_id, Arc::new(attributes)).await;
                            }
                        }
                    }
                    Some(Err(error)) => return Err(error.into()),
                    None => return Err(BrokerError::Unavailable("the broker cancelled the handoff watch".into())),
                },
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<Written>>>> {
        self.waiters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn forget_closed(&self, submission_id: &str) {
        let mut waiters = self.lock();
        if let Some(list) = waiters.get_mut(submission_id) {
            list.retain(|w| !w.is_closed());
            if list.is_empty() {
                waiters.remove(submission_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(tier: &str) -> Written {
        Arc::new(BTreeMap::from([(
            "loyaltyTier".to_string(),
            tier.to_string(),
        )]))
    }

    #[tokio::test]
    async fn a_waiter_gets_the_enrichment_that_lands_during_its_wait() {
        let watch = EnrichmentWatch::default();
        let waiting = tokio::spawn({
            let watch = watch.clone();
            async move { watch.wait("s-1", Duration::from_secs(5)).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        watch.deliver("s-1", written("gold")).await;
        assert_eq!(waiting.await.unwrap(), Some(written("gold")));
    }

    #[tokio::test]
    async fn a_late_handoff_is_answered_from_the_recent_enrichments_and_a_timeout_leaves_nothing() {
        let watch = EnrichmentWatch::default();
        watch.deliver("s-1", written("gold")).await;
        assert_eq!(
            watch.wait("s-1", Duration::ZERO).await,
            Some(written("gold"))
        );
        assert_eq!(watch.wait("s-2", Duration::from_millis(10)).await, None);
        assert!(watch.lock().is_empty());
    }
}
