//! The Architect handoff: the inbound message flow knows the conversation id and reads the
//! submission id from participant data; a Web Services data action posts both to
//! `POST /v1/handoffs`.
//!
//! How the two meet, with any number of replicas and across restarts: the ingest publishes the
//! handoff with confirms to `prechat.ingest` under the key `handoff`, which feeds
//! `prechat.awaiting`, the queue the resolver already holds (one active consumer in the whole
//! deployment). Parked submissions and handoffs are both held there unacked, so whichever comes
//! second finds the first in the resolver's memory, and a restart hands both to the next
//! resolver. A match needs no search call. A handoff is held until the deadline of
//! `worker.deadline_secs` (well inside RabbitMQ's `consumer_timeout`), then dropped: nothing
//! was submitted, so there is nothing to dead-letter.
//!
//! The answer waits for the submission's `submission.enriched` event ([`watch`]), which carries
//! the non-personal attributes written, and gives them to the flow as flat strings.

pub mod watch;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::merge::attr;

/// The header that marks a handoff on `prechat.awaiting` (value `handoff`).
pub const KIND_HEADER: &str = "prechat-kind";
/// The value of [`KIND_HEADER`] on a handoff.
pub const KIND: &str = "handoff";
/// Longest submission id accepted (the ingest accepts no longer ones).
const MAX_ID_CHARS: usize = 128;

/// The attributes the answer carries besides `status`, `conversationId` and `submissionId`:
/// always all of them (a data action's output contract is fixed), never a personal one.
pub const ANSWER_KEYS: [&str; 14] = [
    attr::CRM_CUSTOMER_ID,
    attr::LOYALTY_TIER,
    attr::ACCOUNT_STATUS,
    attr::LOYALTY_POINTS,
    attr::PREVIOUS_TICKETS,
    attr::SUBJECT,
    attr::PRIORITY,
    attr::LANGUAGE,
    attr::CRM_MATCH,
    attr::CRM_STATUS,
    attr::TARGET_QUEUE_NAME,
    attr::TARGET_QUEUE_ID,
    attr::ENRICHED_AT,
    attr::IDENTITY_VERIFIED,
];

/// A handoff as the data action sends it, and as it rests on the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handoff {
    /// `Message.ConversationId` of the flow.
    pub conversation_id: String,
    /// The `prechatSubmissionId` participant attribute the web tier set.
    pub submission_id: String,
    /// When the ingest accepted it (its deadline counts from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<DateTime<Utc>>,
}

/// Why a handoff body was refused: a code and a sentence, and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffError {
    /// Stable code.
    pub code: &'static str,
    /// For the integrator.
    pub message: String,
    /// The JSON field.
    pub field: Option<&'static str>,
}

impl Handoff {
    /// Parses and checks a body: a UUID conversation id and a plain, short submission id
    /// (the flow passes what participant data holds, so an unset attribute arrives empty).
    pub fn parse(body: &[u8]) -> Result<Self, HandoffError> {
        let refuse = |code, message: &str, field| HandoffError {
            code,
            message: message.to_string(),
            field,
        };
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
            refuse(
                "invalid_json",
                "The body is not valid JSON; send {\"conversationId\": …, \"submissionId\": …}.",
                None,
            )
        })?;
        let text = |key: &'static str| -> Result<String, HandoffError> {
            match value.get(key) {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                    Ok(s.trim().to_string())
                }
                Some(serde_json::Value::String(_)) | None | Some(serde_json::Value::Null) => Err(
                    refuse("missing_field", &format!("{key} is required."), Some(key)),
                ),
                Some(_) => Err(refuse(
                    "invalid_type",
                    &format!("{key} must be a string."),
                    Some(key),
                )),
            }
        };
        let conversation_id = text("conversationId")?;
        let Ok(uuid) = uuid::Uuid::parse_str(&conversation_id) else {
            return Err(refuse(
                "invalid_conversation_id",
                "conversationId must be a UUID (Message.ConversationId of the flow).",
                Some("conversationId"),
            ));
        };
        let submission_id = text("submissionId")?;
        if submission_id.chars().count() > MAX_ID_CHARS
            || submission_id.chars().any(char::is_control)
        {
            return Err(refuse(
                "invalid_submission_id",
                "submissionId must be at most 128 characters without control characters.",
                Some("submissionId"),
            ));
        }
        Ok(Self {
            conversation_id: uuid.to_string(),
            submission_id,
            accepted_at: None,
        })
    }
}

/// The answer's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerStatus {
    /// The attributes are on the participant; the flow can route now.
    Enriched,
    /// Not yet within the wait; the work goes on.
    Pending,
}

/// The flat answer of `POST /v1/handoffs`: every key, strings only.
pub fn answer(
    handoff: &Handoff,
    enriched: Option<&BTreeMap<String, String>>,
) -> BTreeMap<&'static str, String> {
    let status = match enriched {
        Some(_) => "enriched",
        None => "pending",
    };
    let mut out = BTreeMap::from([
        ("status", status.to_string()),
        ("conversationId", handoff.conversation_id.clone()),
        ("submissionId", handoff.submission_id.clone()),
    ]);
    for key in ANSWER_KEYS {
        let value = enriched
            .and_then(|a| a.get(key))
            .cloned()
            .unwrap_or_default();
        out.insert(key, value);
    }
    out
}

/// The attributes an outcome event may carry: the written ones minus the personal ones.
pub fn shareable(attributes: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    attributes
        .iter()
        .filter(|(key, _)| ANSWER_KEYS.contains(&key.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "5e1d0c01-7a3b-4c2d-9e10-000000000001";

    #[test]
    fn a_handoff_needs_a_uuid_conversation_and_a_plain_submission_id() {
        let ok = Handoff::parse(
            format!(
                r#"{{"conversationId":" {} ","submissionId":"s-1"}}"#,
                CID.to_uppercase()
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(ok.conversation_id, CID);
        assert_eq!(ok.submission_id, "s-1");
        for (body, code, field) in [
            ("nope", "invalid_json", None),
            (
                r#"{"submissionId":"s"}"#,
                "missing_field",
                Some("conversationId"),
            ),
            (
                r#"{"conversationId":"x","submissionId":"s"}"#,
                "invalid_conversation_id",
                Some("conversationId"),
            ),
            (
                &format!(r#"{{"conversationId":"{CID}","submissionId":""}}"#),
                "missing_field",
                Some("submissionId"),
            ),
            (
                &format!(r#"{{"conversationId":"{CID}","submissionId":5}}"#),
                "invalid_type",
                Some("submissionId"),
            ),
            (
                &format!(r#"{{"conversationId":"{CID}","submissionId":"a\u0007b"}}"#),
                "invalid_submission_id",
                Some("submissionId"),
            ),
            (
                &format!(
                    r#"{{"conversationId":"{CID}","submissionId":"{}"}}"#,
                    "x".repeat(129)
                ),
                "invalid_submission_id",
                Some("submissionId"),
            ),
        ] {
            let error = Handoff::parse(body.as_bytes()).unwrap_err();
            assert_eq!((error.code, error.field), (code, field), "{body}");
        }
    }

    #[test]
    fn the_answer_has_every_key_and_no_personal_data() {
        let handoff = Handoff {
            conversation_id: CID.into(),
            submission_id: "s-1".into(),
            accepted_at: None,
        };
        let pending = answer(&handoff, None);
        assert_eq!(pending.len(), 17);
        assert_eq!(pending["status"], "pending");
        assert_eq!(pending["targetQueueId"], "");
        let written = BTreeMap::from([
            ("targetQueueId".to_string(), "q-1".to_string()),
            ("loyaltyTier".to_string(), "gold".to_string()),
            ("email".to_string(), "jane@example.com".to_string()),
        ]);
        let shared = shareable(&written);
        assert!(!shared.contains_key("email"));
        let enriched = answer(&handoff, Some(&shared));
        assert_eq!(enriched.len(), 17);
        assert_eq!(enriched["status"], "enriched");
        assert_eq!(enriched["targetQueueId"], "q-1");
        assert_eq!(enriched["loyaltyTier"], "gold");
        assert!(!enriched.contains_key("email"));
    }
}

#[cfg(test)]
mod data_action {
    use super::*;

    const DEFINITION: &str = include_str!("../../deploy/genesys/prechat-handoff.data-action.json");

    #[test]
    fn the_shipped_data_action_has_every_answer_key_in_its_output_contract() {
        let action: serde_json::Value = serde_json::from_str(DEFINITION).unwrap();
        let output = &action["contract"]["output"]["successSchema"]["properties"];
        let mut contract: Vec<&str> = output
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        contract.sort_unstable();
        let handoff = Handoff {
            conversation_id: "c".into(),
            submission_id: "s".into(),
            accepted_at: None,
        };
        let mut answered: Vec<&str> = answer(&handoff, None).into_keys().collect();
        answered.sort_unstable();
        assert_eq!(contract, answered);
        for (key, schema) in output.as_object().unwrap() {
            assert_eq!(schema["type"], "string", "{key}");
        }
    }

    #[test]
    fn the_shipped_request_template_makes_a_body_the_route_accepts() {
        let action: serde_json::Value = serde_json::from_str(DEFINITION).unwrap();
        let request = &action["config"]["request"];
        assert_eq!(request["requestType"], "POST");
        assert!(request["requestUrlTemplate"]
            .as_str()
            .unwrap()
            .ends_with("/v1/handoffs"));
        assert!(request["headers"]["Authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ${credentials."));
        // What Genesys' template engine makes of it for plain values.
        let body = request["requestTemplate"]
            .as_str()
            .unwrap()
            .replace(
                "$esc.jsonString(${input.conversationId})",
                "5e1d0c01-7a3b-4c2d-9e10-000000000001",
            )
            .replace("$esc.jsonString(${input.submissionId})", "sub-1");
        let handoff = Handoff::parse(body.as_bytes()).unwrap();
        assert_eq!(handoff.submission_id, "sub-1");
        let required = &action["contract"]["input"]["inputSchema"]["required"];
        assert_eq!(
            required,
            &serde_json::json!(["conversationId", "submissionId"])
        );
    }
}
