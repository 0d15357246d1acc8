//! Scenarios where the service's dependencies fail: Genesys 5xx (at random and as a storm),
//! repeated token revocation, a slow and an on-off CRM, and Genesys writes slower than the
//! client's timeout. External Contacts and transfers are on, so a repeated write shows as a
//! second contact for an email or a second transfer of a conversation.

use std::sync::Arc;
use std::time::Duration;

use prechat_sim::{Fault, Route};

use super::load::Progress;
use super::proxy::AnswerDelayProxy;
use super::scenario::Scenario;

/// Every Genesys API route a worker calls.
const API_ROUTES: [Route; 8] = [
    Route::GetConversation,
    Route::PatchAttributes,
    Route::IdentifierLookup,
    Route::CreateContact,
    Route::UpdateContact,
    Route::GetContact,
    Route::LinkContact,
    Route::ReplaceQueue,
];

/// A fault phase of the storm scenario.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A fraction of API calls answered 503 at random.
    RandomErrors(f64),
    /// Every API route answers 503.
    Storm,
    /// Every token revoked every 700 ms.
    TokenRevocation,
    /// Every CRM lookup takes 1.5 s (its timeout is 2 s).
    SlowCrm,
    /// The CRM down and up every 1.5 s.
    FlappingCrm,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos: run by scripts/chaos"]
async fn genesys_storms_token_revocation_and_a_failing_crm_lose_nothing_and_repeat_no_effect() {
    let mut s = Scenario::begin(
        "genesys-storm",
        "Genesys 5xx + token revocation + slow/flapping CRM",
        10,
    )
    .await;
    let (node, mut ingest, mut worker) = s.single_node("storm", 5714, &[]).await;
    let n = s.mode.pick(400, 1500);
    let rate = s.mode.pick(8.0, 10.0);
    // (start, phase, seconds)
    let phases: Vec<(f64, Phase, u64)> = s.mode.pick(
        vec![
            (3.0, Phase::RandomErrors(0.1), 8),
            (13.0, Phase::Storm, 8),
            (23.0, Phase::TokenRevocation, 8),
            (33.0, Phase::SlowCrm, 6),
            (40.0, Phase::FlappingCrm, 8),
        ],
        vec![
            (5.0, Phase::RandomErrors(0.1), 20),
            (30.0, Phase::Storm, 40),
            (75.0, Phase::TokenRevocation, 20),
            (100.0, Phase::SlowCrm, 15),
            (118.0, Phase::FlappingCrm, 15),
            (135.0, Phase::Storm, 30),
        ],
    );
    let progress = Arc::new(Progress::default());
    let sending = s.send(s.plan(n), rate, progress.clone());
    for (at, phase, secs) in phases {
        let wait = at - s.t();
        if wait > 0.0 {
            s.pause(Duration::from_secs_f64(wait), &progress, "").await;
        }
        let from = s.t();
        let duration = Duration::from_secs(secs);
        s.progress(&progress, &format!("{phase:?} for {secs} s"));
        match phase {
            Phase::RandomErrors(rate) => {
                s.sim.set_error_rate(rate);
                s.pause(duration, &progress, &format!("{phase:?}")).await;
                s.sim.set_error_rate(0.0);
            }
            Phase::Storm => {
                for route in API_ROUTES {
                    s.sim.add_fault(Fault {
                        duration_ms: Some(secs * 1000),
                        ..Fault::new(route, 503)
                    });
                }
                s.pause(duration, &progress, "503 storm").await;
            }
            Phase::TokenRevocation => {
                let end = std::time::Instant::now() + duration;
                while std::time::Instant::now() < end {
                    s.sim.revoke_tokens();
                    tokio::time::sleep(Duration::from_millis(700)).await;
                }
            }
            Phase::SlowCrm => {
                s.sim.add_fault(Fault {
                    duration_ms: Some(secs * 1000),
                    delay_ms: Some(1_500),
                    ..Fault::new(Route::CrmCustomers, 200)
                });
                s.pause(duration, &progress, "slow CRM").await;
            }
            Phase::FlappingCrm => {
                let end = std::time::Instant::now() + duration;
                let mut down = false;
                while std::time::Instant::now() < end {
                    down = !down;
                    s.sim.set_crm_down(down);
                    tokio::time::sleep(Duration::from_millis(1_500)).await;
                }
                s.sim.set_crm_down(false);
            }
        }
        s.notes.push(format!(
            "t={from:.0}-{:.0}s {}",
            s.t(),
            match phase {
                Phase::RandomErrors(rate) =>
                    format!("{:.0}% of Genesys API calls answered 503", rate * 100.0),
                Phase::Storm => "every Genesys API route answered 503 (storm)".into(),
                Phase::TokenRevocation => "every token revoked every 0.7 s".into(),
                Phase::SlowCrm => "every CRM lookup delayed 1.5 s (timeout 2 s)".into(),
                Phase::FlappingCrm => "CRM down/up every 1.5 s (on_unavailable = degrade)".into(),
            }
        ));
    }
    let sent = sending.await.expect("the load");
    let pauses = worker.log_lines("consumption paused").len();
    let resumes = worker.log_lines("consumption resumed").len();
    s.notes.push(format!(
        "{n} submissions at {rate}/s; worker.max_attempts 12, outage_threshold 5, probe every 1 s; by the end of the load, outage mode had paused consumption {pauses} times and resumed it {resumes} times"
    ));
    let urls = vec![node.url()];
    let tally = s
        .finish(&node, urls, sent, &mut [&mut ingest, &mut worker])
        .await;
    tally.report_and_assert(s.mode);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "chaos: run by scripts/chaos"]
async fn genesys_slower_than_the_client_timeout_gets_no_write_repeated() {
    let mut s = Scenario::begin("genesys-slow", "Genesys slower than the client timeout", 10).await;
    // Genesys API calls go through a proxy that can hold back answers; token and CRM
    // calls go straight to the sandbox.
    let proxy = AnswerDelayProxy::start(s.sim.local_addr())
        .await
        .expect("the proxy starts");
    let api_url = proxy.url();
    let (node, mut ingest, mut worker) = s
        .single_node("slow", 5715, &[("PRECHAT__GENESYS__API_URL", &api_url)])
        .await;
    let n = s.mode.pick(300, 900);
    let rate = 10.0;
    let windows = s.mode.pick(3, 8);
    let per_route = s.mode.pick(5, 15);
    let progress = Arc::new(Progress::default());
    let sending = s.send(s.plan(n), rate, progress.clone());
    s.pause(Duration::from_secs(2), &progress, "").await;
    // 1. Writes done whose answers come after the client gave up (4 s windows, 3 s apart).
    let from = s.t();
    for _ in 0..windows {
        proxy.set_answer_delay(Duration::from_millis(3_500));
        s.pause(
            Duration::from_secs(4),
            &progress,
            "write answers held 3.5 s",
        )
        .await;
        proxy.set_answer_delay(Duration::ZERO);
        s.pause(Duration::from_secs(3), &progress, "").await;
    }
    let to = s.t();
    // 2. Requests that take longer than the client waits: the sandbox drops the handler
    //    when the client gives up, so the write is never done.
    for route in [
        Route::PatchAttributes,
        Route::CreateContact,
        Route::LinkContact,
        Route::ReplaceQueue,
    ] {
        s.sim.add_fault(Fault {
            count: Some(per_route),
            delay_ms: Some(3_500),
            ..Fault::new(route, 200)
        });
    }
    s.progress(&progress, "slow requests injected");
    let sent = sending.await.expect("the load");
    let timeouts = worker.log_lines("cause=\"genesys_unavailable\"").len();
    s.notes.push(format!(
        "{n} submissions at {rate}/s; genesys.timeout_ms = 3 s. (1) t={from:.0}-{to:.0}s, {windows} windows of 4 s: the answer to every Genesys write (PATCH attributes, create/update/link contact, replace/queue) held 3.5 s by a proxy after the sandbox did it (write done, answer lost to the timeout): {} answers held; (2) then {per_route} calls each of those writes held 3.5 s before the sandbox saw them (write not done); {timeouts} retries after a Genesys failure",
        proxy.held()
    ));
    let urls = vec![node.url()];
    let tally = s
        .finish(&node, urls, sent, &mut [&mut ingest, &mut worker])
        .await;
    drop(proxy);
    tally.report_and_assert(s.mode);
}
