//! Starting a sandbox and driving it from a test in the same process.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{KnobsUpdate, SimConfig};
use crate::faults::Fault;
use crate::model::{ConversationView, Customer, Seed, SeedConversation, Stats};
use crate::routes::router;
use crate::state::Sim;

/// Binds `config.bind` and serves the sandbox in a tokio task until [`SimHandle::shutdown`]
/// (or the runtime ends).
pub async fn spawn(config: SimConfig) -> anyhow::Result<SimHandle> {
    let listener = TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("binding the sandbox to {}", config.bind))?;
    let mut addr = listener.local_addr().context("reading the bound address")?;
    if addr.ip().is_unspecified() {
        addr = SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()));
    }
    let sim = Sim::new(config);
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (done_tx, done_rx) = watch::channel(false);
    let app = router(sim.clone());
    tokio::spawn(async move {
        let stop = async move {
            // An error means every handle is gone: keep serving until the runtime ends.
            if stop_rx.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(%error, "sandbox server failed");
        }
        let _ = done_tx.send(true);
    });
    tracing::info!(base_url = %format!("http://{addr}"), "prechat-sim sandbox listening");
    Ok(SimHandle {
        sim,
        addr,
        stop: Arc::new(stop_tx),
        done: done_rx,
    })
}

/// A running sandbox. Cheap to clone; every clone drives the same sandbox.
#[derive(Clone, Debug)]
pub struct SimHandle {
    sim: Sim,
    addr: SocketAddr,
    stop: Arc<watch::Sender<bool>>,
    done: watch::Receiver<bool>,
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`: the base of `/oauth/token`, `/api/v2/...`, `/customers` and
    /// `/sim/...` (use it as the Genesys API URL, the login URL and the CRM base URL).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the sandbox listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates a web-messaging conversation (an `acd` participant and a `customer`).
    pub fn seed_conversation(&self, conversation: SeedConversation) -> ConversationView {
        self.sim.seed_conversation(conversation)
    }

    /// Adds a CRM customer (replacing one with the same id).
    pub fn seed_customer(&self, customer: Customer) {
        self.sim.seed_customer(customer);
    }

    /// Adds a routing queue and returns its id; an existing name returns the existing id.
    pub fn seed_queue(&self, name: &str) -> String {
        self.sim.seed_queue(name).id
    }

    /// Seeds everything in a seed file's content.
    pub fn apply_seed(&self, seed: Seed) {
        self.sim.apply_seed(seed);
    }

    /// Injects a fault (see [`Fault`]).
    pub fn add_fault(&self, fault: Fault) {
        self.sim.add_fault(fault);
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.sim.clear_faults();
    }

    /// Invalidates every issued token: the next `/api/v2` call with one gets 401.
    pub fn revoke_tokens(&self) {
        self.sim.revoke_tokens();
    }

    /// Changes the per-token budget; windows already open keep their count.
    pub fn set_requests_per_minute(&self, n: u32) {
        self.sim.update_knobs(KnobsUpdate {
            requests_per_minute: Some(n),
            ..KnobsUpdate::default()
        });
    }

    /// Makes the CRM answer 503 to everything (or work again).
    pub fn set_crm_down(&self, down: bool) {
        self.sim.update_knobs(KnobsUpdate {
            crm_down: Some(down),
            ..KnobsUpdate::default()
        });
    }

    /// Sets the Salesforce org's daily API limit (calls past it answer 403
    /// `REQUEST_LIMIT_EXCEEDED`).
    pub fn set_salesforce_api_limit(&self, limit: u64) {
        self.sim.update_knobs(KnobsUpdate {
            salesforce_api_limit: Some(limit),
            ..KnobsUpdate::default()
        });
    }

    /// Makes the next `calls` Dataverse Web API calls answer 429 with `Retry-After: secs`.
    pub fn throttle_dataverse(&self, calls: u32, retry_after_secs: u64) {
        self.sim.update_knobs(KnobsUpdate {
            dataverse_throttled_calls: Some(calls),
            dataverse_retry_after_secs: Some(retry_after_secs),
            ..KnobsUpdate::default()
        });
    }

    /// Invalidates every Salesforce and Microsoft token: the next CRM call with one gets 401.
    pub fn revoke_crm_tokens(&self) {
        self.sim.lock().crm_tokens.clear();
    }

    /// Turns on or off whether plain contact creates claim their emails and phones as
    /// identifiers ([`crate::SimConfig::claim_identifiers_on_create`]).
    pub fn set_claim_identifiers_on_create(&self, claim: bool) {
        self.sim.update_knobs(KnobsUpdate {
            claim_identifiers_on_create: Some(claim),
            ..KnobsUpdate::default()
        });
    }

    /// Makes attribute PATCHes replace the participant's attributes instead of merging the
    /// keys in, or merge again ([`crate::SimConfig::attribute_patch_replaces`]).
    pub fn set_attribute_patch_replaces(&self, replaces: bool) {
        self.sim.update_knobs(KnobsUpdate {
            attribute_patch_replaces: Some(replaces),
            ..KnobsUpdate::default()
        });
    }

    /// Changes the latency added to every Genesys and CRM call.
    pub fn set_latency_ms(&self, ms: u64) {
        self.sim.update_knobs(KnobsUpdate {
            latency_ms: Some(ms),
            ..KnobsUpdate::default()
        });
    }

    /// Changes the delay before a conversation with attributes shows in the attribute search.
    pub fn set_index_delay_ms(&self, ms: u64) {
        self.sim.update_knobs(KnobsUpdate {
            index_delay_ms: Some(ms),
            ..KnobsUpdate::default()
        });
    }

    /// Changes the fraction of `/api/v2` calls answered 503 at random.
    pub fn set_error_rate(&self, rate: f64) {
        self.sim.update_knobs(KnobsUpdate {
            error_rate: Some(rate),
            ..KnobsUpdate::default()
        });
    }

    /// One conversation as the sandbox holds it now.
    pub fn conversation(&self, id: &str) -> Option<ConversationView> {
        self.sim.conversation(id)
    }

    /// Every conversation, oldest start first.
    pub fn conversations(&self) -> Vec<ConversationView> {
        self.sim.conversations()
    }

    /// External contacts as stored (`ExternalContact` JSON), in creation order.
    pub fn contacts(&self) -> Vec<Value> {
        self.sim.contacts()
    }

    /// A snapshot of the call counters.
    pub fn stats(&self) -> Stats {
        self.sim.stats()
    }

    /// Stops accepting connections and lets calls in flight finish.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Waits until the server has stopped (after [`SimHandle::shutdown`]).
    pub async fn stopped(&self) {
        let mut done = self.done.clone();
        let _ = done.wait_for(|done| *done).await;
    }
}
