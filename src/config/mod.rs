//! Typed settings, layered the way operators expect: the built-in defaults (the shipped
//! `config/default.toml`, compiled in), then a `default.toml` in the config directory when
//! present, then
//! `config/{PRECHAT_ENV}.toml`, then the tutorials' variable names (`GENESYS_CLIENT_ID`, …),
//! then `PRECHAT__SECTION__KEY` variables. A `.env` file is read first when present.
//!
//! Parsing and validation are separate steps (parse first, validate second): a
//! bad value fails at start with a message that names the key.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// The shipped defaults, compiled in: the binary needs no file to start.
const BUILT_IN_DEFAULTS: &str = include_str!("../../config/default.toml");

/// Old variable names from the tutorials this product replaces, mapped to their keys.
const ALIASES: [(&str, &str); 4] = [
    ("GENESYS_CLIENT_ID", "PRECHAT__GENESYS__CLIENT_ID"),
    ("GENESYS_CLIENT_SECRET", "PRECHAT__GENESYS__CLIENT_SECRET"),
    ("CRM_BASE_URL", "PRECHAT__CRM__BASE_URL"),
    ("CRM_API_KEY", "PRECHAT__CRM__API_KEY"),
];

/// Keys whose environment value is a comma-separated list.
const LIST_KEYS: [&str; 3] = ["ingest.auth_tokens", "amqp.url", "amqp.retry_delays_secs"];

/// The list key an environment variable sets (`PRECHAT__AMQP__URL` → `amqp.url`), if any.
fn list_key(var: &str) -> Option<&'static str> {
    LIST_KEYS.into_iter().find(|key| {
        let name = format!("PRECHAT__{}", key.replace('.', "__"));
        var.eq_ignore_ascii_case(&name)
    })
}

/// Which parts of the service a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// The HTTP ingest.
    pub ingest: bool,
    /// The consuming workers (and the resolver).
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
    /// Neither: the broker alone (`topology declare`).
    pub const BROKER: Roles = Roles {
        ingest: false,
        worker: false,
    };
}

/// Every setting of the service.
#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    /// RabbitMQ connection and topology.
    pub amqp: AmqpSettings,
    /// The HTTP ingest.
    pub ingest: IngestSettings,
    /// The consuming workers.
    pub worker: WorkerSettings,
    /// Matching submissions without a conversation id.
    pub resolver: ResolverSettings,
    /// The CRM adapter.
    pub crm: CrmSettings,
    /// Genesys Cloud.
    pub genesys: GenesysSettings,
    /// Routing by loyalty tier.
    pub routing: RoutingSettings,
    /// Privacy (session hashing).
    pub privacy: PrivacySettings,
    /// TLS trust for outgoing connections.
    pub tls: TlsSettings,
    /// Logging.
    pub log: LogSettings,
    /// What `/metrics` polls.
    pub metrics: MetricsSettings,
    /// The Architect handoff.
    #[serde(default)]
    pub handoff: HandoffSettings,
}

/// `[amqp]`
#[derive(Debug, Clone, Deserialize)]
pub struct AmqpSettings {
    /// One or more AMQP URLs (a cluster's nodes); tried in order. Credentials inside are secret.
    #[serde(deserialize_with = "one_or_many_secrets")]
    pub url: Vec<SecretString>,
    /// Prefix of every exchange and queue name.
    pub namespace: String,
    /// How long a publish may wait for the broker's confirm before it counts as failed.
    pub publish_timeout_ms: u64,
    /// `x-delivery-limit` of the work queue: the crash-loop guard.
    pub delivery_limit: u32,
    /// Delay buckets of the retry queues, in seconds, ascending.
    pub retry_delays_secs: Vec<u64>,
    /// Retention of dead letters in hours (0 = forever).
    pub dead_letter_ttl_hours: u64,
    /// RabbitMQ management HTTP API, for queue depth with unacked counts (empty = AMQP only,
    /// ready counts; `auto` = the host of the first AMQP URL on port 15672, or 15671 over
    /// https for `amqps://`). Its credentials are those of the first AMQP URL.
    pub management_url: String,
    /// The broker's `consumer_timeout`: a delivery left unacknowledged longer than this
    /// closes the consumer's channel. Waits inside the process stay well under it: a longer
    /// wait hands the message to a retry queue instead.
    #[serde(default = "default_consumer_timeout_ms")]
    pub consumer_timeout_ms: u64,
    /// How long each node of `url` has to open a connection (TCP, TLS, AMQP handshake)
    /// before the next node is tried.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
}

fn default_connect_timeout_ms() -> u64 {
    5_000
}

fn default_consumer_timeout_ms() -> u64 {
    1_800_000
}

/// `[ingest]`
#[derive(Debug, Clone, Deserialize)]
pub struct IngestSettings {
    /// Address the HTTP server binds (port 0 picks a free one).
    pub bind: SocketAddr,
    /// Bearer tokens accepted on `POST /v1/submissions`.
    #[serde(default)]
    pub auth_tokens: Vec<SecretString>,
    /// Start without any token on purpose.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// Region (ISO 3166 alpha-2) for phone numbers without a leading `+`; empty = reject them.
    #[serde(default)]
    pub default_phone_region: String,
    /// Upper bound of one HTTP request, publish included.
    pub request_timeout_ms: u64,
    /// A connection whose request headers are not complete this long after it opened (or
    /// after its previous response) is closed.
    #[serde(default = "default_header_timeout_ms")]
    pub header_timeout_ms: u64,
    /// Open connections at most; one more is closed as soon as it is accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_header_timeout_ms() -> u64 {
    10_000
}

fn default_max_connections() -> usize {
    1024
}

/// `[worker]`
#[derive(Debug, Clone, Deserialize)]
pub struct WorkerSettings {
    /// Messages processed at once per process (also the AMQP prefetch).
    pub concurrency: u16,
    /// Attempts before a retryable failure is dead-lettered.
    pub max_attempts: u32,
    /// A submission still failing this long after `submittedAt` expires.
    pub deadline_secs: u64,
    /// First retry delay.
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// How long shutdown waits for messages in hand.
    pub shutdown_timeout_secs: u64,
    /// Systemic failures in a row (5xx, timeouts, 401 after a fresh token) that pause
    /// consumption.
    pub outage_threshold: u32,
    /// Time between probes while paused (also the delay of messages failed by the outage).
    pub probe_interval_ms: u64,
}

/// `[resolver]`
#[derive(Debug, Clone, Deserialize)]
pub struct ResolverSettings {
    /// Run the resolver in `worker` and `serve` processes (one is active at a time).
    pub enabled: bool,
    /// Time between conversation scans while submissions wait.
    pub poll_interval_ms: u64,
    /// The scan window starts this long before the oldest waiting submission.
    pub lookback_margin_secs: u64,
    /// Waiting submissions held at once.
    pub max_waiting: u16,
    /// A parked submission is left out of the scans this long, so that the flow's handoff
    /// (which needs no search call) can match it first.
    #[serde(default = "default_handoff_grace_ms")]
    pub handoff_grace_ms: u64,
}

fn default_handoff_grace_ms() -> u64 {
    2000
}

/// `[handoff]`: `POST /v1/handoffs`, the Architect data action's call.
#[derive(Debug, Clone, Deserialize)]
pub struct HandoffSettings {
    /// Bearer tokens the data action sends; empty = the ingest's tokens.
    #[serde(default)]
    pub auth_tokens: Vec<SecretString>,
    /// How long the answer waits for the enrichment (a request's `?wait_ms=` may lower it).
    #[serde(default = "default_handoff_wait_ms")]
    pub wait_ms: u64,
}

fn default_handoff_wait_ms() -> u64 {
    2000
}

impl Default for HandoffSettings {
    fn default() -> Self {
        Self {
            auth_tokens: Vec::new(),
            wait_ms: default_handoff_wait_ms(),
        }
    }
}

/// The longest wait a handoff answer may have.
pub const MAX_HANDOFF_WAIT_MS: u64 = 10_000;

impl HandoffSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.wait_ms > MAX_HANDOFF_WAIT_MS {
            return invalid("handoff.wait_ms", "must be at most 10000");
        }
        if self
            .auth_tokens
            .iter()
            .any(|t| t.expose_secret().trim().is_empty())
        {
            return invalid("handoff.auth_tokens", "an empty token is not allowed");
        }
        Ok(())
    }

    /// The answer's longest wait.
    pub fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms)
    }
}

/// What a worker does when the CRM cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnUnavailable {
    /// Deliver un-enriched with `crmStatus=unavailable`.
    Degrade,
    /// Retry the submission later.
    Retry,
}

/// How a CRM lookup carries the guest's identifiers (`crm.lookup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestLookup {
    /// `GET {base_url}/customers?email=&phone=&sessionHash=`.
    #[default]
    Get,
    /// In a body: `POST {base_url}/customers/search` with `{"email", "phone", "sessionHash"}`,
    /// a Salesforce Composite request, a Dataverse `$batch`.
    Post,
}

/// Which CRM API the adapter speaks (`crm.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrmKind {
    /// The generic contract: `GET {base_url}/customers?email=&phone=&sessionHash=`.
    #[default]
    Rest,
    /// Salesforce: SOQL through the REST API, OAuth client credentials of a connected app.
    Salesforce,
    /// Dynamics 365 / Dataverse Web API, client credentials at the Microsoft identity platform.
    Dynamics,
}

impl CrmKind {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            CrmKind::Rest => "rest",
            CrmKind::Salesforce => "salesforce",
            CrmKind::Dynamics => "dynamics",
        }
    }
}

/// `[crm]`
#[derive(Debug, Clone, Deserialize)]
pub struct CrmSettings {
    /// Which CRM API: `rest` (default), `salesforce`, `dynamics`.
    #[serde(default)]
    pub kind: CrmKind,
    /// Base URL of the CRM's REST API (`{base_url}/customers`; `kind = "rest"` only).
    pub base_url: String,
    /// Bearer key for the CRM (`kind = "rest"` only).
    pub api_key: SecretString,
    /// Where the guest's identifiers go: in the lookup's URL, or in a request body, out of the
    /// URLs that proxies and access logs keep (`rest`: `POST {base_url}/customers/search`;
    /// `salesforce`: a Composite request; `dynamics`: a `$batch`).
    #[serde(default)]
    pub lookup: RestLookup,
    /// Lookup timeout.
    pub timeout_ms: u64,
    /// Degrade or retry when the CRM is down.
    pub on_unavailable: OnUnavailable,
    /// How long a lookup's answer is reused (0 = no cache).
    pub cache_ttl_secs: u64,
    /// The object searched: a Salesforce object (`Contact`, `Lead`, `Account` for person
    /// accounts) or a Dataverse table's logical name (`contact`, `account`); empty = the
    /// kind's default (`Contact`, `contact`).
    #[serde(default)]
    pub object: String,
    /// ISO 3166 region in which a CRM phone number without a leading `+` is read before it is
    /// compared with the guest's (empty = the region of the guest's own number).
    #[serde(default)]
    pub default_phone_region: String,
    /// Which CRM field holds which customer attribute; an absent key takes the kind's default.
    #[serde(default)]
    pub fields: CrmFieldSettings,
    /// `kind = "salesforce"`.
    #[serde(default)]
    pub salesforce: SalesforceSettings,
    /// `kind = "dynamics"`.
    #[serde(default)]
    pub dynamics: DynamicsSettings,
}

/// `[crm.fields]`: CRM field (column) names. `None` = the kind's default, `""` = not mapped
/// (never selected; for `email`, `phone` and `session_hash`: that lookup is skipped).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CrmFieldSettings {
    /// The record's id (required).
    pub id: Option<String>,
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Email, searched first.
    pub email: Option<String>,
    /// Phone, searched second and compared after normalising.
    pub phone: Option<String>,
    /// Loyalty tier.
    pub loyalty_tier: Option<String>,
    /// Account status.
    pub account_status: Option<String>,
    /// Loyalty points.
    pub loyalty_points: Option<String>,
    /// Earlier tickets.
    pub previous_tickets: Option<String>,
    /// The hashed session id, searched last; Salesforce and Dynamics have no default (skipped).
    pub session_hash: Option<String>,
    /// The field the phone search runs on when it is not `phone` (e.g. a formula field that
    /// holds the digits only); empty = `phone`.
    pub phone_search: Option<String>,
}

/// `[crm.salesforce]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SalesforceSettings {
    /// The org's My Domain URL, e.g. `https://acme.my.salesforce.com` (token and API host).
    pub my_domain: String,
    /// The connected app's consumer key.
    pub client_id: String,
    /// The connected app's consumer secret.
    pub client_secret: SecretString,
    /// REST API version, e.g. `62.0`.
    pub api_version: String,
    /// A token is renewed after this long (Salesforce does not say when a token expires; it
    /// lasts the org's session timeout). A 401 drops it sooner.
    pub token_ttl_secs: u64,
}

impl Default for SalesforceSettings {
    fn default() -> Self {
        Self {
            my_domain: String::new(),
            client_id: String::new(),
            client_secret: SecretString::from(String::new()),
            api_version: "62.0".into(),
            token_ttl_secs: 3600,
        }
    }
}

/// `[crm.dynamics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DynamicsSettings {
    /// The environment URL, e.g. `https://acme.crm4.dynamics.com`.
    pub environment_url: String,
    /// Microsoft Entra tenant id (or domain).
    pub tenant: String,
    /// The app registration's client id.
    pub client_id: String,
    /// The app registration's client secret.
    pub client_secret: SecretString,
    /// The Microsoft identity platform's host.
    pub login_url: String,
    /// The table's entity set name; empty = the logical name plus `s` (`contacts`).
    pub entity_set: String,
}

impl Default for DynamicsSettings {
    fn default() -> Self {
        Self {
            environment_url: String::new(),
            tenant: String::new(),
            client_id: String::new(),
            client_secret: SecretString::from(String::new()),
            login_url: "https://login.microsoftonline.com".into(),
            entity_set: String::new(),
        }
    }
}

/// `[genesys]`
#[derive(Debug, Clone, Deserialize)]
pub struct GenesysSettings {
    /// Region domain, e.g. `mypurecloud.com`, `mypurecloud.ie`, `usw2.pure.cloud`.
    pub domain: String,
    /// API base URL override (default `https://api.{domain}`).
    #[serde(default)]
    pub api_url: String,
    /// Login base URL override (default `https://login.{domain}`).
    #[serde(default)]
    pub login_url: String,
    /// OAuth client id (client credentials grant).
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: SecretString,
    /// Process-wide request budget.
    pub requests_per_minute: u32,
    /// Timeout of one Genesys call.
    pub timeout_ms: u64,
    /// The longest one Genesys call waits in the process for the rate limit, in all (the
    /// limiter, a 429's `Retry-After`, a spent window): when the wait would be longer, the
    /// message goes to a retry queue at once.
    #[serde(default = "default_genesys_max_wait_ms")]
    pub max_wait_ms: u64,
    /// A token is renewed this long before it expires.
    pub token_refresh_margin_secs: u64,
    /// `[genesys.external_contacts]`.
    pub external_contacts: ExternalContactsSettings,
}

fn default_genesys_max_wait_ms() -> u64 {
    30_000
}

/// `[genesys.external_contacts]`
#[derive(Debug, Clone, Deserialize)]
pub struct ExternalContactsSettings {
    /// Upsert the guest's External Contact and link the conversation to it (consent only).
    pub enabled: bool,
    /// Touch no External Contact for a guest whose identity the web tier did not vouch for
    /// (`guest.verified`), so that a typed-in stranger's email or phone never lands on a real
    /// customer's contact.
    pub require_verified: bool,
}

/// How the tier's queue is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingMode {
    /// Write `targetQueueId`/`targetQueueName` for an Architect flow to act on.
    Attributes,
    /// Also transfer the customer participant to the queue.
    Transfer,
}

/// `[routing]`
#[derive(Debug, Clone, Deserialize)]
pub struct RoutingSettings {
    /// Attributes only, or transfer too.
    pub mode: RoutingMode,
    /// Loyalty tier (lower-case) → queue name or id.
    #[serde(default)]
    pub queues: BTreeMap<String, String>,
}

/// `[privacy]`
#[derive(Debug, Clone, Deserialize)]
pub struct PrivacySettings {
    /// When set, session ids are hashed with HMAC-SHA256 under this key.
    pub session_hash_key: SecretString,
}

/// `[tls]`
#[derive(Debug, Clone, Deserialize)]
pub struct TlsSettings {
    /// A PEM file of extra CA certificates trusted (besides the system's) by every outgoing
    /// TLS connection: `amqps://`, Genesys, the CRM. Empty = system roots only.
    pub ca_file: String,
}

impl TlsSettings {
    /// The CA file's PEM text, when one is configured.
    pub fn ca_pem(&self) -> Result<Option<String>, InvalidSetting> {
        if self.ca_file.trim().is_empty() {
            return Ok(None);
        }
        std::fs::read_to_string(self.ca_file.trim())
            .map(Some)
            .map_err(|e| InvalidSetting {
                key: "tls.ca_file",
                reason: format!("cannot read {}: {e}", self.ca_file),
            })
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
pub struct LogSettings {
    /// Text or JSON.
    pub format: LogFormat,
    /// A `tracing` filter, e.g. `info` or `prechat_enricher=debug,info`.
    pub level: String,
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
pub struct MetricsSettings {
    /// Time between queue depth polls (0 = queue depth not exported).
    pub queue_poll_interval_ms: u64,
    /// Address of a listener serving only `GET /metrics` and `/healthz`, for `worker`
    /// processes (empty = none; the ingest serves `/metrics` on `ingest.bind` anyway).
    pub bind: String,
    /// Whether the ingest also serves `GET /metrics` on `ingest.bind`; false keeps it off the
    /// public port (serve it on `metrics.bind` instead).
    #[serde(default = "default_true")]
    pub on_ingest: bool,
}

fn default_true() -> bool {
    true
}

/// A setting that is present but wrong.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {key}: {reason}")]
pub struct InvalidSetting {
    /// The dotted key, e.g. `genesys.client_id`.
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

impl Settings {
    /// Loads settings from `dir` (default `config/`, or `PRECHAT_CONFIG_DIR`) and the process
    /// environment, reading `.env` first when it exists.
    pub fn load() -> Result<Self, config::ConfigError> {
        let _ = dotenvy::dotenv();
        let dir = std::env::var_os("PRECHAT_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("config"));
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(&dir, &env)
    }

    /// Loads settings from `dir` and the given environment (tests pass their own).
    pub fn load_from(
        dir: &Path,
        env: &HashMap<String, String>,
    ) -> Result<Self, config::ConfigError> {
        let profile = env.get("PRECHAT_ENV").cloned().unwrap_or_default();
        let aliases: HashMap<String, String> = ALIASES
            .iter()
            .filter_map(|(old, new)| env.get(*old).map(|v| (new.to_string(), v.clone())))
            .collect();
        // Values stay strings (the typed fields parse them), so a secret like `0123` keeps its
        // leading zero and a one-element list like `RETRY_DELAYS_SECS=30` stays a list: the
        // crate's `try_parsing` would turn both into numbers.
        let (lists, scalars): (HashMap<String, String>, HashMap<String, String>) = env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .partition(|(name, _)| list_key(name).is_some());
        let prechat_env = |source: HashMap<String, String>| {
            config::Environment::with_prefix("PRECHAT")
                .prefix_separator("__")
                .separator("__")
                .source(Some(source))
        };
        // The built-in defaults are the shipped `config/default.toml`, compiled in, so the
        // binary runs outside the repository; a `default.toml` in `dir` is optional on top.
        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(
                BUILT_IN_DEFAULTS,
                config::FileFormat::Toml,
            ))
            .add_source(config::File::from(dir.join("default.toml")).required(false));
        if !profile.is_empty() {
            builder = builder
                .add_source(config::File::from(dir.join(format!("{profile}.toml"))).required(true));
        }
        builder = builder
            .add_source(prechat_env(aliases))
            .add_source(prechat_env(scalars));
        for (name, value) in &lists {
            let items: Vec<String> = value
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(String::from)
                .collect();
            builder = builder.set_override(list_key(name).unwrap_or_default(), items)?;
        }
        builder.build()?.try_deserialize()
    }

    /// Checks what every role needs before anything is touched (`serve` runs both roles).
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.validate_for(Roles::ALL)
    }

    /// Checks what the given roles need, and only that: the ingest needs no Genesys
    /// credentials, a worker no ingest tokens.
    pub fn validate_for(&self, roles: Roles) -> Result<(), InvalidSetting> {
        self.refuse_placeholders()?;
        self.amqp.validate()?;
        if let Some(url) = self.management_url() {
            check_management_url(&url)?;
        }
        if !self.metrics.bind.is_empty() && self.metrics.bind.parse::<SocketAddr>().is_err() {
            return invalid("metrics.bind", "not an address such as 0.0.0.0:9090");
        }
        if roles.ingest {
            self.ingest.validate()?;
            self.handoff.validate()?;
            if self.ingest.request_timeout_ms <= self.amqp.publish_timeout_ms {
                return invalid(
                    "ingest.request_timeout_ms",
                    "must be longer than amqp.publish_timeout_ms",
                );
            }
        }
        if roles.worker {
            self.worker.validate()?;
            self.resolver.validate()?;
            self.crm.validate()?;
            self.genesys.validate()?;
            let bound = self.amqp.consumer_timeout_ms / 10;
            for (key, value) in [
                ("genesys.max_wait_ms", self.genesys.max_wait_ms),
                ("genesys.timeout_ms", self.genesys.timeout_ms),
                ("crm.timeout_ms", self.crm.timeout_ms),
            ] {
                if value > bound {
                    return invalid(key, "must be at most a tenth of amqp.consumer_timeout_ms");
                }
            }
            // The resolver holds a submission without a conversation id unacknowledged until
            // its deadline: past the broker's consumer_timeout the broker would close its
            // channel, again and again.
            if self.worker.deadline_secs.saturating_mul(1000) >= self.amqp.consumer_timeout_ms {
                return invalid(
                    "worker.deadline_secs",
                    "must be shorter than amqp.consumer_timeout_ms (the resolver holds waiting submissions until their deadline)",
                );
            }
            if self.ingest.phone_region_invalid() {
                return invalid(
                    "ingest.default_phone_region",
                    "not an ISO 3166 alpha-2 region such as US or GB",
                );
            }
        }
        Ok(())
    }

    /// Genesys API base URL, without a trailing slash.
    pub fn genesys_api_url(&self) -> String {
        self.genesys.api_base_url()
    }

    /// Genesys login base URL, without a trailing slash.
    pub fn genesys_login_url(&self) -> String {
        self.genesys.login_base_url()
    }

    /// The management API's URL, `auto` resolved; `None` when disabled (empty).
    pub fn management_url(&self) -> Option<String> {
        match self.amqp.management_url.trim() {
            "" => None,
            "auto" => {
                let first = reqwest::Url::parse(self.amqp.url.first()?.expose_secret()).ok()?;
                let host = first.host_str()?;
                let (scheme, port) = match first.scheme() {
                    "amqps" => ("https", 15671),
                    _ => ("http", 15672),
                };
                let host = if host.contains(':') && !host.starts_with('[') {
                    format!("[{host}]")
                } else {
                    host.to_string()
                };
                Some(format!("{scheme}://{host}:{port}"))
            }
            url => Some(url.to_string()),
        }
    }

    /// The default phone region, parsed.
    pub fn phone_region(&self) -> Option<phonenumber::country::Id> {
        self.ingest.phone_region()
    }

    /// How long a publish may wait for its confirm.
    pub fn publish_timeout(&self) -> Duration {
        self.amqp.publish_timeout()
    }
}

/// The placeholder values of `deploy/kubernetes/secret.example.yaml`: a process configured
/// with one was deployed with the example's Secret instead of real credentials.
const PLACEHOLDER_SECRETS: [&str; 3] = [
    "CHANGE-ME",
    "CHANGE-ME-web-tier-token",
    "CHANGE-ME-32-random-bytes",
];

fn is_placeholder(value: &str) -> bool {
    PLACEHOLDER_SECRETS.contains(&value.trim())
}

impl Settings {
    /// Fails, naming the key, when a secret (or the AMQP URL's password) still holds a
    /// placeholder of the example Secret. The message never repeats the value.
    fn refuse_placeholders(&self) -> Result<(), InvalidSetting> {
        let reason = "holds a placeholder value of deploy/kubernetes/secret.example.yaml; set the real credential";
        let any =
            |secrets: &[SecretString]| secrets.iter().any(|s| is_placeholder(s.expose_secret()));
        let amqp_password = self.amqp.url.iter().any(|url| {
            reqwest::Url::parse(url.expose_secret())
                .ok()
                .and_then(|url| url.password().map(is_placeholder))
                .unwrap_or(false)
        });
        let checks = [
            ("amqp.url", amqp_password),
            ("ingest.auth_tokens", any(&self.ingest.auth_tokens)),
            ("handoff.auth_tokens", any(&self.handoff.auth_tokens)),
            ("genesys.client_id", is_placeholder(&self.genesys.client_id)),
            (
                "genesys.client_secret",
                is_placeholder(self.genesys.client_secret.expose_secret()),
            ),
            (
                "crm.api_key",
                is_placeholder(self.crm.api_key.expose_secret()),
            ),
            (
                "privacy.session_hash_key",
                is_placeholder(self.privacy.session_hash_key.expose_secret()),
            ),
        ];
        match checks.into_iter().find(|(_, placeholder)| *placeholder) {
            Some((key, _)) => invalid(key, reason),
            None => Ok(()),
        }
    }
}

fn invalid(key: &'static str, reason: &str) -> Result<(), InvalidSetting> {
    Err(InvalidSetting {
        key,
        reason: reason.to_string(),
    })
}

fn check_management_url(management_url: &str) -> Result<(), InvalidSetting> {
    let key = "amqp.management_url";
    match reqwest::Url::parse(management_url) {
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            invalid(key, "must start with http:// or https://")
        }
        Ok(url) if !url.username().is_empty() || url.password().is_some() => invalid(
            key,
            "must not hold credentials (those of amqp.url are used)",
        ),
        Ok(_) => Ok(()),
        Err(_) => invalid(key, "not a URL"),
    }
}

impl AmqpSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.url.is_empty() {
            return invalid("amqp.url", "at least one AMQP URL is required");
        }
        for url in &self.url {
            let url = url.expose_secret();
            if !(url.starts_with("amqp://") || url.starts_with("amqps://")) {
                return invalid("amqp.url", "must start with amqp:// or amqps://");
            }
            if crate::queue::connection::parse_amqp_url(url).is_err() {
                return invalid("amqp.url", "not an AMQP URL");
            }
        }
        if self.connect_timeout_ms == 0 {
            return invalid("amqp.connect_timeout_ms", "must be positive");
        }
        let name_chars = |c: char| c.is_ascii_alphanumeric() || "-_.".contains(c);
        if self.namespace.is_empty() || !self.namespace.chars().all(name_chars) {
            return invalid(
                "amqp.namespace",
                "must be non-empty letters, digits, '-', '_' or '.'",
            );
        }
        let delays = &self.retry_delays_secs;
        if delays.is_empty() || delays.windows(2).any(|w| w[0] >= w[1]) || delays[0] == 0 {
            return invalid(
                "amqp.retry_delays_secs",
                "must be positive and strictly ascending",
            );
        }
        Ok(())
    }

    /// How long a publish may wait for its confirm.
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    /// Each node's connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The broker's `consumer_timeout`.
    pub fn consumer_timeout(&self) -> Duration {
        Duration::from_millis(self.consumer_timeout_ms)
    }
}

impl IngestSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.auth_tokens.is_empty() && !self.allow_unauthenticated {
            return invalid(
                "ingest.auth_tokens",
                "no token configured; set one, or ingest.allow_unauthenticated = true on purpose",
            );
        }
        if self
            .auth_tokens
            .iter()
            .any(|t| t.expose_secret().trim().is_empty())
        {
            return invalid("ingest.auth_tokens", "an empty token is not allowed");
        }
        if self.phone_region_invalid() {
            return invalid(
                "ingest.default_phone_region",
                "not an ISO 3166 alpha-2 region such as US or GB",
            );
        }
        if self.header_timeout_ms == 0 {
            return invalid("ingest.header_timeout_ms", "must be positive");
        }
        if self.max_connections == 0 {
            return invalid("ingest.max_connections", "must be at least 1");
        }
        Ok(())
    }

    fn phone_region_invalid(&self) -> bool {
        !self.default_phone_region.is_empty() && self.phone_region().is_none()
    }

    /// The default phone region, parsed.
    pub fn phone_region(&self) -> Option<phonenumber::country::Id> {
        self.default_phone_region.to_ascii_uppercase().parse().ok()
    }

    /// How long one request may take.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// How long a connection has to send a request's headers.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
}

impl WorkerSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.concurrency == 0 {
            return invalid("worker.concurrency", "must be at least 1");
        }
        if self.max_attempts == 0 {
            return invalid("worker.max_attempts", "must be at least 1");
        }
        if self.retry_base_ms == 0 || self.retry_max_ms < self.retry_base_ms {
            return invalid(
                "worker.retry_max_ms",
                "must be at least worker.retry_base_ms, which must be positive",
            );
        }
        Ok(())
    }

    /// How long messages in hand may take to finish on shutdown.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    /// How long after its start a submission may wait for its conversation.
    pub fn deadline(&self) -> Duration {
        Duration::from_secs(self.deadline_secs)
    }

    /// First retry delay.
    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }

    /// Longest retry delay.
    pub fn retry_max(&self) -> Duration {
        Duration::from_millis(self.retry_max_ms)
    }

    /// Time between probes while a dependency is out.
    pub fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval_ms)
    }
}

impl ResolverSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.poll_interval_ms == 0 || self.max_waiting == 0 {
            return invalid(
                "resolver.poll_interval_ms",
                "poll interval and resolver.max_waiting must be positive",
            );
        }
        Ok(())
    }

    /// Time between scans.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_millis(self.poll_interval_ms)
    }

    /// How long a parked submission is left to the handoff before scans look for it.
    pub fn handoff_grace(&self) -> Duration {
        Duration::from_millis(self.handoff_grace_ms)
    }

    /// How far before the oldest waiting submission a scan starts.
    pub fn lookback_margin(&self) -> Duration {
        Duration::from_secs(self.lookback_margin_secs)
    }
}

impl CrmSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        let url = |key, value: &str| {
            if reqwest::Url::parse(value).is_err() {
                return invalid(key, "not a URL");
            }
            Ok(())
        };
        let set = |key, value: &str| {
            if value.trim().is_empty() {
                return invalid(key, "must be set for this crm.kind");
            }
            Ok(())
        };
        match self.kind {
            CrmKind::Rest => url("crm.base_url", &self.base_url)?,
            CrmKind::Salesforce => {
                let sf = &self.salesforce;
                url("crm.salesforce.my_domain", &sf.my_domain)?;
                set("crm.salesforce.client_id", &sf.client_id)?;
                set(
                    "crm.salesforce.client_secret",
                    sf.client_secret.expose_secret(),
                )?;
                let version_ok = sf
                    .api_version
                    .split_once('.')
                    .is_some_and(|(major, minor)| {
                        !major.is_empty()
                            && !minor.is_empty()
                            && (major.to_owned() + minor)
                                .chars()
                                .all(|c| c.is_ascii_digit())
                    });
                if !version_ok {
                    return invalid("crm.salesforce.api_version", "not a version such as 62.0");
                }
                if sf.token_ttl_secs == 0 {
                    return invalid("crm.salesforce.token_ttl_secs", "must be at least 1");
                }
            }
            CrmKind::Dynamics => {
                let d = &self.dynamics;
                url("crm.dynamics.environment_url", &d.environment_url)?;
                url("crm.dynamics.login_url", &d.login_url)?;
                set("crm.dynamics.tenant", &d.tenant)?;
                set("crm.dynamics.client_id", &d.client_id)?;
                set(
                    "crm.dynamics.client_secret",
                    d.client_secret.expose_secret(),
                )?;
                if !d
                    .tenant
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
                {
                    return invalid("crm.dynamics.tenant", "not a tenant id or domain");
                }
                if !d.entity_set.is_empty() && !is_crm_name(&d.entity_set) {
                    return invalid("crm.dynamics.entity_set", "not a name (letters, digits, _)");
                }
            }
        }
        if !self.object.is_empty() && !is_crm_name(&self.object) {
            return invalid("crm.object", "not a name (letters, digits, _)");
        }
        if !self.default_phone_region.is_empty() && self.phone_region().is_none() {
            return invalid(
                "crm.default_phone_region",
                "not an ISO 3166 alpha-2 region such as US or GB",
            );
        }
        for (key, value) in self.fields.entries() {
            if let Some(name) = value.filter(|n| !n.is_empty()) {
                if !is_crm_name(name) {
                    return invalid(key, "not a field name (letters, digits, _)");
                }
            }
        }
        if self.fields.id.as_deref() == Some("") {
            return invalid("crm.fields.id", "must name a field");
        }
        Ok(())
    }

    /// [`CrmSettings::default_phone_region`], parsed.
    pub fn phone_region(&self) -> Option<phonenumber::country::Id> {
        self.default_phone_region.to_ascii_uppercase().parse().ok()
    }

    /// How long one lookup may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// How long a lookup's answer is reused.
    pub fn cache_ttl(&self) -> Duration {
        Duration::from_secs(self.cache_ttl_secs)
    }
}

impl CrmFieldSettings {
    /// Every field setting with its key.
    pub fn entries(&self) -> [(&'static str, Option<&str>); 11] {
        [
            ("crm.fields.id", self.id.as_deref()),
            ("crm.fields.first_name", self.first_name.as_deref()),
            ("crm.fields.last_name", self.last_name.as_deref()),
            ("crm.fields.email", self.email.as_deref()),
            ("crm.fields.phone", self.phone.as_deref()),
            ("crm.fields.loyalty_tier", self.loyalty_tier.as_deref()),
            ("crm.fields.account_status", self.account_status.as_deref()),
            ("crm.fields.loyalty_points", self.loyalty_points.as_deref()),
            (
                "crm.fields.previous_tickets",
                self.previous_tickets.as_deref(),
            ),
            ("crm.fields.session_hash", self.session_hash.as_deref()),
            ("crm.fields.phone_search", self.phone_search.as_deref()),
        ]
    }
}

/// A CRM object or field name: ASCII letters, digits and `_`, starting with a letter. Names
/// go into queries, so nothing else is let through.
fn is_crm_name(name: &str) -> bool {
    name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl GenesysSettings {
    fn validate(&self) -> Result<(), InvalidSetting> {
        if self.client_id.trim().is_empty() {
            return invalid("genesys.client_id", "must be set (or GENESYS_CLIENT_ID)");
        }
        if self.client_secret.expose_secret().is_empty() {
            return invalid(
                "genesys.client_secret",
                "must be set (or GENESYS_CLIENT_SECRET)",
            );
        }
        if self.requests_per_minute == 0 {
            return invalid("genesys.requests_per_minute", "must be at least 1");
        }
        for (key, url) in [
            ("genesys.api_url", self.api_base_url()),
            ("genesys.login_url", self.login_base_url()),
        ] {
            if reqwest::Url::parse(&url).is_err() {
                return invalid(key, "not a URL (check genesys.domain)");
            }
        }
        Ok(())
    }

    /// The longest one call waits for the rate limit, in all.
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait_ms)
    }

    /// API base URL, without a trailing slash.
    pub fn api_base_url(&self) -> String {
        base_or(&self.api_url, || format!("https://api.{}", self.domain))
    }

    /// Login base URL, without a trailing slash.
    pub fn login_base_url(&self) -> String {
        base_or(&self.login_url, || format!("https://login.{}", self.domain))
    }

    /// How long one call may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// How long before expiry a cached token is renewed.
    pub fn token_refresh_margin(&self) -> Duration {
        Duration::from_secs(self.token_refresh_margin_secs)
    }
}

impl MetricsSettings {
    /// Time between queue depth polls (zero = no polling).
    pub fn queue_poll_interval(&self) -> Duration {
        Duration::from_millis(self.queue_poll_interval_ms)
    }
}

fn base_or(value: &str, default: impl FnOnce() -> String) -> String {
    let value = value.trim();
    if value.is_empty() {
        default()
    } else {
        value.trim_end_matches('/').to_string()
    }
}

/// Accepts `url = "amqp://…"` as well as `url = ["amqp://a", "amqp://b"]`.
fn one_or_many_secrets<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![SecretString::from(s)],
        OneOrMany::Many(v) => v.into_iter().map(SecretString::from).collect(),
    })
}

#[cfg(test)]
mod tests;
