//! Queue depth on `/metrics`: a background task that asks the broker, every
//! `metrics.queue_poll_interval_ms`, how many messages each queue of the topology holds, and
//! sets `prechat_queue_messages{queue,state="ready"|"unacked"}`.
//!
//! Ready *and* unacked counts come from the RabbitMQ management HTTP API
//! (`amqp.management_url`, with the credentials of the first AMQP URL). AMQP alone cannot
//! count unacked messages: a passive `queue.declare` answers the ready count only. So when the
//! management API is disabled or unreachable, ready counts come from AMQP and the `unacked`
//! series are withdrawn rather than left stale.
//!
//! The figures are the broker's, identical in every replica that polls; dashboards aggregate
//! them with `max`, not `sum`. The management API refreshes its figures every
//! `collect_statistics_interval` (5 s by default), so they may lag that much.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::uri::AMQPUri;
use reqwest::{StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::connection::{Broker, BrokerError};
use crate::metrics::Metrics;

/// Upper bound of one poll through either source, so a hung broker cannot stall the task.
const POLL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the broker says about one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Messages waiting, and (from the management API only) delivered but not acked.
    Counted {
        /// Messages ready for delivery.
        ready: u64,
        /// Messages delivered and not yet acked; `None` when the source cannot tell.
        unacked: Option<u64>,
    },
    /// The queue does not exist.
    NoQueue,
    /// The management API has no figures for it yet (a queue declared moments ago).
    NotYet,
}

/// A poll that failed.
#[derive(Debug, thiserror::Error)]
pub enum DepthError {
    /// The management API could not be reached or answered an error.
    #[error("RabbitMQ management API: {0}")]
    Management(String),
    /// The AMQP fallback failed.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// A source took longer than the poll timeout.
    #[error("no answer within {} s", POLL_TIMEOUT.as_secs())]
    Timeout,
}

/// The RabbitMQ management HTTP API: `GET /api/queues/{vhost}/{name}`.
pub struct ManagementApi {
    http: reqwest::Client,
    base: Url,
    vhost: String,
    username: String,
    password: SecretString,
}

/// Fields of a queue in the management API; absent until its first statistics are emitted.
#[derive(Deserialize)]
struct QueueStats {
    messages_ready: Option<u64>,
    messages_unacknowledged: Option<u64>,
}

impl ManagementApi {
    /// The API at `base_url`, for the vhost and credentials of `amqp_url`, trusting the extra
    /// CA certificates of `ca_pem` (PEM) too.
    pub fn new(
        base_url: &str,
        amqp_url: &SecretString,
        ca_pem: Option<&str>,
    ) -> Result<Self, DepthError> {
        let base = Url::parse(base_url)
            .map_err(|e| DepthError::Management(format!("amqp.management_url: {e}")))?;
        let uri: AMQPUri = amqp_url
            .expose_secret()
            .parse()
            // The parser's message may quote the URL, credentials included.
            .map_err(|_| DepthError::Management("amqp.url is not an AMQP URL".into()))?;
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("prechat-enricher/", env!("CARGO_PKG_VERSION")))
            .timeout(POLL_TIMEOUT);
        let certificates = ca_pem
            .map(|pem| reqwest::Certificate::from_pem_bundle(pem.as_bytes()))
            .transpose()
            .map_err(|e| DepthError::Management(format!("tls.ca_file: {e}")))?;
        for certificate in certificates.into_iter().flatten() {
            http = http.add_root_certificate(certificate);
        }
        let http = http
            .build()
            .map_err(|e| DepthError::Management(e.to_string()))?;
        Ok(Self {
            http,
            base,
            vhost: if uri.vhost.is_empty() {
                "/".into()
            } else {
                uri.vhost
            },
            username: uri.authority.userinfo.username,
            password: uri.authority.userinfo.password.into(),
        })
    }

    /// `{base}/api/queues/{vhost}/{queue}?columns=…`, every segment percent-encoded (the
    /// default vhost `/` becomes `%2F`).
    pub fn queue_url(&self, queue: &str) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .extend(["api", "queues", &self.vhost, queue]);
        url.set_query(Some("columns=messages_ready,messages_unacknowledged"));
        url
    }

    /// The routing keys that bind `queue` to `exchange` (`GET /api/bindings/{vhost}/e/{exchange}/q/{queue}`).
    pub async fn binding_keys(
        &self,
        exchange: &str,
        queue: &str,
    ) -> Result<Vec<String>, DepthError> {
        #[derive(Deserialize)]
        struct Binding {
            routing_key: String,
        }
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has a path")
            .pop_if_empty()
            .extend(["api", "bindings", &self.vhost, "e", exchange, "q", queue]);
        let bindings: Option<Vec<Binding>> = self.get_json(url).await?;
        Ok(bindings
            .unwrap_or_default()
            .into_iter()
            .map(|b| b.routing_key)
            .collect())
    }

    /// `GET` a management API resource as JSON; `None` when it does not exist (404).
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Option<T>, DepthError> {
        let failed = |e: reqwest::Error| DepthError::Management(e.without_url().to_string());
        let response = self
            .http
            .get(url)
            .basic_auth(&self.username, Some(self.password.expose_secret()))
            .send()
            .await
            .map_err(failed)?;
        match response.status() {
            StatusCode::OK => response.json().await.map(Some).map_err(failed),
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(DepthError::Management(format!("answered {status}"))),
        }
    }

    /// Ready and unacked counts of every queue.
    pub async fn read(&self, queues: &[String]) -> Result<Vec<Reading>, DepthError> {
        let mut readings = Vec::with_capacity(queues.len());
        for queue in queues {
            readings.push(self.read_one(queue).await?);
        }
        Ok(readings)
    }

    async fn read_one(&self, queue: &str) -> Result<Reading, DepthError> {
        let Some(stats) = self.get_json::<QueueStats>(self.queue_url(queue)).await? else {
            return Ok(Reading::NoQueue);
        };
        Ok(
            match (stats.messages_ready, stats.messages_unacknowledged) {
                (Some(ready), unacked) => Reading::Counted { ready, unacked },
                (None, _) => Reading::NotYet,
            },
        )
    }
}

/// Ready counts through AMQP: a passive `queue.declare` per queue, on one channel.
async fn read_over_amqp(broker: &Broker, queues: &[String]) -> Result<Vec<Reading>, DepthError> {
    let channel = broker.channel().await?;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let mut readings = Vec::with_capacity(queues.len());
    for queue in queues {
        // A missing queue closes the channel (404): the poll fails and says which one.
        let declared = channel
            .queue_declare(queue.as_str().into(), passive, FieldTable::default())
            .await
            .map_err(BrokerError::from)?;
        readings.push(Reading::Counted {
            ready: declared.message_count().into(),
            unacked: None,
        });
    }
    let _ = channel.close(200, "depth polled".into()).await;
    Ok(readings)
}

/// Where the last poll's figures came from; a change is logged once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Ready and unacked, from the management API.
    Management,
    /// Ready only, from AMQP (the management API is disabled or failed).
    Amqp,
    /// Neither answered; the previous figures stay.
    Failed,
}

/// The background task behind `prechat_queue_messages`.
pub struct DepthPoller {
    /// Every queue of the topology.
    pub queues: Vec<String>,
    /// `None` when `amqp.management_url` is empty.
    pub management: Option<ManagementApi>,
    /// The fallback's connection (the consuming one: a memory alarm blocks the publisher's).
    pub broker: Broker,
    /// Where the figures go.
    pub metrics: Arc<Metrics>,
    /// Time between polls.
    pub interval: Duration,
}

impl DepthPoller {
    /// Polls until `shutdown`, logging once each time the source of the figures changes.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = None;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let (source, error) = tokio::select! {
                _ = shutdown.cancelled() => return,
                polled = self.poll_once() => polled,
            };
            if last != Some(source) {
                self.log_change(last, source, error.as_ref());
                last = Some(source);
            } else if let Some(error) = error {
                tracing::debug!(%error, "queue depth poll: same failure as before");
            }
        }
    }

    /// One poll: the management API first, AMQP when it fails. Returns the source used and
    /// the error that sent the poll to the fallback, or failed it.
    pub async fn poll_once(&self) -> (Source, Option<DepthError>) {
        let mut management_error = None;
        if let Some(api) = &self.management {
            match within_timeout(api.read(&self.queues)).await {
                Ok(readings) => {
                    self.record(&readings);
                    return (Source::Management, None);
                }
                Err(error) => management_error = Some(error),
            }
        }
        match within_timeout(read_over_amqp(&self.broker, &self.queues)).await {
            Ok(readings) => {
                self.record(&readings);
                (Source::Amqp, management_error)
            }
            Err(error) => (Source::Failed, Some(error)),
        }
    }

    fn record(&self, readings: &[Reading]) {
        for (queue, reading) in self.queues.iter().zip(readings) {
            match *reading {
                Reading::Counted { ready, unacked } => {
                    self.metrics.set_queue_depth(queue, ready, unacked)
                }
                Reading::NoQueue => self.metrics.forget_queue(queue),
                Reading::NotYet => {}
            }
        }
    }

    fn log_change(&self, from: Option<Source>, to: Source, error: Option<&DepthError>) {
        let error = error.map(ToString::to_string).unwrap_or_default();
        match (to, self.management.is_some()) {
            (Source::Management, _) => tracing::info!(
                recovered = from.is_some(),
                "queue depth polled through the RabbitMQ management API (ready and unacked)"
            ),
            (Source::Amqp, false) => tracing::info!(
                "queue depth polled through AMQP (amqp.management_url is empty): ready counts only, unacked not exported"
            ),
            (Source::Amqp, true) => tracing::warn!(
                %error,
                "RabbitMQ management API failed; queue depth polled through AMQP: ready counts only, unacked not exported"
            ),
            (Source::Failed, _) => {
                tracing::warn!(%error, "queue depth not polled; the last figures stay")
            }
        }
    }
}

async fn within_timeout<T>(
    poll: impl std::future::Future<Output = Result<T, DepthError>>,
) -> Result<T, DepthError> {
    tokio::time::timeout(POLL_TIMEOUT, poll)
        .await
        .unwrap_or(Err(DepthError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(base: &str, amqp: &str) -> ManagementApi {
        crate::startup::install_crypto_provider();
        ManagementApi::new(base, &SecretString::from(amqp), None).unwrap()
    }

    #[test]
    fn the_default_vhost_is_percent_encoded_in_the_queue_url() {
        let api = api(
            "http://127.0.0.1:15672",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
        );
        assert_eq!(
            api.queue_url("prechat.submissions").as_str(),
            "http://127.0.0.1:15672/api/queues/%2F/prechat.submissions?columns=messages_ready,messages_unacknowledged"
        );
    }

    #[test]
    fn a_path_prefix_and_a_named_vhost_are_kept() {
        let api = api(
            "https://rabbit.example.com/rabbitmq/",
            "amqps://u%40x:p%3Aw@node-1/prod",
        );
        assert_eq!(
            api.queue_url("prechat.dead").as_str(),
            "https://rabbit.example.com/rabbitmq/api/queues/prod/prechat.dead?columns=messages_ready,messages_unacknowledged"
        );
        assert_eq!(api.username, "u@x");
        assert_eq!(api.password.expose_secret(), "p:w");
    }

    #[test]
    fn a_url_without_vhost_or_credentials_means_the_defaults() {
        let api = api("http://rabbit:15672", "amqp://rabbit");
        assert_eq!(api.vhost, "/");
        assert_eq!(api.username, "guest");
    }
}
