//! End-to-end latency at a moderate steady load: a `serve` process (ingest + workers) takes
//! an open-loop 50 submissions/s over HTTP; each submission's latency runs from the moment its
//! 202 arrived to the moment its `submission.enriched` event reached the driver (the worker
//! publishes the event, confirmed, right after the sandbox took the attribute write).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prechat_sim::SeedConversation;
use serde::Serialize;

use crate::amqp::{self, submission_body, EventTap};
use crate::context::{fast_sim, Bench, TOKEN};
use crate::load::Latency;
use crate::say;
use crate::service::Service;

/// The end-to-end figures.
#[derive(Debug, Serialize)]
pub struct LatencyResult {
    /// Offered rate, submissions per second.
    pub rate_per_sec: u32,
    /// Seconds of load.
    pub duration_secs: u64,
    /// Submissions accepted (202).
    pub accepted: usize,
    /// Of those, enriched within 30 s after the load.
    pub enriched: usize,
    /// Accepted (202 received) → enriched (event received).
    pub accepted_to_enriched: Latency,
    /// Request → 202, for comparison.
    pub http_accept: Latency,
}

/// Runs the phase.
pub async fn run(bench: &Bench) -> anyhow::Result<LatencyResult> {
    let rate: u32 = 50;
    let duration = Duration::from_secs(bench.pick(10, 30));
    let total = rate as usize * duration.as_secs() as usize;
    say(&format!(
        "latency: {rate}/s for {}s through a serve process",
        duration.as_secs()
    ));
    let sim = prechat_sim::spawn(fast_sim()).await?;
    let namespace = bench.namespace("latency");
    let env = bench.service_env(&sim, &namespace, &[]);
    let topology = bench.topology(&env)?;
    let broker = bench.broker("prechat-bench latency");
    topology.declare(&broker).await?;
    let tap = EventTap::start(&broker, &topology, "submission.enriched").await?;
    let service = Service::start(bench, "serve", env, "latency").await?;
    let url = format!(
        "{}/v1/submissions",
        service.ingest_url.as_deref().expect("serve has the ingest")
    );
    let conversations: Vec<String> = (0..total)
        .map(|_| sim.seed_conversation(SeedConversation::default()).id)
        .collect();
    let http = reqwest::Client::new();
    let accepted: Arc<Mutex<HashMap<String, (Instant, Duration)>>> = Arc::default();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut requests = Vec::with_capacity(total);
    for (i, conversation) in conversations.iter().enumerate() {
        ticks.tick().await;
        let id = format!("bench-{}-e2e-{i}", bench.run_id);
        let body = submission_body(i, &id, Some(conversation));
        let (http, url, accepted) = (http.clone(), url.clone(), accepted.clone());
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let response = http
                .post(url)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            if response.is_ok_and(|r| r.status().as_u16() == 202) {
                let at = Instant::now();
                accepted
                    .lock()
                    .expect("accepted lock")
                    .insert(id, (at, at - sent));
            }
        }));
    }
    for request in requests {
        let _ = request.await;
    }
    let accepted = accepted.lock().expect("accepted lock").clone();
    tap.wait_for(accepted.len(), Duration::from_secs(30)).await;
    let arrivals = tap.arrivals();
    let mut end_to_end = Vec::new();
    let mut accept = Vec::new();
    for (id, (at, took)) in &accepted {
        accept.push(*took);
        if let Some(enriched) = arrivals.get(id) {
            end_to_end.push(enriched.saturating_duration_since(*at));
        }
    }
    let result = LatencyResult {
        rate_per_sec: rate,
        duration_secs: duration.as_secs(),
        accepted: accepted.len(),
        enriched: end_to_end.len(),
        accepted_to_enriched: Latency::of(end_to_end),
        http_accept: Latency::of(accept),
    };
    say(&format!(
        "latency: {} accepted, {} enriched, p50 {:.1} ms, p99 {:.1} ms",
        result.accepted,
        result.enriched,
        result.accepted_to_enriched.p50_ms,
        result.accepted_to_enriched.p99_ms
    ));
    service.stop().await?;
    amqp::delete_namespace(&broker, &topology).await;
    drop(tap);
    broker.close().await;
    sim.shutdown();
    Ok(result)
}
