//! Waits for Genesys' rate limit stay within a call's total wait: a `Retry-After` longer than
//! that hands the message back at once instead of holding it.

use std::time::{Duration, Instant};

use prechat_enricher::genesys::GenesysError;
use prechat_enricher::startup::{Components, Roles};
use prechat_sim::{Fault, Route, SeedConversation};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_the_call_s_wait_budget_is_handed_back_at_once() {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let conversation = sim.seed_conversation(SeedConversation::default());
    let settings = test_settings(
        &sim,
        &unique_namespace("long-429"),
        &[("PRECHAT__GENESYS__MAX_WAIT_MS", "2000")],
    );
    let components = Components::build(settings, Roles::ALL).unwrap();
    // Genesys answers 429 for two minutes, with a Retry-After to match.
    sim.add_fault(Fault {
        duration_ms: Some(120_000),
        ..Fault::new(Route::GetConversation, 429)
    });
    for call in ["first", "second"] {
        let started = Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            components
                .genesys
                .get_message_conversation(&conversation.id),
        )
        .await
        .expect("the call never waits two minutes");
        match result {
            Err(GenesysError::RateLimited { retry_after }) => {
                assert!(retry_after >= Duration::from_secs(30), "{retry_after:?}")
            }
            other => panic!("{call} call: {other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{call} call handed back within the wait budget: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        sim.stats().rate_limited,
        1,
        "the second call saw the shared pause and did not ask again"
    );
    sim.shutdown();
}
