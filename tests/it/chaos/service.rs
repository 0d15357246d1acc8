//! The real `prechat-enricher` binary run as a child process (`ingest` or `worker`), with the
//! environment of the test harness, its output appended to a log file, and SIGKILL or
//! SIGTERM on demand. Killed when dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use super::pids;

/// One service process, restartable.
pub struct Service {
    /// `ingest` or `worker` (the subcommand).
    pub role: &'static str,
    env: HashMap<String, String>,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// How many times it was started.
    pub starts: u32,
    /// Exits the suite did not cause (a crash of the service is a finding).
    pub unexpected_exits: Vec<String>,
}

impl Service {
    /// A process running `prechat-enricher <role>` with `env`, logging to `dir/<role>.log`.
    pub fn new(role: &'static str, env: HashMap<String, String>, dir: &Path) -> Self {
        Self {
            role,
            env,
            dir: dir.to_path_buf(),
            log: dir.join(format!("{role}.log")),
            child: None,
            starts: 0,
            unexpected_exits: Vec::new(),
        }
    }

    /// Starts the process (again).
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("{} already running", self.role);
        }
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        self.starts += 1;
        use std::io::Write;
        writeln!(
            log,
            "===== chaos: start #{} of `{}` at {} =====",
            self.starts,
            self.role,
            chrono::Utc::now().to_rfc3339()
        )?;
        let child = Command::new(env!("CARGO_BIN_EXE_prechat-enricher"))
            .arg(self.role)
            // Its own folder: no stray `.env` of the checkout is read.
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PRECHAT_CONFIG_DIR", crate::common::config_dir())
            .env("NO_COLOR", "1")
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting prechat-enricher {}", self.role))?;
        if let Some(pid) = child.id() {
            pids::register(pid, "prechat-enricher");
        }
        self.child = Some(child);
        Ok(())
    }

    /// Records an exit nobody asked for; true while the process runs.
    pub fn check_alive(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        match child.try_wait() {
            Ok(None) => true,
            Ok(Some(status)) => {
                self.unexpected_exits.push(format!(
                    "`{}` (start #{}) exited by itself: {status}; see {}",
                    self.role,
                    self.starts,
                    self.log.display()
                ));
                self.child = None;
                false
            }
            Err(_) => false,
        }
    }

    /// SIGKILL, and waits for the process to be gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.check_alive();
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit (SIGKILL after that).
    pub async fn terminate(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        self.check_alive();
        let Some(mut child) = self.child.take() else {
            bail!("{} is not running", self.role);
        };
        if let Some(pid) = child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                child.start_kill()?;
                child.wait().await?;
                bail!("{} did not exit within {timeout:?} of SIGTERM", self.role)
            }
        }
    }

    /// Lines of its log containing `needle` (for evidence in the report).
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect()
    }
}
