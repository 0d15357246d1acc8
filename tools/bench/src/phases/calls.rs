//! Genesys calls per submission in each mode, from the sandbox's counters (deltas taken after
//! the `worker` process is ready, so start-up lookups such as queue names do not count):
//!
//! - `conversation id`: the body carries it (expected: GET + PATCH);
//! - `redelivery`: the same submissions published again (expected: the GET only);
//! - `resolver`: no `conversationId`; seeded conversations carry `prechatSubmissionId`, and
//!   the resolver's scans are shared by every waiting submission;
//! - `external contacts`: `genesys.external_contacts.enabled` with `require_verified` off, consent given, each
//!   conversation linked to an ephemeral contact first (as Genesys' identity resolution
//!   does), then the same submissions again;
//! - `transfer`: `routing.mode = transfer`, the CRM knows every guest as `gold`, the `gold`
//!   queue configured by name, then the same submissions again.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::bail;
use prechat_sim::{Customer, SeedConversation, SimHandle, Stats};
use serde::Serialize;

use crate::amqp::{self, submission_body, EventTap};
use crate::context::{fast_sim, Bench};
use crate::say;
use crate::service::Service;

/// One mode's figures.
#[derive(Debug, Serialize)]
pub struct Mode {
    /// The mode.
    pub name: String,
    /// Submissions.
    pub submissions: usize,
    /// `/api/v2` calls per submission.
    pub genesys_calls_per_submission: f64,
    /// Calls per submission by route (`get_conversation`, …).
    pub by_route: BTreeMap<String, f64>,
    /// CRM calls per submission.
    pub crm_calls_per_submission: f64,
    /// What the design expects, as text.
    pub expected: String,
}

/// The calls figures.
#[derive(Debug, Serialize)]
pub struct CallsResult {
    /// The modes.
    pub modes: Vec<Mode>,
}

fn delta(name: &str, expected: &str, n: usize, before: &Stats, after: &Stats) -> Mode {
    let per = |x: u64| x as f64 / n as f64;
    let by_route = after
        .calls
        .iter()
        .filter(|(route, _)| !matches!(route.as_str(), "token" | "crm_customers"))
        .map(|(route, calls)| (route.clone(), per(calls - before.calls_of(route))))
        .filter(|(_, per)| *per > 0.0)
        .collect();
    Mode {
        name: name.to_string(),
        submissions: n,
        genesys_calls_per_submission: per(after.total_genesys_calls - before.total_genesys_calls),
        by_route,
        crm_calls_per_submission: per(after.crm_calls - before.crm_calls),
        expected: expected.to_string(),
    }
}

/// Runs the phase.
pub async fn run(bench: &Bench) -> anyhow::Result<CallsResult> {
    let n = bench.pick(20, 100);
    say(&format!("calls: {n} submissions per mode"));
    let mut modes = Vec::new();
    let (first, redelivery) = with_conversation_id(bench, n).await?;
    modes.push(first);
    modes.push(redelivery);
    modes.push(resolver(bench, n).await?);
    let (first, redelivery) = external_contacts(bench, n).await?;
    modes.push(first);
    modes.push(redelivery);
    let (first, redelivery) = transfer(bench, n).await?;
    modes.push(first);
    modes.push(redelivery);
    for mode in &modes {
        say(&format!(
            "calls {}: {:.2} per submission {:?}",
            mode.name, mode.genesys_calls_per_submission, mode.by_route
        ));
    }
    Ok(CallsResult { modes })
}

/// A worker on its own sandbox and namespace, with an events tap.
struct Rig {
    sim: SimHandle,
    service: Service,
    broker: prechat_enricher::queue::Broker,
    topology: prechat_enricher::queue::Topology,
    tap: EventTap,
    prefix: String,
}

impl Rig {
    async fn start(
        bench: &Bench,
        label: &str,
        sim: SimHandle,
        overrides: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let namespace = bench.namespace(&format!("calls-{label}"));
        let env = bench.service_env(&sim, &namespace, overrides);
        let topology = bench.topology(&env)?;
        let broker = bench.broker("prechat-bench calls");
        topology.declare(&broker).await?;
        let tap = EventTap::start(&broker, &topology, "submission.enriched").await?;
        let service = Service::start(bench, "worker", env, &format!("calls-{label}")).await?;
        Ok(Self {
            sim,
            service,
            broker,
            topology,
            tap,
            prefix: format!("bench-{}-{label}", bench.run_id),
        })
    }

    fn id(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// Publishes `bodies` (confirmed one by one) and waits until each is enriched.
    async fn publish_and_wait(&self, bodies: &[(Vec<u8>, String)]) -> anyhow::Result<()> {
        self.tap.clear();
        let channel = amqp::confirm_channel(&self.broker).await?;
        for (body, id) in bodies {
            amqp::publish_one(&channel, &self.topology.ingest_exchange(), body, id).await?;
        }
        let _ = channel.close(200, "published".into()).await;
        if !self
            .tap
            .wait_for(bodies.len(), Duration::from_secs(60))
            .await
        {
            bail!(
                "{} of {} enriched; see {}",
                self.tap.count(),
                bodies.len(),
                self.service.log.display()
            );
        }
        // Let the last acks and events settle before reading the counters.
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    }

    async fn finish(self) -> anyhow::Result<()> {
        self.service.stop().await?;
        amqp::delete_namespace(&self.broker, &self.topology).await;
        drop(self.tap);
        self.broker.close().await;
        self.sim.shutdown();
        Ok(())
    }
}

async fn with_conversation_id(bench: &Bench, n: usize) -> anyhow::Result<(Mode, Mode)> {
    let sim = prechat_sim::spawn(fast_sim()).await?;
    let rig = Rig::start(bench, "cid", sim.clone(), &[]).await?;
    let bodies: Vec<_> = (0..n)
        .map(|i| {
            let conversation = sim.seed_conversation(SeedConversation::default()).id;
            (
                submission_body(i, &rig.id(i), Some(&conversation)),
                rig.id(i),
            )
        })
        .collect();
    let before = sim.stats();
    rig.publish_and_wait(&bodies).await?;
    let middle = sim.stats();
    rig.publish_and_wait(&bodies).await?;
    let after = sim.stats();
    rig.finish().await?;
    Ok((
        delta("conversation id", "2 (GET + PATCH)", n, &before, &middle),
        delta(
            "redelivery (same submission again)",
            "1 (GET; PATCH skipped)",
            n,
            &middle,
            &after,
        ),
    ))
}

async fn resolver(bench: &Bench, n: usize) -> anyhow::Result<Mode> {
    let sim = prechat_sim::spawn(fast_sim()).await?;
    let rig = Rig::start(bench, "resolver", sim.clone(), &[]).await?;
    let bodies: Vec<_> = (0..n)
        .map(|i| {
            sim.seed_conversation(SeedConversation {
                customer_attributes: [("prechatSubmissionId".to_string(), rig.id(i))].into(),
                ..SeedConversation::default()
            });
            (submission_body(i, &rig.id(i), None), rig.id(i))
        })
        .collect();
    let before = sim.stats();
    rig.publish_and_wait(&bodies).await?;
    let after = sim.stats();
    rig.finish().await?;
    Ok(delta(
        "via the resolver (no conversationId)",
        "2 + scans / submissions (one scan serves every waiting submission)",
        n,
        &before,
        &after,
    ))
}

async fn external_contacts(bench: &Bench, n: usize) -> anyhow::Result<(Mode, Mode)> {
    let sim = prechat_sim::spawn(fast_sim()).await?;
    let rig = Rig::start(
        bench,
        "contacts",
        sim.clone(),
        &[
            ("PRECHAT__GENESYS__EXTERNAL_CONTACTS__ENABLED", "true"),
            // The bench's guests are not marked verified.
            (
                "PRECHAT__GENESYS__EXTERNAL_CONTACTS__REQUIRE_VERIFIED",
                "false",
            ),
        ],
    )
    .await?;
    let bodies: Vec<_> = (0..n)
        .map(|i| {
            let conversation = sim
                .seed_conversation(SeedConversation {
                    ephemeral_contact: true,
                    ..SeedConversation::default()
                })
                .id;
            (
                submission_body(i, &rig.id(i), Some(&conversation)),
                rig.id(i),
            )
        })
        .collect();
    let before = sim.stats();
    rig.publish_and_wait(&bodies).await?;
    let middle = sim.stats();
    rig.publish_and_wait(&bodies).await?;
    let after = sim.stats();
    rig.finish().await?;
    Ok((
        delta(
            "with External Contacts (consent, new guest, ephemeral link)",
            "4 (GET conversation, enrich, link, PATCH)",
            n,
            &before,
            &middle,
        ),
        delta(
            "with External Contacts, redelivery",
            "1 (GET; nothing written)",
            n,
            &middle,
            &after,
        ),
    ))
}

async fn transfer(bench: &Bench, n: usize) -> anyhow::Result<(Mode, Mode)> {
    let sim = prechat_sim::spawn(fast_sim()).await?;
    sim.seed_queue("Gold Support");
    sim.seed_queue("Standard Support");
    for i in 0..n {
        sim.seed_customer(Customer {
            id: format!("crm-{i}"),
            first_name: "Guest".into(),
            last_name: format!("Number{i}"),
            email: format!("guest{i}@example.com"),
            loyalty_tier: "gold".into(),
            account_status: "active".into(),
            ..Customer::default()
        });
    }
    let rig = Rig::start(
        bench,
        "transfer",
        sim.clone(),
        &[
            ("PRECHAT__ROUTING__MODE", "transfer"),
            ("PRECHAT__ROUTING__QUEUES__GOLD", "Gold Support"),
            ("PRECHAT__ROUTING__QUEUES__STANDARD", "Standard Support"),
        ],
    )
    .await?;
    let bodies: Vec<_> = (0..n)
        .map(|i| {
            let conversation = sim.seed_conversation(SeedConversation::default()).id;
            (
                submission_body(i, &rig.id(i), Some(&conversation)),
                rig.id(i),
            )
        })
        .collect();
    let before = sim.stats();
    rig.publish_and_wait(&bodies).await?;
    let middle = sim.stats();
    rig.publish_and_wait(&bodies).await?;
    let after = sim.stats();
    let transfers: u32 = sim.conversations().iter().map(|c| c.transfers).sum();
    rig.finish().await?;
    anyhow::ensure!(
        transfers as usize == n,
        "transfer mode: {transfers} transfers for {n} conversations (one each expected)"
    );
    Ok((
        delta(
            "with transfer (routing.mode = transfer)",
            "3 (GET, PATCH, replace/queue)",
            n,
            &before,
            &middle,
        ),
        delta(
            "with transfer, redelivery",
            "1 (GET; already in the queue)",
            n,
            &middle,
            &after,
        ),
    ))
}
