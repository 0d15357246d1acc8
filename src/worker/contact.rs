//! The External Contact of a consenting guest: the contact that claims the guest's email
//! (else phone) is updated, or one is created, and linked to the conversation. Called only
//! with consent.
//!
//! A conversation usually has a contact linked before we see it: Genesys' identity
//! resolution links a Web Messenger guest it cannot match to an `Ephemeral` contact known
//! only by its cookie. So the lookup always runs, and the link is skipped only when the
//! linked contact already is the guest's. A redelivery finds the contact it created by its
//! identifier (one lookup, nothing else when nothing changed) and never creates a second one.
//!
//! Two submissions of the same new guest handled at once would both find no contact and
//! both create one; the [`StripedLocks`] serialise the upserts of one identifier within a
//! process. Replicas do not share them (see the README's limits).

use serde_json::{json, Map, Value};

use super::locks::StripedLocks;
use crate::genesys::contacts::{ExternalContact, IdentifierType};
use crate::genesys::{GenesysClient, GenesysError};
use crate::merge::Enrichment;

/// Finds, updates or creates the guest's contact and links it unless `linked` (the contact
/// the conversation is linked to now) already is that contact; the contact id. A guest with
/// neither email nor phone gets no contact: nothing could find it again, so every
/// redelivery would create another.
pub async fn upsert_contact(
    genesys: &GenesysClient,
    locks: &StripedLocks,
    conversation_id: &str,
    participant_id: &str,
    linked: Option<&str>,
    enrichment: &Enrichment,
) -> Result<Option<String>, GenesysError> {
    let identifiers: Vec<&str> = [&enrichment.email, &enrichment.phone]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if identifiers.is_empty() {
        return Ok(None);
    }
    let _held = locks.hold(&identifiers).await;
    let mut found = None;
    if let Some(email) = &enrichment.email {
        found = genesys.lookup_contact(IdentifierType::Email, email).await?;
    }
    if found.is_none() {
        if let Some(phone) = &enrichment.phone {
            found = genesys.lookup_contact(IdentifierType::Phone, phone).await?;
        }
    }
    let id = match found {
        Some(mut contact) => {
            let id = contact.id().unwrap_or_default().to_string();
            if apply(&mut contact.0, enrichment) {
                genesys.update_contact(&id, &contact).await?;
            }
            id
        }
        None => {
            let mut fields = Map::new();
            apply(&mut fields, enrichment);
            let created = genesys.create_contact(&ExternalContact(fields)).await?;
            created.id().unwrap_or_default().to_string()
        }
    };
    if linked.is_some_and(|linked| linked.eq_ignore_ascii_case(&id)) {
        return Ok(Some(id));
    }
    genesys
        .link_contact(conversation_id, participant_id, &id)
        .await?;
    tracing::info!(conversation.id = conversation_id, contact.id = %id, replaced = linked.is_some(), "external contact linked");
    Ok(Some(id))
}

/// Writes what we know into the contact's fields; whether anything changed. Names come from
/// the CRM; an email or phone is added only when the contact has none of that kind yet.
fn apply(contact: &mut Map<String, Value>, enrichment: &Enrichment) -> bool {
    let before = contact.clone();
    for (key, value) in [
        ("firstName", &enrichment.first_name),
        ("lastName", &enrichment.last_name),
    ] {
        if let Some(value) = value {
            contact.insert(key.into(), json!(value));
        }
    }
    if let Some(email) = &enrichment.email {
        let known = ["workEmail", "personalEmail", "otherEmail"]
            .iter()
            .any(|k| {
                contact
                    .get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
            });
        if !known {
            contact
                .entry("personalEmail")
                .or_insert_with(|| json!(email));
        }
    }
    if let Some(phone) = &enrichment.phone {
        let known = ["cellPhone", "workPhone", "homePhone", "otherPhone"]
            .iter()
            .any(|k| {
                contact.get(*k).is_some_and(|p| {
                    [p.get("e164"), p.get("display")]
                        .into_iter()
                        .flatten()
                        .any(|v| v.as_str() == Some(phone.as_str()))
                })
            });
        if !known {
            contact
                .entry("cellPhone")
                .or_insert_with(|| json!({"display": phone}));
        }
    }
    *contact != before
}
