//! Workers: a backlog of submissions (each with its own seeded conversation) waits in the
//! work queue before one `worker` process starts; the sandbox has no latency and no budget to
//! speak of, and neither has the service. Throughput is counted from the sandbox's first
//! attribute write to its last, and CPU time per submission from the worker's own counters
//! over the same span.

use std::time::{Duration, Instant};

use anyhow::bail;
use prechat_sim::SeedConversation;
use serde::Serialize;

use crate::amqp::{self, submission_body};
use crate::context::{fast_sim, Bench};
use crate::say;
use crate::service::Service;

/// The worker figures.
#[derive(Debug, Serialize)]
pub struct WorkersResult {
    /// Submissions in the backlog.
    pub backlog: usize,
    /// `worker.concurrency` (prefetch) of the one process.
    pub concurrency: u16,
    /// Submissions enriched per second.
    pub per_sec: f64,
    /// Worker CPU time (user + system) per submission, microseconds.
    pub cpu_us_per_submission: f64,
    /// Cores the worker kept busy on average over the span (CPU seconds per second).
    pub cpu_cores_busy: f64,
    /// Genesys calls per submission seen by the sandbox over the span.
    pub genesys_calls_per_submission: f64,
    /// CRM calls per submission.
    pub crm_calls_per_submission: f64,
    /// The measured span, seconds.
    pub span_secs: f64,
    /// Rate of the pipelined publish of the backlog (driver → broker), messages per second.
    pub backlog_publish_per_sec: f64,
}

/// How often the sandbox's counters are read while the worker runs: reading them every 5 ms
/// (the sandbox runs in this process and shares its lock and the CPUs with the worker's calls)
/// cost the worker a third of its throughput; 50 ms costs nothing measurable, and bounds
/// the error of the span to 0.1 s.
const POLL: Duration = Duration::from_millis(50);

fn patches(sim: &prechat_sim::SimHandle) -> u64 {
    sim.stats()
        .statuses
        .get("patch_attributes 202")
        .copied()
        .unwrap_or(0)
}

/// Runs the phase.
pub async fn run(bench: &Bench) -> anyhow::Result<WorkersResult> {
    let backlog = bench.pick(2_000, 20_000);
    let concurrency: u16 = 8;
    say(&format!(
        "workers: backlog of {backlog}, one worker process, concurrency {concurrency}"
    ));
    let sim = prechat_sim::spawn(fast_sim()).await?;
    let namespace = bench.namespace("workers");
    let env = bench.service_env(
        &sim,
        &namespace,
        &[("PRECHAT__WORKER__CONCURRENCY", &concurrency.to_string())],
    );
    let topology = bench.topology(&env)?;
    let broker = bench.broker("prechat-bench workers");
    topology.declare(&broker).await?;
    let conversations: Vec<String> = (0..backlog)
        .map(|_| sim.seed_conversation(SeedConversation::default()).id)
        .collect();
    let run_id = bench.run_id.clone();
    let published = amqp::publish_pipelined(
        &broker,
        &topology.ingest_exchange(),
        backlog,
        2,
        1_000,
        move |i| {
            let id = format!("bench-{run_id}-w-{i}");
            (submission_body(i, &id, Some(&conversations[i])), id)
        },
    )
    .await?;

    let service = Service::start(bench, "worker", env, "workers").await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let (t0, cpu0, done0, stats0) = loop {
        let done = patches(&sim);
        if done > 0 {
            break (Instant::now(), service.cpu_secs()?, done, sim.stats());
        }
        if Instant::now() > deadline {
            bail!("no submission enriched; see {}", service.log.display());
        }
        tokio::time::sleep(POLL).await;
    };
    while patches(&sim) < backlog as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {} of {backlog} enriched in time; see {}",
                patches(&sim),
                service.log.display()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let (t1, cpu1, stats1) = (Instant::now(), service.cpu_secs()?, sim.stats());
    let counted = (backlog as u64 - done0) as f64;
    let span = (t1 - t0).as_secs_f64();
    let result = WorkersResult {
        backlog,
        concurrency,
        per_sec: counted / span,
        cpu_us_per_submission: (cpu1 - cpu0) * 1e6 / counted,
        cpu_cores_busy: (cpu1 - cpu0) / span,
        genesys_calls_per_submission: (stats1.total_genesys_calls - stats0.total_genesys_calls)
            as f64
            / counted,
        crm_calls_per_submission: (stats1.crm_calls - stats0.crm_calls) as f64 / counted,
        span_secs: span,
        backlog_publish_per_sec: backlog as f64 / published.as_secs_f64(),
    };
    say(&format!(
        "workers: {:.0} submissions/s, {:.0} µs CPU each, {:.2} cores busy",
        result.per_sec, result.cpu_us_per_submission, result.cpu_cores_busy
    ));
    service.stop().await?;
    amqp::delete_namespace(&broker, &topology).await;
    broker.close().await;
    sim.shutdown();
    Ok(result)
}
