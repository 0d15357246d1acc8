//! The operator's tools around the scan: `show` and `export` with personal data masked,
//! failure groups with `stats --by`, `--url` and `--namespace` over the environment, the
//! confirmations a purge or an unfiltered replay needs, and dead letters that survive any
//! number of scans untouched.

use prechat_enricher::queue::dead_letter::ErrorClass;
use prechat_enricher::queue::headers::{self, HeaderExt};
use prechat_enricher::startup::Roles;
use prechat_sim::SimConfig;
use serde_json::{json, Value};

use super::support::*;
use crate::common::*;

async fn app(test: &str) -> TestApp {
    let sim = prechat_sim::spawn(SimConfig::default()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace(test), &[]);
    start(sim, settings, Roles::INGEST).await
}

fn guest_body() -> Value {
    json!({
        "conversationId": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "guest": {
            "firstName": "Jane",
            "lastName": "Doe",
            "email": "jane.doe@example.com",
            "phone": "+15551234567"
        },
        "survey": {"subject": "Billing", "comment": "call me on +1 555 987 6543"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn show_and_export_give_whole_dead_letters_with_personal_data_masked_unless_asked() {
    let app = app("dlq-show").await;
    let mut letters =
        vec![Fabricated::new(ErrorClass::GenesysRejected, "c", "show-1").with_body(guest_body())];
    for i in 0..9 {
        let class = [ErrorClass::Expired, ErrorClass::InvalidPayload][i % 2];
        letters.push(Fabricated::new(class, "c", &format!("other-{i}")));
    }
    publish_dead(&app, &letters).await;
    let before = listed_ids(&app, &[]).await;

    let (code, text) = dlq(&app, &["show", "show-1"]).await;
    assert_eq!(code, 0);
    eprintln!("$ dlq show show-1\n{text}");
    for raw in ["Jane", "Doe", "jane.doe@", "5551234567", "555 987"] {
        assert!(!text.contains(raw), "{raw} in {text}");
    }
    for shown in [
        "J***",
        "j***@example.com",
        "+1******4567",
        headers::ERROR_CLASS,
        "genesys_rejected",
        "bad.request",
        headers::TRACEPARENT,
        "Billing",
    ] {
        assert!(text.contains(shown), "{shown} not in {text}");
    }
    let document = dlq_json(&app, &["show", "show-1", "--show-pii"]).await;
    assert_eq!(document["body"]["guest"]["firstName"], "Jane");
    assert_eq!(document["body"]["guest"]["email"], "jane.doe@example.com");
    assert_eq!(document["headers"][headers::ATTEMPT], 3);
    assert_eq!(document["properties"]["messageId"], "show-1");
    let missing = prechat_enricher::dlq::run(
        &app.settings,
        clap_dlq(&["show", "no-such-id"]),
        &mut Vec::new(),
    )
    .await;
    assert!(format!("{:#}", missing.unwrap_err()).contains("no dead letter with submission id"));

    // export: one JSON document per line, only the selection, masked unless asked.
    let (code, out) = dlq(&app, &["export", "--class", "expired"]).await;
    assert_eq!(code, 0);
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(lines
        .iter()
        .all(|l| l["letter"]["class"] == "expired"
            && l["headers"][headers::ERROR_CODE] == "bad.request"));
    assert!(lines[0]["body"]["guest"]["email"]
        .as_str()
        .unwrap()
        .starts_with("g***@"));
    let (_, out) = dlq(&app, &["export", "--id", "show-1", "--show-pii"]).await;
    assert!(
        out.contains("jane.doe@example.com") && out.lines().count() == 1,
        "{out}"
    );
    let (_, out) = dlq(&app, &["export", "--id", "show-1"]).await;
    assert!(!out.contains("jane.doe@") && !out.contains("Jane"), "{out}");
    assert_eq!(listed_ids(&app, &[]).await, before, "nothing changed");
    app.cleanup().await;
}

/// `dlq …` arguments, parsed as the binary parses them.
fn clap_dlq(args: &[&str]) -> prechat_enricher::dlq::DlqCommand {
    use clap::Parser;
    use prechat_enricher::cli::{Cli, Command};
    let argv = ["prechat-enricher", "dlq"].iter().chain(args);
    match Cli::try_parse_from(argv).unwrap().command {
        Command::Dlq { command, .. } => command,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_by_code_and_status_group_failures_with_an_example_each() {
    let app = app("dlq-groups").await;
    let mut letters = Vec::new();
    for i in 0..6 {
        letters.push(Fabricated::new(
            ErrorClass::GenesysRejected,
            "c",
            &format!("g-{i}"),
        ));
    }
    publish_dead(&app, &letters).await;
    // Broker dead letters: no code, no status.
    let looped: Vec<String> = (0..2).map(|i| format!("loop-{i}")).collect();
    crash_loop(&app, &looped).await;

    let by_code = dlq_json(&app, &["stats", "--by", "code"]).await;
    assert_eq!(by_code["by"], "code");
    let groups = by_code["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "{by_code}");
    assert_eq!(groups[0]["class"], "bad.request");
    assert_eq!(groups[0]["count"], 6);
    assert_eq!(groups[0]["example"]["submissionId"], "g-0");
    assert!(groups[0]["oldest"].is_string() && groups[0]["newest"].is_string());
    assert_eq!(groups[1]["class"], "-");
    assert_eq!(groups[1]["count"], 2);
    assert_eq!(by_code["total"]["count"], 8);
    let by_status = dlq_json(&app, &["stats", "--by", "status"]).await;
    assert_eq!(by_status["groups"][0]["class"], "400");
    let (code, table) = dlq(&app, &["stats", "--by", "code"]).await;
    assert_eq!(code, 0);
    eprintln!("$ dlq stats --by code\n{table}");
    assert!(table.starts_with("CODE "), "{table}");
    assert!(
        table.contains("EXAMPLE SUBMISSION") && table.contains("g-0"),
        "{table}"
    );
    assert!(table.lines().all(|l| l.chars().count() <= 80), "{table}");
    // The default stays by class, with an example per class found.
    let by_class = dlq_json(&app, &["stats"]).await;
    let rejected = by_class["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "genesys_rejected")
        .unwrap()
        .clone();
    assert_eq!(rejected["count"], 6);
    assert_eq!(rejected["example"]["submissionId"], "g-0");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn url_and_namespace_flags_win_over_the_environment() {
    let app = app("dlq-flags").await;
    let letters: Vec<Fabricated> = (0..3)
        .map(|i| Fabricated::new(ErrorClass::Expired, "c", &format!("f-{i}")))
        .collect();
    publish_dead(&app, &letters).await;
    let namespace = app.settings.amqp.namespace.clone();

    // The environment names a namespace that does not exist; the flag the right one.
    for args in [
        vec!["--namespace", namespace.as_str(), "stats"],
        vec!["stats", "--namespace", namespace.as_str()],
    ] {
        let mut command = binary(&app, &args);
        command.env("PRECHAT__AMQP__NAMESPACE", "t-dlq-no-such-namespace");
        let output = command.output().await.unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{args:?}: {stdout}");
        assert!(stdout.contains("total") && stdout.contains('3'), "{stdout}");
    }
    // And a wrong namespace by flag over the right one from the environment.
    let output = binary(&app, &["list", "--namespace", "t-dlq-no-such-namespace"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("does not exist"));
    // --url over amqp.url: nothing listens on port 1.
    let output = binary(
        &app,
        &["stats", "--url", "amqp://guest:guest@127.0.0.1:1/%2f"],
    )
    .output()
    .await
    .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(listed_ids(&app, &[]).await, ["f-0", "f-1", "f-2"]);
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purge_and_unfiltered_replay_need_all_and_a_confirmation() {
    let app = app("dlq-confirm").await;
    let letters: Vec<Fabricated> = (0..12)
        .map(|i| Fabricated::new(ErrorClass::ALL[i % 3], "c", &format!("p-{i:02}")))
        .collect();
    publish_dead(&app, &letters).await;
    let before = listed_ids(&app, &[]).await;

    let cases: [(&[&str], &[&str]); 6] = [
        (&["purge"], &["--all", "12"]),
        (&["purge", "--yes"], &["--all", "12"]),
        (&["replay"], &["--all", "12"]),
        (&["replay", "--yes", "--rate", "5"], &["--all"]),
        (&["purge", "--all"], &["--yes"]),
        (&["replay", "--all"], &["--yes"]),
    ];
    for (args, messages) in cases {
        let output = binary(&app, args).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        for message in messages {
            assert!(stderr.contains(message), "{args:?}: {stderr}");
        }
        assert!(output.stdout.is_empty(), "{args:?}");
    }
    let output = binary(&app, &["purge", "--all", "--class", "expired", "--yes"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(listed_ids(&app, &[]).await, before, "nothing changed");

    // A dry run needs neither, and changes nothing.
    let dry = dlq_json(&app, &["purge", "--dry-run"]).await;
    assert_eq!(dry["matched"], 12);
    assert_eq!(dry["moved"], 0);
    let (code, out) = dlq(&app, &["purge", "--class", "invalid_payload", "--dry-run"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("would purge 4 of 12"), "{out}");
    assert_eq!(listed_ids(&app, &[]).await, before, "nothing changed");

    // Confirmed: exactly the selection goes.
    let purged = dlq_json(&app, &["purge", "--class", "invalid_payload", "--yes"]).await;
    assert_eq!(purged["moved"], 4);
    let purged = dlq_json(&app, &["purge", "--all", "--yes"]).await;
    assert_eq!(purged["moved"], 8);
    assert!(listed_ids(&app, &[]).await.is_empty());
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_scans_in_a_row_leave_every_dead_letter_in_place_with_its_headers() {
    let app = app("dlq-scans").await;
    let letters: Vec<Fabricated> = (0..25)
        .map(|i| Fabricated::new(ErrorClass::ALL[i % 7], "c", &format!("n-{i:02}")))
        .collect();
    let published: Vec<String> = letters.iter().map(|l| l.id.clone()).collect();
    // A crash-loop letter carries the broker's x-death.
    crash_loop(&app, &["loop-0".to_string()]).await;
    publish_dead(&app, &letters).await;

    for night in 0..30 {
        let args: &[&str] = match night % 5 {
            0 => &["stats"],
            1 => &["list", "--limit", "3"],
            2 => &["stats", "--by", "code"],
            3 => &["replay", "--class", "expired", "--dry-run"],
            _ => &["show", "n-07"],
        };
        let (code, _) = dlq(&app, args).await;
        assert_eq!(code, 0, "{args:?}");
    }
    // Read once (basic.get, then returned): each message as first dead-lettered, with no
    // delivery history: never requeued by the scans, so nothing counts towards a delivery limit.
    let peeked = peek(&app, &app.topology.dead_letter_queue()).await;
    let ids: Vec<&str> = peeked.iter().map(|(id, _)| id.as_str()).collect();
    let expected: Vec<&str> = std::iter::once("loop-0")
        .chain(published.iter().map(String::as_str))
        .collect();
    assert_eq!(ids, expected, "every dead letter, in its order");
    for (id, table) in &peeked {
        assert_eq!(
            table.number("x-delivery-count").unwrap_or(0),
            0,
            "{id} was requeued: {table:?}"
        );
        if id == "loop-0" {
            assert!(table.inner().contains_key("x-death"), "{id}: {table:?}");
        } else {
            assert_eq!(table.number(headers::ATTEMPT), Some(3), "{id}");
            assert_eq!(
                table.text(headers::ERROR_CODE).as_deref(),
                Some("bad.request")
            );
            assert!(table.text(headers::TRACEPARENT).is_some());
            assert!(table.time(headers::DEAD_LETTERED_AT).is_some());
        }
    }
    app.cleanup().await;
}
