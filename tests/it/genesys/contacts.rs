//! External Contacts and the guest's privacy: a contact created once, updated for the same
//! email, never duplicated (not even by simultaneous submissions) and never touched without
//! consent; raw session ids published to RabbitMQ as an HMAC.

use std::time::Duration;

use prechat_sim::{Fault, Route, SeedConversation};
use serde_json::json;

use super::support::*;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn contacts_are_created_once_updated_for_the_same_email_and_never_duplicated_or_touched_without_consent(
) {
    let overrides = [
        ("PRECHAT__GENESYS__EXTERNAL_CONTACTS__ENABLED", "true"),
        ("PRECHAT__CRM__CACHE_TTL_SECS", "0"),
    ];
    let mut app = spawn_app_with("contacts", fast_sim(), &overrides).await;
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
    // Genesys' identity resolution linked this conversation to an ephemeral contact (the
    // Messenger cookie only): the guest's own contact replaces it.
    let second = app.sim.seed_conversation(SeedConversation {
        ephemeral_contact: true,
        ..SeedConversation::default()
    });
    let ephemeral = second.linked_contact_id.clone().expect("an ephemeral link");
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
        app.sim
            .conversation(&second.id)?
            .linked_contact_id
            .filter(|id| *id != ephemeral)
    })
    .await;
    assert_eq!(
        second_link.as_deref(),
        Some(contact_id.as_str()),
        "the same contact, linked in place of the ephemeral {ephemeral} after a failed link"
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
    assert!(app.drained_after_stop(Duration::from_secs(20)).await);
    let contacts: Vec<_> = app
        .sim
        .contacts()
        .into_iter()
        .filter(|c| c["type"] != "Ephemeral")
        .collect();
    assert_eq!(contacts.len(), 1, "never a second contact: {contacts:?}");
    assert_eq!(contacts[0]["lastName"], "Smith", "updated from the CRM");
    assert!(app
        .sim
        .conversation(&third.id)
        .unwrap()
        .linked_contact_id
        .is_none());
    assert_eq!(app.sim.stats().calls_of("create_contact"), 1);
    // Two lookups for the first (email, then the CRM's phone), two for the second (its
    // failed link retried), one for the redelivery, none without consent: no email or phone
    // went to Genesys for the third.
    assert_eq!(app.sim.stats().calls_of("identifier_lookup"), 5);
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
            "guest": {"email": "new.guest@example.com", "phone": "+15551239999"},
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
