//! `POST /v1/handoffs`: the Architect data action hands over the flow's conversation id for a
//! submission id. The handoff is published with confirms, then the answer waits up to
//! `handoff.wait_ms` for the enrichment and gives the flow the attributes as flat strings.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use lapin::types::FieldTable;
use serde::Deserialize;

use super::error::ApiError;
use super::routes::{is_json, read_body, traceparent, IngestState};
use crate::config::MAX_HANDOFF_WAIT_MS;
use crate::handoff::{answer, Handoff, KIND, KIND_HEADER};
use crate::metrics::HandoffLabels;
use crate::queue::headers::{self, json_properties, HeaderExt};
use crate::queue::topology::HANDOFF_KEY;
use crate::queue::PublishError;

/// `?wait_ms=N`: a shorter wait than the configured one.
#[derive(Debug, Deserialize)]
pub struct WaitQuery {
    wait_ms: Option<u64>,
}

/// The route.
pub async fn handoff(
    State(state): State<Arc<IngestState>>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    request: Request<Body>,
) -> Response {
    let accepted = match query {
        Ok(Query(query)) => accept(&state, query, request).await,
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_wait_ms",
            "wait_ms must be a whole number of milliseconds",
        )
        .with_field(Some("wait_ms"))),
    };
    let (response, status) = match accepted {
        Ok((response, status)) => (response, status),
        Err(error) => {
            let status = if error.is_unavailable() {
                "unavailable"
            } else {
                "rejected"
            };
            (error.into_response(), status)
        }
    };
    state
        .metrics
        .handoffs
        .get_or_create(&HandoffLabels { status })
        .inc();
    response
}

async fn accept(
    state: &IngestState,
    query: WaitQuery,
    request: Request<Body>,
) -> Result<(Response, &'static str), ApiError> {
    let (parts, body) = request.into_parts();
    if !state.handoff_tokens.authorizes(&parts.headers) {
        return Err(ApiError::unauthorized());
    }
    if !is_json(&parts.headers) {
        return Err(ApiError::not_json());
    }
    let body = read_body(body).await?;
    let mut handoff = Handoff::parse(&body).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, e.code, e.message).with_field(e.field)
    })?;
    let wait = Duration::from_millis(
        query
            .wait_ms
            .unwrap_or(u64::MAX)
            .min(state.handoff_wait.as_millis() as u64)
            .min(MAX_HANDOFF_WAIT_MS),
    );
    let accepted_at = Utc::now();
    handoff.accepted_at = Some(accepted_at);
    let traceparent = traceparent(&parts.headers);
    let mut message_headers = FieldTable::default();
    message_headers.set_text(KIND_HEADER, KIND);
    message_headers.set_text(headers::ACCEPTED_AT, headers::timestamp(accepted_at));
    message_headers.set_text(headers::TRACEPARENT, traceparent.clone());
    let body = serde_json::to_vec(&handoff).expect("a handoff serializes");
    let published = state
        .publisher
        .publish(
            &state.topology.ingest_exchange(),
            HANDOFF_KEY,
            &body,
            json_properties(&handoff.submission_id, message_headers),
        )
        .await;
    if let Err(error) = published {
        tracing::warn!(%error, submission.id = %handoff.submission_id, conversation.id = %handoff.conversation_id, traceparent = %traceparent, "handoff not accepted: broker unavailable");
        return Err(match error {
            PublishError::Timeout(_) => ApiError::broker_timeout(),
            _ => ApiError::broker_unavailable(),
        });
    }
    tracing::info!(submission.id = %handoff.submission_id, conversation.id = %handoff.conversation_id, traceparent = %traceparent, "handoff accepted");
    let enriched = state.watch.wait(&handoff.submission_id, wait).await;
    let status = if enriched.is_some() {
        "enriched"
    } else {
        "pending"
    };
    let body = answer(&handoff, enriched.as_deref());
    Ok(((StatusCode::OK, Json(body)).into_response(), status))
}
