//! What ingest publishes is what the worker reads: serialisation and the queue round trip.

use chrono::TimeZone;
use proptest::prelude::*;

use super::*;

#[test]
fn json_output_has_no_nulls_and_debug_masks_the_guest() {
    let mut sub = sample();
    sub.survey.language = None;
    sub.consent.kind = None;
    let json = String::from_utf8(sub.to_json()).unwrap();
    assert!(
        !json.contains("null") && !json.contains("conversationId"),
        "{json}"
    );
    assert!(json.contains(r#""schemaVersion":1"#) && json.contains(r#""priority":"high""#));
    let shown = format!("{sub:?}");
    assert!(
        !shown.contains("jane@") && !shown.contains("5551234567"),
        "{shown}"
    );
}

#[test]
fn what_ingest_publishes_parses_back_equal_on_the_queue() {
    let bodies = [
        r#"{"guest":{"sessionId":"s-1"}}"#,
        r#"{"submittedAt":"2026-11-22T12:00:00.123456789+02:00","guest":{"email":"A@B.io","phone":"+44 20 7946 0958"},
            "survey":{"subject":" Hi ","priority":"Low","language":"fr"},"consent":{"given":true,"type":"explicit"},
            "conversationId":"0F8FAD5B-D9CB-469F-A165-70867728950E"}"#,
    ];
    for body in bodies {
        let published = http(body).unwrap();
        let consumed = queue(std::str::from_utf8(&published.to_json()).unwrap(), None).unwrap();
        assert_eq!(consumed, published);
        let derived: Submission = serde_json::from_slice(&published.to_json()).unwrap();
        assert_eq!(derived, published);
    }
    let sample = sample();
    assert_eq!(
        queue(std::str::from_utf8(&sample.to_json()).unwrap(), None).unwrap(),
        sample
    );
}

fn body_strategy() -> impl Strategy<Value = String> {
    let opt = |s: BoxedStrategy<String>| proptest::option::of(s).boxed();
    (
        opt("[a-z]{1,8}@[a-z]{1,8}\\.(com|io)".boxed()),
        opt("\\+1( (415|555) [0-9]{3}-[0-9]{4}|(415|555)[0-9]{7})".boxed()),
        opt("[ -~]{1,40}".boxed()),
        (opt("[ -~]{0,60}".boxed()), opt("(?i)(low|normal|high|urgent)".boxed()), opt("[a-zA-Z]{2}(-[A-Z]{2})?".boxed())),
        (any::<bool>(), opt("explicit|implicit".boxed()), any::<u128>(), 0i64..4_000_000_000),
    )
        .prop_map(|(email, phone, session, (subject, priority, language), (given, kind, conv, secs))| {
            serde_json::json!({
                "submittedAt": Utc.timestamp_opt(secs, 0).unwrap().to_rfc3339(),
                "conversationId": uuid::Uuid::from_u128(conv).to_string(),
                "guest": { "email": email, "phone": phone, "sessionId": session.unwrap_or_else(|| "s".into()) },
                "survey": { "subject": subject, "priority": priority, "language": language },
                "consent": { "given": given, "type": kind },
            })
            .to_string()
        })
}

proptest! {
    #![proptest_config(proptest_config())]

    #[test]
    fn any_accepted_body_round_trips_through_the_queue(body in body_strategy()) {
        let published = http(&body).unwrap();
        let consumed = queue(std::str::from_utf8(&published.to_json()).unwrap(), None).unwrap();
        prop_assert_eq!(consumed, published);
    }

    #[test]
    fn any_bytes_give_a_submission_or_a_validation_error(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let ctx = ParseContext { origin: Origin::Http, now: now(), hasher: &SessionHasher::new(None), default_phone_region: None };
        if let Err(err) = parse_submission(&body, &ctx) {
            prop_assert!(!err.message.is_empty());
        }
    }
}

#[test]
fn a_time_outside_rfc_3339_years_is_refused_or_ignored_so_published_bodies_parse_again() {
    use crate::privacy::SessionHasher;
    use crate::submission::{parse_submission, Origin, ParseContext};
    let hasher = SessionHasher::new(None);
    let now = chrono::Utc::now();
    let http = ParseContext {
        origin: Origin::Http,
        now,
        hasher: &hasher,
        default_phone_region: None,
    };
    for late in ["9999-12-31T23:59:59-01:00", "0000-01-01T00:00:00+01:00"] {
        let body = format!(r#"{{"guest":{{"email":"a@example.com"}},"submittedAt":"{late}"}}"#);
        assert_eq!(
            parse_submission(body.as_bytes(), &http).unwrap_err().code,
            "invalid_field",
            "{late}"
        );
    }
    let millis = chrono::DateTime::from_timestamp(now.timestamp_millis(), 0);
    let queue = ParseContext {
        origin: Origin::Queue {
            message_id: Some("m-1".into()),
            timestamp: millis,
        },
        now,
        hasher: &hasher,
        default_phone_region: None,
    };
    let parsed = parse_submission(br#"{"guest":{"email":"a@example.com"}}"#, &queue).unwrap();
    assert_eq!(
        parsed.submitted_at, now,
        "a millisecond timestamp is ignored"
    );
    assert_eq!(parse_submission(&parsed.to_json(), &queue).unwrap(), parsed);
}
