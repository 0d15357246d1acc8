//! The three CRM kinds against the sandbox: one table of customers seeded once and served
//! by the generic REST CRM, Salesforce and Dataverse alike; the same attributes written for
//! each; hostile values reaching the CRMs as plain values; limits; the calls a lookup costs
//! and the cache on a redelivery burst; `topology check`'s field check.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use prechat_enricher::config::{Roles, Settings};
use prechat_enricher::crm::{CrmClient, CrmError, CrmMatch, CrmOutcome};
use prechat_enricher::metrics::Metrics;
use prechat_enricher::submission::Submission;
use prechat_sim::{Customer, SeedConversation, SimHandle};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const KINDS: [&str; 3] = ["rest", "salesforce", "dynamics"];

/// The overrides that point `crm.kind = kind` at the sandbox.
fn crm_env(sim: &SimHandle, kind: &str) -> Vec<(String, String)> {
    let base = sim.base_url();
    let mut env = vec![("PRECHAT__CRM__KIND".to_string(), kind.to_string())];
    let pairs: &[(&str, &str)] = match kind {
        "salesforce" => &[
            ("PRECHAT__CRM__SALESFORCE__MY_DOMAIN", "{base}"),
            ("PRECHAT__CRM__SALESFORCE__CLIENT_ID", "sandbox-crm-client"),
            (
                "PRECHAT__CRM__SALESFORCE__CLIENT_SECRET",
                "sandbox-crm-secret",
            ),
            ("PRECHAT__CRM__FIELDS__SESSION_HASH", "Session_Hash__c"),
        ],
        "dynamics" => &[
            ("PRECHAT__CRM__DYNAMICS__ENVIRONMENT_URL", "{base}"),
            ("PRECHAT__CRM__DYNAMICS__LOGIN_URL", "{base}"),
            ("PRECHAT__CRM__DYNAMICS__TENANT", "sandbox-tenant"),
            ("PRECHAT__CRM__DYNAMICS__CLIENT_ID", "sandbox-crm-client"),
            (
                "PRECHAT__CRM__DYNAMICS__CLIENT_SECRET",
                "sandbox-crm-secret",
            ),
            ("PRECHAT__CRM__FIELDS__SESSION_HASH", "new_sessionhash"),
        ],
        _ => &[],
    };
    for (k, v) in pairs {
        env.push((k.to_string(), v.replace("{base}", &base)));
    }
    env
}

fn settings_for(sim: &SimHandle, kind: &str, namespace: &str, extra: &[(&str, &str)]) -> Settings {
    let env = crm_env(sim, kind);
    let mut overrides: Vec<(&str, &str)> =
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    overrides.extend_from_slice(extra);
    test_settings(sim, namespace, &overrides)
}

/// The table every CRM serves.
fn table() -> Vec<Customer> {
    let customer = |i: usize, email: &str, phone: &str, tier: &str| Customer {
        id: format!("C-{i}"),
        first_name: format!("First{i}"),
        last_name: format!("Last{i}"),
        email: email.into(),
        phone: phone.into(),
        loyalty_tier: tier.into(),
        account_status: ["Active", "suspended"][i % 2].into(),
        loyalty_points: (i as i64) * 150,
        previous_tickets: (i % 4) as i64,
        session_hash: None,
    };
    vec![
        customer(1, "ana@example.com", "+15550000001", "Gold"),
        customer(2, "ben@example.com", "+15550000002", "platinum"),
        customer(3, "o'brien@example.com", "+15550000003", "Silver"),
        customer(4, "dee@example.com", "+442079460958", "bronze"),
    ]
}

/// Guests: (guest JSON, what they should match).
fn guests() -> Vec<(serde_json::Value, &'static str)> {
    vec![
        (json!({"email": "ANA@example.com"}), "C-1"),
        (json!({"phone": "+15550000002"}), "C-2"),
        (json!({"email": "o'brien@example.com"}), "C-3"),
        (
            json!({"email": "nobody@example.com", "phone": "+442079460958"}),
            "C-4",
        ),
        (json!({"email": "stranger@example.com"}), ""),
        (json!({"email": "x'or'1'='1@example.com"}), ""),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_three_crms_write_the_same_attributes_for_the_same_records() {
    let mut written: BTreeMap<&str, Vec<BTreeMap<String, String>>> = BTreeMap::new();
    for kind in KINDS {
        let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
        for customer in table() {
            sim.seed_customer(customer);
        }
        let settings = settings_for(&sim, kind, &unique_namespace(&format!("crm-{kind}")), &[]);
        let app = start(sim, settings, Roles::ALL).await;
        let mut conversations = Vec::new();
        for (i, (guest, _)) in guests().into_iter().enumerate() {
            let conversation = app.sim.seed_conversation(SeedConversation::default());
            let body = json!({
                "submissionId": format!("00000000-0000-4000-8000-00000000000{i}"),
                "conversationId": conversation.id,
                "guest": guest,
                "survey": {"subject": "Billing", "priority": "high", "language": "en-GB"},
                "consent": {"given": true, "type": "explicit"}
            });
            let response = app.post(&body).await;
            assert_eq!(
                response.status(),
                202,
                "{kind}: {}",
                response.text().await.unwrap()
            );
            conversations.push(conversation.id);
        }
        let mut attributes = Vec::new();
        for (id, (_, want)) in conversations.iter().zip(guests()) {
            let got = wait_until(WAIT, || async {
                let view = app.sim.conversation(id)?;
                (view.attribute_patches > 0).then_some(view.attributes)
            })
            .await
            .unwrap_or_else(|| panic!("{kind}: {id} not enriched"));
            assert_eq!(got["crmCustomerId"], want, "{kind}: {got:?}");
            assert_eq!(
                got["crmStatus"],
                if want.is_empty() {
                    "not_found"
                } else {
                    "found"
                },
                "{kind}"
            );
            let mut stable = stable(&got);
            stable.remove("prechatSubmissionId");
            attributes.push(stable);
        }
        written.insert(kind, attributes);
        app.cleanup().await;
    }
    assert_eq!(written["salesforce"], written["rest"]);
    assert_eq!(written["dynamics"], written["rest"]);
    let rest = &written["rest"];
    assert_eq!(rest[0]["loyaltyTier"], "gold");
    assert_eq!(rest[0]["loyaltyPoints"], "150");
    assert_eq!(rest[0]["crmMatch"], "email");
    assert_eq!(rest[1]["crmMatch"], "phone");
    assert_eq!(rest[3]["crmMatch"], "phone");
}

fn submission(guest: serde_json::Value) -> Submission {
    serde_json::from_value(json!({
        "schemaVersion": 1,
        "submissionId": uuid::Uuid::new_v4().to_string(),
        "submittedAt": "2025-01-01T00:00:00Z",
        "guest": guest,
        "survey": {"subject": "Billing", "priority": "normal"},
        "consent": {"given": true}
    }))
    .expect("submission JSON")
}

async fn client(sim: &SimHandle, kind: &str, extra: &[(&str, &str)]) -> (CrmClient, Arc<Metrics>) {
    let settings = settings_for(sim, kind, "crm-client", extra);
    let metrics = Arc::new(Metrics::new());
    (
        CrmClient::from_settings(http(), &settings.crm, metrics.clone()),
        metrics,
    )
}

async fn seeded_sim() -> SimHandle {
    let sim = prechat_sim::spawn(fast_sim()).await.unwrap();
    for customer in table() {
        sim.seed_customer(customer);
    }
    sim
}

fn found_id(outcome: &CrmOutcome) -> Option<&str> {
    match outcome {
        CrmOutcome::Found { customer, .. } => Some(&customer.id),
        _ => None,
    }
}

#[tokio::test]
async fn crm_calls_per_submission_and_the_cache_hit_rate_on_a_redelivery_burst() {
    println!("kind        email-found  phone-found  not-found  burst-calls  burst-hit-rate");
    for kind in KINDS {
        let sim = seeded_sim().await;
        let (uncached, _) = client(&sim, kind, &[("PRECHAT__CRM__CACHE_TTL_SECS", "0")]).await;
        assert!(uncached.probe().await, "{kind} answers");
        let mut calls = Vec::new();
        for guest in [
            json!({"email": "ana@example.com"}),
            json!({"email": "nobody@example.com", "phone": "+15550000002"}),
            json!({"email": "nobody@example.com", "phone": "+15559999999", "sessionHash": "a".repeat(64)}),
        ] {
            let before = sim.stats().crm_calls;
            uncached.lookup(&submission(guest)).await;
            calls.push(sim.stats().crm_calls - before);
        }
        // A redelivery burst: the same submission 50 times at once, then 50 times more.
        let (cached, metrics) = client(&sim, kind, &[]).await;
        let again = submission(json!({"email": "ben@example.com"}));
        let before = sim.stats().crm_calls;
        let burst = futures_util::future::join_all((0..50).map(|_| cached.lookup(&again))).await;
        for _ in 0..50 {
            assert_eq!(found_id(&cached.lookup(&again).await), Some("C-2"));
        }
        assert!(burst.iter().all(|o| found_id(o) == Some("C-2")), "{kind}");
        let burst_calls = sim.stats().crm_calls - before;
        let hits = metrics.crm_cache_hits.get();
        println!(
            "{kind:<11} {:>11}  {:>11}  {:>9}  {burst_calls:>11}  {:>13.0}%",
            calls[0], calls[1], calls[2], hits as f64,
        );
        assert_eq!(hits, 99, "{kind}: one fetch for 100 lookups");
        // Token (salesforce, dynamics) + one query.
        assert!(burst_calls <= 2, "{kind}: {burst_calls} calls");
        assert_eq!(sim.stats().total_genesys_calls, 0);
    }
}

#[tokio::test]
async fn hostile_emails_are_values_and_local_phone_formats_are_found() {
    for kind in ["salesforce", "dynamics"] {
        let sim = seeded_sim().await;
        sim.seed_customer(Customer {
            id: "C-local".into(),
            email: "local@example.com".into(),
            phone: "(555) 987-6543".into(),
            loyalty_tier: "gold".into(),
            ..Default::default()
        });
        let (crm, _) = client(&sim, kind, &[("PRECHAT__CRM__CACHE_TTL_SECS", "0")]).await;
        let outcome = crm
            .lookup(&submission(json!({"email": "o'brien@example.com"})))
            .await;
        assert_eq!(found_id(&outcome), Some("C-3"), "{kind}");
        for hostile in [
            "x'or'1'='1@example.com",
            "a'+or+'b@example.com",
            "q''''@example.com",
        ] {
            let outcome = crm.lookup(&submission(json!({"email": hostile}))).await;
            assert_eq!(outcome, CrmOutcome::NotFound, "{kind}: {hostile}");
        }
        let outcome = crm
            .lookup(&submission(json!({"phone": "+15559876543"})))
            .await;
        assert_eq!(found_id(&outcome), Some("C-local"), "{kind}");
        assert!(matches!(
            outcome,
            CrmOutcome::Found {
                matched_by: CrmMatch::Phone,
                ..
            }
        ));
        // A near miss in another spelling is not a match.
        let outcome = crm
            .lookup(&submission(json!({"phone": "+15559876544"})))
            .await;
        assert_eq!(outcome, CrmOutcome::NotFound, "{kind}");
        let statuses = sim.stats().statuses;
        assert!(
            statuses.keys().all(|k| !k.ends_with(" 400")),
            "{kind}: the CRM refused a query: {statuses:?}"
        );
    }
}

#[tokio::test]
async fn salesforce_limits_and_tokens() {
    let sim = seeded_sim().await;
    let (crm, _) = client(&sim, "salesforce", &[("PRECHAT__CRM__CACHE_TTL_SECS", "0")]).await;
    let ana = submission(json!({"email": "ana@example.com"}));
    assert_eq!(found_id(&crm.lookup(&ana).await), Some("C-1"));
    // A revoked token is renewed once, the lookup succeeds.
    sim.revoke_crm_tokens();
    assert_eq!(found_id(&crm.lookup(&ana).await), Some("C-1"));
    assert_eq!(sim.stats().status_count("salesforce_query", 401), 1);
    assert_eq!(sim.stats().calls_of("salesforce_token"), 2);
    // The org's API limit spent: an outage of the CRM, not a failed submission.
    sim.set_salesforce_api_limit(1);
    assert_eq!(crm.lookup(&ana).await, CrmOutcome::Unavailable);
    assert!(sim.stats().status_count("salesforce_query", 403) >= 1);
}

#[tokio::test]
async fn a_dataverse_429_is_waited_out_as_a_crm_slowdown() {
    let sim = seeded_sim().await;
    let (crm, _) = client(&sim, "dynamics", &[("PRECHAT__CRM__CACHE_TTL_SECS", "0")]).await;
    let ana = submission(json!({"email": "ana@example.com"}));
    assert_eq!(found_id(&crm.lookup(&ana).await), Some("C-1"));
    sim.throttle_dataverse(1, 1);
    let started = tokio::time::Instant::now();
    assert_eq!(found_id(&crm.lookup(&ana).await), Some("C-1"));
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    assert_eq!(sim.stats().status_count("dataverse_query", 429), 1);
    assert_eq!(
        sim.stats().total_genesys_calls,
        0,
        "the Genesys budget is not involved"
    );
    // A Retry-After longer than the lookup's timeout: unavailable at once, no waiting.
    sim.throttle_dataverse(1, 3600);
    let started = tokio::time::Instant::now();
    assert_eq!(crm.lookup(&ana).await, CrmOutcome::Unavailable);
    assert_eq!(
        crm.lookup(&ana).await,
        CrmOutcome::Unavailable,
        "held, no call"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(sim.stats().status_count("dataverse_query", 429), 2);
}

#[tokio::test]
async fn topology_check_proves_the_connection_and_names_a_mistyped_field() {
    let sim = seeded_sim().await;
    for kind in KINDS {
        let (crm, _) = client(&sim, kind, &[]).await;
        let checked = crm.verify().await.unwrap_or_else(|e| panic!("{kind}: {e}"));
        println!("{kind}: {checked}");
    }
    for (kind, typo) in [
        ("salesforce", "Loyalty_Tierr__c"),
        ("dynamics", "new_loyaltytierr"),
    ] {
        let (crm, _) = client(&sim, kind, &[("PRECHAT__CRM__FIELDS__LOYALTY_TIER", typo)]).await;
        let error = crm.verify().await.unwrap_err();
        assert!(
            matches!(error, CrmError::MissingFields(..)),
            "{kind}: {error}"
        );
        let text = error.to_string();
        assert!(
            text.contains("crm.fields.loyalty_tier") && text.contains(typo),
            "{text}"
        );
    }
    let (crm, _) = client(
        &sim,
        "salesforce",
        &[("PRECHAT__CRM__SALESFORCE__CLIENT_SECRET", "wrong")],
    )
    .await;
    let error = crm.verify().await.unwrap_err();
    assert!(
        matches!(error, CrmError::Token { status: 400, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn with_lookup_post_the_identifiers_travel_in_a_body_and_find_the_same_customers() {
    // (kind, the route with the identifiers in its URL, the one with them in its body)
    for (kind, in_url, in_body) in [
        ("rest", "crm_customers", "crm_customers_search"),
        ("salesforce", "salesforce_query", "salesforce_composite"),
        ("dynamics", "dataverse_query", "dataverse_batch"),
    ] {
        let sim = seeded_sim().await;
        let (crm, _) = client(
            &sim,
            kind,
            &[
                ("PRECHAT__CRM__LOOKUP", "post"),
                ("PRECHAT__CRM__CACHE_TTL_SECS", "0"),
            ],
        )
        .await;
        assert!(crm.probe().await, "{kind}");
        for (guest, expected) in guests() {
            let outcome = crm.lookup(&submission(guest.clone())).await;
            let expected = Some(expected).filter(|e| !e.is_empty());
            assert_eq!(found_id(&outcome), expected, "{kind}: {guest}");
        }
        let stats = sim.stats();
        assert_eq!(stats.calls_of(in_url), 0, "{kind}: no identifier in a URL");
        assert!(
            stats.calls_of(in_body) > guests().len() as u64,
            "{kind}: {:?}",
            stats.calls_of(in_body)
        );
    }
    // The sandbox refuses what is not a lookup body.
    let sim = seeded_sim().await;
    let refused = http()
        .post(format!("{}/customers/search", sim.base_url()))
        .bearer_auth("sandbox-crm-key")
        .json(&json!({"mail": "ana@example.com"}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
}
