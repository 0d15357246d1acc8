//! `prechat-enricher dlq` on a real RabbitMQ: stats, list, replay and purge in process, and
//! the binary's exit codes, a replay killed half-way, and usage errors that change nothing.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Parser;
use common::*;
use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use prechat_enricher::cli::{Cli, Command};
use prechat_enricher::dlq::reader::Scan;
use prechat_enricher::dlq::{self, DlqCommand};
use prechat_enricher::queue::headers::{self, json_properties, HeaderExt};
use prechat_enricher::startup::Roles;
use prechat_enricher::worker::decision::ErrorClass;
use prechat_sim::{Fault, Route, SeedConversation, SimConfig};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

/// `dlq …` arguments as the binary would parse them.
fn command(args: &[&str]) -> DlqCommand {
    let argv = ["prechat-enricher", "dlq"].iter().chain(args);
    match Cli::try_parse_from(argv).expect("valid arguments").command {
        Command::Dlq { command } => command,
        other => panic!("not a dlq command: {other:?}"),
    }
}

/// Runs a `dlq` command in process; its exit code and stdout.
async fn dlq(app: &TestApp, args: &[&str]) -> (i32, String) {
    let mut out = Vec::new();
    let code = dlq::run(&app.settings, command(args), &mut out)
        .await
        .unwrap_or_else(|e| panic!("dlq {args:?} failed: {e:#}"));
    (code, String::from_utf8(out).unwrap())
}

/// Runs a `dlq` command with `--json` in process; the parsed document.
async fn dlq_json(app: &TestApp, args: &[&str]) -> Value {
    let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let (code, out) = dlq(app, &args).await;
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Counts per class from `dlq stats --json`.
async fn stats(app: &TestApp) -> BTreeMap<String, u64> {
    let stats = dlq_json(app, &["stats"]).await;
    let mut counts: BTreeMap<String, u64> = stats["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["class"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    counts.insert("total".into(), stats["total"]["count"].as_u64().unwrap());
    counts
}

/// Submission ids, in queue order, from `dlq list --json` with `args`.
async fn listed_ids(app: &TestApp, args: &[&str]) -> Vec<String> {
    let args: Vec<&str> = ["list"]
        .iter()
        .copied()
        .chain(args.iter().copied())
        .collect();
    dlq_json(app, &args)
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["submissionId"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// A dead letter as the worker writes it, for volume: `(class, body, message id)`.
struct Fabricated {
    class: ErrorClass,
    body: Vec<u8>,
    id: String,
}

impl Fabricated {
    fn new(class: ErrorClass, conversation_id: &str, id: &str) -> Self {
        let body = if class == ErrorClass::InvalidPayload {
            format!("{{not json, submission {id}").into_bytes()
        } else {
            let mut body = submission(conversation_id, &format!("guest-{id}@example.com"));
            body["submissionId"] = json!(id);
            body["submittedAt"] = json!(headers::timestamp(chrono::Utc::now()));
            body.to_string().into_bytes()
        };
        Self {
            class,
            body,
            id: id.to_string(),
        }
    }
}

/// Publishes dead letters straight to `<ns>.dlx`, in order, with the worker's headers.
async fn publish_dead(app: &TestApp, letters: &[Fabricated]) {
    let channel = app.broker.channel().await.unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let exchange = app.topology.dead_letter_exchange();
    let now = headers::timestamp(chrono::Utc::now());
    let mut confirms = Vec::new();
    for letter in letters {
        let mut table = FieldTable::default();
        table.set_number(headers::ATTEMPT, 3);
        table.set_text(headers::FIRST_FAILURE_AT, now.clone());
        table.set_text(headers::DEAD_LETTERED_AT, now.clone());
        table.set_text(headers::ERROR_CLASS, letter.class.as_str());
        table.set_number(headers::ERROR_STATUS, 400);
        table.set_text(headers::ERROR_CODE, "bad.request");
        table.set_text(headers::ERROR_MESSAGE, "The attribute value is invalid");
        table.set_text(headers::ERROR_CONTEXT_ID, "ctx-1");
        table.set_text(
            headers::TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        );
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                letter.class.as_str().into(),
                BasicPublishOptions::default(),
                &letter.body,
                json_properties(&letter.id, table),
            )
            .await
            .unwrap();
        confirms.push(confirm);
    }
    for confirm in confirms {
        assert!(confirm.await.unwrap().is_ack());
    }
    let _ = channel.close(200, "published".into()).await;
}

/// Real broker dead letters: messages nacked past a quorum queue's `x-delivery-limit`, dead-
/// lettered by the broker to `<ns>.dlx` with `x-death` reason `delivery_limit` and no class.
async fn crash_loop(app: &TestApp, ids: &[String]) {
    let channel = app.broker.channel().await.unwrap();
    let queue = format!("{}.crashloop", app.settings.amqp.namespace);
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(1));
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from(app.topology.dead_letter_exchange())),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), durable, args)
        .await
        .unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for id in ids {
        let body = json!({"submissionId": id, "guest": {"email": "loop@example.com"}});
        channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                body.to_string().as_bytes(),
                json_properties(id, FieldTable::default()),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // Each message is delivered and nacked until the broker gives up on it.
    for _ in 0..ids.len() * 4 {
        let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await
            .unwrap()
        else {
            break;
        };
        channel
            .basic_nack(
                message.delivery.delivery_tag,
                BasicNackOptions {
                    multiple: false,
                    requeue: true,
                },
            )
            .await
            .unwrap();
    }
    let dead = wait_until(WAIT, || async {
        let n = app.queue_depth(&app.topology.dead_letter_queue()).await;
        (n as usize >= ids.len()).then_some(())
    })
    .await;
    assert!(dead.is_some(), "the broker dead-lettered the crash loop");
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

/// Every message of `queue`: (message id, headers), read with `basic.get` and returned.
async fn peek(app: &TestApp, queue: &str) -> Vec<(String, FieldTable)> {
    let channel = app.broker.channel().await.unwrap();
    let mut out = Vec::new();
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        let properties = &message.delivery.properties;
        out.push((
            properties
                .message_id()
                .as_ref()
                .map(|id| id.to_string())
                .unwrap_or_default(),
            properties.headers().clone().unwrap_or_default(),
        ));
    }
    let _ = channel.close(200, "peeked".into()).await;
    out
}

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
    assert!(table.contains("r***@example.com"), "{table}");
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
        shown.contains("real.guest@example.com") && !shown.contains("***"),
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

/// The binary, run against `app`'s namespace.
fn binary(app: &TestApp, args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_prechat-enricher"));
    command
        .arg("dlq")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PRECHAT_CONFIG_DIR", config_dir())
        .envs(test_env(&app.sim, &app.settings.amqp.namespace, &[]))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_killed_half_way_loses_nothing_and_marks_every_copy() {
    // Workers off: replayed copies stay countable in the work queue.
    let sim = prechat_sim::spawn(SimConfig::default()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace("dlq-kill"), &[]);
    let app = start(sim, settings, Roles::INGEST).await;
    let letters: Vec<Fabricated> = (0..300)
        .map(|i| {
            Fabricated::new(
                ErrorClass::RetriesExhausted,
                &uuid::Uuid::new_v4().to_string(),
                &format!("k-{i:03}"),
            )
        })
        .collect();
    let original: BTreeSet<String> = letters.iter().map(|l| l.id.clone()).collect();
    publish_dead(&app, &letters).await;

    let mut child = binary(&app, &["replay", "--rate", "60"]).spawn().unwrap();
    let submissions = app.topology.submissions_queue();
    let started = wait_until(WAIT, || async {
        (app.queue_depth(&submissions).await >= 40).then_some(())
    })
    .await;
    assert!(started.is_some(), "the replay got going");
    child.start_kill().unwrap(); // SIGKILL
    let status = child.wait().await.unwrap();
    assert!(!status.success());

    // The broker returns what the dead process held once it sees the connection gone.
    let dead_queue = app.topology.dead_letter_queue();
    let (dead, replayed) = wait_until(WAIT, || async {
        let dead = peek(&app, &dead_queue).await;
        let replayed = peek(&app, &submissions).await;
        let seen: BTreeSet<&String> = dead.iter().chain(&replayed).map(|(id, _)| id).collect();
        (seen.len() == original.len()).then_some((dead, replayed))
    })
    .await
    .expect("every message is dead or replayed");
    assert!(
        !replayed.is_empty() && replayed.len() < 300,
        "killed mid-way"
    );
    let dead_ids: BTreeSet<String> = dead.iter().map(|(id, _)| id.clone()).collect();
    let replayed_ids: BTreeSet<String> = replayed.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        dead_ids.len(),
        dead.len(),
        "no duplicate in the dead-letter queue"
    );
    assert_eq!(
        replayed_ids.len(),
        replayed.len(),
        "no message replayed twice"
    );
    let union: BTreeSet<String> = dead_ids.union(&replayed_ids).cloned().collect();
    assert_eq!(union, original, "nothing lost");
    let both = dead_ids.intersection(&replayed_ids).count();
    // Only copies whose confirm came just before the kill can be in both places (at most the
    // replay's in-flight window), and each of those copies is marked (checked below).
    assert!(both <= 64, "{both} messages both dead and replayed");
    assert_eq!(dead.len() + replayed.len() - both, original.len());
    for (_, headers) in &replayed {
        assert!(
            headers.time(headers::REPLAYED_AT).is_some(),
            "a copy is marked"
        );
        assert_eq!(headers.number(headers::ATTEMPT), Some(1));
    }
    for (_, headers) in &dead {
        assert!(headers.text(headers::REPLAYED_AT).is_none());
        assert_eq!(
            headers.text(headers::ERROR_CLASS).as_deref(),
            Some("retries_exhausted")
        );
    }
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_the_broker_refuses_exits_1_and_leaves_every_dead_letter() {
    let sim = prechat_sim::spawn(SimConfig::default()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace("dlq-refused"), &[]);
    let app = start(sim, settings, Roles::INGEST).await;
    let letters: Vec<Fabricated> = (0..40)
        .map(|i| Fabricated::new(ErrorClass::Expired, "c", &format!("r-{i:02}")))
        .collect();
    publish_dead(&app, &letters).await;
    let before = listed_ids(&app, &[]).await;
    // No queue behind `submission`: every copy is unroutable, which counts as a failure.
    let channel = app.broker.channel().await.unwrap();
    channel
        .queue_delete(
            app.topology.submissions_queue().as_str().into(),
            QueueDeleteOptions::default(),
        )
        .await
        .unwrap();
    let output = binary(&app, &["replay"]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no queue bound"), "{stderr}");
    assert!(stderr.contains("every other one is still in"), "{stderr}");
    // (Sorted: a run that fails before the end of the queue leaves it rotated.)
    let mut after = listed_ids(&app, &[]).await;
    after.sort();
    assert_eq!(after, before, "every dead letter is still there");
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
        (&["purge"], "--yes"),
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

/// `cargo nextest run --test dlq --run-ignored only ten_thousand` (add `--release` for
/// production-like figures): times `list` and `replay` on 10,000 dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a timing run, not a check"]
async fn ten_thousand_dead_letters_are_listed_and_replayed_in_reasonable_time() {
    let sim = prechat_sim::spawn(SimConfig::default()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace("dlq-10k"), &[]);
    let app = start(sim, settings, Roles::INGEST).await;
    let letters: Vec<Fabricated> = (0..10_000)
        .map(|i| {
            Fabricated::new(
                ErrorClass::ALL[i % 7],
                &uuid::Uuid::new_v4().to_string(),
                &format!("t-{i:05}"),
            )
        })
        .collect();
    for chunk in letters.chunks(1_000) {
        publish_dead(&app, chunk).await;
    }
    let started = Instant::now();
    let (code, _) = dlq(&app, &["stats"]).await;
    assert_eq!(code, 0);
    eprintln!("stats on 10,000: {:?}", started.elapsed());
    let started = Instant::now();
    let (code, out) = dlq(&app, &["list", "--json"]).await;
    assert_eq!(code, 0);
    eprintln!(
        "list --json on 10,000: {:?} ({} bytes)",
        started.elapsed(),
        out.len()
    );
    let started = Instant::now();
    let (code, out) = dlq(&app, &["list"]).await;
    assert_eq!(code, 0);
    eprintln!(
        "list (table) on 10,000: {:?} ({} lines)",
        started.elapsed(),
        out.lines().count()
    );
    let started = Instant::now();
    let report = dlq_json(&app, &["replay", "--class", "expired"]).await;
    eprintln!(
        "replay --class expired ({} of 10,000): {:?}",
        report["moved"],
        started.elapsed()
    );
    let started = Instant::now();
    let report = dlq_json(&app, &["replay"]).await;
    eprintln!("replay (all {}): {:?}", report["moved"], started.elapsed());
    assert_eq!(
        app.queue_depth(&app.topology.submissions_queue()).await,
        10_000
    );
    app.cleanup().await;
}
