//! Private RabbitMQ nodes for the chaos scenarios, started from the Debian install with their
//! own node names, ports, data directories and Erlang cookie, so that stopping, crashing or
//! alarming them never touches the shared broker on 127.0.0.1:5672.
//!
//! The Debian wrappers in `/usr/sbin` switch to the `rabbitmq` user and its cookie; the
//! scripts behind them (`/usr/lib/rabbitmq/bin`) run as the caller with `HOME` pointing at
//! our own cookie. Every command runs under a time limit, and a [`RabbitNode`] shuts its
//! node down when dropped (a failed assertion included).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::Value;
use tokio::process::{Child, Command};

use super::pids;
use crate::common::wait_until_every;

/// Where the Debian package keeps the real (non-wrapper) scripts.
const DEFAULT_SBIN: &str = "/usr/lib/rabbitmq/bin";
/// Every node of every scenario has a name starting with this (scripts/chaos cleans up by it).
pub const NODE_PREFIX: &str = "prechat-chaos-";
/// A node boots in a few seconds here; a slow CI machine gets plenty more.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);
/// Upper bound of one `rabbitmqctl` call.
const CTL_TIMEOUT: Duration = Duration::from_secs(60);

fn sbin(tool: &str) -> PathBuf {
    let dir = std::env::var_os("CHAOS_RABBITMQ_SBIN")
        .map_or_else(|| PathBuf::from(DEFAULT_SBIN), PathBuf::from);
    dir.join(tool)
}

/// One RabbitMQ node of ours.
pub struct RabbitNode {
    /// `prechat-chaos-<short>@localhost`.
    pub name: String,
    /// AMQP port on 127.0.0.1.
    pub amqp_port: u16,
    dist_port: u16,
    /// Shared by the nodes of one scenario: the cookie's `HOME`.
    home: PathBuf,
    /// This node's config, data and logs.
    dir: PathBuf,
    process: Option<Child>,
}

impl RabbitNode {
    /// A node named `prechat-chaos-<short>@localhost` listening on `127.0.0.1:amqp_port`
    /// (Erlang distribution on `amqp_port + 20000`), with its files under `root/<short>`.
    /// Not started yet.
    pub fn new(root: &Path, short: &str, amqp_port: u16) -> anyhow::Result<Self> {
        let home = root.join("home");
        std::fs::create_dir_all(&home)?;
        let cookie = home.join(".erlang.cookie");
        if !cookie.exists() {
            std::fs::write(
                &cookie,
                format!("PRECHATCHAOS{}", uuid::Uuid::new_v4().simple()),
            )?;
            set_mode(&cookie, 0o400)?;
        }
        let dir = root.join(short);
        // Fresh data for every run; the logs of the last run stay until the next.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("enabled_plugins"), "[].\n")?;
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.1 = 127.0.0.1:{amqp_port}\n\
                 log.file.level = info\n\
                 log.console = false\n"
            ),
        )?;
        std::fs::write(dir.join("rabbitmq-env.conf"), "")?;
        Ok(Self {
            name: format!("{NODE_PREFIX}{short}@localhost"),
            amqp_port,
            dist_port: amqp_port + 20_000,
            home,
            dir,
            process: None,
        })
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f` (guest may log in from loopback).
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }

    fn env(&self, command: &mut Command) {
        let dir = &self.dir;
        command
            .env("HOME", &self.home)
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONF_ENV_FILE", dir.join("rabbitmq-env.conf"))
            .env("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", dir.join("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", dir.join("plugins-expand"))
            .env("RABBITMQ_MNESIA_BASE", dir.join("mnesia"))
            .env("RABBITMQ_QUORUM_DIR", dir.join("quorum"))
            .env("RABBITMQ_FEATURE_FLAGS_FILE", dir.join("feature_flags"))
            .env("RABBITMQ_LOG_BASE", dir.join("log"))
            .env("RABBITMQ_PID_FILE", dir.join("pid"))
            // Erlang distribution on loopback only.
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            );
    }

    /// Starts the node (first boot or a restart on the same data) and waits until it runs.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        if self.process.is_some() {
            bail!("{} already started", self.name);
        }
        if self.ping().await {
            // A node of an earlier, interrupted run still holds the name: it is ours.
            eprintln!(
                "chaos: stale node {} found running; shutting it down",
                self.name
            );
            let _ = self.ctl(&["shutdown"]).await;
        }
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.out"))?;
        let mut command = Command::new(sbin("rabbitmq-server"));
        self.env(&mut command);
        command
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.name))?;
        if let Some(pid) = child.id() {
            pids::register(pid, "rabbitmq-server");
        }
        self.process = Some(child);
        let booted = wait_until_every(Duration::from_millis(500), BOOT_TIMEOUT, async || {
            if let Some(process) = self.process.as_mut() {
                if let Ok(Some(status)) = process.try_wait() {
                    self.process = None;
                    return Some(Err(anyhow!(
                        "{} exited while booting ({status}); see {}",
                        self.name,
                        self.dir.join("server.out").display()
                    )));
                }
            }
            let started = self.ctl(&["await_startup", "--timeout", "10"]).await;
            started.is_ok().then_some(Ok(()))
        })
        .await;
        match booted {
            Some(result) => result?,
            None => bail!("{} did not boot within {BOOT_TIMEOUT:?}", self.name),
        }
        if let Some(pid) = self.beam_pid() {
            pids::register(pid, "beam.smp");
        }
        Ok(())
    }

    /// Whether the node answers `rabbitmqctl ping`.
    pub async fn ping(&self) -> bool {
        self.ctl(&["ping", "--timeout", "5"]).await.is_ok()
    }

    /// Whether this handle started the node and it has not been stopped.
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// `rabbitmqctl -n <node> ARGS…`, its stdout.
    pub async fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        self.tool("rabbitmqctl", args).await
    }

    /// `rabbitmq-diagnostics -n <node> ARGS…`, its stdout.
    pub async fn diagnostics(&self, args: &[&str]) -> anyhow::Result<String> {
        self.tool("rabbitmq-diagnostics", args).await
    }

    async fn tool(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        let mut command = Command::new(sbin(tool));
        self.env(&mut command);
        command
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(CTL_TIMEOUT, command.output())
            .await
            .with_context(|| format!("{tool} {args:?} timed out"))??;
        if !output.status.success() {
            bail!(
                "{tool} -n {} {args:?}: {}{}",
                self.name,
                String::from_utf8_lossy(&output.stdout).trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Graceful stop: `rabbitmqctl shutdown` (waits for the VM to exit).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let result = self.ctl(&["shutdown"]).await;
        self.reap(Duration::from_secs(30)).await;
        result.map(|_| ())
    }

    /// Hard crash: SIGKILL to the Erlang VM, no chance to flush or say goodbye.
    pub async fn crash(&mut self) -> anyhow::Result<()> {
        let pid = self.beam_pid().context("no pid file")?;
        let status = tokio::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .await?;
        if !status.success() {
            bail!("kill -KILL {pid} failed");
        }
        self.reap(Duration::from_secs(30)).await;
        Ok(())
    }

    async fn reap(&mut self, timeout: Duration) {
        if let Some(mut process) = self.process.take() {
            if tokio::time::timeout(timeout, process.wait()).await.is_err() {
                let _ = process.start_kill();
                let _ = process.wait().await;
            }
        }
        let _ = std::fs::remove_file(self.dir.join("pid"));
    }

    fn beam_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Makes this node join `other`'s cluster (stop_app, join_cluster, start_app).
    pub async fn join(&self, other: &RabbitNode) -> anyhow::Result<()> {
        self.ctl(&["stop_app"]).await?;
        self.ctl(&["join_cluster", &other.name]).await?;
        self.ctl(&["start_app"]).await?;
        self.ctl(&["await_startup", "--timeout", "60"]).await?;
        Ok(())
    }

    /// `list_queues` of the queues whose name starts with `prefix`, as JSON objects with
    /// the given `columns`.
    pub async fn queues(&self, prefix: &str, columns: &[&str]) -> anyhow::Result<Vec<Value>> {
        let mut args = vec![
            "list_queues",
            "-q",
            "--formatter",
            "json",
            "--timeout",
            "30",
        ];
        args.extend_from_slice(columns);
        let text = self.ctl(&args).await?;
        let all: Vec<Value> = serde_json::from_str(text.trim())
            .with_context(|| format!("list_queues output not understood: {text}"))?;
        Ok(all
            .into_iter()
            .filter(|q| q["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .collect())
    }

    /// Messages (ready + unacked) in every queue whose name starts with `prefix`, by name.
    pub async fn depths(&self, prefix: &str) -> anyhow::Result<Vec<(String, u64)>> {
        Ok(self
            .queues(prefix, &["name", "messages"])
            .await?
            .into_iter()
            .map(|q| {
                (
                    q["name"].as_str().unwrap_or_default().to_string(),
                    q["messages"].as_u64().unwrap_or(0),
                )
            })
            .collect())
    }

    /// The alarms in effect on this node (`rabbitmq-diagnostics alarms`), as text.
    pub async fn alarms(&self) -> anyhow::Result<String> {
        self.diagnostics(&["alarms", "-q"]).await
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        if self.process.is_none() {
            return;
        }
        // A synchronous, bounded shutdown: Drop cannot await.
        let mut command = std::process::Command::new("timeout");
        command.arg("30").arg(sbin("rabbitmqctl"));
        command
            .arg("-n")
            .arg(&self.name)
            .arg("shutdown")
            .env("HOME", &self.home)
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("rabbitmq-env.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let stopped = command.status().is_ok_and(|s| s.success());
        if !stopped {
            if let Some(pid) = self.beam_pid() {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        if let Some(process) = self.process.as_mut() {
            let _ = process.start_kill();
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Three nodes joined into one cluster, the first being the seed.
pub struct Cluster {
    /// The nodes, in the order of their AMQP URLs.
    pub nodes: Vec<RabbitNode>,
}

impl Cluster {
    /// Starts `prechat-chaos-<short>1..3` on `first_port..first_port+2` and joins the second
    /// and third to the first; checks that all three are running members.
    pub async fn start(root: &Path, short: &str, first_port: u16) -> anyhow::Result<Self> {
        let mut nodes = Vec::new();
        for i in 0..3u16 {
            nodes.push(RabbitNode::new(
                root,
                &format!("{short}{}", i + 1),
                first_port + i,
            )?);
        }
        // Booting is most of the wait: boot the three at once.
        for result in futures_util::future::join_all(nodes.iter_mut().map(RabbitNode::start)).await
        {
            result?;
        }
        for i in 1..3 {
            nodes[i].join(&nodes[0]).await?;
        }
        let cluster = Self { nodes };
        let status = cluster.nodes[0]
            .ctl(&["cluster_status", "--formatter", "json"])
            .await?;
        let status: Value = serde_json::from_str(status.trim())?;
        let running = status["running_nodes"].as_array().map_or(0, Vec::len);
        if running != 3 {
            bail!("the cluster formed with {running} running nodes, not 3: {status}");
        }
        Ok(cluster)
    }

    /// Every node's AMQP URL, comma-separated (the service's `PRECHAT__AMQP__URL`).
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RabbitNode::url).collect()
    }

    /// A node that is up, to ask questions to.
    pub fn any_running(&self) -> &RabbitNode {
        self.nodes
            .iter()
            .find(|n| n.is_running())
            .expect("at least one node runs")
    }

    /// The index of the node by name.
    pub fn index_of(&self, node_name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == node_name)
    }
}
