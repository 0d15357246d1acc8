//! External Contacts: find a contact by an identifier (`POST
//! /api/v2/externalcontacts/identifierlookup`), update (`PUT …/contacts/{id}`) or create
//! (`POST …/contacts`) it, and link it to the conversation (`PUT
//! /api/v2/externalcontacts/conversations/{cid}`).

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{GenesysClient, GenesysError};

/// An identifier type of `identifierlookup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierType {
    /// An email address.
    Email,
    /// A phone number (E.164).
    Phone,
}

impl IdentifierType {
    fn as_str(self) -> &'static str {
        match self {
            IdentifierType::Email => "Email",
            IdentifierType::Phone => "Phone",
        }
    }
}

#[derive(Serialize)]
struct ContactIdentifier<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConversationAssociation<'a> {
    external_contact_id: &'a str,
    conversation_id: &'a str,
    communication_id: &'a str,
    media_type: &'static str,
}

/// An `ExternalContact`, kept as JSON so that a full-object `PUT` sends back every field
/// Genesys returned, changed or not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExternalContact(pub Map<String, Value>);

impl ExternalContact {
    /// The contact's id.
    pub fn id(&self) -> Option<&str> {
        self.0.get("id").and_then(Value::as_str)
    }
}

impl GenesysClient {
    /// The contact that has claimed this identifier, if any.
    pub async fn lookup_contact(
        &self,
        kind: IdentifierType,
        value: &str,
    ) -> Result<Option<ExternalContact>, GenesysError> {
        let body = ContactIdentifier {
            kind: kind.as_str(),
            value,
        };
        match self
            .call_json(
                "identifier_lookup",
                Method::POST,
                "/api/v2/externalcontacts/identifierlookup",
                Some(&body),
            )
            .await
        {
            Ok(contact) => Ok(Some(contact)),
            Err(GenesysError::NotFound { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Creates a contact.
    pub async fn create_contact(
        &self,
        contact: &ExternalContact,
    ) -> Result<ExternalContact, GenesysError> {
        self.call_json(
            "create_contact",
            Method::POST,
            "/api/v2/externalcontacts/contacts",
            Some(contact),
        )
        .await
    }

    /// Replaces a contact (full object).
    pub async fn update_contact(
        &self,
        id: &str,
        contact: &ExternalContact,
    ) -> Result<ExternalContact, GenesysError> {
        let path = format!("/api/v2/externalcontacts/contacts/{id}");
        self.call_json("update_contact", Method::PUT, &path, Some(contact))
            .await
    }

    /// Links the conversation to the contact.
    pub async fn link_contact(
        &self,
        conversation_id: &str,
        participant_id: &str,
        contact_id: &str,
    ) -> Result<(), GenesysError> {
        let path = format!("/api/v2/externalcontacts/conversations/{conversation_id}");
        let body = ConversationAssociation {
            external_contact_id: contact_id,
            conversation_id,
            communication_id: participant_id,
            media_type: "MESSAGE",
        };
        self.call("link_contact", Method::PUT, &path, Some(&body))
            .await
            .map(|_| ())
    }
}
