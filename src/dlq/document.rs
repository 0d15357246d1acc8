//! One dead letter in full, for `dlq show` and `dlq export`: its AMQP properties, every
//! header, and its body, as one JSON document.
//!
//! Personal data is masked unless asked for: in a JSON body, the values of keys that name an
//! email, a phone or a person's name are masked with the [`crate::privacy`] functions, and any
//! other string (and a body that is not JSON, and every text header) goes through
//! [`mask_pii_in_text`], which catches emails and phone numbers quoted in free text.

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use serde_json::{json, Map, Value};

use super::letter::{mask_pii_in_text, Letter};
use crate::privacy::{mask_email, mask_name, mask_phone};

/// Body keys (compared without case, `_` or `-`) whose string values are names.
const NAME_KEYS: [&str; 8] = [
    "name",
    "firstname",
    "lastname",
    "fullname",
    "displayname",
    "givenname",
    "familyname",
    "surname",
];

/// A dead letter as `show` and `export` write it: `letter` (what it says, as in `list --json`),
/// `properties`, `headers` and `body` (the JSON value, or the text, lossily decoded).
pub fn document(
    letter: &Letter,
    properties: &BasicProperties,
    body: &[u8],
    show_pii: bool,
) -> Value {
    let letter = if show_pii {
        letter.clone()
    } else {
        letter.masked()
    };
    let mut props = Map::new();
    let text = |value: Option<String>| value.map(Value::String);
    let fields = [
        (
            "messageId",
            text(properties.message_id().as_ref().map(|v| v.to_string())),
        ),
        (
            "contentType",
            text(properties.content_type().as_ref().map(|v| v.to_string())),
        ),
        (
            "contentEncoding",
            text(
                properties
                    .content_encoding()
                    .as_ref()
                    .map(|v| v.to_string()),
            ),
        ),
        (
            "correlationId",
            text(properties.correlation_id().as_ref().map(|v| v.to_string())),
        ),
        ("timestamp", properties.timestamp().map(|t| json!(t))),
        ("deliveryMode", properties.delivery_mode().map(|m| json!(m))),
        (
            "expiration",
            text(properties.expiration().as_ref().map(|v| v.to_string())),
        ),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            props.insert(key.into(), value);
        }
    }
    let headers = properties
        .headers()
        .as_ref()
        .map(|table| table_json(table, show_pii))
        .unwrap_or_else(|| Value::Object(Map::new()));
    let body = match serde_json::from_slice::<Value>(body) {
        Ok(value) if show_pii => value,
        Ok(value) => mask_value(None, value),
        Err(_) => {
            let text = String::from_utf8_lossy(body).into_owned();
            Value::String(if show_pii {
                text
            } else {
                mask_pii_in_text(&text)
            })
        }
    };
    json!({
        "letter": letter,
        "properties": props,
        "headers": headers,
        "body": body,
    })
}

/// A header table as a JSON object; text values masked unless `show_pii`.
fn table_json(table: &FieldTable, show_pii: bool) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(key, value)| (key.to_string(), amqp_json(value, show_pii)))
            .collect(),
    )
}

fn amqp_json(value: &AMQPValue, show_pii: bool) -> Value {
    let text = |s: String| Value::String(if show_pii { s } else { mask_pii_in_text(&s) });
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(n) => json!(n),
        AMQPValue::Double(n) => json!(n),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::ShortString(s) => text(s.to_string()),
        AMQPValue::LongString(s) => text(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::FieldArray(items) => Value::Array(
            items
                .as_slice()
                .iter()
                .map(|v| amqp_json(v, show_pii))
                .collect(),
        ),
        AMQPValue::FieldTable(table) => table_json(table, show_pii),
        AMQPValue::Void => Value::Null,
        other => text(format!("{other:?}")),
    }
}

/// Masks the personal data in a JSON body, `key` being the key `value` is under.
fn mask_value(key: Option<&str>, value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(mask_string(key, &s)),
        Value::Array(items) => {
            Value::Array(items.into_iter().map(|v| mask_value(key, v)).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let masked = mask_value(Some(&k), v);
                    (k, masked)
                })
                .collect(),
        ),
        other => other,
    }
}

fn mask_string(key: Option<&str>, value: &str) -> String {
    let key: String = key
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect();
    if key.contains("email") {
        mask_email(value)
    } else if key.contains("phone") || key == "mobile" || key == "tel" {
        mask_phone(value)
    } else if NAME_KEYS.contains(&key.as_str()) {
        mask_name(value)
    } else {
        mask_pii_in_text(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::headers::{self, HeaderExt};

    #[test]
    fn a_document_masks_emails_phones_and_names_in_body_and_headers_unless_asked() {
        let mut table = FieldTable::default();
        table.set_text(headers::ERROR_MESSAGE, "value jane@example.com refused");
        table.set_number(headers::ATTEMPT, 2);
        let properties = BasicProperties::default()
            .with_message_id("s-1".into())
            .with_headers(table);
        let body = br#"{"submissionId":"s-1","guest":{"firstName":"Jane","lastName":"Doe","email":"jane@example.com","phone":"+15551234567"},"survey":{"comment":"call me on +1 555 123 4567"}}"#;
        let letter = Letter::read(&properties, body);
        let masked = document(&letter, &properties, body, false);
        let text = masked.to_string();
        for raw in ["Jane", "Doe", "jane@example.com", "5551234567", "555 123"] {
            assert!(!text.contains(raw), "{raw} in {text}");
        }
        assert_eq!(masked["body"]["guest"]["firstName"], "J***");
        assert_eq!(masked["body"]["guest"]["email"], "j***@example.com");
        assert_eq!(masked["body"]["guest"]["phone"], "+1******4567");
        assert_eq!(masked["body"]["submissionId"], "s-1");
        assert_eq!(
            masked["headers"][headers::ERROR_MESSAGE],
            "value j***@example.com refused"
        );
        assert_eq!(masked["headers"][headers::ATTEMPT], 2);
        assert_eq!(masked["properties"]["messageId"], "s-1");
        let shown = document(&letter, &properties, body, true).to_string();
        assert!(shown.contains("Jane") && shown.contains("jane@example.com"));
        // A body that is not JSON is masked as text.
        let raw = b"{broken jane@example.com";
        let doc = document(&Letter::read(&properties, raw), &properties, raw, false);
        assert_eq!(doc["body"], "{broken j***@example.com");
    }
}
