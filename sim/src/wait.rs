//! Waiting for a condition the sandbox (or anything else under test) reaches in its own time:
//! shared by the service's integration tests and the load driver, so both poll alike.

use std::time::Duration;

/// Polls `check` every 100 ms until it yields `Some` (that value) or `timeout` passes (`None`).
pub async fn until<T>(timeout: Duration, check: impl AsyncFnMut() -> Option<T>) -> Option<T> {
    until_every(Duration::from_millis(100), timeout, check).await
}

/// Polls `check` every `interval` until it yields `Some` (that value) or `timeout` passes
/// (`None`); a check that starts before the deadline runs to its end. `check` may keep state
/// from one poll to the next, and may end the wait early by yielding an error as its value.
pub async fn until_every<T>(
    interval: Duration,
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn yields_the_first_value_or_none_at_the_deadline() {
        let mut polls = 0;
        let found = until(Duration::from_secs(1), || {
            polls += 1;
            let value = (polls == 3).then_some(polls);
            async move { value }
        })
        .await;
        assert_eq!(found, Some(3));
        let started = tokio::time::Instant::now();
        assert_eq!(
            until(Duration::from_secs(1), async || None::<()>).await,
            None
        );
        assert_eq!(started.elapsed(), Duration::from_millis(1000));
    }
}
