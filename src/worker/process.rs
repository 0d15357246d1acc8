//! Processing one valid submission: CRM lookup, merge, and the writes to its Genesys
//! conversation. No queue knowledge here; the worker turns the result into a decision.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;

use super::decision::{Done, Failure};
use crate::config::OnUnavailable;
use crate::crm::{CrmOutcome, CustomerDirectory};
use crate::genesys::{GenesysClient, GenesysError};
use crate::merge::{merge, RouteTable};
use crate::submission::Submission;

/// Attributes that change on every run and so say nothing about whether a write is needed.
const VOLATILE_KEYS: [&str; 1] = ["enrichedAt"];

/// Everything one submission needs; shared by every worker task of a process.
pub struct Processor<C> {
    /// Genesys Cloud.
    pub genesys: Arc<GenesysClient>,
    /// The CRM.
    pub crm: Arc<C>,
    /// Tier → queue.
    pub routes: RouteTable,
    /// Degrade or retry when the CRM is down.
    pub on_crm_unavailable: OnUnavailable,
}

impl<C: CustomerDirectory> Processor<C> {
    /// Enriches the submission's conversation (or reports that it has none yet).
    pub async fn process(&self, submission: &Submission) -> Result<Done, Failure> {
        let Some(conversation_id) = submission.conversation_id.as_deref() else {
            return Ok(Done::AwaitingConversation);
        };
        let crm = self.crm.lookup(submission).await;
        if matches!(crm, CrmOutcome::Unavailable) && self.on_crm_unavailable == OnUnavailable::Retry
        {
            return Err(Failure::CrmUnavailable);
        }
        let conversation = match self.genesys.get_message_conversation(conversation_id).await {
            Ok(conversation) => conversation,
            Err(GenesysError::NotFound { .. }) => return Err(Failure::ConversationNotFound),
            Err(error) => return Err(Failure::Genesys(error)),
        };
        let Some(customer) = conversation.customer() else {
            return Err(Failure::ConversationGone {
                reason: "the conversation has no customer participant".into(),
            });
        };
        let attributes = merge(submission, &crm, &self.routes, Utc::now()).attributes();
        if already_written(&customer.attributes, &attributes) {
            tracing::info!(submission.id = %submission.submission_id, conversation.id = conversation_id, "attributes already on the conversation; no write needed");
            return Ok(Done::Enriched { patched: false });
        }
        match self
            .genesys
            .patch_participant_attributes(conversation_id, &customer.id, &attributes)
            .await
        {
            Ok(()) => Ok(Done::Enriched { patched: true }),
            Err(GenesysError::NotFound { .. }) => Err(Failure::ConversationGone {
                reason: "the conversation or its customer participant is gone".into(),
            }),
            Err(error) => Err(Failure::Genesys(error)),
        }
    }
}

/// Whether every attribute (but the volatile ones) already has the wanted value: a
/// redelivery after a lost ack then costs no write.
fn already_written(current: &BTreeMap<String, String>, wanted: &BTreeMap<String, String>) -> bool {
    wanted
        .iter()
        .filter(|(key, _)| !VOLATILE_KEYS.contains(&key.as_str()))
        .all(|(key, value)| current.get(key) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redelivery_with_the_same_values_needs_no_write_whatever_enriched_at_says() {
        let wanted: BTreeMap<_, _> = [
            ("loyaltyTier", "gold"),
            ("enrichedAt", "2026-11-22T10:00:01Z"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let mut current: BTreeMap<_, _> = [
            ("loyaltyTier", "gold"),
            ("enrichedAt", "2026-11-22T09:00:00Z"),
            ("other", "x"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        assert!(already_written(&current, &wanted));
        current.insert("loyaltyTier".into(), "silver".into());
        assert!(!already_written(&current, &wanted));
    }
}
