//! The end of a scenario: wait until the system has drained (bounded), then count what became
//! of every submission and every side effect, write the report row, and say what is wrong.
//!
//! - *enriched*: accepted, its conversation carries its `prechatSubmissionId` and an
//!   `enrichedAt` (the web tier may set the first on its own; only the service writes the
//!   second), not dead;
//! - *dead-lettered*: accepted and in the dead-letter queue;
//! - *lost*: accepted (202) and neither;
//! - *duplicated effects*: External Contacts beyond one per email, transfers beyond one per
//!   conversation;
//! - *incomplete*: enriched, but without its contact link or transfer, or with the wrong one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use lapin::options::BasicGetOptions;
use prechat_enricher::queue::headers::HeaderExt;
use prechat_enricher::queue::Broker;
use prechat_sim::SimHandle;
use secrecy::SecretString;

use super::load::{Answer, Sent};
use super::mode::{chaos_dir, Mode};
use super::rabbit::RabbitNode;
use crate::common::wait_until_every;

/// The counts of one scenario, and what is wrong with them.
#[derive(Debug, Default)]
pub struct Tally {
    /// Row label.
    pub scenario: String,
    /// Requests sent.
    pub sent: usize,
    /// 202s.
    pub accepted: usize,
    /// 503s.
    pub unavailable: usize,
    /// Other statuses and requests without an answer.
    pub other: usize,
    /// Accepted and enriched.
    pub enriched: usize,
    /// Accepted and dead-lettered.
    pub dead: usize,
    /// Accepted and neither (ids).
    pub lost: Vec<String>,
    /// Contacts beyond one per email.
    pub duplicate_contacts: usize,
    /// Transfers beyond one per conversation.
    pub duplicate_transfers: usize,
    /// Enriched but with a missing or wrong link or transfer.
    pub incomplete: Vec<String>,
    /// Not accepted (503 or no answer), yet enriched or dead-lettered later.
    pub unaccepted_but_delivered: usize,
    /// Dead letters by `prechat-error-class` (every dead letter of the run).
    pub dead_classes: BTreeMap<String, usize>,
    /// Wall time of the scenario.
    pub elapsed: Duration,
    /// Facts for the notes (faults injected, recovery times, …).
    pub notes: Vec<String>,
    /// Further failures found by the scenario itself.
    pub problems: Vec<String>,
    /// Whether dead letters are expected in this scenario (explained in the notes).
    pub dead_letters_allowed: bool,
}

/// What the audit needs to see the broker and the sandbox.
pub struct Audit<'a> {
    /// The sandbox.
    pub sim: &'a SimHandle,
    /// The service's namespace.
    pub namespace: &'a str,
    /// Every AMQP URL (any live node will do).
    pub amqp_urls: Vec<String>,
    /// The scenario's folder (`submissions.csv` goes there).
    pub dir: &'a std::path::Path,
}

impl Audit<'_> {
    /// Waits (at most `timeout`) until every accepted submission is enriched, or no queue of
    /// the namespace but the dead-letter queue holds a message for a few seconds in a row.
    pub async fn wait_drained(&self, node: &RabbitNode, sent: &[Sent], timeout: Duration) -> bool {
        let accepted: HashMap<&str, &str> = sent
            .iter()
            .filter(|s| s.answer == Answer::Accepted)
            .map(|s| {
                (
                    s.planned.conversation_id.as_str(),
                    s.planned.submission_id.as_str(),
                )
            })
            .collect();
        let dead_queue = format!("{}.dead", self.namespace);
        let prefix = format!("{}.", self.namespace);
        let mut quiet_polls = 0;
        let mut last_report = Instant::now();
        let mut last_counts = (0, u64::MAX);
        let drained = wait_until_every(Duration::from_secs(1), timeout, async || {
            let enriched = self
                .sim
                .conversations()
                .iter()
                .filter(|c| {
                    accepted
                        .get(c.id.as_str())
                        .is_some_and(|sid| enriched_by(&c.attributes, sid))
                })
                .count();
            let in_queues: u64 = match node.depths(&prefix).await {
                Ok(depths) => depths
                    .iter()
                    .filter(|(name, _)| *name != dead_queue)
                    .map(|(_, n)| n)
                    .sum(),
                Err(error) => {
                    eprintln!("chaos: queue depths unavailable: {error}");
                    u64::MAX
                }
            };
            last_counts = (enriched, in_queues);
            if in_queues == 0 {
                quiet_polls += 1;
            } else {
                quiet_polls = 0;
            }
            if (enriched == accepted.len() && in_queues == 0) || quiet_polls >= 3 {
                return Some(());
            }
            if last_report.elapsed() >= Duration::from_secs(5) {
                eprintln!(
                    "chaos: draining: {enriched}/{} enriched, {in_queues} messages in queues",
                    accepted.len()
                );
                last_report = Instant::now();
            }
            None
        })
        .await
        .is_some();
        if !drained {
            let (enriched, in_queues) = last_counts;
            eprintln!(
                "chaos: not drained after {timeout:?}: {enriched}/{} enriched, {in_queues} messages in queues",
                accepted.len()
            );
        }
        drained
    }

    /// Every dead letter: message id → error class. Leaves them in the queue.
    pub async fn dead_letters(&self) -> anyhow::Result<HashMap<String, String>> {
        let urls: Vec<SecretString> = self
            .amqp_urls
            .iter()
            .map(|u| SecretString::from(u.clone()))
            .collect();
        let broker = Broker::new(&urls, "prechat-chaos audit");
        let channel = broker.channel().await?;
        let queue = format!("{}.dead", self.namespace);
        let mut out = HashMap::new();
        while let Some(message) = channel
            .basic_get(queue.as_str().into(), BasicGetOptions::default())
            .await?
        {
            let properties = &message.delivery.properties;
            let id = properties
                .message_id()
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let class = properties
                .headers()
                .as_ref()
                .and_then(|h| h.text("prechat-error-class"))
                .unwrap_or_else(|| "(broker: delivery limit or other)".into());
            out.insert(id, class);
        }
        // Closing the channel returns every fetched message to the queue.
        let _ = channel.close(200, "audited".into()).await;
        broker.close().await;
        Ok(out)
    }

    /// Counts everything (call after [`Audit::wait_drained`]).
    pub async fn tally(&self, scenario: &str, sent: &[Sent], elapsed: Duration) -> Tally {
        let mut tally = Tally {
            scenario: scenario.to_string(),
            sent: sent.len(),
            elapsed,
            ..Tally::default()
        };
        let dead = match self.dead_letters().await {
            Ok(dead) => dead,
            Err(error) => {
                tally
                    .problems
                    .push(format!("the dead-letter queue could not be read: {error}"));
                HashMap::new()
            }
        };
        for class in dead.values() {
            *tally.dead_classes.entry(class.clone()).or_default() += 1;
        }
        let conversations: HashMap<String, prechat_sim::ConversationView> = self
            .sim
            .conversations()
            .into_iter()
            .map(|c| (c.id.clone(), c))
            .collect();
        let contacts = contacts_by_email(&self.sim.contacts());
        let mut emails_seen = HashSet::new();
        let mut csv = String::from("at_s,took_s,answer,submission_id,conversation_id,enriched,dead_class,transfers,contacts\n");
        for s in sent {
            let planned = &s.planned;
            let view = conversations.get(&planned.conversation_id);
            let enriched = view.is_some_and(|v| enriched_by(&v.attributes, &planned.submission_id));
            let is_dead = dead.contains_key(&planned.submission_id);
            match s.answer {
                Answer::Accepted => {
                    tally.accepted += 1;
                    if is_dead {
                        tally.dead += 1;
                    } else if enriched {
                        tally.enriched += 1;
                    } else {
                        tally.lost.push(format!(
                            "submission {} (conversation {}, accepted at {:?}): patches={}",
                            planned.submission_id,
                            planned.conversation_id,
                            s.at,
                            view.map_or(0, |v| v.attribute_patches)
                        ));
                    }
                }
                Answer::Unavailable => tally.unavailable += 1,
                Answer::Other(_) | Answer::Unanswered(_) => tally.other += 1,
            }
            let _ = writeln!(
                csv,
                "{:.3},{:.3},{:?},{},{},{},{},{},{}",
                s.at.as_secs_f64(),
                s.took.as_secs_f64(),
                s.answer,
                planned.submission_id,
                planned.conversation_id,
                enriched,
                dead.get(&planned.submission_id).map_or("", String::as_str),
                view.map_or(0, |v| v.transfers),
                contacts
                    .get(&planned.email.to_lowercase())
                    .map_or(0, Vec::len),
            );
            if s.answer != Answer::Accepted && (enriched || is_dead) {
                tally.unaccepted_but_delivered += 1;
            }
            let Some(view) = view else { continue };
            if view.transfers > 1 {
                tally.duplicate_transfers += (view.transfers - 1) as usize;
            }
            let email = planned.email.to_lowercase();
            if let Some(ids) = contacts.get(&email) {
                if ids.len() > 1 && emails_seen.insert(email.clone()) {
                    tally.duplicate_contacts += ids.len() - 1;
                }
            }
            if enriched && !is_dead {
                let mut missing = Vec::new();
                if view.transfers == 0 {
                    missing.push("no transfer".to_string());
                } else if view.queue_id.as_deref()
                    != view.attributes.get("targetQueueId").map(String::as_str)
                {
                    missing.push(format!(
                        "in queue {:?}, attributes say {:?}",
                        view.queue_id,
                        view.attributes.get("targetQueueId")
                    ));
                }
                match &view.linked_contact_id {
                    None => missing.push("no contact linked".into()),
                    Some(id) if !contacts.get(&email).is_some_and(|ids| ids.contains(id)) => {
                        missing.push(format!("linked to contact {id}, not one of {email}'s"))
                    }
                    Some(_) => {}
                }
                if !missing.is_empty() {
                    tally.incomplete.push(format!(
                        "conversation {}: {}",
                        planned.conversation_id,
                        missing.join(", ")
                    ));
                }
            }
        }
        let _ = std::fs::write(self.dir.join("submissions.csv"), csv);
        let stats = self.sim.stats();
        let genesys_5xx: u64 = stats
            .statuses
            .iter()
            .filter(|(k, _)| k.ends_with(" 503") || k.ends_with(" 500"))
            .map(|(_, n)| n)
            .sum();
        tally.notes.push(format!(
            "sandbox: {} Genesys calls ({} answered 5xx, {} answered 401), {} tokens issued, {} CRM calls, {} attribute PATCHes for {} conversations",
            stats.total_genesys_calls,
            genesys_5xx,
            stats.statuses.iter().filter(|(k, _)| k.ends_with(" 401")).map(|(_, n)| n).sum::<u64>(),
            stats.tokens_issued,
            stats.crm_calls,
            stats.calls_of("patch_attributes"),
            sent.len(),
        ));
        tally
    }
}

/// Contact ids by every email they hold (fields and identifiers), lower-cased.
fn contacts_by_email(contacts: &[serde_json::Value]) -> HashMap<String, Vec<String>> {
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for contact in contacts {
        let id = contact["id"].as_str().unwrap_or_default().to_string();
        let mut emails = HashSet::new();
        for field in ["workEmail", "personalEmail", "otherEmail"] {
            if let Some(email) = contact[field].as_str() {
                emails.insert(email.to_lowercase());
            }
        }
        for identifier in contact["identifiers"].as_array().into_iter().flatten() {
            if identifier["type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("email"))
            {
                if let Some(email) = identifier["value"].as_str() {
                    emails.insert(email.to_lowercase());
                }
            }
        }
        for email in emails {
            out.entry(email).or_default().push(id.clone());
        }
    }
    out
}

impl Tally {
    /// Everything that makes the scenario fail.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.lost.is_empty() {
            out.push(format!(
                "{} accepted submissions lost, e.g. {:?}",
                self.lost.len(),
                &self.lost[..self.lost.len().min(5)]
            ));
        }
        if self.duplicate_contacts > 0 {
            out.push(format!(
                "{} duplicated External Contacts",
                self.duplicate_contacts
            ));
        }
        if self.duplicate_transfers > 0 {
            out.push(format!("{} duplicated transfers", self.duplicate_transfers));
        }
        if !self.incomplete.is_empty() {
            out.push(format!(
                "{} enriched conversations with missing or wrong effects, e.g. {:?}",
                self.incomplete.len(),
                &self.incomplete[..self.incomplete.len().min(5)]
            ));
        }
        if self.dead > 0 && !self.dead_letters_allowed {
            out.push(format!(
                "{} accepted submissions dead-lettered ({:?}) where the settings should have prevented it",
                self.dead, self.dead_classes
            ));
        }
        out.extend(self.problems.iter().cloned());
        out
    }

    /// Appends the row and the notes to the report, prints them, and fails the test on
    /// any failure.
    pub fn report_and_assert(&self, mode: Mode) {
        let failures = self.failures();
        let result = if failures.is_empty() { "pass" } else { "FAIL" };
        let row = format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | **{}** | {} | {} | {} | {} | {:.0} s | {} |",
            self.scenario,
            mode.as_str(),
            self.sent,
            self.accepted,
            self.unavailable,
            self.other,
            self.enriched,
            self.dead,
            self.lost.len(),
            self.duplicate_contacts,
            self.duplicate_transfers,
            self.incomplete.len(),
            self.unaccepted_but_delivered,
            self.elapsed.as_secs_f64(),
            result
        );
        let mut notes = format!("- **{}** ({result}):", self.scenario);
        for note in &self.notes {
            let _ = write!(notes, "\n  - {note}");
        }
        if !self.dead_classes.is_empty() {
            let _ = write!(
                notes,
                "\n  - dead letters by class: {:?}",
                self.dead_classes
            );
        }
        for failure in &failures {
            let _ = write!(notes, "\n  - FAILURE: {failure}");
        }
        notes.push('\n');
        let dir = chaos_dir();
        append(&dir.join("rows.md"), &format!("{row}\n"));
        append(&dir.join("notes.md"), &notes);
        println!("{row}\n{notes}");
        assert!(
            failures.is_empty(),
            "{}: {}",
            self.scenario,
            failures.join("; ")
        );
    }
}

fn append(path: &std::path::Path, text: &str) {
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = file.write_all(text.as_bytes());
    }
}

/// Whether a conversation's attributes are the service's work for `submission_id`.
pub fn enriched_by(
    attributes: &std::collections::BTreeMap<String, String>,
    submission_id: &str,
) -> bool {
    attributes.get("prechatSubmissionId").map(String::as_str) == Some(submission_id)
        && attributes.contains_key("enrichedAt")
}
