//! The one Genesys request budget of the process: a `governor` rate limiter sized by
//! `genesys.requests_per_minute`, plus a shared pause that a 429 sets for every caller
//! until `Retry-After` has passed.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use governor::clock::{Clock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::metrics::Metrics;

/// The longest pause a server can set for every caller (a 429's `Retry-After`, a spent
/// window's `inin-ratelimit-reset`); Genesys' windows are a minute long, so a longer value is
/// a faulty header and is cut to this.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

/// Admits Genesys requests at the configured rate; shared by every worker, the resolver
/// and start-up lookups of a process.
pub struct Budget {
    configured_per_minute: u32,
    limiter: RwLock<(u32, Arc<Limiter>)>,
    paused_until: Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

/// The server's view of the budget, from the `inin-ratelimit-*` headers of a response.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerBudget {
    /// Requests counted in the current window.
    pub count: Option<u32>,
    /// Requests allowed per window.
    pub allowed: Option<u32>,
    /// Time until the window resets.
    pub reset: Option<Duration>,
}

/// governor's limiter on tokio's clock: the budget keeps the runtime's time, a paused test
/// clock included.
type Limiter = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<TokioInstant>>;

/// A `tokio::time::Instant` as governor's time reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct TokioInstant(Instant);

impl std::ops::Add<Nanos> for TokioInstant {
    type Output = Self;
    fn add(self, other: Nanos) -> Self {
        Self(self.0 + Duration::from(other))
    }
}

impl Reference for TokioInstant {
    fn duration_since(&self, earlier: Self) -> Nanos {
        Nanos::from(self.0.saturating_duration_since(earlier.0))
    }
    fn saturating_sub(&self, duration: Nanos) -> Self {
        Self(
            self.0
                .checked_sub(Duration::from(duration))
                .unwrap_or(self.0),
        )
    }
}

/// The clock of [`TokioInstant`]s.
#[derive(Debug, Clone, Default)]
struct TokioClock;

impl Clock for TokioClock {
    type Instant = TokioInstant;
    fn now(&self) -> TokioInstant {
        TokioInstant(Instant::now())
    }
}

fn limiter(per_minute: u32) -> Arc<Limiter> {
    let rate = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    Arc::new(RateLimiter::direct_with_clock(
        Quota::per_minute(rate).allow_burst(NonZeroU32::MIN),
        TokioClock,
    ))
}

/// Waits until `limiter` admits one request, on tokio's clock.
async fn until_ready(limiter: &Limiter) {
    while let Err(not_until) = limiter.check() {
        let wait = not_until.wait_time_from(TokioClock.now());
        tokio::time::sleep(wait.max(Duration::from_micros(1))).await;
    }
}

impl Budget {
    /// A budget of `requests_per_minute`, spread evenly: a burst of one, so that no
    /// 60-second window on the server's side ever sees more than the budget plus one.
    pub fn new(requests_per_minute: u32, metrics: Arc<Metrics>) -> Self {
        metrics.set_genesys_budget(requests_per_minute, requests_per_minute);
        Self {
            configured_per_minute: requests_per_minute,
            limiter: RwLock::new((requests_per_minute, limiter(requests_per_minute))),
            paused_until: Mutex::new(None),
            metrics,
        }
    }

    /// The rate the limiter runs at now (requests per minute).
    pub fn current_per_minute(&self) -> u32 {
        self.limiter.read().expect("budget lock").0
    }

    /// Adapts to the server's view: slows down to its `allowed` rate when that is tighter
    /// than the config (back up to the config when it loosens), and pauses every caller
    /// until the window resets when the window's budget is spent, before a 429 happens.
    pub fn observe(&self, server: ServerBudget) {
        if let Some(allowed) = server.allowed.filter(|a| *a > 0) {
            let wanted = allowed.min(self.configured_per_minute);
            let mut current = self.limiter.write().expect("budget lock");
            if current.0 != wanted {
                tracing::info!(
                    from = current.0,
                    to = wanted,
                    "Genesys budget adjusted to the server's limit"
                );
                *current = (wanted, limiter(wanted));
            }
            self.metrics
                .set_genesys_budget(self.configured_per_minute, wanted);
        }
        if let (Some(count), Some(allowed)) = (server.count, server.allowed) {
            self.metrics.set_genesys_window(count, allowed);
        }
        if let (Some(count), Some(allowed), Some(reset)) =
            (server.count, server.allowed, server.reset)
        {
            if allowed > 0 && count >= allowed {
                self.pause_for(reset);
            }
        }
    }

    /// Waits until a request may be sent: past any pause, then through the limiter.
    pub async fn acquire(&self) {
        let never = Instant::now() + Duration::from_secs(86_400 * 365);
        let _ = self.acquire_by(never).await;
    }

    /// Like [`acquire`](Self::acquire), but gives up at once when a pause lasts past
    /// `deadline`, or when the limiter has not let the caller through by then: `Err` with
    /// how long the caller should wait before trying again.
    pub async fn acquire_by(&self, deadline: Instant) -> Result<(), Duration> {
        let started = Instant::now();
        loop {
            if let Some(until) = self.pause_deadline() {
                if until > deadline {
                    return Err(until - Instant::now());
                }
                tokio::time::sleep_until(until).await;
                continue;
            }
            let limiter = self.limiter.read().expect("budget lock").1.clone();
            if tokio::time::timeout_at(deadline, until_ready(&limiter))
                .await
                .is_err()
            {
                // A full limiter: about one request's slot of the current rate.
                let per_minute = self.current_per_minute().max(1);
                return Err(Duration::from_secs(60) / per_minute);
            }
            // A 429 seen by another caller while this one waited pauses it too, and a rate
            // changed meanwhile (a tighter server limit) applies to it too.
            let replaced = !Arc::ptr_eq(&limiter, &self.limiter.read().expect("budget lock").1);
            if self.pause_deadline().is_none() && !replaced {
                break;
            }
        }
        self.metrics
            .limiter_wait
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Pauses every caller for `retry_after` (a 429 was answered), at most [`MAX_PAUSE`].
    pub fn pause_for(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after.min(MAX_PAUSE);
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

/// Whether waiting `wait` more, after `waited` already, stays within a call's `budget` of
/// in-process waiting.
pub(crate) fn within_wait_budget(waited: Duration, wait: Duration, budget: Duration) -> bool {
    waited.saturating_add(wait) <= budget
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_is_taken_in_process_only_while_the_call_s_total_stays_within_its_budget() {
        let s = Duration::from_secs;
        // waited so far, the next wait, the budget, waited in-process?
        for (waited, wait, budget, in_process) in [
            (s(0), s(1), s(30), true),
            (s(29), s(1), s(30), true),
            (s(29), s(2), s(30), false),
            (s(0), s(31), s(30), false),
            (s(0), s(3600), s(30), false),
            (s(0), Duration::MAX, s(30), false),
            (s(0), s(0), s(0), true),
        ] {
            assert_eq!(
                within_wait_budget(waited, wait, budget),
                in_process,
                "{waited:?} + {wait:?} within {budget:?}"
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_s_pause_is_cut_to_a_minute_however_long_the_header_says() {
        let s = Duration::from_secs;
        // reset or Retry-After from the server, pause actually set
        for (asked, paused) in [
            (s(5), s(5)),
            (s(60), s(60)),
            (s(61), s(60)),
            (s(3600), s(60)),
            (s(u32::MAX.into()), s(60)),
        ] {
            let budget = Budget::new(300, Arc::new(Metrics::new()));
            budget.observe(ServerBudget {
                count: Some(300),
                allowed: Some(300),
                reset: Some(asked),
            });
            let until = budget.pause_deadline().expect("a spent window pauses");
            assert_eq!(
                until - Instant::now(),
                paused,
                "inin-ratelimit-reset {asked:?}"
            );
            let budget = Budget::new(300, Arc::new(Metrics::new()));
            budget.pause_for(asked);
            let until = budget.pause_deadline().expect("a 429 pauses");
            assert_eq!(until - Instant::now(), paused, "Retry-After {asked:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_past_the_caller_s_deadline_gives_up_at_once_with_the_wait_left() {
        let budget = Budget::new(6000, Arc::new(Metrics::new()));
        budget.pause_for(Duration::from_secs(20));
        let start = Instant::now();
        let result = budget.acquire_by(start + Duration::from_secs(5)).await;
        assert_eq!(result, Err(Duration::from_secs(20)));
        assert_eq!(Instant::now(), start, "no wait at all");
        assert_eq!(
            budget.acquire_by(start + Duration::from_secs(30)).await,
            Ok(())
        );
        assert!(Instant::now() - start >= Duration::from_secs(20));
    }

    #[test]
    fn the_server_s_tighter_limit_slows_the_limiter_and_a_spent_window_pauses() {
        let budget = Budget::new(300, Arc::new(Metrics::new()));
        budget.observe(ServerBudget {
            count: Some(1),
            allowed: Some(60),
            reset: Some(Duration::from_secs(50)),
        });
        assert_eq!(budget.current_per_minute(), 60);
        assert!(budget.pause_deadline().is_none());
        budget.observe(ServerBudget {
            count: Some(60),
            allowed: Some(60),
            reset: Some(Duration::from_secs(5)),
        });
        assert!(budget.pause_deadline().is_some());
        budget.observe(ServerBudget {
            count: Some(1),
            allowed: Some(1000),
            reset: None,
        });
        assert_eq!(
            budget.current_per_minute(),
            300,
            "never above the configured budget"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_already_waiting_keep_to_a_rate_lowered_meanwhile() {
        // governor keeps its own clock, so this runs in real time; the margins are wide
        // enough for a loaded machine: the waiters have 80 ms to get inside the old limiter
        // before its first slot opens.
        let budget = Arc::new(Budget::new(600, Arc::new(Metrics::new())));
        budget.acquire().await;
        let start = std::time::Instant::now();
        let waiters: Vec<_> = (0..5)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move { budget.acquire().await })
            })
            .collect();
        // Every waiter is inside the old limiter by now (the first gets through at 100 ms).
        tokio::time::sleep(Duration::from_millis(20)).await;
        // 600/min (100 ms apart) becomes 120/min (500 ms apart).
        budget.observe(ServerBudget {
            allowed: Some(120),
            ..Default::default()
        });
        for waiter in waiters {
            waiter.await.unwrap();
        }
        // At the old rate the five would be through in about 500 ms; at the new one the
        // first goes at once and each of the others 500 ms later (about 2.1 s).
        assert!(
            start.elapsed() >= Duration::from_millis(1500),
            "{:?}",
            start.elapsed()
        );
    }

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

#[cfg(test)]
mod paused_time {
    use super::*;

    /// How many requests `budget` admits in `span` of (paused, auto-advancing) time when
    /// `callers` tasks ask as fast as they can.
    async fn admitted_in(budget: Arc<Budget>, callers: usize, span: Duration) -> usize {
        // Up to just before the end, so that a slot falling on the end is left to the next span.
        let end = Instant::now() + span - Duration::from_millis(1);
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..callers {
            let (budget, count) = (budget.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                while budget.acquire_by(end).await.is_ok() && Instant::now() < end {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        count.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[tokio::test(start_paused = true)]
    async fn sixty_a_minute_admits_sixty_a_minute_whatever_the_demand() {
        let budget = Arc::new(Budget::new(60, Arc::new(Metrics::new())));
        // One free slot at the start (the burst of one), then one a second.
        assert_eq!(
            admitted_in(budget.clone(), 8, Duration::from_secs(60)).await,
            60
        );
        assert_eq!(admitted_in(budget, 1, Duration::from_secs(30)).await, 30);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_stops_every_caller_for_its_length_then_the_rate_resumes() {
        let budget = Arc::new(Budget::new(600, Arc::new(Metrics::new())));
        budget.pause_for(Duration::from_secs(10));
        let started = Instant::now();
        budget.acquire().await;
        assert_eq!(started.elapsed().as_secs(), 10);
        // 600 a minute: one every 100 ms after the one just taken.
        assert_eq!(admitted_in(budget, 4, Duration::from_secs(5)).await, 49);
    }
}
