//! The sandbox's shared state: one `std::sync::Mutex` around everything, never held across an
//! `.await` (handlers copy what they need out, then release it).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::Utc;
use serde_json::Value;
use tokio::time::Instant;
use uuid::Uuid;

use crate::config::{Knobs, SimConfig};
use crate::conversation::{iso, Conversation, QueueRef};
use crate::faults::FaultSet;
use crate::model::{Customer, Stats};
use crate::ratelimit::Window;

/// An issued access token.
#[derive(Debug)]
pub(crate) struct TokenInfo {
    /// The OAuth client it was granted to.
    pub client_id: String,
    pub expires_at: Instant,
    pub window: Window,
}

/// A routing queue.
#[derive(Clone, Debug)]
pub(crate) struct Queue {
    pub id: String,
    pub name: String,
    pub date_created: String,
}

impl Queue {
    pub fn entity_ref(&self) -> QueueRef {
        QueueRef {
            id: self.id.clone(),
            name: self.name.clone(),
        }
    }
}

/// Everything the sandbox remembers.
#[derive(Debug)]
pub(crate) struct Inner {
    pub knobs: Knobs,
    pub tokens: HashMap<String, TokenInfo>,
    pub faults: FaultSet,
    pub stats: Stats,
    pub conversations: BTreeMap<String, Conversation>,
    pub customers: Vec<Customer>,
    pub queues: Vec<Queue>,
    /// External contacts as stored (`ExternalContact` JSON), in creation order.
    pub contacts: Vec<Value>,
    /// Salesforce and Microsoft access tokens: token → (vendor, expiry).
    pub crm_tokens: HashMap<String, (&'static str, Instant)>,
    /// Salesforce API calls counted today (`Sforce-Limit-Info`).
    pub salesforce_api_usage: u64,
}

impl Inner {
    /// Finds a queue by name, case-insensitively.
    pub fn queue_by_name(&self, name: &str) -> Option<&Queue> {
        self.queues
            .iter()
            .find(|q| q.name.eq_ignore_ascii_case(name))
    }

    /// Adds a queue, or returns the one already named so.
    pub fn add_queue(&mut self, name: &str) -> Queue {
        if let Some(q) = self.queue_by_name(name) {
            return q.clone();
        }
        let queue = Queue {
            id: Uuid::new_v4().to_string(),
            name: name.to_owned(),
            date_created: iso(Utc::now()),
        };
        self.queues.push(queue.clone());
        queue
    }

    pub fn contact(&self, id: &str) -> Option<&Value> {
        self.contacts.iter().find(|c| c["id"] == id)
    }

    pub fn contact_mut(&mut self, id: &str) -> Option<&mut Value> {
        self.contacts.iter_mut().find(|c| c["id"] == id)
    }
}

/// Shared handle to the state, cloned into every handler.
#[derive(Clone, Debug)]
pub(crate) struct Sim(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    config: SimConfig,
    inner: Mutex<Inner>,
}

impl Sim {
    pub fn new(config: SimConfig) -> Self {
        let inner = Inner {
            knobs: Knobs::from(&config),
            tokens: HashMap::new(),
            faults: FaultSet::default(),
            stats: Stats::default(),
            conversations: BTreeMap::new(),
            customers: Vec::new(),
            queues: Vec::new(),
            contacts: Vec::new(),
            crm_tokens: HashMap::new(),
            salesforce_api_usage: 0,
        };
        Self(Arc::new(Shared {
            config,
            inner: Mutex::new(inner),
        }))
    }

    /// The start-up configuration (credentials, token lifetime).
    pub fn config(&self) -> &SimConfig {
        &self.0.config
    }

    /// Locks the state. A panic while locked only ever leaves counters half-updated, which a
    /// test double can live with, so a poisoned lock is taken over rather than propagated.
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0
            .inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy of the run-time knobs.
    pub fn knobs(&self) -> Knobs {
        self.lock().knobs.clone()
    }
}

/// A uniformly random number in `[0, 1)`, from the 53 low bits of a v4 uuid (all random),
/// so the crate needs no separate random number generator.
pub(crate) fn random_unit() -> f64 {
    const BITS: u32 = 53;
    let bits = Uuid::new_v4().as_u128() & ((1u128 << BITS) - 1);
    bits as f64 / (1u64 << BITS) as f64
}
