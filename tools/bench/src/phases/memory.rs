//! Memory: the peak resident set (`VmHWM`) of a `worker` process while 1,000,000 submissions
//! wait in its queue (published straight to the ingest exchange with pipelined confirms
//! before it starts; it works through them at full speed while it is watched), next to the
//! same process idle on an empty queue. The worker holds at most `worker.concurrency`
//! messages (its prefetch), so the backlog should not show in its memory.

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
    /// Submissions waiting when the loaded worker started.
    pub backlog: usize,
    /// Seconds each worker was watched.
    pub watched_secs: u64,
    /// Idle worker: peak resident set, MiB.
    pub idle_peak_mib: f64,
    /// Loaded worker: peak resident set, MiB.
    pub loaded_peak_mib: f64,
    /// loaded / idle.
    pub ratio: f64,
    /// Submissions the loaded worker enriched while watched.
    pub enriched_while_watched: u64,
    /// Messages still waiting when the watch ended.
    pub still_waiting: u32,
    /// Pipelined publish of the backlog (driver → broker), messages per second.
    pub publish_per_sec: f64,
    /// Seconds to publish the backlog.
    pub publish_secs: f64,
    /// Seconds to delete the namespace (the 1M-message queue with it).
    pub delete_secs: f64,
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

/// Runs the phase.
pub async fn run(bench: &Bench) -> anyhow::Result<MemoryResult> {
    let backlog = bench.pick(100_000, 1_000_000);
    let period = Duration::from_secs(bench.pick(10, 20));
    let conversations_in_pool = 1_000;

    say(&format!("memory: idle worker for {}s", period.as_secs()));
    let idle_sim = prechat_sim::spawn(fast_sim()).await?;
    let idle_namespace = bench.namespace("memory-idle");
    let idle_env = bench.service_env(&idle_sim, &idle_namespace, &[]);
    let idle_topology = bench.topology(&idle_env)?;
    let broker = bench.broker("prechat-bench memory");
    let idle = Service::start(bench, "worker", idle_env, "memory-idle").await?;
    let idle_memory = watch(&idle, period).await?;
    idle.stop().await?;
    amqp::delete_namespace(&broker, &idle_topology).await;
    idle_sim.shutdown();

    let sim = prechat_sim::spawn(fast_sim()).await?;
    let namespace = bench.namespace("memory");
    let env = bench.service_env(&sim, &namespace, &[]);
    let topology = bench.topology(&env)?;
    topology.declare(&broker).await?;
    let pool: Vec<String> = (0..conversations_in_pool)
        .map(|_| sim.seed_conversation(SeedConversation::default()).id)
        .collect();
    say(&format!(
        "memory: publishing {backlog} submissions (pipelined confirms)"
    ));
    let prefix = format!("bench-{}-m", bench.run_id);
    let publish_broker = bench.broker("prechat-bench memory publish");
    let published = amqp::publish_pipelined(
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
        "memory: {waiting} waiting after {:.1}s ({:.0}/s); loaded worker for {}s",
        published.as_secs_f64(),
        backlog as f64 / published.as_secs_f64(),
        period.as_secs()
    ));
    let loaded = Service::start(bench, "worker", env, "memory-loaded").await?;
    let loaded_memory = watch(&loaded, period).await?;
    loaded.stop().await?;
    let enriched = sim
        .stats()
        .statuses
        .get("patch_attributes 202")
        .copied()
        .unwrap_or(0);
    let still_waiting = amqp::ready_messages(&broker, &topology.submissions_queue()).await?;
    let deleting = Instant::now();
    amqp::delete_namespace(&broker, &topology).await;
    let delete_secs = deleting.elapsed().as_secs_f64();
    broker.close().await;
    sim.shutdown();
    let result = MemoryResult {
        backlog,
        watched_secs: period.as_secs(),
        idle_peak_mib: mib(idle_memory.peak_kib),
        loaded_peak_mib: mib(loaded_memory.peak_kib),
        ratio: loaded_memory.peak_kib as f64 / idle_memory.peak_kib.max(1) as f64,
        enriched_while_watched: enriched,
        still_waiting,
        publish_per_sec: backlog as f64 / published.as_secs_f64(),
        publish_secs: published.as_secs_f64(),
        delete_secs,
    };
    say(&format!(
        "memory: idle {:.1} MiB, loaded {:.1} MiB (×{:.2})",
        result.idle_peak_mib, result.loaded_peak_mib, result.ratio
    ));
    Ok(result)
}
