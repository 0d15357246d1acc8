//! The per-token request budget: a fixed 60-second window that opens at the token's first
//! call, like Genesys' `client.credentials.token.rate.per.minute` limit.
//!
//! Hand-written rather than `governor`: the sandbox must report the window's exact count and
//! reset time in the `inin-ratelimit-*` headers, which a token bucket does not model.

use std::time::Duration;

use tokio::time::Instant;

/// Length of a rate-limit window.
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// The calls one token made in its current window.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Window {
    start: Option<Instant>,
    count: u32,
}

/// The outcome of one call against the budget, with what the headers report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    /// Whether the call may go on (else 429).
    pub allowed: bool,
    /// Calls counted in the window, this one included when allowed.
    pub count: u32,
    /// Calls allowed in a window.
    pub limit: u32,
    /// Whole seconds until the window ends, at least 1.
    pub reset_secs: u64,
}

impl Window {
    /// Counts a call made at `now` against a budget of `limit` calls per window.
    /// Refused calls are not counted.
    pub fn admit(&mut self, now: Instant, limit: u32) -> Decision {
        let start = match self.start {
            Some(start) if now < start + WINDOW => start,
            _ => {
                self.start = Some(now);
                self.count = 0;
                now
            }
        };
        let left = (start + WINDOW).saturating_duration_since(now);
        let reset_secs = (left.as_secs_f64().ceil() as u64).max(1);
        let allowed = self.count < limit;
        if allowed {
            self.count += 1;
        }
        Decision {
            allowed,
            count: self.count,
            limit,
            reset_secs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_call_over_the_budget_is_refused_until_the_window_ends() {
        let t0 = Instant::now();
        let mut window = Window::default();
        assert!(window.admit(t0, 2).allowed);
        assert!(window.admit(t0 + Duration::from_secs(10), 2).allowed);
        let refused = window.admit(t0 + Duration::from_secs(20), 2);
        assert!(!refused.allowed);
        assert_eq!(refused.count, 2);
        assert_eq!(refused.reset_secs, 40);
        let next = window.admit(t0 + WINDOW, 2);
        assert!(next.allowed);
        assert_eq!(next.count, 1);
        assert_eq!(next.reset_secs, 60);
    }

    #[test]
    fn reset_is_at_least_one_second() {
        let t0 = Instant::now();
        let mut window = Window::default();
        window.admit(t0, 1);
        let d = window.admit(t0 + WINDOW - Duration::from_millis(1), 1);
        assert_eq!(d.reset_secs, 1);
    }
}
