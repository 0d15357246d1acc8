//! What the metrics tests share: the text exposition read back (samples, sums over
//! labels, queue depths), and waiting until `/metrics` shows something.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::common::*;

pub const WAIT: Duration = Duration::from_secs(30);

/// One sample of the text exposition: name, labels, value.
#[derive(Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

pub fn samples(text: &str) -> Vec<Sample> {
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
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
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

pub fn count(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    value(text, name, labels).unwrap_or(0.0) as u64
}

/// Waits until `/metrics` satisfies `check`; the text then.
pub async fn metrics_when(app: &TestApp, check: impl Fn(&str) -> bool) -> String {
    let text = wait_until(WAIT, || async {
        let text = app.metrics_text().await;
        check(&text).then_some(text)
    })
    .await;
    text.unwrap_or_else(|| panic!("metrics never matched; last:\n{}", app.metrics.render()))
}

pub fn depth(text: &str, queue: &str, state: &str) -> Option<u64> {
    value(
        text,
        "prechat_queue_messages",
        &[("queue", queue), ("state", state)],
    )
    .map(|v| v as u64)
}
