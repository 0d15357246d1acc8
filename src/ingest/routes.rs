//! Routes of the ingest.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::{Json, Router};
use chrono::Utc;
use lapin::types::FieldTable;
use serde_json::json;

use super::auth::TokenSet;
use super::error::ApiError;
use super::openapi;
use crate::handoff::watch::EnrichmentWatch;
use crate::metrics::{Metrics, StatusLabels};
use crate::privacy::SessionHasher;
use crate::queue::headers::{self, json_properties, HeaderExt};
use crate::queue::topology::{Declared, SUBMISSION_KEY};
use crate::queue::{PublishError, Publisher, Topology};
use crate::submission::{parse_submission, Origin, ParseContext, MAX_BODY_BYTES};

/// What the ingest's handlers share.
pub struct IngestState {
    /// Accepted bearer tokens.
    pub tokens: TokenSet,
    /// Confirmed publishing.
    pub publisher: Publisher,
    /// Queue names.
    pub topology: Topology,
    /// Session id hashing.
    pub hasher: SessionHasher,
    /// Region for phone numbers without `+`.
    pub phone_region: Option<phonenumber::country::Id>,
    /// Set once the topology is declared.
    pub declared: Declared,
    /// Metrics (also served here).
    pub metrics: Arc<Metrics>,
    /// Upper bound of one `POST /v1/submissions`.
    pub request_timeout: std::time::Duration,
    /// Tokens of `POST /v1/handoffs` (the ingest's when `handoff.auth_tokens` is empty).
    pub handoff_tokens: TokenSet,
    /// The handoff answer's longest wait.
    pub handoff_wait: std::time::Duration,
    /// The enrichments the handoff answers wait for.
    pub watch: EnrichmentWatch,
    /// Whether `GET /metrics` is served here (`metrics.on_ingest`).
    pub serve_metrics: bool,
}

/// `POST`: a survey.
pub const SUBMISSIONS_PATH: &str = "/v1/submissions";
/// `POST`: the Architect handoff.
pub const HANDOFFS_PATH: &str = "/v1/handoffs";
/// `GET`: liveness.
pub const HEALTHZ_PATH: &str = "/healthz";
/// `GET`: readiness.
pub const READYZ_PATH: &str = "/readyz";
/// `GET`: the metrics.
pub const METRICS_PATH: &str = "/metrics";

/// Every route the ingest serves, with its method: [`router`] serves exactly these, and the
/// OpenAPI document ([`super::openapi`]) describes each.
pub const ROUTES: [(Method, &str); 6] = [
    (Method::POST, SUBMISSIONS_PATH),
    (Method::POST, HANDOFFS_PATH),
    (Method::GET, HEALTHZ_PATH),
    (Method::GET, READYZ_PATH),
    (Method::GET, METRICS_PATH),
    (Method::GET, openapi::PATH),
];

/// The ingest's router: [`ROUTES`], each with its handler.
pub fn router(state: Arc<IngestState>) -> Router {
    let document = openapi::document(&state.topology.ingest_exchange());
    let document = Bytes::from(serde_json::to_vec(&document).expect("a JSON value serializes"));
    // `/metrics` leaves the public port with `metrics.on_ingest = false`.
    let serve_metrics = state.serve_metrics;
    ROUTES
        .into_iter()
        .filter(|(_, path)| serve_metrics || *path != METRICS_PATH)
        .fold(Router::new(), |router, (method, path)| {
            let filter = MethodFilter::try_from(method).expect("a standard method");
            router.route(path, handler(path, filter, &document))
        })
        // The body limit is enforced in `submit`, so a large body gets our error shape.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// The handler of `path`, for `filter`'s method only.
fn handler(
    path: &str,
    filter: MethodFilter,
    openapi_document: &Bytes,
) -> MethodRouter<Arc<IngestState>> {
    match path {
        SUBMISSIONS_PATH => on(filter, submit),
        HANDOFFS_PATH => on(filter, super::handoff::handoff),
        HEALTHZ_PATH => on(filter, || async { Json(json!({"status": "ok"})) }),
        READYZ_PATH => on(filter, ready),
        METRICS_PATH => on(filter, metrics),
        openapi::PATH => {
            let document = openapi_document.clone();
            on(filter, move || async move {
                ([(header::CONTENT_TYPE, "application/json")], document)
            })
        }
        _ => unreachable!("{path} is in ROUTES without a handler"),
    }
}

async fn submit(State(state): State<Arc<IngestState>>, request: Request<Body>) -> Response {
    // A slow client or a blocked broker never holds a request past the limit; the publish
    // has its own, shorter timeout, so a timeout here accepted nothing.
    let response = match tokio::time::timeout(state.request_timeout, accept(&state, request)).await
    {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => error.into_response(),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "timeout",
            "the request took too long and was not accepted; retry later",
        )
        .into_response(),
    };
    state
        .metrics
        .ingest_requests
        .get_or_create(&StatusLabels {
            status: response.status().as_u16(),
        })
        .inc();
    response
}

async fn accept(state: &IngestState, request: Request<Body>) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    if !state.tokens.authorizes(&parts.headers) {
        return Err(ApiError::unauthorized());
    }
    if !is_json(&parts.headers) {
        return Err(ApiError::not_json());
    }
    let body = read_body(body).await?;
    let context = ParseContext {
        origin: Origin::Http,
        now: Utc::now(),
        hasher: &state.hasher,
        default_phone_region: state.phone_region,
    };
    let submission = parse_submission(&body, &context)?;

    let traceparent = traceparent(&parts.headers);
    let mut message_headers = FieldTable::default();
    message_headers.set_number(headers::ATTEMPT, 1);
    message_headers.set_text(headers::ACCEPTED_AT, headers::timestamp_millis(Utc::now()));
    message_headers.set_text(headers::TRACEPARENT, traceparent.clone());
    let properties = json_properties(&submission.submission_id, message_headers);
    let published = state
        .publisher
        .publish(
            &state.topology.ingest_exchange(),
            SUBMISSION_KEY,
            &submission.to_json(),
            properties,
        )
        .await;
    match published {
        Ok(()) => {
            tracing::info!(submission.id = %submission.submission_id, traceparent = %traceparent, "submission accepted");
            let body = json!({"submissionId": submission.submission_id, "status": "queued"});
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Err(error) => {
            match &error {
                PublishError::Unroutable { .. } => {
                    tracing::error!(%error, submission.id = %submission.submission_id, traceparent = %traceparent, "ingest exchange has no bound queue; check the topology")
                }
                _ => {
                    tracing::warn!(%error, submission.id = %submission.submission_id, traceparent = %traceparent, "submission not accepted: broker unavailable")
                }
            }
            Err(match error {
                PublishError::Timeout(_) => ApiError::broker_timeout(),
                _ => ApiError::broker_unavailable(),
            })
        }
    }
}

/// The body, at most [`MAX_BODY_BYTES`].
pub(super) async fn read_body(body: Body) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is larger than {MAX_BODY_BYTES} bytes"),
            )
        })
}

pub(super) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
}

/// The caller's W3C `traceparent` when well-formed, else a new one.
pub(super) fn traceparent(headers: &HeaderMap) -> String {
    crate::trace::or_new(headers.get("traceparent").and_then(|v| v.to_str().ok()))
}

async fn ready(State(state): State<Arc<IngestState>>) -> Response {
    // Ready once the topology is declared, the broker takes publishes, and the handoff answers
    // can hear enrichments.
    let topology = state.declared.is_set() && state.watch.is_consuming();
    let broker = topology && state.publisher.ready().await;
    let status = if broker {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"broker": broker, "topology": topology})),
    )
        .into_response()
}

async fn metrics(State(state): State<Arc<IngestState>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_is_kept_and_a_bad_one_replaced() {
        let mut headers = HeaderMap::new();
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", given.parse().unwrap());
        assert_eq!(traceparent(&headers), given);
        headers.insert("traceparent", "garbage".parse().unwrap());
        assert!(crate::trace::is_valid(&traceparent(&headers)));
    }

    #[test]
    fn json_content_types_are_recognised() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&headers));
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&headers));
    }
}
