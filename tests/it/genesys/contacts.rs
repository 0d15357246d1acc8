//! External Contacts and the guest's privacy: one contact per guest, upserted and linked in
//! four Genesys calls and a redelivery in one, never duplicated (not even by simultaneous
//! submissions), never touched without consent or for an unverified identity, and never in
//! the way of the attributes and routing when it fails; raw session ids published to
//! RabbitMQ as an HMAC.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use prechat_enricher::startup::Roles;
use prechat_sim::{Fault, Route, SeedConversation, SimConfig, Stats};
use serde_json::json;

use super::support::*;
use crate::common::*;

/// Genesys calls of one route since `before`.
fn delta(app: &TestApp, before: &Stats, route: &str) -> u64 {
    app.sim.stats().calls_of(route) - before.calls_of(route)
}

/// One guest's contact through its life: upserted and linked in four calls, a redelivery in
/// one, the same contact for her next conversation, and no contact at all for an unverified
/// or a non-consenting guest. `claim` is the sandbox's switch for whether a plain create
/// claims identifiers (undocumented in Genesys): the product must not care.
async fn a_guest_contact_through_its_life(claim: bool) {
    let overrides = [
        ("PRECHAT__GENESYS__EXTERNAL_CONTACTS__ENABLED", "true"),
        ("PRECHAT__CRM__CACHE_TTL_SECS", "0"),
        ("PRECHAT__WORKER__CONCURRENCY", "1"),
    ];
    let mut app = spawn_app_with("contacts", fast_sim(), &overrides).await;
    app.sim.set_claim_identifiers_on_create(claim);
    app.sim
        .seed_customer(customer("C-1", "jane@example.com", "+15551230001", "gold"));
    let body = |conversation_id: &str, consent: bool, verified: bool, email: &str| {
        json!({
            "submissionId": uuid::Uuid::new_v4().to_string(),
            "conversationId": conversation_id,
            "guest": {"email": email, "verified": verified},
            "consent": {"given": consent, "type": "explicit"}
        })
    };
    // Genesys' identity resolution linked the conversation to an Ephemeral contact (the
    // Messenger cookie only): the guest's own contact replaces it.
    let first = app.sim.seed_conversation(SeedConversation {
        ephemeral_contact: true,
        ..SeedConversation::default()
    });
    let ephemeral = first.linked_contact_id.clone().expect("an ephemeral link");
    let before = app.sim.stats();
    let first_body = body(&first.id, true, true, "jane@example.com");
    assert_eq!(app.post(&first_body).await.status(), 202);
    let attributes = wait_enriched(&app, &first.id, Duration::from_secs(20)).await;
    assert_eq!(attributes["identityVerified"], "true");
    let view = app.sim.conversation(&first.id).unwrap();
    let contact_id = view.linked_contact_id.clone().expect("linked");
    assert_ne!(contact_id, ephemeral);
    let first_calls = app.sim.stats().total_genesys_calls - before.total_genesys_calls;
    assert_eq!(
        first_calls,
        4,
        "GET conversation, enrich, link, PATCH: {:?}",
        app.sim.stats().calls
    );
    for route in [
        "get_generic_conversation",
        "enrich_contact",
        "link_contact",
        "patch_attributes",
    ] {
        assert_eq!(delta(&app, &before, route), 1, "{route}");
    }
    let contact = app
        .sim
        .contacts()
        .into_iter()
        .find(|c| c["id"] == contact_id.as_str())
        .unwrap();
    assert_eq!(contact["type"], "Curated");
    assert_eq!(contact["lastName"], "Doe-C-1");
    assert_eq!(
        contact["cellPhone"]["display"], "+15551230001",
        "the CRM's phone"
    );

    // A redelivery of the first submission (a lost ack): one read, nothing written.
    let before = app.sim.stats();
    app.publish_raw(
        first_body.to_string().as_bytes(),
        first_body["submissionId"].as_str().unwrap(),
    )
    .await;
    wait_until(Duration::from_secs(20), || async {
        (delta(&app, &before, "get_generic_conversation") > 0).then_some(())
    })
    .await
    .expect("redelivered");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let redelivery_calls = app.sim.stats().total_genesys_calls - before.total_genesys_calls;
    assert_eq!(redelivery_calls, 1, "{:?}", app.sim.stats().calls);

    // The same person on another conversation, after the CRM changed her name.
    let mut renamed = customer("C-1", "jane@example.com", "+15551230001", "gold");
    renamed.last_name = "Smith".into();
    app.sim.seed_customer(renamed);
    let second = app.sim.seed_conversation(SeedConversation::default());
    assert_eq!(
        app.post(&body(&second.id, true, true, "jane@example.com"))
            .await
            .status(),
        202
    );
    wait_enriched(&app, &second.id, Duration::from_secs(20)).await;
    let second_link = app.sim.conversation(&second.id).unwrap().linked_contact_id;
    assert_eq!(
        second_link.as_deref(),
        Some(contact_id.as_str()),
        "the same contact"
    );

    // Unverified (someone typed Jane's email) and non-consenting guests: enriched, no contact.
    let before = app.sim.stats();
    let unverified = app.sim.seed_conversation(SeedConversation::default());
    let no_consent = app.sim.seed_conversation(SeedConversation::default());
    for (conversation, consent, verified) in
        [(&unverified, true, false), (&no_consent, false, true)]
    {
        let submission = body(&conversation.id, consent, verified, "jane@example.com");
        assert_eq!(app.post(&submission).await.status(), 202);
        let attributes = wait_enriched(&app, &conversation.id, Duration::from_secs(20)).await;
        assert_eq!(attributes["identityVerified"], verified.to_string());
        assert_eq!(
            attributes["crmCustomerId"], "C-1",
            "still looked up and merged"
        );
    }
    assert!(app.drained_after_stop(Duration::from_secs(20)).await);
    for conversation in [&unverified, &no_consent] {
        let view = app.sim.conversation(&conversation.id).unwrap();
        assert!(view.linked_contact_id.is_none());
    }
    for route in ["enrich_contact", "link_contact"] {
        assert_eq!(delta(&app, &before, route), 0, "{route}");
    }
    let contacts: Vec<_> = app
        .sim
        .contacts()
        .into_iter()
        .filter(|c| c["type"] != "Ephemeral")
        .collect();
    assert_eq!(contacts.len(), 1, "never a second contact: {contacts:?}");
    assert_eq!(contacts[0]["lastName"], "Smith", "updated from the CRM");
    let stats = app.sim.stats();
    assert_eq!(stats.calls_of("enrich_contact"), 2);
    for unused in [
        "create_contact",
        "update_contact",
        "identifier_lookup",
        "identifier_lookup_contacts",
        "get_conversation",
    ] {
        assert_eq!(stats.calls_of(unused), 0, "{unused}");
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_guest_contact_through_its_life_when_plain_creates_claim_nothing() {
    a_guest_contact_through_its_life(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_guest_contact_through_its_life_when_plain_creates_claim_their_identifiers() {
    a_guest_contact_through_its_life(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_require_verified_off_an_unverified_guest_gets_a_contact() {
    let overrides = [
        ("PRECHAT__GENESYS__EXTERNAL_CONTACTS__ENABLED", "true"),
        (
            "PRECHAT__GENESYS__EXTERNAL_CONTACTS__REQUIRE_VERIFIED",
            "false",
        ),
    ];
    let app = spawn_app_with("contacts-unverified", fast_sim(), &overrides).await;
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    let body = json!({
        "conversationId": conversation.id,
        "guest": {"email": "jane@example.com"},
        "consent": {"given": true, "type": "explicit"}
    });
    assert_eq!(app.post(&body).await.status(), 202);
    let attributes = wait_enriched(&app, &conversation.id, Duration::from_secs(20)).await;
    assert_eq!(attributes["identityVerified"], "false");
    assert!(app
        .sim
        .conversation(&conversation.id)
        .unwrap()
        .linked_contact_id
        .is_some());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_contact_failure_is_counted_and_never_blocks_the_attributes_or_the_transfer() {
    let denied = BTreeSet::from(["externalContacts:contact:enrich".to_owned()]);
    let config = SimConfig {
        denied_permissions: BTreeMap::from([("sandbox-client".to_owned(), denied)]),
        ..fast_sim()
    };
    let overrides = [
        ("PRECHAT__GENESYS__EXTERNAL_CONTACTS__ENABLED", "true"),
        ("PRECHAT__ROUTING__MODE", "transfer"),
        ("PRECHAT__ROUTING__QUEUES__STANDARD", "Standard Support"),
    ];
    let sim = prechat_sim::spawn(config).await.unwrap();
    sim.seed_queue("Standard Support");
    let settings = test_settings(&sim, &unique_namespace("contacts-forbidden"), &overrides);
    let app = start(sim, settings, Roles::ALL).await;
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    let link_fault = app.sim.seed_conversation(SeedConversation::default());
    app.sim.add_fault(Fault {
        conversation_id: Some(link_fault.id.clone()),
        ..Fault::new(Route::LinkContact, 500)
    });
    for id in [&conversation.id, &link_fault.id] {
        let body = json!({
            "conversationId": id,
            "guest": {"email": "jane@example.com", "verified": true},
            "consent": {"given": true, "type": "explicit"}
        });
        assert_eq!(app.post(&body).await.status(), 202);
    }
    for id in [&conversation.id, &link_fault.id] {
        wait_enriched(&app, id, Duration::from_secs(20)).await;
        let view = wait_until(Duration::from_secs(20), || async {
            app.sim.conversation(id).filter(|v| v.transfers > 0)
        })
        .await
        .expect("transferred despite the contact failure");
        assert!(view.linked_contact_id.is_none());
    }
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(
            r#"prechat_external_contact_failures_total{step="enrich",error="forbidden"} 2"#
        ),
        "{metrics}"
    );
    assert_eq!(app.sim.stats().status_count("enrich_contact", 403), 2);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_simultaneous_submissions_of_one_new_guest_create_one_contact() {
    let overrides = [
        ("PRECHAT__GENESYS__EXTERNAL_CONTACTS__ENABLED", "true"),
        ("PRECHAT__WORKER__CONCURRENCY", "10"),
    ];
    let app = spawn_app_with("contacts-race", fast_sim(), &overrides).await;
    // Slow answers widen the gap between "no contact found" and "contact created".
    app.sim.set_latency_ms(30);
    let conversations: Vec<_> = (0..10)
        .map(|_| app.sim.seed_conversation(SeedConversation::default()))
        .collect();
    let posts = conversations.iter().map(|conversation| {
        let body = json!({
            "submissionId": uuid::Uuid::new_v4().to_string(),
            "conversationId": conversation.id,
            "guest": {"email": "new.guest@example.com", "phone": "+15551239999", "verified": true},
            "consent": {"given": true, "type": "explicit"}
        });
        let app = &app;
        async move { app.post(&body).await.status() }
    });
    for status in futures_util::future::join_all(posts).await {
        assert_eq!(status, 202);
    }
    for conversation in &conversations {
        wait_until(Duration::from_secs(30), || async {
            app.sim.conversation(&conversation.id)?.linked_contact_id
        })
        .await
        .expect("linked");
    }
    let contacts = app.sim.contacts();
    let ids: Vec<_> = contacts.iter().map(|c| &c["id"]).collect();
    assert_eq!(contacts.len(), 1, "one contact, not {ids:?}");
    let id = contacts[0]["id"].as_str().unwrap().to_string();
    for conversation in &conversations {
        let view = app.sim.conversation(&conversation.id).unwrap();
        assert_eq!(view.linked_contact_id.as_deref(), Some(id.as_str()));
    }
    app.cleanup().await;
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
async fn a_link_that_fails_for_a_while_is_retried_for_the_contact_alone_until_it_lands() {
    let overrides = [
        ("PRECHAT__GENESYS__EXTERNAL_CONTACTS__ENABLED", "true"),
        ("PRECHAT__ROUTING__MODE", "transfer"),
        ("PRECHAT__ROUTING__QUEUES__STANDARD", "Standard Support"),
    ];
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    sim.seed_queue("Standard Support");
    let settings = test_settings(&sim, &unique_namespace("contacts-link-retry"), &overrides);
    let app = start(sim, settings, Roles::ALL).await;
    let conversation = app.sim.seed_conversation(SeedConversation::default());
    app.sim.add_fault(Fault {
        conversation_id: Some(conversation.id.clone()),
        count: Some(2),
        ..Fault::new(Route::LinkContact, 503)
    });
    // The first transfer fails too: the retry it causes must not forget the contact.
    app.sim.add_fault(Fault {
        conversation_id: Some(conversation.id.clone()),
        count: Some(1),
        ..Fault::new(Route::ReplaceQueue, 503)
    });
    let body = json!({
        "conversationId": conversation.id,
        "guest": {"email": "retry.link@example.com", "verified": true},
        "consent": {"given": true, "type": "explicit"}
    });
    assert_eq!(app.post(&body).await.status(), 202);
    let view = wait_until(Duration::from_secs(30), || async {
        app.sim
            .conversation(&conversation.id)
            .filter(|v| v.linked_contact_id.is_some())
    })
    .await
    .expect("the contact is linked once the link works again");
    // The attributes and the transfer were done once, on the first attempt.
    assert_eq!(view.attribute_patches, 1);
    assert_eq!(view.transfers, 1);
    assert_eq!(app.sim.stats().status_count("link_contact", 503), 2);
    assert_eq!(app.sim.contacts().len(), 1, "one contact for the guest");
    assert!(app.dead_letters().await.is_empty());
    app.cleanup().await;
}
