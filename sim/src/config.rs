//! Start-up settings of the sandbox, and the knobs that can change while it runs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};

/// How a sandbox is started. Every field has a default (see [`SimConfig::default`]).
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to listen on; port 0 picks a free port. Default `127.0.0.1:0`.
    pub bind: SocketAddr,
    /// OAuth client id accepted by `POST /oauth/token`. Default `sandbox-client`.
    pub client_id: String,
    /// OAuth client secret accepted by `POST /oauth/token`. Default `sandbox-secret`.
    pub client_secret: String,
    /// Bearer key the CRM sandbox expects on `GET /customers`. Default `sandbox-crm-key`.
    pub crm_api_key: String,
    /// OAuth client id the Salesforce and Microsoft token endpoints accept. Default `sandbox-crm-client`.
    pub crm_client_id: String,
    /// OAuth client secret the Salesforce and Microsoft token endpoints accept. Default `sandbox-crm-secret`.
    pub crm_client_secret: String,
    /// Lifetime of an issued access token, in seconds (`expires_in`). Default 86400 (Genesys' default).
    pub token_lifetime_secs: u64,
    /// Calls allowed per token in a fixed 60 s window. Default 300 (Genesys' default for
    /// client-credentials tokens).
    pub requests_per_minute: u32,
    /// Delay added to every Genesys (token and `/api/v2`) and CRM call, in milliseconds. Default 0.
    pub latency_ms: u64,
    /// Fraction (0.0..=1.0) of `/api/v2` calls answered 503 at random. Default 0.0.
    pub error_rate: f64,
    /// A conversation shows in the participant attribute search only this long after it first
    /// got attributes, like the real search index. Default 0.
    pub index_delay_ms: u64,
    /// Whether a contact made by plain `POST /api/v2/externalcontacts/contacts` (or replaced
    /// by `PUT …/contacts/{id}`) claims its emails and E.164 phones as identifiers. Genesys
    /// does not document it, so the sandbox lets tests run both ways. Default false.
    pub claim_identifiers_on_create: bool,
    /// Whether `PATCH …/participants/{pid}/attributes` **replaces** the participant's
    /// attributes with the body's instead of merging the keys in. Genesys does not document
    /// which it does (the service assumes a merge), so the sandbox lets tests run both ways.
    /// Default false (merge).
    pub attribute_patch_replaces: bool,
    /// Permissions the role of an OAuth client lacks, by client id: a call that needs one of
    /// them (and no other permission that would also do) answers 403
    /// `missing.any.permissions`. Default none.
    pub denied_permissions: BTreeMap<String, BTreeSet<String>>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            client_id: "sandbox-client".to_owned(),
            client_secret: "sandbox-secret".to_owned(),
            crm_api_key: "sandbox-crm-key".to_owned(),
            crm_client_id: "sandbox-crm-client".to_owned(),
            crm_client_secret: "sandbox-crm-secret".to_owned(),
            token_lifetime_secs: 86_400,
            requests_per_minute: 300,
            latency_ms: 0,
            error_rate: 0.0,
            index_delay_ms: 0,
            claim_identifiers_on_create: false,
            attribute_patch_replaces: false,
            denied_permissions: BTreeMap::new(),
        }
    }
}

/// The settings that tests and scripts may change while the sandbox runs
/// (`POST /sim/config` and the `SimHandle` setters). JSON is camelCase.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Knobs {
    /// Calls allowed per token in a 60 s window.
    pub requests_per_minute: u32,
    /// Delay added to every Genesys and CRM call, in milliseconds.
    pub latency_ms: u64,
    /// Fraction of `/api/v2` calls answered 503 at random.
    pub error_rate: f64,
    /// Delay before a conversation with attributes shows in the attribute search, in milliseconds.
    pub index_delay_ms: u64,
    /// When true the CRM answers 503 to everything.
    pub crm_down: bool,
    /// The Salesforce org's daily API request limit (`Sforce-Limit-Info`); past it, API
    /// calls answer 403 `REQUEST_LIMIT_EXCEEDED`.
    pub salesforce_api_limit: u64,
    /// How many Dataverse Web API calls still answer 429 (service protection limit).
    pub dataverse_throttled_calls: u32,
    /// The `Retry-After` of those 429s, in seconds.
    pub dataverse_retry_after_secs: u64,
    /// Whether plain contact creates and full updates claim emails and phones as identifiers
    /// (see [`SimConfig::claim_identifiers_on_create`]).
    pub claim_identifiers_on_create: bool,
    /// Whether an attribute PATCH replaces the participant's attributes instead of merging
    /// (see [`SimConfig::attribute_patch_replaces`]).
    pub attribute_patch_replaces: bool,
}

impl From<&SimConfig> for Knobs {
    fn from(config: &SimConfig) -> Self {
        Self {
            requests_per_minute: config.requests_per_minute,
            latency_ms: config.latency_ms,
            error_rate: config.error_rate.clamp(0.0, 1.0),
            index_delay_ms: config.index_delay_ms,
            crm_down: false,
            salesforce_api_limit: 15_000,
            dataverse_throttled_calls: 0,
            dataverse_retry_after_secs: 1,
            claim_identifiers_on_create: config.claim_identifiers_on_create,
            attribute_patch_replaces: config.attribute_patch_replaces,
        }
    }
}

/// A partial update of [`Knobs`], the body of `POST /sim/config`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KnobsUpdate {
    /// New per-token budget.
    pub requests_per_minute: Option<u32>,
    /// New added latency.
    pub latency_ms: Option<u64>,
    /// New random 503 fraction.
    pub error_rate: Option<f64>,
    /// New search index delay.
    pub index_delay_ms: Option<u64>,
    /// CRM down or up.
    pub crm_down: Option<bool>,
    /// New Salesforce daily API limit.
    pub salesforce_api_limit: Option<u64>,
    /// The next this many Dataverse calls answer 429.
    pub dataverse_throttled_calls: Option<u32>,
    /// `Retry-After` of those 429s.
    pub dataverse_retry_after_secs: Option<u64>,
    /// Plain contact creates claim identifiers or not.
    pub claim_identifiers_on_create: Option<bool>,
    /// Attribute PATCHes replace or merge.
    pub attribute_patch_replaces: Option<bool>,
}

impl Knobs {
    /// Applies the fields present in `update`.
    pub fn apply(&mut self, update: KnobsUpdate) {
        if let Some(n) = update.requests_per_minute {
            self.requests_per_minute = n;
        }
        if let Some(ms) = update.latency_ms {
            self.latency_ms = ms;
        }
        if let Some(rate) = update.error_rate {
            self.error_rate = rate.clamp(0.0, 1.0);
        }
        if let Some(ms) = update.index_delay_ms {
            self.index_delay_ms = ms;
        }
        if let Some(down) = update.crm_down {
            self.crm_down = down;
        }
        if let Some(limit) = update.salesforce_api_limit {
            self.salesforce_api_limit = limit;
        }
        if let Some(n) = update.dataverse_throttled_calls {
            self.dataverse_throttled_calls = n;
        }
        if let Some(secs) = update.dataverse_retry_after_secs {
            self.dataverse_retry_after_secs = secs;
        }
        if let Some(claim) = update.claim_identifiers_on_create {
            self.claim_identifiers_on_create = claim;
        }
        if let Some(replaces) = update.attribute_patch_replaces {
            self.attribute_patch_replaces = replaces;
        }
    }
}
