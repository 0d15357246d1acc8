//! The Genesys budget, with a backlog bigger than the budget allows: three scenarios run side
//! by side (each its own sandbox, namespace and `worker` process; the limiter leaves the CPU
//! idle), watched through the sandbox's counters every 20 ms for two full minutes from the
//! first call.
//!
//! - `equal`: sandbox and config both at 300/min: the share of each minute's budget used,
//!   and the 429s (expected none: the limiter spreads calls evenly and pauses when the
//!   `inin-ratelimit-*` headers say the window is spent).
//! - `tighter`: sandbox 60/min, config 300/min: the service reads `inin-ratelimit-allowed`
//!   and slows down; the 429s and the pauses.
//! - `lowered`: both at 300/min until the sandbox drops to 60/min 30 s in, mid-window: the
//!   next call is a 429, and the service pauses every caller until `Retry-After`; the
//!   429s per pause.
//!
//! The sandbox answers after 100 ms (a realistic API latency), so that calls overlap.

use std::time::{Duration, Instant};

use anyhow::bail;
use prechat_sim::{SeedConversation, SimConfig, SimHandle};
use serde::Serialize;

use crate::amqp::{self, submission_body};
use crate::context::Bench;
use crate::say;
use crate::service::Service;

/// One minute of a scenario, from the sandbox's counters.
#[derive(Debug, Serialize)]
pub struct Minute {
    /// Calls the sandbox admitted (not 429).
    pub admitted: u64,
    /// Calls answered 429.
    pub rate_limited: u64,
    /// `admitted` / the sandbox's limit at the end of the minute.
    pub share_of_budget: f64,
}

/// One scenario's figures.
#[derive(Debug, Serialize)]
pub struct Scenario {
    /// `equal`, `tighter`, `lowered`.
    pub name: String,
    /// The sandbox's limit per token (at the end, for `lowered`).
    pub sandbox_per_minute: u32,
    /// `genesys.requests_per_minute`.
    pub config_per_minute: u32,
    /// Submissions waiting at the start.
    pub backlog: usize,
    /// The two watched minutes.
    pub minutes: Vec<Minute>,
    /// 429s answered by the sandbox over both minutes.
    pub rate_limited: u64,
    /// 429s the service logged ("pausing every caller").
    pub service_logged_429s: usize,
    /// Stretches without any call longer than 1.6 × the expected spacing (≥ 0.5 s).
    pub pauses: usize,
    /// The longest such stretch, seconds.
    pub longest_pause_secs: f64,
    /// `rate_limited / pauses` (0 when there was no pause).
    pub rate_limited_per_pause: f64,
    /// Times the service adjusted its limiter to the server's limit (log lines).
    pub limiter_adjustments: usize,
    /// Submissions enriched over both minutes.
    pub enriched: u64,
}

/// The budget figures.
#[derive(Debug, Serialize)]
pub struct BudgetResult {
    /// Added sandbox latency, ms.
    pub sandbox_latency_ms: u64,
    /// The scenarios.
    pub scenarios: Vec<Scenario>,
}

struct Plan {
    name: &'static str,
    sandbox: u32,
    config: u32,
    lower_to_after: Option<(u32, Duration)>,
    backlog: usize,
}

/// Runs the phase.
pub async fn run(bench: &Bench) -> anyhow::Result<BudgetResult> {
    let latency_ms = 100;
    let plans = [
        Plan {
            name: "equal",
            sandbox: 300,
            config: 300,
            lower_to_after: None,
            backlog: 400,
        },
        Plan {
            name: "tighter",
            sandbox: 60,
            config: 300,
            lower_to_after: None,
            backlog: 100,
        },
        Plan {
            name: "lowered",
            sandbox: 300,
            config: 300,
            lower_to_after: Some((60, Duration::from_secs(30))),
            backlog: 300,
        },
    ];
    say("budget: scenarios equal (300/300), tighter (sandbox 60, config 300), lowered (300 → 60 mid-window), two minutes each, side by side");
    let runs = plans.iter().map(|plan| scenario(bench, plan, latency_ms));
    let scenarios = futures_util::future::try_join_all(runs).await?;
    Ok(BudgetResult {
        sandbox_latency_ms: latency_ms,
        scenarios,
    })
}

#[derive(Clone, Copy)]
struct Sample {
    at: Duration,
    total: u64,
    rate_limited: u64,
    patches: u64,
}

fn sample(sim: &SimHandle, at: Duration) -> Sample {
    let stats = sim.stats();
    Sample {
        at,
        total: stats.total_genesys_calls,
        rate_limited: stats.rate_limited,
        patches: stats
            .statuses
            .get("patch_attributes 202")
            .copied()
            .unwrap_or(0),
    }
}

async fn scenario(bench: &Bench, plan: &Plan, latency_ms: u64) -> anyhow::Result<Scenario> {
    let sim = prechat_sim::spawn(SimConfig {
        requests_per_minute: plan.sandbox,
        latency_ms,
        ..SimConfig::default()
    })
    .await?;
    let namespace = bench.namespace(&format!("budget-{}", plan.name));
    let env = bench.service_env(
        &sim,
        &namespace,
        &[(
            "PRECHAT__GENESYS__REQUESTS_PER_MINUTE",
            &plan.config.to_string(),
        )],
    );
    let topology = bench.topology(&env)?;
    let broker = bench.broker("prechat-bench budget");
    topology.declare(&broker).await?;
    let conversations: Vec<String> = (0..plan.backlog)
        .map(|_| sim.seed_conversation(SeedConversation::default()).id)
        .collect();
    let prefix = format!("bench-{}-b{}", bench.run_id, plan.name);
    amqp::publish_pipelined(
        &broker,
        &topology.ingest_exchange(),
        plan.backlog,
        1,
        500,
        move |i| {
            let id = format!("{prefix}-{i}");
            (submission_body(i, &id, Some(&conversations[i])), id)
        },
    )
    .await?;
    let service = Service::start(bench, "worker", env, &format!("budget-{}", plan.name)).await?;
    let waited = Instant::now();
    while sim.stats().total_genesys_calls == 0 {
        if waited.elapsed() > Duration::from_secs(60) {
            bail!("no Genesys call; see {}", service.log.display());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let t0 = Instant::now();
    let watch = Duration::from_secs(120);
    let mut samples = vec![Sample {
        at: Duration::ZERO,
        total: 0,
        rate_limited: 0,
        patches: 0,
    }];
    let mut lowered = false;
    let mut ticks = tokio::time::interval(Duration::from_millis(20));
    while t0.elapsed() < watch {
        ticks.tick().await;
        if let Some((to, after)) = plan.lower_to_after {
            if !lowered && t0.elapsed() >= after {
                sim.set_requests_per_minute(to);
                lowered = true;
            }
        }
        samples.push(sample(&sim, t0.elapsed()));
    }
    samples.push(sample(&sim, watch));
    service.stop().await?;
    let final_limit = plan.lower_to_after.map_or(plan.sandbox, |(to, _)| to);
    let result = summarise(plan, final_limit, &samples, &service_logs(bench, plan));
    say(&format!(
        "budget {}: minutes {:?} admitted, {} × 429, {} pauses",
        plan.name,
        result
            .minutes
            .iter()
            .map(|m| m.admitted)
            .collect::<Vec<_>>(),
        result.rate_limited,
        result.pauses
    ));
    amqp::delete_namespace(&broker, &topology).await;
    broker.close().await;
    sim.shutdown();
    Ok(result)
}

/// (429s logged, limiter adjustments logged).
fn service_logs(bench: &Bench, plan: &Plan) -> (usize, usize) {
    let log = bench.logs.join(format!("budget-{}.log", plan.name));
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    (
        count("Genesys rate limit hit"),
        count("Genesys budget adjusted"),
    )
}

fn summarise(plan: &Plan, final_limit: u32, samples: &[Sample], logs: &(usize, usize)) -> Scenario {
    let at = |t: Duration| {
        *samples
            .iter()
            .rev()
            .find(|s| s.at <= t)
            .unwrap_or(&samples[0])
    };
    let minutes = (0..2)
        .map(|m| {
            let (from, to) = (
                at(Duration::from_secs(60 * m)),
                at(Duration::from_secs(60 * (m + 1))),
            );
            let rate_limited = to.rate_limited - from.rate_limited;
            let admitted = (to.total - from.total) - rate_limited;
            let limit = if m == 0 { plan.sandbox } else { final_limit };
            Minute {
                admitted,
                rate_limited,
                share_of_budget: admitted as f64 / f64::from(limit),
            }
        })
        .collect();
    let spacing = 60.0 / f64::from(plan.sandbox.min(plan.config).min(final_limit));
    let threshold = (1.6 * spacing).max(0.5);
    let (mut pauses, mut longest, mut last_change) = (0, 0.0f64, Duration::ZERO);
    let mut in_pause = false;
    for pair in samples.windows(2) {
        if pair[1].total != pair[0].total {
            let gap = (pair[1].at - last_change).as_secs_f64();
            if in_pause {
                longest = longest.max(gap);
            }
            last_change = pair[1].at;
            in_pause = false;
        } else if !in_pause && (pair[1].at - last_change).as_secs_f64() >= threshold {
            pauses += 1;
            in_pause = true;
        }
    }
    let last = samples[samples.len() - 1];
    Scenario {
        name: plan.name.to_string(),
        sandbox_per_minute: final_limit,
        config_per_minute: plan.config,
        backlog: plan.backlog,
        minutes,
        rate_limited: last.rate_limited,
        service_logged_429s: logs.0,
        pauses,
        longest_pause_secs: longest,
        rate_limited_per_pause: if pauses > 0 {
            last.rate_limited as f64 / pauses as f64
        } else {
            0.0
        },
        limiter_adjustments: logs.1,
        enriched: last.patches,
    }
}
