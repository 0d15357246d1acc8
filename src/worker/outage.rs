//! Outage mode: when Genesys (or, in `crm.on_unavailable = "retry"` mode, the CRM) fails
//! for everything — a run of 5xx, timeouts or 401s after a fresh token — the workers stop
//! taking messages and probe with a single call until it passes, instead of burning the
//! attempts of every message in the queue.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::watch;

/// Counts consecutive systemic failures across every worker task of a process.
pub struct OutageGuard {
    threshold: u32,
    consecutive: AtomicU32,
    state: watch::Sender<bool>,
}

impl OutageGuard {
    /// Trips after `threshold` systemic failures in a row.
    pub fn new(threshold: u32) -> Self {
        Self {
            threshold: threshold.max(1),
            consecutive: AtomicU32::new(0),
            state: watch::channel(false).0,
        }
    }

    /// Records one processing result: a systemic failure, or anything else.
    pub fn record(&self, systemic_failure: bool) {
        if !systemic_failure {
            self.consecutive.store(0, Ordering::Relaxed);
            return;
        }
        let run = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if run >= self.threshold && !self.in_outage() {
            tracing::warn!(
                consecutive_failures = run,
                "dependency outage: consumption paused, probing"
            );
            self.state.send_replace(true);
        }
    }

    /// Whether consumption is paused.
    pub fn in_outage(&self) -> bool {
        *self.state.borrow()
    }

    /// Notified on every change.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.state.subscribe()
    }

    /// A probe passed: consumption resumes.
    pub fn resume(&self) {
        self.consecutive.store(0, Ordering::Relaxed);
        if self.state.send_replace(false) {
            tracing::info!("dependency back: consumption resumed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_systemic_failures_trips_and_a_success_in_between_resets_it() {
        let guard = OutageGuard::new(3);
        guard.record(true);
        guard.record(true);
        guard.record(false);
        guard.record(true);
        guard.record(true);
        assert!(!guard.in_outage());
        guard.record(true);
        assert!(guard.in_outage());
        guard.resume();
        assert!(!guard.in_outage());
    }
}
