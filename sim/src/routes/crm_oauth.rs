//! What the Salesforce and Dataverse sandboxes share: their client-credentials token
//! endpoints, bearer checks, and the accounting of every call (stats, traces, `crmDown`).

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use crate::faults::Route;
use crate::gate::bearer;
use crate::state::Sim;

pub(crate) const SALESFORCE: &str = "salesforce";
pub(crate) const MICROSOFT: &str = "microsoft";

/// Counts a CRM call like the generic CRM gate does.
pub(crate) fn record(sim: &Sim, route: Route, headers: &HeaderMap, response: Response) -> Response {
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut inner = sim.lock();
    inner.stats.crm_calls += 1;
    inner.stats.record_trace(traceparent.as_deref());
    inner
        .stats
        .record(route.as_str(), response.status().as_u16());
    response
}

/// The added latency of every call.
pub(crate) async fn latency(sim: &Sim) {
    let ms = sim.knobs().latency_ms;
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Whether the bearer token of `headers` is a live token of `vendor`.
pub(crate) fn authorized(sim: &Sim, headers: &HeaderMap, vendor: &str) -> bool {
    let Some(token) = bearer(headers) else {
        return false;
    };
    let mut inner = sim.lock();
    match inner.crm_tokens.get(token) {
        Some((v, expires)) if *v == vendor && *expires > Instant::now() => true,
        Some(_) => {
            inner.crm_tokens.remove(token);
            false
        }
        None => false,
    }
}

fn issue(sim: &Sim, vendor: &'static str) -> String {
    let token = format!("00D{}", Uuid::new_v4().simple());
    let lifetime = Duration::from_secs(sim.config().token_lifetime_secs);
    let mut inner = sim.lock();
    inner
        .crm_tokens
        .insert(token.clone(), (vendor, Instant::now() + lifetime));
    inner.stats.tokens_issued += 1;
    token
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// Form fields of a token request.
fn form(body: &Bytes) -> HashMap<String, String> {
    serde_urlencoded::from_bytes(body).unwrap_or_default()
}

fn credentials_ok(sim: &Sim, form: &HashMap<String, String>) -> bool {
    let config = sim.config();
    form.get("client_id") == Some(&config.crm_client_id)
        && form.get("client_secret") == Some(&config.crm_client_secret)
}

/// `POST /services/oauth2/token` of a My Domain: the client credentials flow of a connected
/// app. Answers `{"access_token","signature","scope","instance_url","id","token_type",
/// "issued_at"}` (no `expires_in`: a Salesforce token lasts the org's session timeout);
/// another grant type 400 `unsupported_grant_type`, wrong credentials 400 `invalid_client`.
pub(crate) async fn salesforce_token(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    latency(&sim).await;
    let form = form(&body);
    let response = if sim.knobs().crm_down {
        oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "sandbox is down",
        )
    } else if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant type not supported",
        )
    } else if !credentials_ok(&sim, &form) {
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "invalid client credentials",
        )
    } else {
        let token = issue(&sim, SALESFORCE);
        let base = base_url(&headers);
        Json(json!({
            "access_token": token,
            "signature": "c2FuZGJveCBzaWduYXR1cmU=",
            "scope": "api",
            "instance_url": base,
            "id": format!("{base}/id/00D000000000001EAA/005000000000001AAA"),
            "token_type": "Bearer",
            "issued_at": chrono::Utc::now().timestamp_millis().to_string(),
        }))
        .into_response()
    };
    record(&sim, Route::SalesforceToken, &headers, response)
}

/// `POST /{tenant}/oauth2/v2.0/token` of the Microsoft identity platform: client
/// credentials with `scope={resource}/.default`. Answers `{"token_type":"Bearer",
/// "expires_in","ext_expires_in","access_token"}`; errors `{"error","error_description",
/// "error_codes",…}` (`invalid_client` 401, `invalid_scope` 400, `unsupported_grant_type` 400).
pub(crate) async fn microsoft_token(
    State(sim): State<Sim>,
    Path(_tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    latency(&sim).await;
    let form = form(&body);
    let aad = |status, error: &str, code: u32, text: &str| {
        (
            status,
            Json(json!({
                "error": error,
                "error_description": format!("AADSTS{code}: {text}"),
                "error_codes": [code],
                "timestamp": chrono::Utc::now().format("%Y-%m-%d %H:%M:%SZ").to_string(),
                "trace_id": Uuid::new_v4().to_string(),
                "correlation_id": Uuid::new_v4().to_string(),
            })),
        )
            .into_response()
    };
    let response = if sim.knobs().crm_down {
        oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "sandbox is down",
        )
    } else if form.get("grant_type").map(String::as_str) != Some("client_credentials") {
        aad(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        )
    } else if !credentials_ok(&sim, &form) {
        aad(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
        )
    } else if !form.get("scope").is_some_and(|s| s.ends_with("/.default")) {
        aad(StatusCode::BAD_REQUEST, "invalid_scope", 1002012, "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.")
    } else {
        let lifetime = sim.config().token_lifetime_secs.min(3599);
        let token = issue(&sim, MICROSOFT);
        Json(json!({
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }))
        .into_response()
    };
    record(&sim, Route::DataverseToken, &headers, response)
}
