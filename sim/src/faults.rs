//! Injected faults: make a route answer an error (or hang) a number of times or for a while.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// The sandbox's routes, as named in [`crate::Stats`] keys and in faults (snake_case in JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Route {
    /// `POST /oauth/token`.
    #[default]
    Token,
    /// `GET /api/v2/conversations/messages/{id}`.
    GetConversation,
    /// `PATCH /api/v2/conversations/messages/{cid}/participants/{pid}/attributes`.
    PatchAttributes,
    /// `POST /api/v2/conversations/participants/attributes/search`.
    AttributesSearch,
    /// `GET /api/v2/conversations/{id}` (the generic `Conversation`, with communication ids).
    GetGenericConversation,
    /// `POST /api/v2/externalcontacts/identifierlookup` (deprecated by Genesys).
    IdentifierLookup,
    /// `POST /api/v2/externalcontacts/identifierlookup/contacts`.
    IdentifierLookupContacts,
    /// `POST /api/v2/externalcontacts/contacts/enrich`.
    EnrichContact,
    /// `POST /api/v2/externalcontacts/contacts/merge`.
    MergeContacts,
    /// `POST /api/v2/externalcontacts/contacts`.
    CreateContact,
    /// `PUT /api/v2/externalcontacts/contacts/{id}`.
    UpdateContact,
    /// `GET /api/v2/externalcontacts/contacts/{id}`.
    GetContact,
    /// `DELETE /api/v2/externalcontacts/contacts/{id}`.
    DeleteContact,
    /// `PUT /api/v2/externalcontacts/conversations/{cid}`.
    LinkContact,
    /// `GET /api/v2/routing/queues`.
    RoutingQueues,
    /// `POST /api/v2/conversations/{cid}/participants/{pid}/replace/queue`.
    ReplaceQueue,
    /// `GET /customers` (the CRM sandbox).
    CrmCustomers,
    /// `POST /customers/search` (the CRM sandbox, identifiers in the body).
    CrmCustomersSearch,
    /// `POST /services/oauth2/token` (Salesforce).
    SalesforceToken,
    /// `GET /services/data/vXX.X/query` (Salesforce).
    SalesforceQuery,
    /// `GET /services/data/vXX.X/sobjects/{object}/describe` (Salesforce).
    SalesforceDescribe,
    /// `POST /services/data/vXX.X/composite` (Salesforce).
    SalesforceComposite,
    /// `POST /{tenant}/oauth2/v2.0/token` (Microsoft identity platform).
    DataverseToken,
    /// `GET /api/data/v9.2/{entity_set}` (Dataverse).
    DataverseQuery,
    /// `POST /api/data/v9.2/$batch` (Dataverse).
    DataverseBatch,
    /// `GET /api/data/v9.2/EntityDefinitions(LogicalName='…')/Attributes` (Dataverse).
    DataverseMetadata,
}

impl Route {
    /// The snake_case name used in stats keys and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Token => "token",
            Route::GetConversation => "get_conversation",
            Route::PatchAttributes => "patch_attributes",
            Route::AttributesSearch => "attributes_search",
            Route::GetGenericConversation => "get_generic_conversation",
            Route::IdentifierLookup => "identifier_lookup",
            Route::IdentifierLookupContacts => "identifier_lookup_contacts",
            Route::EnrichContact => "enrich_contact",
            Route::MergeContacts => "merge_contacts",
            Route::CreateContact => "create_contact",
            Route::UpdateContact => "update_contact",
            Route::GetContact => "get_contact",
            Route::DeleteContact => "delete_contact",
            Route::LinkContact => "link_contact",
            Route::RoutingQueues => "routing_queues",
            Route::ReplaceQueue => "replace_queue",
            Route::CrmCustomers => "crm_customers",
            Route::CrmCustomersSearch => "crm_customers_search",
            Route::SalesforceToken => "salesforce_token",
            Route::SalesforceQuery => "salesforce_query",
            Route::SalesforceDescribe => "salesforce_describe",
            Route::SalesforceComposite => "salesforce_composite",
            Route::DataverseToken => "dataverse_token",
            Route::DataverseQuery => "dataverse_query",
            Route::DataverseBatch => "dataverse_batch",
            Route::DataverseMetadata => "dataverse_metadata",
        }
    }

    /// The permissions of which the OAuth client's role needs at least one, as the SDKs'
    /// `Requires ANY permissions` lines declare them (JS SDK 259, `build/docs/*Api.md`);
    /// empty when the SDK declares none.
    pub fn permissions(self) -> &'static [&'static str] {
        match self {
            Route::Token
            | Route::GetConversation
            | Route::PatchAttributes
            | Route::CrmCustomers
            | Route::CrmCustomersSearch
            | Route::SalesforceToken
            | Route::SalesforceQuery
            | Route::SalesforceDescribe
            | Route::SalesforceComposite
            | Route::DataverseToken
            | Route::DataverseQuery
            | Route::DataverseBatch
            | Route::DataverseMetadata => &[],
            Route::GetGenericConversation => &["conversation:communication:view"],
            Route::AttributesSearch => &["conversation:participant:attributesview"],
            Route::IdentifierLookup | Route::GetContact => {
                &["externalContacts:contact:view", "relate:contact:view"]
            }
            Route::IdentifierLookupContacts => &["externalContacts:contact:view"],
            Route::EnrichContact => &["externalContacts:contact:enrich"],
            Route::MergeContacts => &["externalContacts:identity:merge"],
            Route::CreateContact => &["externalContacts:contact:add", "relate:contact:add"],
            Route::UpdateContact => &["externalContacts:contact:edit", "relate:contact:edit"],
            Route::DeleteContact => &["relate:contact:delete", "externalContacts:contact:delete"],
            Route::LinkContact => &[
                "relate:conversation:associate",
                "externalContacts:conversation:associate",
            ],
            Route::RoutingQueues => &["routing:queue:view"],
            Route::ReplaceQueue => &[
                "conversation:communication:blindTransfer",
                "conversation:communication:blindTransferQueue",
            ],
        }
    }
}

/// A fault to inject. JSON (for `POST /sim/faults`) is camelCase:
/// `{"route":"patch_attributes","status":503,"count":2,"durationMs":…,"conversationId":…,
/// "code":…,"message":…,"delayMs":…}`.
///
/// The fault fires `count` times, or for `duration_ms` from when it was added, or forever when
/// neither is set (whichever ends first when both are). It answers `status` with a Genesys
/// `ErrorBody` (a plain JSON error on [`Route::CrmCustomers`]); `code` defaults by status.
/// With `delay_ms` it first hangs that long (for client timeouts); a fault whose `status` is
/// below 400 only delays and then lets the real handler answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    /// Route the fault applies to. (The `Default` value, [`Route::Token`], is only a
    /// placeholder: set it.)
    pub route: Route,
    /// HTTP status to answer.
    pub status: u16,
    /// Fire this many times, then stop.
    #[serde(default)]
    pub count: Option<u32>,
    /// Fire for this long after being added, then stop.
    #[serde(default)]
    pub duration_ms: Option<u64>,
    /// Only for requests whose path contains this conversation id.
    #[serde(default)]
    pub conversation_id: Option<String>,
    /// `code` of the error body; defaults by status (`service.unavailable`, …).
    #[serde(default)]
    pub code: Option<String>,
    /// `message` of the error body; a generic one by status when absent.
    #[serde(default)]
    pub message: Option<String>,
    /// Hang this long before answering.
    #[serde(default)]
    pub delay_ms: Option<u64>,
}

impl Fault {
    /// A fault on `route` answering `status` forever, with nothing else set.
    pub fn new(route: Route, status: u16) -> Self {
        Self {
            route,
            status,
            ..Self::default()
        }
    }
}

/// What a fired fault asks the gate to do.
#[derive(Clone, Debug)]
pub(crate) struct Firing {
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
    pub delay: Option<Duration>,
    /// Seconds left in a timed fault, used as `Retry-After` of an injected 429.
    pub remaining_secs: Option<u64>,
}

#[derive(Debug)]
struct Active {
    fault: Fault,
    added: Instant,
    fired: u32,
}

impl Active {
    fn expired(&self, now: Instant) -> bool {
        let used_up = self.fault.count.is_some_and(|n| self.fired >= n);
        let timed_out = self
            .fault
            .duration_ms
            .is_some_and(|ms| now >= self.added + Duration::from_millis(ms));
        used_up || timed_out
    }
}

/// The faults in force, oldest first; the oldest matching one fires.
#[derive(Debug, Default)]
pub(crate) struct FaultSet {
    active: Vec<Active>,
}

impl FaultSet {
    pub fn add(&mut self, fault: Fault, now: Instant) {
        self.active.push(Active {
            fault,
            added: now,
            fired: 0,
        });
    }

    pub fn clear(&mut self) {
        self.active.clear();
    }

    /// Fires the first fault matching `route` and `path`, if any, and forgets spent ones.
    pub fn fire(&mut self, route: Route, path: &str, now: Instant) -> Option<Firing> {
        self.active.retain(|a| !a.expired(now));
        let hit = self.active.iter_mut().find(|a| {
            a.fault.route == route
                && a.fault
                    .conversation_id
                    .as_deref()
                    .is_none_or(|id| path.contains(id))
        })?;
        hit.fired += 1;
        let remaining_secs = hit.fault.duration_ms.map(|ms| {
            let end = hit.added + Duration::from_millis(ms);
            end.saturating_duration_since(now).as_secs_f64().ceil() as u64
        });
        Some(Firing {
            status: hit.fault.status,
            code: hit.fault.code.clone(),
            message: hit.fault.message.clone(),
            delay: hit.fault.delay_ms.map(Duration::from_millis),
            remaining_secs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_fault_fires_that_many_times_then_stops() {
        let now = Instant::now();
        let mut set = FaultSet::default();
        set.add(
            Fault {
                count: Some(2),
                ..Fault::new(Route::PatchAttributes, 503)
            },
            now,
        );
        assert!(set.fire(Route::GetConversation, "/x", now).is_none());
        assert!(set.fire(Route::PatchAttributes, "/x", now).is_some());
        assert!(set.fire(Route::PatchAttributes, "/x", now).is_some());
        assert!(set.fire(Route::PatchAttributes, "/x", now).is_none());
    }

    #[test]
    fn a_timed_fault_stops_after_its_duration_and_matches_its_conversation_only() {
        let now = Instant::now();
        let mut set = FaultSet::default();
        set.add(
            Fault {
                duration_ms: Some(1_000),
                conversation_id: Some("c-1".into()),
                ..Fault::new(Route::GetConversation, 500)
            },
            now,
        );
        assert!(set.fire(Route::GetConversation, "/m/c-2", now).is_none());
        let firing = set.fire(Route::GetConversation, "/m/c-1", now).unwrap();
        assert_eq!(firing.remaining_secs, Some(1));
        let later = now + Duration::from_millis(1_001);
        assert!(set.fire(Route::GetConversation, "/m/c-1", later).is_none());
    }
}
