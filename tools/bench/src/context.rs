//! What every phase shares: where the binary and the config are, the broker, the run id
//! that prefixes every namespace, and the service's environment against a sandbox.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use prechat_enricher::config::Settings;
use prechat_enricher::queue::{Broker, Topology};
use prechat_sim::SimHandle;

/// The bearer token the benchmark's ingest accepts.
pub const TOKEN: &str = "bench-ingest-token";

/// Shared settings of one benchmark run.
pub struct Bench {
    /// The release `prechat-enricher` binary.
    pub binary: PathBuf,
    /// The repository's `config/` folder (`PRECHAT_CONFIG_DIR` of the children).
    pub config_dir: PathBuf,
    /// Where children's logs go.
    pub logs: PathBuf,
    /// An empty working directory for the children (no stray `.env` is read).
    pub workdir: PathBuf,
    /// The broker.
    pub amqp_url: String,
    /// Prefix of this run's namespaces.
    pub run_id: String,
    /// Smaller loads, for trying the bench out.
    pub quick: bool,
}

impl Bench {
    /// Checks the paths and makes the log and work folders.
    pub fn new(repo: &Path, binary: &Path, quick: bool) -> anyhow::Result<Self> {
        let repo = repo
            .canonicalize()
            .with_context(|| format!("repository {}", repo.display()))?;
        let binary = binary
            .canonicalize()
            .with_context(|| format!("binary {}", binary.display()))?;
        let config_dir = repo.join("config");
        anyhow::ensure!(
            config_dir.join("default.toml").exists(),
            "{} has no default.toml",
            config_dir.display()
        );
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..6].to_string();
        let base = repo.join("tools/bench/target/bench-run");
        let logs = base.join(format!("logs-{run_id}"));
        let workdir = base.join("workdir");
        std::fs::create_dir_all(&logs)?;
        std::fs::create_dir_all(&workdir)?;
        Ok(Self {
            binary,
            config_dir,
            logs,
            workdir,
            amqp_url: std::env::var("AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
            run_id,
            quick,
        })
    }

    /// This run's namespace for `phase`.
    pub fn namespace(&self, phase: &str) -> String {
        format!("bench-{}-{phase}", self.run_id)
    }

    /// `quick` or `full`, whichever applies.
    pub fn pick<T>(&self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// A connection of the driver's own.
    pub fn broker(&self, name: &str) -> Broker {
        Broker::new(&[self.amqp_url.clone().into()], name)
    }

    /// The environment of a service child against `sim` in `namespace`; `overrides` last.
    /// Budgets default to "out of the way"; phases that measure them set their own.
    pub fn service_env(
        &self,
        sim: &SimHandle,
        namespace: &str,
        overrides: &[(&str, &str)],
    ) -> HashMap<String, String> {
        let base = sim.base_url();
        let mut env: HashMap<String, String> = [
            ("PRECHAT__AMQP__URL", self.amqp_url.clone()),
            ("PRECHAT__AMQP__NAMESPACE", namespace.to_string()),
            ("PRECHAT__INGEST__BIND", "127.0.0.1:0".into()),
            ("PRECHAT__INGEST__AUTH_TOKENS", TOKEN.into()),
            ("PRECHAT__WORKER__SHUTDOWN_TIMEOUT_SECS", "5".into()),
            ("PRECHAT__CRM__BASE_URL", base.clone()),
            ("PRECHAT__CRM__API_KEY", "sandbox-crm-key".into()),
            ("PRECHAT__GENESYS__API_URL", base.clone()),
            ("PRECHAT__GENESYS__LOGIN_URL", base),
            ("PRECHAT__GENESYS__CLIENT_ID", "sandbox-client".into()),
            ("PRECHAT__GENESYS__CLIENT_SECRET", "sandbox-secret".into()),
            ("PRECHAT__GENESYS__REQUESTS_PER_MINUTE", "100000000".into()),
            ("PRECHAT__LOG__FORMAT", "json".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        for (key, value) in overrides {
            env.insert(key.to_string(), value.to_string());
        }
        env
    }

    /// The topology the service will declare for `env` (same arguments, so the driver may
    /// declare it first and publish a backlog before a worker starts).
    pub fn topology(&self, env: &HashMap<String, String>) -> anyhow::Result<Topology> {
        let settings = Settings::load_from(&self.config_dir, env).context("loading settings")?;
        Ok(Topology::new(&settings.amqp))
    }
}

/// A sandbox whose budget is out of the way.
pub fn fast_sim() -> prechat_sim::SimConfig {
    prechat_sim::SimConfig {
        requests_per_minute: 100_000_000,
        ..prechat_sim::SimConfig::default()
    }
}
