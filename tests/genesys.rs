//! Genesys Cloud, complete: the resolver, External Contacts, transfer by tier, privacy, the
//! shared 429-aware budget and outage mode, against a real RabbitMQ and the sandbox.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use prechat_enricher::queue::headers::{self, HeaderExt};
use prechat_enricher::startup::{Application, Roles};
use prechat_sim::{Customer, Fault, Route, SeedConversation, SimConfig};
use serde_json::{json, Value};

fn customer(id: &str, email: &str, phone: &str, tier: &str) -> Customer {
    Customer {
        id: id.into(),
        first_name: "Jane".into(),
        last_name: format!("Doe-{id}"),
        email: email.into(),
        phone: phone.into(),
        loyalty_tier: tier.into(),
        account_status: "active".into(),
        loyalty_points: 10,
        previous_tickets: 1,
        session_hash: None,
    }
}

fn correlated(submission_id: &str) -> SeedConversation {
    SeedConversation {
        customer_attributes: BTreeMap::from([(
            "prechatSubmissionId".to_string(),
            submission_id.to_string(),
        )]),
        ..SeedConversation::default()
    }
}

async fn wait_enriched(
    app: &TestApp,
    conversation_id: &str,
    timeout: Duration,
) -> BTreeMap<String, String> {
    wait_until(timeout, || async {
        let view = app.sim.conversation(conversation_id)?;
        (view.attribute_patches > 0).then_some(view.attributes)
    })
    .await
    .unwrap_or_else(|| panic!("conversation {conversation_id} was not enriched"))
}

fn genesys_calls(metrics: &str, route: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("prechat_genesys_requests_total{")
                && l.contains(&format!("route=\"{route}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

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
async fn of_two_resolvers_only_one_scans() {
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
    let mut second = second;
    second.stop().await;
    first.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contacts_are_created_once_updated_for_the_same_email_and_never_duplicated_or_touched_without_consent(
) {
    let overrides = [
        ("PRECHAT__GENESYS__EXTERNAL_CONTACTS__ENABLED", "true"),
        ("PRECHAT__CRM__CACHE_TTL_SECS", "0"),
    ];
    let app = spawn_app_with("contacts", fast_sim(), &overrides).await;
    app.sim
        .seed_customer(customer("C-1", "jane@example.com", "+15551230001", "gold"));
    let first = app.sim.seed_conversation(SeedConversation::default());
    let body = |conversation_id: &str, consent: bool, email: &str| {
        json!({
            "submissionId": uuid::Uuid::new_v4().to_string(),
            "conversationId": conversation_id,
            "guest": {"email": email},
            "consent": {"given": consent, "type": "explicit"}
        })
    };
    let first_body = body(&first.id, true, "jane@example.com");
    assert_eq!(app.post(&first_body).await.status(), 202);
    let linked = wait_until(Duration::from_secs(20), || async {
        app.sim.conversation(&first.id)?.linked_contact_id
    })
    .await;
    let contact_id = linked.expect("the contact is linked");
    assert_eq!(app.sim.contacts().len(), 1);
    assert_eq!(app.sim.contacts()[0]["lastName"], "Doe-C-1");

    // The same person again, on another conversation, after the CRM changed her name.
    let mut renamed = customer("C-1", "jane@example.com", "+15551230001", "gold");
    renamed.last_name = "Smith".into();
    app.sim.seed_customer(renamed);
    let second = app.sim.seed_conversation(SeedConversation::default());
    app.sim.add_fault(Fault {
        conversation_id: Some(second.id.clone()),
        count: Some(1),
        ..Fault::new(Route::LinkContact, 500)
    });
    assert_eq!(
        app.post(&body(&second.id, true, "jane@example.com"))
            .await
            .status(),
        202
    );
    let second_link = wait_until(Duration::from_secs(20), || async {
        app.sim.conversation(&second.id)?.linked_contact_id
    })
    .await;
    assert_eq!(
        second_link.as_deref(),
        Some(contact_id.as_str()),
        "the same contact, linked after a failed link"
    );

    // A redelivery of the first submission.
    app.publish_raw(
        first_body.to_string().as_bytes(),
        first_body["submissionId"].as_str().unwrap(),
    )
    .await;
    // Without consent: enriched, but no contact touched.
    let third = app.sim.seed_conversation(SeedConversation::default());
    assert_eq!(
        app.post(&body(&third.id, false, "other@example.com"))
            .await
            .status(),
        202
    );
    let attributes = wait_enriched(&app, &third.id, Duration::from_secs(20)).await;
    for pii in ["email", "phone", "firstName", "lastName"] {
        assert!(
            !attributes.contains_key(pii),
            "{pii} written without consent"
        );
    }
    let drained = wait_until(Duration::from_secs(20), || async {
        (app.total_depth().await == 0).then_some(())
    })
    .await;
    assert!(drained.is_some());
    let contacts = app.sim.contacts();
    assert_eq!(contacts.len(), 1, "never a second contact: {contacts:?}");
    assert_eq!(contacts[0]["lastName"], "Smith", "updated from the CRM");
    assert!(app
        .sim
        .conversation(&third.id)
        .unwrap()
        .linked_contact_id
        .is_none());
    assert_eq!(app.sim.stats().calls_of("create_contact"), 1);
    app.cleanup().await;
}

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
    let app = start(sim, settings, Roles::ALL).await;
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
    let drained = wait_until(Duration::from_secs(20), || async {
        (app.total_depth().await == 0).then_some(())
    })
    .await;
    assert!(drained.is_some());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (conversation_id, _, queue, name) in &expected {
        let view = app.sim.conversation(conversation_id).unwrap();
        assert_eq!(view.queue_id.as_deref(), Some(queue.as_str()));
        assert_eq!(view.transfers, 1, "transferred exactly once");
        assert_eq!(&view.attributes["targetQueueId"], queue);
        if !name.is_empty() {
            assert_eq!(&view.attributes["targetQueueName"], name);
        }
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
    let error = Application::build(settings, Roles::WORKER)
        .await
        .err()
        .expect("the start fails");
    assert!(
        format!("{error:#}").contains("routing.queues.gold"),
        "{error:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_hash_key_makes_raw_session_ids_published_to_rabbitmq_an_hmac() {
    let app = spawn_app_with(
        "hmac",
        fast_sim(),
        &[("PRECHAT__PRIVACY__SESSION_HASH_KEY", "k-123")],
    )
    .await;
    let hasher = prechat_enricher::privacy::SessionHasher::new(Some("k-123".into()));
    let mut known = customer("S", "s@example.com", "+15551230005", "silver");
    known.session_hash = Some(hasher.hash("browser-session-9"));
    app.sim.seed_customer(known);
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    let body = json!({"submissionId": "hmac-1", "conversationId": conversation.id, "guest": {"sessionId": "browser-session-9"}});
    app.publish_raw(body.to_string().as_bytes(), "hmac-1").await;
    let attributes = wait_enriched(&app, &conversation.id, Duration::from_secs(20)).await;
    assert_eq!(attributes["crmMatch"], "session");
    assert_eq!(attributes["crmCustomerId"], "S");
    assert_ne!(
        hasher.hash("browser-session-9"),
        prechat_enricher::privacy::SessionHasher::new(None).hash("browser-session-9")
    );
    app.cleanup().await;
}

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
