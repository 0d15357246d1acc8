//! The HTTP edge: bad input gets a clear 4xx and publishes nothing; no broker means 503 and
//! nothing accepted.

use std::time::Duration;

use crate::common::*;
use prechat_enricher::startup::Roles;
use prechat_sim::SimConfig;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_bad_http_input_gets_its_4xx_with_the_error_shape_and_nothing_is_published() {
    let app = spawn_app("bad-input").await;
    let mut published = app.tap(&app.topology.ingest_exchange(), "submission").await;
    let conversation = "8e2f6a3e-3a1c-4d53-9d1f-0a5b7c9e1f20";
    let good = submission(conversation, "jane@example.com");
    let with = |pointer: &str, value: Value| {
        let mut body = good.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body.to_string().into_bytes()
    };
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "not JSON",
            b"{nope".to_vec(),
            Some(TOKEN),
            "application/json",
            400,
            "invalid_json",
        ),
        (
            "too large",
            vec![b' '; 17 * 1024],
            Some(TOKEN),
            "application/json",
            413,
            "too_large",
        ),
        (
            "wrong content type",
            good.to_string().into_bytes(),
            Some(TOKEN),
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            "no identifier",
            json!({"conversationId": conversation, "guest": {}, "survey": {"subject": "x"}})
                .to_string()
                .into_bytes(),
            Some(TOKEN),
            "application/json",
            400,
            "missing_identifier",
        ),
        (
            "bad email",
            with("/guest/email", json!("jane@@example")),
            Some(TOKEN),
            "application/json",
            400,
            "invalid_email",
        ),
        (
            "bad phone",
            with("/guest", json!({"phone": "12"})),
            Some(TOKEN),
            "application/json",
            400,
            "invalid_phone",
        ),
        (
            "bad consent type",
            with("/consent/type", json!("maybe")),
            Some(TOKEN),
            "application/json",
            400,
            "invalid_consent_type",
        ),
        (
            "control characters",
            with("/survey/subject", json!("bill\u{0007}ing")),
            Some(TOKEN),
            "application/json",
            400,
            "control_characters",
        ),
        (
            "bad priority",
            with("/survey/priority", json!("asap")),
            Some(TOKEN),
            "application/json",
            400,
            "invalid_priority",
        ),
        (
            "no token",
            good.to_string().into_bytes(),
            None,
            "application/json",
            401,
            "unauthorized",
        ),
        (
            "wrong token",
            good.to_string().into_bytes(),
            Some("not-the-token"),
            "application/json",
            401,
            "unauthorized",
        ),
    ];
    for (name, body, token, content_type, status, code) in cases {
        let response = app.post_raw(body, token, content_type).await;
        assert_eq!(response.status().as_u16(), status, "{name}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{name}: {error}");
        let field = match name {
            "bad email" => json!("guest.email"),
            "bad phone" => json!("guest.phone"),
            "bad consent type" => json!("consent.type"),
            "control characters" => json!("survey.subject"),
            "bad priority" => json!("survey.priority"),
            "no token" | "wrong token" | "not JSON" | "too large" => Value::Null,
            _ => error["error"]["field"].clone(),
        };
        assert_eq!(
            error["error"].get("field"),
            Some(&field),
            "{name}: the error names its field (or null): {error}"
        );
        assert!(
            error["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{name}: {error}"
        );
    }
    assert!(
        published
            .collect(1, Duration::from_secs(1))
            .await
            .is_empty(),
        "nothing was published"
    );
    let accepted = app.post(&good).await;
    assert_eq!(accepted.status(), 202);
    let body: Value = accepted.json().await.unwrap();
    assert_eq!(body["status"], "queued");
    assert_eq!(published.collect(1, Duration::from_secs(5)).await.len(), 1);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_broker_the_ingest_answers_503_and_accepts_nothing() {
    let sim = prechat_sim::spawn(SimConfig::default()).await.unwrap();
    let settings = test_settings(
        &sim,
        &unique_namespace("no-broker"),
        &[
            ("PRECHAT__AMQP__URL", "amqp://guest:guest@127.0.0.1:1/%2f"),
            ("PRECHAT__AMQP__PUBLISH_TIMEOUT_MS", "1500"),
        ],
    );
    let mut app = start_unchecked(sim, settings, Roles::INGEST).await;
    let client = http();
    let health = wait_until(Duration::from_secs(10), || async {
        client
            .get(format!("{}/healthz", app.url))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
    })
    .await;
    assert!(health.is_some(), "alive without a broker");
    let ready = client
        .get(format!("{}/readyz", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let started = std::time::Instant::now();
    let response = app
        .post(&submission(
            "8e2f6a3e-3a1c-4d53-9d1f-0a5b7c9e1f20",
            "jane@example.com",
        ))
        .await;
    assert_eq!(response.status(), 503);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "broker_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered within the publish timeout"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_broker_nacks_is_an_error_and_the_publisher_goes_on() {
    use lapin::options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    };
    use lapin::types::{AMQPValue, FieldTable};
    use lapin::{BasicProperties, ExchangeKind};
    use prechat_enricher::queue::{Broker, PublishError, Publisher};

    let name = unique_namespace("nack");
    let broker = Broker::new(&[amqp_url().into()], "nack test");
    let channel = broker.channel().await.unwrap();
    let exchange_options = ExchangeDeclareOptions::default();
    channel
        .exchange_declare(
            name.as_str().into(),
            ExchangeKind::Direct,
            exchange_options,
            FieldTable::default(),
        )
        .await
        .unwrap();
    // A queue that can hold nothing and refuses what comes: the broker nacks every publish.
    let mut full = FieldTable::default();
    full.insert("x-max-length".into(), AMQPValue::LongLongInt(0));
    full.insert(
        "x-overflow".into(),
        AMQPValue::LongString("reject-publish".into()),
    );
    let queue = format!("{name}.q");
    let declare = |args: FieldTable| {
        let channel = channel.clone();
        let queue = queue.clone();
        let name = name.clone();
        async move {
            channel
                .queue_declare(queue.as_str().into(), QueueDeclareOptions::default(), args)
                .await
                .unwrap();
            channel
                .queue_bind(
                    queue.as_str().into(),
                    name.as_str().into(),
                    "k".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
        }
    };
    declare(full).await;
    let publisher = Publisher::new(broker.clone(), Duration::from_secs(3));
    let refused = publisher
        .publish(&name, "k", b"{}", BasicProperties::default())
        .await;
    assert!(matches!(refused, Err(PublishError::Nacked)), "{refused:?}");

    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    declare(FieldTable::default()).await;
    for _ in 0..8 {
        publisher
            .publish(&name, "k", b"{}", BasicProperties::default())
            .await
            .expect("confirmed once the queue takes messages");
    }
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    channel
        .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
        .await
        .unwrap();
    broker.close().await;
}
