//! Processing one valid submission: CRM lookup, merge, and the writes to its Genesys
//! conversation (participant attributes; optionally the External Contact and a transfer to
//! the tier's queue). No queue knowledge here; the worker turns the result into a decision.
//!
//! Every write is skipped when the conversation already shows it (attributes equal, the
//! participant in the target queue), so a redelivery costs one `GET`. With External Contacts
//! the contact step runs before the attribute write, which thereby marks it done: attributes
//! already equal mean an earlier run got past the contact step, so a redelivery repeats
//! neither (README, "External Contacts"). Submissions of one conversation run one at a time
//! within a process, so two deliveries at once cannot both see "not transferred yet".
//!
//! Across processes, the broker hands a message to one consumer at a time; when the channel
//! that holds it is lost, another replica gets it at once. The attempt in hand then starts no
//! further Genesys write ([`Failure::Abandoned`]), so two replicas never both write to one
//! conversation for one message: the one in hand finishes at most the call it was making.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::contact::{point_at_contact, ContactError, ContactOutcome};
use super::decision::{Done, Failure};
use super::locks::StripedLocks;
use crate::config::{ExternalContactsSettings, OnUnavailable, RoutingMode};
use crate::crm::{CrmClient, CrmOutcome};
use crate::genesys::model::{MessageConversation, MessageParticipant};
use crate::genesys::{GenesysClient, GenesysError};
use crate::merge::{merge, Enrichment, QueueTarget, RouteTable};
use crate::metrics::ContactFailureLabels;
use crate::submission::Submission;

/// A conversation id no conversation has, for probing.
const PROBE_CONVERSATION_ID: &str = "00000000-0000-0000-0000-000000000000";

/// Attributes that change on every run and so say nothing about whether a write is needed.
const VOLATILE_KEYS: [&str; 1] = [crate::merge::attr::ENRICHED_AT];

/// Everything one submission needs; shared by every worker task of a process.
pub struct Processor {
    /// Genesys Cloud.
    pub genesys: Arc<GenesysClient>,
    /// The CRM.
    pub crm: Arc<CrmClient>,
    /// Tier → queue (ids resolved at start).
    pub routes: RouteTable,
    /// Attributes only, or transfer too.
    pub routing_mode: RoutingMode,
    /// Whether External Contacts are maintained, and for whom.
    pub external_contacts: ExternalContactsSettings,
    /// Degrade or retry when the CRM is down.
    pub on_crm_unavailable: OnUnavailable,
    /// Serialises the Genesys work of one conversation.
    pub conversation_locks: StripedLocks,
}

impl Processor {
    /// Enriches the submission's conversation (or reports that it has none yet).
    /// `contact_pending`: an earlier attempt's External Contact step failed in a way a retry
    /// may fix, so that step runs even though the attributes are there. `still_pending` says,
    /// whatever the result, whether the contact step is still to be done by a retry (a later
    /// step may fail after it failed, and that retry must not forget it). `lost` is cancelled
    /// when the consuming channel is gone: no write is started after that.
    pub async fn process(
        &self,
        submission: &Submission,
        contact_pending: bool,
        still_pending: &mut bool,
        lost: &CancellationToken,
    ) -> Result<Done, Failure> {
        *still_pending = contact_pending;
        let go_on = || match lost.is_cancelled() {
            true => Err(Failure::Abandoned),
            false => Ok(()),
        };
        let Some(conversation_id) = submission.conversation_id.as_deref() else {
            return Ok(Done::AwaitingConversation);
        };
        let crm = self.crm.lookup(submission).await;
        if matches!(crm, CrmOutcome::Unavailable) && self.on_crm_unavailable == OnUnavailable::Retry
        {
            return Err(Failure::CrmUnavailable);
        }
        let _one_at_a_time = self.conversation_locks.hold(&[conversation_id]).await;
        let conversation = match self.read_conversation(conversation_id).await {
            Ok(conversation) => conversation,
            Err(GenesysError::NotFound { .. }) => return Err(Failure::ConversationNotFound),
            Err(error) => return Err(Failure::Genesys(error)),
        };
        let Some(customer) = conversation.customer() else {
            return Err(Failure::ConversationGone {
                reason: "the conversation has no customer participant".into(),
            });
        };
        let mut enrichment = merge(submission, &crm, &self.routes, Utc::now());
        if self.routing_mode == RoutingMode::Transfer {
            if let Some(earlier) = earlier_transfer(customer) {
                // A conversation is transferred once: a redelivery whose answer changed
                // (say the CRM was down the first time) does not move the customer again,
                // and the attributes keep naming the queue the customer is really in.
                enrichment.target_queue = Some(earlier);
            }
        }
        let attributes = enrichment.attributes();
        let already = already_written(&customer.attributes, &attributes);
        let mut contact_retry = false;
        if !already || contact_pending {
            match contact_step(&self.external_contacts, submission) {
                Ok(()) => {
                    go_on()?;
                    contact_retry = self
                        .contact(conversation_id, customer, &enrichment, lost)
                        .await?;
                    *still_pending = contact_retry;
                }
                Err(reason) => tracing::debug!(
                    conversation.id = conversation_id,
                    reason,
                    "no external contact step"
                ),
            }
        }
        if !already {
            go_on()?;
        }
        let patched = self
            .write_attributes(conversation_id, customer, &attributes, already)
            .await?;
        let mut written = crate::handoff::shareable(&attributes);
        if !patched {
            // What is on the participant (an earlier `enrichedAt` above all).
            for key in crate::handoff::ANSWER_KEYS {
                if let Some(value) = customer.attributes.get(key) {
                    written.insert(key.to_string(), value.clone());
                }
            }
        }
        if self.routing_mode == RoutingMode::Transfer {
            go_on()?;
            self.transfer(conversation_id, customer, &enrichment)
                .await?;
        }
        Ok(Done::Enriched {
            patched,
            written,
            contact_pending: contact_retry,
        })
    }

    /// One cheap call per dependency that can trip outage mode: Genesys answers (a 404 for
    /// a conversation that cannot exist is an answer), and the CRM when its outages retry.
    pub async fn probe(&self) -> bool {
        let genesys = match self
            .genesys
            .get_message_conversation(PROBE_CONVERSATION_ID)
            .await
        {
            Ok(_) => true,
            Err(error) => !error.is_systemic(),
        };
        let crm = self.on_crm_unavailable == OnUnavailable::Degrade || self.crm.probe().await;
        genesys && crm
    }

    /// The conversation with its customer participant: the generic read when External
    /// Contacts are on (it also carries the communication id a link needs, so one read serves
    /// both), else the message conversation (which needs no permission).
    async fn read_conversation(
        &self,
        conversation_id: &str,
    ) -> Result<MessageConversation, GenesysError> {
        if self.external_contacts.enabled {
            self.genesys.get_conversation(conversation_id).await
        } else {
            self.genesys.get_message_conversation(conversation_id).await
        }
    }

    /// Points the conversation at the guest's External Contact. A failure is counted and
    /// logged here, and never holds the attributes or the routing back. Returns whether a
    /// later attempt may succeed where this one failed (a 5xx, a timeout, a 429 — not a
    /// missing permission or a refused body): the submission is then retried for the
    /// contact alone.
    async fn contact(
        &self,
        conversation_id: &str,
        customer: &MessageParticipant,
        enrichment: &Enrichment,
        lost: &CancellationToken,
    ) -> Result<bool, Failure> {
        let failure = match point_at_contact(
            &self.genesys,
            conversation_id,
            customer,
            enrichment,
            lost,
        )
        .await
        {
            Ok(ContactOutcome::Abandoned) => return Err(Failure::Abandoned),
            Ok(_) => return Ok(false),
            Err(failure) => failure,
        };
        {
            self.genesys
                .metrics()
                .external_contact_failures
                .get_or_create(&ContactFailureLabels {
                    step: failure.step,
                    error: failure.error.kind(),
                })
                .inc();
            tracing::warn!(
                conversation.id = conversation_id,
                contact.step = failure.step,
                genesys.status = failure.error.status(),
                error = %failure.error,
                "external contact not updated; the conversation is enriched without it"
            );
        }
        Ok(match &failure.error {
            ContactError::Genesys(error) => is_transient(error),
            ContactError::NoCommunication => false,
        })
    }

    async fn write_attributes(
        &self,
        conversation_id: &str,
        customer: &MessageParticipant,
        attributes: &BTreeMap<String, String>,
        written: bool,
    ) -> Result<bool, Failure> {
        if written {
            tracing::info!(
                conversation.id = conversation_id,
                "attributes already on the conversation; no write needed"
            );
            return Ok(false);
        }
        self.genesys
            .patch_participant_attributes(conversation_id, &customer.id, attributes)
            .await
            .map_err(gone_or_genesys)?;
        Ok(true)
    }

    /// Transfers to the tier's queue unless the participant is already there: a redelivery
    /// never transfers twice.
    async fn transfer(
        &self,
        conversation_id: &str,
        customer: &MessageParticipant,
        enrichment: &Enrichment,
    ) -> Result<(), Failure> {
        let Some(target) = enrichment
            .target_queue
            .as_ref()
            .filter(|t| !t.id.is_empty())
        else {
            return Ok(());
        };
        if customer
            .queue
            .as_ref()
            .is_some_and(|q| q.id.eq_ignore_ascii_case(&target.id))
        {
            return Ok(());
        }
        self.genesys
            .transfer_to_queue(conversation_id, &customer.id, &target.id)
            .await
            .map_err(gone_or_genesys)?;
        tracing::info!(conversation.id = conversation_id, queue.id = %target.id, queue.name = %target.name, "transferred to the tier's queue");
        Ok(())
    }
}

/// A failure a later attempt may not meet: an outage, a timeout, a 401, a 429.
fn is_transient(error: &GenesysError) -> bool {
    error.is_systemic() || matches!(error, GenesysError::RateLimited { .. })
}

/// The queue an earlier run transferred the customer to: the participant sits in the queue
/// its `targetQueueId` attribute names.
fn earlier_transfer(customer: &MessageParticipant) -> Option<QueueTarget> {
    let id = customer
        .attributes
        .get(crate::merge::attr::TARGET_QUEUE_ID)?;
    let queue = customer.queue.as_ref()?;
    (!id.is_empty() && queue.id.eq_ignore_ascii_case(id)).then(|| QueueTarget {
        id: queue.id.clone(),
        name: customer
            .attributes
            .get("targetQueueName")
            .cloned()
            .unwrap_or_default(),
    })
}

/// Whether the submission gets the External Contact step, else why not: only when enabled,
/// with consent, and for a verified identity unless `require_verified` is off.
fn contact_step(
    settings: &ExternalContactsSettings,
    submission: &Submission,
) -> Result<(), &'static str> {
    if !settings.enabled {
        Err("external contacts are disabled")
    } else if !submission.has_consent() {
        Err("no consent")
    } else if settings.require_verified && !submission.is_verified() {
        Err("the guest's identity is not verified")
    } else {
        Ok(())
    }
}

/// A 404 on a write means the conversation or participant went away since the `GET`.
fn gone_or_genesys(error: GenesysError) -> Failure {
    match error {
        GenesysError::NotFound { .. } => Failure::ConversationGone {
            reason: "the conversation or its customer participant is gone".into(),
        },
        error => Failure::Genesys(error),
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
    fn the_contact_step_needs_consent_and_by_default_a_verified_identity() {
        let mut submission = crate::submission::tests::sample();
        // enabled, require_verified, consent, verified → runs
        for (enabled, require_verified, consent, verified, runs) in [
            (true, true, true, true, true),
            (true, true, true, false, false),
            (true, false, true, false, true),
            (true, false, false, true, false),
            (true, true, false, true, false),
            (false, false, true, true, false),
        ] {
            let settings = ExternalContactsSettings {
                enabled,
                require_verified,
            };
            submission.consent.given = consent;
            submission.guest.verified = verified;
            assert_eq!(
                contact_step(&settings, &submission).is_ok(),
                runs,
                "enabled {enabled}, require_verified {require_verified}, consent {consent}, verified {verified}"
            );
        }
    }

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
