//! W3C trace context (`traceparent`) for one submission: created at ingest (or taken from
//! the request), carried in the AMQP headers, put on the log span of every message, and sent
//! on every Genesys and CRM call made for it (a fresh span id per call, the same trace id).

use std::future::Future;

tokio::task_local! {
    static TRACEPARENT: String;
}

/// A well-formed `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, not all-zero ids.
pub fn is_valid(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

/// A new sampled trace.
pub fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    format!("00-{trace}-{}-01", span_id())
}

/// `value` when valid, else a new trace.
pub fn or_new(value: Option<&str>) -> String {
    match value.map(str::trim).filter(|v| is_valid(v)) {
        Some(value) => value.to_ascii_lowercase(),
        None => new_traceparent(),
    }
}

fn span_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}

/// Runs `work` with `traceparent` as the current trace.
pub async fn scope<F: Future>(traceparent: String, work: F) -> F::Output {
    TRACEPARENT.scope(traceparent, work).await
}

/// Runs `work` for one submission: in its `submission` log span (id and trace as fields) and
/// with its trace current, so every log line and outgoing call carries it.
pub async fn in_submission<F: Future>(
    submission_id: &str,
    traceparent: String,
    work: F,
) -> F::Output {
    use tracing::Instrument;
    let span = tracing::info_span!("submission", submission.id = submission_id, traceparent = %traceparent);
    scope(traceparent, work.instrument(span)).await
}

/// The `traceparent` for an outgoing call of the current trace: same trace id, a new span id.
pub fn outgoing() -> Option<String> {
    TRACEPARENT
        .try_with(|current| {
            let mut parts = current.splitn(4, '-');
            let (version, trace, _, flags) =
                (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            Some(format!("{version}-{trace}-{}-{flags}", span_id()))
        })
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outgoing_calls_keep_the_trace_id_with_a_new_span_id() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let child = scope(parent.to_string(), async { outgoing() })
            .await
            .unwrap();
        assert!(is_valid(&child));
        assert!(child.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert_ne!(child, parent);
        assert_eq!(outgoing(), None, "no trace outside a scope");
        assert!(!is_valid(
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
        assert_eq!(or_new(Some("garbage")).len(), 55);
    }
}
