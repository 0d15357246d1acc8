//! The External Contact of a consenting guest, in at most two calls: one `enrich` upsert
//! that finds the contact claiming the guest's email (else phone) or creates one that claims
//! them, then a link of the conversation to it unless it already is linked to it.
//!
//! Why a link and not a merge of the conversation's Ephemeral contact (README, "External
//! Contacts"): the contact a conversation is linked to when we see it is not always
//! Ephemeral — a returning browser's cookie can resolve to somebody else's curated contact —
//! and merging that one would fuse two people's contacts. A link only repoints this
//! conversation. Enrich claims the identifiers server-side, so two submissions of one new
//! guest handled at once (here or on another replica) end on one contact.
//!
//! Whether the step runs at all (consent, `guest.verified`, nothing written yet) is the
//! caller's decision; a failure here is reported, never blocks the attributes or routing.

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::genesys::contacts::{
    ContactEnrichOptions, ContactEnrichRequest, ContactIdentifier, ExternalContact, IdentifierType,
};
use crate::genesys::model::MessageParticipant;
use crate::genesys::{GenesysClient, GenesysError};
use crate::merge::Enrichment;

/// A failed step of [`point_at_contact`].
#[derive(Debug, thiserror::Error)]
#[error("external contact {step}: {error}")]
pub struct ContactFailure {
    /// `enrich` or `link`.
    pub step: &'static str,
    /// What went wrong.
    pub error: ContactError,
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// Genesys refused or failed the call.
    #[error(transparent)]
    Genesys(#[from] GenesysError),
    /// The conversation read listed no communication of the customer to link.
    #[error("the customer participant lists no message communication")]
    NoCommunication,
}

impl ContactError {
    /// The metric label: the Genesys failure kind, or `no_communication`.
    pub fn kind(&self) -> &'static str {
        match self {
            ContactError::Genesys(error) => error.kind(),
            ContactError::NoCommunication => "no_communication",
        }
    }

    /// Genesys' HTTP status, when it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ContactError::Genesys(error) => error.status(),
            ContactError::NoCommunication => None,
        }
    }
}

/// What [`point_at_contact`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum ContactOutcome {
    /// The guest has neither email nor phone: nothing could find a contact again.
    NoIdentifier,
    /// The conversation already pointed at the guest's contact.
    AlreadyLinked(String),
    /// The conversation now points at the guest's contact.
    Linked(String),
    /// The consuming channel was lost after the upsert: the link is left to the redelivery.
    Abandoned,
}

/// Upserts the guest's contact and links the conversation to it (the customer participant's
/// communication) unless it already is. No link is started once `lost` is cancelled.
pub async fn point_at_contact(
    genesys: &GenesysClient,
    conversation_id: &str,
    customer: &MessageParticipant,
    enrichment: &Enrichment,
    lost: &CancellationToken,
) -> Result<ContactOutcome, ContactFailure> {
    let Some(request) = enrich_request(enrichment) else {
        return Ok(ContactOutcome::NoIdentifier);
    };
    let contact = genesys
        .enrich_contact(&request)
        .await
        .map_err(|error| ContactFailure {
            step: "enrich",
            error: error.into(),
        })?;
    let id = contact.id().unwrap_or_default().to_string();
    let linked = customer.external_contact.as_ref().map(|c| c.id.as_str());
    if linked.is_some_and(|linked| linked.eq_ignore_ascii_case(&id)) {
        return Ok(ContactOutcome::AlreadyLinked(id));
    }
    if lost.is_cancelled() {
        return Ok(ContactOutcome::Abandoned);
    }
    let Some(communication_id) = customer.communication_id.as_deref() else {
        return Err(ContactFailure {
            step: "link",
            error: ContactError::NoCommunication,
        });
    };
    genesys
        .link_contact(conversation_id, communication_id, &id)
        .await
        .map_err(|error| ContactFailure {
            step: "link",
            error: error.into(),
        })?;
    tracing::info!(conversation.id = conversation_id, contact.id = %id, replaced = linked.is_some(), "external contact linked");
    Ok(ContactOutcome::Linked(id))
}

/// The `Upsert` of the guest's contact: matched by email, then phone (E.164); names from the
/// CRM; promoted to `Curated`. `None` without an email or phone.
pub fn enrich_request(enrichment: &Enrichment) -> Option<ContactEnrichRequest> {
    let mut matching_identifiers = Vec::new();
    let mut fields = serde_json::Map::new();
    if let Some(email) = &enrichment.email {
        matching_identifiers.push(ContactIdentifier {
            kind: IdentifierType::Email,
            value: email.clone(),
        });
        fields.insert("personalEmail".into(), json!(email));
    }
    if let Some(phone) = enrichment.phone.as_ref().filter(|p| p.starts_with('+')) {
        matching_identifiers.push(ContactIdentifier {
            kind: IdentifierType::Phone,
            value: phone.clone(),
        });
        fields.insert("cellPhone".into(), json!({ "display": phone }));
    }
    if matching_identifiers.is_empty() {
        return None;
    }
    for (key, value) in [
        ("firstName", &enrichment.first_name),
        ("lastName", &enrichment.last_name),
    ] {
        if let Some(value) = value {
            fields.insert(key.into(), json!(value));
        }
    }
    Some(ContactEnrichRequest {
        matching_identifiers,
        action: "Upsert",
        contact: ExternalContact(fields),
        options: ContactEnrichOptions { promote: true },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::CrmOutcome;
    use crate::merge::{merge, RouteTable};

    #[test]
    fn the_upsert_matches_email_then_phone_and_promotes() {
        let submission = crate::submission::tests::sample();
        let enrichment = merge(
            &submission,
            &CrmOutcome::NotFound,
            &RouteTable::empty(),
            chrono::Utc::now(),
        );
        let request = serde_json::to_value(enrich_request(&enrichment).unwrap()).unwrap();
        assert_eq!(
            request,
            json!({
                "matchingIdentifiers": [
                    {"type": "Email", "value": "jane@example.com"},
                    {"type": "Phone", "value": "+15551234567"}
                ],
                "action": "Upsert",
                "contact": {"personalEmail": "jane@example.com", "cellPhone": {"display": "+15551234567"}},
                "options": {"promote": true}
            })
        );
    }

    #[test]
    fn a_guest_without_email_or_phone_gets_no_contact() {
        let mut submission = crate::submission::tests::sample();
        submission.guest.email = None;
        submission.guest.phone = None;
        let enrichment = merge(
            &submission,
            &CrmOutcome::NotFound,
            &RouteTable::empty(),
            chrono::Utc::now(),
        );
        assert!(enrich_request(&enrichment).is_none());
    }
}
