//! Public data types: what tests seed into the sandbox and what they read back.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A web-messaging conversation to create. JSON (for `POST /sim/conversations` and seed files)
/// is camelCase: `{"id"?, "customerAttributes"?, "startTime"?, "ephemeralContact"?}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SeedConversation {
    /// Conversation id; a fresh uuid when absent. An existing id is replaced.
    pub id: Option<String>,
    /// Participant attributes the customer participant starts with (what Messenger's
    /// `Database.set` would have sent, e.g. `prechatSubmissionId`).
    pub customer_attributes: BTreeMap<String, String>,
    /// When the conversation started; now when absent.
    pub start_time: Option<DateTime<Utc>>,
    /// Link an `Ephemeral` External Contact (a `Cookie` identifier only) to the customer, as
    /// Genesys' identity resolution does for a Web Messenger guest it cannot match.
    pub ephemeral_contact: bool,
}

/// What the sandbox knows about one conversation, for assertions.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConversationView {
    /// Conversation id.
    pub id: String,
    /// Id of the participant whose `purpose` is `customer`.
    pub customer_participant_id: String,
    /// Id of that participant's message communication (distinct from the participant id).
    pub customer_communication_id: String,
    /// The customer participant's current attributes.
    pub attributes: BTreeMap<String, String>,
    /// Queue of the latest `replace/queue` on this conversation, if any.
    pub queue_id: Option<String>,
    /// How many `replace/queue` calls succeeded.
    pub transfers: u32,
    /// External contact linked to the customer participant, if any.
    pub linked_contact_id: Option<String>,
    /// How many attribute PATCHes succeeded.
    pub attribute_patches: u32,
}

/// A customer in the CRM sandbox. JSON field names are the CRM contract's (camelCase);
/// `sessionHash` is written only when set.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Customer {
    /// CRM id.
    pub id: String,
    /// Given name.
    pub first_name: String,
    /// Family name.
    pub last_name: String,
    /// Email; matched case-insensitively.
    pub email: String,
    /// Phone in E.164; matched exactly.
    pub phone: String,
    /// Loyalty tier (`gold`, `platinum`, …).
    pub loyalty_tier: String,
    /// Account status (`active`, …).
    pub account_status: String,
    /// Loyalty points.
    pub loyalty_points: i64,
    /// Number of earlier support tickets.
    pub previous_tickets: i64,
    /// Hashed browser session id the customer is known by, matched exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_hash: Option<String>,
}

/// Trace ids kept in [`Stats::traces`] at most.
pub const MAX_TRACES: usize = 10_000;

/// Call counters, for assertions (`GET /sim/stats`). Control routes (`/sim/...`) are not counted.
/// JSON keeps the snake_case field names, like the route names used as keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Genesys and CRM calls per W3C trace id (from the `traceparent` request header).
    #[serde(default)]
    pub traces: BTreeMap<String, u64>,
    /// Calls per route, keyed by the route's snake_case name (`patch_attributes`), every
    /// answer included (401, 429, faults).
    pub calls: BTreeMap<String, u64>,
    /// Answers per route and status, keyed `"<route> <status>"` (`"patch_attributes 202"`).
    pub statuses: BTreeMap<String, u64>,
    /// 429 answers (rate limit and injected 429 faults).
    pub rate_limited: u64,
    /// Access tokens issued.
    pub tokens_issued: u64,
    /// `/api/v2` calls, 401s and 429s included.
    pub total_genesys_calls: u64,
    /// CRM calls, failures included.
    pub crm_calls: u64,
}

impl Stats {
    /// Calls of one route (snake_case name), 0 when none.
    pub fn calls_of(&self, route: &str) -> u64 {
        self.calls.get(route).copied().unwrap_or(0)
    }

    /// Answers of one route with one status, 0 when none.
    pub fn status_count(&self, route: &str, status: u16) -> u64 {
        self.statuses
            .get(&format!("{route} {status}"))
            .copied()
            .unwrap_or(0)
    }

    /// Calls of one W3C trace (the trace id of the `traceparent` header), 0 when none.
    pub fn calls_in_trace(&self, trace_id: &str) -> u64 {
        self.traces.get(trace_id).copied().unwrap_or(0)
    }

    /// Counts a call's `traceparent`, keeping at most [`MAX_TRACES`] trace ids.
    pub(crate) fn record_trace(&mut self, traceparent: Option<&str>) {
        let Some(trace_id) = traceparent.and_then(|t| t.split('-').nth(1)) else {
            return;
        };
        if self.traces.len() < MAX_TRACES || self.traces.contains_key(trace_id) {
            *self.traces.entry(trace_id.to_owned()).or_default() += 1;
        }
    }

    pub(crate) fn record(&mut self, route: &str, status: u16) {
        *self.calls.entry(route.to_owned()).or_default() += 1;
        *self
            .statuses
            .entry(format!("{route} {status}"))
            .or_default() += 1;
        if status == 429 {
            self.rate_limited += 1;
        }
    }
}

/// The content of a seed file (`prechat-sim --seed FILE`):
/// `{"conversations":[SeedConversation…],"customers":[Customer…],"queues":["Gold Support",…]}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Seed {
    /// Conversations to create.
    pub conversations: Vec<SeedConversation>,
    /// CRM customers.
    pub customers: Vec<Customer>,
    /// Routing queue names.
    pub queues: Vec<String>,
}
