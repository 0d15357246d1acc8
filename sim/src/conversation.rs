//! A web-messaging conversation as the sandbox stores it, and its Genesys JSON
//! (`MessageConversation`, `MessageMediaParticipant`, search rows, and the generic
//! `Conversation` whose participants list their communications).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use tokio::time::Instant;
use uuid::Uuid;

use crate::model::{ConversationView, SeedConversation};

/// The division every sandbox conversation and queue belongs to ("Home").
pub(crate) const HOME_DIVISION_ID: &str = "3c6d3b34-6c43-4c8e-9c0a-5e1f7c1d0a11";

/// Most transfer commands `recentTransfers` keeps, as in Genesys.
const RECENT_TRANSFERS: usize = 20;

/// A routing queue reference (`DomainEntityRef`).
#[derive(Clone, Debug)]
pub(crate) struct QueueRef {
    pub id: String,
    pub name: String,
}

/// One participant of a message conversation.
#[derive(Clone, Debug)]
pub(crate) struct Participant {
    pub id: String,
    pub purpose: &'static str,
    pub name: &'static str,
    /// The id of the participant's message communication: never the participant id. It is
    /// `participants[].messages[].id` of `GET /api/v2/conversations/{id}`, what
    /// `ConversationAssociation.communicationId` needs, and the session id of search rows.
    pub session_id: String,
    pub attributes: BTreeMap<String, String>,
    pub queue: Option<QueueRef>,
    pub external_contact_id: Option<String>,
}

impl Participant {
    fn new(purpose: &'static str, name: &'static str) -> Self {
        Self {
            id: Uuid::new_v4().to_string(),
            purpose,
            name,
            session_id: Uuid::new_v4().to_string(),
            attributes: BTreeMap::new(),
            queue: None,
            external_contact_id: None,
        }
    }
}

/// A message conversation: the Architect flow's `acd` participant (listed first, so clients
/// must pick the customer by `purpose`) and the `customer`.
#[derive(Clone, Debug)]
pub(crate) struct Conversation {
    pub id: String,
    pub start_time: DateTime<Utc>,
    pub participants: Vec<Participant>,
    /// When a participant first had attributes: the search index sees the conversation
    /// `index_delay_ms` after that.
    pub attributes_since: Option<Instant>,
    pub recent_transfers: Vec<Value>,
    pub transfers: u32,
    pub attribute_patches: u32,
    pub last_queue_id: Option<String>,
}

/// A Genesys timestamp: ISO-8601 in UTC with milliseconds.
pub(crate) fn iso(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl Conversation {
    pub fn from_seed(seed: SeedConversation, now: Instant) -> Self {
        let flow = Participant::new("acd", "Inbound Message Flow");
        let mut customer = Participant::new("customer", "Web Messaging Guest");
        customer.attributes = seed.customer_attributes;
        let attributes_since = (!customer.attributes.is_empty()).then_some(now);
        Self {
            id: seed.id.unwrap_or_else(|| Uuid::new_v4().to_string()),
            start_time: seed.start_time.unwrap_or_else(Utc::now),
            participants: vec![flow, customer],
            attributes_since,
            recent_transfers: Vec::new(),
            transfers: 0,
            attribute_patches: 0,
            last_queue_id: None,
        }
    }

    pub fn customer(&self) -> &Participant {
        self.participants
            .iter()
            .find(|p| p.purpose == "customer")
            .expect("every sandbox conversation has a customer participant")
    }

    pub fn customer_mut(&mut self) -> &mut Participant {
        self.participants
            .iter_mut()
            .find(|p| p.purpose == "customer")
            .expect("every sandbox conversation has a customer participant")
    }

    pub fn participant_mut(&mut self, id: &str) -> Option<&mut Participant> {
        self.participants.iter_mut().find(|p| p.id == id)
    }

    /// Notes that attributes were written, starting the index delay on the first time.
    pub fn touch_attributes(&mut self, now: Instant) {
        let any = self.participants.iter().any(|p| !p.attributes.is_empty());
        if any && self.attributes_since.is_none() {
            self.attributes_since = Some(now);
        }
    }

    /// Records a `replace/queue` command as a `TransferResponse` in `recentTransfers`.
    /// `TransferDestination` only has `userId` and `address`; how Genesys fills it for a queue
    /// is unconfirmed, so the sandbox puts the queue id in `address`.
    pub fn record_transfer(&mut self, queue: QueueRef, transfer_type: &str) {
        let command = json!({
            "id": Uuid::new_v4().to_string(),
            "state": "Complete",
            "dateIssued": iso(Utc::now()),
            "transferType": transfer_type,
            "destination": { "address": queue.id },
        });
        self.recent_transfers.push(command);
        if self.recent_transfers.len() > RECENT_TRANSFERS {
            let excess = self.recent_transfers.len() - RECENT_TRANSFERS;
            self.recent_transfers.drain(..excess);
        }
        self.transfers += 1;
        self.last_queue_id = Some(queue.id);
    }

    pub fn view(&self) -> ConversationView {
        let customer = self.customer();
        ConversationView {
            id: self.id.clone(),
            customer_participant_id: customer.id.clone(),
            customer_communication_id: customer.session_id.clone(),
            attributes: customer.attributes.clone(),
            queue_id: self.last_queue_id.clone(),
            transfers: self.transfers,
            linked_contact_id: customer.external_contact_id.clone(),
            attribute_patches: self.attribute_patches,
        }
    }

    /// The `MessageConversation` JSON of `GET /api/v2/conversations/messages/{id}`.
    pub fn to_json(&self) -> Value {
        let participants: Vec<Value> = self
            .participants
            .iter()
            .map(|p| self.participant_json(p))
            .collect();
        json!({
            "id": self.id,
            "participants": participants,
            "recentTransfers": self.recent_transfers,
            "divisions": [{
                "division": { "id": HOME_DIVISION_ID, "selfUri": format!("/api/v2/authorization/divisions/{HOME_DIVISION_ID}") },
                "entities": [],
            }],
            "selfUri": format!("/api/v2/conversations/messages/{}", self.id),
        })
    }

    fn participant_json(&self, p: &Participant) -> Value {
        let start = iso(self.start_time);
        let mut obj = Map::new();
        obj.insert("id".into(), json!(p.id));
        obj.insert("name".into(), json!(p.name));
        obj.insert("startTime".into(), json!(start));
        obj.insert("connectedTime".into(), json!(start));
        obj.insert("purpose".into(), json!(p.purpose));
        obj.insert("state".into(), json!("connected"));
        obj.insert("direction".into(), json!("inbound"));
        obj.insert("held".into(), json!(false));
        obj.insert("wrapupRequired".into(), json!(false));
        obj.insert("attributes".into(), json!(p.attributes));
        if let Some(q) = &p.queue {
            obj.insert(
                "queue".into(),
                json!({ "id": q.id, "name": q.name, "selfUri": format!("/api/v2/routing/queues/{}", q.id) }),
            );
        }
        if let Some(contact) = &p.external_contact_id {
            obj.insert(
                "externalContact".into(),
                json!({ "id": contact, "selfUri": format!("/api/v2/externalcontacts/contacts/{contact}") }),
            );
        }
        obj.insert("type".into(), json!("webmessaging"));
        obj.insert("messages".into(), json!([]));
        Value::Object(obj)
    }

    /// The generic `Conversation` JSON of `GET /api/v2/conversations/{id}`: each `Participant`
    /// has `queueId` and `externalContactId` instead of references, and its `messages[]` are
    /// its communications (`Message {id, state, direction, …}`), the id being
    /// [`Participant::session_id`].
    pub fn to_generic_json(&self) -> Value {
        let start = iso(self.start_time);
        let participants: Vec<Value> = self
            .participants
            .iter()
            .map(|p| {
                let mut obj = Map::new();
                obj.insert("id".into(), json!(p.id));
                obj.insert("name".into(), json!(p.name));
                obj.insert("startTime".into(), json!(start));
                obj.insert("connectedTime".into(), json!(start));
                obj.insert("purpose".into(), json!(p.purpose));
                obj.insert("state".into(), json!("connected"));
                obj.insert("direction".into(), json!("inbound"));
                obj.insert("attributes".into(), json!(p.attributes));
                if let Some(q) = &p.queue {
                    obj.insert("queueId".into(), json!(q.id));
                }
                if let Some(contact) = &p.external_contact_id {
                    obj.insert("externalContactId".into(), json!(contact));
                }
                obj.insert(
                    "messages".into(),
                    json!([{
                        "id": p.session_id,
                        "state": "connected",
                        "initialState": "alerting",
                        "direction": "inbound",
                        "held": false,
                        "type": "webmessaging",
                        "connectedTime": start,
                    }]),
                );
                Value::Object(obj)
            })
            .collect();
        json!({
            "id": self.id,
            "startTime": start,
            "participants": participants,
            "recentTransfers": self.recent_transfers,
            "divisions": [{
                "division": { "id": HOME_DIVISION_ID, "selfUri": format!("/api/v2/authorization/divisions/{HOME_DIVISION_ID}") },
                "entities": [],
            }],
            "selfUri": format!("/api/v2/conversations/{}", self.id),
        })
    }

    /// One row of the participant attribute search: participants without attributes left out.
    pub fn search_row(&self) -> Value {
        let data: Vec<Value> = self
            .participants
            .iter()
            .filter(|p| !p.attributes.is_empty())
            .map(|p| {
                json!({
                    "participantPurpose": p.purpose,
                    "participantId": p.id,
                    "participantAttributes": p.attributes,
                    "sessionIds": [p.session_id],
                })
            })
            .collect();
        json!({
            "conversationId": self.id,
            "startTime": iso(self.start_time),
            "divisionIds": [HOME_DIVISION_ID],
            "truncatedData": false,
            "participantData": data,
        })
    }
}
