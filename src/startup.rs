//! Building the application from settings, and running it until shutdown.
//!
//! `Application::build` wires every component from config (binding the ingest's port, 0
//! allowed, so tests run many apps side by side) and `run_until_stopped` runs the roles
//! asked for until the shutdown token is cancelled.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::crm::client::CrmClientConfig;
use crate::crm::CrmClient;
use crate::genesys::auth::TokenProvider;
use crate::genesys::{Budget, GenesysClient, GenesysConfig};
use crate::ingest::auth::TokenSet;
use crate::ingest::{router, IngestState};
use crate::merge::{QueueTarget, RouteTable};
use crate::metrics::Metrics;
use crate::privacy::SessionHasher;
use crate::queue::connection::Reconnect;
use crate::queue::depth::{DepthPoller, ManagementApi};
use crate::queue::events::EventPublisher;
use crate::queue::{Broker, Publisher, Topology};
use crate::resolver::{Resolver, ResolverSettings};
use crate::worker::decision::RetryPolicy;
use crate::worker::locks::StripedLocks;
use crate::worker::outage::OutageGuard;
use crate::worker::process::Processor;
use crate::worker::{Worker, WorkerContext};

/// Which parts of the service a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The HTTP ingest.
    pub ingest: bool,
    /// The consuming workers.
    pub worker: bool,
}

impl Roles {
    /// Ingest and workers (`serve`).
    pub const ALL: Roles = Roles {
        ingest: true,
        worker: true,
    };
    /// `ingest` only.
    pub const INGEST: Roles = Roles {
        ingest: true,
        worker: false,
    };
    /// `worker` only.
    pub const WORKER: Roles = Roles {
        ingest: false,
        worker: true,
    };
}

/// The components every role is built from.
pub struct Components {
    /// The settings.
    pub settings: Settings,
    /// Metrics of this process.
    pub metrics: Arc<Metrics>,
    /// Topology names.
    pub topology: Topology,
    /// The publishing connection.
    pub publish_broker: Broker,
    /// The consuming connection.
    pub consume_broker: Broker,
    /// Confirmed publisher.
    pub publisher: Publisher,
    /// Genesys Cloud (with the process's one budget).
    pub genesys: Arc<GenesysClient>,
    /// The CRM.
    pub crm: Arc<CrmClient>,
    /// Session id hashing.
    pub hasher: SessionHasher,
}

impl Components {
    /// Builds every client from settings; connects nothing yet.
    pub fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        install_crypto_provider();
        let metrics = Arc::new(Metrics::new());
        let ca_pem = settings.tls.ca_pem()?;
        let mut http = reqwest::Client::builder()
            .user_agent(concat!("prechat-enricher/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5));
        if let Some(pem) = &ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .context("tls.ca_file: not PEM certificates")?
            {
                http = http.add_root_certificate(certificate);
            }
        }
        let http = http.build().context("building the HTTP client")?;
        let budget = Arc::new(Budget::new(
            settings.genesys.requests_per_minute,
            metrics.clone(),
        ));
        let tokens = TokenProvider::new(
            http.clone(),
            &settings.genesys_login_url(),
            settings.genesys.client_id.clone(),
            settings.genesys.client_secret.clone(),
            Duration::from_secs(settings.genesys.token_refresh_margin_secs),
            metrics.clone(),
        );
        let genesys_config = GenesysConfig {
            api_url: settings.genesys_api_url(),
            timeout: Duration::from_millis(settings.genesys.timeout_ms),
        };
        let genesys = Arc::new(GenesysClient::new(
            http.clone(),
            genesys_config,
            tokens,
            budget,
            metrics.clone(),
        ));
        let crm_config = CrmClientConfig {
            base_url: &settings.crm.base_url,
            api_key: settings.crm.api_key.clone(),
            timeout: Duration::from_millis(settings.crm.timeout_ms),
            cache_ttl: Duration::from_secs(settings.crm.cache_ttl_secs),
        };
        let crm = Arc::new(CrmClient::new(http, crm_config, metrics.clone()));
        let publish_broker = Broker::with_ca(
            &settings.amqp.url,
            "prechat-enricher publish",
            ca_pem.clone(),
        );
        let consume_broker =
            Broker::with_ca(&settings.amqp.url, "prechat-enricher consume", ca_pem);
        let publisher = Publisher::new(publish_broker.clone(), settings.publish_timeout());
        let key = Some(settings.privacy.session_hash_key.clone())
            .filter(|k| !secrecy::ExposeSecret::expose_secret(k).is_empty());
        Ok(Self {
            topology: Topology::new(&settings.amqp),
            hasher: SessionHasher::new(key),
            settings,
            metrics,
            publish_broker,
            consume_broker,
            publisher,
            genesys,
            crm,
        })
    }

    /// Tier → queue from `routing.queues`: ids are taken as they are, names are resolved to
    /// ids with `GET /api/v2/routing/queues?name=` (under the budget); a name Genesys does not
    /// know fails the start, naming the key.
    pub async fn resolve_routes(&self) -> anyhow::Result<RouteTable> {
        let mut targets = std::collections::BTreeMap::new();
        for (tier, queue) in &self.settings.routing.queues {
            let target = if uuid::Uuid::parse_str(queue).is_ok() {
                QueueTarget {
                    name: String::new(),
                    id: queue.to_lowercase(),
                }
            } else {
                let found = self
                    .genesys
                    .find_queue_by_name(queue)
                    .await
                    .with_context(|| format!("resolving routing.queues.{tier} = {queue:?}"))?
                    .with_context(|| {
                        format!("routing.queues.{tier}: Genesys has no queue named {queue:?}")
                    })?;
                tracing::info!(tier = %tier, queue.name = %found.name, queue.id = %found.id, "routing queue resolved");
                QueueTarget {
                    name: found.name,
                    id: found.id,
                }
            };
            targets.insert(tier.to_lowercase(), target);
        }
        Ok(RouteTable::new(targets))
    }
}

/// Selects rustls' `ring` provider for every TLS client of the process (reqwest, lapin).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A built, not yet running, service.
pub struct Application {
    components: Components,
    routes: RouteTable,
    roles: Roles,
    listener: Option<tokio::net::TcpListener>,
    ingest_addr: Option<SocketAddr>,
}

impl Application {
    /// Builds the components and binds the ingest's port when the ingest role runs.
    pub async fn build(settings: Settings, roles: Roles) -> anyhow::Result<Self> {
        let components = Components::build(settings)?;
        let (listener, ingest_addr) = if roles.ingest {
            let bind = components.settings.ingest.bind;
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("binding ingest.bind = {bind}"))?;
            let addr = listener.local_addr()?;
            (Some(listener), Some(addr))
        } else {
            (None, None)
        };
        let routes = if roles.worker {
            components.resolve_routes().await?
        } else {
            RouteTable::empty()
        };
        Ok(Self {
            components,
            routes,
            roles,
            listener,
            ingest_addr,
        })
    }

    /// The ingest's address (with the port actually bound).
    pub fn ingest_addr(&self) -> Option<SocketAddr> {
        self.ingest_addr
    }

    /// This process's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.components.metrics.clone()
    }

    /// Runs until `shutdown` is cancelled, then stops in order: no new requests or messages,
    /// messages in hand finished (within `worker.shutdown_timeout_secs`), connections closed.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let c = self.components;
        let routes = self.routes;
        // Whatever can fail fails here, before any task runs.
        let poller = (c.settings.metrics.queue_poll_interval_ms > 0)
            .then(|| depth_poller(&c))
            .transpose()?;
        let metrics_listener = match c.settings.metrics.bind.as_str() {
            "" => None,
            bind => Some(
                tokio::net::TcpListener::bind(bind)
                    .await
                    .with_context(|| format!("binding metrics.bind = {bind}"))?,
            ),
        };
        let tasks = TaskTracker::new();
        let topology_ready = Arc::new(AtomicBool::new(false));
        let declared = CancellationToken::new();
        {
            let (topology, broker, ready, declared, shutdown) = (
                c.topology.clone(),
                c.publish_broker.clone(),
                topology_ready.clone(),
                declared.clone(),
                shutdown.clone(),
            );
            tasks.spawn(async move {
                declare_until_done(&topology, &broker, &shutdown)
                    .await
                    .then(|| {
                        ready.store(true, Ordering::Release);
                        declared.cancel();
                    })
            });
        }
        if let Some(poller) = poller {
            let (stop, declared) = (shutdown.clone(), declared.clone());
            tasks.spawn(async move {
                tokio::select! {
                    _ = declared.cancelled() => poller.run(stop).await,
                    _ = stop.cancelled() => {}
                }
            });
        }
        if let Some(listener) = metrics_listener {
            tracing::info!(metrics.addr = %listener.local_addr()?, "metrics listening");
            let (app, stop) = (crate::metrics::router(c.metrics.clone()), shutdown.clone());
            tasks.spawn(async move {
                let serve = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(error) = serve.await {
                    tracing::error!(%error, "metrics server failed");
                }
            });
        }
        if let Some(listener) = self.listener {
            let state = Arc::new(IngestState {
                tokens: TokenSet::new(
                    c.settings.ingest.auth_tokens.clone(),
                    c.settings.ingest.allow_unauthenticated,
                ),
                publisher: c.publisher.clone(),
                topology: c.topology.clone(),
                hasher: c.hasher.clone(),
                phone_region: c.settings.phone_region(),
                topology_ready: topology_ready.clone(),
                metrics: c.metrics.clone(),
                request_timeout: Duration::from_millis(c.settings.ingest.request_timeout_ms),
            });
            let app = router(state);
            let stop = shutdown.clone();
            tracing::info!(ingest.addr = %listener.local_addr()?, "ingest listening");
            tasks.spawn(async move {
                let serve = axum::serve(listener, app)
                    .with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(error) = serve.await {
                    tracing::error!(%error, "ingest server failed");
                }
            });
        }
        if self.roles.worker {
            let context = Arc::new(WorkerContext {
                processor: Processor {
                    genesys: c.genesys.clone(),
                    crm: c.crm.clone(),
                    routes,
                    routing_mode: c.settings.routing.mode,
                    external_contacts: c.settings.genesys.external_contacts.enabled,
                    on_crm_unavailable: c.settings.crm.on_unavailable,
                    contact_locks: StripedLocks::default(),
                    conversation_locks: StripedLocks::default(),
                },
                publisher: c.publisher.clone(),
                events: EventPublisher::new(c.publisher.clone(), &c.topology),
                topology: c.topology.clone(),
                policy: RetryPolicy {
                    max_attempts: c.settings.worker.max_attempts,
                    base_delay: Duration::from_millis(c.settings.worker.retry_base_ms),
                    max_delay: Duration::from_millis(c.settings.worker.retry_max_ms),
                    deadline: Duration::from_secs(c.settings.worker.deadline_secs),
                    outage_delay: Duration::from_millis(c.settings.worker.probe_interval_ms),
                },
                hasher: c.hasher.clone(),
                phone_region: c.settings.phone_region(),
                metrics: c.metrics.clone(),
                outage: Arc::new(OutageGuard::new(c.settings.worker.outage_threshold)),
            });
            let worker = Worker::new(
                context,
                c.consume_broker.clone(),
                c.settings.worker.concurrency,
                Duration::from_secs(c.settings.worker.shutdown_timeout_secs),
            );
            let stop = shutdown.clone();
            let worker_declared = declared.clone();
            tasks.spawn(async move {
                tokio::select! {
                    _ = worker_declared.cancelled() => worker.run(stop).await,
                    _ = stop.cancelled() => {}
                }
            });
            if c.settings.resolver.enabled {
                let resolver = Resolver {
                    genesys: c.genesys.clone(),
                    broker: c.consume_broker.clone(),
                    publisher: c.publisher.clone(),
                    events: EventPublisher::new(c.publisher.clone(), &c.topology),
                    topology: c.topology.clone(),
                    hasher: c.hasher.clone(),
                    metrics: c.metrics.clone(),
                    settings: ResolverSettings {
                        poll_interval: Duration::from_millis(c.settings.resolver.poll_interval_ms),
                        lookback_margin: Duration::from_secs(
                            c.settings.resolver.lookback_margin_secs,
                        ),
                        deadline: Duration::from_secs(c.settings.worker.deadline_secs),
                        max_waiting: c.settings.resolver.max_waiting,
                    },
                };
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    tokio::select! {
                        _ = declared.cancelled() => resolver.run(stop).await,
                        _ = stop.cancelled() => {}
                    }
                });
            }
        }
        tasks.close();
        shutdown.cancelled().await;
        let grace = Duration::from_secs(c.settings.worker.shutdown_timeout_secs + 5);
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!("some tasks did not stop in time");
        }
        c.consume_broker.close().await;
        c.publish_broker.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// The queue depth poller of `[metrics]`, through the management API unless it is disabled.
fn depth_poller(c: &Components) -> anyhow::Result<DepthPoller> {
    let management = match c.settings.management_url() {
        None => None,
        Some(url) => Some(
            ManagementApi::new(
                &url,
                &c.settings.amqp.url[0],
                c.settings.tls.ca_pem()?.as_deref(),
            )
            .context("building the RabbitMQ management API client")?,
        ),
    };
    Ok(DepthPoller {
        queues: c.topology.queues(),
        management,
        broker: c.consume_broker.clone(),
        metrics: c.metrics.clone(),
        interval: Duration::from_millis(c.settings.metrics.queue_poll_interval_ms),
    })
}

/// Declares the topology, retrying while the broker is unreachable; false if shut down first.
async fn declare_until_done(
    topology: &Topology,
    broker: &Broker,
    shutdown: &CancellationToken,
) -> bool {
    let mut reconnect = Reconnect::default();
    loop {
        match topology.declare(broker).await {
            Ok(()) => {
                tracing::info!(exchange = %topology.ingest_exchange(), "topology declared");
                return true;
            }
            Err(error) => {
                if !reconnect
                    .wait(shutdown, "topology declaration", &error)
                    .await
                {
                    return false;
                }
            }
        }
    }
}
