//! `prechat-sim`: a loopback **sandbox** of the Genesys Cloud Platform API and of a generic CRM
//! REST API, for `prechat-enricher`'s demo and integration tests. It is a test double: it
//! imitates the real shapes (see `genesys-api.md`) but is not Genesys Cloud.
//!
//! Use it in-process with [`spawn`] and the [`SimHandle`] it returns, or as the `prechat-sim`
//! binary driven through the `/sim/...` control routes.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use prechat_sim::{spawn, SeedConversation, SimConfig};
//! let sim = spawn(SimConfig::default()).await?;
//! let conversation = sim.seed_conversation(SeedConversation::default());
//! // point the client's login, API and CRM base URLs at sim.base_url() …
//! assert_eq!(sim.conversation(&conversation.id).unwrap().attribute_patches, 0);
//! # Ok(()) }
//! ```
//!
//! Served routes:
//! - `POST /oauth/token` — client-credentials grant.
//! - `GET /api/v2/conversations/messages/{id}`, `PATCH …/messages/{cid}/participants/{pid}/attributes`
//!   (merging the keys in, or replacing them all with `SimConfig::attribute_patch_replaces`).
//! - `GET /api/v2/conversations/{id}`: the generic `Conversation`, whose participants list
//!   their communications (`messages[].id`, never the participant id).
//! - `POST /api/v2/conversations/participants/attributes/search` (cursor pages).
//! - External Contacts: `POST …/externalcontacts/identifierlookup/contacts` (and the deprecated
//!   `…/identifierlookup`), `POST …/contacts/enrich` (`ContactEnrichRequest`), `POST
//!   …/contacts/merge` (`MergeContactsRequest`), `POST|GET|PUT|DELETE …/contacts[/{id}]`, `PUT
//!   …/externalcontacts/conversations/{cid}` (`ConversationAssociation`; 202 and no link for a
//!   wrong `communicationId`). Lookups find claimed identifiers only; whether a plain create
//!   claims its emails and phones is the switch `SimConfig::claim_identifiers_on_create`.
//! - `GET /api/v2/routing/queues`, `POST /api/v2/conversations/{cid}/participants/{pid}/replace/queue`.
//! - Permissions: every route needs what the SDKs declare ([`Route::permissions`]); a client
//!   whose role lacks them (`SimConfig::denied_permissions`) gets 403.
//! - `GET /customers` and `POST /customers/search` (identifiers in a JSON body) — the generic CRM.
//! - Salesforce: `POST /services/oauth2/token`, `GET /services/data/vXX.X/query?q=SOQL`,
//!   `GET /services/data/vXX.X/sobjects/{Contact|Lead}/describe` (`routes::salesforce`).
//! - Dataverse: `POST /{tenant}/oauth2/v2.0/token`, `GET /api/data/v9.2/contacts?$select&$filter&$top`,
//!   `GET /api/data/v9.2/EntityDefinitions(LogicalName='contact')/Attributes` (`routes::dataverse`).
//!   All three CRMs serve the same seeded customers, each in its own shape.
//! - `/sim/...` — control and inspection, for scripts.
//!
//! Layout:
//! - `config` — [`SimConfig`] and the run-time knobs;
//! - `model` — the public data types ([`SeedConversation`], [`ConversationView`], [`Customer`], [`Stats`], [`Seed`]);
//! - `faults` — [`Fault`] and [`Route`];
//! - `handle` — [`spawn`] and [`SimHandle`];
//! - `state`, `ops` — the shared state behind one mutex and what can be done to it;
//! - `gate` — auth, rate limit, latency, random errors, faults and stats around every call;
//! - `ratelimit`, `auth`, `error`, `conversation` — one concept each;
//! - `routes` — one module per API area.

mod auth;
mod config;
mod conversation;
mod error;
mod faults;
mod gate;
mod handle;
mod model;
mod ops;
mod ratelimit;
mod routes;
mod state;
pub mod wait;

pub use config::{Knobs, KnobsUpdate, SimConfig};
pub use faults::{Fault, Route};
pub use handle::{spawn, SimHandle};
pub use model::{ConversationView, Customer, Seed, SeedConversation, Stats};
