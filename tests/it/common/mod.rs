//! The shared integration-test harness: a real RabbitMQ (from `AMQP_URL`, default the local
//! one), an in-process `prechat-sim`, and the service built from settings with a namespace
//! of its own, so that tests run in parallel on one broker and clean up after themselves:
//! a [`TestApp`] (or a [`NamespaceGuard`]) deletes its namespace's queues and exchanges when
//! it is dropped, also when the test fails half-way.
//!
//! `TEST_LOG` (e.g. `TEST_LOG=debug`, or any `RUST_LOG`-style filter) prints the in-process
//! service's logs through the test writer, so they show with the output of a failing test.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicGetOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use prechat_enricher::config::Settings;
use prechat_enricher::queue::headers::{json_properties, HeaderExt};
use prechat_enricher::queue::{Broker, Topology};
use prechat_enricher::startup::{Application, Roles};
use prechat_sim::{SimConfig, SimHandle};
use secrecy::SecretString;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub mod net;
pub mod tls;

/// The ingest token every test app accepts.
pub const TOKEN: &str = "test-ingest-token";

/// An HTTP client for tests.
pub fn http() -> reqwest::Client {
    prechat_enricher::startup::install_crypto_provider();
    reqwest::Client::new()
}

/// The broker the tests use.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Settings for a test app against `sim`, in namespace `namespace`, with `overrides`
/// (`PRECHAT__…` style keys) applied last.
pub fn test_settings(sim: &SimHandle, namespace: &str, overrides: &[(&str, &str)]) -> Settings {
    let env = test_env(sim, namespace, overrides);
    Settings::load_from(&config_dir(), &env).expect("test settings load")
}

/// The repository's `config/` folder.
pub fn config_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

/// With `TEST_LOG` set (a `RUST_LOG`-style filter such as `debug`), installs a subscriber that
/// writes the logs of everything in this test process to the test's output.
pub fn init_test_log() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if let Ok(filter) = std::env::var("TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// The environment of a test app (what [`test_settings`] loads).
pub fn test_env(
    sim: &SimHandle,
    namespace: &str,
    overrides: &[(&str, &str)],
) -> HashMap<String, String> {
    init_test_log();
    let base = sim.base_url();
    let mut env: HashMap<String, String> = [
        ("PRECHAT__AMQP__URL", amqp_url()),
        ("PRECHAT__AMQP__NAMESPACE", namespace.to_string()),
        ("PRECHAT__AMQP__RETRY_DELAYS_SECS", "1,2,5".into()),
        ("PRECHAT__AMQP__PUBLISH_TIMEOUT_MS", "3000".into()),
        ("PRECHAT__INGEST__BIND", "127.0.0.1:0".into()),
        ("PRECHAT__INGEST__AUTH_TOKENS", TOKEN.into()),
        ("PRECHAT__WORKER__CONCURRENCY", "8".into()),
        ("PRECHAT__WORKER__RETRY_BASE_MS", "200".into()),
        ("PRECHAT__WORKER__RETRY_MAX_MS", "2000".into()),
        ("PRECHAT__WORKER__SHUTDOWN_TIMEOUT_SECS", "5".into()),
        ("PRECHAT__WORKER__PROBE_INTERVAL_MS", "1000".into()),
        ("PRECHAT__RESOLVER__POLL_INTERVAL_MS", "500".into()),
        ("PRECHAT__CRM__BASE_URL", base.clone()),
        ("PRECHAT__CRM__API_KEY", "sandbox-crm-key".into()),
        ("PRECHAT__CRM__TIMEOUT_MS", "10000".into()),
        ("PRECHAT__GENESYS__API_URL", base.clone()),
        ("PRECHAT__GENESYS__LOGIN_URL", base),
        ("PRECHAT__GENESYS__CLIENT_ID", "sandbox-client".into()),
        ("PRECHAT__GENESYS__CLIENT_SECRET", "sandbox-secret".into()),
        ("PRECHAT__GENESYS__REQUESTS_PER_MINUTE", "100000".into()),
        ("PRECHAT__GENESYS__TIMEOUT_MS", "10000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (key, value) in overrides {
        env.insert(key.to_string(), value.to_string());
    }
    env
}

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("an address")
        .port()
}

/// A namespace no other test uses.
pub fn unique_namespace(test: &str) -> String {
    format!(
        "t-{test}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// How long dropping a [`NamespaceGuard`] may take to delete the namespace.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A test's namespace on the broker: dropping the guard deletes the queues and exchanges of
/// the topology its settings name, so that a test that fails half-way leaves nothing behind.
pub struct NamespaceGuard {
    namespace: String,
    topology: Topology,
    urls: Vec<SecretString>,
    ca_pem: Option<String>,
    armed: bool,
}

impl NamespaceGuard {
    /// Guards the namespace of `settings` (on the broker of `settings`).
    pub fn new(settings: &Settings) -> Self {
        Self {
            namespace: settings.amqp.namespace.clone(),
            topology: Topology::new(&settings.amqp),
            urls: settings.amqp.url.clone(),
            ca_pem: settings.tls.ca_pem().expect("the test CA reads"),
            armed: true,
        }
    }

    fn broker(&self) -> Broker {
        Broker::with_ca(
            &self.urls,
            "prechat-enricher tests teardown",
            self.ca_pem.clone(),
        )
    }

    /// Leaves the namespace to another guard (a [`TestApp`] started in it).
    pub fn hand_over(mut self) {
        self.armed = false;
    }

    /// Deletes the namespace now and checks that it worked (the end of a test that passed).
    pub async fn delete(mut self) {
        self.armed = false;
        let broker = self.broker();
        self.topology
            .delete(&broker)
            .await
            .expect("topology deleted");
        broker.close().await;
    }
}

impl Drop for NamespaceGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // Drop cannot wait on the test's runtime (it may be the thread dropping this, or
        // shutting down): delete from a thread with a runtime of its own, bounded in time.
        let topology = self.topology.clone();
        let broker = self.broker();
        let namespace = self.namespace.clone();
        let (done, finished) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("namespace-teardown".into())
            .spawn(move || {
                let outcome = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
                    .and_then(|runtime| {
                        runtime.block_on(async {
                            let deleted =
                                tokio::time::timeout(TEARDOWN_TIMEOUT, topology.delete(&broker))
                                    .await;
                            let _ =
                                tokio::time::timeout(Duration::from_secs(1), broker.close()).await;
                            match deleted {
                                Ok(Ok(())) => Ok(()),
                                Ok(Err(error)) => Err(error.to_string()),
                                Err(_) => Err("timed out".to_string()),
                            }
                        })
                    });
                let _ = done.send(outcome);
            });
        let outcome = match spawned {
            Ok(_) => finished
                .recv_timeout(TEARDOWN_TIMEOUT + Duration::from_secs(2))
                .unwrap_or_else(|_| Err("timed out".to_string())),
            Err(error) => Err(error.to_string()),
        };
        if let Err(error) = outcome {
            eprintln!("namespace {namespace} left on the broker: {error}");
        }
    }
}

/// A running app, its sandbox, and a broker connection for inspection. Dropping it stops the
/// app and deletes its namespace.
pub struct TestApp {
    /// Base URL of the ingest.
    pub url: String,
    /// The sandbox.
    pub sim: SimHandle,
    /// Queue names.
    pub topology: Topology,
    /// Settings the app runs with.
    pub settings: Settings,
    /// A connection of the test's own.
    pub broker: Broker,
    http: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    /// The app's metrics.
    pub metrics: std::sync::Arc<prechat_enricher::metrics::Metrics>,
    /// Deletes the namespace when the app is dropped (after [`TestApp`]'s own `drop`).
    namespace: Option<NamespaceGuard>,
}

/// Starts a sandbox with `sim_config` and an app (ingest + workers) with `overrides`.
pub async fn spawn_app_with(
    test: &str,
    sim_config: SimConfig,
    overrides: &[(&str, &str)],
) -> TestApp {
    let sim = prechat_sim::spawn(sim_config)
        .await
        .expect("sandbox starts");
    let namespace = unique_namespace(test);
    let settings = test_settings(&sim, &namespace, overrides);
    start(sim, settings, Roles::ALL).await
}

/// A sandbox whose budget is out of the way (tests of the budget set their own).
pub fn fast_sim() -> SimConfig {
    SimConfig {
        requests_per_minute: 100_000,
        ..SimConfig::default()
    }
}

/// Starts a fast sandbox and an app.
pub async fn spawn_app(test: &str) -> TestApp {
    spawn_app_with(test, fast_sim(), &[]).await
}

/// Starts an app for `settings` against an existing sandbox and waits until it is ready.
pub async fn start(sim: SimHandle, settings: Settings, roles: Roles) -> TestApp {
    let app = start_unchecked(sim, settings, roles).await;
    app.wait_ready(roles).await;
    app
}

/// Starts an app without waiting for the broker (for tests where it is unreachable).
pub async fn start_unchecked(sim: SimHandle, settings: Settings, roles: Roles) -> TestApp {
    let app = Application::build(settings.clone(), roles)
        .await
        .expect("app builds");
    let url = app
        .ingest_addr()
        .map(|a| format!("http://{a}"))
        .unwrap_or_default();
    let metrics = app.metrics();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    TestApp {
        namespace: Some(NamespaceGuard::new(&settings)),
        url,
        sim,
        topology: Topology::new(&settings.amqp),
        broker: Broker::with_ca(
            &settings.amqp.url,
            "prechat-enricher tests",
            settings.tls.ca_pem().unwrap(),
        ),
        settings,
        http: http(),
        shutdown,
        task: Some(task),
        metrics,
    }
}

impl TestApp {
    async fn wait_ready(&self, roles: Roles) {
        // The topology is declared in the background; wait for it (and the ingest), and with
        // the worker role for its worker and resolver to consume, so that a test's first
        // message does not race the consumers' start on a loaded machine.
        let consumers = |queue: String| async move {
            let channel = self.broker.channel().await.ok()?;
            let declared = channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .ok()?;
            let _ = channel.close(200, "checked".into()).await;
            Some(declared.consumer_count())
        };
        let declared = wait_until(Duration::from_secs(20), || {
            consumers(self.topology.submissions_queue())
        })
        .await;
        assert!(declared.is_some(), "topology declared");
        if roles.worker {
            for queue in [
                self.topology.submissions_queue(),
                self.topology.awaiting_queue(),
            ] {
                let consumed = wait_until(Duration::from_secs(20), || async {
                    consumers(queue.clone()).await.filter(|&n| n > 0)
                })
                .await;
                assert!(consumed.is_some(), "{queue} has a consumer");
            }
        }
        if !self.url.is_empty() {
            let ready = wait_until(Duration::from_secs(20), || async {
                let response = self
                    .http
                    .get(format!("{}/readyz", self.url))
                    .send()
                    .await
                    .ok()?;
                response.status().is_success().then_some(())
            })
            .await;
            assert!(ready.is_some(), "ingest ready");
        }
    }

    /// `POST /v1/submissions` with the test token.
    pub async fn post(&self, body: &Value) -> reqwest::Response {
        self.post_raw(
            body.to_string().into_bytes(),
            Some(TOKEN),
            "application/json",
        )
        .await
    }

    /// `POST /v1/submissions` with anything.
    pub async fn post_raw(
        &self,
        body: Vec<u8>,
        token: Option<&str>,
        content_type: &str,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/v1/submissions", self.url))
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("ingest answers")
    }

    /// Publishes a raw body straight to the ingest exchange, as a web tier may.
    pub async fn publish_raw(&self, body: &[u8], message_id: &str) {
        self.publish_raw_with_key("submission", body, message_id)
            .await;
    }

    /// Publishes a raw body to the ingest exchange with another routing key (`awaiting`
    /// puts it straight into the awaiting queue), confirmed.
    pub async fn publish_raw_with_key(&self, routing_key: &str, body: &[u8], message_id: &str) {
        let channel = self.broker.channel().await.unwrap();
        channel.confirm_select(Default::default()).await.unwrap();
        channel
            .basic_publish(
                self.topology.ingest_exchange().as_str().into(),
                routing_key.into(),
                Default::default(),
                body,
                json_properties(message_id, FieldTable::default()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }

    /// Messages ready in a queue (unacked ones are not counted: see
    /// [`TestApp::drained_after_stop`]).
    pub async fn queue_depth(&self, queue: &str) -> u32 {
        let channel = self.broker.channel().await.unwrap();
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
            .unwrap();
        declared.message_count()
    }

    /// Total messages ready in every queue of the topology.
    pub async fn total_depth(&self) -> u32 {
        let mut total = 0;
        for queue in self.topology.queues() {
            total += self.queue_depth(&queue).await;
        }
        total
    }

    /// Whether every queue ends empty, unacked messages included: waits until nothing is
    /// ready, stops the app (it finishes what it holds and returns the rest, unacked, to
    /// the queue), then counts again, when no consumer holds anything.
    pub async fn drained_after_stop(&mut self, timeout: Duration) -> bool {
        let ready_empty = wait_until(timeout, || async {
            (self.total_depth().await == 0).then_some(())
        })
        .await
        .is_some();
        self.stop().await;
        ready_empty && self.total_depth().await == 0
    }

    /// Every dead letter: (headers, body as JSON, or as text when it is not JSON). Leaves them
    /// in the queue.
    pub async fn dead_letters(&self) -> Vec<(FieldTable, Value)> {
        let channel = self.broker.channel().await.unwrap();
        let queue = self.topology.dead_letter_queue();
        let mut out = Vec::new();
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        {
            let headers = message
                .delivery
                .properties
                .headers()
                .clone()
                .unwrap_or_default();
            out.push((
                headers,
                // A body that is not JSON comes as its (lossy) text.
                serde_json::from_slice(&message.delivery.data).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&message.delivery.data).into_owned())
                }),
            ));
        }
        // Closing the channel returns every fetched message to the queue.
        let _ = channel.close(200, "read".into()).await;
        out
    }

    /// A queue that receives a copy of every message routed with `routing_key` on `exchange`.
    pub async fn tap(&self, exchange: &str, routing_key: &str) -> Tap {
        let channel = self.broker.channel().await.unwrap();
        let name = format!(
            "{}.tap.{}",
            self.settings.amqp.namespace,
            uuid::Uuid::new_v4().simple()
        );
        channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        channel
            .queue_bind(
                name.as_str().into(),
                exchange.into(),
                routing_key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        let consumer = channel
            .basic_consume(
                name.as_str().into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        Tap {
            consumer,
            _channel: channel,
        }
    }

    /// Reads the app's metrics text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the app (like SIGTERM) and waits for it to exit.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app stops cleanly");
        }
    }

    /// Stops the app and deletes its queues and exchanges.
    pub async fn cleanup(mut self) {
        self.stop().await;
        if let Some(namespace) = self.namespace.take() {
            namespace.delete().await;
        }
        self.sim.shutdown();
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Without `cleanup` (a failed test): the app stops taking messages before its
        // namespace goes, so that nothing declares it again.
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A tap's messages.
pub struct Tap {
    consumer: lapin::Consumer,
    _channel: lapin::Channel,
}

/// A message seen by a tap.
#[derive(Debug, Clone)]
pub struct Tapped {
    /// Headers.
    pub headers: FieldTable,
    /// Raw body.
    pub body: Vec<u8>,
    /// Routing key.
    pub routing_key: String,
}

impl Tapped {
    /// Body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    /// A header as text.
    pub fn header(&self, key: &str) -> Option<String> {
        self.headers.text(key)
    }
}

impl Tap {
    /// Collects messages until `want` have arrived or `timeout` passes.
    pub async fn collect(&mut self, want: usize, timeout: Duration) -> Vec<Tapped> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < want {
            match tokio::time::timeout_at(deadline, self.consumer.next()).await {
                Ok(Some(Ok(delivery))) => out.push(Tapped {
                    headers: delivery.properties.headers().clone().unwrap_or_default(),
                    body: delivery.data.clone(),
                    routing_key: delivery.routing_key.to_string(),
                }),
                _ => break,
            }
        }
        out
    }
}

pub use prechat_sim::wait::{until as wait_until, until_every as wait_until_every};

/// A submission body for `conversation_id` with the given email (consent given).
pub fn submission(conversation_id: &str, email: &str) -> Value {
    serde_json::json!({
        "conversationId": conversation_id,
        "guest": {"email": email, "sessionId": format!("raw-session-{conversation_id}")},
        "survey": {"subject": "Billing", "priority": "high", "language": "en-US"},
        "consent": {"given": true, "type": "explicit"}
    })
}

/// Attributes without `enrichedAt` (which changes on every run).
pub fn stable(attributes: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    attributes
        .iter()
        .filter(|(k, _)| k.as_str() != "enrichedAt")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
