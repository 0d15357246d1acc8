//! The HTTP/1.1 server under the ingest's router (and the metrics listener): hyper's own
//! connection loop rather than `axum::serve`, for two bounds a public port needs.
//!
//! - A connection whose request headers are not complete within the header timeout (from its
//!   first byte awaited, or from the previous response on a kept-alive connection) is closed:
//!   a client sending a request line byte by byte, or nothing at all, holds no slot for long.
//! - At most `max_connections` are open at once; one accepted beyond that is closed at once,
//!   so file descriptors and memory stay bounded whatever clients do.
//!
//! On shutdown the listener closes, idle connections close, and requests in flight finish.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Bounds of the connections of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a connection has to send a request's headers.
    pub header_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
}

/// Serves `app` on `listener` within `limits` until `shutdown`; returns once every
/// connection is closed.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    what: &'static str,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let refused = AtomicU64::new(0);
    let connections = TaskTracker::new();
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, server = what, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            let n = refused.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    server = what,
                    max_connections = limits.max_connections,
                    refused_so_far = n,
                    "connection limit reached; new connections are closed"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout);
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let stop = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut connection = std::pin::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                _ = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, server = what, "connection closed with an error");
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}
