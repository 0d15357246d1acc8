//! What the dlq tests share: the `dlq` command run in process (exit code, stdout, `--json`)
//! and as the binary, dead letters fabricated with the worker's headers or dead-lettered by
//! the broker from a crash loop, and queues read back message by message.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use clap::Parser;
use lapin::options::{
    BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use prechat_enricher::cli::{Cli, Command};
use prechat_enricher::dlq::{self, DlqCommand};
use prechat_enricher::queue::dead_letter::ErrorClass;
use prechat_enricher::queue::headers::{self, json_properties, HeaderExt};
use serde_json::{json, Value};

use crate::common::*;

pub const WAIT: Duration = Duration::from_secs(30);

/// `dlq …` arguments as the binary would parse them.
fn command(args: &[&str]) -> DlqCommand {
    let argv = ["prechat-enricher", "dlq"].iter().chain(args);
    match Cli::try_parse_from(argv).expect("valid arguments").command {
        Command::Dlq { command, .. } => command,
        other => panic!("not a dlq command: {other:?}"),
    }
}

/// Runs a `dlq` command in process; its exit code and stdout.
pub async fn dlq(app: &TestApp, args: &[&str]) -> (i32, String) {
    let mut out = Vec::new();
    let code = dlq::run(&app.settings, command(args), &mut out)
        .await
        .unwrap_or_else(|e| panic!("dlq {args:?} failed: {e:#}"));
    (code, String::from_utf8(out).unwrap())
}

/// Runs a `dlq` command with `--json` in process; the parsed document.
pub async fn dlq_json(app: &TestApp, args: &[&str]) -> Value {
    let args: Vec<&str> = args.iter().copied().chain(["--json"]).collect();
    let (code, out) = dlq(app, &args).await;
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Counts per class from `dlq stats --json`.
pub async fn stats(app: &TestApp) -> BTreeMap<String, u64> {
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
pub async fn listed_ids(app: &TestApp, args: &[&str]) -> Vec<String> {
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
pub struct Fabricated {
    class: ErrorClass,
    body: Vec<u8>,
    pub id: String,
}

impl Fabricated {
    pub fn new(class: ErrorClass, conversation_id: &str, id: &str) -> Self {
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

impl Fabricated {
    /// The same dead letter with `body` (given `submissionId` = its id).
    pub fn with_body(mut self, mut body: Value) -> Self {
        body["submissionId"] = json!(self.id);
        self.body = body.to_string().into_bytes();
        self
    }
}

/// Publishes dead letters straight to `<ns>.dlx`, in order, with the worker's headers.
pub async fn publish_dead(app: &TestApp, letters: &[Fabricated]) {
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
pub async fn crash_loop(app: &TestApp, ids: &[String]) {
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
pub async fn peek(app: &TestApp, queue: &str) -> Vec<(String, FieldTable)> {
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

/// The binary, run against `app`'s namespace.
pub fn binary(app: &TestApp, args: &[&str]) -> tokio::process::Command {
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
