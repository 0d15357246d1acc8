//! External Contacts: upsert the guest's contact (`POST
//! /api/v2/externalcontacts/contacts/enrich`) and link a conversation to it (`PUT
//! /api/v2/externalcontacts/conversations/{cid}`). No identifier lookup is needed: enrich
//! finds the contact itself (and the old `…/identifierlookup` is deprecated in favour of
//! `…/identifierlookup/contacts`). Bodies follow the SDK models named on each type (JS SDK 259
//! `build/index.d.ts`).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{GenesysClient, GenesysError};

/// A `ContactIdentifier.type` this service matches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum IdentifierType {
    /// An email address.
    Email,
    /// A phone number, in E.164 form (`+15551234567`).
    Phone,
}

/// `ContactIdentifier {type, value}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactIdentifier {
    /// Email or Phone.
    #[serde(rename = "type")]
    pub kind: IdentifierType,
    /// The email address, or the phone number in E.164 form.
    pub value: String,
}

/// `ContactEnrichRequest {matchingIdentifiers, action, contact?, fieldRules?, options?}`.
/// Without `fieldRules` Genesys applies `PreferProvided`: non-null provided fields win,
/// omitted ones are left as they are.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactEnrichRequest {
    /// Looked up in this order; the first one a contact claimed finds it.
    pub matching_identifiers: Vec<ContactIdentifier>,
    /// `Upsert`: update the contact found, else create one that claims the identifiers.
    pub action: &'static str,
    /// The fields to write (an `ExternalContact`).
    pub contact: ExternalContact,
    /// `ContactEnrichOptions`.
    pub options: ContactEnrichOptions,
}

/// `ContactEnrichOptions {promote}`.
#[derive(Debug, Clone, Serialize)]
pub struct ContactEnrichOptions {
    /// Make the contact `Curated`, so that it does not expire like an `Identified` one.
    pub promote: bool,
}

/// `ConversationAssociation {externalContactId?, conversationId, communicationId, mediaType}`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConversationAssociation<'a> {
    external_contact_id: &'a str,
    conversation_id: &'a str,
    communication_id: &'a str,
    media_type: &'static str,
}

/// An `ExternalContact`, kept as JSON: only the fields this service writes or reads.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExternalContact(pub Map<String, Value>);

impl ExternalContact {
    /// The contact's id.
    pub fn id(&self) -> Option<&str> {
        self.0.get("id").and_then(Value::as_str)
    }
}

impl GenesysClient {
    /// `POST /api/v2/externalcontacts/contacts/enrich` (permission
    /// `externalContacts:contact:enrich`): the contact found or created (201 created, 200
    /// updated).
    pub async fn enrich_contact(
        &self,
        request: &ContactEnrichRequest,
    ) -> Result<ExternalContact, GenesysError> {
        self.call_json(
            "enrich_contact",
            Method::POST,
            "/api/v2/externalcontacts/contacts/enrich",
            Some(request),
        )
        .await
    }

    /// `PUT /api/v2/externalcontacts/conversations/{cid}` (permission
    /// `externalContacts:conversation:associate` or `relate:conversation:associate`): links
    /// the conversation to the contact. `communication_id` is the customer participant's
    /// communication id (`participants[].messages[].id` of `GET /api/v2/conversations/{cid}`),
    /// never its participant id: Genesys answers 202 to a wrong id and links nothing.
    pub async fn link_contact(
        &self,
        conversation_id: &str,
        communication_id: &str,
        contact_id: &str,
    ) -> Result<(), GenesysError> {
        let path = format!("/api/v2/externalcontacts/conversations/{conversation_id}");
        let body = ConversationAssociation {
            external_contact_id: contact_id,
            conversation_id,
            communication_id,
            media_type: "MESSAGE",
        };
        self.call("link_contact", Method::PUT, &path, Some(&body))
            .await
            .map(|_| ())
    }
}
