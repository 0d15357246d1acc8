//! Transfer by tier: each conversation put in its tier's queue exactly once (even when
//! delivered twice, or redelivered with a better answer), and a routing queue Genesys does
//! not know failing the start.

use std::time::Duration;

use prechat_enricher::startup::{Application, Roles};
use prechat_sim::SeedConversation;
use serde_json::json;

use super::support::*;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_mode_puts_each_conversation_in_its_tier_queue_exactly_once_even_when_delivered_twice(
) {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let gold = sim.seed_queue("Gold Support");
    let platinum = sim.seed_queue("Platinum Support");
    let standard = sim.seed_queue("Standard Support");
    let overrides = [
        ("PRECHAT__ROUTING__MODE", "transfer"),
        ("PRECHAT__ROUTING__QUEUES__GOLD", "Gold Support"),
        ("PRECHAT__ROUTING__QUEUES__PLATINUM", "platinum support"),
        ("PRECHAT__ROUTING__QUEUES__STANDARD", standard.as_str()),
    ];
    let settings = test_settings(&sim, &unique_namespace("transfer"), &overrides);
    let mut app = start(sim, settings, Roles::ALL).await;
    app.sim
        .seed_customer(customer("G", "gold@example.com", "+15551230002", "Gold"));
    app.sim.seed_customer(customer(
        "P",
        "plat@example.com",
        "+15551230003",
        "PLATINUM",
    ));
    app.sim.seed_customer(customer(
        "B",
        "bronze@example.com",
        "+15551230004",
        "bronze",
    ));
    let cases = [
        ("gold@example.com", &gold, "Gold Support"),
        ("plat@example.com", &platinum, "Platinum Support"),
        ("bronze@example.com", &standard, ""),
        ("nobody@example.com", &standard, ""),
    ];
    let mut expected = Vec::new();
    for (email, queue, name) in cases {
        let conversation = app.sim.seed_conversation(SeedConversation::default());
        let body = json!({"submissionId": uuid::Uuid::new_v4().to_string(), "conversationId": conversation.id, "guest": {"email": email}});
        assert_eq!(app.post(&body).await.status(), 202);
        expected.push((conversation.id, body, queue.clone(), name));
    }
    for (conversation_id, body, _, _) in &expected {
        wait_until(Duration::from_secs(20), || async {
            (app.sim.conversation(conversation_id)?.transfers > 0).then_some(())
        })
        .await
        .expect("transferred");
        app.publish_raw(
            body.to_string().as_bytes(),
            body["submissionId"].as_str().unwrap(),
        )
        .await;
    }
    assert!(app.drained_after_stop(Duration::from_secs(20)).await);
    for (conversation_id, _, queue, name) in &expected {
        let view = app.sim.conversation(conversation_id).unwrap();
        assert_eq!(view.queue_id.as_deref(), Some(queue.as_str()), "{view:?}");
        assert_eq!(view.transfers, 1, "transferred exactly once: {view:?}");
        assert_eq!(&view.attributes["targetQueueId"], queue, "{view:?}");
        if !name.is_empty() {
            assert_eq!(&view.attributes["targetQueueName"], name, "{view:?}");
        }
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redelivery_with_a_better_answer_does_not_move_a_transferred_customer_again() {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    sim.seed_queue("Gold Support");
    let standard = sim.seed_queue("Standard Support");
    let overrides = [
        ("PRECHAT__ROUTING__MODE", "transfer"),
        ("PRECHAT__ROUTING__QUEUES__GOLD", "Gold Support"),
        ("PRECHAT__ROUTING__QUEUES__STANDARD", "Standard Support"),
    ];
    let settings = test_settings(&sim, &unique_namespace("transfer-once"), &overrides);
    let app = start(sim, settings, Roles::ALL).await;
    app.sim
        .seed_customer(customer("G", "gold@example.com", "+15551230002", "Gold"));
    app.sim.set_crm_down(true);
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    let body = json!({"submissionId": "transfer-once-1", "conversationId": conversation.id, "guest": {"email": "gold@example.com"}});
    assert_eq!(app.post(&body).await.status(), 202);
    wait_until(Duration::from_secs(20), || async {
        (app.sim.conversation(&conversation.id)?.transfers > 0).then_some(())
    })
    .await
    .expect("transferred while the CRM is down");
    app.sim.set_crm_down(false);
    app.publish_raw(body.to_string().as_bytes(), "transfer-once-1")
        .await;
    let view = wait_until(Duration::from_secs(20), || async {
        let view = app.sim.conversation(&conversation.id)?;
        (view.attributes.get("crmStatus")? == "found").then_some(view)
    })
    .await
    .expect("the redelivery wrote the CRM's answer");
    assert_eq!(view.attributes["loyaltyTier"], "gold");
    assert_eq!(view.transfers, 1, "transferred exactly once");
    assert_eq!(view.queue_id.as_deref(), Some(standard.as_str()));
    assert_eq!(view.attributes["targetQueueId"], standard);
    assert_eq!(view.attributes["targetQueueName"], "Standard Support");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_submission_delivered_twice_at_once_transfers_once() {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let gold = sim.seed_queue("Gold Support");
    let overrides = [
        ("PRECHAT__ROUTING__MODE", "transfer"),
        ("PRECHAT__ROUTING__QUEUES__GOLD", "Gold Support"),
    ];
    let settings = test_settings(&sim, &unique_namespace("transfer-race"), &overrides);
    let mut app = start(sim, settings, Roles::ALL).await;
    app.sim
        .seed_customer(customer("G", "gold@example.com", "+15551230002", "Gold"));
    // Slow answers keep both copies in flight together.
    app.sim.set_latency_ms(50);
    let mut conversations = Vec::new();
    for i in 0..5 {
        let conversation = app.sim.seed_conversation(SeedConversation::default());
        let id = format!("transfer-race-{i}");
        let body = json!({"submissionId": id, "conversationId": conversation.id, "guest": {"email": "gold@example.com"}});
        let text = body.to_string();
        futures_util::future::join(
            app.publish_raw(text.as_bytes(), &id),
            app.publish_raw(text.as_bytes(), &id),
        )
        .await;
        conversations.push(conversation.id);
    }
    assert!(app.drained_after_stop(Duration::from_secs(30)).await);
    for id in &conversations {
        let view = app.sim.conversation(id).unwrap();
        assert_eq!(view.transfers, 1, "transferred exactly once: {view:?}");
        assert_eq!(view.queue_id.as_deref(), Some(gold.as_str()));
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_routing_queue_genesys_does_not_know_fails_the_start_naming_the_key() {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let settings = test_settings(
        &sim,
        &unique_namespace("no-queue"),
        &[("PRECHAT__ROUTING__QUEUES__GOLD", "No Such Queue")],
    );
    let _namespace = NamespaceGuard::new(&settings);
    let error = Application::build(settings, Roles::WORKER)
        .await
        .err()
        .expect("the start fails");
    assert!(
        format!("{error:#}").contains("routing.queues.gold"),
        "{error:#}"
    );
}
