//! External Contacts over HTTP: only claimed identifiers find a contact, `enrich` upserts one
//! contact per identifier, `merge` makes a new record, a link needs the real communication id,
//! and a client whose role lacks a permission gets 403.

use std::collections::{BTreeMap, BTreeSet};

use prechat_sim::{spawn, SeedConversation, SimConfig, SimHandle};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

struct Ctx {
    sim: SimHandle,
    http: Client,
    token: String,
}

async fn start_with(config: SimConfig) -> Ctx {
    let sim = spawn(config).await.unwrap();
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
    Ctx { sim, http, token }
}

async fn start() -> Ctx {
    start_with(SimConfig::default()).await
}

impl Ctx {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.sim.base_url()))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    async fn lookup(&self, kind: &str, value: &str) -> (StatusCode, Value) {
        let path = "/api/v2/externalcontacts/identifierlookup/contacts";
        self.call(
            Method::POST,
            path,
            Some(json!({"type": kind, "value": value})),
        )
        .await
    }

    async fn enrich(&self, body: Value) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            "/api/v2/externalcontacts/contacts/enrich",
            Some(body),
        )
        .await
    }
}

fn upsert(email: &str, phone: &str) -> Value {
    json!({
        "matchingIdentifiers": [{"type": "Email", "value": email}, {"type": "Phone", "value": phone}],
        "action": "Upsert",
        "contact": {"lastName": "Doe", "personalEmail": email, "cellPhone": {"display": phone}},
        "options": {"promote": true}
    })
}

#[tokio::test]
async fn a_plain_create_claims_no_identifier_unless_the_switch_is_on() {
    let ctx = start().await;
    let contact = json!({"firstName": "Jane", "workEmail": "jane@example.com",
                         "cellPhone": {"display": "+1 555 123 4567"}});
    let (status, created) = ctx
        .call(
            Method::POST,
            "/api/v2/externalcontacts/contacts",
            Some(contact.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(created["cellPhone"]["e164"], "+15551234567");
    assert_eq!(created["identifiers"], json!([]));
    for path in [
        "/api/v2/externalcontacts/identifierlookup/contacts",
        "/api/v2/externalcontacts/identifierlookup",
    ] {
        let (status, body) = ctx
            .call(
                Method::POST,
                path,
                Some(json!({"type": "Email", "value": "jane@example.com"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(body["code"], "not.found");
    }

    ctx.sim.set_claim_identifiers_on_create(true);
    let (_, claimed) = ctx
        .call(
            Method::POST,
            "/api/v2/externalcontacts/contacts",
            Some(contact),
        )
        .await;
    let id = claimed["id"].as_str().unwrap();
    assert_eq!(claimed["identifiers"].as_array().unwrap().len(), 2);
    assert_eq!(ctx.lookup("Email", "JANE@example.com").await.1["id"], id);
    assert_eq!(ctx.lookup("Phone", "+15551234567").await.1["id"], id);
    // A full update keeps the claims (claims are not fields).
    let (_, updated) = ctx
        .call(
            Method::PUT,
            &format!("/api/v2/externalcontacts/contacts/{id}"),
            Some(json!({"firstName": "Janet"})),
        )
        .await;
    assert_eq!(updated["firstName"], "Janet");
    assert!(updated.get("workEmail").is_none());
    assert_eq!(ctx.lookup("Phone", "+15551234567").await.1["id"], id);
}

#[tokio::test]
async fn enrich_upserts_one_contact_that_claims_its_identifiers() {
    let ctx = start().await;
    let (status, created) = ctx.enrich(upsert("jane@example.com", "+15551234567")).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["type"], "Curated", "options.promote");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(
        ctx.lookup("Email", "jane@example.com").await.1["id"],
        id.as_str()
    );
    assert_eq!(
        ctx.lookup("Phone", "+15551234567").await.1["id"],
        id.as_str()
    );

    // Found by the second identifier: updated in place, provided fields win, omitted stay.
    let again = json!({
        "matchingIdentifiers": [{"type": "Email", "value": "other@example.com"},
                                {"type": "Phone", "value": "+15551234567"}],
        "action": "Upsert",
        "contact": {"firstName": "Jane", "lastName": null}
    });
    let (status, updated) = ctx.enrich(again).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["id"], id.as_str());
    assert_eq!(updated["firstName"], "Jane");
    assert_eq!(updated["lastName"], "Doe");
    assert_eq!(
        ctx.lookup("Email", "other@example.com").await.1["id"],
        id.as_str()
    );
    assert_eq!(ctx.sim.contacts().len(), 1);

    let not_e164 =
        json!({"matchingIdentifiers": [{"type": "Phone", "value": "555 123"}], "action": "Upsert"});
    assert_eq!(ctx.enrich(not_e164).await.0, StatusCode::BAD_REQUEST);
    let none = json!({"matchingIdentifiers": [], "action": "Upsert"});
    assert_eq!(ctx.enrich(none).await.0, StatusCode::BAD_REQUEST);
    let update_unknown = json!({"matchingIdentifiers": [{"type": "Email", "value": "x@example.com"}], "action": "Update"});
    assert_eq!(ctx.enrich(update_unknown).await.0, StatusCode::NOT_FOUND);
    let insert_known = json!({"matchingIdentifiers": [{"type": "Email", "value": "jane@example.com"}], "action": "Insert"});
    assert_eq!(ctx.enrich(insert_known).await.0, StatusCode::CONFLICT);
}

#[tokio::test]
async fn merge_makes_a_new_contact_that_takes_the_identifiers_and_the_conversation_links() {
    let ctx = start().await;
    let conversation = ctx.sim.seed_conversation(SeedConversation {
        ephemeral_contact: true,
        ..SeedConversation::default()
    });
    let ephemeral = conversation.linked_contact_id.clone().unwrap();
    let (_, curated) = ctx.enrich(upsert("jane@example.com", "+15551234567")).await;
    let curated = curated["id"].as_str().unwrap().to_owned();
    let path = "/api/v2/externalcontacts/contacts/merge";
    let (status, _) = ctx
        .call(Method::POST, path, Some(json!({"contactIds": [curated]})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "at least two ids");
    let (status, merged) = ctx
        .call(
            Method::POST,
            path,
            Some(json!({"contactIds": [curated, ephemeral]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let merged_id = merged["id"].as_str().unwrap();
    assert!(
        merged_id != curated && merged_id != ephemeral,
        "a new record"
    );
    assert_eq!(merged["type"], "Curated");
    let kinds: BTreeSet<&str> = merged["identifiers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["type"].as_str())
        .collect();
    assert_eq!(kinds, BTreeSet::from(["Cookie", "Email", "Phone"]));
    assert_eq!(
        ctx.lookup("Email", "jane@example.com").await.1["id"],
        merged_id
    );
    let view = ctx.sim.conversation(&conversation.id).unwrap();
    assert_eq!(view.linked_contact_id.as_deref(), Some(merged_id));
    let (status, _) = ctx
        .call(
            Method::POST,
            path,
            Some(json!({"contactIds": [curated, "nope"]})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_link_needs_the_communication_id_and_a_participant_id_links_nothing() {
    let ctx = start().await;
    let (_, contact) = ctx.enrich(upsert("jane@example.com", "+15551234567")).await;
    let contact_id = contact["id"].as_str().unwrap();
    let conversation = ctx.sim.seed_conversation(SeedConversation::default());
    let (status, generic) = ctx
        .call(
            Method::GET,
            &format!("/api/v2/conversations/{}", conversation.id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let customer = generic["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["purpose"] == "customer")
        .unwrap();
    let communication_id = customer["messages"][0]["id"].as_str().unwrap();
    assert_eq!(
        customer["id"],
        conversation.customer_participant_id.as_str()
    );
    assert_ne!(communication_id, conversation.customer_participant_id);
    assert_eq!(communication_id, conversation.customer_communication_id);

    let path = format!("/api/v2/externalcontacts/conversations/{}", conversation.id);
    let association = |communication: &str| {
        json!({"externalContactId": contact_id, "conversationId": conversation.id,
               "communicationId": communication, "mediaType": "MESSAGE"})
    };
    let (status, _) = ctx
        .call(
            Method::PUT,
            &path,
            Some(association(&conversation.customer_participant_id)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "Genesys accepts a wrong id");
    assert_eq!(
        ctx.sim
            .conversation(&conversation.id)
            .unwrap()
            .linked_contact_id,
        None
    );
    let (status, _) = ctx
        .call(Method::PUT, &path, Some(association(communication_id)))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(
        ctx.sim
            .conversation(&conversation.id)
            .unwrap()
            .linked_contact_id
            .as_deref(),
        Some(contact_id)
    );
    let (status, _) = ctx
        .call(
            Method::PUT,
            &path,
            Some(json!({"externalContactId": contact_id, "conversationId": conversation.id})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "communicationId and mediaType are required"
    );
    let unknown = json!({"externalContactId": contact_id, "conversationId": "nope",
                         "communicationId": communication_id, "mediaType": "MESSAGE"});
    let (status, _) = ctx
        .call(
            Method::PUT,
            "/api/v2/externalcontacts/conversations/nope",
            Some(unknown),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_deleted_contact_is_gone_and_a_second_delete_is_a_404() {
    let ctx = start().await;
    let (status, contact) = ctx.enrich(upsert("gone@example.com", "+15550001111")).await;
    assert_eq!(status, StatusCode::CREATED);
    let path = format!(
        "/api/v2/externalcontacts/contacts/{}",
        contact["id"].as_str().unwrap()
    );
    let (status, body) = ctx.call(Method::DELETE, &path, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    assert_eq!(
        ctx.call(Method::GET, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ctx.call(Method::DELETE, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        ctx.lookup("Email", "gone@example.com").await.0,
        StatusCode::NOT_FOUND
    );
    assert!(ctx.sim.contacts().is_empty());
}

#[tokio::test]
async fn a_client_whose_role_lacks_a_permission_gets_403_for_the_calls_that_need_it() {
    let denied = BTreeSet::from([
        "externalContacts:contact:enrich".to_owned(),
        "externalContacts:conversation:associate".to_owned(),
        "externalContacts:contact:delete".to_owned(),
        "relate:contact:delete".to_owned(),
    ]);
    let ctx = start_with(SimConfig {
        denied_permissions: BTreeMap::from([("sandbox-client".to_owned(), denied)]),
        ..SimConfig::default()
    })
    .await;
    let (status, body) = ctx.enrich(upsert("jane@example.com", "+15551234567")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "missing.any.permissions");
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("externalContacts:contact:enrich"));
    let conversation = ctx.sim.seed_conversation(SeedConversation::default());
    let (status, _) = ctx
        .call(
            Method::GET,
            &format!("/api/v2/conversations/messages/{}", conversation.id),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the SDK declares no permission for it"
    );
    // relate:conversation:associate still allows the link.
    let path = format!("/api/v2/externalcontacts/conversations/{}", conversation.id);
    let unlink = json!({"conversationId": conversation.id,
                        "communicationId": conversation.customer_communication_id, "mediaType": "MESSAGE"});
    assert_eq!(
        ctx.call(Method::PUT, &path, Some(unlink)).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(ctx.sim.stats().status_count("enrich_contact", 403), 1);
    let (status, body) = ctx
        .call(
            Method::DELETE,
            "/api/v2/externalcontacts/contacts/any",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["message"]
        .as_str()
        .unwrap()
        .contains("externalContacts:contact:delete"));
}
