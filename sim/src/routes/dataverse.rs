//! The Dataverse Web API sandbox: the `contacts` entity set over the customers seeded into
//! the CRM sandbox, and the `contact` table's attribute definitions.
//!
//! Shapes and rules, as Microsoft documents them:
//! - Query: `GET /api/data/v9.2/contacts?$select=…&$filter=…&$top=n` answers
//!   `{"@odata.context","value":[{"@odata.etag",…}]}`
//!   (<https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/query-data-web-api>,
//!   <https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/query/filter-rows>);
//!   string comparisons ignore case; a single quote inside a literal is doubled, a lone one
//!   ends it, and what follows is a syntax error.
//! - Errors: `{"error":{"code","message"}}`: an unknown entity set 404 `0x8006088a`, an
//!   unknown property 400 `0x0` "Could not find a property named …"
//!   (<https://learn.microsoft.com/en-gb/troubleshoot/power-platform/power-apps/dataverse-web-api/web-api-client-errors>),
//!   a syntax error 400 `0x80060888`.
//! - Service protection limits: 429 with `Retry-After`, code `0x80072322`
//!   (<https://learn.microsoft.com/en-us/power-apps/developer/data-platform/api-limits>).
//! - Metadata: `GET /api/data/v9.2/EntityDefinitions(LogicalName='contact')/Attributes?
//!   $select=LogicalName` answers `{"@odata.context","value":[{"LogicalName","MetadataId"}]}`
//!   (<https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/query-metadata-web-api>).
//! - Batch: `POST /api/data/v9.2/$batch` with `Content-Type: multipart/mixed; boundary=…`,
//!   each part `Content-Type: application/http` holding a request (`GET <url> HTTP/1.1`,
//!   headers, a blank line; CRLF line ends), answers 200 `multipart/mixed` with one
//!   `application/http` part per request holding that request's own answer
//!   (<https://learn.microsoft.com/en-us/power-apps/developer/data-platform/webapi/execute-batch-operations-using-web-api>).
//!   The sandbox serves `GET` queries of entity sets in a batch.
//! - Token: client credentials at the Microsoft identity platform with `scope=…/.default`,
//!   [`super::crm_oauth`]
//!   (<https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow>).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::crm_oauth::{authorized, latency, record, MICROSOFT};
use crate::faults::Route;
use crate::model::Customer;
use crate::state::Sim;

/// The columns of `contact` served (logical names).
const COLUMNS: [&str; 10] = [
    "contactid",
    "firstname",
    "lastname",
    "emailaddress1",
    "telephone1",
    "new_loyaltytier",
    "new_accountstatus",
    "new_loyaltypoints",
    "new_previoustickets",
    "new_sessionhash",
];

fn column_value(c: &Customer, column: &str) -> Value {
    let text = |s: &str| if s.is_empty() { Value::Null } else { json!(s) };
    match column {
        "contactid" => json!(c.id),
        "firstname" => text(&c.first_name),
        "lastname" => text(&c.last_name),
        "emailaddress1" => text(&c.email),
        "telephone1" => text(&c.phone),
        "new_loyaltytier" => text(&c.loyalty_tier),
        "new_accountstatus" => text(&c.account_status),
        "new_loyaltypoints" => json!(c.loyalty_points),
        "new_previoustickets" => json!(c.previous_tickets),
        "new_sessionhash" => c.session_hash.as_deref().map_or(Value::Null, |h| json!(h)),
        _ => Value::Null,
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn no_property(name: &str) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "0x0",
        &format!(
            "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.contact'."
        ),
    )
}

/// A filter: alternatives of `column eq 'value'` (`or`, parentheses).
#[derive(Debug, PartialEq)]
pub(crate) struct Filter(pub Vec<(String, String)>);

/// Parses `$filter`; `Err` is the syntax error's message.
pub(crate) fn parse_filter(text: &str) -> Result<Filter, String> {
    let mut terms = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let syntax = |i: usize| format!("Syntax error at position {i} in '{text}'.");
    let skip = |i: &mut usize| {
        while *i < chars.len() && chars[*i] == ' ' {
            *i += 1;
        }
    };
    let word = |i: &mut usize| {
        let start = *i;
        while *i < chars.len() && (chars[*i].is_ascii_alphanumeric() || chars[*i] == '_') {
            *i += 1;
        }
        chars[start..*i].iter().collect::<String>()
    };
    let mut depth = 0;
    loop {
        skip(&mut i);
        while i < chars.len() && chars[i] == '(' {
            depth += 1;
            i += 1;
            skip(&mut i);
        }
        let column = word(&mut i);
        if column.is_empty() {
            return Err(syntax(i));
        }
        skip(&mut i);
        if word(&mut i) != "eq" {
            return Err(syntax(i));
        }
        skip(&mut i);
        if chars.get(i) != Some(&'\'') {
            return Err(syntax(i));
        }
        i += 1;
        let mut value = String::new();
        loop {
            match chars.get(i) {
                None => return Err(format!("Unterminated string literal at {i} in '{text}'.")),
                Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                    value.push('\'');
                    i += 2;
                }
                Some('\'') => {
                    i += 1;
                    break;
                }
                Some(c) => {
                    value.push(*c);
                    i += 1;
                }
            }
        }
        terms.push((column, value));
        skip(&mut i);
        while i < chars.len() && chars[i] == ')' && depth > 0 {
            depth -= 1;
            i += 1;
            skip(&mut i);
        }
        if i == chars.len() && depth == 0 {
            return Ok(Filter(terms));
        }
        if word(&mut i) != "or" {
            return Err(syntax(i));
        }
    }
}

/// Authentication, `crmDown` and the service protection limit.
fn admit(sim: &Sim, headers: &HeaderMap) -> Option<Response> {
    if sim.knobs().crm_down {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "0x80040216",
            "The sandbox is down.",
        ));
    }
    if !authorized(sim, headers, MICROSOFT) {
        let mut response = StatusCode::UNAUTHORIZED.into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize"),
        );
        return Some(response);
    }
    let mut inner = sim.lock();
    if inner.knobs.dataverse_throttled_calls > 0 {
        inner.knobs.dataverse_throttled_calls -= 1;
        let secs = inner.knobs.dataverse_retry_after_secs;
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "0x80072322",
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Some(response);
    }
    None
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// `GET /api/data/v9.2/{entity_set}`.
pub(crate) async fn entity_set(
    State(sim): State<Sim>,
    Path(set): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    latency(&sim).await;
    let response =
        admit(&sim, &headers).unwrap_or_else(|| run_query(&sim, &set, &headers, &params));
    record(&sim, Route::DataverseQuery, &headers, response)
}

fn run_query(
    sim: &Sim,
    set: &str,
    headers: &HeaderMap,
    params: &HashMap<String, String>,
) -> Response {
    if set != "contacts" {
        return error(
            StatusCode::NOT_FOUND,
            "0x8006088a",
            &format!("Resource not found for the segment '{set}'."),
        );
    }
    let select: Vec<&str> = params
        .get("$select")
        .map(|s| s.split(',').map(str::trim).collect())
        .unwrap_or_else(|| COLUMNS.to_vec());
    if let Some(bad) = select.iter().find(|c| !COLUMNS.contains(c)) {
        return no_property(bad);
    }
    let filter = match params.get("$filter").map(|f| parse_filter(f)).transpose() {
        Ok(filter) => filter,
        Err(message) => return error(StatusCode::BAD_REQUEST, "0x80060888", &message),
    };
    if let Some(Filter(terms)) = &filter {
        if let Some((bad, _)) = terms.iter().find(|(c, _)| !COLUMNS.contains(&c.as_str())) {
            return no_property(bad);
        }
    }
    let top = match params.get("$top").map(|t| t.parse::<usize>()) {
        None => 5000,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "0x80060888",
                "Invalid value for $top.",
            )
        }
    };
    let inner = sim.lock();
    let rows: Vec<Value> = inner
        .customers
        .iter()
        .filter(|c| match &filter {
            None => true,
            Some(Filter(terms)) => terms.iter().any(|(column, value)| {
                column_value(c, column)
                    .as_str()
                    .is_some_and(|have| have.to_lowercase() == value.to_lowercase())
            }),
        })
        .take(top)
        .map(|c| {
            let mut row = Map::new();
            row.insert(
                "@odata.etag".into(),
                json!(format!("W/\"{}\"", 1000 + c.id.len())),
            );
            for column in &select {
                row.insert((*column).into(), column_value(c, column));
            }
            Value::Object(row)
        })
        .collect();
    Json(json!({
        "@odata.context": format!("{}/api/data/v9.2/$metadata#contacts({})", base_url(headers), select.join(",")),
        "value": rows,
    }))
    .into_response()
}

/// `POST /api/data/v9.2/$batch`.
pub(crate) async fn batch(State(sim): State<Sim>, headers: HeaderMap, body: String) -> Response {
    latency(&sim).await;
    let response = match admit(&sim, &headers) {
        Some(response) => response,
        None => run_batch(&sim, &headers, &body).await,
    };
    record(&sim, Route::DataverseBatch, &headers, response)
}

async fn run_batch(sim: &Sim, headers: &HeaderMap, body: &str) -> Response {
    let bad = |message: &str| error(StatusCode::BAD_REQUEST, "0x80048d19", message);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(boundary) = content_type
        .strip_prefix("multipart/mixed")
        .and_then(|rest| {
            rest.split(';')
                .find_map(|p| p.trim().strip_prefix("boundary="))
        })
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
    else {
        return bad("a batch needs Content-Type: multipart/mixed; boundary=…");
    };
    let delimiter = format!("--{boundary}");
    let Some((_, rest)) = body.split_once(&delimiter) else {
        return bad("the batch body has no part");
    };
    let Some((parts, _)) = rest.rsplit_once(&format!("{delimiter}--")) else {
        return bad("the batch body does not end with its closing delimiter");
    };
    let answer_boundary = format!("batchresponse_{}", Uuid::new_v4());
    let mut out = String::new();
    for part in parts.split(&delimiter) {
        let Some((part_headers, request)) = part.trim_start_matches("\r\n").split_once("\r\n\r\n")
        else {
            return bad("a batch part needs its headers, a blank line (CRLF) and its request");
        };
        if !part_headers
            .to_ascii_lowercase()
            .contains("content-type: application/http")
        {
            return bad("each batch part needs Content-Type: application/http");
        }
        let line = request.lines().next().unwrap_or_default();
        let mut words = line.split(' ');
        let (Some(method), Some(url), Some("HTTP/1.1")) =
            (words.next(), words.next(), words.next())
        else {
            return bad(&format!("not a request line: {line}"));
        };
        let path = url.find("/api/data/").map_or(url, |at| &url[at..]);
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let answer = match (method, path.strip_prefix("/api/data/v9.2/")) {
            ("GET", Some(set)) if !set.contains('/') => {
                let params: HashMap<String, String> =
                    serde_urlencoded::from_str(query).unwrap_or_default();
                run_query(sim, set, headers, &params)
            }
            _ => bad("the sandbox serves GET queries of entity sets in a batch"),
        };
        let status = answer.status();
        let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX)
            .await
            .unwrap_or_default();
        out.push_str(&format!(
            "--{answer_boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nHTTP/1.1 {} {}\r\nContent-Type: application/json; odata.metadata=minimal\r\nOData-Version: 4.0\r\n\r\n{}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            String::from_utf8_lossy(&bytes)
        ));
    }
    out.push_str(&format!("--{answer_boundary}--\r\n"));
    let mut response = (StatusCode::OK, out).into_response();
    if let Ok(value) =
        HeaderValue::from_str(&format!("multipart/mixed; boundary={answer_boundary}"))
    {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// `GET /api/data/v9.2/EntityDefinitions(LogicalName='contact')/Attributes`.
pub(crate) async fn attributes(
    State(sim): State<Sim>,
    Path(definition): Path<String>,
    headers: HeaderMap,
) -> Response {
    latency(&sim).await;
    let response = admit(&sim, &headers).unwrap_or_else(|| {
        if definition != "EntityDefinitions(LogicalName='contact')" {
            return error(
                StatusCode::NOT_FOUND,
                "0x80060888",
                &format!("Could not find an entity definition for '{definition}'."),
            );
        }
        let value: Vec<Value> = COLUMNS
            .iter()
            .map(|c| {
                json!({"LogicalName": c, "MetadataId": Uuid::new_v4().to_string()})
            })
            .collect();
        Json(json!({
            "@odata.context": format!("{}/api/data/v9.2/$metadata#EntityDefinitions('contact')/Attributes(LogicalName)", base_url(&headers)),
            "value": value,
        }))
        .into_response()
    });
    record(&sim, Route::DataverseMetadata, &headers, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_parsed_and_a_lone_quote_is_a_syntax_error() {
        let f = parse_filter("emailaddress1 eq 'o''brien@x.com'").unwrap();
        assert_eq!(f.0, vec![("emailaddress1".into(), "o'brien@x.com".into())]);
        let f = parse_filter("(telephone1 eq '+1' or telephone1 eq '(555) 1')").unwrap();
        assert_eq!(f.0.len(), 2);
        for bad in [
            "emailaddress1 eq 'o'brien@x.com'",
            "emailaddress1 eq 'x' or contactid ne null",
            "emailaddress1 eq 'open",
            "emailaddress1 eq 'x')",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
    }
}
