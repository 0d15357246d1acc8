//! A queue declared with other arguments than the configuration's (a `delivery_limit`
//! changed at a rollout) stops the start, naming the queue and the argument.

use std::process::Stdio;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::AMQPValue;
use prechat_enricher::queue::topology::Entity;
use prechat_enricher::queue::{Broker, Topology};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_declared_with_another_delivery_limit_stops_the_start_naming_the_argument() {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let namespace = unique_namespace("drift");
    let env = test_env(&sim, &namespace, &[]);
    let settings = test_settings(&sim, &namespace, &[]);
    let guard = NamespaceGuard::new(&settings);
    let topology = Topology::new(&settings.amqp);

    // The work queue as an earlier release declared it: the same, but another delivery limit.
    let queue = topology.submissions_queue();
    let mut arguments = topology
        .entities()
        .into_iter()
        .find_map(|entity| match entity {
            Entity::Queue {
                name, arguments, ..
            } if name == queue => Some(arguments),
            _ => None,
        })
        .unwrap();
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(settings.amqp.delivery_limit) + 7),
    );
    let broker = Broker::new(&settings.amqp.url, "drift test");
    let channel = broker.channel().await.unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            arguments,
        )
        .await
        .unwrap();
    broker.close().await;

    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_prechat-enricher"))
        .arg("serve")
        .env_clear()
        .envs(&env)
        .env("PRECHAT_CONFIG_DIR", config_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the service starts");
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the service stops by itself instead of retrying forever")
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_ne!(output.status.code(), Some(0), "{text}");
    assert!(output.status.code().is_some(), "exited, not killed: {text}");
    let last = text.lines().last().unwrap_or_default();
    println!("{last}");
    assert!(
        last.contains("x-delivery-limit") && last.contains(&queue),
        "the last line names the queue and the argument: {text}"
    );
    guard.delete().await;
    sim.shutdown();
}
