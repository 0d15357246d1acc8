//! What every outgoing HTTP client (Genesys, its login host, the CRM) says about a failed
//! call: a transport error in a few words, and the `Retry-After` of an answer.

use std::time::Duration;

/// The longest `Retry-After` taken from a server; a longer one is cut to this. It bounds
/// the delay a message is handed to a retry queue with; waits inside the process have their
/// own, much shorter bounds (a client's total wait per call).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(900);

/// A transport error in a few words, never with the URL's query (it may hold PII).
pub fn transport_reason(error: &reqwest::Error) -> &'static str {
    if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "response body failed"
    } else {
        "request failed"
    }
}

/// `Retry-After` in seconds (whole or fractional), at most [`MAX_RETRY_AFTER`]; `None` when
/// absent or not a non-negative number (an HTTP date is not used by the servers we call).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?)
}

fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_RETRY_AFTER.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_non_negative_seconds_and_cuts_long_waits() {
        let ms = |ms| Some(Duration::from_millis(ms));
        for (value, expected) in [
            ("0", ms(0)),
            ("1", ms(1000)),
            (" 7 ", ms(7000)),
            ("1.5", ms(1500)),
            ("900", ms(900_000)),
            ("3600", ms(900_000)),
            ("86400", ms(900_000)),
            ("1e300", ms(900_000)),
            ("-1", None),
            ("NaN", None),
            ("inf", None),
            ("", None),
            ("soon", None),
            ("Wed, 21 Oct 2026 07:28:00 GMT", None),
        ] {
            assert_eq!(parse_retry_after(value), expected, "{value:?}");
        }
    }

    #[test]
    fn a_missing_header_is_no_wait_given() {
        assert_eq!(retry_after(&reqwest::header::HeaderMap::new()), None);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "2".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
    }
}
