//! One `prechat-enricher` child process: started with an environment, awaited until ready,
//! read through `/proc` (CPU time, resident memory), stopped with SIGTERM.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use prechat_enricher::queue::{Broker, Topology};
use prechat_sim::wait;

use crate::context::Bench;

/// A running service process.
pub struct Service {
    child: tokio::process::Child,
    pid: u32,
    role: String,
    /// `http://127.0.0.1:PORT` when the role has the ingest.
    pub ingest_url: Option<String>,
    /// Its stderr/stdout (JSON log lines).
    pub log: PathBuf,
}

/// Resident memory of a process, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmHWM`: peak resident set, KiB.
    pub peak_kib: u64,
    /// `VmRSS`: resident set now, KiB.
    pub rss_kib: u64,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Service {
    /// Starts `prechat-enricher <role>` with `env` and waits until it is ready: `/readyz`
    /// answers 200 for roles with the ingest, the work queue has a consumer for `worker`.
    pub async fn start(
        bench: &Bench,
        role: &str,
        mut env: HashMap<String, String>,
        label: &str,
    ) -> anyhow::Result<Self> {
        let with_ingest = role == "serve" || role == "ingest";
        let ingest_url = if with_ingest {
            let port = free_port()?;
            env.insert("PRECHAT__INGEST__BIND".into(), format!("127.0.0.1:{port}"));
            Some(format!("http://127.0.0.1:{port}"))
        } else {
            None
        };
        let topology = bench.topology(&env)?;
        let log = bench.logs.join(format!("{label}.log"));
        let file = std::fs::File::create(&log)?;
        let mut command = tokio::process::Command::new(&bench.binary);
        command
            .arg(role)
            .current_dir(&bench.workdir)
            .env("PRECHAT_CONFIG_DIR", &bench.config_dir)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true);
        for (key, _) in std::env::vars() {
            let inherited_config = key.starts_with("PRECHAT")
                || key.starts_with("GENESYS_")
                || key.starts_with("CRM_")
                || key == "RUST_LOG";
            if inherited_config {
                command.env_remove(key);
            }
        }
        command.envs(&env);
        let child = command
            .spawn()
            .with_context(|| format!("starting {} {role}", bench.binary.display()))?;
        let pid = child.id().context("the child has a pid")?;
        let mut service = Self {
            child,
            pid,
            role: role.to_string(),
            ingest_url,
            log,
        };
        service.wait_ready(bench, &topology).await?;
        Ok(service)
    }

    async fn wait_ready(&mut self, bench: &Bench, topology: &Topology) -> anyhow::Result<()> {
        let http = reqwest::Client::new();
        let broker = bench.broker("prechat-bench readiness");
        let (role, log) = (self.role.clone(), self.log.display().to_string());
        let (child, ingest_url) = (&mut self.child, self.ingest_url.as_deref());
        // Ok once ready; an error ends the wait early (the process exited).
        let ready = wait::until_every(
            Duration::from_millis(50),
            Duration::from_secs(60),
            async || {
                match child.try_wait() {
                    Ok(Some(status)) => {
                        return Some(Err(anyhow!(
                            "{role} exited during start ({status}); see {log}"
                        )))
                    }
                    Err(error) => return Some(Err(error.into())),
                    Ok(None) => {}
                }
                let ready = match ingest_url {
                    Some(url) => http
                        .get(format!("{url}/readyz"))
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success()),
                    None => consumers(&broker, &topology.submissions_queue())
                        .await
                        .is_ok_and(|n| n > 0),
                };
                ready.then_some(Ok(()))
            },
        )
        .await;
        broker.close().await;
        ready.unwrap_or_else(|| Err(anyhow!("{role} not ready after 60 s; see {log}")))
    }

    /// The process's CPU time so far (user + system), from `/proc/<pid>/stat`.
    pub fn cpu_secs(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        // The command name may contain spaces; the fields after it are space separated.
        let after = stat.rsplit_once(')').context("malformed /proc stat")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        // Fields 14 (utime) and 15 (stime) of proc(5); `after` starts at field 3.
        let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        Ok(ticks as f64 / clock_ticks_per_sec() as f64)
    }

    /// Peak and current resident memory, from `/proc/<pid>/status`.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Memory {
            peak_kib: field("VmHWM:"),
            rss_kib: field("VmRSS:"),
        })
    }

    /// SIGTERM, then waits (up to 30 s) for a clean exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    crate::say(&format!(
                        "warning: {} exited with {status}; see {}",
                        self.role,
                        self.log.display()
                    ));
                }
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("{} did not stop within 30 s after SIGTERM", self.role)
            }
        }
    }
}

/// Consumers of a queue (0 when it does not exist yet).
pub async fn consumers(broker: &Broker, queue: &str) -> anyhow::Result<u32> {
    let channel = broker.channel().await?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    let _ = channel.close(200, "checked".into()).await;
    Ok(declared.map(|q| q.consumer_count()).unwrap_or(0))
}

/// `getconf CLK_TCK`, 100 on every Linux this runs on when it cannot be asked.
fn clock_ticks_per_sec() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}
