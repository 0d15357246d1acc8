//! What every scenario does the same way: a folder of its own, a sandbox with the routing
//! queues, the service's environment (External Contacts on, routing by transfer, so that
//! duplicated effects show), the two service processes, the load, and a progress line.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prechat_sim::{SimConfig, SimHandle};

use super::audit::{Audit, Tally};
use super::load::{self, Answer, Planned, Progress, Sent};
use super::mode::{chaos_dir, Mode};
use super::rabbit::RabbitNode;
use super::service::Service;
use crate::common;

/// One running scenario.
pub struct Scenario {
    /// Row label in the report.
    pub label: &'static str,
    /// Quick or long.
    pub mode: Mode,
    /// `target/chaos/<slug>`: broker data and logs, service logs.
    pub dir: PathBuf,
    /// The sandbox (Genesys + CRM).
    pub sim: SimHandle,
    /// The service's namespace on the broker.
    pub namespace: String,
    /// When the scenario began.
    pub begun: Instant,
    /// When the load began (before: when the scenario began); `t` counts from here.
    pub started: Instant,
    /// The ingest's port.
    pub ingest_port: u16,
    /// Faults and facts, for the notes.
    pub notes: Vec<String>,
    /// Failures the scenario found along the way.
    pub problems: Vec<String>,
}

impl Scenario {
    /// A fresh folder and sandbox (`latency_ms` on every call), with the routing queues.
    pub async fn begin(slug: &str, label: &'static str, latency_ms: u64) -> Self {
        let mode = Mode::from_env();
        let dir = chaos_dir().join(slug);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scenario folder");
        let sim = prechat_sim::spawn(SimConfig {
            requests_per_minute: 1_000_000,
            latency_ms,
            ..SimConfig::default()
        })
        .await
        .expect("the sandbox starts");
        for (_, queue) in load::QUEUES {
            sim.seed_queue(queue);
        }
        eprintln!("chaos: {label} ({}) in {}", mode.as_str(), dir.display());
        Self {
            label,
            mode,
            dir,
            sim,
            namespace: format!("chaos-{slug}"),
            begun: Instant::now(),
            started: Instant::now(),
            ingest_port: common::free_port(),
            notes: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Where this scenario's RabbitMQ nodes keep their files.
    pub fn rabbit_root(&self) -> PathBuf {
        self.dir.join("rabbitmq")
    }

    /// The service's environment against `amqp_urls`, with `extra` applied last.
    pub fn service_env(
        &self,
        amqp_urls: &[String],
        extra: &[(&str, &str)],
    ) -> HashMap<String, String> {
        let bind = format!("127.0.0.1:{}", self.ingest_port);
        let urls = amqp_urls.join(",");
        // Every setting a scenario's timing depends on is pinned here, not taken from the
        // harness's defaults.
        let mut overrides: Vec<(&str, &str)> = vec![
            ("PRECHAT__AMQP__URL", &urls),
            // The default points at the shared broker's management API: stay off it.
            ("PRECHAT__AMQP__MANAGEMENT_URL", ""),
            ("PRECHAT__AMQP__RETRY_DELAYS_SECS", "1,2,5"),
            ("PRECHAT__INGEST__BIND", &bind),
            ("PRECHAT__AMQP__PUBLISH_TIMEOUT_MS", "2000"),
            ("PRECHAT__INGEST__REQUEST_TIMEOUT_MS", "10000"),
            ("PRECHAT__WORKER__CONCURRENCY", "8"),
            ("PRECHAT__WORKER__RETRY_BASE_MS", "200"),
            ("PRECHAT__WORKER__RETRY_MAX_MS", "2000"),
            ("PRECHAT__WORKER__SHUTDOWN_TIMEOUT_SECS", "5"),
            ("PRECHAT__WORKER__PROBE_INTERVAL_MS", "1000"),
            ("PRECHAT__WORKER__MAX_ATTEMPTS", "12"),
            ("PRECHAT__WORKER__OUTAGE_THRESHOLD", "5"),
            ("PRECHAT__CRM__TIMEOUT_MS", "2000"),
            ("PRECHAT__GENESYS__TIMEOUT_MS", "3000"),
            ("PRECHAT__GENESYS__REQUESTS_PER_MINUTE", "100000"),
            ("PRECHAT__RESOLVER__POLL_INTERVAL_MS", "500"),
            ("PRECHAT__GENESYS__EXTERNAL_CONTACTS__ENABLED", "true"),
            ("PRECHAT__ROUTING__MODE", "transfer"),
            ("PRECHAT__ROUTING__QUEUES__GOLD", "Gold Support"),
            ("PRECHAT__ROUTING__QUEUES__PLATINUM", "Platinum Support"),
            ("PRECHAT__ROUTING__QUEUES__STANDARD", "Standard Support"),
            ("PRECHAT__LOG__LEVEL", "info"),
        ];
        overrides.extend_from_slice(extra);
        common::test_env(&self.sim, &self.namespace, &overrides)
    }

    /// The ingest process (not started).
    pub fn ingest(&self, env: &HashMap<String, String>) -> Service {
        Service::new("ingest", env.clone(), &self.dir)
    }

    /// The worker process (not started).
    pub fn worker(&self, env: &HashMap<String, String>) -> Service {
        Service::new("worker", env.clone(), &self.dir)
    }

    /// Starts one private node, the ingest (waits until it is ready) and the worker.
    pub async fn single_node(
        &self,
        short: &str,
        port: u16,
        extra: &[(&str, &str)],
    ) -> (RabbitNode, Service, Service) {
        let mut node = RabbitNode::new(&self.rabbit_root(), short, port).expect("node folders");
        node.start()
            .await
            .expect("the private RabbitMQ node starts");
        let env = self.service_env(&[node.url()], extra);
        let mut ingest = self.ingest(&env);
        ingest.start().expect("ingest starts");
        self.wait_ingest_ready().await;
        let mut worker = self.worker(&env);
        worker.start().expect("worker starts");
        (node, ingest, worker)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn ingest_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ingest_port)
    }

    /// Waits (60 s at most) until the ingest answers `/readyz` with 200.
    pub async fn wait_ingest_ready(&self) {
        let client = common::http();
        let url = format!("{}/readyz", self.ingest_url());
        let ready = common::wait_until(Duration::from_secs(60), || async {
            let response = client.get(&url).send().await.ok()?;
            (response.status() == 200).then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "{}: the ingest never became ready",
            self.label
        );
    }

    /// `n` seeded submissions.
    pub fn plan(&self, n: usize) -> Vec<Planned> {
        load::seed(&self.sim, n, &self.namespace)
    }

    /// Starts sending `plan` at `per_second` in the background; `t` counts from now.
    pub fn send(
        &mut self,
        plan: Vec<Planned>,
        per_second: f64,
        progress: Arc<Progress>,
    ) -> tokio::task::JoinHandle<Vec<Sent>> {
        let url = self.ingest_url();
        self.started = Instant::now();
        let started = self.started;
        tokio::spawn(load::send(
            url,
            common::TOKEN,
            plan,
            per_second,
            16,
            started,
            progress,
        ))
    }

    /// Conversations carrying any submission's attributes.
    pub fn enriched_now(&self) -> usize {
        self.sim
            .conversations()
            .iter()
            .filter(|c| c.attributes.contains_key("enrichedAt"))
            .count()
    }

    /// Seconds since the scenario began.
    pub fn t(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// A progress line on stderr.
    pub fn progress(&self, progress: &Progress, what: &str) {
        eprintln!(
            "chaos: t={:>5.1}s answered={} 202={} 503={} enriched={} {what}",
            self.t(),
            progress.answered.load(Ordering::Relaxed),
            progress.accepted.load(Ordering::Relaxed),
            progress.unavailable.load(Ordering::Relaxed),
            self.enriched_now(),
        );
    }

    /// Sleeps `duration` while printing progress every few seconds.
    pub async fn pause(&self, duration: Duration, progress: &Progress, what: &str) {
        let end = Instant::now() + duration;
        while Instant::now() < end {
            let step = (end - Instant::now()).min(Duration::from_secs(3));
            tokio::time::sleep(step).await;
            self.progress(progress, what);
        }
    }

    /// Waits until the load is sent, drains (bounded), counts, writes the row; the caller
    /// then asserts with [`Tally::report_and_assert`].
    pub async fn finish(
        &mut self,
        node: &RabbitNode,
        amqp_urls: Vec<String>,
        sent: Vec<Sent>,
        services: &mut [&mut Service],
    ) -> Tally {
        let audit = Audit {
            sim: &self.sim,
            namespace: &self.namespace,
            amqp_urls,
            dir: &self.dir,
        };
        let drain = self
            .mode
            .pick(Duration::from_secs(120), Duration::from_secs(300));
        if !audit.wait_drained(node, &sent, drain).await {
            self.problems
                .push(format!("the system did not drain within {drain:?}"));
        }
        // A moment for writes still in flight (a late answer) to land before counting.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut tally = audit.tally(self.label, &sent, self.begun.elapsed()).await;
        for service in services.iter_mut() {
            service.check_alive();
            for exit in &service.unexpected_exits {
                self.problems.push(exit.clone());
            }
            if service.starts > 1 {
                self.notes.push(format!(
                    "`{}` started {} times",
                    service.role, service.starts
                ));
            }
        }
        let slow: Vec<&Sent> = sent
            .iter()
            .filter(|s| s.took > Duration::from_secs(12))
            .collect();
        if !slow.is_empty() {
            self.problems.push(format!(
                "{} ingest answers took longer than 12 s (ingest.request_timeout_ms is 10 s), the slowest {:?}",
                slow.len(),
                slow.iter().map(|s| s.took).max()
            ));
        }
        let no_answer: Vec<&str> = sent
            .iter()
            .filter_map(|s| match &s.answer {
                load::Answer::Unanswered(e) => Some(e.as_str()),
                _ => None,
            })
            .collect();
        if !no_answer.is_empty() {
            self.notes.push(format!(
                "{} requests got no HTTP answer, e.g. {:?}",
                no_answer.len(),
                no_answer.first()
            ));
        }
        tally.notes.splice(0..0, self.notes.drain(..));
        tally.problems.append(&mut self.problems);
        for service in services.iter_mut() {
            if service.check_alive() {
                match service.terminate(Duration::from_secs(30)).await {
                    Ok(status) if !status.success() => tally
                        .problems
                        .push(format!("`{}` exited {status} after SIGTERM", service.role)),
                    Ok(_) => {}
                    Err(error) => tally.problems.push(error.to_string()),
                }
            }
        }
        self.sim.shutdown();
        tally
    }
}

/// The first 202 whose request started at or after `t` seconds, as seconds after `t`.
pub fn first_accept_after(sent: &[Sent], t: f64) -> Option<f64> {
    sent.iter()
        .filter(|s| s.answer == Answer::Accepted && s.at.as_secs_f64() >= t)
        .map(|s| s.at.as_secs_f64() + s.took.as_secs_f64() - t)
        .reduce(f64::min)
}

/// Waits (at most `limit`) until one more conversation is enriched than now; seconds taken.
pub async fn next_enrichment(s: &Scenario, limit: Duration) -> Option<f64> {
    let before = s.enriched_now();
    let start = std::time::Instant::now();
    common::wait_until(limit, || async {
        (s.enriched_now() > before).then_some(())
    })
    .await
    .map(|_| start.elapsed().as_secs_f64())
}

/// The start of the last 503 among requests started after `from` and answered before `to`
/// (seconds).
pub fn last_unavailable_between(sent: &[Sent], from: f64, to: f64) -> Option<f64> {
    // Answered before `to`: a 503 answered after the next fault began is that fault's.
    sent.iter()
        .filter(|s| s.answer == Answer::Unavailable)
        .filter(|s| (s.at + s.took).as_secs_f64() < to)
        .map(|s| s.at.as_secs_f64())
        .filter(|at| *at >= from)
        .reduce(f64::max)
}
