//! `GET /api/v2/conversations/messages/{id}`, `GET /api/v2/conversations/{id}` and
//! `PATCH /api/v2/conversations/messages/{cid}/participants/{pid}/attributes`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;
use tokio::time::Instant;

use crate::error::{parse_json, ApiError};
use crate::state::Sim;

/// The `MessageConversation`, or 404 `not.found`.
pub(crate) async fn get(
    State(sim): State<Sim>,
    Path(conversation_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let inner = sim.lock();
    let conversation = inner
        .conversations
        .get(&conversation_id)
        .ok_or_else(|| conversation_not_found(&conversation_id))?;
    Ok(Json(conversation.to_json()))
}

/// The generic `Conversation` (`GET /api/v2/conversations/{id}`), or 404 `not.found`.
pub(crate) async fn get_generic(
    State(sim): State<Sim>,
    Path(conversation_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let inner = sim.lock();
    let conversation = inner
        .conversations
        .get(&conversation_id)
        .ok_or_else(|| conversation_not_found(&conversation_id))?;
    Ok(Json(conversation.to_generic_json()))
}

/// Writes participant attributes (`ParticipantAttributes {"attributes":{…}}`), 202 with no body.
///
/// Values must be JSON strings (`dict(str,str)` in the SDKs), else 400 naming the key.
/// The sandbox **merges** the keys into the participant's attributes, or with the switch
/// [`crate::SimConfig::attribute_patch_replaces`] replaces them all with the body's: whether
/// Genesys merges or replaces is unconfirmed (see genesys-api.md §5), so clients should send
/// every key, and `prechat-enricher genesys verify` finds out.
pub(crate) async fn patch_attributes(
    State(sim): State<Sim>,
    Path((conversation_id, participant_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let attributes = string_attributes(&parse_json(&body)?)?;
    let mut inner = sim.lock();
    let replaces = inner.knobs.attribute_patch_replaces;
    let conversation = inner
        .conversations
        .get_mut(&conversation_id)
        .ok_or_else(|| conversation_not_found(&conversation_id))?;
    let participant = conversation
        .participant_mut(&participant_id)
        .ok_or_else(|| ApiError::not_found(format!("Participant {participant_id} not found.")))?;
    if replaces {
        participant.attributes = attributes;
    } else {
        participant.attributes.extend(attributes);
    }
    conversation.attribute_patches += 1;
    conversation.touch_attributes(Instant::now());
    Ok(StatusCode::ACCEPTED)
}

/// The `attributes` object of a PATCH body, every value a string.
fn string_attributes(body: &Value) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(map) = body.get("attributes").and_then(Value::as_object) else {
        return Err(ApiError::bad_request(
            "The request body must have an 'attributes' object.",
        ));
    };
    map.iter()
        .map(|(key, value)| match value {
            Value::String(s) => Ok((key.clone(), s.clone())),
            _ => Err(ApiError::bad_request(format!(
                "The value of attribute '{key}' must be a string."
            ))),
        })
        .collect()
}

pub(crate) fn conversation_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Conversation {id} not found."))
}
