//! What a CRM lookup yields, independent of how the CRM is reached.
//!
//! The adapter (HTTP, cache, breaker) and the pure merge both speak these types, so the merge
//! can be tested without a CRM. CRMs are loose about number types, so counters are read
//! leniently: a bad counter should cost the agent one field, not the whole lookup.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::privacy::{mask_email, mask_name, mask_phone, Phone};
use crate::submission::Submission;

/// A customer record as the CRM returns it (README, "Configuration", `crm.*`); fields other than `id` may be absent.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Customer {
    /// The CRM's id for the customer; a numeric id is accepted and kept as text.
    #[serde(deserialize_with = "id_text")]
    pub id: String,
    /// Given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Family name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// Email on file, as the CRM spells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone on file, as the CRM spells it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// Loyalty tier (`gold`, `platinum`…), any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loyalty_tier: Option<String>,
    /// Account status (`active`, `suspended`…), any case.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_status: Option<String>,
    /// Loyalty points; a number or a numeric string, anything else reads as absent.
    #[serde(
        default,
        deserialize_with = "lenient_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub loyalty_points: Option<i64>,
    /// Number of earlier tickets; a number or a numeric string, anything else reads as absent.
    #[serde(
        default,
        deserialize_with = "lenient_count",
        skip_serializing_if = "Option::is_none"
    )]
    pub previous_tickets: Option<i64>,
}

impl fmt::Debug for Customer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked = |v: &Option<String>, mask: fn(&str) -> String| v.as_deref().map(mask);
        f.debug_struct("Customer")
            .field("id", &self.id)
            .field("first_name", &masked(&self.first_name, mask_name))
            .field("last_name", &masked(&self.last_name, mask_name))
            .field("email", &masked(&self.email, mask_email))
            .field("phone", &masked(&self.phone, mask_phone))
            .field("loyalty_tier", &self.loyalty_tier)
            .field("account_status", &self.account_status)
            .field("loyalty_points", &self.loyalty_points)
            .field("previous_tickets", &self.previous_tickets)
            .finish()
    }
}

/// Reads an id given as a JSON string or number.
fn id_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    match Value::deserialize(deserializer)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(serde::de::Error::custom(
            "customer id must be a string or a number",
        )),
    }
}

/// Reads a counter given as an integer, an integral float or a numeric string; anything else
/// (null, a fraction, text, a value beyond `i64`) is `None`.
fn lenient_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    Ok(match Value::deserialize(deserializer)? {
        Value::Number(n) => n.as_i64().or_else(|| integral(n.as_f64()?)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i64>().ok().or_else(|| integral(s.parse().ok()?))
        }
        _ => None,
    })
}

fn integral(f: f64) -> Option<i64> {
    // Beyond ±2^53 an f64 no longer holds every integer, so such values are not trusted.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    (f.is_finite() && f.fract() == 0.0 && f.abs() <= EXACT).then_some(f as i64)
}

/// Which of the guest's identifiers found the customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CrmMatch {
    /// The CRM's email equals the guest's.
    Email,
    /// The CRM's phone equals the guest's.
    Phone,
    /// Found, but by neither email nor phone: the session hash.
    Session,
    /// No customer found, or the CRM was not reachable.
    None,
}

impl CrmMatch {
    /// The attribute value: `email|phone|session|none`.
    pub fn as_str(self) -> &'static str {
        match self {
            CrmMatch::Email => "email",
            CrmMatch::Phone => "phone",
            CrmMatch::Session => "session",
            CrmMatch::None => "none",
        }
    }
}

/// The result of one CRM lookup.
// One short-lived outcome per message: boxing the customer would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum CrmOutcome {
    /// A customer matched.
    Found {
        /// The first customer the CRM returned.
        customer: Customer,
        /// Which identifier matched ([`matched_by`]).
        matched_by: CrmMatch,
    },
    /// The CRM answered and knows no such customer.
    NotFound,
    /// The CRM did not answer usefully (timeout, 5xx, open circuit breaker).
    Unavailable,
}

impl CrmOutcome {
    /// The `crmStatus` attribute value: `found|not_found|unavailable`.
    pub fn status(&self) -> &'static str {
        match self {
            CrmOutcome::Found { .. } => "found",
            CrmOutcome::NotFound => "not_found",
            CrmOutcome::Unavailable => "unavailable",
        }
    }
}

/// How a customer the CRM returned for `sub` matched it: the email when both are equal
/// (ignoring case), else the phone when both are the same number, else the session hash.
pub fn matched_by(customer: &Customer, sub: &Submission) -> CrmMatch {
    let email_matches = match (&sub.guest.email, customer.email.as_deref()) {
        (Some(guest), Some(crm)) => guest.as_str() == crm.trim().to_lowercase(),
        _ => false,
    };
    if email_matches {
        return CrmMatch::Email;
    }
    let phone_matches = match (&sub.guest.phone, customer.phone.as_deref()) {
        (Some(guest), Some(crm)) => same_phone(guest, crm),
        _ => false,
    };
    if phone_matches {
        CrmMatch::Phone
    } else {
        CrmMatch::Session
    }
}

/// Compares E.164 digits. CRMs often store numbers in national form, so the CRM's number is
/// read in the guest number's region first; failing that, bare digits are compared.
fn same_phone(guest: &Phone, crm: &str) -> bool {
    if let Ok(crm) = Phone::parse(crm, guest.region()) {
        return crm == *guest;
    }
    let digits = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>();
    let crm_digits = digits(crm);
    !crm_digits.is_empty() && crm_digits == digits(guest.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(json: &str) -> Customer {
        serde_json::from_str(json).expect("customer JSON")
    }

    #[test]
    fn counters_are_read_from_numbers_and_numeric_strings() {
        let c = customer(r#"{"id":"c1","loyaltyPoints":"1200","previousTickets":3.0}"#);
        assert_eq!(
            (c.loyalty_points, c.previous_tickets),
            (Some(1200), Some(3))
        );
        let c = customer(r#"{"id":"c1","loyaltyPoints":" 7 ","previousTickets":-2}"#);
        assert_eq!((c.loyalty_points, c.previous_tickets), (Some(7), Some(-2)));
    }

    #[test]
    fn unreadable_counters_are_absent_rather_than_failing_the_lookup() {
        for bad in [r#""many""#, "1.5", "null", "true", "[]", "1e300", r#""""#] {
            let c = customer(&format!(r#"{{"id":"c1","loyaltyPoints":{bad}}}"#));
            assert_eq!(c.loyalty_points, None, "{bad}");
        }
    }

    #[test]
    fn missing_fields_are_none_and_a_numeric_id_is_kept_as_text() {
        let c = customer(r#"{"id":42,"unknown":"ignored"}"#);
        assert_eq!(c.id, "42");
        assert_eq!(c.first_name, None);
        assert_eq!(c.loyalty_points, None);
    }

    #[test]
    fn a_customer_without_an_id_is_rejected() {
        assert!(serde_json::from_str::<Customer>(r#"{"email":"a@b.co"}"#).is_err());
    }

    #[test]
    fn debug_masks_names_email_and_phone() {
        let c = customer(
            r#"{"id":"c1","firstName":"Jane","lastName":"Doe","email":"jane@example.com","phone":"+15551234567"}"#,
        );
        let shown = format!("{c:?}");
        for secret in ["Jane", "Doe", "jane@", "5551234567"] {
            assert!(!shown.contains(secret), "{secret} leaked in {shown}");
        }
        assert!(shown.contains("j***@example.com") && shown.contains("+1******4567"));
    }

    #[test]
    fn statuses_and_match_names_are_the_attribute_values() {
        assert_eq!(CrmOutcome::NotFound.status(), "not_found");
        assert_eq!(CrmOutcome::Unavailable.status(), "unavailable");
        let found = CrmOutcome::Found {
            customer: customer(r#"{"id":"c1"}"#),
            matched_by: CrmMatch::Email,
        };
        assert_eq!(found.status(), "found");
        let names: Vec<_> = [
            CrmMatch::Email,
            CrmMatch::Phone,
            CrmMatch::Session,
            CrmMatch::None,
        ]
        .map(CrmMatch::as_str)
        .into();
        assert_eq!(names, ["email", "phone", "session", "none"]);
    }

    #[test]
    fn matched_by_prefers_email_then_phone_then_session() {
        let sub = crate::submission::tests::sample(); // jane@example.com, +15551234567
        let both = customer(r#"{"id":"c","email":"Jane@Example.COM","phone":"+15551234567"}"#);
        assert_eq!(matched_by(&both, &sub), CrmMatch::Email);
        let national = customer(r#"{"id":"c","email":"x@example.com","phone":"(555) 123-4567"}"#);
        assert_eq!(matched_by(&national, &sub), CrmMatch::Phone);
        let digits = customer(r#"{"id":"c","phone":"1-555-123-4567"}"#);
        assert_eq!(matched_by(&digits, &sub), CrmMatch::Phone);
        let neither = customer(r#"{"id":"c","email":"x@example.com","phone":"+15557654321"}"#);
        assert_eq!(matched_by(&neither, &sub), CrmMatch::Session);
    }
}
