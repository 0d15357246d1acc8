//! The shared 429-aware budget under a larger load, and outage mode: Genesys down then back
//! pauses consumption, dead-letters nothing and lands everything.

use std::time::{Duration, Instant};

use prechat_sim::{Fault, Route, SeedConversation, SimConfig};
use serde_json::Value;

use super::support::*;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_budget_of_60_per_minute_under_a_larger_load_loses_nothing_and_uses_the_budget() {
    let sim = SimConfig {
        requests_per_minute: 60,
        ..SimConfig::default()
    };
    let app = spawn_app_with(
        "budget-60",
        sim,
        &[("PRECHAT__GENESYS__REQUESTS_PER_MINUTE", "300")],
    )
    .await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..45 {
        let conversation = app.sim.seed_conversation(SeedConversation::default());
        assert_eq!(
            app.post(&submission(&conversation.id, &format!("b{i}@example.com")))
                .await
                .status(),
            202
        );
        ids.push(conversation.id);
    }
    for id in &ids {
        wait_enriched(&app, id, Duration::from_secs(240)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = app.sim.stats();
    let answered = stats.total_genesys_calls - stats.rate_limited;
    let per_minute = answered as f64 / elapsed * 60.0;
    eprintln!(
        "budget 60/min: {answered} calls in {elapsed:.1} s = {per_minute:.1}/min, {} 429s",
        stats.rate_limited
    );
    assert!(
        stats.rate_limited <= 1,
        "429s end after the first: {}",
        stats.rate_limited
    );
    assert!(
        (45.0..=66.0).contains(&per_minute),
        "achieved {per_minute:.1}/min against 60"
    );
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn genesys_down_then_back_pauses_consumption_dead_letters_nothing_and_lands_everything() {
    let overrides = [
        ("PRECHAT__WORKER__MAX_ATTEMPTS", "2"),
        ("PRECHAT__WORKER__OUTAGE_THRESHOLD", "3"),
        ("PRECHAT__WORKER__CONCURRENCY", "4"),
    ];
    let app = spawn_app_with("outage", fast_sim(), &overrides).await;
    let mut events = app
        .tap(&app.topology.events_exchange(), "submission.retrying")
        .await;
    app.sim.add_fault(Fault {
        duration_ms: Some(12_000),
        ..Fault::new(Route::GetConversation, 503)
    });
    let mut ids = Vec::new();
    for i in 0..30 {
        let conversation = app.sim.seed_conversation(SeedConversation::default());
        assert_eq!(
            app.post(&submission(&conversation.id, &format!("o{i}@example.com")))
                .await
                .status(),
            202
        );
        ids.push(conversation.id);
    }
    for id in &ids {
        wait_enriched(&app, id, Duration::from_secs(60)).await;
    }
    assert!(
        app.dead_letters().await.is_empty(),
        "nothing dead-lettered though max_attempts = 2"
    );
    let failed = app.sim.stats().status_count("get_conversation", 503);
    assert!(
        failed < 30,
        "consumption paused: only {failed} calls met the outage"
    );
    let retries: Vec<Value> = events
        .collect(1000, Duration::from_secs(1))
        .await
        .iter()
        .map(|e| e.json())
        .collect();
    assert!(
        retries.iter().any(|e| e["reason"] == "outage"),
        "messages in hand were retried without an attempt"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_pauses_every_worker_until_retry_after() {
    // Eight workers start at once into a 429 that lasts 3 s (its Retry-After says so). The
    // answer's rate-limit headers say the budget is far from used, so only the pause holds
    // the workers back: one 429 must stop all of them. A pause per caller lets every worker
    // collect a 429 of its own (eight, measured with the pause removed).
    let overrides = [
        ("PRECHAT__GENESYS__REQUESTS_PER_MINUTE", "600"),
        ("PRECHAT__WORKER__CONCURRENCY", "8"),
    ];
    let app = spawn_app_with("pause-all", fast_sim(), &overrides).await;
    let conversations: Vec<String> = (0..16)
        .map(|_| app.sim.seed_conversation(SeedConversation::default()).id)
        .collect();
    app.sim.add_fault(Fault {
        duration_ms: Some(3_000),
        ..Fault::new(Route::GetConversation, 429)
    });
    let posts = conversations.iter().enumerate().map(|(i, id)| {
        let app = &app;
        let body = submission(id, &format!("p{i}@example.com"));
        async move { app.post(&body).await.status() }
    });
    for status in futures_util::future::join_all(posts).await {
        assert_eq!(status, 202);
    }
    for id in &conversations {
        wait_enriched(&app, id, Duration::from_secs(30)).await;
    }
    let rate_limited = app.sim.stats().rate_limited;
    eprintln!("16 submissions into a 3 s 429: {rate_limited} 429s");
    assert!(
        (1..=2).contains(&rate_limited),
        "the first 429 paused every worker (at most one other call was already on its way): {rate_limited} 429s"
    );
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}
