//! The checks on a test conversation (started through the org's Messenger with a
//! `prechatSubmissionId`): how long the attribute search takes to show it, whether an
//! attribute PATCH merges or replaces, and, with External Contacts, enrich + link on a
//! throwaway identifier whose contact is deleted afterwards.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::Value;
use tokio::time::{sleep, Instant};
use uuid::Uuid;

use super::fact::{Fact, Outcome};
use super::probes::needs;
use crate::config::Settings;
use crate::genesys::model::MessageParticipant;
use crate::genesys::{GenesysClient, GenesysError};
use crate::merge::attr;

/// The two keys written to tell a merging PATCH from a replacing one.
pub const FIRST_KEY: &str = "prechatVerifyFirst";
/// See [`FIRST_KEY`].
pub const SECOND_KEY: &str = "prechatVerifySecond";
/// How long a write may take to show on a read of the conversation.
pub(super) const READ_BACK_WAIT: Duration = Duration::from_secs(10);
pub(super) const READ_BACK_POLL: Duration = Duration::from_millis(250);
const SEARCH_POLL: Duration = Duration::from_secs(1);
/// The search window looks back this far: the test conversation is a fresh one.
const SEARCH_LOOKBACK_HOURS: i64 = 4;

const PATCH: &str = "PATCH /api/v2/conversations/messages/{cid}/participants/{pid}/attributes";
const SEARCH: &str = "POST /api/v2/conversations/participants/attributes/search";

/// How the checks run.
pub struct Test<'a> {
    /// The client.
    pub genesys: &'a GenesysClient,
    /// The configuration checked.
    pub settings: &'a Settings,
    /// The test conversation.
    pub conversation_id: &'a str,
    /// The longest wait for the search to show the conversation.
    pub search_wait: Duration,
}

impl Test<'_> {
    /// Runs every check on the conversation.
    pub async fn run(&self, facts: &mut Vec<Fact>) {
        let customer = match self.customer().await {
            Ok(customer) => customer,
            Err(outcome) => {
                facts.push(Fact::required(
                    "test conversation",
                    "GET /api/v2/conversations/messages/{id}",
                    outcome,
                ));
                return;
            }
        };
        let submission_id = customer.attributes.get(attr::SUBMISSION_ID).cloned();
        facts.push(Fact::required(
            "test conversation",
            "GET /api/v2/conversations/messages/{id}",
            match &submission_id {
                Some(id) => Outcome::Ok(format!(
                    "customer participant {}, {} = {id}",
                    customer.id,
                    attr::SUBMISSION_ID
                )),
                None => Outcome::Differs(format!(
                    "the customer participant has no {} (start it through the Messenger with \
                     that attribute set)",
                    attr::SUBMISSION_ID
                )),
            },
        ));
        // Before the PATCHes: a replacing PATCH would drop the submission id.
        facts.push(self.index_delay(submission_id.as_deref()).await);
        facts.extend(self.patch_semantics(&customer.id).await);
        if self.settings.genesys.external_contacts.enabled {
            self.contact(facts).await;
        }
    }

    pub(super) async fn customer(&self) -> Result<MessageParticipant, Outcome> {
        let conversation = self
            .genesys
            .get_message_conversation(self.conversation_id)
            .await
            .map_err(|error| match error {
                GenesysError::NotFound { .. } => Outcome::Failed(format!(
                    "no message conversation {} in this org",
                    self.conversation_id
                )),
                other => Outcome::from_error(&other, needs::NONE),
            })?;
        conversation
            .customer()
            .cloned()
            .ok_or_else(|| Outcome::Differs("no participant with purpose customer".into()))
    }

    /// When the customer participant started (`participants[].startTime`, Genesys' clock):
    /// the attributes the Messenger sent come with the guest's first message.
    async fn customer_start(&self) -> Option<DateTime<Utc>> {
        let path = format!("/api/v2/conversations/messages/{}", self.conversation_id);
        let conversation: Value = self
            .genesys
            .call_json("get_conversation", Method::GET, &path, None::<&()>)
            .await
            .ok()?;
        let customer = conversation["participants"]
            .as_array()?
            .iter()
            .find(|p| p["purpose"] == "customer")?;
        DateTime::parse_from_rfc3339(customer["startTime"].as_str()?)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Polls the search until a row of the conversation carries the submission id.
    async fn index_delay(&self, submission_id: Option<&str>) -> Fact {
        if !self.settings.resolver.enabled {
            return Fact::informative(
                "search index delay",
                SEARCH,
                Outcome::Skipped("resolver.enabled = false: the service never searches".into()),
            );
        }
        let Some(submission_id) = submission_id else {
            return Fact::required(
                "search index delay",
                SEARCH,
                Outcome::Skipped(format!("the conversation has no {}", attr::SUBMISSION_ID)),
            );
        };
        let conversation_start = self.customer_start().await;
        let started = Instant::now();
        let mut scans = 0;
        let outcome = loop {
            let now = Utc::now();
            let from = now - chrono::Duration::hours(SEARCH_LOOKBACK_HOURS);
            match self
                .genesys
                .search_conversations(from, now + chrono::Duration::minutes(1))
                .await
            {
                Ok(scan) => {
                    scans += 1;
                    let shown = scan.rows.iter().any(|row| {
                        row.conversation_id == self.conversation_id
                            && row.participant_data.iter().any(|p| {
                                p.participant_attributes
                                    .get(attr::SUBMISSION_ID)
                                    .map(String::as_str)
                                    == Some(submission_id)
                            })
                    });
                    if shown {
                        let since_start = conversation_start.map_or(String::new(), |start| {
                            let secs = (Utc::now() - start).num_milliseconds() as f64 / 1000.0;
                            format!("{secs:.1} s after the conversation started, ")
                        });
                        break Outcome::Ok(format!(
                            "shown {since_start}{:.1} s after the first search ({scans} \
                             scan(s)); worker.deadline_secs = {} bounds a submission's wait",
                            started.elapsed().as_secs_f64(),
                            self.settings.worker.deadline_secs
                        ));
                    }
                }
                Err(error) => break Outcome::from_error(&error, needs::SEARCH),
            }
            if started.elapsed() + SEARCH_POLL > self.search_wait {
                break Outcome::Differs(format!(
                    "not shown after {} s ({scans} scan(s) of the last {SEARCH_LOOKBACK_HOURS} h): \
                     submissions without a conversation id would wait that long at least",
                    self.search_wait.as_secs()
                ));
            }
            sleep(SEARCH_POLL).await;
        };
        Fact::required("search index delay", SEARCH, outcome)
    }

    /// Two PATCHes of disjoint keys; then whether the first key survived the second.
    async fn patch_semantics(&self, participant_id: &str) -> Vec<Fact> {
        let run = Uuid::new_v4().to_string();
        for key in [FIRST_KEY, SECOND_KEY] {
            let attributes = BTreeMap::from([(key.to_owned(), run.clone())]);
            if let Err(error) = self
                .genesys
                .patch_participant_attributes(self.conversation_id, participant_id, &attributes)
                .await
            {
                return vec![
                    Fact::required(
                        "attribute PATCH",
                        PATCH,
                        Outcome::from_error(&error, needs::NONE),
                    ),
                    Fact::required(
                        "attribute PATCH merges",
                        PATCH,
                        Outcome::Skipped("the PATCH failed".into()),
                    ),
                ];
            }
        }
        let patched = Fact::required(
            "attribute PATCH",
            PATCH,
            Outcome::Ok(format!("{FIRST_KEY} then {SECOND_KEY} accepted")),
        );
        let started = Instant::now();
        let semantics = loop {
            match self.customer().await {
                Ok(customer) if customer.attributes.get(SECOND_KEY) == Some(&run) => {
                    break if customer.attributes.get(FIRST_KEY) == Some(&run) {
                        Outcome::Ok(format!("merge: {FIRST_KEY} kept after the second PATCH"))
                    } else {
                        Outcome::Differs(format!(
                            "replace: the second PATCH dropped {FIRST_KEY} (and every other key): \
                             the service assumes a merge"
                        ))
                    };
                }
                Ok(_) if started.elapsed() < READ_BACK_WAIT => sleep(READ_BACK_POLL).await,
                Ok(_) => {
                    break Outcome::Differs(format!(
                        "{SECOND_KEY} not on the conversation {} s after the PATCH",
                        READ_BACK_WAIT.as_secs()
                    ))
                }
                Err(outcome) => break outcome,
            }
        };
        vec![
            patched,
            Fact::required("attribute PATCH merges", PATCH, semantics),
        ]
    }
}
