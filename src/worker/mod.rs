//! The workers: consume `prechat.submissions` with prefetch = `worker.concurrency` and
//! manual acks, run [`process::Processor`] on each message, and carry out the
//! [`decision::decide`] verdict. A retry or dead letter is a new confirmed publish, made
//! before the original is acked, so a crash at any point loses nothing.

pub mod contact;
pub mod decision;
pub mod follow_up;
pub mod handle;
pub mod locks;
pub mod outage;
pub mod process;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::queue::connection::Reconnect;
use crate::queue::{Broker, BrokerError};
pub use handle::WorkerContext;

/// A pool of `concurrency` message handlers on one consuming channel.
pub struct Worker {
    context: Arc<WorkerContext>,
    broker: Broker,
    concurrency: u16,
    shutdown_timeout: Duration,
    consuming: tokio::sync::watch::Sender<bool>,
}

impl Worker {
    /// A worker consuming through `broker` (its own connection).
    pub fn new(
        context: Arc<WorkerContext>,
        broker: Broker,
        concurrency: u16,
        shutdown_timeout: Duration,
    ) -> Self {
        Self {
            context,
            broker,
            concurrency,
            shutdown_timeout,
            consuming: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Whether the worker's consumer is active on the work queue now (a worker's `/readyz`).
    pub fn consuming(&self) -> tokio::sync::watch::Receiver<bool> {
        self.consuming.subscribe()
    }

    /// Consumes until `shutdown` is cancelled, reconnecting with backoff when the broker
    /// goes away, and pausing to probe while a dependency is out. On shutdown it stops taking
    /// messages, lets the ones in hand finish within the shutdown timeout, and leaves the
    /// rest to return to the queue.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut reconnect = Reconnect::default();
        while !shutdown.is_cancelled() {
            match self.consume(&shutdown, &mut reconnect).await {
                Ok(Stopped::Shutdown) => break,
                Ok(Stopped::Outage) => self.probe_until_healthy(&shutdown).await,
                Err(error) => {
                    if !reconnect.wait(&shutdown, "worker", &error).await {
                        break;
                    }
                }
            }
        }
        tracing::info!("worker stopped");
    }

    /// One probe call per interval until one passes (or shutdown).
    async fn probe_until_healthy(&self, shutdown: &CancellationToken) {
        let interval = self.context.policy.outage_delay;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if self.context.processor.probe().await {
                self.context.outage.resume();
                return;
            }
            tracing::info!(
                retry_in_ms = interval.as_millis() as u64,
                "probe failed; still paused"
            );
        }
    }

    async fn consume(
        &self,
        shutdown: &CancellationToken,
        reconnect: &mut Reconnect,
    ) -> Result<Stopped, BrokerError> {
        let queue = self.context.topology.submissions_queue();
        let channel = self.broker.channel().await?;
        channel
            .basic_qos(self.concurrency, BasicQosOptions::default())
            .await?;
        let tag = format!("prechat-worker-{}", uuid::Uuid::new_v4());
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        reconnect.reset();
        self.consuming.send_replace(true);
        tracing::info!(queue = %queue, concurrency = self.concurrency, "worker consuming");
        let mut outage = self.context.outage.subscribe();
        let mut in_hand = JoinSet::new();
        let lost = CancellationToken::new();
        let result = loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break Ok(Stopped::Shutdown),
                _ = outage.wait_for(|out| *out) => break Ok(Stopped::Outage),
                Some(_) = in_hand.join_next(), if !in_hand.is_empty() => {}
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let (context, lost) = (self.context.clone(), lost.clone());
                        in_hand.spawn(async move { context.handle(delivery, lost).await });
                    }
                    Some(Err(error)) => break Err(error.into()),
                    None => break Err(BrokerError::Unavailable("the broker cancelled the consumer".into())),
                },
            }
        };
        self.consuming.send_replace(false);
        if result.is_err() {
            // The channel is gone: its messages are redelivered, so none is held any longer.
            lost.cancel();
        }
        let _ = channel
            .basic_cancel(tag.as_str().into(), BasicCancelOptions::default())
            .await;
        let finishing = in_hand.len();
        let drained = tokio::time::timeout(self.shutdown_timeout, async {
            while in_hand.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                unfinished = in_hand.len(),
                "shutdown timeout: unfinished messages return to the queue"
            );
            in_hand.abort_all();
        } else if finishing > 0 {
            tracing::info!(finished = finishing, "messages in hand finished");
        }
        // Closing the channel returns prefetched, unhandled messages to the queue.
        let _ = channel.close(200, "worker stopping".into()).await;
        result
    }
}

/// Why consumption stopped without a broker error.
enum Stopped {
    Shutdown,
    Outage,
}
