//! External Contacts: identifier lookups, `enrich`, `merge`, contact create / get / full
//! update / delete, and linking a conversation (`ConversationAssociation`). Only claimed identifiers
//! find a contact.

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
#[derive(Debug, Clone, Deserialize)]
struct Identifier {
    #[serde(rename = "type")]
    kind: String,
    value: String,
}

impl Identifier {
    /// Identifier values of `Email` compare case-insensitively, every other type exactly.
    fn same_value(&self, value: &str) -> bool {
        if self.kind.eq_ignore_ascii_case("email") {
            value.eq_ignore_ascii_case(&self.value)
        } else {
            value == self.value
        }
    }

    fn to_json(&self, now: &str) -> Value {
        json!({ "type": self.kind, "value": self.value, "dateCreated": now })
    }
}

/// `POST /api/v2/externalcontacts/identifierlookup` (deprecated by Genesys) and
/// `POST /api/v2/externalcontacts/identifierlookup/contacts`: the contact that has **claimed**
/// that identifier (`ContactIdentifier {type, value}`), else 404. A contact that merely has
/// the email in a field but never claimed it is not found, as in Genesys.
pub(crate) async fn identifier_lookup(
    State(sim): State<Sim>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let wanted: Identifier = parse_json(&body)?;
    let inner = sim.lock();
    claimant(&inner.contacts, &wanted)
        .map(|i| Json(inner.contacts[i].clone()))
        .ok_or_else(|| ApiError::not_found("No contact found for the identifier."))
}

/// The index of the live (not merged away) contact that claimed `wanted`.
fn claimant(contacts: &[Value], wanted: &Identifier) -> Option<usize> {
    contacts.iter().position(|c| {
        c.get("mergedTo").is_none()
            && c["identifiers"].as_array().is_some_and(|ids| {
                ids.iter().any(|id| {
                    id["type"]
                        .as_str()
                        .is_some_and(|t| t.eq_ignore_ascii_case(&wanted.kind))
                        && id["value"].as_str().is_some_and(|v| wanted.same_value(v))
                })
            })
    })
}

/// `ContactEnrichRequest {matchingIdentifiers, action, contact?, fieldRules?, options?}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnrichRequest {
    #[serde(default)]
    matching_identifiers: Vec<Identifier>,
    #[serde(default)]
    action: String,
    #[serde(default)]
    contact: Option<Map<String, Value>>,
    #[serde(default)]
    options: Option<EnrichOptions>,
}

/// `ContactEnrichOptions {promote}`.
#[derive(Debug, Default, Deserialize)]
struct EnrichOptions {
    #[serde(default)]
    promote: bool,
}

/// `POST /api/v2/externalcontacts/contacts/enrich`. The first identifier of
/// `matchingIdentifiers` (1 to 25, in order; `Phone` values in E.164) that a contact claimed
/// finds that contact. `Upsert` updates it (200) or creates one (201); `Update` only updates
/// (404 when nothing matched); `Insert` only creates (409 when one matched). Provided non-null
/// fields win and omitted ones stay (the default `PreferProvided` rule; other `fieldRules`
/// are not modelled). The contact claims every matching identifier that no other contact
/// claimed, and `options.promote` makes it `Curated`. The whole call runs under the state's
/// lock, so two enriches of one new identifier create one contact, as Genesys promises.
pub(crate) async fn enrich(
    State(sim): State<Sim>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let request: EnrichRequest = parse_json(&body)?;
    let count = request.matching_identifiers.len();
    if !(1..=25).contains(&count) {
        return Err(ApiError::bad_request(
            "matchingIdentifiers must hold 1 to 25 identifiers.",
        ));
    }
    if let Some(bad) = request.matching_identifiers.iter().find(|id| {
        id.kind.eq_ignore_ascii_case("phone")
            && as_e164(&id.value).as_deref() != Some(id.value.as_str())
    }) {
        return Err(ApiError::bad_request(format!(
            "Phone identifier {} is not in E.164 form.",
            bad.value
        )));
    }
    let now = iso(Utc::now());
    let mut inner = sim.lock();
    let found = request
        .matching_identifiers
        .iter()
        .find_map(|id| claimant(&inner.contacts, id));
    let provided = request.contact.unwrap_or_default();
    let (index, status) = match (request.action.as_str(), found) {
        ("Upsert" | "Update", Some(index)) => {
            let Value::Object(stored) = &mut inner.contacts[index] else {
                unreachable!("contacts are objects");
            };
            for (key, value) in provided {
                if !value.is_null()
                    && !matches!(key.as_str(), "id" | "createDate" | "identifiers" | "type")
                {
                    stored.insert(key, value);
                }
            }
            stored.insert("modifyDate".into(), json!(now));
            let contact = normalise(std::mem::take(stored), &now, false);
            inner.contacts[index] = contact;
            (index, StatusCode::OK)
        }
        ("Upsert" | "Insert", None) => {
            let mut contact = provided;
            contact.retain(|_, v| !v.is_null());
            contact.remove("identifiers");
            contact.insert("id".into(), json!(Uuid::new_v4().to_string()));
            contact.insert("type".into(), json!("Identified"));
            contact.insert("createDate".into(), json!(now));
            contact.insert("modifyDate".into(), json!(now));
            let contact = normalise(contact, &now, false);
            inner.contacts.push(contact);
            (inner.contacts.len() - 1, StatusCode::CREATED)
        }
        ("Update", None) => return Err(ApiError::not_found("No contact matched the identifiers.")),
        ("Insert", Some(_)) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "A contact already claims one of the identifiers.",
            ))
        }
        (other, _) => {
            return Err(ApiError::bad_request(format!(
                "action {other:?} is not one the sandbox models (Upsert, Update, Insert)."
            )))
        }
    };
    for id in &request.matching_identifiers {
        if claimant(&inner.contacts, id).is_none() {
            if let Some(list) = inner.contacts[index]["identifiers"].as_array_mut() {
                list.push(id.to_json(&now));
            }
        }
    }
    if request.options.unwrap_or_default().promote {
        inner.contacts[index]["type"] = json!("Curated");
    }
    Ok((status, Json(inner.contacts[index].clone())))
}

/// `MergeContactsRequest {contactIds[2..25], valueOverride?}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MergeRequest {
    #[serde(default)]
    contact_ids: Vec<String>,
    #[serde(default)]
    value_override: Option<Map<String, Value>>,
}

/// `POST /api/v2/externalcontacts/contacts/merge`: a **new** contact record holding the fields
/// of the given contacts (the most recently modified one wins), every identifier they claimed
/// (the Messenger `Cookie` included) and `valueOverride`'s non-null fields; `type` is the
/// strongest of theirs (Curated > Identified > Ephemeral). The merged contacts get `mergedTo`
/// and stop claiming, and conversations linked to them now show the new contact. 400 for
/// fewer than 2 or more than 25 ids, 404 for an unknown id.
pub(crate) async fn merge(State(sim): State<Sim>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let request: MergeRequest = parse_json(&body)?;
    if !(2..=25).contains(&request.contact_ids.len()) {
        return Err(ApiError::bad_request(
            "contactIds must hold 2 to 25 contact ids.",
        ));
    }
    let now = iso(Utc::now());
    let mut inner = sim.lock();
    let mut sources: Vec<Value> = Vec::new();
    for id in &request.contact_ids {
        let contact = inner
            .contact(id)
            .filter(|c| c.get("mergedTo").is_none())
            .ok_or_else(|| contact_not_found(id))?;
        sources.push(contact.clone());
    }
    sources.sort_by(|a, b| a["modifyDate"].as_str().cmp(&b["modifyDate"].as_str()));
    let merged_id = Uuid::new_v4().to_string();
    let mut merged = Map::new();
    let mut identifiers: Vec<Value> = Vec::new();
    let rank = |t: &Value| match t.as_str() {
        Some("Curated") => 2,
        Some("Identified") => 1,
        _ => 0,
    };
    let mut kind = json!("Ephemeral");
    for source in &sources {
        if rank(&source["type"]) > rank(&kind) {
            kind = source["type"].clone();
        }
        if let Value::Object(fields) = source {
            for (key, value) in fields {
                if !value.is_null() {
                    merged.insert(key.clone(), value.clone());
                }
            }
        }
        identifiers.extend(
            source["identifiers"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    for (key, value) in request.value_override.unwrap_or_default() {
        if !value.is_null() {
            merged.insert(key, value);
        }
    }
    merged.insert("id".into(), json!(merged_id));
    merged.insert("type".into(), kind);
    merged.insert("identifiers".into(), json!(identifiers));
    merged.insert("createDate".into(), json!(now));
    merged.insert("modifyDate".into(), json!(now));
    merged.insert(
        "mergedFrom".into(),
        json!(request
            .contact_ids
            .iter()
            .map(|id| json!({"id": id}))
            .collect::<Vec<_>>()),
    );
    for id in &request.contact_ids {
        if let Some(Value::Object(source)) = inner.contact_mut(id) {
            source.insert("mergedTo".into(), json!({ "id": merged_id }));
            source.insert("identifiers".into(), json!([]));
        }
    }
    for conversation in inner.conversations.values_mut() {
        for participant in &mut conversation.participants {
            if participant
                .external_contact_id
                .as_ref()
                .is_some_and(|linked| request.contact_ids.contains(linked))
            {
                participant.external_contact_id = Some(merged_id.clone());
            }
        }
    }
    let merged = Value::Object(merged);
    inner.contacts.push(merged.clone());
    Ok(Json(merged))
}

/// `POST /api/v2/externalcontacts/contacts`: stores a new contact (duplicates included, as in
/// Genesys) with `id`, `createDate` and `modifyDate`. Whether it claims its emails and phones
/// as identifiers is not documented: only with the sandbox's
/// [`crate::SimConfig::claim_identifiers_on_create`] switch on.
pub(crate) async fn create(State(sim): State<Sim>, body: Bytes) -> Result<Json<Value>, ApiError> {
    let mut contact = contact_object(&body)?;
    let now = iso(Utc::now());
    contact.insert("id".into(), json!(Uuid::new_v4().to_string()));
    contact.insert("createDate".into(), json!(now));
    contact.insert("modifyDate".into(), json!(now));
    let mut inner = sim.lock();
    let claim = claim_identifiers_on_create(&inner.knobs);
    let contact = normalise(contact, &now, claim);
    inner.contacts.push(contact.clone());
    Ok(Json(contact))
}

fn claim_identifiers_on_create(knobs: &crate::config::Knobs) -> bool {
    knobs.claim_identifiers_on_create
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
/// keeping `id`, `createDate` and the claimed identifiers (more are claimed from the new fields
/// only with the claiming switch on, as for a create).
pub(crate) async fn update(
    State(sim): State<Sim>,
    Path(contact_id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let mut contact = contact_object(&body)?;
    let mut inner = sim.lock();
    let claim = claim_identifiers_on_create(&inner.knobs);
    let stored = inner
        .contact_mut(&contact_id)
        .ok_or_else(|| contact_not_found(&contact_id))?;
    let now = iso(Utc::now());
    contact.insert("id".into(), json!(contact_id));
    contact.insert("createDate".into(), stored["createDate"].clone());
    contact.insert("modifyDate".into(), json!(now));
    // Claims are not part of the contact's fields: they stay as they were.
    contact.insert("identifiers".into(), stored["identifiers"].clone());
    *stored = normalise(contact, &now, claim);
    Ok(Json(stored.clone()))
}

/// `DELETE /api/v2/externalcontacts/contacts/{id}` (JS SDK 259 `deleteExternalcontactsContact`,
/// which returns an untyped `Object`): removes the contact and answers 200 `{}`; 404 for an
/// unknown id. Conversations linked to it keep the id they show, as nothing documents that
/// Genesys unlinks them.
pub(crate) async fn delete(
    State(sim): State<Sim>,
    Path(contact_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let mut inner = sim.lock();
    let before = inner.contacts.len();
    inner.contacts.retain(|c| c["id"] != contact_id.as_str());
    if inner.contacts.len() == before {
        return Err(contact_not_found(&contact_id));
    }
    Ok(Json(json!({})))
}

/// `PUT /api/v2/externalcontacts/conversations/{cid}` with `ConversationAssociation
/// {externalContactId?, conversationId, communicationId, mediaType}` (the last three required,
/// else 400): links the contact to the participant whose communication `communicationId` is
/// (unlinks without `externalContactId`). Answers 202 with no body and, like Genesys, also
/// 202 when `communicationId` is no communication of the conversation (a participant id, say):
/// then nothing is linked. 404 for an unknown conversation or contact.
pub(crate) async fn link(
    State(sim): State<Sim>,
    Path(conversation_id): Path<String>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let association: Value = parse_json(&body)?;
    let required = |key: &str| {
        association[key]
            .as_str()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::bad_request(format!("{key} is required.")))
    };
    let body_conversation = required("conversationId")?;
    let communication_id = required("communicationId")?;
    required("mediaType")?;
    if body_conversation != conversation_id {
        return Err(ApiError::bad_request(
            "conversationId in the body does not match the path.",
        ));
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
    if let Some(participant) = conversation
        .participants
        .iter_mut()
        .find(|p| p.session_id == communication_id)
    {
        participant.external_contact_id = contact_id;
    }
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

/// Fills each phone's `e164` from `display` when it reads as one; with `claim`, adds an
/// `Email` or `Phone` identifier for every email and E.164 phone not already claimed.
fn normalise(mut contact: Map<String, Value>, now: &str, claim: bool) -> Value {
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
    if !claim {
        derived.clear();
    }
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
