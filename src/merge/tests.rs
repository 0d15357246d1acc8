//! The merge rule as a table, and its promises (determinism, consent, allowed keys) as
//! properties.

use chrono::TimeZone;
use proptest::prelude::*;

use super::*;
use crate::crm::model::CrmOutcome;
use crate::privacy::{Email, Phone};
use crate::submission::tests::{now, sample};

fn routes() -> RouteTable {
    let target = |name: &str, id: &str| QueueTarget {
        name: name.into(),
        id: id.into(),
    };
    RouteTable::new(BTreeMap::from([
        ("Standard".to_owned(), target("Standard Support", "q-std")),
        (" GOLD ".to_owned(), target("Gold Support", "q-gold")),
        ("platinum".to_owned(), target("Platinum Support", "q-plat")),
    ]))
}

fn customer(json: &str) -> Customer {
    serde_json::from_str(json).expect("customer JSON")
}

fn gold_jane() -> Customer {
    customer(
        r#"{"id":"C-1","firstName":" Jane ","lastName":"Doe","email":"Jane.CRM@example.com","phone":"+15550001111",
            "loyaltyTier":" Gold ","accountStatus":"ACTIVE","loyaltyPoints":"1200","previousTickets":3}"#,
    )
}

fn found(customer: Customer, matched_by: CrmMatch) -> CrmOutcome {
    CrmOutcome::Found {
        customer,
        matched_by,
    }
}

fn without_consent() -> Submission {
    let mut sub = sample();
    sub.consent.given = false;
    sub
}

fn survey_only_session() -> Submission {
    let mut sub = sample();
    sub.guest.email = None;
    sub.guest.phone = None;
    sub
}

/// Expected attributes beyond the ones every case shares, `None` meaning "absent".
struct Case {
    name: &'static str,
    sub: Submission,
    crm: CrmOutcome,
    expect: Vec<(&'static str, Option<&'static str>)>,
}

/// One case per branch of the rule; `expect` lists keys beyond those every case shares,
/// `None` meaning the key must be absent.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    let no_tier = customer(r#"{"id":"C-2","firstName":"","loyaltyPoints":"lots"}"#);
    vec![
        Case {
            name: "found by email: CRM wins for persistent fields, survey for session fields",
            sub: sample(),
            crm: found(gold_jane(), CrmMatch::Email),
            expect: vec![
                ("crmCustomerId", Some("C-1")), ("loyaltyTier", Some("gold")), ("accountStatus", Some("active")),
                ("loyaltyPoints", Some("1200")), ("previousTickets", Some("3")), ("crmMatch", Some("email")),
                ("crmStatus", Some("found")), ("targetQueueName", Some("Gold Support")), ("targetQueueId", Some("q-gold")),
                ("firstName", Some("Jane")), ("lastName", Some("Doe")),
                ("email", Some("jane@example.com")), ("phone", Some("+15551234567")),
            ],
        },
        Case {
            name: "found by phone",
            sub: sample(),
            crm: found(gold_jane(), CrmMatch::Phone),
            expect: vec![("crmMatch", Some("phone")), ("crmStatus", Some("found"))],
        },
        Case {
            name: "found by session: the CRM's email and phone fill in for the survey's",
            sub: survey_only_session(),
            crm: found(gold_jane(), CrmMatch::Session),
            expect: vec![("crmMatch", Some("session")), ("email", Some("jane.crm@example.com")), ("phone", Some("+15550001111"))],
        },
        Case {
            name: "not found: defaults, no names",
            sub: sample(),
            crm: CrmOutcome::NotFound,
            expect: vec![
                ("crmCustomerId", Some("")), ("loyaltyTier", Some("standard")), ("accountStatus", Some("active")),
                ("loyaltyPoints", Some("0")), ("previousTickets", Some("0")), ("crmMatch", Some("none")),
                ("crmStatus", Some("not_found")), ("targetQueueName", Some("Standard Support")),
                ("firstName", None), ("lastName", None), ("email", Some("jane@example.com")),
            ],
        },
        Case {
            name: "unavailable: defaults and the unavailable status",
            sub: sample(),
            crm: CrmOutcome::Unavailable,
            expect: vec![("crmMatch", Some("none")), ("crmStatus", Some("unavailable")), ("loyaltyTier", Some("standard"))],
        },
        Case {
            name: "no consent: no PII key at all, non-PII still written",
            sub: without_consent(),
            crm: found(gold_jane(), CrmMatch::Email),
            expect: vec![
                ("firstName", None), ("lastName", None), ("email", None), ("phone", None),
                ("crmCustomerId", Some("C-1")), ("loyaltyTier", Some("gold")),
            ],
        },
        Case {
            name: "unknown tier: routes as standard, keeps its own name",
            sub: sample(),
            crm: found(customer(r#"{"id":"C-3","loyaltyTier":"Diamond"}"#), CrmMatch::Email),
            expect: vec![("loyaltyTier", Some("diamond")), ("targetQueueName", Some("Standard Support")), ("targetQueueId", Some("q-std"))],
        },
        Case {
            name: "missing or unreadable CRM fields take the defaults",
            sub: survey_only_session(),
            crm: found(no_tier, CrmMatch::Session),
            expect: vec![
                ("crmCustomerId", Some("C-2")), ("loyaltyTier", Some("standard")), ("accountStatus", Some("active")),
                ("loyaltyPoints", Some("0")), ("previousTickets", Some("0")),
                ("firstName", None), ("lastName", None), ("email", None), ("phone", None),
            ],
        },
    ]
}

#[test]
fn the_merge_rule_holds_for_every_case() {
    for case in cases() {
        let attrs = merge(&case.sub, &case.crm, &routes(), now()).attributes();
        for (key, value) in &case.expect {
            let got = attrs.get(*key).map(String::as_str);
            assert_eq!(got, *value, "{}: {key}", case.name);
        }
        let shared = [
            ("preChatSubject", "Billing"),
            ("preChatPriority", "high"),
            ("preChatLanguage", "en-US"),
            ("prechatSubmissionId", "sub-1"),
            ("enrichedAt", "2026-11-22T10:00:00Z"),
            ("identityVerified", "false"),
        ];
        for (key, value) in shared {
            assert_eq!(attrs[key], value, "{}: {key}", case.name);
        }
    }
}

#[test]
fn identity_verified_says_whether_the_web_tier_vouched_for_the_guest() {
    let mut sub = sample();
    for (verified, written) in [(false, "false"), (true, "true")] {
        sub.guest.verified = verified;
        for consent in [true, false] {
            sub.consent.given = consent;
            let attrs =
                merge(&sub, &found(gold_jane(), CrmMatch::Email), &routes(), now()).attributes();
            assert_eq!(
                attrs["identityVerified"], written,
                "verified {verified}, consent {consent}"
            );
        }
    }
}

#[test]
fn the_survey_email_and_phone_override_the_crm_ones() {
    let e = merge(
        &sample(),
        &found(gold_jane(), CrmMatch::Session),
        &routes(),
        now(),
    );
    assert_eq!(e.email.as_deref(), Some("jane@example.com"));
    assert_eq!(e.phone.as_deref(), Some("+15551234567"));
}

#[test]
fn an_unknown_tier_routes_as_standard() {
    assert_eq!(
        routes().target_for("Diamond").map(|t| t.id.as_str()),
        Some("q-std")
    );
    assert_eq!(
        routes().target_for(" PLATINUM ").map(|t| t.id.as_str()),
        Some("q-plat")
    );
    let no_standard = RouteTable::new(BTreeMap::from([(
        "gold".to_owned(),
        QueueTarget {
            name: "G".into(),
            id: "g".into(),
        },
    )]));
    assert_eq!(no_standard.target_for("diamond"), None);
}

#[test]
fn without_routes_the_queue_attributes_are_empty() {
    let attrs = merge(
        &sample(),
        &CrmOutcome::NotFound,
        &RouteTable::empty(),
        now(),
    )
    .attributes();
    assert_eq!(
        (
            attrs["targetQueueName"].as_str(),
            attrs["targetQueueId"].as_str()
        ),
        ("", "")
    );
}

#[test]
fn enriched_at_is_written_to_the_second_in_utc() {
    let at =
        Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 7).unwrap() + chrono::Duration::milliseconds(999);
    let attrs = merge(&sample(), &CrmOutcome::NotFound, &routes(), at).attributes();
    assert_eq!(attrs["enrichedAt"], "2026-11-22T10:00:07Z");
}

#[test]
fn a_language_less_survey_writes_an_empty_language() {
    let mut sub = sample();
    sub.survey.language = None;
    let attrs = merge(&sub, &CrmOutcome::NotFound, &routes(), now()).attributes();
    assert_eq!(attrs["preChatLanguage"], "");
}

#[test]
fn debug_of_an_enrichment_masks_personal_data() {
    let shown = format!(
        "{:?}",
        merge(
            &sample(),
            &found(gold_jane(), CrmMatch::Email),
            &routes(),
            now()
        )
    );
    for secret in ["Jane", "Doe", "jane@", "5551234567"] {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
    }
    assert!(shown.contains("C-1") && shown.contains("gold"));
}

#[rustfmt::skip]
const ALLOWED_KEYS: [&str; 19] = [
    "crmCustomerId", "loyaltyTier", "accountStatus", "loyaltyPoints", "previousTickets", "preChatSubject",
    "preChatPriority", "preChatLanguage", "crmMatch", "crmStatus", "targetQueueName", "targetQueueId",
    "prechatSubmissionId", "enrichedAt", "identityVerified", "firstName", "lastName", "email", "phone",
];

fn opt_text() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("[ a-zA-Z]{0,10}")
}

fn customer_strategy() -> impl Strategy<Value = Customer> {
    (
        "[A-Z0-9-]{0,6}",
        (opt_text(), opt_text(), opt_text(), opt_text()),
        (
            proptest::option::of("(?i) ?(gold|platinum|standard|diamond|) ?"),
            opt_text(),
        ),
        (
            proptest::option::of(any::<i64>()),
            proptest::option::of(0i64..1000),
        ),
    )
        .prop_map(
            |(
                id,
                (first_name, last_name, email, phone),
                (loyalty_tier, account_status),
                (points, tickets),
            )| {
                Customer {
                    id,
                    first_name,
                    last_name,
                    email,
                    phone,
                    loyalty_tier,
                    account_status,
                    loyalty_points: points,
                    previous_tickets: tickets,
                }
            },
        )
}

fn outcome_strategy() -> impl Strategy<Value = CrmOutcome> {
    let matched = prop_oneof![
        Just(CrmMatch::Email),
        Just(CrmMatch::Phone),
        Just(CrmMatch::Session)
    ];
    prop_oneof![
        Just(CrmOutcome::NotFound),
        Just(CrmOutcome::Unavailable),
        (customer_strategy(), matched).prop_map(|(customer, matched_by)| CrmOutcome::Found {
            customer,
            matched_by
        }),
    ]
}

fn submission_strategy() -> impl Strategy<Value = Submission> {
    (
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        "[ -~]{1,20}",
        proptest::option::of("[a-z]{2}"),
    )
        .prop_map(|(consent, with_email, with_phone, subject, language)| {
            let mut sub = sample();
            sub.consent.given = consent;
            sub.guest.email = with_email.then(|| Email::parse("guest@example.com").unwrap());
            sub.guest.phone = with_phone.then(|| Phone::parse("+14155552671", None).unwrap());
            sub.survey.subject = subject;
            sub.survey.language = language;
            sub
        })
}

proptest! {
    #![proptest_config(crate::submission::tests::proptest_config())]

    #[test]
    fn the_same_inputs_give_the_same_output(sub in submission_strategy(), crm in outcome_strategy(), secs in 0i64..4_000_000_000) {
        let at = Utc.timestamp_opt(secs, 0).unwrap();
        let first = merge(&sub, &crm, &routes(), at);
        let again = merge(&sub.clone(), &crm.clone(), &routes(), at);
        prop_assert_eq!(first.attributes(), again.attributes());
        prop_assert!(first == again);
    }

    #[test]
    fn no_pii_key_is_ever_written_without_consent(sub in submission_strategy(), crm in outcome_strategy()) {
        let attrs = merge(&sub, &crm, &routes(), now()).attributes();
        for key in PII_KEYS {
            prop_assert!(sub.has_consent() || !attrs.contains_key(key), "{} without consent", key);
            prop_assert!(attrs.get(key).is_none_or(|v| !v.is_empty()), "empty {}", key);
        }
    }

    #[test]
    fn every_attribute_key_is_in_the_allowed_set(sub in submission_strategy(), crm in outcome_strategy()) {
        let attrs = merge(&sub, &crm, &routes(), now()).attributes();
        prop_assert!(attrs.keys().all(|k| ALLOWED_KEYS.contains(&k.as_str())), "{:?}", attrs.keys());
        prop_assert!(ALLOWED_KEYS[..15].iter().all(|k| attrs.contains_key(*k)));
    }

    #[test]
    fn crm_status_and_match_agree_with_the_outcome(sub in submission_strategy(), crm in outcome_strategy()) {
        let attrs = merge(&sub, &crm, &routes(), now()).attributes();
        prop_assert_eq!(attrs["crmStatus"].as_str(), crm.status());
        let expected_match = match &crm {
            CrmOutcome::Found { matched_by, .. } => matched_by.as_str(),
            _ => "none",
        };
        prop_assert_eq!(attrs["crmMatch"].as_str(), expected_match);
        prop_assert_eq!(attrs["crmCustomerId"].is_empty(), !matches!(&crm, CrmOutcome::Found { customer, .. } if !customer.id.trim().is_empty()));
        prop_assert!(!attrs["targetQueueId"].is_empty(), "every tier has a route through standard");
    }
}
