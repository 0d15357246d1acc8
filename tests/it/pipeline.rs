//! The pipeline end to end: HTTP ingest → RabbitMQ → workers → CRM → merge → Genesys
//! (the sandbox), with retries and dead letters on a real broker.

use std::time::Duration;

use crate::common::*;
use std::collections::BTreeMap;

use prechat_enricher::queue::headers;
use prechat_sim::{Customer, Fault, Route, SeedConversation, SimConfig};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

fn sim_customer(i: usize) -> Customer {
    Customer {
        id: format!("CRM-{i}"),
        first_name: format!("First{i}"),
        last_name: format!("Last{i}"),
        email: format!("customer{i}@example.com"),
        phone: format!("+1555{:07}", 1_000_000 + i),
        loyalty_tier: ["Gold", "platinum", "Silver", "bronze-ish"][i % 4].into(),
        account_status: "Active".into(),
        loyalty_points: (i * 100) as i64,
        previous_tickets: (i % 5) as i64,
        session_hash: None,
    }
}

/// A map of attributes, from literal pairs.
fn attributes(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The attributes (without `enrichedAt`) that submission `i` of the fifty must end with,
/// written out: guest `i` is found by email (`i % 3 == 0`), by phone (`1`) or not at all
/// (`2`); consent is given for even `i` only, and only then does any PII appear.
fn fifty_expected(i: usize, submission_id: &str) -> BTreeMap<String, String> {
    let subject = format!("Question {i}");
    let priority = ["low", "normal", "high", "urgent"][i % 4];
    let consent = i % 2 == 0;
    let mut want = attributes(&[
        ("prechatSubmissionId", submission_id),
        ("preChatSubject", &subject),
        ("preChatPriority", priority),
        ("preChatLanguage", "en-GB"),
        ("accountStatus", "active"),
        ("targetQueueId", ""),
        ("targetQueueName", ""),
        ("identityVerified", "false"),
    ]);
    if i % 3 == 2 {
        want.extend(attributes(&[
            ("crmStatus", "not_found"),
            ("crmMatch", "none"),
            ("crmCustomerId", ""),
            ("loyaltyTier", "standard"),
            ("loyaltyPoints", "0"),
            ("previousTickets", "0"),
        ]));
        if consent {
            want.extend(attributes(&[(
                "email",
                &format!("stranger{i}@example.com"),
            )]));
        }
        return want;
    }
    want.extend(attributes(&[
        ("crmStatus", "found"),
        ("crmMatch", if i % 3 == 0 { "email" } else { "phone" }),
        ("crmCustomerId", &format!("CRM-{i}")),
        // The CRM's "Gold", "platinum", "Silver", "bronze-ish": known tiers in lower case.
        (
            "loyaltyTier",
            ["gold", "platinum", "silver", "bronze-ish"][i % 4],
        ),
        ("loyaltyPoints", &(i * 100).to_string()),
        ("previousTickets", &(i % 5).to_string()),
    ]));
    if consent {
        want.extend(attributes(&[
            ("email", &format!("customer{i}@example.com")),
            ("phone", &format!("+1555{:07}", 1_000_000 + i)),
            ("firstName", &format!("First{i}")),
            ("lastName", &format!("Last{i}")),
        ]));
    }
    want
}

/// Waits until the conversation has been written `patches` times; its attributes then.
async fn enriched(
    app: &TestApp,
    conversation_id: &str,
) -> std::collections::BTreeMap<String, String> {
    wait_until(WAIT, || async {
        let view = app.sim.conversation(conversation_id)?;
        (view.attribute_patches > 0).then_some(view.attributes)
    })
    .await
    .unwrap_or_else(|| panic!("conversation {conversation_id} was not enriched"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_http_submissions_are_enriched_exactly_as_the_merge_rule_says() {
    let mut app = spawn_app("fifty").await;
    let mut submitted_bodies = app.tap(&app.topology.ingest_exchange(), "submission").await;
    let mut expected = Vec::new();
    for i in 0..50 {
        let conversation = app.sim.seed_conversation(SeedConversation::default());
        let customer = sim_customer(i);
        let guest = match i % 3 {
            0 => {
                app.sim.seed_customer(customer.clone());
                json!({"email": customer.email.to_uppercase(), "sessionId": format!("raw-browser-{i}")})
            }
            1 => {
                app.sim.seed_customer(customer.clone());
                json!({"phone": customer.phone, "sessionId": format!("raw-browser-{i}")})
            }
            _ => {
                json!({"email": format!("stranger{i}@example.com"), "sessionId": format!("raw-browser-{i}")})
            }
        };
        let priority = ["low", "normal", "high", "urgent"][i % 4];
        let submission_id = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "submissionId": submission_id,
            "conversationId": conversation.id,
            "guest": guest,
            "survey": {"subject": format!("Question {i}"), "priority": priority, "language": "en-GB"},
            "consent": {"given": i % 2 == 0, "type": "explicit"}
        });
        expected.push((conversation.id.clone(), fifty_expected(i, &submission_id)));
        let response = app.post(&body).await;
        assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());
    }
    for (conversation_id, want) in &expected {
        let got = enriched(&app, conversation_id).await;
        assert_eq!(&stable(&got), want, "attributes of {conversation_id}");
        assert!(
            !got.contains_key("email") || want.contains_key("email"),
            "no PII without consent"
        );
    }
    assert!(
        app.drained_after_stop(WAIT).await,
        "every queue ends empty, nothing left unacked"
    );
    let published = submitted_bodies.collect(50, Duration::from_secs(5)).await;
    assert_eq!(published.len(), 50);
    for message in &published {
        let text = String::from_utf8_lossy(&message.body);
        assert!(
            !text.contains("raw-browser-"),
            "a raw session id reached the broker: {text}"
        );
        assert!(message.json()["guest"]["sessionHash"]
            .as_str()
            .is_some_and(|h| h.len() == 64));
    }
    assert_eq!(app.sim.stats().calls_of("patch_attributes"), 50);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crm_outage_delivers_unenriched_with_crm_status_unavailable() {
    let app = spawn_app("crm-down").await;
    app.sim.seed_customer(sim_customer(1));
    app.sim.set_crm_down(true);
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    assert_eq!(
        app.post(&submission(&conversation.id, "customer1@example.com"))
            .await
            .status(),
        202
    );
    let attributes = enriched(&app, &conversation.id).await;
    assert_eq!(attributes["crmStatus"], "unavailable");
    assert_eq!(attributes["crmMatch"], "none");
    assert_eq!(attributes["loyaltyTier"], "standard");
    assert_eq!(attributes["crmCustomerId"], "");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crm_not_found_uses_the_defaults() {
    let app = spawn_app("crm-none").await;
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    assert_eq!(
        app.post(&submission(&conversation.id, "nobody@example.com"))
            .await
            .status(),
        202
    );
    let attributes = enriched(&app, &conversation.id).await;
    assert_eq!(attributes["crmStatus"], "not_found");
    assert_eq!(attributes["crmMatch"], "none");
    assert_eq!(attributes["loyaltyTier"], "standard");
    assert_eq!(attributes["accountStatus"], "active");
    assert_eq!(attributes["loyaltyPoints"], "0");
    assert_eq!(attributes["email"], "nobody@example.com");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_genesys_500s_are_retried_through_the_delay_queue_then_succeed() {
    let app = spawn_app("two-500s").await;
    let mut events = app
        .tap(&app.topology.events_exchange(), "submission.#")
        .await;
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    app.sim.add_fault(Fault {
        count: Some(2),
        ..Fault::new(Route::PatchAttributes, 500)
    });
    assert_eq!(
        app.post(&submission(&conversation.id, "jane@example.com"))
            .await
            .status(),
        202
    );
    enriched(&app, &conversation.id).await;
    let seen = events.collect(3, WAIT).await;
    let outcomes: Vec<(String, u64)> = seen
        .iter()
        .map(|e| (e.routing_key.clone(), e.json()["attempt"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("submission.retrying".into(), 1),
            ("submission.retrying".into(), 2),
            ("submission.enriched".into(), 3)
        ]
    );
    assert_eq!(app.sim.stats().status_count("patch_attributes", 500), 2);
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_genesys_400_dead_letters_with_class_status_code_message_and_context_id() {
    let app = spawn_app("a-400").await;
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    app.sim.add_fault(Fault {
        conversation_id: Some(conversation.id.clone()),
        code: Some("bad.request".into()),
        message: Some("The attribute value is invalid".into()),
        ..Fault::new(Route::PatchAttributes, 400)
    });
    assert_eq!(
        app.post(&submission(&conversation.id, "jane@example.com"))
            .await
            .status(),
        202
    );
    let dead = wait_until(WAIT, || async { app.dead_letters().await.pop() })
        .await
        .expect("a dead letter");
    let (headers, body) = dead;
    use prechat_enricher::queue::headers::HeaderExt;
    assert_eq!(
        headers.text(headers::ERROR_CLASS).as_deref(),
        Some("genesys_rejected")
    );
    assert_eq!(headers.number(headers::ERROR_STATUS), Some(400));
    assert_eq!(
        headers.text(headers::ERROR_CODE).as_deref(),
        Some("bad.request")
    );
    assert_eq!(
        headers.text(headers::ERROR_MESSAGE).as_deref(),
        Some("The attribute value is invalid")
    );
    assert!(headers
        .text(headers::ERROR_CONTEXT_ID)
        .is_some_and(|c| !c.is_empty()));
    assert!(headers.time(headers::DEAD_LETTERED_AT).is_some());
    assert_eq!(body["conversationId"], conversation.id);
    assert!(body["guest"].get("sessionId").is_none());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_revoked_mid_run_is_refreshed_once_without_failures() {
    let app = spawn_app("token").await;
    let first = app.sim.seed_conversation(SeedConversation::default());
    assert_eq!(
        app.post(&submission(&first.id, "a@example.com"))
            .await
            .status(),
        202
    );
    enriched(&app, &first.id).await;
    app.sim.revoke_tokens();
    let mut rest = Vec::new();
    for i in 0..10 {
        let conversation = app.sim.seed_conversation(SeedConversation::default());
        assert_eq!(
            app.post(&submission(&conversation.id, &format!("b{i}@example.com")))
                .await
                .status(),
            202
        );
        rest.push(conversation.id);
    }
    for id in &rest {
        enriched(&app, id).await;
    }
    assert_eq!(
        app.sim.stats().tokens_issued,
        2,
        "one grant, then one refresh after the revocation"
    );
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_expiring_mid_run_is_renewed_before_it_expires_and_no_call_fails() {
    // Tokens live 4 s; a short-lived token is renewed halfway, so a steady run of ~5 s
    // needs a few grants and no call ever meets an expired token.
    let sim = SimConfig {
        token_lifetime_secs: 4,
        ..fast_sim()
    };
    let app = spawn_app_with("token-expiry", sim, &[]).await;
    let started = std::time::Instant::now();
    let mut ids = Vec::new();
    for i in 0..25 {
        let conversation = app.sim.seed_conversation(SeedConversation::default());
        assert_eq!(
            app.post(&submission(&conversation.id, &format!("e{i}@example.com")))
                .await
                .status(),
            202
        );
        ids.push(conversation.id);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for id in &ids {
        enriched(&app, id).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = app.sim.stats();
    let unauthorized: u64 = ["get_conversation", "patch_attributes"]
        .iter()
        .map(|route| stats.status_count(route, 401))
        .sum();
    eprintln!(
        "{} grants in {elapsed:.1} s, {unauthorized} 401s",
        stats.tokens_issued
    );
    assert_eq!(unauthorized, 0, "no call met an expired token");
    assert!(
        stats.tokens_issued >= 2,
        "the token was renewed during the run"
    );
    assert!(
        (stats.tokens_issued as f64) <= elapsed / 2.0 + 2.0,
        "renewed once per half-life, not per call: {} grants in {elapsed:.1} s",
        stats.tokens_issued
    );
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sandbox_budget_below_the_load_waits_out_429s_and_loses_nothing() {
    let sim = SimConfig {
        requests_per_minute: 24,
        ..SimConfig::default()
    };
    let app = spawn_app_with(
        "budget",
        sim,
        &[("PRECHAT__GENESYS__REQUESTS_PER_MINUTE", "6000")],
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..16 {
        let conversation = app.sim.seed_conversation(SeedConversation::default());
        assert_eq!(
            app.post(&submission(&conversation.id, &format!("c{i}@example.com")))
                .await
                .status(),
            202
        );
        ids.push(conversation.id);
    }
    for id in &ids {
        wait_until(Duration::from_secs(120), || async {
            (app.sim.conversation(id)?.attribute_patches > 0).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{id} not enriched"));
    }
    let stats = app.sim.stats();
    // The inin-ratelimit-* headers slow the limiter to the server's budget and pause it when
    // a window is spent, so at most the window boundary's one request meets a 429.
    assert!(stats.rate_limited <= 1, "429s: {}", stats.rate_limited);
    assert!(app.dead_letters().await.is_empty(), "nothing dead-lettered");
    assert_eq!(
        stats.calls_of("patch_attributes") - stats.status_count("patch_attributes", 429),
        16
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_body_on_the_exchange_is_dead_lettered_and_the_worker_keeps_going() {
    let app = spawn_app("malformed").await;
    app.publish_raw(b"{not json at all", "bad-1").await;
    app.publish_raw(
        br#"{"guest":{"sessionId":"raw-secret-session"},"consent":{"given":"yes"}}"#,
        "bad-2",
    )
    .await;
    app.publish_raw(&[0xff, 0xfe, 0x00, 0x01], "bad-3").await;
    app.publish_raw(
        br#"{"guest":{"sessionId": "raw-cut-off-session", "email":"#,
        "bad-4",
    )
    .await;
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    let valid = json!({
        "submissionId": "direct-1",
        "conversationId": conversation.id,
        "guest": {"sessionId": "raw-direct-session"},
        "survey": {"subject": "Direct"},
    });
    app.publish_raw(valid.to_string().as_bytes(), "direct-1")
        .await;
    enriched(&app, &conversation.id).await;
    let dead = wait_until(WAIT, || async {
        let dead = app.dead_letters().await;
        (dead.len() == 4).then_some(dead)
    })
    .await
    .expect("four dead letters");
    use prechat_enricher::queue::headers::HeaderExt;
    for (headers, body) in &dead {
        assert_eq!(
            headers.text(headers::ERROR_CLASS).as_deref(),
            Some("invalid_payload")
        );
        let body = body.to_string();
        assert!(!body.contains("raw-secret-session") && !body.contains("raw-cut-off-session"));
    }
    let attributes = app.sim.conversation(&conversation.id).unwrap().attributes;
    assert_eq!(attributes["prechatSubmissionId"], "direct-1");
    // After the dead letters, the worker still takes work.
    let later = app.sim.seed_conversation(SeedConversation::default());
    let valid = json!({"submissionId": "direct-2", "conversationId": later.id, "guest": {"email": "later@example.com"}});
    app.publish_raw(valid.to_string().as_bytes(), "direct-2")
        .await;
    enriched(&app, &later.id).await;
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_429_is_waited_out_and_never_counts_as_an_attempt() {
    let app = spawn_app_with("429", fast_sim(), &[("PRECHAT__WORKER__MAX_ATTEMPTS", "1")]).await;
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    app.sim.add_fault(Fault {
        count: Some(3),
        ..Fault::new(Route::PatchAttributes, 429)
    });
    assert_eq!(
        app.post(&submission(&conversation.id, "jane@example.com"))
            .await
            .status(),
        202
    );
    enriched(&app, &conversation.id).await;
    let stats = app.sim.stats();
    assert_eq!(stats.rate_limited, 3);
    assert!(
        app.dead_letters().await.is_empty(),
        "a 429 is not a failure, even with max_attempts = 1"
    );
    assert!(app
        .metrics_text()
        .await
        .contains("prechat_genesys_rate_limited_total 3"));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_callers_at_once_share_one_token_grant() {
    use prechat_enricher::genesys::auth::TokenProvider;
    prechat_enricher::startup::install_crypto_provider();
    // A slow login host widens the window in which callers would each ask for a token.
    let sim = prechat_sim::spawn(SimConfig {
        latency_ms: 200,
        ..fast_sim()
    })
    .await
    .unwrap();
    let tokens = std::sync::Arc::new(TokenProvider::new(
        reqwest::Client::new(),
        &sim.base_url(),
        "sandbox-client".into(),
        "sandbox-secret".to_string().into(),
        Duration::from_secs(60),
        std::sync::Arc::new(prechat_enricher::metrics::Metrics::new()),
    ));
    let callers = (0..20).map(|_| {
        let tokens = tokens.clone();
        tokio::spawn(async move { tokens.token().await.map(|t| t.expose().to_string()) })
    });
    let granted: Vec<String> = futures_util::future::join_all(callers)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert!(
        granted.iter().all(|t| *t == granted[0]),
        "one token for all"
    );
    assert_eq!(sim.stats().tokens_issued, 1, "one grant at a time");
    sim.shutdown();
}
