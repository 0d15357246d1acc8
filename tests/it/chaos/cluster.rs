//! A 3-node RabbitMQ cluster (formed with `join_cluster` before the service declares its
//! quorum queues, so each has a member on every node) losing the leader of the work queue in
//! the middle of a run; in long mode the node comes back, and a leader is crashed too.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::Confirmation;
use prechat_enricher::queue::headers::json_properties;
use prechat_enricher::queue::Broker;
use secrecy::SecretString;

use super::load::{self, Answer, Planned, Progress, Sent};
use super::rabbit::Cluster;
use super::scenario::{first_accept_after, last_unavailable_between, next_enrichment, Scenario};
use crate::common::wait_until;

/// After losing a node, the ingest must accept again within this long.
const RECOVERY_LIMIT_SECS: f64 = 15.0;

/// Publishes one submission to the ingest exchange on a fresh connection and channel to
/// `url`, with confirms: what the broker said.
async fn publish_on_a_fresh_channel(url: &str, exchange: &str, planned: &Planned) -> String {
    let broker = Broker::new(
        &[SecretString::from(url.to_string())],
        "prechat-chaos probe",
    );
    let outcome = async {
        let channel = broker.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let confirm = channel
            .basic_publish(
                exchange.into(),
                "submission".into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                load::body(planned).to_string().as_bytes(),
                json_properties(&planned.submission_id, FieldTable::default()),
            )
            .await?
            .await?;
        anyhow::Ok(match confirm {
            Confirmation::Ack(None) => "confirmed".to_string(),
            Confirmation::Ack(Some(_)) => "returned as unroutable".to_string(),
            Confirmation::Nack(_) => "nacked".to_string(),
            Confirmation::NotRequested => "not in confirm mode".to_string(),
        })
    }
    .await;
    broker.close().await;
    outcome.unwrap_or_else(|e| format!("failed: {e}"))
}

/// The leader of `queue` as a running node reports it.
async fn leader_of(cluster: &Cluster, queue: &str) -> Option<String> {
    let prefix = queue.to_string();
    let queues = cluster
        .any_running()
        .queues(&prefix, &["name", "leader"])
        .await
        .ok()?;
    queues
        .iter()
        .find(|q| q["name"].as_str() == Some(queue))
        .and_then(|q| q["leader"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos: run by scripts/chaos"]
async fn losing_the_queue_leader_of_a_three_node_cluster_loses_nothing() {
    let mut s = Scenario::begin("cluster-leader", "3-node cluster, queue leader stopped", 10).await;
    let mut cluster = Cluster::start(&s.rabbit_root(), "c", 5701)
        .await
        .expect("a 3-node cluster forms");
    // The cluster is formed before the service declares anything, so quorum queues get a
    // member on every node.
    let urls = cluster.urls();
    let env = s.service_env(&urls, &[]);
    let mut ingest = s.ingest(&env);
    ingest.start().expect("ingest starts");
    s.wait_ingest_ready().await;
    let mut worker = s.worker(&env);
    worker.start().expect("worker starts");
    let prefix = format!("{}.", s.namespace);
    let queues = cluster.nodes[0]
        .queues(&prefix, &["name", "type", "leader", "members"])
        .await
        .expect("list_queues");
    let mut layout = Vec::new();
    for q in &queues {
        let name = q["name"].as_str().unwrap_or_default();
        let members = q["members"].as_array().map_or(0, Vec::len);
        if q["type"].as_str() == Some("quorum") && members != 3 {
            s.problems.push(format!(
                "quorum queue {name} has {members} members, not 3: {q}"
            ));
        }
        layout.push(format!("{name}: {members} members"));
    }
    if queues.is_empty() {
        s.problems
            .push("no queue of the namespace on the cluster".into());
    }
    s.notes
        .push(format!("quorum queues: {}", layout.join(", ")));

    let n = s.mode.pick(600, 2000);
    let rate = 10.0;
    let submissions = format!("{}.submissions", s.namespace);
    // (time, action): stop or crash the current leader, or bring a stopped node back.
    #[derive(Debug, Clone, Copy)]
    enum Act {
        StopLeader,
        CrashLeader,
        RestartStopped,
    }
    let acts: Vec<(f64, Act)> = s.mode.pick(
        vec![(12.0, Act::StopLeader)],
        vec![
            (20.0, Act::StopLeader),
            (55.0, Act::RestartStopped),
            (80.0, Act::CrashLeader),
            (115.0, Act::RestartStopped),
        ],
    );
    let progress = Arc::new(Progress::default());
    let sending = s.send(s.plan(n), rate, progress.clone());
    let mut stopped: Vec<usize> = Vec::new();
    let mut losses = Vec::new();
    let mut probes = Vec::new();
    for (at, act) in acts {
        let wait = at - s.t();
        if wait > 0.0 {
            s.pause(Duration::from_secs_f64(wait), &progress, "").await;
        }
        match act {
            Act::StopLeader | Act::CrashLeader => {
                let leader = leader_of(&cluster, &submissions).await.expect("a leader");
                let index = cluster
                    .index_of(&leader)
                    .expect("the leader is one of ours");
                let t = s.t();
                if matches!(act, Act::StopLeader) {
                    cluster.nodes[index].stop().await.expect("leader stops");
                } else {
                    cluster.nodes[index].crash().await.expect("leader crashes");
                }
                stopped.push(index);
                s.progress(&progress, &format!("{act:?}: {leader}"));
                let new_leader = wait_until(Duration::from_secs(30), || async {
                    leader_of(&cluster, &submissions)
                        .await
                        .filter(|l| *l != leader)
                })
                .await;
                // Diagnosis, alongside: when the ingest has answered nothing but 503 for
                // 10 s, does a fresh channel on a surviving node get its publish confirmed?
                let diagnose = async {
                    let before = (
                        progress.accepted.load(Ordering::Relaxed),
                        progress.unavailable.load(Ordering::Relaxed),
                    );
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    let stuck = progress.accepted.load(Ordering::Relaxed) == before.0
                        && progress.unavailable.load(Ordering::Relaxed) > before.1;
                    if !stuck {
                        return None;
                    }
                    let probe_node = cluster.any_running();
                    let planned = s.plan(1).remove(0);
                    let at = s.started.elapsed();
                    let outcome = publish_on_a_fresh_channel(
                        &probe_node.url(),
                        &format!("{}.ingest", s.namespace),
                        &planned,
                    )
                    .await;
                    Some((probe_node.name.clone(), planned, at, outcome))
                };
                let (resumed, diagnosis) =
                    tokio::join!(next_enrichment(&s, Duration::from_secs(60)), diagnose);
                if let Some((node, planned, at, outcome)) = diagnosis {
                    s.notes.push(format!(
                        "t={:.0}s the ingest had answered only 503 for 10 s; one submission published on a fresh channel to {node}: {outcome}",
                        at.as_secs_f64()
                    ));
                    if outcome == "confirmed" {
                        probes.push(Sent {
                            planned,
                            answer: Answer::Accepted,
                            at,
                            took: Duration::ZERO,
                        });
                    }
                }
                s.notes.push(format!(
                    "t={t:.0}s {act:?} {leader}: new leader {}, next enrichment {} later",
                    new_leader.as_deref().unwrap_or("none within 30 s"),
                    resumed.map_or("never (60 s)".into(), |x| format!("{x:.1} s"))
                ));
                if new_leader.is_none() {
                    s.problems
                        .push(format!("no new leader for {submissions} within 30 s"));
                }
                if resumed.is_none() {
                    s.problems.push(format!(
                        "no enrichment within 60 s after {leader} went down at t={t:.0}s"
                    ));
                }
                losses.push(t);
            }
            Act::RestartStopped => {
                if let Some(index) = stopped.pop() {
                    cluster.nodes[index].start().await.expect("node rejoins");
                    s.progress(&progress, &format!("{} back", cluster.nodes[index].name));
                }
            }
        }
    }
    // The load goes on 20 s after the last fault, then stops.
    s.pause(Duration::from_secs(20), &progress, "").await;
    progress
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = sending.await.expect("the load");
    let end = sent.iter().map(|x| x.at.as_secs_f64()).fold(0.0, f64::max);
    for (i, &t) in losses.iter().enumerate() {
        // A 503 belongs to the latest loss before it: the window ends at the next one.
        let window_end = losses.get(i + 1).copied().unwrap_or(end + 1.0);
        let refused = sent
            .iter()
            .filter(|x| {
                let at = x.at.as_secs_f64();
                x.answer == Answer::Unavailable && at >= t && at < window_end
            })
            .count();
        match first_accept_after(&sent, t) {
            Some(secs) => s.notes.push(format!(
                "publishers carried on: first 202 {secs:.1} s after the leader went down at t={t:.0}s; {refused} × 503 until the next fault"
            )),
            None => s.problems.push(format!("no 202 after the leader went down at t={t:.0}s")),
        }
        if let Some(last) = last_unavailable_between(&sent, t + RECOVERY_LIMIT_SECS, window_end) {
            s.problems.push(format!(
                "the ingest still answered 503 {:.0} s after the leader went down at t={t:.0}s ({refused} × 503 since, last at t={last:.0}s) while two nodes and a new leader were up",
                last - t
            ));
        }
    }
    sent.append(&mut probes);
    s.notes.push(format!(
        "{} submissions at {rate}/s, until 20 s after the last fault; the service is given all three AMQP URLs",
        sent.len()
    ));
    let node = cluster.any_running();
    let tally = s
        .finish(node, urls, sent, &mut [&mut ingest, &mut worker])
        .await;
    drop(cluster);
    tally.report_and_assert(s.mode);
}
