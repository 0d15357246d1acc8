//! Closed-loop load at a fixed concurrency (each of N tasks sends, waits for the answer, and
//! sends again) and the latency summary every phase reports.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Latency percentiles of a set of samples, in milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    /// Nearest-rank percentiles of `samples`.
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            samples[rank - 1].as_secs_f64() * 1000.0
        };
        Self {
            count: samples.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// What a closed-loop run measured (after its warm-up).
#[derive(Debug, Default)]
pub struct LoadRun {
    /// Operations that completed successfully inside the measured window.
    pub completed: usize,
    /// Failed operations inside the window.
    pub errors: usize,
    /// The measured window.
    pub window: Duration,
    /// Latency of each completed operation.
    pub latencies: Vec<Duration>,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// Successful operations including the warm-up's (for CPU per operation).
    pub all_completed: usize,
}

impl LoadRun {
    /// Adds another run's counts (rounds of the same measurement).
    pub fn absorb(&mut self, other: LoadRun) {
        self.completed += other.completed;
        self.errors += other.errors;
        self.window += other.window;
        self.latencies.extend(other.latencies);
        self.first_error = self.first_error.take().or(other.first_error);
        self.all_completed += other.all_completed;
    }

    /// Completed operations per second.
    pub fn rate(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

/// Runs `concurrency` tasks that call `op(sequence number)` back to back for
/// `warmup + measure`; operations that finish inside the measured window count.
pub async fn closed_loop<F, Fut>(
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
    op: F,
) -> LoadRun
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let sequence = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, sequence) = (op.clone(), sequence.clone());
        tasks.push(tokio::spawn(async move {
            let mut run = LoadRun::default();
            while Instant::now() < end {
                let n = sequence.fetch_add(1, Ordering::Relaxed);
                let sent = Instant::now();
                let result = op(n).await;
                let done = Instant::now();
                if result.is_ok() {
                    run.all_completed += 1;
                }
                if done < measure_from || done > end {
                    continue;
                }
                match result {
                    Ok(()) => {
                        run.completed += 1;
                        run.latencies.push(done - sent);
                    }
                    Err(error) => {
                        run.errors += 1;
                        run.first_error.get_or_insert_with(|| format!("{error:#}"));
                    }
                }
            }
            run
        }));
    }
    let mut total = LoadRun::default();
    for task in tasks {
        if let Ok(run) = task.await {
            total.absorb(run);
        }
    }
    total.window = measure;
    total
}
