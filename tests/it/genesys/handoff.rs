//! The Architect handoff: the flow's conversation id for a submission, in either order, on a
//! restart and across replicas, with no search call, and its answer to the flow.

use std::time::Duration;

use prechat_enricher::startup::Roles;
use prechat_sim::SeedConversation;
use serde_json::{json, Value};

use super::support::*;
use crate::common::*;

/// `POST /v1/handoffs` with the test token; the status and the body.
async fn handoff(
    app: &TestApp,
    conversation_id: &str,
    submission_id: &str,
    wait_ms: u64,
) -> (u16, Value) {
    let response = http()
        .post(format!("{}/v1/handoffs?wait_ms={wait_ms}", app.url))
        .bearer_auth(TOKEN)
        .json(&json!({"conversationId": conversation_id, "submissionId": submission_id}))
        .send()
        .await
        .expect("ingest answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A conversation the attribute search cannot match: no `prechatSubmissionId` on it.
fn uncorrelated(app: &TestApp) -> String {
    app.sim.seed_conversation(SeedConversation::default()).id
}

fn gold_guest(app: &TestApp, email: &str) {
    app.sim
        .seed_customer(customer("crm-77", email, "+15550100077", "gold"));
}

const ANSWER_KEYS: [&str; 17] = [
    "status",
    "conversationId",
    "submissionId",
    "crmCustomerId",
    "loyaltyTier",
    "accountStatus",
    "loyaltyPoints",
    "previousTickets",
    "preChatSubject",
    "preChatPriority",
    "preChatLanguage",
    "crmMatch",
    "crmStatus",
    "targetQueueName",
    "targetQueueId",
    "enrichedAt",
    "identityVerified",
];

fn assert_flat_answer(answer: &Value) {
    let object = answer.as_object().expect("an object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected = ANSWER_KEYS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{answer}");
    assert!(object.values().all(Value::is_string), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handoff_after_the_submission_enriches_it_without_a_search_and_answers_with_the_attributes(
) {
    let app = spawn_app("handoff-after").await;
    gold_guest(&app, "gold.after@example.com");
    let conversation_id = uncorrelated(&app);
    let submission_id = uuid::Uuid::new_v4().to_string();
    let body = json!({"submissionId": submission_id, "guest": {"email": "gold.after@example.com"},
        "survey": {"subject": "Refund"}, "consent": {"given": true, "type": "explicit"}});
    assert_eq!(app.post(&body).await.status(), 202);
    tokio::time::sleep(Duration::from_millis(300)).await; // parked by now

    let (status, answer) = handoff(&app, &conversation_id, &submission_id, 5000).await;
    assert_eq!(status, 200, "{answer}");
    assert_flat_answer(&answer);
    assert_eq!(answer["status"], "enriched");
    assert_eq!(answer["conversationId"], conversation_id.as_str());
    assert_eq!(answer["submissionId"], submission_id.as_str());
    assert_eq!(answer["crmCustomerId"], "crm-77");
    assert_eq!(answer["loyaltyTier"], "gold");
    assert_eq!(answer["preChatSubject"], "Refund");
    assert_eq!(answer["crmStatus"], "found");
    assert!(
        !answer.to_string().contains("gold.after@example.com"),
        "no PII: {answer}"
    );

    let attributes = wait_enriched(&app, &conversation_id, Duration::from_secs(5)).await;
    assert_eq!(attributes["prechatSubmissionId"], submission_id);
    assert_eq!(attributes["loyaltyTier"], "gold");
    assert_eq!(
        attributes["enrichedAt"],
        answer["enrichedAt"].as_str().unwrap()
    );
    assert_eq!(
        app.sim.stats().calls_of("attributes_search"),
        0,
        "no search call"
    );
    assert!(app
        .metrics_text()
        .await
        .contains("prechat_handoffs_total{status=\"enriched\"} 1"));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handoff_before_its_submission_is_held_and_a_repeat_after_the_work_answers_at_once() {
    let app = spawn_app("handoff-before").await;
    let conversation_id = uncorrelated(&app);
    let submission_id = uuid::Uuid::new_v4().to_string();

    let (status, pending) = handoff(&app, &conversation_id, &submission_id, 0).await;
    assert_eq!(status, 200, "{pending}");
    assert_flat_answer(&pending);
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["targetQueueId"], "");
    assert_eq!(pending["loyaltyTier"], "");

    let body = json!({"submissionId": submission_id, "guest": {"email": "before@example.com"}, "survey": {"subject": "Later"}});
    assert_eq!(app.post(&body).await.status(), 202);
    let attributes = wait_enriched(&app, &conversation_id, Duration::from_secs(10)).await;
    assert_eq!(attributes["preChatSubject"], "Later");
    assert_eq!(attributes["prechatSubmissionId"], submission_id);

    let (status, again) = handoff(&app, &conversation_id, &submission_id, 5000).await;
    assert_eq!(status, 200);
    assert_eq!(again["status"], "enriched", "{again}");
    assert_eq!(again["preChatSubject"], "Later");
    assert_eq!(
        app.sim.stats().calls_of("attributes_search"),
        0,
        "no search call"
    );
    // The repeat changed nothing: one write.
    assert_eq!(
        app.sim
            .conversation(&conversation_id)
            .unwrap()
            .attribute_patches,
        1
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_handoff_accepted_before_a_restart_still_meets_its_submission() {
    let mut first = spawn_app("handoff-restart").await;
    let conversation_id = uncorrelated(&first);
    let submission_id = uuid::Uuid::new_v4().to_string();
    let (status, answer) = handoff(&first, &conversation_id, &submission_id, 0).await;
    assert_eq!((status, answer["status"].as_str()), (200, Some("pending")));
    first.stop().await;

    let second = start(first.sim.clone(), first.settings.clone(), Roles::ALL).await;
    let body = json!({"submissionId": submission_id, "guest": {"email": "restart@example.com"}});
    assert_eq!(second.post(&body).await.status(), 202);
    let attributes = wait_enriched(&second, &conversation_id, Duration::from_secs(10)).await;
    assert_eq!(attributes["prechatSubmissionId"], submission_id);
    assert_eq!(
        second.sim.stats().calls_of("attributes_search"),
        0,
        "no search call"
    );
    second.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_two_replicas_the_handoff_to_one_is_answered_with_the_work_of_either() {
    let first = spawn_app("handoff-replicas").await;
    let second = start(first.sim.clone(), first.settings.clone(), Roles::ALL).await;
    for i in 0..6 {
        let conversation_id = uncorrelated(&first);
        let submission_id = uuid::Uuid::new_v4().to_string();
        let (to_submit, to_hand_off) = if i % 2 == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        let body = json!({"submissionId": submission_id, "guest": {"email": format!("replica{i}@example.com")}, "survey": {"subject": format!("R{i}")}});
        assert_eq!(to_submit.post(&body).await.status(), 202);
        let (status, answer) = handoff(to_hand_off, &conversation_id, &submission_id, 5000).await;
        assert_eq!(status, 200);
        assert_eq!(answer["status"], "enriched", "{answer}");
        assert_eq!(answer["preChatSubject"], format!("R{i}").as_str());
    }
    assert_eq!(
        first.sim.stats().calls_of("attributes_search"),
        0,
        "no search call"
    );
    second.cleanup().await;
    first.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_handoff_gets_a_clear_error_and_changes_nothing() {
    let app = spawn_app("handoff-bad").await;
    let url = format!("{}/v1/handoffs", app.url);
    let post = |body: &'static str, token: Option<&'static str>, content_type: &'static str| {
        let mut request = http()
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let cases = [
        (
            r#"{"conversationId":"not-a-uuid","submissionId":"s"}"#,
            Some(TOKEN),
            "application/json",
            400,
            "invalid_conversation_id",
        ),
        (
            r#"{"conversationId":"5e1d0c01-7a3b-4c2d-9e10-000000000001"}"#,
            Some(TOKEN),
            "application/json",
            400,
            "missing_field",
        ),
        (
            r#"{"conversationId":"5e1d0c01-7a3b-4c2d-9e10-000000000001","submissionId":"s"}"#,
            None,
            "application/json",
            401,
            "unauthorized",
        ),
        (
            r#"{"conversationId":"5e1d0c01-7a3b-4c2d-9e10-000000000001","submissionId":"s"}"#,
            Some(TOKEN),
            "text/plain",
            415,
            "unsupported_media_type",
        ),
    ];
    for (body, token, content_type, status, code) in cases {
        let response = post(body, token, content_type).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}");
    }
    let response = http()
        .post(format!("{url}?wait_ms=soon"))
        .bearer_auth(TOKEN)
        .json(
            &json!({"conversationId": "5e1d0c01-7a3b-4c2d-9e10-000000000001", "submissionId": "s"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "invalid_wait_ms");
    assert_eq!(error["error"]["field"], "wait_ms");
    assert_eq!(
        app.queue_depth(&app.topology.awaiting_queue()).await,
        0,
        "nothing published"
    );
    app.cleanup().await;
}
