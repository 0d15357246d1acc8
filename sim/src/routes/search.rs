//! `POST /api/v2/conversations/participants/attributes/search`.
//!
//! Request: `ConversationParticipantSearchRequest {query:[criteria], cursor?}`; the sandbox also
//! takes `pageSize` (default 50, at most 100), which Genesys may not (it pages by cursor, about
//! 50 rows a page). Criteria may only name `conversationId`, `startTime`, `endTime` or
//! `divisionId` — anything else (`participantData.x`) is answered 400 "Search not supported.",
//! as the live API does. Types: `DATE_RANGE` (bounds inclusive) and `EXACT`/`TERM`
//! (`value` or `values`); a `group` matches when any of its criteria does.
//!
//! Response: the SDKs' `JsonCursorSearchResponse` — `results` (the rows) and `cursor` (absent
//! on the last page). Confirmed from the SDK model and a client verified against a live org;
//! its `types` field is left out, its value being unknown. A row is
//! `{conversationId, startTime, divisionIds, truncatedData, participantData:[{participantPurpose,
//! participantId, participantAttributes, sessionIds}]}`; only conversations that have
//! attributes, for at least the index delay, are indexed. Rows come by `startTime`, then id.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::conversation::{iso, Conversation, HOME_DIVISION_ID};
use crate::error::{parse_json, ApiError};
use crate::state::Sim;

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 100;
const SEARCHABLE: [&str; 4] = ["conversationId", "startTime", "endTime", "divisionId"];

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct SearchRequest {
    query: Vec<Criterion>,
    cursor: Option<String>,
    page_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Criterion {
    #[serde(rename = "type")]
    kind: Option<String>,
    fields: Vec<String>,
    value: Option<String>,
    values: Vec<String>,
    start_value: Option<String>,
    end_value: Option<String>,
    group: Vec<Criterion>,
}

/// A criterion checked and with its dates parsed.
enum Filter {
    Range {
        field: String,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    },
    Exact {
        field: String,
        values: Vec<String>,
    },
    Any(Vec<Filter>),
}

/// Answers one page of rows.
pub(crate) async fn search(State(sim): State<Sim>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: SearchRequest = parse_json(&body)?;
    let filters = request
        .query
        .iter()
        .map(compile)
        .collect::<Result<Vec<_>, _>>()?;
    let after = request.cursor.as_deref().map(decode_cursor).transpose()?;
    let page_size = request
        .page_size
        .unwrap_or(DEFAULT_PAGE_SIZE)
        .clamp(1, MAX_PAGE_SIZE);

    let inner = sim.lock();
    let delay = Duration::from_millis(inner.knobs.index_delay_ms);
    let now = Instant::now();
    let mut hits: Vec<&Conversation> = inner
        .conversations
        .values()
        .filter(|c| c.attributes_since.is_some_and(|t| now >= t + delay))
        .filter(|c| filters.iter().all(|f| matches(f, c)))
        .filter(|c| after.as_ref().is_none_or(|key| sort_key(c) > *key))
        .collect();
    hits.sort_by_key(|c| sort_key(c));
    let more = hits.len() > page_size;
    hits.truncate(page_size);

    let results: Vec<Value> = hits.iter().map(|c| c.search_row()).collect();
    let mut response = json!({ "results": results });
    if more {
        if let Some(last) = hits.last() {
            response["cursor"] = json!(encode_cursor(&sort_key(last)));
        }
    }
    Ok(Json(response))
}

fn not_supported() -> ApiError {
    ApiError::bad_request("Search not supported.")
}

fn compile(criterion: &Criterion) -> Result<Filter, ApiError> {
    if !criterion.group.is_empty() {
        let group = criterion
            .group
            .iter()
            .map(compile)
            .collect::<Result<_, _>>()?;
        return Ok(Filter::Any(group));
    }
    let [field] = criterion.fields.as_slice() else {
        return Err(not_supported());
    };
    if !SEARCHABLE.contains(&field.as_str()) {
        return Err(not_supported());
    }
    let field = field.clone();
    match criterion
        .kind
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("DATE_RANGE") => Ok(Filter::Range {
            field,
            from: criterion
                .start_value
                .as_deref()
                .map(parse_date)
                .transpose()?,
            to: criterion.end_value.as_deref().map(parse_date).transpose()?,
        }),
        Some("EXACT" | "TERM") => {
            let mut values = criterion.values.clone();
            values.extend(criterion.value.clone());
            Ok(Filter::Exact { field, values })
        }
        _ => Err(not_supported()),
    }
}

fn parse_date(text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| ApiError::bad_request(format!("Invalid date value '{text}'.")))
}

fn matches(filter: &Filter, c: &Conversation) -> bool {
    match filter {
        Filter::Any(group) => group.iter().any(|f| matches(f, c)),
        Filter::Range { field, from, to } => {
            // Sandbox conversations are all ongoing: they have no endTime.
            let time = match field.as_str() {
                "startTime" => c.start_time,
                _ => return false,
            };
            from.is_none_or(|from| time >= from) && to.is_none_or(|to| time <= to)
        }
        Filter::Exact { field, values } => {
            let actual = match field.as_str() {
                "conversationId" => c.id.as_str(),
                "divisionId" => HOME_DIVISION_ID,
                _ => return false,
            };
            values.iter().any(|v| v == actual)
        }
    }
}

/// Rows are ordered by start time, then id; a cursor is the key of a page's last row.
fn sort_key(c: &Conversation) -> (String, String) {
    (iso(c.start_time), c.id.clone())
}

fn encode_cursor((time, id): &(String, String)) -> String {
    URL_SAFE_NO_PAD.encode(format!("{time}|{id}"))
}

fn decode_cursor(cursor: &str) -> Result<(String, String), ApiError> {
    let invalid = || ApiError::bad_request("Invalid cursor.");
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let (time, id) = text.split_once('|').ok_or_else(invalid)?;
    Ok((time.to_owned(), id.to_owned()))
}
