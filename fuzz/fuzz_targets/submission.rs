//! Fuzzes `parse_submission`, the validator every body goes through (HTTP ingest and the
//! worker, for messages published straight to RabbitMQ).
//!
//! The first byte picks the context (HTTP or queue origin, AMQP `message_id` and `timestamp`
//! present or not, keyed session hashing, the default phone region) and whether the rest is
//! a raw body or drives a structured generator that builds a JSON object with the real field
//! names and tricky values (the generator reaches the validators much faster than raw bytes).
//!
//! On every input: no panic. On every `Ok`: the invariants in README, "The submission" hold, the raw
//! `guest.sessionId` is nowhere in what would be published and influences nothing but the
//! hash, and the published JSON parses back (as a queue message) to an equal value. On every
//! `Err`: a code, a message, and no trace of the raw session id.

#![no_main]

use chrono::{DateTime, TimeZone, Utc};
use libfuzzer_sys::arbitrary::{Arbitrary, Result as ArbitraryResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use prechat_enricher::privacy::SessionHasher;
use prechat_enricher::submission::{
    parse_submission, Origin, ParseContext, Submission, ValidationError, MAX_BODY_BYTES,
};
use serde_json::{json, Map, Value};

const MAX_SUBJECT_CHARS: usize = 200;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let mut u = Unstructured::new(rest);
    let region = match (flags >> 4) & 3 {
        0 => None,
        1 => Some(phonenumber::country::Id::US),
        2 => Some(phonenumber::country::Id::GB),
        _ => Some(phonenumber::country::Id::DE),
    };
    let hasher = if flags & 8 != 0 {
        SessionHasher::new(Some("fuzz-hash-key".to_string().into()))
    } else {
        SessionHasher::new(None)
    };
    let origin = if flags & 1 != 0 {
        let message_id = (flags & 2 != 0).then(|| pick_message_id(&mut u).unwrap_or_default());
        let timestamp = if flags & 4 != 0 {
            amqp_timestamp(&mut u).unwrap_or(None)
        } else {
            None
        };
        Origin::Queue {
            message_id,
            timestamp,
        }
    } else {
        Origin::Http
    };
    let body: Vec<u8> = if flags & 64 != 0 {
        match structured_body(&mut u) {
            Ok(value) => serde_json::to_vec(&value).unwrap(),
            Err(_) => return,
        }
    } else {
        u.take_rest().to_vec()
    };
    let ctx = ParseContext {
        origin,
        now: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
        hasher: &hasher,
        default_phone_region: region,
    };
    let result = parse_submission(&body, &ctx);
    let input: Option<Value> = serde_json::from_slice(&body).ok();
    match &result {
        Ok(submission) => check_accepted(submission, &body, input.as_ref(), &ctx),
        Err(error) => check_rejected(error, &body),
    }
    session_id_only_reaches_the_hash(input, &ctx);
});

/// What an accepted submission must look like (README, "The submission").
fn check_accepted(s: &Submission, body: &[u8], input: Option<&Value>, ctx: &ParseContext) {
    assert!(body.len() <= MAX_BODY_BYTES, "accepted a body over 16 KiB");
    assert_eq!(s.schema_version, 1);
    let id = &s.submission_id;
    assert!(
        !id.is_empty()
            && id.chars().count() <= 128
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')),
        "bad submissionId {id:?}"
    );
    // RFC 3339 has four-digit years only: anything else is written as "+10000-…" and then
    // refused by the parser itself.
    assert!(
        (0..=9999).contains(&chrono::Datelike::year(&s.submitted_at)),
        "accepted submittedAt {} (not expressible in RFC 3339)",
        s.submitted_at
    );
    if let Some(conversation) = &s.conversation_id {
        let parsed = uuid::Uuid::parse_str(conversation).expect("conversationId is a UUID");
        assert_eq!(
            conversation,
            &parsed.hyphenated().to_string(),
            "conversationId not normalised"
        );
    }
    let guest = &s.guest;
    assert!(
        guest.email.is_some() || guest.phone.is_some() || guest.session_hash.is_some(),
        "accepted without any identifier"
    );
    if let Some(email) = &guest.email {
        let email = email.as_str();
        assert_eq!(email, email.to_lowercase(), "email not lower-cased");
        assert!(email.contains('@'), "email without @");
        assert_eq!(email, email.trim(), "email not trimmed");
        assert!(
            !email.chars().any(char::is_control),
            "control character in email"
        );
    }
    if let Some(phone) = &guest.phone {
        let phone = phone.as_str();
        let digits = phone.strip_prefix('+').expect("phone starts with +");
        assert!(
            !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()),
            "phone {phone:?} is not + and digits"
        );
    }
    if let Some(hash) = &guest.session_hash {
        assert!(
            hash.len() == 64 && hash.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')),
            "session hash {hash:?} is not 64 lower-case hex digits"
        );
    }
    let subject = &s.survey.subject;
    assert!(
        subject.chars().count() <= MAX_SUBJECT_CHARS,
        "subject of {} chars",
        subject.chars().count()
    );
    assert!(!subject.is_empty(), "empty subject");
    assert_eq!(subject, subject.trim(), "subject not trimmed");
    assert!(
        !subject.chars().any(char::is_control),
        "control character in subject"
    );
    if let Some(language) = &s.survey.language {
        assert!(
            !language.is_empty()
                && language.len() <= 35
                && language
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'),
            "bad language {language:?}"
        );
    }
    if s.guest.verified {
        let verified = input
            .and_then(|v| v.get("guest"))
            .and_then(|g| g.get("verified"));
        assert_eq!(
            verified,
            Some(&Value::Bool(true)),
            "a verified guest without guest.verified == true"
        );
    }
    if s.consent.given {
        let given = input
            .and_then(|v| v.get("consent"))
            .and_then(|c| c.get("given"));
        assert_eq!(
            given,
            Some(&Value::Bool(true)),
            "consent without consent.given == true"
        );
    }

    // What would be published: no raw session id, no nulls, and it parses back equal.
    let published = s.to_json();
    let value: Value = serde_json::from_slice(&published).expect("to_json is JSON");
    let guest_keys: Vec<&String> = value["guest"]
        .as_object()
        .expect("guest object")
        .keys()
        .collect();
    assert!(
        guest_keys
            .iter()
            .all(|k| matches!(k.as_str(), "email" | "phone" | "sessionHash" | "verified")),
        "unexpected guest keys in the published body: {guest_keys:?}"
    );
    if let Some(raw) = raw_session_id(input) {
        let expected = ctx.hasher.hash(raw.trim());
        assert_eq!(
            guest.session_hash.as_deref(),
            Some(expected.as_str()),
            "the session hash is not the hash of guest.sessionId"
        );
    }
    let queue_ctx = ParseContext {
        origin: Origin::Queue {
            message_id: None,
            timestamp: None,
        },
        now: ctx.now + chrono::Duration::hours(1),
        hasher: ctx.hasher,
        default_phone_region: ctx.default_phone_region,
    };
    match parse_submission(&published, &queue_ctx) {
        Ok(again) => assert_eq!(&again, s, "the published body parses back different"),
        Err(error) => panic!(
            "the published body is rejected on the queue: {} ({:?}) — body {}",
            error.code,
            error.field,
            String::from_utf8_lossy(&published)
        ),
    }
}

fn check_rejected(error: &ValidationError, body: &[u8]) {
    assert!(!error.code.is_empty() && !error.message.is_empty());
    if body.len() > MAX_BODY_BYTES {
        assert_eq!(error.code, "too_large");
    }
}

fn raw_session_id(input: Option<&Value>) -> Option<&str> {
    input?
        .get("guest")?
        .get("sessionId")?
        .as_str()
        .filter(|raw| !raw.trim().is_empty())
}

/// Differential check: replacing a plain ASCII `guest.sessionId` by another of the same
/// length must change nothing but the session hash: not the outcome, not the error message,
/// not any other field. Otherwise the raw id leaks into a message or a field.
fn session_id_only_reaches_the_hash(input: Option<Value>, ctx: &ParseContext) {
    let Some(mut input) = input else { return };
    let Some(raw) = raw_session_id(Some(&input)).map(str::to_owned) else {
        return;
    };
    let plain = raw
        .chars()
        .all(|c| (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ');
    if !plain {
        return;
    }
    let trimmed = raw.trim();
    let other: String = trimmed
        .chars()
        .map(|c| if c == 'q' { 'z' } else { 'q' })
        .collect();
    let other = raw.replacen(trimmed, &other, 1);
    input["guest"]["sessionId"] = Value::String(other);
    let body = serde_json::to_vec(&input).unwrap();
    if body.len() > MAX_BODY_BYTES {
        return;
    }
    let original = serde_json::to_vec(&{
        let mut v = input.clone();
        v["guest"]["sessionId"] = Value::String(raw.clone());
        v
    })
    .unwrap();
    // Compare like with like: both bodies as serde_json writes them.
    let first = parse_submission(&original, ctx);
    let second = parse_submission(&body, ctx);
    match (first, second) {
        (Ok(mut a), Ok(b)) => {
            assert_ne!(
                a.guest.session_hash, b.guest.session_hash,
                "different ids, same hash"
            );
            a.guest.session_hash = b.guest.session_hash.clone();
            // Over HTTP, an absent or blank submissionId is generated afresh on each parse.
            let generated = matches!(ctx.origin, Origin::Http)
                && input.get("submissionId").is_none_or(|id| {
                    id.is_null() || id.as_str().is_some_and(|s| s.trim().is_empty())
                });
            if generated {
                a.submission_id = b.submission_id.clone();
            }
            assert_eq!(a, b, "the raw session id influenced more than the hash");
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "the raw session id shows in the rejection");
        }
        (a, b) => panic!(
            "the session id's value decided acceptance: {:?} vs {:?}",
            a.map(|_| ()),
            b.map(|_| ())
        ),
    }
}

/// An AMQP `timestamp` (unsigned seconds) as the worker converts it: plausible seconds,
/// milliseconds by mistake (`Date.now()`), or any 64-bit value.
fn amqp_timestamp(u: &mut Unstructured) -> ArbitraryResult<Option<DateTime<Utc>>> {
    let raw = u64::arbitrary(u)?;
    let seconds = match u.int_in_range(0..=2)? {
        0 => raw % 4_102_444_800,
        1 => 1_600_000_000_000 + raw % 400_000_000_000,
        _ => raw,
    };
    Ok(DateTime::from_timestamp(seconds as i64, 0))
}

/// An AMQP `message_id`: a plausible id, or anything.
fn pick_message_id(u: &mut Unstructured) -> ArbitraryResult<String> {
    Ok(match u.int_in_range(0..=3)? {
        0 => "2f1c7a0e-8f7e-4a51-9d7b-0a3c5e1d2b4f".to_string(),
        1 => String::new(),
        2 => "  id-with-spaces  ".to_string(),
        _ => String::arbitrary(u)?,
    })
}

/// One of `pool`, an arbitrary string, or one of them padded or spiked.
fn string(u: &mut Unstructured, pool: &[&str]) -> ArbitraryResult<String> {
    let base = match u.int_in_range(0..=3)? {
        0 | 1 if !pool.is_empty() => u.choose(pool)?.to_string(),
        2 => String::arbitrary(u)?,
        _ => {
            let n = u.int_in_range(0..=300)?;
            let c = *u.choose(&['a', 'é', '字', ' ', '\u{a0}', '-', '9', '😀'])?;
            std::iter::repeat_n(c, n).collect()
        }
    };
    Ok(match u.int_in_range(0..=5)? {
        0 => format!(" {base}\t"),
        1 => {
            let spike = *u.choose(&[
                '\n', '\u{7f}', '\u{0}', '\u{85}', '\u{2028}', '\u{feff}', '\u{200b}', '\u{1b}',
            ])?;
            let at = u.int_in_range(0..=base.chars().count())?;
            let mut s: String = base.chars().take(at).collect();
            s.push(spike);
            s.extend(base.chars().skip(at));
            s
        }
        _ => base,
    })
}

/// A JSON value for a field: usually a string (from `pool` or arbitrary), sometimes another type.
fn field(u: &mut Unstructured, pool: &[&str]) -> ArbitraryResult<Option<Value>> {
    Ok(match u.int_in_range(0..=9)? {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(json!(i64::arbitrary(u)?)),
        3 => Some(json!(bool::arbitrary(u)?)),
        4 => Some(json!([string(u, pool)?])),
        _ => Some(Value::String(string(u, pool)?)),
    })
}

/// A field name and the pool its values come from.
type Field<'a> = (&'a str, &'a [&'a str]);

fn object(u: &mut Unstructured, fields: &[Field]) -> ArbitraryResult<Option<Value>> {
    Ok(match u.int_in_range(0..=9)? {
        0 => None,
        1 => Some(Value::Null),
        2 => Some(Value::String(string(u, &[])?)),
        _ => {
            let mut map = Map::new();
            for (key, pool) in fields {
                if let Some(value) = field(u, pool)? {
                    map.insert((*key).to_string(), value);
                }
            }
            Some(Value::Object(map))
        }
    })
}

const EMAILS: &[&str] = &[
    "jane@example.com",
    "Jane.Doe+Tag@Example.COM",
    "a@b.io",
    "a@b",
    "a@[192.168.0.1]",
    "Jane <jane@example.com>",
    "\"quoted local\"@example.com",
    "jane@@example.com",
    "ÜSER@bücher.de",
    "x@-bad-.com",
];
const PHONES: &[&str] = &[
    "+15551234567",
    "+1 (555) 123-4567",
    "+44 20 7946 0958",
    "5551234567",
    "020 7946 0958",
    "+1 555 123 4567 ext. 89",
    "+49 30 123456789012",
    "+800 1234 5678",
    "+0",
    "+",
    "++15551234567",
    "+1555123456789012345678",
    "tel:+1-555-123-4567",
    "+٩٩٩١٢٣٤٥٦٧",
];
const SESSIONS: &[&str] = &["raw-browser-id", "s", "q", "General Inquiry"];
const HASHES: &[&str] = &[
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
];
const SUBJECTS: &[&str] = &["Billing", "General Inquiry", ""];
const PRIORITIES: &[&str] = &["low", "normal", "HIGH", " urgent ", "critical"];
const LANGUAGES: &[&str] = &[
    "en-US",
    "fr",
    "zh-Hant-TW",
    "en_US",
    "x-klingon-very-long-language-tag-value",
];
const CONSENT_TYPES: &[&str] = &["explicit", "Implicit", "opt-in"];
const IDS: &[&str] = &[
    "2f1c7a0e-8f7e-4a51-9d7b-0a3c5e1d2b4f",
    "abc.DEF_123:xyz-9",
    "has space",
    "ü",
];
const CONVERSATIONS: &[&str] = &[
    "0f8fad5b-d9cb-469f-a165-70867728950e",
    "0F8FAD5B-D9CB-469F-A165-70867728950E",
    "{0f8fad5b-d9cb-469f-a165-70867728950e}",
    "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
    "0f8fad5bd9cb469fa16570867728950e",
    "not-a-uuid",
];
const TIMES: &[&str] = &[
    "2026-11-22T10:00:00Z",
    "2026-11-22T12:00:00.123456789+02:00",
    "2026-11-22 10:00:00",
    "+275760-09-13T00:00:00Z",
    "1969-12-31T23:59:60Z",
];

/// A body with the real field names and adversarial values.
fn structured_body(u: &mut Unstructured) -> ArbitraryResult<Value> {
    let mut root = Map::new();
    match u.int_in_range(0..=5)? {
        0 => {}
        1 => {
            root.insert("schemaVersion".into(), json!(1));
        }
        2 => {
            root.insert("schemaVersion".into(), json!(1.0));
        }
        3 => {
            root.insert("schemaVersion".into(), json!(u64::arbitrary(u)?));
        }
        4 => {
            root.insert("schemaVersion".into(), json!(-1));
        }
        _ => {
            root.insert("schemaVersion".into(), Value::String("1".into()));
        }
    }
    for (key, pool) in [
        ("submissionId", IDS),
        ("submittedAt", TIMES),
        ("conversationId", CONVERSATIONS),
    ] {
        if let Some(value) = field(u, pool)? {
            root.insert(key.into(), value);
        }
    }
    let parts: [(&str, &[Field]); 3] = [
        (
            "guest",
            &[
                ("email", EMAILS),
                ("phone", PHONES),
                ("sessionId", SESSIONS),
                ("sessionHash", HASHES),
            ],
        ),
        (
            "survey",
            &[
                ("subject", SUBJECTS),
                ("priority", PRIORITIES),
                ("language", LANGUAGES),
            ],
        ),
        ("consent", &[("type", CONSENT_TYPES)]),
    ];
    for (key, fields) in parts {
        if let Some(value) = object(u, fields)? {
            root.insert(key.into(), value);
        }
    }
    if let Some(Value::Object(consent)) = root.get_mut("consent") {
        match u.int_in_range(0..=4)? {
            0 => {}
            1 => {
                consent.insert("given".into(), json!(false));
            }
            2 => {
                consent.insert("given".into(), Value::String("true".into()));
            }
            _ => {
                consent.insert("given".into(), json!(true));
            }
        }
    }
    if let Some(Value::Object(guest)) = root.get_mut("guest") {
        match u.int_in_range(0..=4)? {
            0 => {}
            1 => {
                guest.insert("verified".into(), json!(false));
            }
            2 => {
                guest.insert("verified".into(), Value::String("true".into()));
            }
            3 => {
                guest.insert("verified".into(), Value::Null);
            }
            _ => {
                guest.insert("verified".into(), json!(true));
            }
        }
    }
    if bool::arbitrary(u)? {
        root.insert("unknownField".into(), json!({"nested": [1, 2, 3]}));
    }
    Ok(Value::Object(root))
}
