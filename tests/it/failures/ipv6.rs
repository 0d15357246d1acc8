//! An AMQP URL with an IPv6 literal connects to that address (and not to `localhost`).

use std::time::Duration;

use prechat_enricher::queue::Broker;
use secrecy::SecretString;

use crate::common::net::TcpStandIn;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amqp_url_with_an_ipv6_literal_connects_to_that_address() {
    prechat_enricher::startup::install_crypto_provider();
    let broker_url = reqwest::Url::parse(&amqp_url()).unwrap();
    let upstream = format!(
        "{}:{}",
        broker_url.host_str().unwrap(),
        broker_url.port().unwrap_or(5672)
    )
    .parse()
    .unwrap();
    // Listening on [::1] only: nothing else on that port answers.
    let Ok(forwarder) = TcpStandIn::start("[::1]:0", Some(upstream)).await else {
        println!("no IPv6 loopback here; skipped");
        return;
    };
    let url = format!(
        "amqp://guest:guest@[::1]:{}/%2f?heartbeat=30",
        forwarder.addr().port()
    );
    let broker = Broker::new(&[SecretString::from(url)], "ipv6 test");
    let channel = tokio::time::timeout(Duration::from_secs(10), broker.channel())
        .await
        .expect("connects in time")
        .expect("connects through [::1]");
    assert!(channel.status().connected());
    broker.close().await;
}
