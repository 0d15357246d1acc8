//! The Salesforce REST API sandbox: SOQL queries and sObject describe over the customers
//! seeded into the CRM sandbox, shown as `Contact` or `Lead` records.
//!
//! Shapes and rules, as Salesforce documents them:
//! - Query: `GET /services/data/vXX.X/query?q=SOQL` answers `{"totalSize","done","records":
//!   [{"attributes":{"type","url"},…}]}`; an invalid SOQL string answers 400
//!   `MALFORMED_QUERY` (<https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_query.htm>,
//!   <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/dome_query.htm>).
//! - String literals: the escape sequences `\n \N \r \R \t \T \b \B \f \F \" \' \\ \uXXXX`;
//!   a backslash before anything else is an error, and an unescaped quote ends the literal
//!   (<https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_quotedstringescapes.htm>,
//!   <https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_reservedcharacters.htm>).
//! - Errors: a JSON array `[{"message","errorCode"}]`; 401 `INVALID_SESSION_ID`; 403
//!   `REQUEST_LIMIT_EXCEEDED` when the org's API limit is spent
//!   (<https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm>).
//! - Every API answer carries `Sforce-Limit-Info: api-usage=used/limit`
//!   (<https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_api_usage.htm>).
//! - Describe: `GET /services/data/vXX.X/sobjects/{object}/describe` answers `{"name",
//!   "fields":[{"name","type","label",…}],…}`
//!   (<https://developer.salesforce.com/docs/platform/api-rest/guide/dome-sobject-describe.html>).
//! - Composite: `POST /services/data/vXX.X/composite` with `{"allOrNone", "compositeRequest":
//!   [{"method","url","referenceId"}]}` (at most 25 subrequests, `referenceId` letters, digits
//!   and `_`, starting with a letter) answers 200 `{"compositeResponse": [{"body",
//!   "httpHeaders","httpStatusCode","referenceId"}]}`, each subrequest's own answer inside; it
//!   counts as one API call (<https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_composite_composite.htm>,
//!   <https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/requests_composite.htm>).
//!   The sandbox serves query subrequests (`GET /services/data/vXX.X/query?q=…`) only.
//! - Token: the client credentials flow of a connected app, [`super::crm_oauth`]
//!   (<https://developer.salesforce.com/docs/atlas.en-us.chatterapi.meta/chatterapi/quickstart_connecting.htm>).
//!
//! SOQL served: `SELECT f, … FROM Contact|Lead [WHERE f = 'v' | f IN ('v', …)] [LIMIT n]`;
//! text comparisons ignore case, as Salesforce's do.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::crm_oauth::{authorized, latency, record, SALESFORCE};
use crate::faults::Route;
use crate::model::Customer;
use crate::state::Sim;

/// The objects served, with their fields: (name, type, label).
const FIELDS: [(&str, &str, &str); 10] = [
    ("Id", "id", "Record ID"),
    ("FirstName", "string", "First Name"),
    ("LastName", "string", "Last Name"),
    ("Email", "email", "Email"),
    ("Phone", "phone", "Phone"),
    ("Loyalty_Tier__c", "picklist", "Loyalty Tier"),
    ("Account_Status__c", "picklist", "Account Status"),
    ("Loyalty_Points__c", "double", "Loyalty Points"),
    ("Previous_Tickets__c", "double", "Previous Tickets"),
    ("Session_Hash__c", "string", "Session Hash"),
];
const OBJECTS: [&str; 2] = ["Contact", "Lead"];

fn field_value(customer: &Customer, field: &str) -> Value {
    let text = |s: &str| {
        if s.is_empty() {
            Value::Null
        } else {
            json!(s)
        }
    };
    match field {
        "Id" => json!(customer.id),
        "FirstName" => text(&customer.first_name),
        "LastName" => text(&customer.last_name),
        "Email" => text(&customer.email),
        "Phone" => text(&customer.phone),
        "Loyalty_Tier__c" => text(&customer.loyalty_tier),
        "Account_Status__c" => text(&customer.account_status),
        // Number fields are doubles in the REST API's JSON.
        "Loyalty_Points__c" => json!(customer.loyalty_points as f64),
        "Previous_Tickets__c" => json!(customer.previous_tickets as f64),
        "Session_Hash__c" => customer
            .session_hash
            .as_deref()
            .map_or(Value::Null, |h| json!(h)),
        _ => Value::Null,
    }
}

fn canonical_field(name: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .map(|(n, _, _)| *n)
        .find(|n| n.eq_ignore_ascii_case(name))
}

fn errors(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!([{ "message": message, "errorCode": code }])),
    )
        .into_response()
}

/// A parsed query.
#[derive(Debug, PartialEq)]
pub(crate) struct Soql {
    pub fields: Vec<String>,
    pub object: String,
    /// `(field, accepted values)`.
    pub condition: Option<(String, Vec<String>)>,
    pub limit: Option<usize>,
}

#[derive(Debug, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Number(usize),
    Punct(char),
}

/// Splits SOQL into tokens; a string literal follows the escape rules exactly.
fn tokens(soql: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut chars = soql.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated string literal".into()),
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some('n' | 'N') => value.push('\n'),
                        Some('r' | 'R') => value.push('\r'),
                        Some('t' | 'T') => value.push('\t'),
                        Some('b' | 'B') => value.push('\u{8}'),
                        Some('f' | 'F') => value.push('\u{c}'),
                        Some(e @ ('"' | '\'' | '\\')) => value.push(e),
                        Some('u') => {
                            let hex: String = (0..4).filter_map(|_| chars.next()).collect();
                            let c = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or("invalid unicode escape")?;
                            value.push(c);
                        }
                        _ => return Err("Invalid string literal: illegal escape sequence".into()),
                    },
                    Some(c) => value.push(c),
                }
            }
            out.push(Token::Text(value));
        } else if c.is_ascii_digit() {
            let mut n = String::new();
            while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                n.push(d);
                chars.next();
            }
            out.push(Token::Number(n.parse().map_err(|_| "number too large")?));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let mut w = String::new();
            while let Some(&d) = chars
                .peek()
                .filter(|d| d.is_ascii_alphanumeric() || **d == '_')
            {
                w.push(d);
                chars.next();
            }
            out.push(Token::Word(w));
        } else if ",()=".contains(c) {
            out.push(Token::Punct(c));
            chars.next();
        } else {
            return Err(format!("unexpected token: '{c}'"));
        }
    }
    Ok(out)
}

/// Parses the SOQL the sandbox serves; `Err` is the `MALFORMED_QUERY` message.
pub(crate) fn parse(soql: &str) -> Result<Soql, String> {
    let tokens = tokens(soql)?;
    let mut it = tokens.into_iter().peekable();
    let keyword = |t: Option<Token>, k: &str| match t {
        Some(Token::Word(w)) if w.eq_ignore_ascii_case(k) => Ok(()),
        other => Err(format!("expecting '{k}', found {other:?}")),
    };
    let word = |t: Option<Token>| match t {
        Some(Token::Word(w)) => Ok(w),
        other => Err(format!("expecting a name, found {other:?}")),
    };
    keyword(it.next(), "SELECT")?;
    let mut fields = vec![word(it.next())?];
    while it.peek() == Some(&Token::Punct(',')) {
        it.next();
        fields.push(word(it.next())?);
    }
    keyword(it.next(), "FROM")?;
    let object = word(it.next())?;
    let mut condition = None;
    if matches!(it.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case("WHERE")) {
        it.next();
        let field = word(it.next())?;
        match it.next() {
            Some(Token::Punct('=')) => match it.next() {
                Some(Token::Text(v)) => condition = Some((field, vec![v])),
                other => return Err(format!("expecting a string literal, found {other:?}")),
            },
            Some(Token::Word(w)) if w.eq_ignore_ascii_case("IN") => {
                if it.next() != Some(Token::Punct('(')) {
                    return Err("expecting '('".into());
                }
                let mut values = Vec::new();
                loop {
                    match it.next() {
                        Some(Token::Text(v)) => values.push(v),
                        other => {
                            return Err(format!("expecting a string literal, found {other:?}"))
                        }
                    }
                    match it.next() {
                        Some(Token::Punct(',')) => continue,
                        Some(Token::Punct(')')) => break,
                        other => return Err(format!("expecting ',' or ')', found {other:?}")),
                    }
                }
                condition = Some((field, values));
            }
            other => return Err(format!("unexpected token: {other:?}")),
        }
    }
    let mut limit = None;
    if matches!(it.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case("LIMIT")) {
        it.next();
        match it.next() {
            Some(Token::Number(n)) => limit = Some(n),
            other => return Err(format!("expecting a number, found {other:?}")),
        }
    }
    if let Some(extra) = it.next() {
        return Err(format!("unexpected token: {extra:?}"));
    }
    Ok(Soql {
        fields,
        object,
        condition,
        limit,
    })
}

/// Authenticates, counts against the daily limit and sets `Sforce-Limit-Info`; `Err` is the
/// answer to give instead.
fn admit(sim: &Sim, headers: &HeaderMap) -> Result<String, Response> {
    if sim.knobs().crm_down {
        return Err(errors(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVER_UNAVAILABLE",
            "The sandbox is down",
        ));
    }
    if !authorized(sim, headers, SALESFORCE) {
        return Err(errors(
            StatusCode::UNAUTHORIZED,
            "INVALID_SESSION_ID",
            "Session expired or invalid",
        ));
    }
    let limit = sim.knobs().salesforce_api_limit;
    let mut inner = sim.lock();
    inner.salesforce_api_usage += 1;
    let used = inner.salesforce_api_usage;
    let info = format!("api-usage={}/{limit}", used.min(limit.max(used)));
    if used > limit {
        let mut response = errors(
            StatusCode::FORBIDDEN,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
        );
        set_limit_info(&mut response, &info);
        return Err(response);
    }
    Ok(info)
}

fn set_limit_info(response: &mut Response, info: &str) {
    if let Ok(value) = HeaderValue::from_str(info) {
        response.headers_mut().insert("sforce-limit-info", value);
    }
}

fn version_ok(version: &str) -> bool {
    version
        .strip_prefix('v')
        .and_then(|v| v.split_once('.'))
        .is_some_and(|(a, b)| a.parse::<u32>().is_ok_and(|a| a >= 20) && b.parse::<u32>().is_ok())
}

/// `GET /services/data/{version}/query?q=…`.
pub(crate) async fn query(
    State(sim): State<Sim>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    latency(&sim).await;
    let response = match admit(&sim, &headers) {
        Err(response) => response,
        Ok(info) => {
            let mut response = run_query(&sim, &version, params.get("q"));
            set_limit_info(&mut response, &info);
            response
        }
    };
    record(&sim, Route::SalesforceQuery, &headers, response)
}

/// `POST /services/data/{version}/composite`.
pub(crate) async fn composite(
    State(sim): State<Sim>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Response {
    latency(&sim).await;
    let response = match admit(&sim, &headers) {
        Err(response) => response,
        Ok(info) => {
            let mut response = match body {
                Ok(Json(body)) => run_composite(&sim, &version, &body).await,
                Err(rejection) => errors(
                    StatusCode::BAD_REQUEST,
                    "JSON_PARSER_ERROR",
                    &rejection.body_text(),
                ),
            };
            set_limit_info(&mut response, &info);
            response
        }
    };
    record(&sim, Route::SalesforceComposite, &headers, response)
}

async fn run_composite(sim: &Sim, version: &str, body: &Value) -> Response {
    if !version_ok(version) {
        return errors(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    }
    let invalid = |message: &str| errors(StatusCode::BAD_REQUEST, "INVALID_INPUT", message);
    let Some(requests) = body.get("compositeRequest").and_then(Value::as_array) else {
        return invalid("compositeRequest is required");
    };
    if requests.is_empty() || requests.len() > 25 {
        return invalid("compositeRequest takes 1 to 25 subrequests");
    }
    let query_path = format!("/services/data/{version}/query");
    let mut answers = Vec::new();
    for request in requests {
        let field = |key: &str| request.get(key).and_then(Value::as_str);
        let (Some(method), Some(url), Some(reference)) =
            (field("method"), field("url"), field("referenceId"))
        else {
            return invalid("each subrequest needs method, url and referenceId");
        };
        let reference_ok = reference
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
            && reference
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !reference_ok {
            return invalid(&format!("invalid referenceId: {reference}"));
        }
        let query = url
            .strip_prefix(&query_path)
            .map(|rest| rest.strip_prefix('/').unwrap_or(rest))
            .and_then(|rest| rest.strip_prefix('?'));
        let (answer_status, answer_body) = match (method, query) {
            ("GET", Some(query)) => {
                let params: HashMap<String, String> =
                    serde_urlencoded::from_str(query).unwrap_or_default();
                let answer = run_query(sim, version, params.get("q"));
                let status = answer.status().as_u16();
                let bytes = axum::body::to_bytes(answer.into_body(), usize::MAX)
                    .await
                    .unwrap_or_default();
                (
                    status,
                    serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                )
            }
            _ => (
                400,
                json!([{"message": "the sandbox serves GET query subrequests only", "errorCode": "INVALID_INPUT"}]),
            ),
        };
        answers.push(json!({
            "body": answer_body,
            "httpHeaders": {},
            "httpStatusCode": answer_status,
            "referenceId": reference,
        }));
    }
    Json(json!({ "compositeResponse": answers })).into_response()
}

fn run_query(sim: &Sim, version: &str, q: Option<&String>) -> Response {
    if !version_ok(version) {
        return errors(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource does not exist",
        );
    }
    let Some(q) = q else {
        return errors(
            StatusCode::BAD_REQUEST,
            "MALFORMED_QUERY",
            "A query string has to be specified",
        );
    };
    let soql = match parse(q) {
        Ok(soql) => soql,
        Err(message) => return errors(StatusCode::BAD_REQUEST, "MALFORMED_QUERY", &message),
    };
    let Some(object) = OBJECTS
        .iter()
        .find(|o| o.eq_ignore_ascii_case(&soql.object))
    else {
        return errors(
            StatusCode::BAD_REQUEST,
            "INVALID_TYPE",
            &format!("sObject type '{}' is not supported.", soql.object),
        );
    };
    let mut fields = Vec::new();
    let condition_field = soql.condition.as_ref().map(|(f, _)| f.as_str());
    for name in soql
        .fields
        .iter()
        .map(String::as_str)
        .chain(condition_field)
    {
        match canonical_field(name) {
            Some(field) => fields.push(field),
            None => {
                return errors(
                    StatusCode::BAD_REQUEST,
                    "INVALID_FIELD",
                    &format!("No such column '{name}' on entity '{object}'."),
                )
            }
        }
    }
    let selected = &fields[..soql.fields.len()];
    let inner = sim.lock();
    let matching: Vec<&Customer> = inner
        .customers
        .iter()
        .filter(|c| match &soql.condition {
            None => true,
            Some((field, values)) => {
                let have = field_value(c, canonical_field(field).unwrap_or("Id"));
                have.as_str().is_some_and(|have| {
                    values
                        .iter()
                        .any(|v| v.to_lowercase() == have.to_lowercase())
                })
            }
        })
        .collect();
    let records: Vec<Value> = matching
        .iter()
        .take(soql.limit.unwrap_or(2000).min(2000))
        .map(|c| {
            let mut record = Map::new();
            record.insert(
                "attributes".into(),
                json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{}", c.id)}),
            );
            for field in selected {
                record.insert((*field).into(), field_value(c, field));
            }
            Value::Object(record)
        })
        .collect();
    Json(json!({"totalSize": records.len(), "done": true, "records": records})).into_response()
}

/// `GET /services/data/{version}/sobjects/{object}/describe`.
pub(crate) async fn describe(
    State(sim): State<Sim>,
    Path((version, object)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    latency(&sim).await;
    let response = match admit(&sim, &headers) {
        Err(response) => response,
        Ok(info) => {
            let mut response = match OBJECTS.iter().find(|o| **o == object) {
                Some(object) if version_ok(&version) => {
                    let fields: Vec<Value> = FIELDS
                        .iter()
                        .map(|(name, kind, label)| {
                            json!({"name": name, "type": kind, "label": label,
                                   "custom": name.ends_with("__c"), "nillable": *name != "Id"})
                        })
                        .collect();
                    Json(json!({
                        "name": object, "label": object, "custom": false, "queryable": true,
                        "fields": fields,
                        "urls": {"sobject": format!("/services/data/{version}/sobjects/{object}")}
                    }))
                    .into_response()
                }
                _ => errors(
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "The requested resource does not exist",
                ),
            };
            set_limit_info(&mut response, &info);
            response
        }
    };
    record(&sim, Route::SalesforceDescribe, &headers, response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soql_is_parsed_and_an_unescaped_quote_is_malformed() {
        let q =
            parse("SELECT Id, Email FROM Contact WHERE Email = 'o\\'brien@x.com' LIMIT 1").unwrap();
        assert_eq!(
            q.condition,
            Some(("Email".into(), vec!["o'brien@x.com".into()]))
        );
        assert_eq!(q.limit, Some(1));
        let q = parse("SELECT Id FROM Contact WHERE Phone IN ('+1 555', '(555) 1')").unwrap();
        assert_eq!(q.condition.unwrap().1.len(), 2);
        for bad in [
            "SELECT Id FROM Contact WHERE Email = 'o'brien@x.com' LIMIT 1",
            "SELECT Id FROM Contact WHERE Email = 'x' OR Id != null",
            "SELECT Id FROM Contact WHERE Email = 'a\\qb'",
            "SELECT Id FROM Contact WHERE Email = 'open",
            "SELECT Id FROM Contact LIMIT 1 extra",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
