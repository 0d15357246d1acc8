//! The one Genesys request budget of the process: a `governor` rate limiter sized by
//! `genesys.requests_per_minute`, plus a shared pause that a 429 sets for every caller
//! until `Retry-After` has passed.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// Admits Genesys requests at the configured rate; shared by every worker, the resolver
/// and start-up lookups of a process.
pub struct Budget {
    limiter: DefaultDirectRateLimiter,
    paused_until: Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

impl Budget {
    /// A budget of `requests_per_minute`, spread evenly: a burst of one, so that no
    /// 60-second window on the server's side ever sees more than the budget plus one.
    pub fn new(requests_per_minute: u32, metrics: Arc<Metrics>) -> Self {
        let rate = NonZeroU32::new(requests_per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(rate).allow_burst(NonZeroU32::MIN);
        Self {
            limiter: RateLimiter::direct(quota),
            paused_until: Mutex::new(None),
            metrics,
        }
    }

    /// Waits until a request may be sent: past any pause, then through the limiter.
    pub async fn acquire(&self) {
        let started = Instant::now();
        loop {
            if let Some(until) = self.pause_deadline() {
                tokio::time::sleep_until(until).await;
                continue;
            }
            self.limiter.until_ready().await;
            // A 429 seen by another caller while this one waited pauses it too.
            if self.pause_deadline().is_none() {
                break;
            }
        }
        self.metrics
            .limiter_wait
            .observe(started.elapsed().as_secs_f64());
    }

    /// Pauses every caller for `retry_after` (a 429 was answered).
    pub fn pause_for(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut paused = self.paused_until.lock().expect("budget lock");
        if paused.is_none_or(|current| current < until) {
            *paused = Some(until);
        }
    }

    fn pause_deadline(&self) -> Option<Instant> {
        let mut paused = self.paused_until.lock().expect("budget lock");
        match *paused {
            Some(until) if until > Instant::now() => Some(until),
            _ => {
                *paused = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_every_caller_until_it_ends() {
        let budget = Arc::new(Budget::new(6000, Arc::new(Metrics::new())));
        budget.pause_for(Duration::from_secs(5));
        let start = Instant::now();
        let waiters: Vec<_> = (0..3)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move {
                    budget.acquire().await;
                    Instant::now()
                })
            })
            .collect();
        for waiter in waiters {
            assert!(waiter.await.unwrap() - start >= Duration::from_secs(5));
        }
    }
}
