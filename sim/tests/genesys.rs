//! The sandbox over HTTP, as a Genesys client sees it.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use prechat_sim::{spawn, Fault, Route, SeedConversation, SimConfig, SimHandle};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

struct Api {
    sim: SimHandle,
    http: Client,
    token: String,
}

impl Api {
    async fn start(config: SimConfig) -> Self {
        let sim = spawn(config).await.expect("sandbox starts");
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = Client::new();
        let token = grant(
            &http,
            &sim,
            "sandbox-client",
            "sandbox-secret",
            "client_credentials",
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        Self { sim, http, token }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, body).await
    }
}

async fn grant(
    http: &Client,
    sim: &SimHandle,
    id: &str,
    secret: &str,
    grant_type: &str,
) -> reqwest::Response {
    http.post(format!("{}/oauth/token", sim.base_url()))
        .basic_auth(id, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type={grant_type}"))
        .send()
        .await
        .unwrap()
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn a_token_is_granted_only_for_the_right_client_and_grant_type() {
    let api = Api::start(SimConfig {
        token_lifetime_secs: 600,
        ..SimConfig::default()
    })
    .await;
    let ok = grant(
        &api.http,
        &api.sim,
        "sandbox-client",
        "sandbox-secret",
        "client_credentials",
    )
    .await;
    assert_eq!(ok.status(), StatusCode::OK);
    let body: Value = ok.json().await.unwrap();
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 600);

    let wrong = grant(
        &api.http,
        &api.sim,
        "sandbox-client",
        "nope",
        "client_credentials",
    )
    .await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong.json::<Value>().await.unwrap()["error"],
        "invalid_client"
    );

    let other = grant(
        &api.http,
        &api.sim,
        "sandbox-client",
        "sandbox-secret",
        "password",
    )
    .await;
    assert_eq!(other.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        other.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    assert_eq!(api.sim.stats().tokens_issued, 2);
}

#[tokio::test]
async fn a_call_without_a_valid_token_is_401_bad_credentials() {
    let api = Api::start(SimConfig::default()).await;
    let conversation = api.sim.seed_conversation(SeedConversation::default());
    let path = format!("/api/v2/conversations/messages/{}", conversation.id);
    assert_eq!(api.get(&path).await.status(), StatusCode::OK);

    let anonymous = api.http.get(api.url(&path)).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers().contains_key("inin-correlation-id"));
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["code"], "bad.credentials");
    assert_eq!(body["status"], 401);

    api.sim.revoke_tokens();
    assert_eq!(api.get(&path).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(api.sim.stats().status_count("get_conversation", 401), 2);
}

#[tokio::test]
async fn the_call_over_the_budget_gets_429_with_retry_after_and_the_normalised_body() {
    let api = Api::start(SimConfig {
        requests_per_minute: 2,
        ..SimConfig::default()
    })
    .await;
    let conversation = api.sim.seed_conversation(SeedConversation::default());
    let path = format!("/api/v2/conversations/messages/{}", conversation.id);
    let first = api.get(&path).await;
    assert_eq!(first.headers()["inin-ratelimit-count"], "1");
    assert_eq!(first.headers()["inin-ratelimit-allowed"], "2");
    assert!(first.headers().contains_key("inin-ratelimit-reset"));
    assert_eq!(api.get(&path).await.status(), StatusCode::OK);

    let limited = api.get(&path).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
    assert_eq!(limited.headers()["inin-ratelimit-count"], "2");
    let context = limited.headers()["inin-correlation-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["code"], "too.many.requests.retry.after");
    assert_eq!(body["status"], 429);
    assert_eq!(body["contextId"], context.as_str());
    assert_eq!(
        body["message"],
        format!("Rate limit exceeded the maximum. Retry the request in [{retry_after}] seconds")
    );
    assert_eq!(body["details"], json!([]));
    let stats = api.sim.stats();
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.total_genesys_calls, 3);
}

#[tokio::test]
async fn attributes_must_be_strings_and_are_merged() {
    let api = Api::start(SimConfig::default()).await;
    let conversation = api.sim.seed_conversation(SeedConversation {
        customer_attributes: attrs(&[("prechatSubmissionId", "s-1")]),
        ..SeedConversation::default()
    });
    let path = format!(
        "/api/v2/conversations/messages/{}/participants/{}/attributes",
        conversation.id, conversation.customer_participant_id
    );
    let bad = api
        .send(
            reqwest::Method::PATCH,
            &path,
            json!({"attributes": {"loyaltyPoints": 12}}),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["code"], "bad.request");
    assert!(body["message"].as_str().unwrap().contains("loyaltyPoints"));

    let ok = api
        .send(
            reqwest::Method::PATCH,
            &path,
            json!({"attributes": {"loyaltyTier": "gold"}}),
        )
        .await;
    assert_eq!(ok.status(), StatusCode::ACCEPTED);
    assert!(ok.bytes().await.unwrap().is_empty());
    let view = api.sim.conversation(&conversation.id).unwrap();
    assert_eq!(
        view.attributes,
        attrs(&[("loyaltyTier", "gold"), ("prechatSubmissionId", "s-1")])
    );
    assert_eq!(view.attribute_patches, 1);

    let missing = api
        .send(
            reqwest::Method::PATCH,
            "/api/v2/conversations/messages/nope/participants/x/attributes",
            json!({"attributes": {}}),
        )
        .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_the_switch_on_an_attribute_patch_replaces_every_attribute() {
    let api = Api::start(SimConfig {
        attribute_patch_replaces: true,
        ..SimConfig::default()
    })
    .await;
    let conversation = api.sim.seed_conversation(SeedConversation {
        customer_attributes: attrs(&[("prechatSubmissionId", "s-1")]),
        ..SeedConversation::default()
    });
    let path = format!(
        "/api/v2/conversations/messages/{}/participants/{}/attributes",
        conversation.id, conversation.customer_participant_id
    );
    let patch = |key: &'static str| {
        api.send(
            reqwest::Method::PATCH,
            &path,
            json!({"attributes": {key: "x"}}),
        )
    };
    assert_eq!(patch("a").await.status(), StatusCode::ACCEPTED);
    assert_eq!(patch("b").await.status(), StatusCode::ACCEPTED);
    let view = api.sim.conversation(&conversation.id).unwrap();
    assert_eq!(view.attributes, attrs(&[("b", "x")]));

    api.sim.set_attribute_patch_replaces(false);
    assert_eq!(patch("c").await.status(), StatusCode::ACCEPTED);
    let view = api.sim.conversation(&conversation.id).unwrap();
    assert_eq!(view.attributes, attrs(&[("b", "x"), ("c", "x")]));
}

#[tokio::test]
async fn the_customer_is_found_by_purpose_in_the_message_conversation() {
    let api = Api::start(SimConfig::default()).await;
    let conversation = api.sim.seed_conversation(SeedConversation {
        id: Some("conv-1".into()),
        customer_attributes: attrs(&[("a", "b")]),
        ..SeedConversation::default()
    });
    let body: Value = api
        .get("/api/v2/conversations/messages/conv-1")
        .await
        .json()
        .await
        .unwrap();
    let participants = body["participants"].as_array().unwrap();
    assert_eq!(participants.len(), 2);
    assert_ne!(participants[0]["purpose"], "customer");
    let customer = participants
        .iter()
        .find(|p| p["purpose"] == "customer")
        .unwrap();
    assert_eq!(
        customer["id"],
        conversation.customer_participant_id.as_str()
    );
    assert_eq!(customer["attributes"]["a"], "b");
    assert_eq!(customer["state"], "connected");

    let missing = api.get("/api/v2/conversations/messages/unknown").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<Value>().await.unwrap()["code"], "not.found");
}

#[tokio::test]
async fn an_injected_fault_answers_an_error_body_the_given_number_of_times() {
    let api = Api::start(SimConfig::default()).await;
    let conversation = api.sim.seed_conversation(SeedConversation::default());
    api.sim.add_fault(Fault {
        count: Some(1),
        conversation_id: Some(conversation.id.clone()),
        ..Fault::new(Route::GetConversation, 503)
    });
    let path = format!("/api/v2/conversations/messages/{}", conversation.id);
    let failed = api.get(&path).await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = failed.json().await.unwrap();
    assert_eq!(body["code"], "service.unavailable");
    assert!(body["contextId"].as_str().is_some());
    assert_eq!(body["errors"], json!([]));
    assert_eq!(api.get(&path).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_search_rejects_attribute_criteria_and_pages_with_a_cursor() {
    let api = Api::start(SimConfig::default()).await;
    let start = Utc::now() - Duration::minutes(30);
    for i in 0..3 {
        api.sim.seed_conversation(SeedConversation {
            id: Some(format!("c-{i}")),
            customer_attributes: attrs(&[("prechatSubmissionId", &format!("s-{i}"))]),
            start_time: Some(start + Duration::minutes(i)),
            ..SeedConversation::default()
        });
    }
    // Without attributes a conversation is not indexed.
    api.sim.seed_conversation(SeedConversation::default());
    let path = "/api/v2/conversations/participants/attributes/search";

    let rejected = api
        .post(path, json!({"query": [{"type": "EXACT", "fields": ["participantData.prechatSubmissionId"], "value": "s-1"}]}))
        .await;
    assert_eq!(rejected.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        rejected.json::<Value>().await.unwrap()["message"],
        "Search not supported."
    );

    let range = json!({"type": "DATE_RANGE", "fields": ["startTime"],
        "startValue": (Utc::now() - Duration::hours(1)).to_rfc3339(), "endValue": Utc::now().to_rfc3339()});
    let first: Value = api
        .post(path, json!({"query": [range], "pageSize": 2}))
        .await
        .json()
        .await
        .unwrap();
    let rows = first["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["conversationId"], "c-0");
    let data = &rows[0]["participantData"][0];
    assert_eq!(data["participantPurpose"], "customer");
    assert_eq!(data["participantAttributes"]["prechatSubmissionId"], "s-0");
    let cursor = first["cursor"].as_str().expect("a next page");

    let second: Value = api
        .post(
            path,
            json!({"query": [range], "pageSize": 2, "cursor": cursor}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second["results"].as_array().unwrap().len(), 1);
    assert_eq!(second["results"][0]["conversationId"], "c-2");
    assert!(second.get("cursor").is_none());
}

#[tokio::test]
async fn the_search_index_lags_by_the_index_delay() {
    let api = Api::start(SimConfig {
        index_delay_ms: 60_000,
        ..SimConfig::default()
    })
    .await;
    api.sim.seed_conversation(SeedConversation {
        customer_attributes: attrs(&[("k", "v")]),
        ..SeedConversation::default()
    });
    let body: Value = api
        .post(
            "/api/v2/conversations/participants/attributes/search",
            json!({"query": []}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["results"], json!([]));
}
