//! Operations on the state shared by [`crate::SimHandle`] (in-process tests) and the
//! `/sim/...` control routes (scripts).

use serde_json::Value;
use tokio::time::Instant;

use crate::config::{Knobs, KnobsUpdate};
use crate::conversation::Conversation;
use crate::faults::Fault;
use crate::model::{ConversationView, Customer, Seed, SeedConversation, Stats};
use crate::state::{Queue, Sim};

impl Sim {
    pub fn seed_conversation(&self, seed: SeedConversation) -> ConversationView {
        let ephemeral = seed.ephemeral_contact;
        let mut conversation = Conversation::from_seed(seed, Instant::now());
        let mut inner = self.lock();
        if ephemeral {
            let contact = crate::routes::contacts::ephemeral_contact();
            conversation.customer_mut().external_contact_id =
                contact["id"].as_str().map(str::to_owned);
            inner.contacts.push(contact);
        }
        let view = conversation.view();
        inner
            .conversations
            .insert(conversation.id.clone(), conversation);
        view
    }

    pub fn seed_customer(&self, customer: Customer) {
        let mut inner = self.lock();
        inner.customers.retain(|c| c.id != customer.id);
        inner.customers.push(customer);
    }

    pub fn seed_queue(&self, name: &str) -> Queue {
        self.lock().add_queue(name)
    }

    pub fn apply_seed(&self, seed: Seed) {
        for conversation in seed.conversations {
            self.seed_conversation(conversation);
        }
        for customer in seed.customers {
            self.seed_customer(customer);
        }
        for queue in &seed.queues {
            self.seed_queue(queue);
        }
    }

    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.add(fault, Instant::now());
    }

    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    pub fn revoke_tokens(&self) {
        self.lock().tokens.clear();
    }

    pub fn update_knobs(&self, update: KnobsUpdate) -> Knobs {
        let mut inner = self.lock();
        inner.knobs.apply(update);
        inner.knobs.clone()
    }

    pub fn conversation(&self, id: &str) -> Option<ConversationView> {
        self.lock().conversations.get(id).map(Conversation::view)
    }

    /// Every conversation, oldest start first.
    pub fn conversations(&self) -> Vec<ConversationView> {
        let inner = self.lock();
        let mut all: Vec<&Conversation> = inner.conversations.values().collect();
        all.sort_by_key(|c| (c.start_time, c.id.clone()));
        all.into_iter().map(Conversation::view).collect()
    }

    pub fn contacts(&self) -> Vec<Value> {
        self.lock().contacts.clone()
    }

    pub fn stats(&self) -> Stats {
        self.lock().stats.clone()
    }
}
