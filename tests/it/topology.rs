//! The topology: declared idempotently, and `topology check` says what differs.

use crate::common::*;
use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use prechat_enricher::queue::{Broker, Topology};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_twice_is_harmless_and_check_names_what_differs() {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let settings = test_settings(&sim, &unique_namespace("topology"), &[]);
    let namespace = NamespaceGuard::new(&settings);
    let topology = Topology::new(&settings.amqp);
    let broker = Broker::new(&settings.amqp.url, "topology test");

    let missing = topology.check(&broker).await.unwrap();
    assert_eq!(
        missing.len(),
        topology.entities().len(),
        "everything is missing before the declare"
    );
    assert!(missing.iter().all(|d| d.detail.starts_with("missing")));

    topology.declare(&broker).await.unwrap();
    topology.declare(&broker).await.unwrap();
    assert_eq!(
        topology.check(&broker).await.unwrap(),
        vec![],
        "matches the config"
    );

    // Someone re-creates the dead-letter queue as a classic queue.
    let channel = broker.channel().await.unwrap();
    let dead = topology.dead_letter_queue();
    channel
        .queue_delete(dead.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    channel
        .queue_declare(
            dead.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let differences = topology.check(&broker).await.unwrap();
    assert_eq!(differences.len(), 1, "{differences:?}");
    assert_eq!(differences[0].name, dead);
    assert!(
        differences[0].detail.contains("inequivalent arg"),
        "{}",
        differences[0].detail
    );

    namespace.delete().await;
}

#[test]
fn topology_check_on_the_command_line_exits_1_and_says_why_when_something_is_wrong() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_prechat-enricher"))
        .args(["topology", "check"])
        .env("PRECHAT_CONFIG_DIR", config_dir())
        .env("PRECHAT_ENV", "sandbox")
        .env("PRECHAT__AMQP__URL", "amqp://guest:guest@127.0.0.1:1/%2f")
        .env("PRECHAT__GENESYS__LOGIN_URL", "http://127.0.0.1:1")
        .env("PRECHAT__CRM__BASE_URL", "http://127.0.0.1:1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("config: ok"), "{stdout}");
    assert!(stdout.contains("rabbitmq: unreachable"), "{stdout}");
    assert!(stdout.contains("crm: unavailable"), "{stdout}");
    assert!(stdout.contains("genesys:"), "{stdout}");

    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_prechat-enricher"))
        .args(["topology", "check"])
        .env("PRECHAT_CONFIG_DIR", config_dir())
        .env("PRECHAT_ENV", "sandbox")
        .env("PRECHAT__WORKER__CONCURRENCY", "0")
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("worker.concurrency"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_check_names_a_missing_binding_and_passes_when_all_is_in_place() {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let namespace = unique_namespace("bindings");
    let env = test_env(&sim, &namespace, &[]);
    let settings = test_settings(&sim, &namespace, &[]);
    let guard = NamespaceGuard::new(&settings);
    let topology = Topology::new(&settings.amqp);
    let broker = Broker::new(&settings.amqp.url, "topology test");
    topology.declare(&broker).await.unwrap();
    let check = || async {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_prechat-enricher"))
            .args(["topology", "check"])
            .env_clear()
            .envs(&env)
            .env("PRECHAT_CONFIG_DIR", config_dir())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (output.status.code(), stdout)
    };
    let (code, stdout) = check().await;
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("every binding is in place"), "{stdout}");

    // Someone removes the binding that brings retries back after their delay.
    let (exchange, key, queue) = topology
        .bindings()
        .into_iter()
        .find(|(_, _, queue)| queue.contains("retry."))
        .unwrap();
    let channel = broker.channel().await.unwrap();
    channel
        .queue_unbind(
            queue.as_str().into(),
            exchange.as_str().into(),
            key.as_str().into(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let (code, stdout) = check().await;
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "binding {exchange} → {queue} (key '{key}') is missing"
        )),
        "{stdout}"
    );
    guard.delete().await;
    sim.shutdown();
}
