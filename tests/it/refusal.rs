//! A broker that refuses the follow-up publishes (retry, park): the messages in hand are held
//! and their publishes tried again, so nothing loops through the work queue, nothing becomes
//! a `delivery_limit` dead letter, and Genesys is not called again for each loop.

use std::time::Duration;

use prechat_sim::{Fault, Route, SeedConversation};
use serde_json::json;

use crate::common::*;
use crate::genesys::support::{correlated, wait_enriched};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_retries_and_parks_are_held_until_the_broker_takes_them() {
    // A low crash-loop guard: handing a refused message straight back would reach it fast.
    let app = spawn_app_with(
        "refusal",
        fast_sim(),
        &[
            ("PRECHAT__AMQP__DELIVERY_LIMIT", "5"),
            ("PRECHAT__WORKER__OUTAGE_THRESHOLD", "1000"),
        ],
    )
    .await;
    let channel = app.broker.channel().await.unwrap();
    let (ingest, retry) = (
        app.topology.ingest_exchange(),
        app.topology.retry_exchange(),
    );
    // Every retry bucket and the awaiting queue lose their bindings: each follow-up publish
    // (mandatory) comes back unroutable, as it is refused during an alarm or an outage.
    let mut unbound = vec![(
        app.topology.awaiting_queue(),
        ingest.clone(),
        "awaiting".to_string(),
    )];
    for delay in [1, 2, 5] {
        unbound.push((
            app.topology.retry_queue(delay),
            retry.clone(),
            format!("{delay}s"),
        ));
    }
    for (queue, exchange, key) in &unbound {
        channel
            .queue_unbind(
                queue.as_str().into(),
                exchange.as_str().into(),
                key.as_str().into(),
                Default::default(),
            )
            .await
            .unwrap();
    }
    // Five that need a retry (their first PATCH fails) and five without a conversation id.
    app.sim.add_fault(Fault {
        count: Some(5),
        ..Fault::new(Route::PatchAttributes, 503)
    });
    let mut retried = Vec::new();
    for i in 0..5 {
        let conversation = app.sim.seed_conversation(SeedConversation::default()).id;
        let body = submission(&conversation, &format!("retry{i}@example.com"));
        assert_eq!(app.post(&body).await.status(), 202);
        retried.push(conversation);
    }
    let mut parked = Vec::new();
    for i in 0..5 {
        let id = uuid::Uuid::new_v4().to_string();
        let body = json!({"submissionId": id, "guest": {"email": format!("park{i}@example.com")}});
        assert_eq!(app.post(&body).await.status(), 202);
        parked.push(id);
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let gets_while_refused = app.sim.stats().calls_of("get_conversation");
    for (queue, exchange, key) in &unbound {
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.as_str().into(),
                key.as_str().into(),
                Default::default(),
                Default::default(),
            )
            .await
            .unwrap();
    }
    for id in &parked {
        app.sim.seed_conversation(correlated(id));
    }
    for conversation in &retried {
        wait_enriched(&app, conversation, Duration::from_secs(30)).await;
    }
    for id in &parked {
        let found = wait_until(Duration::from_secs(30), || async {
            app.sim.conversations().into_iter().find(|c| {
                c.attributes.get("prechatSubmissionId") == Some(id) && c.attribute_patches > 0
            })
        })
        .await;
        assert!(found.is_some(), "parked submission {id} landed");
    }
    assert!(app.dead_letters().await.is_empty(), "no dead letter");
    // While refused, each retried submission was read once: one GET each (a tight loop
    // would have read them again and again up to the crash-loop guard).
    assert!(
        gets_while_refused <= 5,
        "{gets_while_refused} conversation reads for 5 submissions while the broker refused"
    );
    let gets = app.sim.stats().calls_of("get_conversation");
    assert!(gets <= 10 + 5, "{gets} conversation reads in all");
    app.cleanup().await;
}
