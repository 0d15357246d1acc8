//! Scenarios where the processes or the broker fail: the worker killed with SIGKILL every few
//! seconds, RabbitMQ restarted (cleanly and by a crash), a memory or disk alarm blocking
//! publishers. (A cluster losing its queue leader: `cluster`.)

use std::sync::Arc;
use std::time::Duration;

use super::load::{Answer, Progress, Sent};
use super::rabbit::RabbitNode;
use super::scenario::{first_accept_after, last_unavailable_between, next_enrichment, Scenario};
use crate::common::wait_until;

/// How long the ingest may take to answer 503 while publishers are blocked: its publish
/// timeout (2 s in these scenarios) plus slack for a loaded 2-core machine.
const BLOCKED_ANSWER_LIMIT: Duration = Duration::from_millis(3_500);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos: run by scripts/chaos"]
async fn a_worker_killed_every_few_seconds_loses_nothing_and_repeats_no_effect() {
    // Sandbox latency such that ~8 messages are in the worker's hands when it is killed.
    let latency_ms = super::mode::Mode::from_env().pick(50, 30);
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
    let mut stops_at = Vec::new();
    for (at, how) in restarts {
        let wait = at - s.t();
        if wait > 0.0 {
            s.pause(Duration::from_secs_f64(wait), &progress, "").await;
        }
        let stopped_at = s.t();
        stops_at.push(stopped_at);
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
    let end = sent.iter().map(|x| x.at.as_secs_f64()).fold(0.0, f64::max) + 1.0;
    for (i, up) in back_at.iter().enumerate() {
        let next_stop = stops_at.get(i + 1).copied().unwrap_or(end);
        if let Some(last) = last_unavailable_between(&sent, up + 5.0, next_stop) {
            s.problems.push(format!(
                "the ingest still answered 503 at t={last:.0}s, {:.0} s after the broker came back at t={up:.0}s",
                last - up
            ));
        }
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
    let (node, mut ingest, mut worker) = s
        .single_node("alarm", 5713, &[("PRECHAT__WORKER__MAX_ATTEMPTS", "30")])
        .await;
    let n = s.mode.pick(600, 1500);
    let rate = 10.0;
    let alarms: Vec<(f64, Alarm, u64)> = s.mode.pick(
        vec![(5.0, Alarm::Memory, 20), (35.0, Alarm::Disk, 6)],
        vec![
            (5.0, Alarm::Memory, 20),
            (35.0, Alarm::Disk, 15),
            (60.0, Alarm::Memory, 30),
        ],
    );
    // Every 8th submission's attribute write fails until just after the last alarm: those
    // are retried all through the alarms, so their retry publishes meet a blocked broker and
    // must be held (not handed back to the work queue, not dead-lettered).
    let failing_for = alarms
        .iter()
        .map(|(at, _, secs)| at + *secs as f64)
        .fold(0.0, f64::max)
        + 12.0;
    let mut plan = s.plan(n);
    // Every 8th (from the 5th) comes without its conversation id, on a conversation the search
    // shows only 9 s after it was made: the resolver matches those sent before the memory
    // alarm while it is on, so its republishes meet the blocked broker too.
    s.sim.set_index_delay_ms(9_000);
    for planned in plan.iter_mut().skip(4).step_by(8) {
        let conversation = s
            .sim
            .seed_conversation(crate::genesys::support::correlated(&planned.submission_id));
        planned.conversation_id = conversation.id;
        planned.parked = true;
    }
    let retried: std::collections::HashSet<String> = plan
        .iter()
        .step_by(8)
        .map(|p| p.submission_id.clone())
        .collect();
    for planned in plan.iter().step_by(8) {
        s.sim.add_fault(prechat_sim::Fault {
            conversation_id: Some(planned.conversation_id.clone()),
            duration_ms: Some((failing_for * 1000.0) as u64),
            ..prechat_sim::Fault::new(prechat_sim::Route::PatchAttributes, 503)
        });
    }
    let progress = Arc::new(Progress::default());
    let sending = s.send(plan, rate, progress.clone());
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
    let retried_accepted = sent
        .iter()
        .filter(|x| x.answer == Answer::Accepted && retried.contains(&x.planned.submission_id))
        .count();
    let parked_before_the_alarm = sent
        .iter()
        .filter(|x| x.answer == Answer::Accepted && x.planned.parked && x.at.as_secs_f64() < 6.0)
        .count();
    let parked_accepted = sent
        .iter()
        .filter(|x| x.answer == Answer::Accepted && x.planned.parked)
        .count();
    let urls = vec![node.url()];
    let mut tally = s
        .finish(&node, urls, sent, &mut [&mut ingest, &mut worker])
        .await;
    // Each retry costs a read and a refused write; a message handed straight back to the work
    // queue on every refused publish would cost that many times more, and end as a
    // `delivery_limit` dead letter.
    let stats = s.sim.stats();
    let (reads, patches) = (
        stats.calls_of("get_conversation") + stats.calls_of("get_generic_conversation"),
        stats.calls_of("patch_attributes"),
    );
    let refused = stats.status_count("patch_attributes", 503);
    let per_retried = refused as f64 / retried_accepted.max(1) as f64;
    tally.notes.push(format!(
        "{retried_accepted} accepted submissions (every 8th) had their attribute write answered 503 until t={failing_for:.0}s, so they were retried through the alarms: {refused} refused writes, {per_retried:.1} attempts each; {reads} conversation reads and {patches} attribute writes for {} accepted submissions",
        tally.accepted
    ));
    tally.notes.push(format!(
        "{parked_accepted} accepted submissions (every 8th from the 5th) came without a conversation id, on conversations searchable 9 s after they were made: {parked_before_the_alarm} of them were accepted before the memory alarm, so the resolver matched them while it was on"
    ));
    // What the worker did while the broker blocked it, from its log.
    let log = std::fs::read_to_string(s.dir.join("worker.log")).unwrap_or_default();
    let held_follow_ups = log.matches("follow-up publish refused").count();
    let held_republishes = log.matches("matched submission not republished").count();
    tally.notes.push(format!(
        "while publishing was blocked: {held_follow_ups} refused follow-up publishes (retries) held and tried again; the resolver kept its refused republishes (matches) for the next poll and logged {held_republishes} of those refusals (the 1st, 2nd, 4th, … of each match)"
    ));
    if held_follow_ups == 0 || held_republishes == 0 {
        tally.problems.push(
            "the alarm met no held follow-up or no held resolver republish: the scenario did not exercise them".into(),
        );
    }
    if parked_before_the_alarm == 0 {
        tally
            .problems
            .push("no parked submission was accepted before the memory alarm".into());
    }
    if retried_accepted > 0 && per_retried > 12.0 {
        tally.problems.push(format!(
            "{per_retried:.1} failed attempts per retried submission: retries looped"
        ));
    }
    tally.report_and_assert(s.mode);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos: run by scripts/chaos"]
async fn three_worker_replicas_killed_and_cut_off_lose_nothing_and_duplicate_nothing() {
    let latency_ms = super::mode::Mode::from_env().pick(40, 30);
    let mut s = Scenario::begin(
        "three-workers",
        "three workers: SIGKILLs and connection drops",
        latency_ms,
    )
    .await;
    let (node, mut ingest, first) = s.single_node("three", 5717, &[]).await;
    let env = s.service_env(&[node.url()], &[]);
    let mut workers = vec![first, s.worker(&env), s.worker(&env)];
    for worker in workers.iter_mut().skip(1) {
        worker.start().expect("worker starts");
    }
    let n = s.mode.pick(400, 1500);
    let rate = s.mode.pick(20.0, 30.0);
    let faults = s.mode.pick(12, 30);
    let progress = Arc::new(Progress::default());
    let sending = s.send(s.plan(n), rate, progress.clone());
    let (mut kills, mut drops) = (0, 0);
    for round in 0..faults {
        tokio::time::sleep(Duration::from_millis(fastrand::u64(2_000..=3_000))).await;
        let accepted = progress.accepted.load(std::sync::atomic::Ordering::Relaxed);
        if sending.is_finished() && s.enriched_now() >= accepted {
            break;
        }
        if round % 3 == 2 {
            // Every connection goes at once (the consuming ones included); all reconnect.
            let _ = node
                .ctl(&["close_all_connections", "chaos: connection drop"])
                .await;
            drops += 1;
            s.progress(&progress, &format!("connection drop #{drops}"));
        } else {
            let victim = fastrand::usize(0..workers.len());
            workers[victim].kill().await.expect("SIGKILL");
            kills += 1;
            s.progress(&progress, &format!("SIGKILL #{kills} to worker {victim}"));
            tokio::time::sleep(Duration::from_millis(fastrand::u64(100..=500))).await;
            workers[victim].start().expect("worker restarts");
        }
    }
    let sent = sending.await.expect("the load");
    s.notes.push(format!(
        "{n} submissions at {rate}/s; three `worker` processes on one namespace, External Contacts and transfer mode on; {kills} SIGKILLs to a random worker (restarted 0.1-0.5 s later) and {drops} drops of every broker connection"
    ));
    let urls = vec![node.url()];
    let mut services: Vec<&mut super::service::Service> = vec![&mut ingest];
    services.extend(workers.iter_mut());
    let tally = s.finish(&node, urls, sent, &mut services).await;
    tally.report_and_assert(s.mode);
}
