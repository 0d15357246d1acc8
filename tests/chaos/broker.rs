//! Scenarios where the processes or the broker fail: the worker killed with SIGKILL every few
//! seconds, RabbitMQ restarted (cleanly and by a crash), a memory or disk alarm blocking
//! publishers, and a 3-node cluster losing its quorum queues' leader.

use std::sync::Arc;
use std::time::Duration;

use crate::common::wait_until;
use crate::load::{Answer, Progress, Sent};
use crate::rabbit::{Cluster, RabbitNode};
use crate::scenario::Scenario;

/// How long the ingest may take to answer 503 while publishers are blocked: its publish
/// timeout (2 s in these scenarios) plus slack for a loaded 2-core machine.
const BLOCKED_ANSWER_LIMIT: Duration = Duration::from_millis(3_500);

/// The first 202 whose request started at or after `t` seconds, as seconds after `t`.
fn first_accept_after(sent: &[Sent], t: f64) -> Option<f64> {
    sent.iter()
        .filter(|s| s.answer == Answer::Accepted && s.at.as_secs_f64() >= t)
        .map(|s| s.at.as_secs_f64() + s.took.as_secs_f64() - t)
        .reduce(f64::min)
}

/// Waits (at most `limit`) until one more conversation is enriched than now; seconds taken.
async fn next_enrichment(s: &Scenario, limit: Duration) -> Option<f64> {
    let before = s.enriched_now();
    let start = std::time::Instant::now();
    wait_until(limit, || async {
        (s.enriched_now() > before).then_some(())
    })
    .await
    .map(|_| start.elapsed().as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos: run by scripts/chaos"]
async fn a_worker_killed_every_few_seconds_loses_nothing_and_repeats_no_effect() {
    // Sandbox latency such that ~8 messages are in the worker's hands when it is killed.
    let latency_ms = crate::mode::Mode::from_env().pick(50, 30);
    let mut s = Scenario::begin("worker-sigkill", "worker SIGKILL every 2-3 s", latency_ms).await;
    let (node, mut ingest, mut worker) = s.single_node("kill", 5711, &[]).await;
    let n = s.mode.pick(400, 2000);
    let rate = s.mode.pick(20.0, 40.0);
    let max_kills = s.mode.pick(15, 40);
    let progress = Arc::new(Progress::default());
    let sending = s.send(s.plan(n), rate, progress.clone());
    let mut kills = 0;
    while kills < max_kills {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(2_000..=3_000))).await;
        let accepted = progress.accepted.load(std::sync::atomic::Ordering::Relaxed);
        if sending.is_finished() && s.enriched_now() >= accepted {
            break;
        }
        worker.kill().await.expect("SIGKILL");
        kills += 1;
        s.progress(&progress, &format!("SIGKILL #{kills} to the worker"));
        tokio::time::sleep(Duration::from_millis(fastrand::u64(100..=500))).await;
        worker.start().expect("worker restarts");
    }
    let sent = sending.await.expect("the load");
    s.notes.push(format!(
        "{n} submissions at {rate}/s{}; `ingest` and `worker` as separate processes; the worker got {kills} SIGKILLs 2-3 s apart, each restarted 0.1-0.5 s later",
        s.mode.pick(" (quick mode: 400 instead of 2,000)", "")
    ));
    let urls = vec![node.url()];
    let tally = s
        .finish(&node, urls, sent, &mut [&mut ingest, &mut worker])
        .await;
    tally.report_and_assert(s.mode);
}

/// How a broker restart is done.
#[derive(Debug, Clone, Copy)]
enum Stop {
    /// `rabbitmqctl shutdown`.
    Graceful,
    /// SIGKILL to the Erlang VM.
    Crash,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos: run by scripts/chaos"]
async fn rabbitmq_restarts_during_ingest_and_consumption_lose_no_accepted_submission() {
    let mut s = Scenario::begin("rabbitmq-restart", "RabbitMQ restart (clean and crash)", 10).await;
    let (mut node, mut ingest, mut worker) = s.single_node("restart", 5712, &[]).await;
    let n = s.mode.pick(800, 2500);
    let rate = 10.0;
    let restarts: Vec<(f64, Stop)> = s.mode.pick(
        vec![(8.0, Stop::Graceful), (24.0, Stop::Crash)],
        vec![
            (10.0, Stop::Graceful),
            (35.0, Stop::Crash),
            (60.0, Stop::Graceful),
            (85.0, Stop::Crash),
            (110.0, Stop::Graceful),
        ],
    );
    let down_for = Duration::from_secs(3);
    let progress = Arc::new(Progress::default());
    let sending = s.send(s.plan(n), rate, progress.clone());
    let mut back_at = Vec::new();
    for (at, how) in restarts {
        let wait = at - s.t();
        if wait > 0.0 {
            s.pause(Duration::from_secs_f64(wait), &progress, "").await;
        }
        let stopped_at = s.t();
        match how {
            Stop::Graceful => node.stop().await.expect("rabbitmqctl shutdown"),
            Stop::Crash => node.crash().await.expect("SIGKILL to the broker"),
        }
        s.progress(&progress, &format!("broker stopped ({how:?})"));
        tokio::time::sleep(down_for).await;
        node.start().await.expect("the broker starts again");
        let up = s.t();
        s.progress(&progress, "broker back");
        let resumed = next_enrichment(&s, Duration::from_secs(60)).await;
        let resumed_text = match resumed {
            Some(secs) => format!("{secs:.1} s"),
            None => {
                s.problems.push(format!(
                    "no submission was enriched within 60 s after the broker came back at t={up:.0}s"
                ));
                "never (60 s)".into()
            }
        };
        s.notes.push(format!(
            "{how:?} restart at t={stopped_at:.0}s: broker back after {:.1} s; next enrichment {resumed_text} later",
            up - stopped_at
        ));
        back_at.push(up);
    }
    // The load goes on 10 s after the last fault, then stops.
    s.pause(Duration::from_secs(10), &progress, "").await;
    progress
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sending.await.expect("the load");
    for up in &back_at {
        match first_accept_after(&sent, *up) {
            Some(secs) => s.notes.push(format!(
                "ingest answered 202 again {secs:.1} s after the broker came back at t={up:.0}s"
            )),
            None => s.problems.push(format!(
                "the ingest never answered 202 after the broker came back at t={up:.0}s"
            )),
        }
    }
    let delays: Vec<String> = worker
        .log_lines("worker lost RabbitMQ")
        .iter()
        .filter_map(|l| l.split("retry_in_ms=").nth(1))
        .map(|d| d.trim().to_string())
        .collect();
    s.notes.push(format!(
        "the worker's reconnect delays, in ms, in order: {}",
        delays.join(", ")
    ));
    s.notes.push(format!(
        "{} submissions at {rate}/s, until 10 s after the last restart; every 202 must end enriched, 503s while the broker is down are expected",
        sent.len()
    ));
    let urls = vec![node.url()];
    let tally = s
        .finish(&node, urls, sent, &mut [&mut ingest, &mut worker])
        .await;
    tally.report_and_assert(s.mode);
}

/// Which resource alarm to raise.
#[derive(Debug, Clone, Copy)]
enum Alarm {
    /// `set_vm_memory_high_watermark 0.000001`.
    Memory,
    /// `set_disk_free_limit` above the free space.
    Disk,
}

impl Alarm {
    async fn raise(self, node: &RabbitNode) -> anyhow::Result<String> {
        match self {
            Alarm::Memory => {
                node.ctl(&["set_vm_memory_high_watermark", "0.000001"])
                    .await
            }
            Alarm::Disk => node.ctl(&["set_disk_free_limit", "100000GB"]).await,
        }
    }

    async fn clear(self, node: &RabbitNode) -> anyhow::Result<String> {
        match self {
            Alarm::Memory => node.ctl(&["set_vm_memory_high_watermark", "0.4"]).await,
            Alarm::Disk => node.ctl(&["set_disk_free_limit", "50MB"]).await,
        }
    }

    fn key(self) -> &'static str {
        match self {
            Alarm::Memory => "memory",
            Alarm::Disk => "disk",
        }
    }
}

/// Waits (15 s at most) until the node's alarm list does (or does not) name `alarm`.
async fn alarm_in_effect(node: &RabbitNode, alarm: Alarm, wanted: bool) -> bool {
    wait_until(Duration::from_secs(15), || async {
        let text = node.alarms().await.ok()?;
        let on = text.to_lowercase().contains(alarm.key());
        (on == wanted).then_some(())
    })
    .await
    .is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos: run by scripts/chaos"]
async fn a_memory_or_disk_alarm_makes_the_ingest_answer_503_in_time_and_it_recovers() {
    let mut s = Scenario::begin("rabbitmq-alarm", "RabbitMQ memory/disk alarm", 10).await;
    let (node, mut ingest, mut worker) = s.single_node("alarm", 5713, &[]).await;
    let n = s.mode.pick(600, 1500);
    let rate = 10.0;
    let alarms: Vec<(f64, Alarm, u64)> = s.mode.pick(
        vec![(5.0, Alarm::Memory, 10), (20.0, Alarm::Disk, 6)],
        vec![
            (5.0, Alarm::Memory, 15),
            (30.0, Alarm::Disk, 15),
            (55.0, Alarm::Memory, 30),
        ],
    );
    let progress = Arc::new(Progress::default());
    let sending = s.send(s.plan(n), rate, progress.clone());
    let mut windows = Vec::new();
    for (at, alarm, secs) in alarms {
        let wait = at - s.t();
        if wait > 0.0 {
            s.pause(Duration::from_secs_f64(wait), &progress, "").await;
        }
        alarm.raise(&node).await.expect("alarm raised");
        if !alarm_in_effect(&node, alarm, true).await {
            s.problems.push(format!(
                "the {alarm:?} alarm never showed in `rabbitmq-diagnostics alarms`"
            ));
        }
        let on = s.t();
        s.progress(&progress, &format!("{alarm:?} alarm on"));
        s.pause(
            Duration::from_secs(secs),
            &progress,
            &format!("{alarm:?} alarm on"),
        )
        .await;
        // The window ends when the clear is asked for (the alarm check takes a while).
        let off = s.t();
        alarm.clear(&node).await.expect("alarm cleared");
        if !alarm_in_effect(&node, alarm, false).await {
            s.problems
                .push(format!("the {alarm:?} alarm did not clear"));
        }
        s.progress(&progress, &format!("{alarm:?} alarm off"));
        windows.push((alarm, on, off));
    }
    // The load goes on 10 s after the last fault, then stops.
    s.pause(Duration::from_secs(10), &progress, "").await;
    progress
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sending.await.expect("the load");
    for (alarm, on, off) in windows {
        // Requests made and answered while the alarm was in effect.
        let during: Vec<&Sent> = sent
            .iter()
            .filter(|x| {
                let start = x.at.as_secs_f64();
                start >= on && start + x.took.as_secs_f64() <= off
            })
            .collect();
        let late: Vec<&&Sent> = during
            .iter()
            .filter(|x| x.took > BLOCKED_ANSWER_LIMIT)
            .collect();
        let accepted = during
            .iter()
            .filter(|x| x.answer == Answer::Accepted)
            .count();
        let unavailable = during
            .iter()
            .filter(|x| x.answer == Answer::Unavailable)
            .count();
        let slowest = during.iter().map(|x| x.took).max().unwrap_or_default();
        s.notes.push(format!(
            "{alarm:?} alarm t={on:.0}-{off:.0}s: {} requests answered during it: {unavailable} × 503, {accepted} × 202, slowest answer {:.2} s (publish timeout 2 s)",
            during.len(),
            slowest.as_secs_f64()
        ));
        if during.is_empty() {
            s.problems.push(format!(
                "no request was answered during the {alarm:?} alarm (hanging ingest?)"
            ));
        }
        if !late.is_empty() {
            s.problems.push(format!(
                "{} answers during the {alarm:?} alarm took longer than {BLOCKED_ANSWER_LIMIT:?}",
                late.len()
            ));
        }
        if accepted > 0 {
            s.notes.push(format!(
                "{accepted} submissions were accepted while the {alarm:?} alarm was in effect"
            ));
        }
        let hung = sent
            .iter()
            .filter(|x| {
                let start = x.at.as_secs_f64();
                start >= on && start < off && x.took > BLOCKED_ANSWER_LIMIT
            })
            .count();
        if hung > 0 && late.is_empty() {
            s.problems.push(format!(
                "{hung} requests started during the {alarm:?} alarm took longer than {BLOCKED_ANSWER_LIMIT:?}"
            ));
        }
        match first_accept_after(&sent, off) {
            Some(secs) if secs <= 15.0 => s.notes.push(format!(
                "first 202 {secs:.1} s after the {alarm:?} alarm cleared"
            )),
            other => s.problems.push(format!(
                "the ingest did not accept again within 15 s of the {alarm:?} alarm clearing ({other:?})"
            )),
        }
    }
    let urls = vec![node.url()];
    let tally = s
        .finish(&node, urls, sent, &mut [&mut ingest, &mut worker])
        .await;
    tally.report_and_assert(s.mode);
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
                let resumed = next_enrichment(&s, Duration::from_secs(60)).await;
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
    let sent = sending.await.expect("the load");
    for t in losses {
        match first_accept_after(&sent, t) {
            Some(secs) => s.notes.push(format!(
                "publishers carried on: first 202 {secs:.1} s after the leader went down at t={t:.0}s"
            )),
            None => s.problems.push(format!("no 202 after the leader went down at t={t:.0}s")),
        }
    }
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
