//! What the Genesys tests share: CRM customers, conversations correlated by submission id,
//! waiting for an enrichment, and counting Genesys calls by route in `/metrics`.

use std::collections::BTreeMap;
use std::time::Duration;

use prechat_sim::{Customer, SeedConversation};

use crate::common::*;

pub fn customer(id: &str, email: &str, phone: &str, tier: &str) -> Customer {
    Customer {
        id: id.into(),
        first_name: "Jane".into(),
        last_name: format!("Doe-{id}"),
        email: email.into(),
        phone: phone.into(),
        loyalty_tier: tier.into(),
        account_status: "active".into(),
        loyalty_points: 10,
        previous_tickets: 1,
        session_hash: None,
    }
}

pub fn correlated(submission_id: &str) -> SeedConversation {
    SeedConversation {
        customer_attributes: BTreeMap::from([(
            "prechatSubmissionId".to_string(),
            submission_id.to_string(),
        )]),
        ..SeedConversation::default()
    }
}

pub async fn wait_enriched(
    app: &TestApp,
    conversation_id: &str,
    timeout: Duration,
) -> BTreeMap<String, String> {
    wait_until(timeout, || async {
        let view = app.sim.conversation(conversation_id)?;
        (view.attribute_patches > 0).then_some(view.attributes)
    })
    .await
    .unwrap_or_else(|| panic!("conversation {conversation_id} was not enriched"))
}

pub fn genesys_calls(metrics: &str, route: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("prechat_genesys_requests_total{")
                && l.contains(&format!("route=\"{route}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
