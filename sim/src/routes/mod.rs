//! The router: which path goes to which handler, behind which gate.

pub(crate) mod contacts;
mod control;
mod conversations;
mod crm;
mod crm_oauth;
mod dataverse;
mod routing;
mod salesforce;
mod search;

use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::{delete, get, patch, post, put, MethodRouter};
use axum::Router;

use crate::error::ApiError;
use crate::faults::Route;
use crate::gate;
use crate::state::Sim;

/// Every route of the sandbox: `/oauth/token`, `/api/v2/...`, `/customers`, the Salesforce
/// (`/services/...`) and Dataverse (`/{tenant}/oauth2/v2.0/token`, `/api/data/v9.2/...`) APIs and `/sim/...`.
pub(crate) fn router(sim: Sim) -> Router {
    let api = |route: Route, handler: MethodRouter<Sim>| {
        handler.route_layer(from_fn_with_state((sim.clone(), route), gate::genesys))
    };
    Router::new()
        .route(
            "/oauth/token",
            post(crate::auth::grant).route_layer(from_fn_with_state(
                (sim.clone(), Route::Token),
                gate::login,
            )),
        )
        .route(
            "/api/v2/conversations/messages/{conversation_id}",
            api(Route::GetConversation, get(conversations::get)),
        )
        .route(
            "/api/v2/conversations/messages/{conversation_id}/participants/{participant_id}/attributes",
            api(Route::PatchAttributes, patch(conversations::patch_attributes)),
        )
        .route(
            "/api/v2/conversations/participants/attributes/search",
            api(Route::AttributesSearch, post(search::search)),
        )
        .route(
            "/api/v2/conversations/{conversation_id}",
            api(Route::GetGenericConversation, get(conversations::get_generic)),
        )
        .route(
            "/api/v2/externalcontacts/identifierlookup",
            api(Route::IdentifierLookup, post(contacts::identifier_lookup)),
        )
        .route(
            "/api/v2/externalcontacts/identifierlookup/contacts",
            api(Route::IdentifierLookupContacts, post(contacts::identifier_lookup)),
        )
        .route(
            "/api/v2/externalcontacts/contacts/enrich",
            api(Route::EnrichContact, post(contacts::enrich)),
        )
        .route(
            "/api/v2/externalcontacts/contacts/merge",
            api(Route::MergeContacts, post(contacts::merge)),
        )
        .route(
            "/api/v2/externalcontacts/contacts",
            api(Route::CreateContact, post(contacts::create)),
        )
        .route(
            "/api/v2/externalcontacts/contacts/{contact_id}",
            api(Route::GetContact, get(contacts::get))
                .merge(api(Route::UpdateContact, put(contacts::update)))
                .merge(api(Route::DeleteContact, delete(contacts::delete))),
        )
        .route(
            "/api/v2/externalcontacts/conversations/{conversation_id}",
            api(Route::LinkContact, put(contacts::link)),
        )
        .route(
            "/api/v2/routing/queues",
            api(Route::RoutingQueues, get(routing::list_queues)),
        )
        .route(
            "/api/v2/conversations/{conversation_id}/participants/{participant_id}/replace/queue",
            api(Route::ReplaceQueue, post(routing::replace_queue)),
        )
        .route(
            "/customers",
            get(crm::customers).route_layer(from_fn_with_state(
                (sim.clone(), Route::CrmCustomers),
                gate::crm,
            )),
        )
        .route(
            "/customers/search",
            post(crm::search_customers).route_layer(from_fn_with_state(
                (sim.clone(), Route::CrmCustomersSearch),
                gate::crm,
            )),
        )
        .route("/services/oauth2/token", post(crm_oauth::salesforce_token))
        .route("/services/data/{version}/query", get(salesforce::query))
        .route(
            "/services/data/{version}/composite",
            post(salesforce::composite),
        )
        .route(
            "/services/data/{version}/sobjects/{object}/describe",
            get(salesforce::describe),
        )
        .route("/{tenant}/oauth2/v2.0/token", post(crm_oauth::microsoft_token))
        .route("/api/data/v9.2/$batch", post(dataverse::batch))
        .route("/api/data/v9.2/{set}", get(dataverse::entity_set))
        .route("/api/data/v9.2/{definition}/Attributes", get(dataverse::attributes))
        .merge(control::router())
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not.found",
                "The sandbox does not serve this path.",
            )
            .into_response()
        })
        .with_state(sim)
}
