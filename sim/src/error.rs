//! Genesys Cloud's error body (`ErrorBody`) and the correlation id each answer carries.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use uuid::Uuid;

tokio::task_local! {
    /// The `ININ-Correlation-Id` of the `/api/v2` call being answered; error bodies use it as
    /// their `contextId`, as Genesys does.
    pub(crate) static CORRELATION_ID: String;
}

/// The correlation id of the current call, or a fresh one outside a gated call.
pub(crate) fn correlation_id() -> String {
    CORRELATION_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| Uuid::new_v4().to_string())
}

/// A Genesys error answer: `{"message","code","status","contextId","details":[],"errors":[]}`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// `Retry-After` seconds, for 429s.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            retry_after: None,
        }
    }

    /// An error with the default code and message of `status`.
    pub fn from_status(status: StatusCode) -> Self {
        Self::new(status, default_code(status), default_message(status))
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad.request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not.found", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "bad.credentials",
            "Invalid login credentials.",
        )
    }

    /// 403 for a client whose role has none of `permissions`.
    pub fn missing_permissions(permissions: &[&str]) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "missing.any.permissions",
            format!(
                "Unable to perform the requested action. You must have at least one of the following permissions assigned: [{}]",
                permissions.join(", ")
            ),
        )
    }

    /// The body Genesys has sent on every 429 since November 2021.
    pub fn rate_limited(retry_after: u64) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too.many.requests.retry.after",
                format!(
                    "Rate limit exceeded the maximum. Retry the request in [{retry_after}] seconds"
                ),
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "message": self.message,
            "code": self.code,
            "status": self.status.as_u16(),
            "contextId": correlation_id(),
            "details": [],
            "errors": [],
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}

/// Genesys' usual `code` for a status.
pub(crate) fn default_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad.request",
        401 => "bad.credentials",
        403 => "not.authorized",
        404 => "not.found",
        408 => "request.timeout",
        409 => "conflict",
        413 => "request.entity.too.large",
        415 => "unsupported.media.type",
        429 => "too.many.requests.retry.after",
        500 => "internal.server.error",
        501 => "not.implemented",
        502 => "bad.gateway",
        503 => "service.unavailable",
        504 => "gateway.timeout",
        _ => "error",
    }
}

fn default_message(status: StatusCode) -> String {
    match status.as_u16() {
        503 => "The service is currently unavailable (sandbox fault).".to_owned(),
        500 => "The server encountered an unexpected condition (sandbox fault).".to_owned(),
        _ => format!(
            "{} (sandbox fault).",
            status.canonical_reason().unwrap_or("Error")
        ),
    }
}

/// Parses a JSON request body, answering a Genesys 400 when it is not valid.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("The request could not be understood: {e}")))
}
