//! Every rule in README, "The submission", one rejection per code, plus what valid bodies become. The
//! helpers here (`sample`, `now`, `proptest_config`) are shared with the merge and CRM tests.

use chrono::TimeZone;
use proptest::prelude::*;
use secrecy::SecretString;

use super::*;

/// Property tests run the same cases on every run and machine, and leave no regression files.
pub(crate) fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x5EED_0001),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

pub(crate) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap()
}

/// A consenting guest known by email, phone and session, asking about billing.
pub(crate) fn sample() -> Submission {
    Submission {
        schema_version: SCHEMA_VERSION,
        submission_id: "sub-1".into(),
        submitted_at: now(),
        conversation_id: None,
        guest: Guest {
            email: Some(Email::parse("jane@example.com").unwrap()),
            phone: Some(Phone::parse("+15551234567", None).unwrap()),
            session_hash: Some(SessionHasher::new(None).hash("raw-browser-id")),
            verified: false,
        },
        survey: Survey {
            subject: "Billing".into(),
            priority: Priority::High,
            language: Some("en-US".into()),
        },
        consent: Consent {
            given: true,
            kind: Some(ConsentType::Explicit),
        },
    }
}

fn parse_with(
    body: &str,
    origin: Origin,
    hasher: &SessionHasher,
) -> Result<Submission, ValidationError> {
    let ctx = ParseContext {
        origin,
        now: now(),
        hasher,
        default_phone_region: Some(phonenumber::country::Id::US),
    };
    parse_submission(body.as_bytes(), &ctx)
}

fn http(body: &str) -> Result<Submission, ValidationError> {
    parse_with(body, Origin::Http, &SessionHasher::new(None))
}

fn queue(body: &str, message_id: Option<&str>) -> Result<Submission, ValidationError> {
    let origin = Origin::Queue {
        message_id: message_id.map(str::to_owned),
        timestamp: None,
    };
    parse_with(body, origin, &SessionHasher::new(None))
}

/// One body per rule in README, "The submission", with the code and field it must be rejected with.
#[rustfmt::skip]
fn rejections() -> Vec<(&'static str, String, &'static str, Option<&'static str>)> {
    let long = |n: usize| "a".repeat(n);
    let with_guest = |rest: &str| format!(r#"{{"guest":{{"sessionId":"s-1"}},{rest}}}"#);
    vec![
        ("not json", "nope".into(), "invalid_json", None),
        ("empty body", "".into(), "invalid_json", None),
        ("an array", "[1,2]".into(), "invalid_json", None),
        ("guest not an object", r#"{"guest":"jane"}"#.into(), "invalid_json", Some("guest")),
        ("survey not an object", with_guest(r#""survey":[]"#), "invalid_json", Some("survey")),
        ("consent not an object", with_guest(r#""consent":true"#), "invalid_json", Some("consent")),
        ("email not a string", r#"{"guest":{"email":42}}"#.into(), "invalid_json", Some("guest.email")),
        ("schemaVersion a string", with_guest(r#""schemaVersion":"1""#), "invalid_json", Some("schemaVersion")),
        ("schemaVersion 2", with_guest(r#""schemaVersion":2"#), "unsupported_schema_version", Some("schemaVersion")),
        ("control char in subject", with_guest(r#""survey":{"subject":"Bill\u0007ing"}"#), "control_characters", Some("survey.subject")),
        ("control char in email", r#"{"guest":{"email":"ja\u0000ne@example.com"}}"#.into(), "control_characters", Some("guest.email")),
        ("inner newline in sessionId", r#"{"guest":{"sessionId":"a\nb"}}"#.into(), "control_characters", Some("guest.sessionId")),
        ("no guest", "{}".into(), "missing_identifier", Some("guest")),
        ("empty guest", r#"{"guest":{}}"#.into(), "missing_identifier", Some("guest")),
        ("blank identifiers", r#"{"guest":{"email":"  ","sessionId":""}}"#.into(), "missing_identifier", Some("guest")),
        ("bad email", r#"{"guest":{"email":"jane@"}}"#.into(), "invalid_email", Some("guest.email")),
        ("too short phone", r#"{"guest":{"phone":"12"}}"#.into(), "invalid_phone", Some("guest.phone")),
        ("unknown country code", r#"{"guest":{"phone":"+999 1234567"}}"#.into(), "invalid_phone", Some("guest.phone")),
        ("long sessionId", format!(r#"{{"guest":{{"sessionId":"{}"}}}}"#, long(257)), "invalid_field", Some("guest.sessionId")),
        ("short sessionHash", r#"{"guest":{"sessionHash":"abc"}}"#.into(), "invalid_field", Some("guest.sessionHash")),
        ("non-hex sessionHash", format!(r#"{{"guest":{{"sessionHash":"{}"}}}}"#, "g".repeat(64)), "invalid_field", Some("guest.sessionHash")),
        ("unknown priority", with_guest(r#""survey":{"priority":"asap"}"#), "invalid_priority", Some("survey.priority")),
        ("numeric priority", with_guest(r#""survey":{"priority":3}"#), "invalid_json", Some("survey.priority")),
        ("long subject", with_guest(&format!(r#""survey":{{"subject":"{}"}}"#, long(201))), "invalid_field", Some("survey.subject")),
        ("language with underscore", with_guest(r#""survey":{"language":"en_US"}"#), "invalid_field", Some("survey.language")),
        ("long language", with_guest(&format!(r#""survey":{{"language":"{}"}}"#, long(36))), "invalid_field", Some("survey.language")),
        ("consent given as text", with_guest(r#""consent":{"given":"yes"}"#), "invalid_json", Some("consent.given")),
        ("verified as text", r#"{"guest":{"email":"jane@example.com","verified":"true"}}"#.into(), "invalid_json", Some("guest.verified")),
        ("unknown consent type", with_guest(r#""consent":{"given":true,"type":"verbal"}"#), "invalid_consent_type", Some("consent.type")),
        ("conversationId not a uuid", with_guest(r#""conversationId":"conv-1""#), "invalid_field", Some("conversationId")),
        ("submissionId with a space", with_guest(r#""submissionId":"a b""#), "invalid_field", Some("submissionId")),
        ("long submissionId", with_guest(&format!(r#""submissionId":"{}""#, long(129))), "invalid_field", Some("submissionId")),
        ("submittedAt not rfc3339", with_guest(r#""submittedAt":"yesterday""#), "invalid_field", Some("submittedAt")),
    ]
}

#[test]
fn every_rule_rejects_with_its_code_and_field() {
    for (name, body, code, field) in rejections() {
        let err = http(&body).expect_err(name);
        let got = (err.code, err.field.as_deref());
        assert_eq!(got, (code, field), "{name}: {}", err.message);
        assert!(
            err.message.ends_with('.'),
            "{name}: not a sentence: {}",
            err.message
        );
    }
}

#[test]
fn a_body_of_exactly_16_kib_is_accepted_and_one_byte_more_is_too_large() {
    let base = r#"{"guest":{"sessionId":"s-1"},"padding":""}"#;
    let body = base.replace(
        r#""""#,
        &format!(r#""{}""#, "x".repeat(MAX_BODY_BYTES - base.len())),
    );
    assert_eq!(body.len(), MAX_BODY_BYTES);
    assert!(http(&body).is_ok());
    let err = http(&format!("{body} ")).unwrap_err();
    assert_eq!((err.code, err.field), ("too_large", None));
}

#[test]
fn a_queue_message_without_any_submission_id_is_rejected() {
    let body = r#"{"guest":{"sessionId":"s-1"}}"#;
    let err = queue(body, None).unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        ("missing_submission_id", Some("submissionId"))
    );
    assert_eq!(
        queue(body, Some("  ")).unwrap_err().code,
        "missing_submission_id"
    );
    let err = queue(body, Some("not valid!")).unwrap_err();
    assert_eq!(
        (err.code, err.field.as_deref()),
        ("invalid_field", Some("submissionId"))
    );
}

#[test]
fn a_queue_message_takes_its_id_and_time_from_the_amqp_properties() {
    let body = r#"{"guest":{"sessionId":"s-1"}}"#;
    let sent = Utc.with_ymd_and_hms(2026, 11, 22, 9, 59, 0).unwrap();
    let origin = Origin::Queue {
        message_id: Some("msg-7".into()),
        timestamp: Some(sent),
    };
    let sub = parse_with(body, origin, &SessionHasher::new(None)).unwrap();
    assert_eq!(
        (sub.submission_id.as_str(), sub.submitted_at),
        ("msg-7", sent)
    );

    let body = r#"{"submissionId":"body-id","submittedAt":"2026-11-22T08:00:00Z","guest":{"sessionId":"s"}}"#;
    let origin = Origin::Queue {
        message_id: Some("msg-7".into()),
        timestamp: Some(sent),
    };
    let sub = parse_with(body, origin, &SessionHasher::new(None)).unwrap();
    assert_eq!(sub.submission_id, "body-id");
    assert_eq!(
        sub.submitted_at,
        Utc.with_ymd_and_hms(2026, 11, 22, 8, 0, 0).unwrap()
    );
}

#[test]
fn guest_verified_defaults_to_false_and_survives_the_round_trip() {
    for (body, verified) in [
        (r#"{"guest":{"email":"jane@example.com"}}"#, false),
        (
            r#"{"guest":{"email":"jane@example.com","verified":null}}"#,
            false,
        ),
        (
            r#"{"guest":{"email":"jane@example.com","verified":false}}"#,
            false,
        ),
        (
            r#"{"guest":{"email":"jane@example.com","verified":true}}"#,
            true,
        ),
    ] {
        let submission = http(body).unwrap();
        assert_eq!(submission.guest.verified, verified, "{body}");
        let again = queue(std::str::from_utf8(&submission.to_json()).unwrap(), None).unwrap();
        assert_eq!(again, submission, "{body}");
    }
}

#[test]
fn a_minimal_http_body_gets_every_default() {
    let sub = http(r#"{"guest":{"sessionId":"s-1"}}"#).unwrap();
    assert_eq!(sub.schema_version, 1);
    let id = uuid::Uuid::parse_str(&sub.submission_id).expect("a generated uuid");
    assert_eq!(id.get_version_num(), 4);
    assert_eq!(sub.submitted_at, now());
    assert_eq!(sub.conversation_id, None);
    assert_eq!(
        sub.survey,
        Survey {
            subject: DEFAULT_SUBJECT.into(),
            priority: Priority::Normal,
            language: None
        }
    );
    assert_eq!(
        sub.consent,
        Consent {
            given: false,
            kind: None
        }
    );
    assert!(!sub.has_consent());
}

#[test]
fn a_full_body_is_trimmed_and_normalised() {
    let body = r#"{
        "schemaVersion": 1,
        "submissionId": " sub-42 ",
        "submittedAt": "2026-11-22T12:00:00.5+02:00",
        "conversationId": "0F8FAD5B-D9CB-469F-A165-70867728950E",
        "guest": { "email": " Jane.Doe@Example.COM ", "phone": "(555) 123-4567",
                   "sessionHash": "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789" },
        "survey": { "subject": "  Billing\n", "priority": "URGENT", "language": "en-US" },
        "consent": { "given": true, "type": "Implicit" },
        "unknownField": { "ignored": [1, 2, 3] }
    }"#;
    let sub = http(body).unwrap();
    assert_eq!(sub.submission_id, "sub-42");
    assert_eq!(
        sub.submitted_at,
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap() + chrono::Duration::milliseconds(500)
    );
    assert_eq!(
        sub.conversation_id.as_deref(),
        Some("0f8fad5b-d9cb-469f-a165-70867728950e")
    );
    assert_eq!(
        sub.guest.email.as_ref().map(Email::as_str),
        Some("jane.doe@example.com")
    );
    assert_eq!(
        sub.guest.phone.as_ref().map(Phone::as_str),
        Some("+15551234567")
    );
    assert_eq!(
        sub.guest.session_hash.as_deref(),
        Some(&*"abcdef0123456789".repeat(4))
    );
    assert_eq!(
        sub.survey,
        Survey {
            subject: "Billing".into(),
            priority: Priority::Urgent,
            language: Some("en-US".into())
        }
    );
    assert_eq!(
        sub.consent,
        Consent {
            given: true,
            kind: Some(ConsentType::Implicit)
        }
    );
    assert!(sub.has_consent());
}

#[test]
fn nulls_and_blank_strings_count_as_absent() {
    let body = r#"{"schemaVersion":null,"conversationId":" ","guest":{"email":null,"sessionId":"s"},
                   "survey":{"subject":"   ","priority":"","language":null},"consent":{"given":null,"type":""}}"#;
    let sub = http(body).unwrap();
    assert_eq!((sub.conversation_id, sub.guest.email), (None, None));
    assert_eq!(sub.survey.subject, DEFAULT_SUBJECT);
    assert_eq!(sub.survey.priority, Priority::Normal);
    assert_eq!(sub.consent, Consent::default());
}

#[test]
fn lengths_are_counted_in_characters_not_bytes() {
    let subject = "é".repeat(200);
    let sub = http(&format!(
        r#"{{"guest":{{"sessionId":"s"}},"survey":{{"subject":"{subject}"}}}}"#
    ))
    .unwrap();
    assert_eq!(sub.survey.subject, subject);
    let language = "a".repeat(35);
    assert!(http(&format!(
        r#"{{"guest":{{"sessionId":"s"}},"survey":{{"language":"{language}"}}}}"#
    ))
    .is_ok());
}

#[test]
fn a_raw_session_id_is_replaced_by_its_hash_and_never_kept() {
    let sub = http(r#"{"guest":{"sessionId":"raw-browser-id","sessionHash":null}}"#).unwrap();
    assert_eq!(
        sub.guest.session_hash,
        Some(SessionHasher::new(None).hash("raw-browser-id"))
    );
    let json = String::from_utf8(sub.to_json()).unwrap();
    assert!(
        !json.contains("raw-browser-id") && !json.contains("sessionId"),
        "{json}"
    );
    assert!(!format!("{sub:?}").contains("raw-browser-id"));
}

#[test]
fn a_raw_session_id_wins_over_a_given_session_hash() {
    let hash = "ab".repeat(32);
    let body = format!(r#"{{"guest":{{"sessionId":"raw","sessionHash":"{hash}"}}}}"#);
    let sub = http(&body).unwrap();
    assert_eq!(
        sub.guest.session_hash,
        Some(SessionHasher::new(None).hash("raw"))
    );
}

#[test]
fn the_configured_key_makes_the_session_hash_an_hmac() {
    let keyed = SessionHasher::new(Some(SecretString::from("k")));
    let sub = parse_with(r#"{"guest":{"sessionId":"raw"}}"#, Origin::Http, &keyed).unwrap();
    assert_eq!(sub.guest.session_hash, Some(keyed.hash("raw")));
    assert_ne!(
        sub.guest.session_hash,
        Some(SessionHasher::new(None).hash("raw"))
    );
}

#[test]
fn error_messages_never_repeat_the_rejected_personal_data() {
    let bodies = [
        r#"{"guest":{"email":"jane.secret@"}}"#,
        r#"{"guest":{"email":"jane.secret\u0001@example.com"}}"#,
        r#"{"guest":{"phone":"+1 999 8"}}"#,
        r#"{"guest":{"phone":"9998887"}}"#,
    ];
    for body in bodies {
        let err = parse_with(body, Origin::Http, &SessionHasher::new(None)).unwrap_err();
        let ctx_free = ParseContext {
            origin: Origin::Http,
            now: now(),
            hasher: &SessionHasher::new(None),
            default_phone_region: None,
        };
        let no_region = parse_submission(body.as_bytes(), &ctx_free).unwrap_err();
        for message in [err.message, no_region.message] {
            assert!(
                !message.contains("jane.secret") && !message.contains("999"),
                "{message}"
            );
        }
    }
}

#[test]
fn a_phone_without_country_code_needs_a_default_region() {
    let body = r#"{"guest":{"phone":"415 555 2671"}}"#;
    assert_eq!(
        http(body).unwrap().guest.phone.unwrap().as_str(),
        "+14155552671"
    );
    let ctx = ParseContext {
        origin: Origin::Http,
        now: now(),
        hasher: &SessionHasher::new(None),
        default_phone_region: None,
    };
    let err = parse_submission(body.as_bytes(), &ctx).unwrap_err();
    assert!(
        err.code == "invalid_phone" && err.message.contains("country code"),
        "{}",
        err.message
    );
}

#[test]
fn priorities_read_any_case_and_write_lower_case() {
    for (raw, priority) in [
        ("low", Priority::Low),
        (" Normal ", Priority::Normal),
        ("HIGH", Priority::High),
        ("urgent", Priority::Urgent),
    ] {
        assert_eq!(Priority::parse(raw), Some(priority));
        assert_eq!(serde_json::to_value(priority).unwrap(), priority.as_str());
    }
    assert_eq!(Priority::parse("critical"), None);
    assert_eq!(ConsentType::Implicit.as_str(), "implicit");
}

mod roundtrip;

#[test]
fn a_submitted_at_more_than_five_minutes_ahead_of_the_service_is_taken_as_now() {
    for (ahead_secs, kept) in [
        (-7200, true),
        (0, true),
        (299, true),
        (300, true),
        (301, false),
        (3 * 3600, false),
        (400 * 86_400, false),
    ] {
        let at = now() + chrono::Duration::seconds(ahead_secs);
        let body = format!(
            r#"{{"submissionId":"s-1","submittedAt":"{}","guest":{{"sessionId":"s"}}}}"#,
            at.to_rfc3339()
        );
        let expected = if kept { at } else { now() };
        assert_eq!(
            http(&body).unwrap().submitted_at,
            expected,
            "http, {ahead_secs}s ahead"
        );
        assert_eq!(
            queue(&body, None).unwrap().submitted_at,
            expected,
            "queue, {ahead_secs}s ahead"
        );
    }
    // The same bound for an AMQP timestamp standing in for submittedAt.
    let origin = Origin::Queue {
        message_id: Some("msg-1".into()),
        timestamp: Some(now() + chrono::Duration::hours(2)),
    };
    let body = r#"{"guest":{"sessionId":"s"}}"#;
    let sub = parse_with(body, origin, &SessionHasher::new(None)).unwrap();
    assert_eq!(sub.submitted_at, now());
}
