//! [`parse_submission`]: from body bytes to a [`Submission`], or the first rule it breaks.
//!
//! The body is read as a `serde_json::Value` and walked by hand, field by field in a fixed
//! order, so that each rejection names its JSON path and carries its own code and sentence.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{
    Consent, ConsentType, Guest, Origin, ParseContext, Priority, Submission, Survey,
    ValidationError, DEFAULT_SUBJECT, MAX_BODY_BYTES, SCHEMA_VERSION,
};
use crate::privacy::{Email, Phone};

const MAX_SUBJECT_CHARS: usize = 200;
const MAX_LANGUAGE_CHARS: usize = 35;
const MAX_SESSION_ID_CHARS: usize = 256;
const MAX_SUBMISSION_ID_CHARS: usize = 128;
/// How far ahead of the service's clock a `submittedAt` is believed; later is taken as now.
const MAX_CLOCK_AHEAD: chrono::Duration = chrono::Duration::minutes(5);

fn reject(code: &'static str, field: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(code, message, Some(field))
}

/// Validates and normalises a submission body (README, "The submission"): trims strings, hashes a raw
/// `guest.sessionId`, normalises email and phone, and fills the defaults.
pub fn parse_submission(body: &[u8], ctx: &ParseContext) -> Result<Submission, ValidationError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ValidationError::new(
            "too_large",
            format!("The submission is larger than {MAX_BODY_BYTES} bytes; send a smaller body."),
            None,
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let message = format!(
            "The body is not valid JSON (error at line {}, column {}); send a JSON object.",
            e.line(),
            e.column()
        );
        ValidationError::new("invalid_json", message, None)
    })?;
    let Value::Object(root) = &value else {
        let message = "The body must be a JSON object, such as {\"guest\": {…}}.";
        return Err(ValidationError::new("invalid_json", message, None));
    };

    check_schema_version(root.get("schemaVersion"))?;
    let submission_id = submission_id(root, ctx)?;
    let submitted_at = submitted_at(root, ctx)?;
    let conversation_id = conversation_id(root)?;
    let guest = guest(root.get("guest"), ctx)?;
    let survey = survey(root.get("survey"))?;
    let consent = consent(root.get("consent"))?;

    Ok(Submission {
        schema_version: SCHEMA_VERSION,
        submission_id,
        submitted_at,
        conversation_id,
        guest,
        survey,
        consent,
    })
}

fn check_schema_version(value: Option<&Value>) -> Result<(), ValidationError> {
    const FIELD: &str = "schemaVersion";
    match value {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Number(n)) if n.as_u64() == Some(u64::from(SCHEMA_VERSION)) => Ok(()),
        Some(Value::Number(n)) => Err(reject(
            "unsupported_schema_version",
            FIELD,
            format!("schemaVersion {n} is not supported; send schemaVersion {SCHEMA_VERSION} or leave it out."),
        )),
        Some(_) => Err(reject("invalid_json", FIELD, "schemaVersion must be a number.")),
    }
}

fn submission_id(root: &Map<String, Value>, ctx: &ParseContext) -> Result<String, ValidationError> {
    const FIELD: &str = "submissionId";
    let valid = |id: &str| {
        id.chars().count() <= MAX_SUBMISSION_ID_CHARS
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-'))
    };
    let rule = "1 to 128 characters, each a letter, digit, '.', '_', ':' or '-'";
    if let Some(id) = text(Some(root), FIELD, FIELD)? {
        if !valid(&id) {
            return Err(reject(
                "invalid_field",
                FIELD,
                format!("submissionId must be {rule}."),
            ));
        }
        return Ok(id);
    }
    match &ctx.origin {
        Origin::Http => Ok(uuid::Uuid::new_v4().to_string()),
        Origin::Queue { message_id, .. } => match message_id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() && valid(id) => Ok(id.to_owned()),
            Some(id) if !id.is_empty() => Err(reject(
                "invalid_field",
                FIELD,
                format!("The AMQP message_id, used as the submissionId, must be {rule}."),
            )),
            _ => Err(reject(
                "missing_submission_id",
                FIELD,
                "A submission published to RabbitMQ needs a submissionId, in the body or as the AMQP message_id.",
            )),
        },
    }
}

fn submitted_at(
    root: &Map<String, Value>,
    ctx: &ParseContext,
) -> Result<DateTime<Utc>, ValidationError> {
    const FIELD: &str = "submittedAt";
    // A client clock far ahead (or an AMQP timestamp in milliseconds, a common client
    // mistake) is not believed: the submission was made now.
    let not_ahead = |t: DateTime<Utc>| match t > ctx.now + MAX_CLOCK_AHEAD {
        true => ctx.now,
        false => t,
    };
    if let Some(raw) = text(Some(root), FIELD, FIELD)? {
        let message = "submittedAt must be an RFC 3339 timestamp such as 2026-11-22T10:00:00Z.";
        return DateTime::parse_from_rfc3339(&raw)
            .map(|t| t.with_timezone(&Utc))
            .ok()
            .filter(representable)
            .map(not_ahead)
            .ok_or_else(|| reject("invalid_field", FIELD, message));
    }
    Ok(match &ctx.origin {
        Origin::Queue {
            timestamp: Some(t), ..
        } if representable(t) => not_ahead(*t),
        _ => ctx.now,
    })
}

/// A time whose UTC form RFC 3339 can write (years 0000–9999), so that what is published
/// parses again.
fn representable(t: &DateTime<Utc>) -> bool {
    use chrono::Datelike;
    (0..=9999).contains(&t.year())
}

fn conversation_id(root: &Map<String, Value>) -> Result<Option<String>, ValidationError> {
    const FIELD: &str = "conversationId";
    let Some(raw) = text(Some(root), FIELD, FIELD)? else {
        return Ok(None);
    };
    uuid::Uuid::parse_str(&raw)
        .map(|id| Some(id.hyphenated().to_string()))
        .map_err(|_| {
            let message = "conversationId must be a Genesys conversation UUID, such as 0f8fad5b-d9cb-469f-a165-70867728950e.";
            reject("invalid_field", FIELD, message)
        })
}

fn guest(value: Option<&Value>, ctx: &ParseContext) -> Result<Guest, ValidationError> {
    let obj = object(value, "guest")?;
    let email = text(obj, "email", "guest.email")?
        .map(|raw| Email::parse(&raw))
        .transpose()
        .map_err(|e| reject("invalid_email", "guest.email", format!("guest.email {e}.")))?;
    let phone = text(obj, "phone", "guest.phone")?
        .map(|raw| Phone::parse(&raw, ctx.default_phone_region))
        .transpose()
        .map_err(|e| reject("invalid_phone", "guest.phone", format!("guest.phone {e}.")))?;
    let session_hash = session_hash(obj, ctx)?;
    if email.is_none() && phone.is_none() && session_hash.is_none() {
        return Err(reject(
            "missing_identifier",
            "guest",
            "The guest needs at least one of guest.email, guest.phone or guest.sessionId.",
        ));
    }
    let verified = match obj.and_then(|o| o.get("verified")) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(verified)) => *verified,
        Some(_) => {
            let message = "guest.verified must be true or false (a JSON boolean).";
            return Err(reject("invalid_json", "guest.verified", message));
        }
    };
    Ok(Guest {
        email,
        phone,
        session_hash,
        verified,
    })
}

/// The session hash: the hash of a raw `guest.sessionId` when one is given (the raw id is
/// dropped here, never stored, published or logged), else an already hashed
/// `guest.sessionHash`, as republished retries carry.
fn session_hash(
    obj: Option<&Map<String, Value>>,
    ctx: &ParseContext,
) -> Result<Option<String>, ValidationError> {
    let given_hash = text(obj, "sessionHash", "guest.sessionHash")?;
    if let Some(hash) = &given_hash {
        if hash.len() != 64 || !hash.chars().all(|c| c.is_ascii_hexdigit()) {
            let message = "guest.sessionHash must be 64 hexadecimal characters (a SHA-256 digest); send the raw id as guest.sessionId instead.";
            return Err(reject("invalid_field", "guest.sessionHash", message));
        }
    }
    let Some(raw) = text(obj, "sessionId", "guest.sessionId")? else {
        return Ok(given_hash.map(|hash| hash.to_ascii_lowercase()));
    };
    if raw.chars().count() > MAX_SESSION_ID_CHARS {
        let message = format!("guest.sessionId must be at most {MAX_SESSION_ID_CHARS} characters.");
        return Err(reject("invalid_field", "guest.sessionId", message));
    }
    Ok(Some(ctx.hasher.hash(&raw)))
}

fn survey(value: Option<&Value>) -> Result<Survey, ValidationError> {
    let obj = object(value, "survey")?;
    let subject = text(obj, "subject", "survey.subject")?.unwrap_or_else(|| DEFAULT_SUBJECT.into());
    if subject.chars().count() > MAX_SUBJECT_CHARS {
        let message = format!("survey.subject must be at most {MAX_SUBJECT_CHARS} characters.");
        return Err(reject("invalid_field", "survey.subject", message));
    }
    let priority = match text(obj, "priority", "survey.priority")? {
        None => Priority::default(),
        Some(raw) => Priority::parse(&raw).ok_or_else(|| {
            let message = "survey.priority must be one of low, normal, high or urgent.";
            reject("invalid_priority", "survey.priority", message)
        })?,
    };
    let language = text(obj, "language", "survey.language")?;
    let language_ok = |l: &String| {
        l.len() <= MAX_LANGUAGE_CHARS && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if language.as_ref().is_some_and(|l| !language_ok(l)) {
        let message = format!(
            "survey.language must be a language tag such as en-US: at most {MAX_LANGUAGE_CHARS} letters, digits or hyphens."
        );
        return Err(reject("invalid_field", "survey.language", message));
    }
    Ok(Survey {
        subject,
        priority,
        language,
    })
}

fn consent(value: Option<&Value>) -> Result<Consent, ValidationError> {
    let obj = object(value, "consent")?;
    let given = match obj.and_then(|o| o.get("given")) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(given)) => *given,
        Some(_) => {
            let message = "consent.given must be true or false (a JSON boolean).";
            return Err(reject("invalid_json", "consent.given", message));
        }
    };
    let kind = match text(obj, "type", "consent.type")?
        .as_deref()
        .map(str::to_ascii_lowercase)
    {
        None => None,
        Some(t) if t == "explicit" => Some(ConsentType::Explicit),
        Some(t) if t == "implicit" => Some(ConsentType::Implicit),
        Some(_) => {
            let message = "consent.type must be explicit or implicit.";
            return Err(reject("invalid_consent_type", "consent.type", message));
        }
    };
    Ok(Consent { given, kind })
}

/// The object at `path`; absent or `null` is `None`, anything but an object is an error.
fn object<'v>(
    value: Option<&'v Value>,
    path: &str,
) -> Result<Option<&'v Map<String, Value>>, ValidationError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(obj)) => Ok(Some(obj)),
        Some(_) => Err(reject(
            "invalid_json",
            path,
            format!("{path} must be a JSON object."),
        )),
    }
}

/// The trimmed string at `obj[key]`. Absent, `null` and blank are all `None`; a non-string
/// is `invalid_json`; a control character left after trimming is `control_characters`.
fn text(
    obj: Option<&Map<String, Value>>,
    key: &str,
    path: &str,
) -> Result<Option<String>, ValidationError> {
    match obj.and_then(|o| o.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let trimmed = s.trim();
            if trimmed.chars().any(char::is_control) {
                let message = format!(
                    "{path} contains a control character (such as a line break or tab); remove it."
                );
                return Err(reject("control_characters", path, message));
            }
            Ok((!trimmed.is_empty()).then(|| trimmed.to_owned()))
        }
        Some(_) => Err(reject(
            "invalid_json",
            path,
            format!("{path} must be a string."),
        )),
    }
}
