//! Building the application from settings, and running it until shutdown.
//!
//! `Application::build` builds every component of the roles asked for from config, binds
//! their ports and resolves the routing queues; `run_until_stopped` only spawns them and
//! waits for the shutdown token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Settings;
use crate::crm::CrmClient;
use crate::genesys::auth::TokenProvider;
use crate::genesys::{Budget, GenesysClient, GenesysConfig};
use crate::handoff::watch::EnrichmentWatch;
use crate::ingest::auth::TokenSet;
use crate::ingest::server::{serve, ConnectionLimits};
use crate::ingest::{router, IngestState};
use crate::merge::{QueueTarget, RouteTable};
use crate::metrics::Metrics;
use crate::privacy::SessionHasher;
use crate::queue::connection::Reconnect;
use crate::queue::depth::{DepthPoller, ManagementApi};
use crate::queue::events::EventPublisher;
use crate::queue::topology::Declared;
use crate::queue::{Broker, BrokerError, Publisher, Topology};
use crate::resolver::{Resolver, ResolverOptions};
use crate::worker::decision::RetryPolicy;
use crate::worker::locks::StripedLocks;
use crate::worker::outage::OutageGuard;
use crate::worker::process::Processor;
use crate::worker::{Worker, WorkerContext};

pub use crate::config::Roles;

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
    /// Builds every client from settings checked for `roles`; connects nothing yet.
    pub fn build(settings: Settings, roles: Roles) -> anyhow::Result<Self> {
        settings.validate_for(roles)?;
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
            settings.genesys.token_refresh_margin(),
            metrics.clone(),
        )
        .with_timeout(settings.genesys.timeout());
        let genesys_config = GenesysConfig {
            api_url: settings.genesys_api_url(),
            timeout: settings.genesys.timeout(),
            max_wait: settings.genesys.max_wait(),
        };
        let genesys = Arc::new(GenesysClient::new(
            http.clone(),
            genesys_config,
            tokens,
            budget,
            metrics.clone(),
        ));
        let crm = Arc::new(CrmClient::from_settings(
            http,
            &settings.crm,
            metrics.clone(),
        ));
        let connect_timeout = settings.amqp.connect_timeout();
        let publish_broker = Broker::connecting(
            &settings.amqp.url,
            "prechat-enricher publish",
            ca_pem.clone(),
            connect_timeout,
        );
        let consume_broker = Broker::connecting(
            &settings.amqp.url,
            "prechat-enricher consume",
            ca_pem,
            connect_timeout,
        );
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

/// A built, not yet running, service: every component of the roles asked for, listeners
/// bound, routes resolved. Running it only spawns and waits.
pub struct Application {
    components: Components,
    declared: Declared,
    ingest: Option<(tokio::net::TcpListener, axum::Router)>,
    watch: Option<EnrichmentWatch>,
    metrics_listener: Option<tokio::net::TcpListener>,
    poller: Option<DepthPoller>,
    worker: Option<Worker>,
    resolver: Option<Resolver>,
}

impl Application {
    /// Builds the components of `roles`, binds their ports (0 picks a free one, so tests run
    /// many apps side by side) and resolves the routing queues. Whatever can fail fails here,
    /// before any task runs.
    pub async fn build(settings: Settings, roles: Roles) -> anyhow::Result<Self> {
        let c = Components::build(settings, roles)?;
        let declared = Declared::default();
        let watch = roles.ingest.then(EnrichmentWatch::default);
        let ingest = match &watch {
            Some(watch) => Some((
                bind(c.settings.ingest.bind, "ingest.bind").await?,
                ingest_router(&c, &declared, watch),
            )),
            None => None,
        };
        let metrics_listener = match c.settings.metrics.bind.as_str() {
            "" => None,
            address => Some(bind(address, "metrics.bind").await?),
        };
        let poller = (c.settings.metrics.queue_poll_interval_ms > 0)
            .then(|| depth_poller(&c))
            .transpose()?;
        let (worker, resolver) = if roles.worker {
            let routes = c.resolve_routes().await?;
            let resolver = c.settings.resolver.enabled.then(|| resolver(&c));
            (Some(worker(&c, routes)), resolver)
        } else {
            (None, None)
        };
        Ok(Self {
            components: c,
            declared,
            ingest,
            watch,
            metrics_listener,
            poller,
            worker,
            resolver,
        })
    }

    /// The ingest's address (with the port actually bound).
    pub fn ingest_addr(&self) -> Option<SocketAddr> {
        self.ingest
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    /// This process's metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.components.metrics.clone()
    }

    /// Runs until `shutdown` is cancelled, then stops in order: no new requests or messages,
    /// messages in hand finished (within `worker.shutdown_timeout_secs`), connections closed.
    /// Consumers start once the topology is declared.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let c = self.components;
        let tasks = TaskTracker::new();
        let refused = spawn_declaration(&tasks, &c, &self.declared, &shutdown);
        // Everything that uses the topology starts once it is declared.
        let once_declared = |run| after_declared(self.declared.clone(), shutdown.clone(), run);
        if let Some((listener, app)) = self.ingest {
            tracing::info!(ingest.addr = %listener.local_addr()?, "ingest listening");
            let limits = connection_limits(&c.settings);
            tasks.spawn(serve(listener, app, limits, shutdown.clone(), "ingest"));
        }
        if let Some(listener) = self.metrics_listener {
            tracing::info!(metrics.addr = %listener.local_addr()?, "metrics listening");
            let consuming = self.worker.as_ref().map(Worker::consuming);
            let app = crate::metrics::router(c.metrics.clone(), consuming);
            let limits = connection_limits(&c.settings);
            tasks.spawn(serve(listener, app, limits, shutdown.clone(), "metrics"));
        }
        let mut runs: Vec<futures_util::future::BoxFuture<'static, ()>> = Vec::new();
        if let Some(watch) = self.watch {
            let broker = c.consume_broker.clone();
            runs.push(Box::pin(watch.run(
                broker,
                c.topology.clone(),
                shutdown.clone(),
            )));
        }
        if let Some(poller) = self.poller {
            runs.push(Box::pin(poller.run(shutdown.clone())));
        }
        if let Some(worker) = self.worker {
            runs.push(Box::pin(worker.run(shutdown.clone())));
        }
        if let Some(resolver) = self.resolver {
            runs.push(Box::pin(resolver.run(shutdown.clone())));
        }
        for run in runs {
            tasks.spawn(once_declared(run));
        }
        tasks.close();
        shutdown.cancelled().await;
        let grace = c.settings.worker.shutdown_timeout() + Duration::from_secs(5);
        if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
            tracing::warn!("some tasks did not stop in time");
        }
        c.consume_broker.close().await;
        c.publish_broker.close().await;
        tracing::info!("stopped");
        let refusal = refused.lock().expect("refusal lock").take();
        refusal.map_or(Ok(()), |error| Err(error.into()))
    }
}

async fn bind<A: tokio::net::ToSocketAddrs + std::fmt::Display>(
    address: A,
    key: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    let described = address.to_string();
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("binding {key} = {described}"))
}

/// The bounds of every listener's connections: `ingest.header_timeout_ms` and
/// `ingest.max_connections`.
fn connection_limits(settings: &Settings) -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: settings.ingest.header_timeout(),
        max_connections: settings.ingest.max_connections,
    }
}

/// Declares the topology in the background (retrying while the broker is away) and sets
/// `declared`; a declaration the broker refuses (other queue arguments) stops the process,
/// and the returned slot then holds the refusal.
fn spawn_declaration(
    tasks: &TaskTracker,
    c: &Components,
    declared: &Declared,
    shutdown: &CancellationToken,
) -> Arc<std::sync::Mutex<Option<BrokerError>>> {
    let refused = Arc::new(std::sync::Mutex::new(None));
    let (topology, broker, declared, stop, refusal) = (
        c.topology.clone(),
        c.publish_broker.clone(),
        declared.clone(),
        shutdown.clone(),
        refused.clone(),
    );
    tasks.spawn(async move {
        match declare_until_done(&topology, &broker, &stop).await {
            Ok(true) => declared.set(),
            Ok(false) => {}
            Err(error) => {
                tracing::error!(%error, "topology differs from the configuration; stopping");
                *refusal.lock().expect("refusal lock") = Some(error);
                stop.cancel();
            }
        }
    });
    refused
}

/// Runs `task` once the topology is declared (unless shutdown comes first).
async fn after_declared(
    declared: Declared,
    shutdown: CancellationToken,
    task: impl std::future::Future<Output = ()>,
) {
    tokio::select! {
        _ = declared.wait() => task.await,
        _ = shutdown.cancelled() => {}
    }
}

fn ingest_router(c: &Components, declared: &Declared, watch: &EnrichmentWatch) -> axum::Router {
    let handoff_tokens = match c.settings.handoff.auth_tokens.is_empty() {
        true => c.settings.ingest.auth_tokens.clone(),
        false => c.settings.handoff.auth_tokens.clone(),
    };
    router(Arc::new(IngestState {
        handoff_tokens: TokenSet::new(handoff_tokens, c.settings.ingest.allow_unauthenticated),
        handoff_wait: c.settings.handoff.wait(),
        watch: watch.clone(),
        tokens: TokenSet::new(
            c.settings.ingest.auth_tokens.clone(),
            c.settings.ingest.allow_unauthenticated,
        ),
        publisher: c.publisher.clone(),
        topology: c.topology.clone(),
        hasher: c.hasher.clone(),
        phone_region: c.settings.phone_region(),
        declared: declared.clone(),
        metrics: c.metrics.clone(),
        request_timeout: c.settings.ingest.request_timeout(),
        serve_metrics: c.settings.metrics.on_ingest,
    }))
}

fn worker(c: &Components, routes: RouteTable) -> Worker {
    let worker = &c.settings.worker;
    let outage = Arc::new(OutageGuard::new(worker.outage_threshold));
    tokio::spawn(c.metrics.clone().follow_outage_mode(outage.subscribe()));
    let context = Arc::new(WorkerContext {
        processor: Processor {
            genesys: c.genesys.clone(),
            crm: c.crm.clone(),
            routes,
            routing_mode: c.settings.routing.mode,
            external_contacts: c.settings.genesys.external_contacts.clone(),
            on_crm_unavailable: c.settings.crm.on_unavailable,
            conversation_locks: StripedLocks::default(),
        },
        publisher: c.publisher.clone(),
        events: EventPublisher::new(c.publisher.clone(), &c.topology),
        topology: c.topology.clone(),
        policy: RetryPolicy {
            max_attempts: worker.max_attempts,
            base_delay: worker.retry_base(),
            max_delay: worker.retry_max(),
            deadline: worker.deadline(),
            outage_delay: worker.probe_interval(),
        },
        hasher: c.hasher.clone(),
        phone_region: c.settings.phone_region(),
        metrics: c.metrics.clone(),
        outage: outage.clone(),
    });
    Worker::new(
        context,
        c.consume_broker.clone(),
        worker.concurrency,
        worker.shutdown_timeout(),
    )
}

fn resolver(c: &Components) -> Resolver {
    Resolver {
        genesys: c.genesys.clone(),
        broker: c.consume_broker.clone(),
        publisher: c.publisher.clone(),
        events: EventPublisher::new(c.publisher.clone(), &c.topology),
        topology: c.topology.clone(),
        hasher: c.hasher.clone(),
        phone_region: c.settings.phone_region(),
        metrics: c.metrics.clone(),
        settings: ResolverOptions {
            poll_interval: c.settings.resolver.poll_interval(),
            lookback_margin: c.settings.resolver.lookback_margin(),
            deadline: c.settings.worker.deadline(),
            max_waiting: c.settings.resolver.max_waiting,
            handoff_grace: c.settings.resolver.handoff_grace(),
        },
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
        interval: c.settings.metrics.queue_poll_interval(),
    })
}

/// Declares the topology, retrying while the broker is unreachable; false if shut down first,
/// an error when the broker holds an entity with other arguments (retrying cannot help).
async fn declare_until_done(
    topology: &Topology,
    broker: &Broker,
    shutdown: &CancellationToken,
) -> Result<bool, BrokerError> {
    let mut reconnect = Reconnect::default();
    loop {
        match topology.declare(broker).await {
            Ok(()) => {
                tracing::info!(exchange = %topology.ingest_exchange(), "topology declared");
                return Ok(true);
            }
            Err(error @ BrokerError::Inequivalent { .. }) => return Err(error),
            Err(error) => {
                if !reconnect
                    .wait(shutdown, "topology declaration", &error)
                    .await
                {
                    return Ok(false);
                }
            }
        }
    }
}
