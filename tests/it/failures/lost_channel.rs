//! A worker that loses its consuming channel while a message is in hand: the broker hands the
//! message to another replica at once, so the first one must start no further Genesys write.
//! Here replica A reaches the broker through a forwarder that is cut while A waits for its
//! attribute `PATCH`; replica B takes the redelivered copy, writes and transfers. A's attempt
//! stops before its transfer: the conversation is transferred once.

use std::time::Duration;

use prechat_enricher::startup::Roles;
use prechat_sim::{Fault, Route, SeedConversation};
use serde_json::json;

use crate::common::net::TcpStandIn;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_that_loses_its_channel_starts_no_write_after_another_replica_took_the_message() {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let standard = sim.seed_queue("Standard Support");
    let namespace = unique_namespace("lost-channel");
    let overrides = [
        ("PRECHAT__ROUTING__MODE", "transfer"),
        ("PRECHAT__ROUTING__QUEUES__STANDARD", "Standard Support"),
    ];
    let broker = reqwest::Url::parse(&amqp_url()).unwrap();
    let upstream = format!(
        "{}:{}",
        broker.host_str().unwrap(),
        broker.port().unwrap_or(5672)
    );
    let forwarder = TcpStandIn::start("127.0.0.1:0", Some(upstream.parse().unwrap()))
        .await
        .unwrap();
    let through_forwarder = format!("amqp://guest:guest@{}/%2f", forwarder.addr());
    let mut a_overrides = overrides.to_vec();
    a_overrides.push(("PRECHAT__AMQP__URL", &through_forwarder));
    let a = start(
        sim.clone(),
        test_settings(&sim, &namespace, &a_overrides),
        Roles::WORKER,
    )
    .await;
    let ingest = start(
        sim.clone(),
        test_settings(&sim, &namespace, &overrides),
        Roles::INGEST,
    )
    .await;

    let conversation = sim.seed_conversation(SeedConversation::default());
    // A's attribute write hangs 3 s before Genesys applies it.
    sim.add_fault(Fault {
        conversation_id: Some(conversation.id.clone()),
        count: Some(1),
        delay_ms: Some(3_000),
        ..Fault::new(Route::PatchAttributes, 200)
    });
    let body =
        json!({"conversationId": conversation.id, "guest": {"email": "lost.channel@example.com"}});
    assert_eq!(ingest.post(&body).await.status(), 202);
    wait_until(Duration::from_secs(10), || async {
        (sim.stats().calls_of("get_conversation") > 0).then_some(())
    })
    .await
    .expect("A read the conversation");
    tokio::time::sleep(Duration::from_millis(300)).await;

    let b = start(
        sim.clone(),
        test_settings(&sim, &namespace, &overrides),
        Roles::WORKER,
    )
    .await;
    // A loses the broker and cannot come back; its message goes to B.
    forwarder.set_upstream(None);
    forwarder.cut();
    // B writes and transfers; then A's held write lands (it was on the wire already).
    wait_until(Duration::from_secs(15), || async {
        let view = sim.conversation(&conversation.id)?;
        (view.transfers > 0 && view.attribute_patches >= 2).then_some(())
    })
    .await
    .expect("B transferred the conversation and A's held write ended");
    // Had A gone on, it would transfer now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let view = sim.conversation(&conversation.id).unwrap();
    assert_eq!(view.transfers, 1, "transferred once: {view:?}");
    assert_eq!(view.queue_id.as_deref(), Some(standard.as_str()));
    assert_eq!(a.metrics.worker_abandoned.get(), 1);
    assert_eq!(b.metrics.worker_abandoned.get(), 0);
    drop(a);
    drop(ingest);
    b.cleanup().await;
}
