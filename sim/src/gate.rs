//! What every call goes through before its handler: authentication, the rate limit, added
//! latency, random errors and injected faults, plus the stats and the Genesys headers.
//!
//! Order on `/api/v2`: bearer token (401) → rate limit (429) → the client's permissions (403)
//! → latency → error rate (503) → faults → handler. `ININ-Correlation-Id` is on every answer; the `inin-ratelimit-*`
//! headers on every answer that got past authentication (a 401 has no token to count against).

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use crate::error::{default_code, ApiError, CORRELATION_ID};
use crate::faults::{Firing, Route};
use crate::ratelimit::Decision;
use crate::state::{random_unit, Sim};

/// State of a gate: the sandbox and the route it guards.
pub(crate) type GateState = (Sim, Route);

/// The request's `traceparent` header, if any.
fn traceparent(headers: &HeaderMap) -> Option<String> {
    headers.get("traceparent")?.to_str().ok().map(str::to_owned)
}

/// The bearer token of a request, if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Gate of the Genesys Platform API routes (`/api/v2/...`).
pub(crate) async fn genesys(
    State((sim, route)): State<GateState>,
    request: Request,
    next: Next,
) -> Response {
    let correlation = Uuid::new_v4().to_string();
    let traceparent = traceparent(request.headers());
    let mut response = CORRELATION_ID
        .scope(
            correlation.clone(),
            admit_and_run(&sim, route, request, next),
        )
        .await;
    set_header(&mut response, "inin-correlation-id", &correlation);
    let status = response.status().as_u16();
    {
        let mut inner = sim.lock();
        inner.stats.total_genesys_calls += 1;
        inner.stats.record(route.as_str(), status);
        inner.stats.record_trace(traceparent.as_deref());
    }
    tracing::debug!(route = route.as_str(), status, "genesys call");
    response
}

async fn admit_and_run(sim: &Sim, route: Route, request: Request, next: Next) -> Response {
    let Some((decision, client_id)) = check_token(sim, request.headers()) else {
        return ApiError::unauthorized().into_response();
    };
    let mut response = if !decision.allowed {
        ApiError::rate_limited(decision.reset_secs).into_response()
    } else if let Some(missing) = missing_permissions(sim, route, &client_id) {
        ApiError::missing_permissions(missing).into_response()
    } else {
        run_after_admission(sim, route, request, next).await
    };
    set_header(
        &mut response,
        "inin-ratelimit-count",
        &decision.count.to_string(),
    );
    set_header(
        &mut response,
        "inin-ratelimit-allowed",
        &decision.limit.to_string(),
    );
    set_header(
        &mut response,
        "inin-ratelimit-reset",
        &decision.reset_secs.to_string(),
    );
    response
}

/// The route's permissions when the client's role has none of them (configured in
/// [`crate::SimConfig::denied_permissions`]).
fn missing_permissions(
    sim: &Sim,
    route: Route,
    client_id: &str,
) -> Option<&'static [&'static str]> {
    let needed = route.permissions();
    let denied = sim.config().denied_permissions.get(client_id)?;
    (!needed.is_empty() && needed.iter().all(|p| denied.contains(*p))).then_some(needed)
}

/// Checks the bearer token and counts the call against its window; `None` means 401.
fn check_token(sim: &Sim, headers: &HeaderMap) -> Option<(Decision, String)> {
    let token = bearer(headers)?;
    let now = Instant::now();
    let mut inner = sim.lock();
    let limit = inner.knobs.requests_per_minute;
    let info = inner.tokens.get_mut(token)?;
    if now >= info.expires_at {
        inner.tokens.remove(token);
        return None;
    }
    Some((info.window.admit(now, limit), info.client_id.clone()))
}

async fn run_after_admission(sim: &Sim, route: Route, request: Request, next: Next) -> Response {
    let knobs = sim.knobs();
    sleep_ms(knobs.latency_ms).await;
    if knobs.error_rate > 0.0 && random_unit() < knobs.error_rate {
        return ApiError::from_status(StatusCode::SERVICE_UNAVAILABLE).into_response();
    }
    if let Some(firing) = fire(sim, route, &path(&request)).await {
        return genesys_fault(firing);
    }
    next.run(request).await
}

/// Gate of `POST /oauth/token`: latency and faults (Genesys error bodies), stats.
pub(crate) async fn login(
    State((sim, route)): State<GateState>,
    request: Request,
    next: Next,
) -> Response {
    sleep_ms(sim.knobs().latency_ms).await;
    let response = match fire(&sim, route, &path(&request)).await {
        Some(firing) => genesys_fault(firing),
        None => next.run(request).await,
    };
    sim.lock()
        .stats
        .record(route.as_str(), response.status().as_u16());
    response
}

/// Gate of the CRM sandbox: latency → CRM down (503) → faults (plain JSON errors) → handler.
pub(crate) async fn crm(
    State((sim, route)): State<GateState>,
    request: Request,
    next: Next,
) -> Response {
    let knobs = sim.knobs();
    let traceparent = traceparent(request.headers());
    sleep_ms(knobs.latency_ms).await;
    let response = if knobs.crm_down {
        crm_error(StatusCode::SERVICE_UNAVAILABLE, "CRM sandbox is down")
    } else {
        match fire(&sim, route, &path(&request)).await {
            Some(firing) if firing.status >= 400 => {
                let status = status_code(firing.status);
                let code = firing
                    .code
                    .unwrap_or_else(|| default_code(status).replace('.', "_"));
                let message = firing.message.as_deref().unwrap_or("CRM sandbox fault");
                crm_error_body(status, &code, message)
            }
            _ => next.run(request).await,
        }
    };
    let mut inner = sim.lock();
    inner.stats.crm_calls += 1;
    inner.stats.record_trace(traceparent.as_deref());
    inner
        .stats
        .record(route.as_str(), response.status().as_u16());
    response
}

/// A plain JSON error of the CRM sandbox, `{"error":"<code>","message":"…"}`, with the
/// default code of `status` (`service_unavailable`, `bad_credentials`, …).
pub(crate) fn crm_error(status: StatusCode, message: &str) -> Response {
    crm_error_body(status, &default_code(status).replace('.', "_"), message)
}

fn crm_error_body(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({ "error": code, "message": message }))).into_response()
}

/// Fires a matching fault, sleeping its delay; a fault below 400 only delays, so `None`.
/// Takes the path, not the request: a request body is not `Sync`, so a borrowed request
/// cannot live across the delay's await.
async fn fire(sim: &Sim, route: Route, path: &str) -> Option<Firing> {
    let firing = sim.lock().faults.fire(route, path, Instant::now());
    let firing = firing?;
    if let Some(delay) = firing.delay {
        tokio::time::sleep(delay).await;
    }
    (firing.status >= 400).then_some(firing)
}

fn path(request: &Request) -> String {
    request.uri().path().to_owned()
}

fn genesys_fault(firing: Firing) -> Response {
    let status = status_code(firing.status);
    let mut error = if status == StatusCode::TOO_MANY_REQUESTS {
        ApiError::rate_limited(firing.remaining_secs.unwrap_or(1).max(1))
    } else {
        ApiError::from_status(status)
    };
    if let Some(code) = firing.code {
        error.code = code;
    }
    if let Some(message) = firing.message {
        error.message = message;
    }
    error.into_response()
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

async fn sleep_ms(ms: u64) {
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn set_header(response: &mut Response, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().insert(name, value);
    }
}
