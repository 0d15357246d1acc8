//! Connections to RabbitMQ, pooled with deadpool, with failover across the addresses of
//! a cluster and an optional extra CA for `amqps://`.
//!
//! A process keeps publishing and consuming on separate connections: when the broker
//! raises a memory or disk alarm it blocks publishing connections, and acks must still
//! flow on the consuming one.
//!
//! deadpool-lapin's manager connects to one address with no TLS settings, so the pool uses
//! deadpool's generic managed pool with the manager below, which tries each node in turn
//! and passes the CA to lapin.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use lapin::tcp::OwnedTLSConfig;
use lapin::{Channel, ConnectionProperties, ConnectionStatus};
use secrecy::{ExposeSecret, SecretString};

/// Tries each node of the cluster in order and keeps the first connection that opens.
pub struct FailoverManager {
    nodes: Vec<SecretString>,
    connection_name: String,
    ca_pem: Option<String>,
    /// The status of the connection opened last, readable without waiting on the pool.
    current: Arc<Mutex<Option<ConnectionStatus>>>,
}

impl managed::Manager for FailoverManager {
    type Type = lapin::Connection;
    type Error = lapin::Error;

    async fn create(&self) -> Result<lapin::Connection, lapin::Error> {
        let mut last_error = None;
        for url in &self.nodes {
            let label = redact_url(url.expose_secret());
            let properties = ConnectionProperties::default()
                .with_connection_name(self.connection_name.clone().into());
            let tls = OwnedTLSConfig {
                identity: None,
                cert_chain: self.ca_pem.clone(),
            };
            let runtime = async_rs::Runtime::tokio_current();
            match lapin::Connection::connect_with_config(
                url.expose_secret(),
                properties,
                tls,
                runtime,
            )
            .await
            {
                Ok(connection) => {
                    tracing::info!(amqp.node = %label, "connected to RabbitMQ");
                    *self.current.lock().expect("status lock") = Some(connection.status().clone());
                    return Ok(connection);
                }
                Err(error) => {
                    tracing::warn!(amqp.node = %label, %error, "RabbitMQ node unreachable");
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.expect("amqp.url holds at least one address"))
    }

    async fn recycle(
        &self,
        connection: &mut lapin::Connection,
        _: &Metrics,
    ) -> RecycleResult<lapin::Error> {
        if connection.status().connected() {
            Ok(())
        } else {
            Err(RecycleError::message("connection closed"))
        }
    }
}

/// One pooled connection to the cluster, from which channels are opened.
#[derive(Clone)]
pub struct Broker {
    pool: managed::Pool<FailoverManager>,
    current: Arc<Mutex<Option<ConnectionStatus>>>,
}

/// The broker could not be reached or refused the operation.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No node answered, or the pool timed out.
    #[error("RabbitMQ unavailable: {0}")]
    Unavailable(String),
    /// The broker answered with an error.
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
}

impl Broker {
    /// A broker handle named `connection_name` in the management UI; connects lazily.
    pub fn new(urls: &[SecretString], connection_name: &str) -> Self {
        Self::with_ca(urls, connection_name, None)
    }

    /// Like [`new`](Self::new), trusting `ca_pem` (PEM) too for `amqps://`.
    pub fn with_ca(urls: &[SecretString], connection_name: &str, ca_pem: Option<String>) -> Self {
        let current = Arc::new(Mutex::new(None));
        let manager = FailoverManager {
            nodes: urls.to_vec(),
            connection_name: connection_name.to_string(),
            ca_pem,
            current: Arc::clone(&current),
        };
        let pool = managed::Pool::builder(manager)
            .max_size(1)
            .runtime(deadpool::Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(10)))
            .wait_timeout(Some(Duration::from_secs(10)))
            .build()
            .expect("a pool with a runtime and timeouts builds");
        Self { pool, current }
    }

    /// Whether the broker has blocked the connection (a memory or disk alarm): publishes
    /// would be buffered and not confirmed until the alarm clears. RabbitMQ blocks a
    /// connection at its first publish after the alarm, so that one publish still waits.
    pub fn blocked(&self) -> bool {
        self.current
            .lock()
            .expect("status lock")
            .as_ref()
            .is_some_and(|status| status.connected() && status.blocked())
    }

    /// Opens a new channel on the (re)connected connection.
    pub async fn channel(&self) -> Result<Channel, BrokerError> {
        let connection = self
            .pool
            .get()
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        Ok(connection.create_channel().await?)
    }

    /// Closes the connection (pending deliveries return to their queues).
    /// Bounded: a stop never waits on a broker that does not answer.
    pub async fn close(&self) {
        let closing = async {
            if let Ok(connection) = self.pool.get().await {
                let _ = connection.close(200, "shutdown".into()).await;
            }
        };
        if tokio::time::timeout(CLOSE_TIMEOUT, closing).await.is_err() {
            tracing::warn!("the broker connection did not close in time; dropped");
        }
        self.pool.close();
    }
}

/// How long closing a connection may take at shutdown.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Delays between attempts to reach the broker again: exponential from 200 ms to 15 s,
/// jittered, endless; [`reset`](Self::reset) once a connection worked, so the next outage
/// starts from short delays again.
pub struct Reconnect {
    delays: backon::ExponentialBackoff,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            delays: Self::schedule(),
        }
    }
}

impl Reconnect {
    fn schedule() -> backon::ExponentialBackoff {
        use backon::BackoffBuilder;
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(15))
            .with_jitter()
            .without_max_times()
            .build()
    }

    /// Starts the delays over (after a successful connection).
    pub fn reset(&mut self) {
        self.delays = Self::schedule();
    }

    /// Logs why `what` lost the broker and sleeps the next delay; false when shutdown
    /// came first.
    pub async fn wait(
        &mut self,
        shutdown: &tokio_util::sync::CancellationToken,
        what: &str,
        error: &(dyn std::fmt::Display + Sync),
    ) -> bool {
        let delay = self.delays.next().unwrap_or(Duration::from_secs(15));
        tracing::warn!(%error, retry_in_ms = delay.as_millis() as u64, "{what} lost RabbitMQ; trying again");
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }
}

/// `amqp://user:pass@host:5672/vhost` → `amqp://host:5672/vhost`, for logs.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{host}")
        }
        None => "<amqp url>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn credentials_are_removed_from_logged_urls() {
        assert_eq!(
            redact_url("amqp://guest:secret@rabbit:5672/%2f"),
            "amqp://rabbit:5672/%2f"
        );
        assert_eq!(redact_url("amqps://rabbit"), "amqps://rabbit");
    }
}
