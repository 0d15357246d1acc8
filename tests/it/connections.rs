//! The ingest's connections against hostile clients: headers that never finish are closed
//! within `ingest.header_timeout_ms` while normal requests keep succeeding, connections
//! beyond `ingest.max_connections` are closed at once, `/metrics` leaves the public port with
//! `metrics.on_ingest = false`, and a worker's `/readyz` says whether it consumes.

use std::time::{Duration, Instant};

use crate::common::*;
use prechat_enricher::startup::Roles;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until the server closes the connection (end of stream or reset); how long that took
/// from `opened`, or `None` if it was still open after `limit`.
async fn closed_after(mut stream: TcpStream, opened: Instant, limit: Duration) -> Option<Duration> {
    let mut buf = [0u8; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return opened.elapsed(),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(limit, read_to_end).await.ok()
}

fn host_of(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_header_connections_are_closed_at_the_header_timeout_while_normal_requests_succeed() {
    const SLOW: usize = 64;
    let header_timeout = Duration::from_millis(1500);
    let sim = prechat_sim::spawn(fast_sim())
        .await
        .expect("sandbox starts");
    let settings = test_settings(
        &sim,
        &unique_namespace("slow-clients"),
        &[("PRECHAT__INGEST__HEADER_TIMEOUT_MS", "1500")],
    );
    let app = start(sim, settings, Roles::INGEST).await;
    let addr = host_of(&app.url);

    // 64 clients that start a request line and never finish it.
    let mut slow = Vec::new();
    for _ in 0..SLOW {
        let opened = Instant::now();
        let mut stream = TcpStream::connect(&addr).await.expect("connects");
        stream
            .write_all(b"POST /v1/subm")
            .await
            .expect("partial request line sent");
        slow.push(tokio::spawn(closed_after(
            stream,
            opened,
            header_timeout * 4,
        )));
    }

    // Normal traffic beside them, for longer than the header timeout.
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..4 {
        let (url, http) = (app.url.clone(), http());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut n = 0;
            while started.elapsed() < Duration::from_millis(2500) {
                n += 1;
                let body = submission(
                    &uuid::Uuid::new_v4().to_string(),
                    &format!("slow-{client}-{n}@example.com"),
                );
                let sent = Instant::now();
                let response = http
                    .post(format!("{url}/v1/submissions"))
                    .bearer_auth(TOKEN)
                    .json(&body)
                    .send()
                    .await
                    .expect("a normal request is answered");
                assert_eq!(response.status(), 202, "a normal request is accepted");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.expect("client task"));
    }
    latencies.sort();
    let p99 = percentile(&latencies, 0.99);
    println!(
        "normal requests beside {SLOW} slow connections: {} accepted, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        percentile(&latencies, 0.50),
        p99,
        latencies.last().unwrap()
    );

    let mut closed = Vec::new();
    for task in slow {
        closed.push(task.await.expect("slow task"));
    }
    let open = closed.iter().filter(|c| c.is_none()).count();
    let mut times: Vec<Duration> = closed.into_iter().flatten().collect();
    times.sort();
    if !times.is_empty() {
        println!(
            "slow connections (header timeout {header_timeout:?}): {} of {SLOW} closed, first after {:?}, last after {:?}",
            times.len(),
            times[0],
            times.last().unwrap()
        );
    }
    assert_eq!(open, 0, "every slow connection is closed");
    assert!(
        *times.last().unwrap() <= header_timeout + Duration::from_millis(1000),
        "closed within the header timeout (and a margin): {times:?}"
    );
    assert!(
        times[0] >= header_timeout - Duration::from_millis(200),
        "not closed before the header timeout: {times:?}"
    );
    assert!(
        latencies.len() >= 8,
        "normal traffic ran: {}",
        latencies.len()
    );
    assert!(
        p99 < header_timeout,
        "normal requests are not held up: p99 {p99:?}"
    );
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let sim = prechat_sim::spawn(fast_sim())
        .await
        .expect("sandbox starts");
    let settings = test_settings(
        &sim,
        &unique_namespace("max-connections"),
        &[("PRECHAT__INGEST__MAX_CONNECTIONS", "4")],
    );
    let app = start(sim, settings, Roles::INGEST).await;
    let addr = host_of(&app.url);

    // Idle connections, one by one: each either stays open or is closed at once.
    let mut held = Vec::new();
    let mut refused_at = Vec::new();
    for i in 0..8 {
        let mut stream = TcpStream::connect(&addr).await.expect("connects");
        let mut buf = [0u8; 16];
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf)).await {
            Err(_) => held.push(stream),
            Ok(_) => refused_at.push(i),
        }
    }
    assert!(
        held.len() <= 4,
        "at most max_connections stay open: {} did",
        held.len()
    );
    assert!(
        refused_at.first().is_some_and(|first| *first <= 4)
            && refused_at.windows(2).all(|w| w[1] == w[0] + 1),
        "beyond the cap every new connection is closed: refused {refused_at:?}"
    );

    // Slots come back when connections close.
    drop(held);
    let accepted = wait_until(Duration::from_secs(5), || async {
        let response = http()
            .get(format!("{}/healthz", app.url))
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())
    })
    .await;
    assert!(accepted.is_some(), "requests are served again");
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_can_leave_the_public_port() {
    let sim = prechat_sim::spawn(fast_sim())
        .await
        .expect("sandbox starts");
    let bind = format!("127.0.0.1:{}", free_port());
    let settings = test_settings(
        &sim,
        &unique_namespace("metrics-off-ingest"),
        &[
            ("PRECHAT__METRICS__ON_INGEST", "false"),
            ("PRECHAT__METRICS__BIND", &bind),
        ],
    );
    let app = start(sim, settings, Roles::INGEST).await;
    let on_ingest = http()
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .expect("ingest answers");
    assert_eq!(on_ingest.status(), 404, "no /metrics on the ingest port");
    let on_bind = http()
        .get(format!("http://{bind}/metrics"))
        .send()
        .await
        .expect("metrics listener answers");
    assert_eq!(on_bind.status(), 200);
    assert!(on_bind.text().await.unwrap().ends_with("# EOF\n"));
    app.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_is_ready_while_it_consumes_the_work_queue() {
    let sim = prechat_sim::spawn(fast_sim())
        .await
        .expect("sandbox starts");
    let bind = format!("127.0.0.1:{}", free_port());
    let settings = test_settings(
        &sim,
        &unique_namespace("worker-ready"),
        &[("PRECHAT__METRICS__BIND", &bind)],
    );
    let app = start(sim, settings, Roles::WORKER).await;
    let readyz = || async {
        let response = http()
            .get(format!("http://{bind}/readyz"))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.ok()?;
        Some((status, body))
    };
    let ready = wait_until(Duration::from_secs(20), || async {
        readyz().await.filter(|(status, _)| *status == 200)
    })
    .await;
    let (_, body) = ready.expect("/readyz is 200 once the worker consumes");
    assert_eq!(body["consuming"], true);

    // The work queue goes away: the broker cancels the consumer, and the worker is not ready.
    let channel = app.broker.channel().await.expect("test channel");
    channel
        .queue_delete(
            app.topology.submissions_queue().as_str().into(),
            Default::default(),
        )
        .await
        .expect("work queue deleted");
    let unready = wait_until(Duration::from_secs(10), || async {
        readyz().await.filter(|(status, _)| *status == 503)
    })
    .await;
    let (_, body) = unready.expect("/readyz is 503 while nothing is consumed");
    assert_eq!(body["consuming"], false);

    // Back once the queue is: the worker consumes again.
    app.topology
        .declare(&app.broker)
        .await
        .expect("topology declared again");
    let again = wait_until(Duration::from_secs(30), || async {
        readyz().await.filter(|(status, _)| *status == 200)
    })
    .await;
    assert!(again.is_some(), "/readyz is 200 again once consuming");
    app.cleanup().await;
}
