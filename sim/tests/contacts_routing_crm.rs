//! Routing and the CRM sandbox over HTTP (External Contacts: `contacts.rs`).

use prechat_sim::{spawn, Customer, SeedConversation, SimConfig, SimHandle};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

async fn start() -> (SimHandle, Client, String) {
    let sim = spawn(SimConfig::default()).await.unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = Client::new();
    let token: Value = http
        .post(format!("{}/oauth/token", sim.base_url()))
        .basic_auth("sandbox-client", Some("sandbox-secret"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    (sim, http, token)
}

async fn call(
    (sim, http, token): &(SimHandle, Client, String),
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let mut request = http
        .request(method, format!("{}{path}", sim.base_url()))
        .bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn replace_queue_moves_the_participant_to_a_queue_found_by_name() {
    let ctx = start().await;
    let gold = ctx.0.seed_queue("Gold Support");
    ctx.0.seed_queue("Standard Support");
    let listing: Value = call(
        &ctx,
        Method::GET,
        "/api/v2/routing/queues?name=gold%20support",
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(listing["total"], 1);
    assert_eq!(listing["entities"][0]["id"], gold.as_str());
    let prefix: Value = call(&ctx, Method::GET, "/api/v2/routing/queues?name=S*", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(prefix["entities"][0]["name"], "Standard Support");

    let conversation = ctx.0.seed_conversation(SeedConversation::default());
    let path = format!(
        "/api/v2/conversations/{}/participants/{}/replace/queue",
        conversation.id, conversation.customer_participant_id
    );
    let unknown = call(&ctx, Method::POST, &path, Some(json!({"queueId": "nope"}))).await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);
    let moved = call(&ctx, Method::POST, &path, Some(json!({"queueId": gold}))).await;
    assert_eq!(moved.status(), StatusCode::ACCEPTED);

    let view = ctx.0.conversation(&conversation.id).unwrap();
    assert_eq!(view.queue_id.as_deref(), Some(gold.as_str()));
    assert_eq!(view.transfers, 1);
    let body: Value = call(
        &ctx,
        Method::GET,
        &format!("/api/v2/conversations/messages/{}", conversation.id),
        None,
    )
    .await
    .json()
    .await
    .unwrap();
    let customer = body["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "customer")
        .unwrap()
        .clone();
    assert_eq!(customer["queue"]["id"], gold.as_str());
    assert_eq!(body["recentTransfers"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_crm_answers_matches_in_order_and_can_be_down() {
    let ctx = start().await;
    let (sim, http, _) = &ctx;
    sim.seed_customer(Customer {
        id: "by-phone".into(),
        phone: "+15551234567".into(),
        ..Customer::default()
    });
    sim.seed_customer(Customer {
        id: "by-email".into(),
        email: "Jane@Example.com".into(),
        loyalty_tier: "gold".into(),
        ..Customer::default()
    });
    let url = format!(
        "{}/customers?email=jane@example.com&phone=%2B15551234567",
        sim.base_url()
    );
    let unauthorised = http.get(&url).send().await.unwrap();
    assert_eq!(unauthorised.status(), StatusCode::UNAUTHORIZED);

    let found: Vec<Customer> = http
        .get(&url)
        .bearer_auth("sandbox-crm-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = found.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["by-email", "by-phone"]);
    let raw: Value = http
        .get(&url)
        .bearer_auth("sandbox-crm-key")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw[0]["loyaltyTier"], "gold");
    assert!(raw[0].get("sessionHash").is_none());

    sim.set_crm_down(true);
    let down = http
        .get(&url)
        .bearer_auth("sandbox-crm-key")
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(sim.stats().crm_calls, 4);
}

#[tokio::test]
async fn control_routes_seed_and_inspect_without_auth() {
    let (sim, http, _) = start().await;
    let base = sim.base_url();
    let view: Value = http
        .post(format!("{base}/sim/conversations"))
        .json(&json!({"id": "ctl-1", "customerAttributes": {"k": "v"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["id"], "ctl-1");
    let status = http
        .post(format!("{base}/sim/faults"))
        .json(&json!({"route": "patch_attributes", "status": 500, "count": 1}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    let stats: Value = http
        .get(format!("{base}/sim/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["tokens_issued"], 1);
    sim.shutdown();
    sim.stopped().await;
}
