//! Messages published straight to RabbitMQ that a careless or hostile web tier could send:
//! a body over 16 KiB, and a `submittedAt` from a client clock far off the service's.

use std::time::Duration;

use crate::common::*;
use prechat_enricher::queue::headers;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_amqp_body_over_16_kib_is_dead_lettered_as_invalid_payload() {
    let app = spawn_app("amqp-too-large").await;
    let id = format!("too-large-{}", uuid::Uuid::new_v4().simple());
    // Valid JSON, so only its size is wrong.
    let mut body = json!({
        "submissionId": id,
        "guest": {"email": "jane@example.com"},
        "survey": {"subject": "Billing"},
        "consent": {"given": true, "type": "explicit"},
        "padding": "",
    });
    body["padding"] = json!("x".repeat(16 * 1024));
    let bytes = body.to_string().into_bytes();
    assert!(bytes.len() > 16 * 1024);
    app.publish_raw(&bytes, &id).await;
    let dead = wait_until(Duration::from_secs(20), || async {
        let letters = app.dead_letters().await;
        (!letters.is_empty()).then_some(letters)
    })
    .await
    .expect("dead-lettered");
    let (headers_of, _) = &dead[0];
    use prechat_enricher::queue::headers::HeaderExt;
    assert_eq!(
        headers_of.text(headers::ERROR_CLASS).as_deref(),
        Some("invalid_payload")
    );
    let message = headers_of.text(headers::ERROR_MESSAGE).unwrap_or_default();
    assert!(message.contains("16384"), "names the limit: {message}");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_clock_hours_behind_does_not_expire_a_submission_the_service_just_saw() {
    let app = spawn_app("clock-behind").await;
    let mut events = app.tap(&app.topology.events_exchange(), "#").await;
    let mut routed = app.tap(&app.topology.ingest_exchange(), "submission").await;
    let id = format!("skewed-{}", uuid::Uuid::new_v4().simple());
    // The web tier's clock is two hours behind (or its queue backed up): the deadline
    // (worker.deadline_secs, 15 minutes) still counts from when the service first saw it.
    let submitted_at = chrono::Utc::now() - chrono::Duration::hours(2);
    let body = json!({
        "submissionId": id,
        "submittedAt": submitted_at.to_rfc3339(),
        // A conversation Genesys does not know yet: retried until the deadline.
        "conversationId": uuid::Uuid::new_v4().to_string(),
        "guest": {"email": "jane@example.com"},
        "survey": {"subject": "Billing"},
        "consent": {"given": true, "type": "explicit"},
    });
    let seen = chrono::Utc::now();
    app.publish_raw(body.to_string().as_bytes(), &id).await;
    let first = events.collect(1, Duration::from_secs(20)).await;
    assert_eq!(first.len(), 1, "an outcome event");
    assert_eq!(
        first[0].routing_key,
        "submission.retrying",
        "retried, not expired: {:?}",
        first[0].json()
    );
    // The original, then the retry back from its delay queue.
    let routed = routed.collect(2, Duration::from_secs(20)).await;
    assert_eq!(routed.len(), 2, "the retry comes back");
    let accepted_at = routed[1]
        .header(headers::ACCEPTED_AT)
        .expect("the retry carries when the service first saw it");
    let accepted_at = chrono::DateTime::parse_from_rfc3339(&accepted_at)
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert!(
        accepted_at >= seen - chrono::Duration::seconds(2),
        "first seen {accepted_at}, published {seen}"
    );
    app.cleanup().await;
}
