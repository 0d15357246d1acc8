//! `/sim/...`: JSON control and inspection routes for scripts. No auth, no rate limit, not
//! counted in the stats.
//!
//! | route | body → answer |
//! |---|---|
//! | `POST /sim/conversations` | `SeedConversation` → `ConversationView` |
//! | `GET /sim/conversations` | → `[ConversationView]` |
//! | `GET /sim/conversations/{id}` | → `ConversationView` or 404 |
//! | `POST /sim/customers` | one `Customer` or an array → `{"added":n}` |
//! | `POST /sim/queues` | `{"name"}` → `{"id","name"}` |
//! | `POST /sim/faults` / `DELETE /sim/faults` | `Fault` → 204 / → 204 |
//! | `POST /sim/tokens/revoke` | → 204 |
//! | `POST /sim/config` | `{"requestsPerMinute"?,"crmDown"?,"latencyMs"?,"errorRate"?,"indexDelayMs"?,"claimIdentifiersOnCreate"?,"attributePatchReplaces"?}` → the knobs now |
//! | `GET /sim/stats` | → `Stats` |
//! | `GET /sim/contacts` | → `[ExternalContact]` |

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::config::KnobsUpdate;
use crate::faults::Fault;
use crate::model::{Customer, SeedConversation};
use crate::state::Sim;

pub(crate) fn router() -> Router<Sim> {
    Router::new()
        .route(
            "/sim/conversations",
            post(create_conversation).get(list_conversations),
        )
        .route("/sim/conversations/{id}", get(get_conversation))
        .route("/sim/customers", post(add_customers))
        .route("/sim/queues", post(add_queue))
        .route("/sim/faults", post(add_fault).delete(clear_faults))
        .route("/sim/tokens/revoke", post(revoke_tokens))
        .route("/sim/config", post(update_config))
        .route("/sim/stats", get(stats))
        .route("/sim/contacts", get(contacts))
}

async fn create_conversation(
    State(sim): State<Sim>,
    Json(seed): Json<SeedConversation>,
) -> Response {
    (StatusCode::CREATED, Json(sim.seed_conversation(seed))).into_response()
}

async fn list_conversations(State(sim): State<Sim>) -> Response {
    Json(sim.conversations()).into_response()
}

async fn get_conversation(State(sim): State<Sim>, Path(id): Path<String>) -> Response {
    match sim.conversation(&id) {
        Some(view) => Json(view).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "not_found", "message": format!("no conversation {id}") })),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<Customer>),
    One(Box<Customer>),
}

async fn add_customers(State(sim): State<Sim>, Json(body): Json<OneOrMany>) -> Response {
    let customers = match body {
        OneOrMany::Many(list) => list,
        OneOrMany::One(one) => vec![*one],
    };
    let added = customers.len();
    for customer in customers {
        sim.seed_customer(customer);
    }
    (StatusCode::CREATED, Json(json!({ "added": added }))).into_response()
}

#[derive(Deserialize)]
struct NewQueue {
    name: String,
}

async fn add_queue(State(sim): State<Sim>, Json(body): Json<NewQueue>) -> Response {
    let queue = sim.seed_queue(&body.name);
    (
        StatusCode::CREATED,
        Json(json!({ "id": queue.id, "name": queue.name })),
    )
        .into_response()
}

async fn add_fault(State(sim): State<Sim>, Json(fault): Json<Fault>) -> StatusCode {
    sim.add_fault(fault);
    StatusCode::NO_CONTENT
}

async fn clear_faults(State(sim): State<Sim>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

async fn revoke_tokens(State(sim): State<Sim>) -> StatusCode {
    sim.revoke_tokens();
    StatusCode::NO_CONTENT
}

async fn update_config(State(sim): State<Sim>, Json(update): Json<KnobsUpdate>) -> Response {
    Json(sim.update_knobs(update)).into_response()
}

async fn stats(State(sim): State<Sim>) -> Response {
    Json(sim.stats()).into_response()
}

async fn contacts(State(sim): State<Sim>) -> Response {
    Json(sim.contacts()).into_response()
}
