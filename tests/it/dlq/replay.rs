//! Replays that go wrong or go big: a replay killed half-way (nothing lost, every copy
//! marked), one the broker refuses (exit 1, every dead letter kept), and a timing run on
//! 10,000 dead letters.

use std::collections::BTreeSet;
use std::time::Instant;

use lapin::options::QueueDeleteOptions;
use prechat_enricher::queue::dead_letter::ErrorClass;
use prechat_enricher::queue::headers::{self, HeaderExt};
use prechat_enricher::startup::Roles;
use prechat_sim::SimConfig;

use super::support::*;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_killed_half_way_loses_nothing_and_marks_every_copy() {
    // Workers off: replayed copies stay countable in the work queue.
    let sim = prechat_sim::spawn(SimConfig::default()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace("dlq-kill"), &[]);
    let app = start(sim, settings, Roles::INGEST).await;
    let letters: Vec<Fabricated> = (0..300)
        .map(|i| {
            Fabricated::new(
                ErrorClass::RetriesExhausted,
                &uuid::Uuid::new_v4().to_string(),
                &format!("k-{i:03}"),
            )
        })
        .collect();
    let original: BTreeSet<String> = letters.iter().map(|l| l.id.clone()).collect();
    publish_dead(&app, &letters).await;

    let mut child = binary(&app, &["replay", "--all", "--yes", "--rate", "60"])
        .spawn()
        .unwrap();
    let submissions = app.topology.submissions_queue();
    let started = wait_until(WAIT, || async {
        (app.queue_depth(&submissions).await >= 40).then_some(())
    })
    .await;
    assert!(started.is_some(), "the replay got going");
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert!(!status.success());

    // The broker returns what the dead process held once it sees the connection gone.
    let dead_queue = app.topology.dead_letter_queue();
    let (dead, replayed) = wait_until(WAIT, || async {
        let dead = peek(&app, &dead_queue).await;
        let replayed = peek(&app, &submissions).await;
        let seen: BTreeSet<&String> = dead.iter().chain(&replayed).map(|(id, _)| id).collect();
        (seen.len() == original.len()).then_some((dead, replayed))
    })
    .await
    .expect("every message is dead or replayed");
    assert!(
        !replayed.is_empty() && replayed.len() < 300,
        "killed mid-way"
    );
    let dead_ids: BTreeSet<String> = dead.iter().map(|(id, _)| id.clone()).collect();
    let replayed_ids: BTreeSet<String> = replayed.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        dead_ids.len(),
        dead.len(),
        "no duplicate in the dead-letter queue"
    );
    assert_eq!(
        replayed_ids.len(),
        replayed.len(),
        "no message replayed twice"
    );
    let union: BTreeSet<String> = dead_ids.union(&replayed_ids).cloned().collect();
    assert_eq!(union, original, "nothing lost");
    let both = dead_ids.intersection(&replayed_ids).count();
    // Only copies whose confirm came just before the kill can be in both places (at most the
    // replay's in-flight window), and each of those copies is marked (checked below).
    assert!(both <= 64, "{both} messages both dead and replayed");
    assert_eq!(dead.len() + replayed.len() - both, original.len());
    for (_, headers) in &replayed {
        assert!(
            headers.time(headers::REPLAYED_AT).is_some(),
            "a copy is marked"
        );
        assert_eq!(headers.number(headers::ATTEMPT), Some(1));
    }
    for (_, headers) in &dead {
        assert!(headers.text(headers::REPLAYED_AT).is_none());
        assert_eq!(
            headers.text(headers::ERROR_CLASS).as_deref(),
            Some("retries_exhausted")
        );
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_the_broker_refuses_exits_1_and_leaves_every_dead_letter() {
    let sim = prechat_sim::spawn(SimConfig::default()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace("dlq-refused"), &[]);
    let app = start(sim, settings, Roles::INGEST).await;
    let letters: Vec<Fabricated> = (0..40)
        .map(|i| Fabricated::new(ErrorClass::Expired, "c", &format!("r-{i:02}")))
        .collect();
    publish_dead(&app, &letters).await;
    let before = listed_ids(&app, &[]).await;
    // No queue behind `submission`: every copy is unroutable, which counts as a failure.
    let channel = app.broker.channel().await.unwrap();
    channel
        .queue_delete(
            app.topology.submissions_queue().as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    let output = binary(&app, &["replay", "--all", "--yes"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no queue bound"), "{stderr}");
    assert!(stderr.contains("every other one is still in"), "{stderr}");
    // (Sorted: a run that fails before the end of the queue leaves it rotated.)
    let mut after = listed_ids(&app, &[]).await;
    after.sort();
    assert_eq!(after, before, "every dead letter is still there");
    app.cleanup().await;
}

/// `cargo nextest run --test it --run-ignored only dlq::replay::ten_thousand` (add
/// `--release` for production-like figures): times `list` and `replay` on 10,000 dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a timing run, not a check"]
async fn ten_thousand_dead_letters_are_listed_and_replayed_in_reasonable_time() {
    let sim = prechat_sim::spawn(SimConfig::default()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace("dlq-10k"), &[]);
    let app = start(sim, settings, Roles::INGEST).await;
    let letters: Vec<Fabricated> = (0..10_000)
        .map(|i| {
            Fabricated::new(
                ErrorClass::ALL[i % 7],
                &uuid::Uuid::new_v4().to_string(),
                &format!("t-{i:05}"),
            )
        })
        .collect();
    for chunk in letters.chunks(1_000) {
        publish_dead(&app, chunk).await;
    }
    let started = Instant::now();
    let (code, _) = dlq(&app, &["stats"]).await;
    assert_eq!(code, 0);
    eprintln!("stats on 10,000: {:?}", started.elapsed());
    let started = Instant::now();
    let (code, out) = dlq(&app, &["list", "--json"]).await;
    assert_eq!(code, 0);
    eprintln!(
        "list --json on 10,000: {:?} ({} bytes)",
        started.elapsed(),
        out.len()
    );
    let started = Instant::now();
    let (code, out) = dlq(&app, &["list"]).await;
    assert_eq!(code, 0);
    eprintln!(
        "list (table) on 10,000: {:?} ({} lines)",
        started.elapsed(),
        out.lines().count()
    );
    let started = Instant::now();
    let report = dlq_json(&app, &["replay", "--class", "expired"]).await;
    eprintln!(
        "replay --class expired ({} of 10,000): {:?}",
        report["moved"],
        started.elapsed()
    );
    let started = Instant::now();
    let report = dlq_json(&app, &["replay", "--all", "--yes"]).await;
    eprintln!("replay (all {}): {:?}", report["moved"], started.elapsed());
    assert_eq!(
        app.queue_depth(&app.topology.submissions_queue()).await,
        10_000
    );
    app.cleanup().await;
}
