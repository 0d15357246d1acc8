//! Routing: `GET /api/v2/routing/queues` and
//! `POST /api/v2/conversations/{cid}/participants/{pid}/replace/queue`.

use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::conversations::conversation_not_found;
use crate::conversation::HOME_DIVISION_ID;
use crate::error::{parse_json, ApiError};
use crate::state::{Queue, Sim};

/// Query of the queue listing.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct QueueQuery {
    name: Option<String>,
    page_size: Option<usize>,
    page_number: Option<usize>,
}

/// A `QueueEntityListing`, sorted by name. `name` matches exactly, case-insensitively; a
/// trailing `*` makes it a prefix (Genesys' own semantics are unconfirmed).
pub(crate) async fn list_queues(
    State(sim): State<Sim>,
    Query(query): Query<QueueQuery>,
) -> Json<Value> {
    let page_size = query.page_size.unwrap_or(25).clamp(1, 500);
    let page_number = query.page_number.unwrap_or(1).max(1);
    let inner = sim.lock();
    let mut queues: Vec<&Queue> = inner
        .queues
        .iter()
        .filter(|q| {
            query
                .name
                .as_deref()
                .is_none_or(|n| name_matches(&q.name, n))
        })
        .collect();
    queues.sort_by_key(|q| q.name.to_lowercase());
    let total = queues.len();
    let entities: Vec<Value> = queues
        .iter()
        .skip((page_number - 1) * page_size)
        .take(page_size)
        .map(|q| queue_json(q))
        .collect();
    Json(json!({
        "entities": entities,
        "pageSize": page_size,
        "pageNumber": page_number,
        "total": total,
        "pageCount": total.div_ceil(page_size),
    }))
}

fn name_matches(name: &str, filter: &str) -> bool {
    match filter.strip_suffix('*') {
        Some(prefix) => name.to_lowercase().starts_with(&prefix.to_lowercase()),
        None => name.eq_ignore_ascii_case(filter),
    }
}

fn queue_json(queue: &Queue) -> Value {
    json!({
        "id": queue.id,
        "name": queue.name,
        "division": { "id": HOME_DIVISION_ID, "name": "Home", "selfUri": format!("/api/v2/authorization/divisions/{HOME_DIVISION_ID}") },
        "dateCreated": queue.date_created,
        "memberCount": 0,
        "selfUri": format!("/api/v2/routing/queues/{}", queue.id),
    })
}

/// `TransferToQueueRequest`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TransferToQueue {
    queue_id: Option<String>,
    queue_name: Option<String>,
    transfer_type: Option<String>,
}

/// Blind-transfers the participant to a queue: sets its `queue`, appends a `TransferResponse`
/// to `recentTransfers` (last 20 kept) and answers 202 with no body. An unknown queue is a 400
/// (not a 404, which clients read as "conversation not found").
pub(crate) async fn replace_queue(
    State(sim): State<Sim>,
    Path((conversation_id, participant_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let request: TransferToQueue = parse_json(&body)?;
    let mut inner = sim.lock();
    let queue = match (&request.queue_id, &request.queue_name) {
        (Some(id), _) => inner.queues.iter().find(|q| &q.id == id),
        (None, Some(name)) => inner.queue_by_name(name),
        (None, None) => return Err(ApiError::bad_request("queueId or queueName is required.")),
    }
    .map(Queue::entity_ref)
    .ok_or_else(|| ApiError::bad_request("The queue does not exist."))?;
    let conversation = inner
        .conversations
        .get_mut(&conversation_id)
        .ok_or_else(|| conversation_not_found(&conversation_id))?;
    let participant = conversation
        .participant_mut(&participant_id)
        .ok_or_else(|| ApiError::not_found(format!("Participant {participant_id} not found.")))?;
    participant.queue = Some(queue.clone());
    let transfer_type = request.transfer_type.as_deref().unwrap_or("Unattended");
    conversation.record_transfer(queue, transfer_type);
    Ok(StatusCode::ACCEPTED)
}
