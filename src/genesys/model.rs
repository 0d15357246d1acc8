//! The few Genesys Cloud shapes the service reads and writes (field names as in the
//! Platform API; unknown fields are ignored).

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// `POST https://login.{domain}/oauth/token` answer.
#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    /// The bearer token (`Debug` prints it redacted).
    pub access_token: SecretString,
    /// Seconds until it expires.
    pub expires_in: u64,
}

/// `GET /api/v2/conversations/messages/{id}` (`MessageConversation`).
#[derive(Debug, Clone, Deserialize)]
pub struct MessageConversation {
    /// Conversation id.
    pub id: String,
    /// Every participant: customer, acd, agent, …
    #[serde(default)]
    pub participants: Vec<MessageParticipant>,
}

/// A `MessageMediaParticipant`.
#[derive(Debug, Clone, Deserialize)]
pub struct MessageParticipant {
    /// Participant id.
    pub id: String,
    /// `customer`, `agent`, `acd`, `workflow`, …
    #[serde(default)]
    pub purpose: Option<String>,
    /// `connected`, `disconnected`, …
    #[serde(default)]
    pub state: Option<String>,
    /// Participant data (strings only).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The queue the participant is in, when routed.
    #[serde(default)]
    pub queue: Option<EntityRef>,
    /// The External Contact linked to the conversation, if any.
    #[serde(default, rename = "externalContact")]
    pub external_contact: Option<EntityRef>,
    /// The id of the participant's message communication, which a `ConversationAssociation`
    /// needs. `MessageConversation` does not carry it (its `messages[]` are `MessageDetails`),
    /// so it is only known when the conversation was read as a generic [`Conversation`].
    #[serde(skip)]
    pub communication_id: Option<String>,
}

/// `GET /api/v2/conversations/{id}` (the generic `Conversation`): the same participants,
/// with their communications.
#[derive(Debug, Clone, Deserialize)]
pub struct Conversation {
    /// Conversation id.
    pub id: String,
    /// Every participant.
    #[serde(default)]
    pub participants: Vec<Participant>,
}

/// A `Participant` of the generic `Conversation`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    /// Participant id.
    pub id: String,
    /// `customer`, `agent`, `acd`, …
    #[serde(default)]
    pub purpose: Option<String>,
    /// `connected`, `disconnected`, …
    #[serde(default)]
    pub state: Option<String>,
    /// Participant data (strings only).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// The queue the participant is in, when routed.
    #[serde(default)]
    pub queue_id: Option<String>,
    /// The External Contact linked to the conversation, if any.
    #[serde(default)]
    pub external_contact_id: Option<String>,
    /// The participant's message communications (`Message`); their `id` is the
    /// communication id.
    #[serde(default)]
    pub messages: Vec<EntityRef>,
}

impl From<Conversation> for MessageConversation {
    fn from(conversation: Conversation) -> Self {
        let participants = conversation
            .participants
            .into_iter()
            .map(|p| MessageParticipant {
                id: p.id,
                purpose: p.purpose,
                state: p.state,
                attributes: p.attributes,
                queue: p.queue_id.map(|id| EntityRef { id }),
                external_contact: p.external_contact_id.map(|id| EntityRef { id }),
                // The latest communication is the one the guest is on now.
                communication_id: p.messages.into_iter().last().map(|m| m.id),
            })
            .collect();
        MessageConversation {
            id: conversation.id,
            participants,
        }
    }
}

/// `{ "id": … }` reference.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntityRef {
    /// Entity id.
    pub id: String,
}

impl MessageConversation {
    /// The customer participant (`purpose == "customer"`); the connected one when
    /// there are several.
    pub fn customer(&self) -> Option<&MessageParticipant> {
        let mut customers = self
            .participants
            .iter()
            .filter(|p| p.purpose.as_deref() == Some("customer"));
        let first = customers.clone().next();
        customers
            .find(|p| p.state.as_deref() != Some("disconnected"))
            .or(first)
    }
}

/// `PATCH …/participants/{pid}/attributes` body (`ParticipantAttributes`).
#[derive(Debug, Serialize)]
pub struct ParticipantAttributes<'a> {
    /// String values only.
    pub attributes: &'a BTreeMap<String, String>,
}
