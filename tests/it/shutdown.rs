//! SIGTERM during a load: the process stops taking messages, finishes those in hand, exits
//! 0, and after a restart every accepted submission is enriched, none lost.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use prechat_enricher::startup::Roles;
use prechat_sim::{SeedConversation, SimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_load_loses_nothing_and_a_restart_finishes_the_rest() {
    let sim = prechat_sim::spawn(SimConfig {
        latency_ms: 40,
        requests_per_minute: 100_000,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let namespace = unique_namespace("sigterm");
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let env = test_env(
        &sim,
        &namespace,
        &[
            ("PRECHAT__INGEST__BIND", &bind),
            ("PRECHAT__WORKER__CONCURRENCY", "4"),
        ],
    );
    let guard = NamespaceGuard::new(&test_settings(&sim, &namespace, &[]));
    let t0 = std::time::Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_prechat-enricher"))
        .arg("serve")
        .env("PRECHAT_CONFIG_DIR", config_dir())
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the service starts");

    let client = http();
    let url = format!("http://{bind}");
    let ready = wait_until(Duration::from_secs(30), || async {
        client
            .get(format!("{url}/readyz"))
            .send()
            .await
            .ok()
            .filter(|r| r.status() == 200)
    })
    .await;
    assert!(ready.is_some(), "the service became ready");

    let mut accepted = Vec::new();
    for i in 0..200 {
        let conversation = sim.seed_conversation(SeedConversation::default());
        let response = client
            .post(format!("{url}/v1/submissions"))
            .bearer_auth(TOKEN)
            .json(&submission(
                &conversation.id,
                &format!("load{i}@example.com"),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let body: serde_json::Value = response.json().await.unwrap();
        accepted.push((
            conversation.id,
            body["submissionId"].as_str().unwrap().to_string(),
        ));
    }
    let enriched_count = || {
        sim.conversations()
            .iter()
            .filter(|c| c.attribute_patches > 0)
            .count()
    };
    wait_until(Duration::from_secs(30), || async {
        (enriched_count() >= 20).then_some(())
    })
    .await;
    eprintln!("{:?} sending SIGTERM", t0.elapsed());
    let pid = child.id().expect("running") as i32;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits in time")
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let before_restart = enriched_count();
    eprintln!("{:?} stopped with {before_restart} enriched", t0.elapsed());
    assert!(
        before_restart < 200,
        "the signal came during the load ({before_restart} done)"
    );

    let settings = test_settings(&sim, &namespace, &[]);
    let app = start(sim.clone(), settings, Roles::WORKER).await;
    guard.hand_over();
    eprintln!("{:?} restarted", t0.elapsed());
    for (conversation_id, submission_id) in &accepted {
        let attributes = wait_until(Duration::from_secs(60), || async {
            let view = sim.conversation(conversation_id)?;
            (view.attribute_patches > 0).then_some(view.attributes)
        })
        .await
        .unwrap_or_else(|| panic!("{conversation_id} lost"));
        assert_eq!(
            &attributes["prechatSubmissionId"], submission_id,
            "each conversation carries its own submission"
        );
    }
    eprintln!("{:?} all enriched after the restart", t0.elapsed());
    let drained = wait_until(Duration::from_secs(30), || async {
        (app.total_depth().await == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "queues empty after the restart");
    assert!(app.dead_letters().await.is_empty(), "nothing dead-lettered");
    let patches: u32 = sim
        .conversations()
        .iter()
        .map(|c| c.attribute_patches)
        .sum();
    assert!(
        (200..=204).contains(&patches),
        "at most the messages in hand were written twice ({patches})"
    );
    app.cleanup().await;
}
