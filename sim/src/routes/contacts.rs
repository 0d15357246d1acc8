//! External Contacts: `identifierlookup`, contact create / get / full update, and linking a
//! conversation (`ConversationAssociation`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::conversations::conversation_not_found;
use crate::conversation::iso;
use crate::error::{parse_json, ApiError};
use crate::state::Sim;

const EMAIL_FIELDS: [&str; 3] = ["workEmail", "personalEmail", "otherEmail"];
const PHONE_FIELDS: [&str; 4] = ["cellPhone", "workPhone", "homePhone", "otherPhone"];

/// `ContactIdentifier {type, value}`.
#[derive(Debug, Deserialize)]
struct Identifier {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

/// `POST /api/v2/externalcontacts/identifierlookup`: the contact with that identifier, else 404.
/// `Email` also matches the email fields (case-insensitively); `Phone` also matches the phone
/// fields' `e164` or `display`.
pub(crate) async fn identifier_lookup(
    State(sim): State<Sim>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let wanted: Identifier = parse_json(&body)?;
    let inner = sim.lock();
    inner
        .contacts
        .iter()
        .find(|c| has_identifier(c, &wanted))
        .map(|c| Json(c.clone()))
        .ok_or_else(|| ApiError::not_found("No contact found for the identifier."))
}

fn has_identifier(contact: &Value, wanted: &Identifier) -> bool {
    let is_email = wanted.kind.eq_ignore_ascii_case("email");
    let same = |value: &str| {
        if is_email {
            value.eq_ignore_ascii_case(&wanted.value)
        } else {
            value == wanted.value
        }
    };
    let claimed = contact["identifiers"].as_array().is_some_and(|ids| {
        ids.iter().any(|id| {
            id["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case(&wanted.kind))
                && id["value"].as_str().is_some_and(same)
        })
    });
    let in_fields = if is_email {
        EMAIL_FIELDS
            .iter()
            .any(|f| contact[*f].as_str().is_some_and(same))
    } else if wanted.kind.eq_ignore_ascii_case("phone") {
        PHONE_FIELDS.iter().any(|f| {
            ["e164", "display"]
                .iter()
                .any(|k| contact[*f][*k].as_str().is_some_and(same))
        })
    } else {
        false
    };
    claimed || in_fields
}

/// `POST /api/v2/externalcontacts/contacts`: stores a new contact (duplicates included, as in
/// Genesys) with `id`, `createDate`, `modifyDate` and `identifiers` derived from its emails and
/// phones.
pub(crate) async fn create(State(sim): State<Sim>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let mut contact = contact_object(&body)?;
    let now = iso(Utc::now());
    contact.insert("id".into(), json!(Uuid::new_v4().to_string()));
    contact.insert("createDate".into(), json!(now));
    contact.insert("modifyDate".into(), json!(now));
    let contact = normalise(contact, &now);
    sim.lock().contacts.push(contact.clone());
    Ok(Json(contact))
}

/// The contact identity resolution links to a guest it could not match: `type` `Ephemeral`,
/// known only by its Messenger cookie.
pub(crate) fn ephemeral_contact() -> Value {
    let now = iso(Utc::now());
    json!({
        "id": Uuid::new_v4().to_string(),
        "type": "Ephemeral",
        "identifiers": [{ "type": "Cookie", "value": Uuid::new_v4().to_string(), "dateCreated": now }],
        "createDate": now,
        "modifyDate": now,
    })
}

/// `GET /api/v2/externalcontacts/contacts/{id}`.
pub(crate) async fn get(
    State(sim): State<Sim>,
    Path(contact_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    sim.lock()
        .contact(&contact_id)
        .cloned()
        .map(Json)
        .ok_or_else(|| contact_not_found(&contact_id))
}

/// `PUT /api/v2/externalcontacts/contacts/{id}`: full replace (omitted fields are dropped),
/// keeping `id` and `createDate`.
pub(crate) async fn update(
    State(sim): State<Sim>,
    Path(contact_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut contact = contact_object(&body)?;
    let mut inner = sim.lock();
    let stored = inner
        .contact_mut(&contact_id)
        .ok_or_else(|| contact_not_found(&contact_id))?;
    let now = iso(Utc::now());
    contact.insert("id".into(), json!(contact_id));
    contact.insert("createDate".into(), stored["createDate"].clone());
    contact.insert("modifyDate".into(), json!(now));
    // Identifiers are re-derived from the new fields, not carried over.
    contact.remove("identifiers");
    *stored = normalise(contact, &now);
    Ok(Json(stored.clone()))
}

/// `PUT /api/v2/externalcontacts/conversations/{cid}` with `ConversationAssociation
/// {externalContactId?, conversationId, communicationId, mediaType}`: links the contact to the
/// customer participant (unlinks without `externalContactId`). The SDKs return nothing; the
/// sandbox answers 202 with no body (the real status is unconfirmed). 404 for an unknown
/// conversation or contact.
pub(crate) async fn link(
    State(sim): State<Sim>,
    Path(conversation_id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let association: Value = parse_json(&body)?;
    if let Some(other) = association["conversationId"].as_str() {
        if other != conversation_id {
            return Err(ApiError::bad_request(
                "conversationId in the body does not match the path.",
            ));
        }
    }
    let contact_id = association["externalContactId"].as_str().map(str::to_owned);
    let mut inner = sim.lock();
    if let Some(id) = &contact_id {
        if inner.contact(id).is_none() {
            return Err(contact_not_found(id));
        }
    }
    let conversation = inner
        .conversations
        .get_mut(&conversation_id)
        .ok_or_else(|| conversation_not_found(&conversation_id))?;
    conversation.customer_mut().external_contact_id = contact_id;
    Ok(StatusCode::ACCEPTED)
}

fn contact_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match parse_json(body)? {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_request(
            "An ExternalContact must be a JSON object.",
        )),
    }
}

fn contact_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("External contact {id} not found."))
}

/// Fills each phone's `e164` from `display` when it reads as one, and adds an `Email` or
/// `Phone` identifier for every email and E.164 phone not already claimed.
fn normalise(mut contact: Map<String, Value>, now: &str) -> Value {
    let mut derived: Vec<(&str, String)> = Vec::new();
    for field in EMAIL_FIELDS {
        if let Some(email) = contact.get(field).and_then(Value::as_str) {
            derived.push(("Email", email.to_owned()));
        }
    }
    for field in PHONE_FIELDS {
        let Some(Value::Object(phone)) = contact.get_mut(field) else {
            continue;
        };
        if !phone.contains_key("e164") {
            if let Some(e164) = phone
                .get("display")
                .and_then(Value::as_str)
                .and_then(as_e164)
            {
                phone.insert("e164".into(), json!(e164));
            }
        }
        if let Some(e164) = phone.get("e164").and_then(Value::as_str) {
            derived.push(("Phone", e164.to_owned()));
        }
    }
    let identifiers = contact.entry("identifiers").or_insert_with(|| json!([]));
    if let Value::Array(list) = identifiers {
        for (kind, value) in derived {
            let known = list.iter().any(|id| {
                id["type"] == kind
                    && id["value"]
                        .as_str()
                        .is_some_and(|v| v.eq_ignore_ascii_case(&value))
            });
            if !known {
                list.push(json!({ "type": kind, "value": value, "dateCreated": now }));
            }
        }
    }
    Value::Object(contact)
}

/// `+15551234567` from `+1 (555) 123-4567`; `None` when it is not `+` and digits.
fn as_e164(display: &str) -> Option<String> {
    let compact: String = display
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.'))
        .collect();
    let digits = compact.strip_prefix('+')?;
    (!digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(compact)
}
