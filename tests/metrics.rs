//! `/metrics` against what really happened: counters equal to the traffic and to the
//! sandbox's own counts, queue depth polled from the broker, and a dashboard that queries
//! only metrics the service exports.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::*;
use prechat_enricher::metrics::{CrmLabels, GenesysLabels, Metrics, RouteLabels, StatusLabels};
use prechat_sim::{Fault, Route, SeedConversation};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// One sample of the text exposition: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// `a="x",b="y\"z"` → {a: x, b: y"z}.
fn parse_labels(mut text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while let Some((key, rest)) = text.split_once("=\"") {
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let mut end = rest.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        text = &rest[end..];
    }
    labels
}

/// Sum of the samples named `name` whose labels include `labels`; `None` when there are none.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples(text)
        .into_iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    value(text, name, labels).unwrap_or(0.0) as u64
}

/// Waits until `/metrics` satisfies `check`; the text then.
async fn metrics_when(app: &TestApp, check: impl Fn(&str) -> bool) -> String {
    let text = wait_until(WAIT, || async {
        let text = app.metrics_text().await;
        check(&text).then_some(text)
    })
    .await;
    text.unwrap_or_else(|| panic!("metrics never matched; last:\n{}", app.metrics.render()))
}

fn depth(text: &str, queue: &str, state: &str) -> Option<u64> {
    value(
        text,
        "prechat_queue_messages",
        &[("queue", queue), ("state", state)],
    )
    .map(|v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_exactly_what_happened_and_show_the_queue_depths() {
    const GOOD: u64 = 7;
    const REJECTED: u64 = 3;
    let app = spawn_app_with(
        "metrics",
        fast_sim(),
        &[("PRECHAT__METRICS__QUEUE_POLL_INTERVAL_MS", "200")],
    )
    .await;
    let seed = |_| app.sim.seed_conversation(SeedConversation::default()).id;
    let good: Vec<String> = (0..GOOD).map(seed).collect();
    let rejected: Vec<String> = (0..REJECTED).map(seed).collect();
    for conversation in &rejected {
        app.sim.add_fault(Fault {
            conversation_id: Some(conversation.clone()),
            ..Fault::new(Route::PatchAttributes, 400)
        });
    }
    for (i, conversation) in good.iter().chain(&rejected).enumerate() {
        let response = app
            .post(&submission(conversation, &format!("guest{i}@example.com")))
            .await;
        assert_eq!(response.status(), 202);
    }

    let dead = app.topology.dead_letter_queue();
    let work = app.topology.submissions_queue();
    let text = metrics_when(&app, |text| {
        let counted = count(text, "prechat_submissions_total", &[]) == GOOD + REJECTED;
        counted
            && depth(text, &dead, "ready") == Some(REJECTED)
            && depth(text, &work, "ready") == Some(0)
            && depth(text, &work, "unacked") == Some(0)
    })
    .await;

    let outcome = |o| count(&text, "prechat_submissions_total", &[("outcome", o)]);
    assert_eq!(outcome("enriched"), GOOD);
    assert_eq!(outcome("dead_lettered"), REJECTED);
    assert_eq!(
        count(
            &text,
            "prechat_submissions_total",
            &[
                ("outcome", "dead_lettered"),
                ("error_class", "genesys_rejected")
            ]
        ),
        REJECTED
    );
    assert_eq!(
        count(&text, "prechat_ingest_requests_total", &[("status", "202")]),
        GOOD + REJECTED
    );
    assert_eq!(
        count(&text, "prechat_end_to_end_latency_seconds_count", &[]),
        GOOD
    );
    // Every queue of the topology is reported, ready and unacked (the management API is up).
    for queue in app.topology.queues() {
        assert!(depth(&text, &queue, "ready").is_some(), "{queue} ready");
        assert!(depth(&text, &queue, "unacked").is_some(), "{queue} unacked");
    }
    assert_eq!(
        depth(&text, &app.topology.awaiting_queue(), "ready"),
        Some(0)
    );

    // Genesys requests by route and status are the sandbox's own answers, one for one.
    let stats = app.sim.stats();
    let sandbox: BTreeMap<(String, String), u64> = stats
        .statuses
        .iter()
        .filter(|(key, _)| !key.starts_with(Route::CrmCustomers.as_str()))
        .map(|(key, n)| {
            let (route, status) = key.split_once(' ').unwrap();
            ((route.to_string(), status.to_string()), *n)
        })
        .collect();
    let exported: BTreeMap<(String, String), u64> = samples(&text)
        .into_iter()
        .filter(|s| s.name == "prechat_genesys_requests_total")
        .map(|s| {
            (
                (s.labels["route"].clone(), s.labels["status"].clone()),
                s.value as u64,
            )
        })
        .collect();
    assert_eq!(exported, sandbox);
    assert_eq!(
        sandbox.get(&("patch_attributes".into(), "400".into())),
        Some(&REJECTED)
    );
    assert_eq!(
        count(
            &text,
            "prechat_genesys_request_duration_seconds_count",
            &[("route", "patch_attributes")]
        ),
        stats.calls_of(Route::PatchAttributes.as_str())
    );
    assert_eq!(
        count(&text, "prechat_genesys_limiter_wait_seconds_count", &[]),
        stats.total_genesys_calls
    );
    assert_eq!(
        count(&text, "prechat_genesys_rate_limited_total", &[]),
        stats.rate_limited
    );
    assert_eq!(
        count(&text, "prechat_genesys_token_refreshes_total", &[]),
        1
    );
    assert_eq!(stats.tokens_issued, 1);

    // One CRM lookup per submission, each a call to the sandbox (distinct guests, no cache).
    assert_eq!(
        count(&text, "prechat_crm_requests_total", &[]),
        GOOD + REJECTED
    );
    assert_eq!(count(&text, "prechat_crm_cache_hits_total", &[]), 0);
    assert_eq!(
        count(&text, "prechat_crm_request_duration_seconds_count", &[]),
        stats.crm_calls
    );
    assert_eq!(value(&text, "prechat_crm_breaker_open", &[]), Some(0.0));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_the_management_api_ready_counts_come_over_amqp_and_unacked_is_not_exported() {
    let app = spawn_app_with(
        "metrics-amqp",
        fast_sim(),
        &[
            ("PRECHAT__METRICS__QUEUE_POLL_INTERVAL_MS", "200"),
            // Nothing listens on port 9 of the loopback: the API is unreachable.
            ("PRECHAT__AMQP__MANAGEMENT_URL", "http://127.0.0.1:9"),
        ],
    )
    .await;
    // A body that is not JSON is dead-lettered as invalid_payload at once.
    let dead = app.topology.dead_letter_queue();
    app.publish_raw(b"not json", "metrics-amqp-1").await;
    let text = metrics_when(&app, |text| depth(text, &dead, "ready") == Some(1)).await;
    for queue in app.topology.queues() {
        assert!(depth(&text, &queue, "ready").is_some(), "{queue} ready");
        assert_eq!(depth(&text, &queue, "unacked"), None, "{queue} unacked");
    }
    assert_eq!(
        depth(&text, &app.topology.submissions_queue(), "ready"),
        Some(0)
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_only_process_serves_metrics_on_metrics_bind() {
    let sim = prechat_sim::spawn(fast_sim())
        .await
        .expect("sandbox starts");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bind = format!("127.0.0.1:{port}");
    let settings = test_settings(
        &sim,
        &unique_namespace("metrics-worker"),
        &[
            ("PRECHAT__METRICS__BIND", &bind),
            ("PRECHAT__METRICS__QUEUE_POLL_INTERVAL_MS", "200"),
        ],
    );
    let app = start(sim, settings, prechat_enricher::startup::Roles::WORKER).await;
    let queue = app.topology.submissions_queue();
    let text = wait_until(WAIT, || async {
        let response = http()
            .get(format!("http://{bind}/metrics"))
            .send()
            .await
            .ok()?;
        let text = response.text().await.ok()?;
        depth(&text, &queue, "ready").is_some().then_some(text)
    })
    .await
    .expect("the worker's /metrics shows queue depth");
    assert!(text.ends_with("# EOF\n"));
    app.cleanup().await;
}

/// Metric names in a PromQL expression: identifiers outside quoted strings, braces and
/// `by (…)` lists that start with `prechat_` or `rabbitmq_`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut unquoted = String::new();
    let mut in_quotes = false;
    let mut depth = 0;
    for c in expr.chars() {
        match c {
            '"' => in_quotes = !in_quotes,
            '{' if !in_quotes => depth += 1,
            '}' if !in_quotes => depth -= 1,
            c if !in_quotes && depth == 0 => unquoted.push(c),
            _ => {}
        }
        if c == '}' && !in_quotes {
            unquoted.push(' ');
        }
    }
    unquoted
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("prechat_") || word.starts_with("rabbitmq_"))
        .map(str::to_string)
        .collect()
}

fn exprs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => out.push(expr.clone()),
                    _ => exprs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// The registry with one series in every family (an empty family prints nothing).
fn every_family() -> Metrics {
    let metrics = Metrics::new();
    metrics
        .ingest_requests
        .get_or_create(&StatusLabels { status: 202 })
        .inc();
    metrics.count_submission("enriched", "");
    let genesys = GenesysLabels {
        route: "patch_attributes",
        status: "202".into(),
    };
    metrics.genesys_requests.get_or_create(&genesys).inc();
    let route = RouteLabels {
        route: "patch_attributes",
    };
    metrics.genesys_latency.get_or_create(&route).observe(0.1);
    metrics
        .crm_requests
        .get_or_create(&CrmLabels { result: "found" })
        .inc();
    metrics.set_queue_depth("prechat.submissions", 1, Some(1));
    metrics
}

/// Every series name the registry exports (from its `# TYPE` lines: counters end in
/// `_total`, histograms have `_bucket`, `_sum`, `_count`), and every label name.
fn exported() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = every_family().render();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["bucket", "sum", "count"] {
                    names.insert(format!("{name}_{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_string());
            }
        }
    }
    let labels = samples(&text)
        .into_iter()
        .flat_map(|s| s.labels.into_keys())
        .collect();
    (names, labels)
}

/// Label names in matchers (`{a="x"}`) and in `by (…)` / `without (…)` clauses.
fn label_names(expr: &str) -> BTreeSet<String> {
    // Quoted values may hold anything (commas, braces): drop them first.
    let expr: String = expr
        .split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, part)| part)
        .collect::<Vec<_>>()
        .join("\"\"");
    let expr = expr.as_str();
    let mut labels = BTreeSet::new();
    for (open, close) in [('{', '}'), ('(', ')')] {
        let mut rest = expr;
        while let Some(start) = rest.find(open) {
            let before = rest[..start].trim_end();
            let inside = &rest[start + 1..];
            let end = inside.find(close).unwrap_or(inside.len());
            let grouping = before.ends_with(" by")
                || before.ends_with(" without")
                || before == "by"
                || before == "without";
            if open == '{' {
                for matcher in inside[..end].split(',') {
                    let name: String = matcher
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        labels.insert(name);
                    }
                }
            } else if grouping {
                labels.extend(inside[..end].split(',').map(|l| l.trim().to_string()));
            }
            rest = &inside[end.min(inside.len())..];
        }
    }
    labels.retain(|l| !l.is_empty());
    labels
}

#[test]
fn the_dashboard_queries_only_metrics_the_service_exports() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/dashboards");
    let (exported, labels) = exported();
    assert!(exported.contains("prechat_queue_messages"));
    assert!(exported.contains("prechat_submissions_total"));
    assert!(exported.contains("prechat_genesys_request_duration_seconds_bucket"));
    let mut dashboards = 0;
    for entry in std::fs::read_dir(&dir).expect("deploy/grafana/dashboards") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        dashboards += 1;
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid JSON");
        let mut queries = Vec::new();
        exprs(&dashboard, &mut queries);
        assert!(
            queries.len() >= 10,
            "{}: panels with queries",
            path.display()
        );
        let mut used = BTreeSet::new();
        for expr in &queries {
            let names = metric_names(expr);
            assert!(!names.is_empty(), "no metric in {expr:?}");
            if names.iter().all(|n| n.starts_with("prechat_")) {
                for label in label_names(expr) {
                    assert!(
                        labels.contains(&label) || ["job", "instance"].contains(&label.as_str()),
                        "label {label:?} of {expr:?} is not exported"
                    );
                }
            }
            used.extend(names);
        }
        let unknown: Vec<_> = used
            .iter()
            .filter(|name| name.starts_with("prechat_") && !exported.contains(*name))
            .collect();
        assert!(
            unknown.is_empty(),
            "{} queries metrics the service does not export: {unknown:?}",
            path.display()
        );
        for wanted in [
            "prechat_queue_messages",
            "prechat_submissions_total",
            "prechat_genesys_rate_limited_total",
            "prechat_genesys_limiter_wait_seconds_bucket",
        ] {
            assert!(used.contains(wanted), "the dashboard shows {wanted}");
        }
    }
    assert!(dashboards > 0, "a dashboard under {}", dir.display());
}

#[test]
fn metric_names_are_read_from_expressions() {
    let names = metric_names(
        r#"sum by (outcome) (rate(prechat_submissions_total{outcome!="x",error_class=~"prechat_y"}[5m])) / on() rabbitmq_queue_messages_ready"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["prechat_submissions_total", "rabbitmq_queue_messages_ready"]
    );
}

#[test]
fn label_names_are_read_from_matchers_and_groupings() {
    let labels = label_names(
        r#"max by (queue, state) (prechat_queue_messages{queue=~"$ns[.](a,b)",state="ready"}) + sum without (le) (x)"#,
    );
    assert_eq!(
        labels.into_iter().collect::<Vec<_>>(),
        ["le", "queue", "state"]
    );
}

#[test]
fn metrics_settings_that_cannot_work_fail_at_start_naming_the_key() {
    let sim_url = "http://127.0.0.1:9";
    let base: Vec<(&str, &str)> = vec![
        ("PRECHAT__INGEST__AUTH_TOKENS", TOKEN),
        ("PRECHAT__GENESYS__CLIENT_ID", "id"),
        ("PRECHAT__GENESYS__CLIENT_SECRET", "secret"),
        ("PRECHAT__CRM__BASE_URL", sim_url),
    ];
    let key_of = |extra: (&str, &str)| {
        let env = base
            .iter()
            .chain(std::iter::once(&extra))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let settings = prechat_enricher::config::Settings::load_from(&config_dir(), &env).unwrap();
        settings.validate().err().map(|e| e.key)
    };
    assert_eq!(key_of(("PRECHAT__METRICS__BIND", "")), None);
    assert_eq!(key_of(("PRECHAT__AMQP__MANAGEMENT_URL", "")), None);
    assert_eq!(
        key_of((
            "PRECHAT__AMQP__MANAGEMENT_URL",
            "http://guest:guest@rabbit:15672"
        )),
        Some("amqp.management_url")
    );
    assert_eq!(
        key_of(("PRECHAT__AMQP__MANAGEMENT_URL", "rabbit:15672")),
        Some("amqp.management_url")
    );
    assert_eq!(
        key_of(("PRECHAT__METRICS__BIND", "everywhere")),
        Some("metrics.bind")
    );
}
