//! A cluster URL list whose first node is unreachable in one of two ways: it drops SYNs (a
//! black-holed host: `connect` hangs), or it accepts TCP connections and never completes the
//! AMQP handshake (a node whose socket is open but whose broker is stuck).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prechat_enricher::startup::{Components, Roles};

use crate::common::net::{BlackHole, TcpStandIn};
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_first_node_does_not_keep_the_other_nodes_from_being_tried() {
    let stalled = TcpStandIn::stalled().await;
    let slowest = failover_through(stalled.addr(), "stalled").await;
    assert!(
        slowest < Duration::from_millis(3000),
        "at most one stalled node is waited for, once: {slowest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_first_node_does_not_keep_the_other_nodes_from_being_tried() {
    let hole = BlackHole::start().await.expect("a loopback listener");
    assert!(hole.drops_syns().await, "the stand-in drops SYNs");
    let slowest = failover_through(hole.addr(), "black-holed").await;
    assert!(
        slowest < Duration::from_millis(3000),
        "at most one black-holed node is waited for, once: {slowest:?}"
    );
}

/// Connects the publish and consume brokers of four processes through `[first, a forwarder
/// to the broker, the broker]`; the slowest connection's time.
async fn failover_through(first: SocketAddr, what: &str) -> Duration {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let broker_addr = reqwest::Url::parse(&amqp_url()).unwrap();
    let (host, port) = (
        broker_addr.host_str().unwrap().to_string(),
        broker_addr.port().unwrap_or(5672),
    );
    // Two more "nodes", both the test broker (one through a forwarder, so they differ).
    let second = TcpStandIn::start(
        "127.0.0.1:0",
        Some(format!("{host}:{port}").parse().unwrap()),
    )
    .await
    .unwrap();
    let urls = [
        format!("amqp://guest:guest@{first}/%2f"),
        format!("amqp://guest:guest@{}/%2f", second.addr()),
        amqp_url(),
    ]
    .join(",");
    let mut slowest = Duration::ZERO;
    // Several processes (each its own pool) and, in each, a reconnect: whichever node each
    // connection starts at, it reaches the broker within about one node's connect timeout.
    for process in 0..4 {
        let settings = test_settings(
            &sim,
            &unique_namespace("failover"),
            &[
                ("PRECHAT__AMQP__URL", &urls),
                ("PRECHAT__AMQP__CONNECT_TIMEOUT_MS", "1000"),
            ],
        );
        let components = Components::build(settings, Roles::ALL).unwrap();
        for broker in [&components.publish_broker, &components.consume_broker] {
            let started = Instant::now();
            let channel = tokio::time::timeout(Duration::from_secs(8), broker.channel())
                .await
                .expect("failover is bounded")
                .expect("a channel through one of the other nodes");
            let took = started.elapsed();
            println!("{what} first node, process {process}: connected after {took:?}");
            slowest = slowest.max(took);
            assert!(channel.status().connected());
            let _ = channel.close(200, "done".into()).await;
            broker.close().await;
        }
    }
    println!("failover time with a {what} first node (slowest of 8 connections, connect timeout 1000 ms): {slowest:?}");
    sim.shutdown();
    slowest
}
