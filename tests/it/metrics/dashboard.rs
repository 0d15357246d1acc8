//! The Grafana dashboards query only metrics (and labels) the service exports, and the
//! PromQL reading that checks it.

use std::collections::BTreeSet;
use std::path::Path;

use prechat_enricher::metrics::{
    CrmLabels, GenesysLabels, HandoffLabels, Metrics, RouteLabels, StatusLabels,
};
use serde_json::Value;

use super::support::*;

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
        .handoffs
        .get_or_create(&HandoffLabels { status: "enriched" })
        .inc();
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
