//! Ingest: `POST /v1/submissions` at a fixed concurrency against an `ingest` process, next to
//! the baseline of the same bodies published straight to the ingest exchange with one
//! confirm per message at the same concurrency, over four confirm channels (what the
//! service's publisher pools). Rounds alternate (raw, HTTP, raw, HTTP) so that drift hits
//! both; the work queue is purged before each.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

use crate::amqp::{self, submission_body};
use crate::context::{fast_sim, Bench, TOKEN};
use crate::load::{closed_loop, Latency, LoadRun};
use crate::say;
use crate::service::Service;

/// Confirm channels of the baseline (the service's publisher pools four).
const CHANNELS: usize = 4;

/// The ingest figures.
#[derive(Debug, Serialize)]
pub struct IngestResult {
    /// Requests (or publishes) in flight at once.
    pub concurrency: usize,
    /// Measured seconds per side (all rounds).
    pub measured_secs: f64,
    /// Through HTTP: 202s per second.
    pub http_per_sec: f64,
    /// Through HTTP: latency of a 202.
    pub http_latency: Latency,
    /// Non-202 answers and transport errors.
    pub http_errors: usize,
    /// Straight to RabbitMQ: confirms per second.
    pub raw_per_sec: f64,
    /// Straight to RabbitMQ: publish → confirm latency.
    pub raw_latency: Latency,
    /// HTTP rate / raw rate.
    pub ratio: f64,
    /// CPU time of the ingest process per accepted submission, microseconds.
    pub ingest_cpu_us_per_submission: f64,
    /// Bytes of one body.
    pub body_bytes: usize,
}

/// Runs the phase.
pub async fn run(bench: &Bench) -> anyhow::Result<IngestResult> {
    let concurrency = 32;
    let (rounds, warmup, measure) = bench.pick(
        (1, Duration::from_secs(1), Duration::from_secs(4)),
        (2, Duration::from_secs(2), Duration::from_secs(10)),
    );
    say(&format!(
        "ingest: {rounds} rounds of {}s raw + {}s HTTP at concurrency {concurrency}",
        measure.as_secs(),
        measure.as_secs()
    ));
    let sim = prechat_sim::spawn(fast_sim()).await?;
    let namespace = bench.namespace("ingest");
    let env = bench.service_env(&sim, &namespace, &[]);
    let topology = bench.topology(&env)?;
    let service = Service::start(bench, "ingest", env, "ingest").await?;
    let url = format!(
        "{}/v1/submissions",
        service.ingest_url.as_deref().expect("ingest role")
    );
    let broker = bench.broker("prechat-bench ingest baseline");
    let queue = topology.submissions_queue();
    let exchange = topology.ingest_exchange();

    let run_id = bench.run_id.clone();
    let make = move |side: &str, n: usize| {
        let id = format!("bench-{run_id}-{side}-{n}");
        let body = submission_body(n, &id, Some("0f8fad5b-d9cb-469f-a165-70867728950e"));
        (body, id)
    };
    let body_bytes = make("x", 0).0.len();

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;
    let mut raw = LoadRun::default();
    let mut via_http = LoadRun::default();
    let mut cpu_secs = 0.0;
    for round in 0..rounds {
        amqp::purge(&broker, &queue).await?;
        let mut channels = Vec::new();
        for _ in 0..CHANNELS {
            channels.push(amqp::confirm_channel(&broker).await?);
        }
        let channels = Arc::new(channels);
        let (exchange, make_raw) = (exchange.clone(), make.clone());
        let round_raw = closed_loop(concurrency, warmup, measure, move |n| {
            let (channels, exchange) = (channels.clone(), exchange.clone());
            let (body, id) = make_raw(&format!("raw{round}"), n);
            async move {
                let channel = &channels[n % CHANNELS];
                amqp::publish_one(channel, &exchange, &body, &id).await
            }
        })
        .await;
        amqp::purge(&broker, &queue).await?;
        let (client, target, make_http) = (http.clone(), url.clone(), make.clone());
        let cpu_before = service.cpu_secs()?;
        let round_http = closed_loop(concurrency, warmup, measure, move |n| {
            let (client, target) = (client.clone(), target.clone());
            let (body, _) = make_http(&format!("http{round}"), n);
            async move {
                let response = client
                    .post(target)
                    .bearer_auth(TOKEN)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                match response.status().as_u16() {
                    202 => Ok(()),
                    status => bail!(
                        "HTTP {status}: {}",
                        response.text().await.unwrap_or_default()
                    ),
                }
            }
        })
        .await;
        // Warm-up included on both sides: its CPU against its requests.
        let round_cpu = service.cpu_secs()? - cpu_before;
        cpu_secs += round_cpu;
        say(&format!(
            "ingest round {}: raw {:.0}/s, HTTP {:.0}/s, ingest CPU {:.0} µs per submission",
            round + 1,
            round_raw.rate(),
            round_http.rate(),
            round_cpu * 1e6 / round_http.all_completed.max(1) as f64
        ));
        raw.absorb(round_raw);
        via_http.absorb(round_http);
    }
    if let Some(error) = &via_http.first_error {
        say(&format!("ingest: first HTTP error: {error}"));
    }
    if let Some(error) = &raw.first_error {
        say(&format!("ingest: first raw publish error: {error}"));
    }
    let result = IngestResult {
        concurrency,
        measured_secs: via_http.window.as_secs_f64(),
        http_per_sec: via_http.rate(),
        http_errors: via_http.errors,
        raw_per_sec: raw.rate(),
        ratio: via_http.rate() / raw.rate().max(1e-9),
        ingest_cpu_us_per_submission: cpu_secs * 1e6 / via_http.all_completed.max(1) as f64,
        http_latency: Latency::of(via_http.latencies),
        raw_latency: Latency::of(raw.latencies),
        body_bytes,
    };
    service.stop().await?;
    amqp::delete_namespace(&broker, &topology).await;
    broker.close().await;
    sim.shutdown();
    Ok(result)
}
