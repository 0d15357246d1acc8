//! `POST /oauth/token`: the client-credentials grant of `login.{domain}`.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;
use tokio::time::Instant;
use uuid::Uuid;

use crate::ratelimit::Window;
use crate::state::{Sim, TokenInfo};

/// Grants a token for `Authorization: Basic base64(id:secret)` and form
/// `grant_type=client_credentials`. Answers `{"access_token","token_type":"bearer","expires_in"}`;
/// bad credentials 401 `invalid_client`, another grant type 400 `unsupported_grant_type`
/// (the `AuthErrorResponse` shape: `error`, `description`, `error_description`).
pub(crate) async fn grant(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    let config = sim.config();
    let credentials_ok = basic_credentials(&headers)
        .is_some_and(|(id, secret)| id == config.client_id && secret == config.client_secret);
    if !credentials_ok {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client id or secret is wrong or missing (sandbox)",
        );
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    match form.get("grant_type").map(String::as_str) {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported by the sandbox",
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            )
        }
    }

    let token = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    let lifetime = config.token_lifetime_secs;
    {
        let mut inner = sim.lock();
        inner.tokens.insert(
            token.clone(),
            TokenInfo {
                client_id: config.client_id.clone(),
                expires_at: Instant::now() + Duration::from_secs(lifetime),
                window: Window::default(),
            },
        );
        inner.stats.tokens_issued += 1;
    }
    Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": lifetime,
    }))
    .into_response()
}

/// The `(id, secret)` of a Basic `Authorization` header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({
            "error": error,
            "description": description,
            "error_description": description,
        })),
    )
        .into_response()
}
