//! `GET /openapi.json` against a running ingest: every operation the document describes is
//! served with its method, and answers with a status the document lists.

use crate::common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_operation_is_served_with_a_documented_status() {
    let app = spawn_app("openapi").await;
    let client = http();
    let response = client
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let document: Value = response.json().await.unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(
        document["x-amqp"]["exchange"],
        app.topology.ingest_exchange()
    );

    let paths = document["paths"].as_object().unwrap();
    assert!(paths.len() >= 6, "{paths:?}");
    for (path, item) in paths {
        let item = item.as_object().unwrap();
        for (method, operation) in item {
            let method =
                reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let mut request = client
                .request(method.clone(), format!("{}{path}", app.url))
                .bearer_auth(TOKEN);
            if operation.get("requestBody").is_some() {
                // Refused by validation: nothing is queued, and the status is a documented one.
                request = request
                    .header("content-type", "application/json")
                    .body("{}");
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            assert!(
                operation["responses"].get(status.as_str()).is_some(),
                "{method} {path}: {status} is not documented"
            );
            if status.is_client_error() {
                let error: Value = response.json().await.unwrap();
                assert!(
                    error["error"]["code"].is_string(),
                    "{method} {path}: {error}"
                );
            }
        }
        // A method the document does not list is not served.
        for method in [reqwest::Method::PUT, reqwest::Method::DELETE] {
            if item.contains_key(&method.as_str().to_ascii_lowercase()) {
                continue;
            }
            let response = client
                .request(method.clone(), format!("{}{path}", app.url))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 405, "{method} {path}");
        }
    }
    let undocumented = client
        .get(format!("{}/v1/undocumented", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(undocumented.status(), 404);
    app.cleanup().await;
}
