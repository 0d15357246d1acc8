//! Looking at and clearing the dead-letter queue: stats, list, replay and purge acting on
//! exactly one class, listings that leave the queue in its order, a scan bounded to what was
//! there, and usage errors that exit 2 and change nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use prechat_enricher::dlq::reader::Scan;
use prechat_enricher::queue::dead_letter::ErrorClass;
use prechat_enricher::queue::headers::{self, HeaderExt};
use prechat_enricher::startup::Roles;
use prechat_sim::{Fault, Route, SeedConversation, SimConfig};

use super::support::*;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_list_replay_and_purge_act_exactly_on_the_selected_class() {
    let app = spawn_app("dlq-classes").await;
    let (broken, healthy): (Vec<_>, Vec<_>) = (0..100)
        .map(|_| app.sim.seed_conversation(SeedConversation::default()).id)
        .enumerate()
        .partition(|(i, _)| *i < 20);
    let broken: Vec<String> = broken.into_iter().map(|(_, id)| id).collect();
    let healthy: Vec<String> = healthy.into_iter().map(|(_, id)| id).collect();

    // 20 real genesys_rejected dead letters, through the pipeline with a 400 from Genesys.
    for conversation in &broken {
        app.sim.add_fault(Fault {
            conversation_id: Some(conversation.clone()),
            code: Some("bad.request".into()),
            ..Fault::new(Route::PatchAttributes, 400)
        });
        let response = app
            .post(&submission(conversation, "real.guest@example.com"))
            .await;
        assert_eq!(response.status(), 202);
    }
    let real = wait_until(WAIT, || async {
        let n = app.queue_depth(&app.topology.dead_letter_queue()).await;
        (n >= 20).then_some(())
    })
    .await;
    assert!(real.is_some(), "20 real dead letters");

    // 10 real delivery_limit dead letters from the broker, then 970 straight to the DLX.
    let looped: Vec<String> = (0..10).map(|i| format!("loop-{i}")).collect();
    crash_loop(&app, &looped).await;
    let mix = [
        (ErrorClass::InvalidPayload, 150),
        (ErrorClass::GenesysForbidden, 150),
        (ErrorClass::ConversationNotFound, 150),
        (ErrorClass::RetriesExhausted, 160),
        (ErrorClass::Expired, 280),
    ];
    let mut fabricated = Vec::new();
    for (i, conversation) in healthy.iter().enumerate() {
        fabricated.push(Fabricated::new(
            ErrorClass::GenesysRejected,
            conversation,
            &format!("rejected-{i}"),
        ));
    }
    for (class, n) in mix {
        for i in 0..n {
            let conversation = uuid::Uuid::new_v4().to_string();
            let id = format!("{}-{i}", class.as_str());
            fabricated.push(Fabricated::new(class, &conversation, &id));
        }
    }
    publish_dead(&app, &fabricated).await;
    let mut expected: BTreeMap<String, u64> = ErrorClass::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), 0))
        .collect();
    for (class, n) in mix {
        expected.insert(class.as_str().into(), n);
    }
    expected.insert("genesys_rejected".into(), 100);
    expected.insert("delivery_limit".into(), 10);
    expected.insert("total".into(), 1_000);

    // stats
    assert_eq!(stats(&app).await, expected);

    // list --class: exact, and the queue is left as it was (same messages, same order).
    let before = listed_ids(&app, &[]).await;
    assert_eq!(before.len(), 1_000);
    let forbidden = dlq_json(&app, &["list", "--class", "genesys_forbidden"]).await;
    let forbidden = forbidden.as_array().unwrap();
    assert_eq!(forbidden.len(), 150);
    assert!(forbidden.iter().all(|l| l["class"] == "genesys_forbidden"));
    let delivery_limit = dlq_json(&app, &["list", "--class", "delivery_limit"]).await;
    let mut looped_listed: Vec<String> = delivery_limit
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["submissionId"].as_str().unwrap().to_string())
        .collect();
    looped_listed.sort();
    assert_eq!(looped_listed, looped);
    let limited = listed_ids(&app, &["--class", "expired", "--limit", "7"]).await;
    assert_eq!(limited.len(), 7);
    let by_id = listed_ids(&app, &["--id", "expired-3", "--id", "rejected-5"]).await;
    assert_eq!(by_id, ["rejected-5", "expired-3"]);
    assert!(listed_ids(&app, &["--since", "2999-01-01T00:00:00Z"])
        .await
        .is_empty());
    assert_eq!(listed_ids(&app, &["--since", "1h"]).await.len(), 1_000);
    assert_eq!(
        listed_ids(&app, &[]).await,
        before,
        "same messages, same order"
    );
    assert_eq!(
        app.queue_depth(&app.topology.dead_letter_queue()).await,
        1_000
    );

    // The table masks guests' emails unless asked.
    let (code, table) = dlq(
        &app,
        &["list", "--class", "genesys_rejected", "--limit", "3"],
    )
    .await;
    assert_eq!(code, 0);
    assert!(table.starts_with("DEAD-LETTERED AT"), "{table}");
    assert!(table.contains("r***@"), "{table}");
    assert!(!table.contains("real.guest@"), "{table}");
    let (_, shown) = dlq(
        &app,
        &[
            "list",
            "--class",
            "genesys_rejected",
            "--limit",
            "3",
            "--show-pii",
        ],
    )
    .await;
    assert!(
        shown.contains("real.guest@") && !shown.contains("***"),
        "{shown}"
    );

    // replay --dry-run moves nothing.
    let mut ingest = app.tap(&app.topology.ingest_exchange(), "submission").await;
    let dry = dlq_json(
        &app,
        &["replay", "--class", "genesys_rejected", "--dry-run"],
    )
    .await;
    assert_eq!(dry["matched"], 100);
    assert_eq!(dry["moved"], 0);
    assert_eq!(dry["wouldMove"].as_array().unwrap().len(), 100);
    assert!(ingest
        .collect(1, Duration::from_millis(500))
        .await
        .is_empty());
    assert_eq!(stats(&app).await, expected);

    // replay moves exactly that class, and the workers enrich it.
    app.sim.clear_faults();
    let replayed = dlq_json(&app, &["replay", "--class", "genesys_rejected"]).await;
    assert_eq!(replayed["moved"], 100, "{replayed}");
    let copies = ingest.collect(100, WAIT).await;
    assert_eq!(copies.len(), 100);
    for copy in &copies {
        assert_eq!(copy.header(headers::ATTEMPT).as_deref(), Some("1"));
        assert!(copy.headers.time(headers::REPLAYED_AT).is_some());
        assert!(copy.header(headers::ERROR_CLASS).is_none());
        assert!(copy.header(headers::DEAD_LETTERED_AT).is_none());
        assert!(copy.header(headers::FIRST_FAILURE_AT).is_none());
        assert!(copy.header("x-delivery-count").is_none());
        assert!(copy.header(headers::TRACEPARENT).is_some());
    }
    for conversation in broken.iter().chain(&healthy) {
        let enriched = wait_until(WAIT, || async {
            let view = app.sim.conversation(conversation)?;
            (view.attribute_patches > 0).then_some(())
        })
        .await;
        assert!(
            enriched.is_some(),
            "{conversation} enriched after the replay"
        );
    }
    expected.insert("genesys_rejected".into(), 0);
    expected.insert("total".into(), 900);
    assert_eq!(stats(&app).await, expected);

    // purge --yes removes exactly that class.
    let purged = dlq_json(&app, &["purge", "--class", "expired", "--yes"]).await;
    assert_eq!(purged["moved"], 280);
    expected.insert("expired".into(), 0);
    expected.insert("total".into(), 620);
    assert_eq!(stats(&app).await, expected);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_leaves_the_queue_as_it_was_in_the_same_order() {
    let sim = prechat_sim::spawn(SimConfig::default()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace("dlq-order"), &[]);
    let app = start(sim, settings, Roles::INGEST).await;
    let letters: Vec<Fabricated> = (0..300)
        .map(|i| {
            let class = ErrorClass::ALL[i % 6];
            Fabricated::new(
                class,
                &uuid::Uuid::new_v4().to_string(),
                &format!("m-{i:03}"),
            )
        })
        .collect();
    let published: Vec<String> = letters.iter().map(|l| l.id.clone()).collect();
    publish_dead(&app, &letters).await;
    for round in 0..3 {
        assert_eq!(listed_ids(&app, &[]).await, published, "round {round}");
        // A filtered or limited listing and a dry run pass over (and return) what they do
        // not select.
        assert_eq!(listed_ids(&app, &["--class", "expired"]).await.len(), 50);
        assert_eq!(listed_ids(&app, &["--limit", "10"]).await, published[..10]);
        let (code, _) = dlq(&app, &["replay", "--class", "expired", "--dry-run"]).await;
        assert_eq!(code, 0);
    }
    // A partial purge keeps the order of the rest.
    let purged = dlq_json(&app, &["purge", "--class", "expired", "--yes"]).await;
    assert_eq!(purged["moved"], 50);
    let rest: Vec<String> = published
        .iter()
        .enumerate()
        .filter(|(i, _)| ErrorClass::ALL[i % 6] != ErrorClass::Expired)
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(listed_ids(&app, &[]).await, rest);
    // The returned messages are unchanged (headers as dead-lettered), but for the broker's
    // redelivery count.
    let peeked = peek(&app, &app.topology.dead_letter_queue()).await;
    assert_eq!(peeked.len(), 250);
    assert!(peeked.iter().all(
        |(_, h)| h.number(headers::ATTEMPT) == Some(3) && h.text(headers::ERROR_CODE).is_some()
    ));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scan_takes_only_what_was_there_and_pulls_past_its_prefetch() {
    let sim = prechat_sim::spawn(SimConfig::default()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace("dlq-scan"), &[]);
    let app = start(sim, settings, Roles::INGEST).await;
    let queue = app.topology.dead_letter_queue();
    let fabricate = |range: std::ops::Range<usize>| -> Vec<Fabricated> {
        range
            .map(|i| Fabricated::new(ErrorClass::Expired, "c", &format!("s-{i:03}")))
            .collect()
    };
    publish_dead(&app, &fabricate(0..100)).await;
    // A prefetch of 10: the broker pushes 10, then the scan goes on with basic.get.
    let mut scan = Scan::open(&app.broker, &queue, 10).await.unwrap();
    assert_eq!(scan.bound(), 100);
    let mut taken = Vec::new();
    for _ in 0..50 {
        let fetched = scan.next().await.unwrap().expect("a message");
        taken.push(fetched.letter.submission_id.unwrap());
    }
    // Dead letters that arrive during the scan are not part of it.
    publish_dead(&app, &fabricate(100..120)).await;
    while let Some(fetched) = scan.next().await.unwrap() {
        taken.push(fetched.letter.submission_id.unwrap());
    }
    let first: Vec<String> = (0..100).map(|i| format!("s-{i:03}")).collect();
    assert_eq!(taken, first);
    scan.release().await.unwrap();
    // Returned messages go to the tail, behind those that arrived meanwhile.
    let order: Vec<String> = (100..120)
        .chain(0..100)
        .map(|i| format!("s-{i:03}"))
        .collect();
    assert_eq!(listed_ids(&app, &[]).await, order);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_usage_exits_2_with_a_clear_message_and_changes_nothing() {
    let sim = prechat_sim::spawn(SimConfig::default()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace("dlq-usage"), &[]);
    let app = start(sim, settings, Roles::INGEST).await;
    let letters: Vec<Fabricated> = (0..30)
        .map(|i| {
            Fabricated::new(
                ErrorClass::ALL[i % 7],
                &uuid::Uuid::new_v4().to_string(),
                &format!("u-{i:02}"),
            )
        })
        .collect();
    publish_dead(&app, &letters).await;
    let before = listed_ids(&app, &[]).await;
    assert_eq!(before.len(), 30);

    let cases: [(&[&str], &str); 7] = [
        (&["list", "--class", "nope"], "unknown error class 'nope'"),
        (&["purge", "--class", "expired"], "--yes"),
        (&["purge"], "--all"),
        (&["replay", "--since", "yesterday"], "RFC 3339"),
        (&["replay", "--rate", "0"], "above 0"),
        (&["replay", "--rate=-2"], "above 0"),
        (&["list", "--limit", "0"], "--limit"),
    ];
    for (args, message) in cases {
        let output = binary(&app, args).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(listed_ids(&app, &[]).await, before, "nothing changed");

    // Done is 0, an error is 1.
    let output = binary(&app, &["stats"]).output().await.unwrap();
    assert_eq!(output.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("total") && stdout.contains("30"),
        "{stdout}"
    );
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = binary(&app, &["replay", "--dry-run", "--class", "expired"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("would replay 4 of 30"));
    let mut missing = binary(&app, &["list"]);
    missing.env("PRECHAT__AMQP__NAMESPACE", "t-dlq-no-such-namespace");
    let output = missing.output().await.unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    assert_eq!(listed_ids(&app, &[]).await, before, "nothing changed");
    app.cleanup().await;
}
