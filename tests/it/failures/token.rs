//! The token grant against a login host that accepts the connection and never answers.

use std::time::{Duration, Instant};

use prechat_enricher::genesys::GenesysError;
use prechat_enricher::startup::{Components, Roles};
use prechat_sim::{Fault, Route};

use crate::common::net::TcpStandIn;
use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_login_host_fails_every_caller_within_the_timeout_and_a_recovered_one_works() {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let login = TcpStandIn::stalled().await;
    let settings = test_settings(
        &sim,
        &unique_namespace("stalled-login"),
        &[
            ("PRECHAT__GENESYS__LOGIN_URL", &login.base_url()),
            ("PRECHAT__GENESYS__TIMEOUT_MS", "500"),
        ],
    );
    let components = std::sync::Arc::new(Components::build(settings, Roles::ALL).unwrap());

    let started = Instant::now();
    let callers = (0..5).map(|_| {
        let c = components.clone();
        tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(10), c.genesys.check_credentials()).await
        })
    });
    for result in futures_util::future::join_all(callers).await {
        let error = result
            .unwrap()
            .expect("the grant ends within its timeout, never hangs")
            .expect_err("a stalled login host grants nothing");
        assert!(
            matches!(error, GenesysError::Unavailable { .. }) && error.is_systemic(),
            "a stalled grant counts toward outage mode: {error:?}"
        );
    }
    let elapsed = started.elapsed();
    println!("5 callers failed after {elapsed:?} against a stalled login host");
    assert!(
        elapsed < Duration::from_secs(3),
        "one 500 ms grant shared by every caller: {elapsed:?}"
    );

    // The login host comes back: the next caller gets a token.
    login.set_upstream(Some(sim.local_addr()));
    tokio::time::timeout(
        Duration::from_secs(5),
        components.genesys.check_credentials(),
    )
    .await
    .expect("no caller is left waiting on the stalled grant")
    .expect("a token from the recovered login host");
    assert_eq!(sim.stats().tokens_issued, 1);
    sim.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_from_the_login_host_is_waited_out_for_its_retry_after() {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    let settings = test_settings(
        &sim,
        &unique_namespace("login-429"),
        &[("PRECHAT__GENESYS__TIMEOUT_MS", "5000")],
    );
    let components = Components::build(settings, Roles::ALL).unwrap();
    sim.add_fault(Fault {
        count: Some(1),
        ..Fault::new(Route::Token, 429)
    });
    let started = Instant::now();
    components
        .genesys
        .check_credentials()
        .await
        .expect("granted once the Retry-After passed");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "waited for Retry-After: {:?}",
        started.elapsed()
    );
    assert_eq!(sim.stats().tokens_issued, 1);
    sim.shutdown();
}
