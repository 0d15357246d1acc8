//! The resolver: submissions without a conversation id, matched to their conversations as
//! they appear (or expired), and, of two resolvers, only one scanning.

use std::time::{Duration, Instant};

use prechat_enricher::queue::headers::{self, HeaderExt};
use prechat_enricher::startup::Roles;
use prechat_sim::SimConfig;
use serde_json::json;

use super::support::*;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_submissions_without_conversation_ids_are_matched_as_their_conversations_appear(
) {
    let sim = SimConfig {
        index_delay_ms: 300,
        ..fast_sim()
    };
    let app = spawn_app_with("resolver", sim, &[("PRECHAT__WORKER__DEADLINE_SECS", "12")]).await;
    let started = Instant::now();
    let mut ids = Vec::new();
    for i in 0..205 {
        let id = uuid::Uuid::new_v4().to_string();
        let body = json!({"submissionId": id, "guest": {"email": format!("later{i}@example.com")}, "survey": {"subject": "Later"}});
        assert_eq!(app.post(&body).await.status(), 202);
        ids.push(id);
    }
    let (matched, unmatched) = ids.split_at(200);
    let mut conversations = Vec::new();
    for chunk in matched.chunks(25) {
        for id in chunk {
            conversations.push((app.sim.seed_conversation(correlated(id)).id, id.clone()));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for (conversation_id, submission_id) in &conversations {
        let attributes = wait_enriched(&app, conversation_id, Duration::from_secs(30)).await;
        assert_eq!(&attributes["prechatSubmissionId"], submission_id);
        assert_eq!(attributes["preChatSubject"], "Later");
    }
    let expired = wait_until(Duration::from_secs(30), || async {
        let dead = app.dead_letters().await;
        (dead.len() == unmatched.len()).then_some(dead)
    })
    .await
    .expect("the unmatched submissions expire");
    for (headers, body) in &expired {
        assert_eq!(
            headers.text(headers::ERROR_CLASS).as_deref(),
            Some("expired")
        );
        assert!(headers
            .text(headers::ERROR_MESSAGE)
            .is_some_and(|m| m.contains("prechatSubmissionId")));
        assert!(unmatched.contains(&body["submissionId"].as_str().unwrap().to_string()));
    }
    let searches = app.sim.stats().calls_of("attributes_search");
    let polls = started.elapsed().as_millis() as u64 / 500 + 2;
    assert!(
        searches <= polls * 5,
        "{searches} searches for {polls} polls: the calls follow the polls"
    );
    assert!(searches < 205, "{searches} searches for 205 submissions");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_two_resolvers_only_one_scans_and_the_other_takes_over_when_it_stops() {
    let first = spawn_app("two-resolvers").await;
    let second = start(first.sim.clone(), first.settings.clone(), Roles::WORKER).await;
    let mut conversations = Vec::new();
    for i in 0..20 {
        let id = uuid::Uuid::new_v4().to_string();
        let body = json!({"submissionId": id, "guest": {"email": format!("two{i}@example.com")}});
        assert_eq!(first.post(&body).await.status(), 202);
        conversations.push(first.sim.seed_conversation(correlated(&id)).id);
    }
    for id in &conversations {
        wait_enriched(&first, id, Duration::from_secs(30)).await;
    }
    let scans = [
        genesys_calls(&first.metrics.render(), "attributes_search"),
        genesys_calls(&second.metrics.render(), "attributes_search"),
    ];
    assert!(
        scans.iter().filter(|n| **n > 0).count() == 1,
        "exactly one resolver scanned: {scans:?}"
    );
    // The scanning one stops: the other takes the awaiting queue over.
    let (mut active, mut standby) = if scans[0] > 0 {
        (first, second)
    } else {
        (second, first)
    };
    active.stop().await;
    let mut later = Vec::new();
    for i in 0..5 {
        let id = uuid::Uuid::new_v4().to_string();
        let body = json!({"submissionId": id, "guest": {"email": format!("later{i}@example.com")}});
        standby.publish_raw(body.to_string().as_bytes(), &id).await;
        later.push(standby.sim.seed_conversation(correlated(&id)).id);
    }
    for id in &later {
        wait_enriched(&standby, id, Duration::from_secs(30)).await;
    }
    assert!(
        genesys_calls(&standby.metrics.render(), "attributes_search") > 0,
        "the standby resolver took over"
    );
    standby.stop().await;
    active.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_match_the_broker_refuses_to_take_stays_held_and_lands_when_it_takes_it_again() {
    // A short deadline: a held, matched submission must not expire while its republish is
    // refused.
    let app = spawn_app_with(
        "resolver-refused",
        fast_sim(),
        &[("PRECHAT__WORKER__DEADLINE_SECS", "3")],
    )
    .await;
    // The work queue loses its binding: the resolver's republish (mandatory) is returned
    // unroutable, as a broken topology would. The submission goes to the awaiting queue
    // directly (the worker would have put it there).
    let channel = app.broker.channel().await.unwrap();
    let (queue, exchange) = (
        app.topology.submissions_queue(),
        app.topology.ingest_exchange(),
    );
    channel
        .queue_unbind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "submission".into(),
            Default::default(),
        )
        .await
        .unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let body = json!({"submissionId": id, "guest": {"email": "held@example.com"}});
    app.publish_raw_with_key("awaiting", body.to_string().as_bytes(), &id)
        .await;
    let conversation = app.sim.seed_conversation(correlated(&id)).id;
    // Several polls match it and have the republish refused, past the deadline.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        app.dead_letters().await.is_empty(),
        "neither expired nor lost"
    );
    assert_eq!(
        app.sim
            .conversation(&conversation)
            .unwrap()
            .attribute_patches,
        0,
        "not enriched while the work queue is unreachable"
    );
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "submission".into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let attributes = wait_enriched(&app, &conversation, Duration::from_secs(20)).await;
    assert_eq!(attributes["prechatSubmissionId"], id);
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}
