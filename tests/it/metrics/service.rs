//! The running service's `/metrics` against what really happened: counters equal to the
//! traffic and to the sandbox's own counts, queue depths from the management API or over
//! AMQP, a worker-only process serving `metrics.bind`, and settings that cannot work.

use std::collections::BTreeMap;

use prechat_sim::{Fault, Route, SeedConversation};

use super::support::*;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_exactly_what_happened_and_show_the_queue_depths() {
    const GOOD: u64 = 7;
    const REJECTED: u64 = 3;
    let app = spawn_app_with(
        "metrics",
        fast_sim(),
        &[("PRECHAT__METRICS__QUEUE_POLL_INTERVAL_MS", "200")],
    )
    .await;
    let seed = |_| app.sim.seed_conversation(SeedConversation::default()).id;
    let good: Vec<String> = (0..GOOD).map(seed).collect();
    let rejected: Vec<String> = (0..REJECTED).map(seed).collect();
    for conversation in &rejected {
        app.sim.add_fault(Fault {
            conversation_id: Some(conversation.clone()),
            ..Fault::new(Route::PatchAttributes, 400)
        });
    }
    for (i, conversation) in good.iter().chain(&rejected).enumerate() {
        let response = app
            .post(&submission(conversation, &format!("guest{i}@example.com")))
            .await;
        assert_eq!(response.status(), 202);
    }

    let dead = app.topology.dead_letter_queue();
    let work = app.topology.submissions_queue();
    let text = metrics_when(&app, |text| {
        let counted = count(text, "prechat_submissions_total", &[]) == GOOD + REJECTED;
        counted
            && depth(text, &dead, "ready") == Some(REJECTED)
            && depth(text, &work, "ready") == Some(0)
            && depth(text, &work, "unacked") == Some(0)
    })
    .await;

    let outcome = |o| count(&text, "prechat_submissions_total", &[("outcome", o)]);
    assert_eq!(outcome("enriched"), GOOD);
    assert_eq!(outcome("dead_lettered"), REJECTED);
    assert_eq!(
        count(
            &text,
            "prechat_submissions_total",
            &[
                ("outcome", "dead_lettered"),
                ("error_class", "genesys_rejected")
            ]
        ),
        REJECTED
    );
    assert_eq!(
        count(&text, "prechat_ingest_requests_total", &[("status", "202")]),
        GOOD + REJECTED
    );
    assert_eq!(
        count(&text, "prechat_end_to_end_latency_seconds_count", &[]),
        GOOD
    );
    // Every queue of the topology is reported, ready and unacked (the management API is up).
    for queue in app.topology.queues() {
        assert!(depth(&text, &queue, "ready").is_some(), "{queue} ready");
        assert!(depth(&text, &queue, "unacked").is_some(), "{queue} unacked");
    }
    assert_eq!(
        depth(&text, &app.topology.awaiting_queue(), "ready"),
        Some(0)
    );

    // Genesys requests by route and status are the sandbox's own answers, one for one.
    let stats = app.sim.stats();
    let sandbox: BTreeMap<(String, String), u64> = stats
        .statuses
        .iter()
        .filter(|(key, _)| !key.starts_with(Route::CrmCustomers.as_str()))
        .map(|(key, n)| {
            let (route, status) = key.split_once(' ').unwrap();
            ((route.to_string(), status.to_string()), *n)
        })
        .collect();
    let exported: BTreeMap<(String, String), u64> = samples(&text)
        .into_iter()
        .filter(|s| s.name == "prechat_genesys_requests_total")
        .map(|s| {
            (
                (s.labels["route"].clone(), s.labels["status"].clone()),
                s.value as u64,
            )
        })
        .collect();
    assert_eq!(exported, sandbox);
    assert_eq!(
        sandbox.get(&("patch_attributes".into(), "400".into())),
        Some(&REJECTED)
    );
    assert_eq!(
        count(
            &text,
            "prechat_genesys_request_duration_seconds_count",
            &[("route", "patch_attributes")]
        ),
        stats.calls_of(Route::PatchAttributes.as_str())
    );
    assert_eq!(
        count(&text, "prechat_genesys_limiter_wait_seconds_count", &[]),
        stats.total_genesys_calls
    );
    assert_eq!(
        count(&text, "prechat_genesys_rate_limited_total", &[]),
        stats.rate_limited
    );
    assert_eq!(
        count(&text, "prechat_genesys_token_refreshes_total", &[]),
        1
    );
    assert_eq!(stats.tokens_issued, 1);

    // One CRM lookup per submission, each a call to the sandbox (distinct guests, no cache).
    assert_eq!(
        count(&text, "prechat_crm_requests_total", &[]),
        GOOD + REJECTED
    );
    assert_eq!(count(&text, "prechat_crm_cache_hits_total", &[]), 0);
    assert_eq!(
        count(&text, "prechat_crm_request_duration_seconds_count", &[]),
        stats.crm_calls
    );
    assert_eq!(value(&text, "prechat_crm_breaker_open", &[]), Some(0.0));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_management_api_ready_counts_come_over_amqp_and_unacked_is_not_exported() {
    let app = spawn_app_with(
        "metrics-amqp",
        fast_sim(),
        &[
            ("PRECHAT__METRICS__QUEUE_POLL_INTERVAL_MS", "200"),
            // Nothing listens on port 9 of the loopback: the API is unreachable.
            ("PRECHAT__AMQP__MANAGEMENT_URL", "http://127.0.0.1:9"),
        ],
    )
    .await;
    // A body that is not JSON is dead-lettered as invalid_payload at once.
    let dead = app.topology.dead_letter_queue();
    app.publish_raw(b"not json", "metrics-amqp-1").await;
    // The queues are polled one after the other, so one poll can count the message both in
    // the work queue (before the worker took it) and in the dead-letter queue (after).
    let submissions = app.topology.submissions_queue();
    let text = metrics_when(&app, |text| {
        depth(text, &dead, "ready") == Some(1) && depth(text, &submissions, "ready") == Some(0)
    })
    .await;
    for queue in app.topology.queues() {
        assert!(depth(&text, &queue, "ready").is_some(), "{queue} ready");
        assert_eq!(depth(&text, &queue, "unacked"), None, "{queue} unacked");
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_only_process_serves_metrics_on_metrics_bind() {
    let sim = prechat_sim::spawn(fast_sim())
        .await
        .expect("sandbox starts");
    let bind = format!("127.0.0.1:{}", free_port());
    let settings = test_settings(
        &sim,
        &unique_namespace("metrics-worker"),
        &[
            ("PRECHAT__METRICS__BIND", &bind),
            ("PRECHAT__METRICS__QUEUE_POLL_INTERVAL_MS", "200"),
        ],
    );
    let app = start(sim, settings, prechat_enricher::startup::Roles::WORKER).await;
    let queue = app.topology.submissions_queue();
    let text = wait_until(WAIT, || async {
        let response = http()
            .get(format!("http://{bind}/metrics"))
            .send()
            .await
            .ok()?;
        let text = response.text().await.ok()?;
        depth(&text, &queue, "ready").is_some().then_some(text)
    })
    .await
    .expect("the worker's /metrics shows queue depth");
    assert!(text.ends_with("# EOF\n"));
    app.cleanup().await;
}

#[test]
fn metrics_settings_that_cannot_work_fail_at_start_naming_the_key() {
    let sim_url = "http://127.0.0.1:9";
    let base: Vec<(&str, &str)> = vec![
        ("PRECHAT__INGEST__AUTH_TOKENS", TOKEN),
        ("PRECHAT__GENESYS__CLIENT_ID", "id"),
        ("PRECHAT__GENESYS__CLIENT_SECRET", "secret"),
        ("PRECHAT__CRM__BASE_URL", sim_url),
    ];
    let key_of = |extra: (&str, &str)| {
        let env = base
            .iter()
            .chain(std::iter::once(&extra))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let settings = prechat_enricher::config::Settings::load_from(&config_dir(), &env).unwrap();
        settings.validate().err().map(|e| e.key)
    };
    assert_eq!(key_of(("PRECHAT__METRICS__BIND", "")), None);
    assert_eq!(key_of(("PRECHAT__AMQP__MANAGEMENT_URL", "")), None);
    assert_eq!(
        key_of((
            "PRECHAT__AMQP__MANAGEMENT_URL",
            "http://guest:guest@rabbit:15672"
        )),
        Some("amqp.management_url")
    );
    assert_eq!(
        key_of(("PRECHAT__AMQP__MANAGEMENT_URL", "rabbit:15672")),
        Some("amqp.management_url")
    );
    assert_eq!(
        key_of(("PRECHAT__METRICS__BIND", "everywhere")),
        Some("metrics.bind")
    );
}
