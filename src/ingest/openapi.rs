//! The OpenAPI 3.1 document of the HTTP API, served at `GET /openapi.json`.
//!
//! Built from the constants the handlers and the parsers use ([`ROUTES`](super::routes), the
//! answer keys, the priority and consent enums, the body limit, the longest handoff wait), so
//! that it cannot drift from them unnoticed. The limits the parser keeps to itself are repeated
//! here, and the tests below probe the parser at each of them. `components.schemas` also holds
//! `SubmissionMessage`, the JSON Schema of the message a web tier publishes straight to the
//! ingest exchange, which the top-level `x-amqp` extension describes.

use serde_json::{json, Map, Value};

use super::routes::{HANDOFFS_PATH, HEALTHZ_PATH, METRICS_PATH, READYZ_PATH, SUBMISSIONS_PATH};
use crate::config::MAX_HANDOFF_WAIT_MS;
use crate::handoff::ANSWER_KEYS;
use crate::queue::topology::SUBMISSION_KEY;
use crate::submission::{ConsentType, Priority, DEFAULT_SUBJECT, MAX_BODY_BYTES, SCHEMA_VERSION};

/// Where the document is served.
pub const PATH: &str = "/openapi.json";

/// Longest `survey.subject`, in characters.
const MAX_SUBJECT_CHARS: usize = 200;
/// Longest `survey.language`.
const MAX_LANGUAGE_CHARS: usize = 35;
/// Longest raw `guest.sessionId`, in characters.
const MAX_SESSION_ID_CHARS: usize = 256;
/// Longest `submissionId` of a submission or a handoff, in characters.
const MAX_SUBMISSION_ID_CHARS: usize = 128;

/// Every priority, in order of urgency.
const PRIORITIES: [Priority; 4] = [
    Priority::Low,
    Priority::Normal,
    Priority::High,
    Priority::Urgent,
];
/// Every consent type.
const CONSENT_TYPES: [ConsentType; 2] = [ConsentType::Explicit, ConsentType::Implicit];

/// `error.code` of a 400 from `POST /v1/submissions`.
const SUBMISSION_400: [&str; 9] = [
    "invalid_json",
    "unsupported_schema_version",
    "invalid_field",
    "invalid_email",
    "invalid_phone",
    "missing_identifier",
    "invalid_priority",
    "invalid_consent_type",
    "control_characters",
];
/// `error.code` of a 400 from `POST /v1/handoffs`.
const HANDOFF_400: [&str; 6] = [
    "invalid_wait_ms",
    "invalid_json",
    "missing_field",
    "invalid_type",
    "invalid_conversation_id",
    "invalid_submission_id",
];
/// `error.code` of a 503 from `POST /v1/submissions` (a handoff has no request timeout).
const SUBMISSION_503: [&str; 2] = ["broker_unavailable", "timeout"];
const HANDOFF_503: [&str; 1] = ["broker_unavailable"];

/// The document, for an ingest publishing to `ingest_exchange`.
pub fn document(ingest_exchange: &str) -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": env!("CARGO_PKG_NAME"),
            "version": env!("CARGO_PKG_VERSION"),
            "description": env!("CARGO_PKG_DESCRIPTION"),
            "license": {"name": env!("CARGO_PKG_LICENSE"), "identifier": env!("CARGO_PKG_LICENSE")},
        },
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token of `ingest.auth_tokens` (compared in constant time); \
                        `POST /v1/handoffs` takes those of `handoff.auth_tokens` when that is set. \
                        Not checked when `ingest.allow_unauthenticated = true`.",
                },
            },
            "schemas": schemas(),
        },
        "x-amqp": {
            "description": "A web tier may publish a submission straight to RabbitMQ instead of \
                calling POST /v1/submissions: the same JSON body, persistent, with publisher \
                confirms. The worker validates it with the same rules; a body it refuses is \
                dead-lettered with prechat-error-class=invalid_payload.",
            "exchange": ingest_exchange,
            "routingKey": SUBMISSION_KEY,
            "properties": {
                "content_type": "application/json",
                "delivery_mode": 2,
                "message_id": "the submissionId",
                "timestamp": "optional: submittedAt when the body has none",
                "headers": {"traceparent": "optional: a W3C traceparent, kept"},
            },
            "message": {"$ref": "#/components/schemas/SubmissionMessage"},
        },
    })
}

fn paths() -> Value {
    let bearer = json!([{"bearerAuth": []}]);
    let traceparent = json!({
        "name": "traceparent",
        "in": "header",
        "required": false,
        "description": "A W3C traceparent; kept when well-formed (else a new one is made) and \
            carried by every message and log line of the submission.",
        "schema": {"type": "string"},
    });
    let json_body = |schema: &str, description: &str| {
        json!({
            "required": true,
            "description": format!(
                "{description} At most {MAX_BODY_BYTES} bytes; `Content-Type: application/json` \
                 (or any `application/*+json`)."
            ),
            "content": {"application/json": {"schema": schema_ref(schema)}},
        })
    };
    let mut paths = Map::new();
    paths.insert(
        SUBMISSIONS_PATH.into(),
        json!({"post": {
            "operationId": "submit",
            "summary": "Accept a pre-chat submission",
            "description": "Validates the survey, hashes its session id and publishes it with \
                publisher confirms; 202 only once the broker confirmed it. Retrying with the \
                same submissionId is harmless.",
            "security": bearer,
            "parameters": [traceparent],
            "requestBody": json_body("Submission", "The submission."),
            "responses": {
                "202": {
                    "description": "Queued: the broker has it.",
                    "content": {"application/json": {"schema": schema_ref("SubmissionAccepted")}},
                },
                "400": error_response("The body breaks a rule; `field` names it.", &SUBMISSION_400),
                "401": error_response("No valid bearer token.", &["unauthorized"]),
                "413": error_response(&format!("The body is larger than {MAX_BODY_BYTES} bytes."), &["too_large"]),
                "415": error_response("The body is not declared JSON.", &["unsupported_media_type"]),
                "503": error_response(
                    "Nothing was accepted: the broker is unavailable, did not confirm in time, or \
                     the request took too long. Retry with the same submissionId.",
                    &SUBMISSION_503,
                ),
            },
        }}),
    );
    paths.insert(
        HANDOFFS_PATH.into(),
        json!({"post": {
            "operationId": "handoff",
            "summary": "Hand over the conversation of a submission (Architect data action)",
            "description": "Publishes the handoff with publisher confirms, then waits for the \
                submission's enrichment and answers with one flat object of strings: status \
                `enriched` once the attributes are on the participant, or `pending` after the \
                wait, with every other value empty.",
            "security": bearer,
            "parameters": [
                {
                    "name": "wait_ms",
                    "in": "query",
                    "required": false,
                    "description": format!(
                        "A shorter wait for the enrichment than the configured `handoff.wait_ms`, \
                         in milliseconds; longer values are capped by it (at most \
                         {MAX_HANDOFF_WAIT_MS}). A value that is not a non-negative integer is a \
                         400 `invalid_wait_ms`."
                    ),
                    "schema": {"type": "integer", "minimum": 0},
                },
                traceparent,
            ],
            "requestBody": json_body("Handoff", "The flow's conversation and the submission."),
            "responses": {
                "200": {
                    "description": "The answer, enriched or pending.",
                    "content": {"application/json": {"schema": schema_ref("HandoffAnswer")}},
                },
                "400": {
                    "description": format!(
                        "The body breaks a rule; `field` names it. `error.code`: {}.",
                        HANDOFF_400.join(", ")
                    ),
                    "x-error-codes": HANDOFF_400,
                    "content": {"application/json": {"schema": schema_ref("Error")}},
                },
                "401": error_response("No valid bearer token.", &["unauthorized"]),
                "413": error_response(&format!("The body is larger than {MAX_BODY_BYTES} bytes."), &["too_large"]),
                "415": error_response("The body is not declared JSON.", &["unsupported_media_type"]),
                "503": error_response("The broker is unavailable or did not confirm in time.", &HANDOFF_503),
            },
        }}),
    );
    paths.insert(
        HEALTHZ_PATH.into(),
        json!({"get": {
            "operationId": "healthz",
            "summary": "Liveness",
            "security": [],
            "responses": {"200": {
                "description": "The process runs.",
                "content": {"application/json": {"schema": schema_ref("Health")}},
            }},
        }}),
    );
    paths.insert(
        READYZ_PATH.into(),
        json!({"get": {
            "operationId": "readyz",
            "summary": "Readiness",
            "security": [],
            "responses": {
                "200": {
                    "description": "The topology is declared and the broker takes publishes.",
                    "content": {"application/json": {"schema": schema_ref("Readiness")}},
                },
                "503": {
                    "description": "Not ready; the body says what is missing.",
                    "content": {"application/json": {"schema": schema_ref("Readiness")}},
                },
            },
        }}),
    );
    paths.insert(
        METRICS_PATH.into(),
        json!({"get": {
            "operationId": "metrics",
            "summary": "Prometheus / OpenMetrics text",
            "security": [],
            "responses": {"200": {
                "description": "The metrics.",
                "content": {(crate::metrics::CONTENT_TYPE): {"schema": {"type": "string"}}},
            }},
        }}),
    );
    paths.insert(
        PATH.into(),
        json!({"get": {
            "operationId": "openapi",
            "summary": "This document",
            "security": [],
            "responses": {"200": {
                "description": "The OpenAPI document.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            }},
        }}),
    );
    Value::Object(paths)
}

fn schemas() -> Value {
    let priorities: Vec<&str> = PRIORITIES.iter().map(|p| p.as_str()).collect();
    let consent_types: Vec<&str> = CONSENT_TYPES.iter().map(|t| t.as_str()).collect();
    let submission_id = json!({
        "type": "string",
        "minLength": 1,
        "maxLength": MAX_SUBMISSION_ID_CHARS,
        "pattern": format!("^[A-Za-z0-9._:-]{{1,{MAX_SUBMISSION_ID_CHARS}}}$"),
        "description": "The idempotency key, also the AMQP message_id and the \
            prechatSubmissionId participant attribute.",
    });
    // A guest needs one identifier; a blank string counts as none.
    let identifiers: Vec<Value> = ["email", "phone", "sessionId", "sessionHash"]
        .into_iter()
        .map(|key| json!({"required": [key], "properties": {key: {"type": "string", "minLength": 1}}}))
        .collect();
    let mut answer = Map::new();
    answer.insert(
        "status".into(),
        json!({"type": "string", "enum": ["enriched", "pending"],
               "description": "`pending`: not enriched within the wait; every attribute is then empty."}),
    );
    answer.insert(
        "conversationId".into(),
        json!({"type": "string", "format": "uuid"}),
    );
    answer.insert("submissionId".into(), json!({"type": "string"}));
    for key in ANSWER_KEYS {
        answer.insert(
            key.into(),
            json!({"type": "string", "description": "The participant attribute, empty when not written."}),
        );
    }
    let answer_keys: Vec<&String> = answer.keys().collect();
    let answer_required = json!(answer_keys);

    json!({
        "Submission": {
            "type": "object",
            "description": "A pre-chat submission. Unknown fields are ignored. The service is \
                lenient where this schema is strict: `null` reads as absent, strings are \
                trimmed (a blank one is absent), `survey.priority` and `consent.type` ignore \
                case, and a phone number may be national (see `ingest.default_phone_region`). \
                Control characters are refused in every string.",
            "required": ["guest"],
            "properties": {
                "schemaVersion": {"type": "integer", "const": SCHEMA_VERSION, "default": SCHEMA_VERSION},
                "submissionId": submission_id,
                "submittedAt": {
                    "type": "string",
                    "format": "date-time",
                    "description": "RFC 3339; deadlines count from it. Default: when accepted.",
                },
                "conversationId": {
                    "type": "string",
                    "format": "uuid",
                    "description": "The Genesys conversation, when known; absent: matched later.",
                },
                "guest": schema_ref("Guest"),
                "survey": schema_ref("Survey"),
                "consent": schema_ref("Consent"),
            },
        },
        "SubmissionMessage": {
            "description": "The body of a submission published to the ingest exchange (see \
                `x-amqp`): a Submission with its submissionId. A body without one is accepted \
                when the AMQP message_id carries it; publish both, equal.",
            "allOf": [schema_ref("Submission"), {"required": ["submissionId"]}],
        },
        "Guest": {
            "type": "object",
            "description": "Who the guest is: at least one of email, phone, sessionId (or an \
                already hashed sessionHash).",
            "properties": {
                "email": {"type": "string", "format": "email", "description": "Stored lower-case."},
                "phone": {"type": "string", "description": "Normalised to E.164."},
                "sessionId": {
                    "type": "string",
                    "maxLength": MAX_SESSION_ID_CHARS,
                    "description": "The raw browser session id: hashed at once, never published or stored.",
                },
                "sessionHash": {
                    "type": "string",
                    "pattern": "^[0-9a-fA-F]{64}$",
                    "description": "An already hashed session id (hex SHA-256 or HMAC-SHA256).",
                },
                "verified": {
                    "type": "boolean",
                    "default": false,
                    "description": "`true` only when the web tier's backend knows the visitor \
                        signed in as the owner of this email or phone.",
                },
            },
            "anyOf": identifiers,
        },
        "Survey": {
            "type": "object",
            "properties": {
                "subject": {"type": "string", "maxLength": MAX_SUBJECT_CHARS, "default": DEFAULT_SUBJECT},
                "priority": {"type": "string", "enum": priorities, "default": Priority::default().as_str()},
                "language": {
                    "type": "string",
                    "maxLength": MAX_LANGUAGE_CHARS,
                    "pattern": format!("^[A-Za-z0-9-]{{1,{MAX_LANGUAGE_CHARS}}}$"),
                    "description": "A language tag such as en-US.",
                },
            },
        },
        "Consent": {
            "type": "object",
            "properties": {
                "given": {
                    "type": "boolean",
                    "default": false,
                    "description": "Only `true` lets names, email and phone reach Genesys.",
                },
                "type": {"type": "string", "enum": consent_types},
            },
        },
        "SubmissionAccepted": {
            "type": "object",
            "required": ["submissionId", "status"],
            "properties": {
                "submissionId": {"type": "string"},
                "status": {"type": "string", "const": "queued"},
            },
            "additionalProperties": false,
        },
        "Handoff": {
            "type": "object",
            "required": ["conversationId", "submissionId"],
            "properties": {
                "conversationId": {
                    "type": "string",
                    "format": "uuid",
                    "description": "Message.ConversationId of the flow.",
                },
                "submissionId": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_SUBMISSION_ID_CHARS,
                    "description": "The prechatSubmissionId participant attribute; no control characters.",
                },
            },
        },
        "HandoffAnswer": {
            "type": "object",
            "description": "Every key, always, strings only (a data action's output contract is \
                fixed); never a personal attribute.",
            "required": answer_required,
            "properties": answer,
            "additionalProperties": false,
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message", "field"],
                "properties": {
                    "code": {"type": "string", "description": "Stable, machine-readable."},
                    "message": {
                        "type": "string",
                        "description": "What is wrong and how to fix it; never repeats personal data.",
                    },
                    "field": {
                        "type": ["string", "null"],
                        "description": "The offending field as a dotted path, null when the error is not about one.",
                    },
                },
                "additionalProperties": false,
            }},
            "additionalProperties": false,
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "const": "ok"}},
        },
        "Readiness": {
            "type": "object",
            "required": ["broker", "topology"],
            "properties": {
                "broker": {"type": "boolean", "description": "The broker takes publishes."},
                "topology": {
                    "type": "boolean",
                    "description": "The topology is declared and handoff answers hear enrichments.",
                },
            },
        },
    })
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn error_response(description: &str, codes: &[&str]) -> Value {
    json!({
        "description": format!("{description} `error.code`: {}.", codes.join(", ")),
        "x-error-codes": codes,
        "content": {"application/json": {"schema": schema_ref("Error")}},
    })
}

/// A variant added to [`Priority`] fails to compile here until [`PRIORITIES`] lists it.
#[cfg(test)]
fn priority_index(priority: Priority) -> usize {
    match priority {
        Priority::Low => 0,
        Priority::Normal => 1,
        Priority::High => 2,
        Priority::Urgent => 3,
    }
}

/// The same for [`ConsentType`] and [`CONSENT_TYPES`].
#[cfg(test)]
fn consent_type_index(kind: ConsentType) -> usize {
    match kind {
        ConsentType::Explicit => 0,
        ConsentType::Implicit => 1,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::response::IntoResponse;
    use chrono::Utc;

    use super::*;
    use crate::handoff::{answer, Handoff};
    use crate::ingest::error::ApiError;
    use crate::privacy::SessionHasher;
    use crate::submission::{parse_submission, Origin, ParseContext, ValidationError};

    const README: &str = include_str!("../../README.md");

    fn doc() -> Value {
        document("prechat.ingest")
    }

    fn schema(name: &str) -> Value {
        doc()["components"]["schemas"][name].clone()
    }

    fn parse(body: &Value, origin: Origin) -> Result<(), ValidationError> {
        let hasher = SessionHasher::new(None);
        let context = ParseContext {
            origin,
            now: Utc::now(),
            hasher: &hasher,
            default_phone_region: None,
        };
        parse_submission(body.to_string().as_bytes(), &context).map(|_| ())
    }

    fn http(body: &Value) -> Result<(), ValidationError> {
        parse(body, Origin::Http)
    }

    /// The example of README, "The submission".
    fn readme_example() -> Value {
        let section = README
            .split("## The submission (message schema)")
            .nth(1)
            .expect("README has the section");
        let block = section
            .split("```json")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("the section has a JSON example");
        serde_json::from_str(block).expect("the example is JSON")
    }

    /// Checks `value` against `schema`, for the keywords this document uses; the errors, by
    /// JSON pointer.
    fn validate(value: &Value, schema: &Value, at: &str, errors: &mut Vec<String>) {
        let root = doc();
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference.trim_start_matches("#/components/schemas/");
            let target = &root["components"]["schemas"][name];
            assert!(target.is_object(), "{reference} resolves");
            return validate(value, target, at, errors);
        }
        if let Some(kind) = schema.get("type") {
            let kinds: Vec<&str> = match kind {
                Value::Array(kinds) => kinds.iter().filter_map(Value::as_str).collect(),
                other => vec![other.as_str().unwrap()],
            };
            let actual = match value {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
                Value::Number(_) => "number",
                Value::String(_) => "string",
                Value::Array(_) => "array",
                Value::Object(_) => "object",
            };
            let matches =
                kinds.contains(&actual) || (actual == "integer" && kinds.contains(&"number"));
            if !matches {
                return errors.push(format!("{at}: {actual} is not {kinds:?}"));
            }
        }
        if let Some(constant) = schema.get("const") {
            if value != constant {
                errors.push(format!("{at}: {value} is not {constant}"));
            }
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            if !allowed.contains(value) {
                errors.push(format!("{at}: {value} is not one of {allowed:?}"));
            }
        }
        if let Value::String(s) = value {
            let chars = s.chars().count() as u64;
            if schema["maxLength"].as_u64().is_some_and(|max| chars > max) {
                errors.push(format!("{at}: longer than {}", schema["maxLength"]));
            }
            if schema["minLength"].as_u64().is_some_and(|min| chars < min) {
                errors.push(format!("{at}: shorter than {}", schema["minLength"]));
            }
        }
        if let Value::Object(object) = value {
            for key in schema["required"].as_array().into_iter().flatten() {
                if !object.contains_key(key.as_str().unwrap()) {
                    errors.push(format!("{at}: {key} is required"));
                }
            }
            let properties = schema["properties"].as_object();
            for (key, item) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(property) => validate(item, property, &format!("{at}/{key}"), errors),
                    None if schema["additionalProperties"] == json!(false) => {
                        errors.push(format!("{at}/{key}: not allowed"))
                    }
                    None => {}
                }
            }
        }
        for part in schema["allOf"].as_array().into_iter().flatten() {
            validate(value, part, at, errors);
        }
        if let Some(Value::Array(choices)) = schema.get("anyOf") {
            let any = choices.iter().any(|choice| {
                let mut inner = Vec::new();
                validate(value, choice, at, &mut inner);
                inner.is_empty()
            });
            if !any {
                errors.push(format!("{at}: matches none of anyOf"));
            }
        }
    }

    fn errors(value: &Value, schema_name: &str) -> Vec<String> {
        let mut errors = Vec::new();
        validate(value, &schema_ref(schema_name), "", &mut errors);
        errors
    }

    #[test]
    fn every_route_is_documented_with_its_method_and_nothing_else() {
        let served: BTreeSet<(String, String)> = super::super::routes::ROUTES
            .iter()
            .map(|(method, path)| (path.to_string(), method.as_str().to_ascii_lowercase()))
            .collect();
        let documented: BTreeSet<(String, String)> = doc()["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(move |method| (path.clone(), method.clone()))
            })
            .collect();
        assert_eq!(served, documented);
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(value: &Value, root: &Value) {
            match value {
                Value::Object(object) => {
                    if let Some(reference) = object.get("$ref").and_then(Value::as_str) {
                        let pointer = reference.trim_start_matches('#');
                        assert!(root.pointer(pointer).is_some(), "{reference}");
                    }
                    object.values().for_each(|v| walk(v, root));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, root)),
                _ => {}
            }
        }
        let doc = doc();
        walk(&doc, &doc);
        for operation in doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .flat_map(|item| item.as_object().unwrap().values())
        {
            assert!(operation["operationId"].is_string());
            assert!(operation["security"].is_array(), "{operation}");
        }
    }

    #[test]
    fn the_handoff_answer_has_the_answer_keys_and_the_three_others() {
        let answer_schema = schema("HandoffAnswer");
        let properties: BTreeSet<&str> = answer_schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected: BTreeSet<&str> = ANSWER_KEYS.into_iter().collect();
        expected.extend(["status", "conversationId", "submissionId"]);
        assert_eq!(properties, expected);
        let required: BTreeSet<&str> = answer_schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        assert_eq!(required, expected);

        let handoff = Handoff::parse(
            br#"{"conversationId":"5e1d0c01-7a3b-4c2d-9e10-000000000001","submissionId":"s-1"}"#,
        )
        .unwrap();
        let pending = serde_json::to_value(answer(&handoff, None)).unwrap();
        assert_eq!(errors(&pending, "HandoffAnswer"), Vec::<String>::new());
        let keys: BTreeSet<&str> = pending
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn the_readme_example_and_the_quick_start_body_are_valid_and_accepted() {
        let example = readme_example();
        assert_eq!(errors(&example, "Submission"), Vec::<String>::new());
        assert_eq!(errors(&example, "SubmissionMessage"), Vec::<String>::new());
        http(&example).unwrap();
        let quick_start = README
            .split("--data '")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .expect("the quick start posts a body");
        let quick_start: Value = serde_json::from_str(quick_start).unwrap();
        assert_eq!(errors(&quick_start, "Submission"), Vec::<String>::new());
        http(&quick_start).unwrap();
        assert!(
            !errors(&quick_start, "SubmissionMessage").is_empty(),
            "no submissionId"
        );
    }

    /// The example with `value` at `pointer` (a `null` removes the field).
    fn with(pointer: &str, value: Value) -> Value {
        let mut body = readme_example();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        let object = body.pointer_mut(parent).unwrap().as_object_mut().unwrap();
        match value {
            Value::Null => object.remove(key),
            value => object.insert(key.to_string(), value),
        };
        body
    }

    #[test]
    fn the_schema_and_the_parser_agree_at_every_limit() {
        let long = |n: usize| Value::String("a".repeat(n));
        for (pointer, max) in [
            ("/survey/subject", MAX_SUBJECT_CHARS),
            ("/survey/language", MAX_LANGUAGE_CHARS),
            ("/guest/sessionId", MAX_SESSION_ID_CHARS),
            ("/submissionId", MAX_SUBMISSION_ID_CHARS),
        ] {
            let at_limit = with(pointer, long(max));
            assert_eq!(
                errors(&at_limit, "Submission"),
                Vec::<String>::new(),
                "{pointer}"
            );
            http(&at_limit).unwrap_or_else(|e| panic!("{pointer}: {e}"));
            let over = with(pointer, long(max + 1));
            assert!(!errors(&over, "Submission").is_empty(), "{pointer}");
            let refused = http(&over).unwrap_err();
            assert_eq!(
                refused.field.as_deref(),
                Some(&pointer[1..].replace('/', ".")[..])
            );
        }
        let handoff = |id: &str| json!({"conversationId": "5e1d0c01-7a3b-4c2d-9e10-000000000001", "submissionId": id});
        let id = "x".repeat(MAX_SUBMISSION_ID_CHARS);
        assert_eq!(errors(&handoff(&id), "Handoff"), Vec::<String>::new());
        Handoff::parse(handoff(&id).to_string().as_bytes()).unwrap();
        let id = "x".repeat(MAX_SUBMISSION_ID_CHARS + 1);
        assert!(!errors(&handoff(&id), "Handoff").is_empty());
        Handoff::parse(handoff(&id).to_string().as_bytes()).unwrap_err();
    }

    #[test]
    fn the_enums_list_every_variant_the_parser_takes() {
        for (index, priority) in PRIORITIES.into_iter().enumerate() {
            assert_eq!(priority_index(priority), index);
            assert_eq!(Priority::parse(priority.as_str()), Some(priority));
        }
        for (index, kind) in CONSENT_TYPES.into_iter().enumerate() {
            assert_eq!(consent_type_index(kind), index);
        }
        let survey = schema("Survey");
        for value in survey["properties"]["priority"]["enum"].as_array().unwrap() {
            http(&with("/survey/priority", value.clone())).unwrap();
        }
        for value in schema("Consent")["properties"]["type"]["enum"]
            .as_array()
            .unwrap()
        {
            http(&with("/consent/type", value.clone())).unwrap();
        }
        assert_eq!(survey["properties"]["subject"]["default"], DEFAULT_SUBJECT);
    }

    #[test]
    fn bodies_the_schema_refuses_the_parser_refuses_with_a_documented_code() {
        let no_identifier = {
            let mut body = readme_example();
            body["guest"] = json!({"verified": true});
            body
        };
        let cases = [
            (
                "schema version",
                with("/schemaVersion", json!(2)),
                "unsupported_schema_version",
            ),
            (
                "submission id",
                with("/submissionId", json!("a b")),
                "invalid_field",
            ),
            (
                "conversation id",
                with("/conversationId", json!(7)),
                "invalid_json",
            ),
            ("no identifier", no_identifier, "missing_identifier"),
            (
                "no guest",
                with("/guest", Value::Null),
                "missing_identifier",
            ),
            (
                "verified",
                with("/guest/verified", json!("yes")),
                "invalid_json",
            ),
            (
                "priority",
                with("/survey/priority", json!("asap")),
                "invalid_priority",
            ),
            (
                "consent type",
                with("/consent/type", json!("maybe")),
                "invalid_consent_type",
            ),
            (
                "consent given",
                with("/consent/given", json!("true")),
                "invalid_json",
            ),
            (
                "session hash",
                with("/guest/sessionHash", json!("abc")),
                "invalid_field",
            ),
        ];
        for (name, body, code) in cases {
            let refused = http(&body).unwrap_err();
            assert_eq!(refused.code, code, "{name}");
            assert!(SUBMISSION_400.contains(&refused.code), "{name}");
            let mut errors = Vec::new();
            // The session hash and the submission id are refused by their pattern, which this
            // check does not evaluate.
            if !matches!(name, "session hash" | "submission id") {
                validate(&body, &schema_ref("Submission"), "", &mut errors);
                assert!(!errors.is_empty(), "{name}: the schema refuses it too");
            }
        }
        // Codes the schema has no keyword for.
        for (body, code) in [
            (
                with("/guest/email", json!("jane@@example")),
                "invalid_email",
            ),
            (with("/guest/phone", json!("12")), "invalid_phone"),
            (
                with("/survey/subject", json!("bill\u{7}ing")),
                "control_characters",
            ),
        ] {
            assert_eq!(http(&body).unwrap_err().code, code);
        }
        let no_id = with("/submissionId", Value::Null);
        let queue = Origin::Queue {
            message_id: None,
            timestamp: None,
        };
        assert_eq!(
            parse(&no_id, queue).unwrap_err().code,
            "missing_submission_id"
        );
        assert!(!errors(&no_id, "SubmissionMessage").is_empty());
        let queue = Origin::Queue {
            message_id: Some("m-1".into()),
            timestamp: None,
        };
        parse(&no_id, queue).unwrap();
    }

    #[tokio::test]
    async fn the_error_responses_have_the_documented_shape_status_and_code() {
        let doc = doc();
        let responses = &doc["paths"][SUBMISSIONS_PATH]["post"]["responses"];
        let too_large: ApiError = ValidationError::new("too_large", "too large", None).into();
        for (error, status) in [
            (ApiError::unauthorized(), "401"),
            (ApiError::not_json(), "415"),
            (too_large, "413"),
            (ApiError::broker_unavailable(), "503"),
            (ApiError::broker_timeout(), "503"),
            (
                ValidationError::new("invalid_field", "x", Some("survey.subject")).into(),
                "400",
            ),
        ] {
            let response = error.into_response();
            assert_eq!(response.status().as_str(), status);
            let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap();
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(errors(&body, "Error"), Vec::<String>::new(), "{body}");
            let codes = responses[status]["x-error-codes"].as_array().unwrap();
            assert!(codes.contains(&body["error"]["code"]), "{status}: {body}");
        }
        let handoff_400: Vec<Value> = HANDOFF_400.iter().map(|c| json!(c)).collect();
        for body in [
            "nope".to_string(),
            r#"{"submissionId":"s"}"#.into(),
            r#"{"conversationId":5,"submissionId":"s"}"#.into(),
            r#"{"conversationId":"x","submissionId":"s"}"#.into(),
            format!(
                r#"{{"conversationId":"5e1d0c01-7a3b-4c2d-9e10-000000000001","submissionId":"{}"}}"#,
                "x".repeat(200)
            ),
        ] {
            let refused = Handoff::parse(body.as_bytes()).unwrap_err();
            assert!(handoff_400.contains(&json!(refused.code)), "{body}");
        }
    }
}
