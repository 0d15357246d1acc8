//! Memory: the peak resident set (`VmHWM`) of a `worker` process while 1,000,000 submissions
//! wait in its queue (published straight to the ingest exchange with pipelined confirms
//! before it starts; it works through them at full speed while it is watched), next to two
//! baselines: the same process idle on an empty queue, and busy on a small backlog (so that
//! the cost of working and the cost of the backlog can be told apart). The worker holds at
//! most `worker.concurrency` messages (its prefetch), so the backlog should not show.

use std::time::{Duration, Instant};

use prechat_sim::SeedConversation;
use serde::Serialize;

use crate::amqp::{self, submission_body};
use crate::context::{fast_sim, Bench};
use crate::say;
use crate::service::{Memory, Service};

/// The memory figures.
#[derive(Debug, Serialize)]
pub struct MemoryResult {
    /// Seconds each worker was watched.
    pub watched_secs: u64,
    /// Idle worker on an empty queue (the baseline).
    pub idle: Watched,
    /// A worker busy on a small backlog (same work, small queue).
    pub busy_small_backlog: Watched,
    /// A worker busy on the big backlog.
    pub busy_big_backlog: Watched,
    /// big backlog peak / idle peak.
    pub ratio_to_idle: f64,
    /// big backlog peak / small backlog peak: what the backlog itself costs.
    pub ratio_to_small_backlog: f64,
    /// Pipelined publish of the big backlog (driver → broker), messages per second.
    pub publish_per_sec: f64,
    /// Seconds to publish the big backlog.
    pub publish_secs: f64,
    /// Seconds to delete the namespace (the big queue with it).
    pub delete_secs: f64,
}

/// One watched worker.
#[derive(Debug, Serialize)]
pub struct Watched {
    /// Submissions waiting when it started.
    pub backlog: usize,
    /// Peak resident set (`VmHWM`), MiB.
    pub peak_mib: f64,
    /// Submissions it enriched while watched.
    pub enriched: u64,
    /// Messages still waiting when the watch ended.
    pub still_waiting: u32,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

async fn watch(service: &Service, period: Duration) -> anyhow::Result<Memory> {
    let end = Instant::now() + period;
    let mut peak = service.memory()?;
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = service.memory()?;
        peak.peak_kib = peak.peak_kib.max(now.peak_kib);
        peak.rss_kib = peak.rss_kib.max(now.rss_kib);
    }
    Ok(peak)
}

/// Publishes `backlog` submissions (over a pool of seeded conversations), starts a worker,
/// watches it for `period`; (what it showed, publish time, delete time).
async fn watched_worker(
    bench: &Bench,
    label: &str,
    backlog: usize,
    period: Duration,
) -> anyhow::Result<(Watched, Duration, Duration)> {
    let sim = prechat_sim::spawn(fast_sim()).await?;
    let namespace = bench.namespace(&format!("memory-{label}"));
    let env = bench.service_env(&sim, &namespace, &[]);
    let topology = bench.topology(&env)?;
    let broker = bench.broker("prechat-bench memory");
    topology.declare(&broker).await?;
    let mut published = Duration::ZERO;
    if backlog > 0 {
        let pool: Vec<String> = (0..CONVERSATIONS_IN_POOL)
            .map(|_| sim.seed_conversation(SeedConversation::default()).id)
            .collect();
        say(&format!(
            "memory {label}: publishing {backlog} submissions (pipelined confirms)"
        ));
        let prefix = format!("bench-{}-m{label}", bench.run_id);
        let publish_broker = bench.broker("prechat-bench memory publish");
        published = amqp::publish_pipelined(
            &publish_broker,
            &topology.ingest_exchange(),
            backlog,
            4,
            2_000,
            move |i| {
                let id = format!("{prefix}-{i}");
                let conversation = &pool[i % pool.len()];
                (submission_body(i, &id, Some(conversation)), id)
            },
        )
        .await?;
        publish_broker.close().await;
        let waiting = amqp::ready_messages(&broker, &topology.submissions_queue()).await?;
        say(&format!(
            "memory {label}: {waiting} waiting after {:.1}s ({:.0}/s)",
            published.as_secs_f64(),
            backlog as f64 / published.as_secs_f64()
        ));
    }
    say(&format!(
        "memory {label}: watching a worker for {}s",
        period.as_secs()
    ));
    let service = Service::start(bench, "worker", env, &format!("memory-{label}")).await?;
    let memory = watch(&service, period).await?;
    service.stop().await?;
    let enriched = sim
        .stats()
        .statuses
        .get("patch_attributes 202")
        .copied()
        .unwrap_or(0);
    let still_waiting = amqp::ready_messages(&broker, &topology.submissions_queue()).await?;
    let deleting = Instant::now();
    amqp::delete_namespace(&broker, &topology).await;
    let deleted = deleting.elapsed();
    broker.close().await;
    sim.shutdown();
    let watched = Watched {
        backlog,
        peak_mib: mib(memory.peak_kib),
        enriched,
        still_waiting,
    };
    say(&format!(
        "memory {label}: peak {:.1} MiB, {} enriched, {} still waiting",
        watched.peak_mib, watched.enriched, watched.still_waiting
    ));
    Ok((watched, published, deleted))
}

/// Conversations the backlog's submissions are spread over.
const CONVERSATIONS_IN_POOL: usize = 1_000;

/// Runs the phase.
pub async fn run(bench: &Bench) -> anyhow::Result<MemoryResult> {
    let big = bench.pick(100_000, 1_000_000);
    let small = bench.pick(20_000, 50_000);
    let period = Duration::from_secs(bench.pick(10, 20));
    let (idle, _, _) = watched_worker(bench, "idle", 0, period).await?;
    let (busy_small, _, _) = watched_worker(bench, "small", small, period).await?;
    let (busy_big, published, deleted) = watched_worker(bench, "big", big, period).await?;
    Ok(MemoryResult {
        watched_secs: period.as_secs(),
        ratio_to_idle: busy_big.peak_mib / idle.peak_mib.max(1e-9),
        ratio_to_small_backlog: busy_big.peak_mib / busy_small.peak_mib.max(1e-9),
        publish_per_sec: big as f64 / published.as_secs_f64().max(1e-9),
        publish_secs: published.as_secs_f64(),
        delete_secs: deleted.as_secs_f64(),
        idle,
        busy_small_backlog: busy_small,
        busy_big_backlog: busy_big,
    })
}
