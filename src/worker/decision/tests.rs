use super::*;
use crate::genesys::ErrorBody;
use proptest::prelude::*;

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_secs(1),
        max_delay: Duration::from_secs(60),
        deadline: Duration::from_secs(900),
        outage_delay: Duration::from_secs(5),
    }
}

fn at(number: u32, age_secs: i64) -> Attempt {
    let deadline_from = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    Attempt {
        number,
        deadline_from,
        now: deadline_from + chrono::Duration::seconds(age_secs),
        jitter: 0.0,
        outage: false,
    }
}

fn body(code: &str) -> ErrorBody {
    ErrorBody {
        message: Some(format!("{code} happened")),
        code: Some(code.into()),
        status: None,
        context_id: Some("ctx-1".into()),
    }
}

fn unavailable() -> Failure {
    Failure::Genesys(GenesysError::Unavailable {
        status: Some(503),
        reason: "answered 503".into(),
        body: Some(body("service.unavailable")),
    })
}

fn class_of(decision: &Decision) -> Option<&'static str> {
    match decision {
        Decision::DeadLetter(d) => Some(d.class.as_str()),
        _ => None,
    }
}

#[test]
fn every_outcome_maps_to_the_decision_of_the_failure_policy() {
    let retry = |next_attempt, secs: f64, cause| Decision::Retry {
        next_attempt,
        delay: Duration::from_secs_f64(secs),
        cause,
    };
    let cases: Vec<(&str, Result<Done, Failure>, Attempt, Decision)> = vec![
        (
            "enriched acks",
            Ok(Done::Enriched {
                patched: true,
                written: Default::default(),
                contact_pending: false,
            }),
            at(1, 0),
            Decision::Ack,
        ),
        (
            "already written acks",
            Ok(Done::Enriched {
                patched: false,
                written: Default::default(),
                contact_pending: false,
            }),
            at(3, 0),
            Decision::Ack,
        ),
        (
            "no conversation id parks",
            Ok(Done::AwaitingConversation),
            at(1, 0),
            Decision::Await,
        ),
        (
            "5xx on the first attempt retries after half the base delay",
            Err(unavailable()),
            at(1, 0),
            retry(2, 0.5, "genesys_unavailable"),
        ),
        (
            "5xx on the third attempt backs off exponentially",
            Err(unavailable()),
            at(3, 0),
            retry(4, 2.0, "genesys_unavailable"),
        ),
        (
            "crm down in retry mode retries",
            Err(Failure::CrmUnavailable),
            at(2, 0),
            retry(3, 1.0, "crm_unavailable"),
        ),
        (
            "429 retries without counting an attempt",
            Err(Failure::Genesys(GenesysError::RateLimited {
                retry_after: Duration::from_secs(7),
            })),
            at(4, 0),
            retry(4, 7.0, "rate_limited"),
        ),
        (
            "an abandoned attempt, should it be decided, is the same attempt again",
            Err(Failure::Abandoned),
            at(5, 0),
            retry(5, 5.0, "abandoned"),
        ),
        (
            "missing conversation retries before the deadline",
            Err(Failure::ConversationNotFound),
            at(2, 60),
            retry(3, 1.0, "conversation_not_found"),
        ),
        (
            "a retry never waits past the deadline",
            Err(Failure::ConversationNotFound),
            at(9, 899),
            retry(10, 1.0, "conversation_not_found"),
        ),
    ];
    for (name, result, attempt, expected) in cases {
        let decision = decide(result.as_ref(), &attempt, &policy());
        assert_eq!(decision, expected, "{name}");
    }
}

#[test]
fn failures_that_retrying_cannot_fix_are_dead_lettered_with_their_class() {
    let cases: Vec<(&str, Failure, Attempt, &str)> = vec![
        (
            "invalid body",
            Failure::InvalidPayload {
                reason: "not JSON".into(),
            },
            at(1, 0),
            "invalid_payload",
        ),
        (
            "400",
            Failure::Genesys(GenesysError::Rejected {
                status: 400,
                body: body("bad.request"),
            }),
            at(1, 0),
            "genesys_rejected",
        ),
        (
            "404 on write",
            Failure::Genesys(GenesysError::NotFound {
                body: body("not.found"),
            }),
            at(1, 0),
            "genesys_rejected",
        ),
        (
            "403",
            Failure::Genesys(GenesysError::Forbidden {
                body: body("missing.permissions"),
            }),
            at(1, 0),
            "genesys_forbidden",
        ),
        (
            "no customer",
            Failure::ConversationGone {
                reason: "no customer participant".into(),
            },
            at(1, 0),
            "conversation_not_found",
        ),
        (
            "5xx at max attempts",
            unavailable(),
            at(5, 0),
            "retries_exhausted",
        ),
        (
            "401 after a fresh token at max attempts",
            Failure::Genesys(GenesysError::Unauthorized {
                status: 401,
                body: body("bad.credentials"),
            }),
            at(5, 0),
            "retries_exhausted",
        ),
        (
            "crm down at max attempts",
            Failure::CrmUnavailable,
            at(5, 0),
            "retries_exhausted",
        ),
        (
            "missing conversation past the deadline",
            Failure::ConversationNotFound,
            at(2, 900),
            "expired",
        ),
    ];
    for (name, failure, attempt, class) in cases {
        let decision = decide(Err(&failure), &attempt, &policy());
        assert_eq!(class_of(&decision), Some(class), "{name}: {decision:?}");
    }
}

#[test]
fn a_genesys_dead_letter_keeps_status_code_message_and_context_id() {
    let failure = Failure::Genesys(GenesysError::Rejected {
        status: 400,
        body: body("bad.request"),
    });
    let Decision::DeadLetter(dead) = decide(Err(&failure), &at(1, 0), &policy()) else {
        panic!("not dead-lettered")
    };
    assert_eq!(dead.status, Some(400));
    assert_eq!(dead.code.as_deref(), Some("bad.request"));
    assert_eq!(dead.message, "bad.request happened");
    assert_eq!(dead.context_id.as_deref(), Some("ctx-1"));
}

#[test]
fn a_genesys_dead_letter_masks_emails_and_phones_in_the_message() {
    let rejected = Failure::Genesys(GenesysError::Rejected {
        status: 400,
        body: ErrorBody {
            message: Some("phone +15551234567 of jane.doe@example.com is invalid".into()),
            code: Some("bad.request".into()),
            status: Some(400),
            context_id: None,
        },
    });
    let unavailable = Failure::Genesys(GenesysError::Unavailable {
        status: Some(502),
        reason: "proxy said: no route for jane.doe@example.com".into(),
        body: None,
    });
    for (failure, attempt) in [(rejected, 1), (unavailable, 5)] {
        let Decision::DeadLetter(dead) = decide(Err(&failure), &at(attempt, 0), &policy()) else {
            panic!("not dead-lettered")
        };
        assert!(
            !dead.message.contains("jane.doe@example.com"),
            "{}",
            dead.message
        );
        assert!(!dead.message.contains("5551234567"), "{}", dead.message);
    }
}

#[test]
fn during_an_outage_systemic_failures_retry_without_burning_an_attempt() {
    let mut state = at(5, 0);
    state.outage = true;
    let decision = decide(Err(&unavailable()), &state, &policy());
    assert_eq!(
        decision,
        Decision::Retry {
            next_attempt: 5,
            delay: Duration::from_secs(5),
            cause: "outage"
        }
    );
    let rejected = Failure::Genesys(GenesysError::Rejected {
        status: 400,
        body: body("bad.request"),
    });
    assert_eq!(
        class_of(&decide(Err(&rejected), &state, &policy())),
        Some("genesys_rejected")
    );
}

#[test]
fn error_classes_round_trip_through_their_header_values() {
    for class in ErrorClass::ALL {
        assert_eq!(ErrorClass::parse(class.as_str()), Some(class));
    }
    assert_eq!(ErrorClass::parse("nope"), None);
}

#[test]
fn backoff_is_half_fixed_and_half_jitter() {
    let ms = |attempt, jitter| policy().backoff(attempt, jitter).as_millis();
    assert_eq!(ms(1, 0.0), 500);
    assert_eq!(ms(1, 0.5), 750);
    assert_eq!(ms(3, 0.0), 2_000);
    assert_eq!(ms(3, 0.999), 3_998);
    assert_eq!(ms(10, 0.0), 30_000);
    assert_eq!(ms(10, 1.0), 60_000);
    assert_eq!(ms(u32::MAX, 0.5), 45_000);
}

proptest! {
    #[test]
    fn backoff_stays_within_the_literal_bounds_of_its_attempt(attempt in 1u32..100, jitter in 0.0f64..1.0) {
        // base 1 s doubling, capped at 60 s: attempt 1 → [0.5, 1] s, 2 → [1, 2], …, 7+ → [30, 60].
        let (low, high) = match attempt {
            1 => (500, 1_000),
            2 => (1_000, 2_000),
            3 => (2_000, 4_000),
            4 => (4_000, 8_000),
            5 => (8_000, 16_000),
            6 => (16_000, 32_000),
            _ => (30_000, 60_000),
        };
        let delay = policy().backoff(attempt, jitter).as_millis();
        prop_assert!(delay >= low && delay <= high, "attempt {} gave {} ms", attempt, delay);
    }

    #[test]
    fn a_retryable_failure_is_never_retried_past_max_attempts(attempt in 1u32..20, jitter in 0.0f64..1.0) {
        let mut state = at(attempt, 0);
        state.jitter = jitter;
        match decide(Err(&unavailable()), &state, &policy()) {
            Decision::Retry { next_attempt, .. } => prop_assert!(attempt < 5 && next_attempt == attempt + 1),
            Decision::DeadLetter(d) => prop_assert!(attempt >= 5 && d.class == ErrorClass::RetriesExhausted),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
    }
}

#[test]
fn a_pending_contact_is_retried_until_the_last_attempt_then_the_submission_is_done() {
    let done = Done::Enriched {
        patched: true,
        written: Default::default(),
        contact_pending: true,
    };
    match decide(Ok(&done), &at(1, 0), &policy()) {
        Decision::Retry {
            next_attempt,
            cause,
            ..
        } => assert_eq!((next_attempt, cause), (2, CONTACT_PENDING)),
        other => panic!("{other:?}"),
    }
    assert_eq!(decide(Ok(&done), &at(5, 0), &policy()), Decision::Ack);
}
