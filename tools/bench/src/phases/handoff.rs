//! The Architect handoff against the resolver's search, in one `serve` process with 50 ms on
//! every sandbox call (CRM and Genesys alike, so the CRM answers in 50 ms):
//! - baseline: submissions that carry their conversation id, 202 → `submission.enriched`;
//! - handoff: a parked submission (no conversation id, on a conversation the search cannot
//!   match), then `POST /v1/handoffs`: the answer's latency, handoff → enriched, and the
//!   search calls made (the goal is none);
//! - fallback: a parked submission whose conversation becomes searchable later (the web tier
//!   set `prechatSubmissionId`): searchable → enriched.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use prechat_sim::SeedConversation;
use serde::Serialize;

use crate::amqp::{self, submission_body, EventTap};
use crate::context::{fast_sim, Bench, TOKEN};
use crate::load::Latency;
use crate::say;
use crate::service::Service;

/// The handoff figures.
#[derive(Debug, Serialize)]
pub struct HandoffResult {
    /// Added to every sandbox call, ms.
    pub sandbox_latency_ms: u64,
    /// The resolver's poll interval, ms.
    pub poll_interval_ms: u64,
    /// Baseline: with the conversation id in the submission, 202 → enriched.
    pub with_conversation_id: Latency,
    /// `POST /v1/handoffs` → its answer (`enriched`).
    pub handoff_answer: Latency,
    /// Handoff sent → the `submission.enriched` event.
    pub handoff_to_enriched: Latency,
    /// Answers that were `enriched` (the rest were `pending`).
    pub answers_enriched: usize,
    /// Handoffs sent.
    pub handoffs: usize,
    /// Attribute searches during the handoff part.
    pub handoff_searches: u64,
    /// Fallback: conversation searchable → enriched.
    pub search_fallback: Latency,
    /// Attribute searches during the fallback part.
    pub fallback_searches: u64,
}

/// Runs the phase.
pub async fn run(bench: &Bench) -> anyhow::Result<HandoffResult> {
    let n = bench.pick(30, 100);
    let latency_ms = 50;
    let poll_ms = 1000;
    say(&format!(
        "handoff: {n} handoffs, {n} baseline, {} fallback submissions",
        n / 2
    ));
    let sim = prechat_sim::spawn(prechat_sim::SimConfig {
        latency_ms,
        ..fast_sim()
    })
    .await?;
    let namespace = bench.namespace("handoff");
    let poll = poll_ms.to_string();
    let env = bench.service_env(
        &sim,
        &namespace,
        &[("PRECHAT__RESOLVER__POLL_INTERVAL_MS", &poll)],
    );
    let topology = bench.topology(&env)?;
    let broker = bench.broker("prechat-bench handoff");
    topology.declare(&broker).await?;
    let tap = EventTap::start(&broker, &topology, "submission.enriched").await?;
    let service = Service::start(bench, "serve", env, "handoff").await?;
    let base = service.ingest_url.clone().expect("serve has the ingest");
    let http = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{base}{path}"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    // Baseline: the conversation id is known.
    let mut accepted = HashMap::new();
    for i in 0..n {
        let conversation = sim.seed_conversation(SeedConversation::default()).id;
        let id = format!("bench-{}-known-{i}", bench.run_id);
        let response = post(
            "/v1/submissions",
            submission_body(i, &id, Some(&conversation)),
        )
        .await?;
        anyhow::ensure!(
            response.status().as_u16() == 202,
            "baseline submission refused"
        );
        accepted.insert(id, Instant::now());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tap.wait_for(accepted.len(), Duration::from_secs(30)).await;
    let with_conversation_id = spans(&accepted, &tap);

    // Handoff: the submission is parked first, then the flow hands the conversation over.
    let searches_before = sim.stats().calls_of("attributes_search");
    let (mut answers, mut sent, mut enriched_answers) = (Vec::new(), HashMap::new(), 0);
    for i in 0..n {
        let conversation = sim.seed_conversation(SeedConversation::default()).id;
        let id = format!("bench-{}-handoff-{i}", bench.run_id);
        let response = post("/v1/submissions", submission_body(n + i, &id, None)).await?;
        anyhow::ensure!(response.status().as_u16() == 202, "submission refused");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let body = serde_json::json!({"conversationId": conversation, "submissionId": id});
        let started = Instant::now();
        let response = post("/v1/handoffs?wait_ms=3000", serde_json::to_vec(&body)?).await?;
        let took = started.elapsed();
        let answer: BTreeMap<String, String> = response.json().await?;
        if answer.get("status").map(String::as_str) == Some("enriched") {
            enriched_answers += 1;
        }
        answers.push(took);
        sent.insert(id, started);
    }
    tap.wait_for(accepted.len() + sent.len(), Duration::from_secs(30))
        .await;
    let handoff_searches = sim.stats().calls_of("attributes_search") - searches_before;
    let handoff_to_enriched = spans(&sent, &tap);

    // Fallback: no handoff; the conversation becomes searchable a while after the submission.
    let searches_before = sim.stats().calls_of("attributes_search");
    let mut searchable = HashMap::new();
    for i in 0..n / 2 {
        let id = format!("bench-{}-search-{i}", bench.run_id);
        let response = post("/v1/submissions", submission_body(2 * n + i, &id, None)).await?;
        anyhow::ensure!(response.status().as_u16() == 202, "submission refused");
        tokio::time::sleep(Duration::from_millis(500)).await;
        sim.seed_conversation(SeedConversation {
            customer_attributes: BTreeMap::from([("prechatSubmissionId".to_string(), id.clone())]),
            ..SeedConversation::default()
        });
        searchable.insert(id, Instant::now());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tap.wait_for(
        accepted.len() + sent.len() + searchable.len(),
        Duration::from_secs(60),
    )
    .await;
    let fallback_searches = sim.stats().calls_of("attributes_search") - searches_before;
    let search_fallback = spans(&searchable, &tap);

    let result = HandoffResult {
        sandbox_latency_ms: latency_ms,
        poll_interval_ms: poll_ms,
        with_conversation_id,
        handoff_answer: Latency::of(answers),
        handoff_to_enriched,
        answers_enriched: enriched_answers,
        handoffs: sent.len(),
        handoff_searches,
        search_fallback,
        fallback_searches,
    };
    say(&format!(
        "handoff: answer p50 {:.0} ms p99 {:.0} ms ({} of {} enriched), handoff → enriched p99 {:.0} ms with {} searches; fallback p99 {:.0} ms; baseline p99 {:.0} ms",
        result.handoff_answer.p50_ms,
        result.handoff_answer.p99_ms,
        result.answers_enriched,
        result.handoffs,
        result.handoff_to_enriched.p99_ms,
        result.handoff_searches,
        result.search_fallback.p99_ms,
        result.with_conversation_id.p99_ms
    ));
    service.stop().await?;
    amqp::delete_namespace(&broker, &topology).await;
    drop(tap);
    broker.close().await;
    sim.shutdown();
    Ok(result)
}

/// From each start to its submission's enriched event.
fn spans(started: &HashMap<String, Instant>, tap: &EventTap) -> Latency {
    let arrivals = tap.arrivals();
    Latency::of(
        started
            .iter()
            .filter_map(|(id, at)| arrivals.get(id).map(|e| e.saturating_duration_since(*at)))
            .collect(),
    )
}
