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
//!
//! Each node gets its own connect timeout (TCP, TLS and the AMQP handshake), so a node that
//! drops SYNs or accepts and never answers costs one timeout, not the whole attempt; and
//! each connection starts at another node (a random first node per pool, then round-robin),
//! so that a stuck node is not always the first one every process tries.
//!
//! URLs are parsed here rather than by `amq-protocol-uri`, which takes the host from
//! `Url::domain()`: that is empty for an IP literal (`amqp://10.0.0.5`, `amqp://[fd00::5]`),
//! and it would connect to `localhost` instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use lapin::tcp::OwnedTLSConfig;
use lapin::uri::AMQPUri;
use lapin::{Channel, ConnectionProperties, ConnectionStatus};
use secrecy::{ExposeSecret, SecretString};

/// A node's connect timeout unless one is configured (`amqp.connect_timeout_ms`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One node of the cluster: its parsed URL (or why it does not parse), and a label for logs.
struct Node {
    uri: Result<AMQPUri, String>,
    label: String,
}

/// Tries each node of the cluster in turn, from a varying first node, and keeps the first
/// connection that opens.
pub struct FailoverManager {
    nodes: Vec<Node>,
    connection_name: String,
    ca_pem: Option<String>,
    connect_timeout: Duration,
    next: AtomicUsize,
    /// The status of the connection opened last, readable without waiting on the pool.
    current: Arc<Mutex<Option<ConnectionStatus>>>,
}

impl FailoverManager {
    /// The order in which the next connection tries the nodes: every node once, from the
    /// next first node.
    fn order(&self) -> impl Iterator<Item = &Node> {
        let n = self.nodes.len();
        let first = self.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(move |i| &self.nodes[(first + i) % n])
    }

    async fn connect(&self, uri: &AMQPUri) -> Result<lapin::Connection, lapin::Error> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.connection_name.clone().into());
        let tls = OwnedTLSConfig {
            identity: None,
            cert_chain: self.ca_pem.clone(),
        };
        let runtime = async_rs::Runtime::tokio_current();
        let connecting =
            lapin::Connection::connect_uri_with_config(uri.clone(), properties, tls, runtime);
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(result) => result,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no AMQP handshake within {} ms (amqp.connect_timeout_ms)",
                    self.connect_timeout.as_millis()
                ),
            )
            .into()),
        }
    }
}

impl managed::Manager for FailoverManager {
    type Type = lapin::Connection;
    type Error = lapin::Error;

    async fn create(&self) -> Result<lapin::Connection, lapin::Error> {
        let mut last_error = None;
        for node in self.order() {
            let label = &node.label;
            let result = match &node.uri {
                Ok(uri) => self.connect(uri).await,
                Err(reason) => Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("not an AMQP URL: {reason}"),
                )
                .into()),
            };
            match result {
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
    /// The broker holds a queue or exchange declared with other arguments than the
    /// configuration's (PRECONDITION_FAILED): retrying cannot help, it needs a migration.
    #[error(
        "{kind} {name} exists on the broker with another {argument} than the configuration's \
         ({reason}); either set the configuration back to the broker's value, or drain the \
         {kind} and delete it so that it is declared again with the new one (README: \
         \"Changing queue arguments\")"
    )]
    Inequivalent {
        /// `queue` or `exchange`.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The argument that differs, e.g. `x-delivery-limit` (or `type` for an exchange).
        argument: String,
        /// The broker's words.
        reason: String,
    },
}

impl Broker {
    /// A broker handle named `connection_name` in the management UI; connects lazily.
    pub fn new(urls: &[SecretString], connection_name: &str) -> Self {
        Self::with_ca(urls, connection_name, None)
    }

    /// Like [`new`](Self::new), trusting `ca_pem` (PEM) too for `amqps://`.
    pub fn with_ca(urls: &[SecretString], connection_name: &str, ca_pem: Option<String>) -> Self {
        Self::connecting(urls, connection_name, ca_pem, DEFAULT_CONNECT_TIMEOUT)
    }

    /// Like [`with_ca`](Self::with_ca), giving each node `connect_timeout`
    /// (`amqp.connect_timeout_ms`) to open a connection.
    pub fn connecting(
        urls: &[SecretString],
        connection_name: &str,
        ca_pem: Option<String>,
        connect_timeout: Duration,
    ) -> Self {
        let current = Arc::new(Mutex::new(None));
        let nodes: Vec<Node> = urls
            .iter()
            .map(|url| Node {
                uri: parse_amqp_url(url.expose_secret()),
                label: redact_url(url.expose_secret()),
            })
            .collect();
        // Every node once, each within its timeout: the pool waits for the whole round.
        let round = connect_timeout * (nodes.len().max(1) as u32) + Duration::from_secs(2);
        let pool_timeout = round.max(Duration::from_secs(10));
        let manager = FailoverManager {
            next: AtomicUsize::new(fastrand::usize(..nodes.len().max(1))),
            nodes,
            connection_name: connection_name.to_string(),
            ca_pem,
            connect_timeout,
            current: Arc::clone(&current),
        };
        let pool = managed::Pool::builder(manager)
            .max_size(1)
            .runtime(deadpool::Runtime::Tokio1)
            .create_timeout(Some(pool_timeout))
            .wait_timeout(Some(pool_timeout))
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

/// An `amqp://` or `amqps://` URL as lapin takes it: credentials, vhost and the query's
/// `heartbeat`, `frame_max`, `channel_max`, `connection_timeout` and `auth_mechanism` as
/// `amq-protocol-uri` reads them, and the host as written — a name, an IPv4 address or an
/// IPv6 address (without its brackets) — where `amq-protocol-uri` would put `localhost` for
/// an IP address.
pub fn parse_amqp_url(text: &str) -> Result<AMQPUri, String> {
    // Neither error may quote the URL: it holds the password.
    let url = reqwest::Url::parse(text).map_err(|e| e.to_string())?;
    let mut uri: AMQPUri = text.parse().map_err(|_: String| {
        format!(
            "scheme {:?} or a query parameter not understood",
            url.scheme()
        )
    })?;
    let host = url.host_str().unwrap_or_default();
    let literal = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(address) = literal.parse::<std::net::IpAddr>() {
        uri.authority.host = address.to_string();
    }
    Ok(uri)
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
    use super::{parse_amqp_url, redact_url};

    #[test]
    fn an_amqp_url_connects_to_the_host_it_names_an_ip_address_included() {
        // url, host, port, vhost, user, heartbeat, frame_max, channel_max
        for (url, host, port, vhost, user, heartbeat, frame_max, channel_max) in [
            ("amqp://u:p@rabbit:5673/%2f", "rabbit", 5673, "/", "u", None, None, None),
            ("amqp://u:p@10.0.0.5/v", "10.0.0.5", 5672, "v", "u", None, None, None),
            ("amqp://u:p@[fd00::5]:5672/", "fd00::5", 5672, "", "u", None, None, None),
            ("amqps://u:p@[fd00::5]/%2f", "fd00::5", 5671, "/", "u", None, None, None),
            ("amqps://[::1]:5671", "::1", 5671, "/", "guest", None, None, None),
            (
                "amqp://u%40x:p@[2001:db8::1]:1234/v%2fh?heartbeat=30&frame_max=131072&channel_max=64",
                "2001:db8::1",
                1234,
                "v/h",
                "u@x",
                Some(30),
                Some(131072),
                Some(64),
            ),
            ("amqp://rabbit", "rabbit", 5672, "/", "guest", None, None, None),
        ] {
            let uri = parse_amqp_url(url).unwrap();
            assert_eq!(uri.authority.host, host, "{url}");
            assert_eq!(uri.authority.port, port, "{url}");
            assert_eq!(uri.vhost, vhost, "{url}");
            assert_eq!(uri.authority.userinfo.username, user, "{url}");
            assert_eq!(uri.query.heartbeat, heartbeat, "{url}");
            assert_eq!(uri.query.frame_max, frame_max, "{url}");
            assert_eq!(uri.query.channel_max, channel_max, "{url}");
        }
        assert!(parse_amqp_url("amqp://u:p@[fd00::5/").is_err());
        assert!(parse_amqp_url("http://rabbit").is_err());
    }

    #[test]
    fn credentials_are_removed_from_logged_urls() {
        assert_eq!(
            redact_url("amqp://guest:secret@rabbit:5672/%2f"),
            "amqp://rabbit:5672/%2f"
        );
        assert_eq!(redact_url("amqps://rabbit"), "amqps://rabbit");
    }
}
