//! Which dead letters a command applies to, and the parsing of the CLI's filter values.
//!
//! Pure: the parsers are clap value parsers (a bad value is a usage error, exit 2, before
//! anything touches the broker) and [`Filter::matches`] looks at a [`Letter`] only.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::letter::{Class, Letter};
use crate::queue::dead_letter::ErrorClass;

/// `--since`: a point in time, or a duration before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// An RFC 3339 time.
    At(DateTime<Utc>),
    /// That long before the command runs (`30m`, `2h`, `7d`).
    Ago(Duration),
}

impl Since {
    /// The point in time, relative to `now`.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Since::At(at) => at,
            Since::Ago(ago) => chrono::Duration::from_std(ago)
                .ok()
                .and_then(|ago| now.checked_sub_signed(ago))
                .unwrap_or(DateTime::<Utc>::MIN_UTC),
        }
    }
}

/// Parses `--since`: RFC 3339 (`2026-11-22T10:00:00Z`) or a whole number of seconds, minutes,
/// hours, days or weeks before now (`45s`, `30m`, `2h`, `7d`, `1w`).
pub fn parse_since(value: &str) -> Result<Since, String> {
    let value = value.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Ok(Since::At(at.with_timezone(&Utc)));
    }
    let unit_at = value.char_indices().last().map_or(0, |(i, _)| i);
    let (number, unit) = value.split_at(unit_at);
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => 0,
    };
    match number.parse::<u64>() {
        Ok(n) if seconds_per_unit > 0 && !number.starts_with('+') => n
            .checked_mul(seconds_per_unit)
            .map(|s| Since::Ago(Duration::from_secs(s)))
            .ok_or_else(|| format!("'{value}' is too far back")),
        _ => Err(format!(
            "'{value}' is neither an RFC 3339 time (2026-11-22T10:00:00Z) nor a duration such as 30m, 2h or 7d"
        )),
    }
}

/// Parses `--class` into one of the classes in README, "RabbitMQ topology and headers".
pub fn parse_class(value: &str) -> Result<ErrorClass, String> {
    ErrorClass::parse(value.trim()).ok_or_else(|| {
        let known: Vec<&str> = ErrorClass::ALL.iter().map(|c| c.as_str()).collect();
        format!(
            "unknown error class '{value}'; expected one of: {}",
            known.join(", ")
        )
    })
}

/// Parses `--rate` (messages per second): a finite number above 0 (`0.5` is one every 2 s).
pub fn parse_rate(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(format!(
            "'{value}' is not a rate; give messages per second above 0, such as 10 or 0.5"
        )),
    }
}

/// A filter on dead letters: every given criterion must hold; within `classes` and `ids`,
/// any one value is enough. The empty filter matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Error classes (`--class`, repeatable).
    pub classes: Vec<ErrorClass>,
    /// Dead-lettered at or after this time (`--since`). A letter without any time does not
    /// match: a filter never selects what it cannot tell.
    pub since: Option<DateTime<Utc>>,
    /// Submission ids (`--id`, repeatable).
    pub ids: Vec<String>,
}

impl Filter {
    /// Whether `letter` is selected.
    pub fn matches(&self, letter: &Letter) -> bool {
        let class_ok = self.classes.is_empty()
            || matches!(&letter.class, Class::Known(c) if self.classes.contains(c));
        let since_ok = self
            .since
            .is_none_or(|since| letter.dead_lettered_at.is_some_and(|at| at >= since));
        let id_ok = self.ids.is_empty()
            || letter
                .submission_id
                .as_ref()
                .is_some_and(|id| self.ids.contains(id));
        class_ok && since_ok && id_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(class: ErrorClass, at: Option<&str>, id: Option<&str>) -> Letter {
        Letter {
            class: Class::Known(class),
            status: None,
            code: None,
            message: None,
            context_id: None,
            attempts: None,
            dead_lettered_at: at.map(|t| t.parse().unwrap()),
            first_failure_at: None,
            replayed_at: None,
            submission_id: id.map(str::to_owned),
            conversation_id: None,
            email: None,
            phone: None,
            body_is_json: true,
            body_bytes: 0,
        }
    }

    #[test]
    fn since_accepts_rfc3339_and_relative_durations() {
        let now: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        let cases = [
            ("2026-11-20T08:30:00Z", "2026-11-20T08:30:00Z"),
            ("2026-11-20T10:30:00+02:00", "2026-11-20T08:30:00Z"),
            ("45s", "2026-11-22T09:59:15Z"),
            ("30m", "2026-11-22T09:30:00Z"),
            ("2h", "2026-11-22T08:00:00Z"),
            ("7d", "2026-11-15T10:00:00Z"),
            ("1w", "2026-11-15T10:00:00Z"),
        ];
        for (input, expected) in cases {
            let since = parse_since(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(
                since.resolve(now),
                expected.parse::<DateTime<Utc>>().unwrap(),
                "{input}"
            );
        }
    }

    #[test]
    fn bad_since_values_are_refused_with_a_sentence() {
        for input in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-22",
            "5",
            "m",
            "-3h",
            "+3h",
            "3y",
            "7д",
        ] {
            let error = parse_since(input).expect_err(input);
            assert!(error.contains("RFC 3339"), "{input}: {error}");
        }
    }

    #[test]
    fn classes_parse_by_their_header_name_only() {
        assert_eq!(parse_class("expired"), Ok(ErrorClass::Expired));
        let error = parse_class("Expired!").unwrap_err();
        assert!(error.contains("invalid_payload") && error.contains("delivery_limit"));
    }

    #[test]
    fn a_rate_is_a_positive_finite_number() {
        assert_eq!(parse_rate("10"), Ok(10.0));
        assert_eq!(parse_rate("0.5"), Ok(0.5));
        for bad in ["0", "-1", "NaN", "inf", "fast"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_criterion_must_hold_and_any_value_of_one_is_enough() {
        let filter = Filter {
            classes: vec![ErrorClass::Expired, ErrorClass::GenesysRejected],
            since: Some("2026-11-22T00:00:00Z".parse().unwrap()),
            ids: vec!["a".into(), "b".into()],
        };
        let t = Some("2026-11-22T01:00:00Z");
        assert!(filter.matches(&letter(ErrorClass::Expired, t, Some("a"))));
        assert!(filter.matches(&letter(ErrorClass::GenesysRejected, t, Some("b"))));
        assert!(!filter.matches(&letter(ErrorClass::InvalidPayload, t, Some("a"))));
        assert!(!filter.matches(&letter(ErrorClass::Expired, t, Some("c"))));
        assert!(!filter.matches(&letter(ErrorClass::Expired, t, None)));
        assert!(!filter.matches(&letter(
            ErrorClass::Expired,
            Some("2026-11-21T23:59:59Z"),
            Some("a")
        )));
        assert!(!filter.matches(&letter(ErrorClass::Expired, None, Some("a"))));
        assert!(Filter::default().matches(&letter(ErrorClass::Expired, None, None)));
    }

    #[test]
    fn an_unknown_class_is_matched_only_by_the_empty_class_filter() {
        let mut unknown = letter(ErrorClass::Expired, None, None);
        unknown.class = Class::Other("unknown".into());
        assert!(Filter::default().matches(&unknown));
        let filter = Filter {
            classes: ErrorClass::ALL.to_vec(),
            ..Filter::default()
        };
        assert!(!filter.matches(&unknown));
    }
}
