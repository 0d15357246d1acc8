//! The CRM sandbox: `GET /customers?email=&phone=&sessionHash=`, or the same identifiers as a
//! JSON body to `POST /customers/search` (README, "CRM", `crm.lookup`).

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::gate::{bearer, crm_error};
use crate::model::Customer;
use crate::state::Sim;

/// Query (or body) of the customer lookup.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub(crate) struct CustomerQuery {
    email: Option<String>,
    phone: Option<String>,
    session_hash: Option<String>,
}

/// The customers matching any parameter: email matches (case-insensitive) first, then phone,
/// then session hash, each customer once. Needs `Authorization: Bearer <crm_api_key>`.
pub(crate) async fn customers(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Query(query): Query<CustomerQuery>,
) -> Response {
    find(&sim, &headers, &query)
}

/// The same lookup with the identifiers in a JSON body; a body that is not such an object
/// (unknown keys included) is a 400.
pub(crate) async fn search_customers(
    State(sim): State<Sim>,
    headers: HeaderMap,
    body: Result<Json<CustomerQuery>, axum::extract::rejection::JsonRejection>,
) -> Response {
    match body {
        Ok(Json(query)) => find(&sim, &headers, &query),
        Err(rejection) => crm_error(StatusCode::BAD_REQUEST, &rejection.body_text()),
    }
}

fn find(sim: &Sim, headers: &HeaderMap, query: &CustomerQuery) -> Response {
    if bearer(headers) != Some(sim.config().crm_api_key.as_str()) {
        return crm_error(StatusCode::UNAUTHORIZED, "missing or wrong API key");
    }
    let inner = sim.lock();
    let present = |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
    let (email, phone, session) = (
        present(&query.email),
        present(&query.phone),
        present(&query.session_hash),
    );
    let by_email = inner.customers.iter().filter(|c| {
        email
            .as_deref()
            .is_some_and(|e| c.email.eq_ignore_ascii_case(e))
    });
    let by_phone = inner
        .customers
        .iter()
        .filter(|c| phone.as_deref().is_some_and(|p| c.phone == p));
    let by_session = inner
        .customers
        .iter()
        .filter(|c| session.is_some() && c.session_hash == session);
    let mut found: Vec<Customer> = Vec::new();
    for customer in by_email.chain(by_phone).chain(by_session) {
        if !found.contains(customer) {
            found.push(customer.clone());
        }
    }
    Json(found).into_response()
}
