//! One harmless probe per call the configuration makes: a read, or a write aimed at a
//! made-up conversation (or with a body Genesys must refuse), so that a 403 tells a missing
//! permission apart from any other answer and nothing in the org changes.

use chrono::Utc;
use reqwest::Method;
use uuid::Uuid;

use super::fact::{Fact, Outcome};
use crate::config::{RoutingMode, Settings};
use crate::genesys::contacts::{ContactEnrichOptions, ContactEnrichRequest, ExternalContact};
use crate::genesys::{GenesysClient, GenesysError};

/// Permissions of each call, as the SDK documentation declares them (JS SDK 259,
/// `build/docs/ConversationsApi.md`, `ExternalContactsApi.md`, `RoutingApi.md`).
pub mod needs {
    /// `GET /api/v2/conversations/messages/{id}` and the attribute PATCH: none declared.
    pub const NONE: &[&str] = &[];
    /// `GET /api/v2/conversations/{id}`.
    pub const CONVERSATION_VIEW: &[&str] = &["conversation:communication:view"];
    /// `POST /api/v2/conversations/participants/attributes/search`.
    pub const SEARCH: &[&str] = &["conversation:participant:attributesview"];
    /// `GET /api/v2/routing/queues`.
    pub const QUEUE_VIEW: &[&str] = &["routing:queue:view"];
    /// `POST /api/v2/conversations/{cid}/participants/{pid}/replace/queue`.
    pub const TRANSFER: &[&str] = &[
        "conversation:communication:blindTransfer",
        "conversation:communication:blindTransferQueue",
    ];
    /// `POST /api/v2/externalcontacts/contacts/enrich`.
    pub const ENRICH: &[&str] = &["externalContacts:contact:enrich"];
    /// `PUT /api/v2/externalcontacts/conversations/{cid}`.
    pub const LINK: &[&str] = &[
        "externalContacts:conversation:associate",
        "relate:conversation:associate",
    ];
    /// `DELETE /api/v2/externalcontacts/contacts/{id}`.
    pub const DELETE_CONTACT: &[&str] =
        &["externalContacts:contact:delete", "relate:contact:delete"];
}

/// The calls of the service's conversation read: the generic read with External Contacts
/// (it carries the communication id a link needs), else the message conversation.
pub fn conversation_read(settings: &Settings) -> (&'static str, &'static [&'static str]) {
    if settings.genesys.external_contacts.enabled {
        ("GET /api/v2/conversations/{id}", needs::CONVERSATION_VIEW)
    } else {
        ("GET /api/v2/conversations/messages/{id}", needs::NONE)
    }
}

/// The outcome of a probe aimed at something that does not exist: any answer but a 403 (or a
/// failure of Genesys itself) means the permission check passed.
fn refused_as_expected(result: Result<(), GenesysError>, needs: &[&str], what: &str) -> Outcome {
    match result {
        Ok(()) => Outcome::Ok(format!("permitted (2xx for {what})")),
        Err(error @ (GenesysError::Forbidden { .. } | GenesysError::Unavailable { .. })) => {
            Outcome::from_error(&error, needs)
        }
        Err(GenesysError::Unauthorized { status, .. }) => {
            Outcome::Failed(format!("answered {status}: the token was refused"))
        }
        Err(GenesysError::RateLimited { retry_after }) => Outcome::Failed(format!(
            "rate limited; retry after {} s",
            retry_after.as_secs()
        )),
        Err(error) => Outcome::Ok(format!(
            "permitted ({} for {what})",
            error.status().unwrap_or_default()
        )),
    }
}

/// The probes that need no test conversation.
pub async fn run(genesys: &GenesysClient, settings: &Settings, facts: &mut Vec<Fact>) {
    let made_up = Uuid::new_v4().to_string();
    let (call, needed) = conversation_read(settings);
    let read = if settings.genesys.external_contacts.enabled {
        genesys.get_conversation(&made_up).await.map(drop)
    } else {
        genesys.get_message_conversation(&made_up).await.map(drop)
    };
    facts.push(Fact::required(
        "conversation read",
        call,
        refused_as_expected(read, needed, "a made-up conversation"),
    ));
    facts.push(search(genesys, settings).await);
    facts.extend(queues(genesys, settings).await);
    facts.push(transfer(genesys, settings, &made_up).await);
    contacts(genesys, settings, &made_up, facts).await;
}

async fn search(genesys: &GenesysClient, settings: &Settings) -> Fact {
    const CALL: &str = "POST /api/v2/conversations/participants/attributes/search";
    if !settings.resolver.enabled {
        return Fact::informative(
            "attribute search",
            CALL,
            Outcome::Skipped("resolver.enabled = false: the service never searches".into()),
        );
    }
    let now = Utc::now();
    let outcome = match genesys
        .search_conversations(now - chrono::Duration::minutes(1), now)
        .await
    {
        Ok(scan) => Outcome::Ok(format!(
            "{} conversation(s) with attributes in the last minute",
            scan.rows.len()
        )),
        Err(error) => Outcome::from_error(&error, needs::SEARCH),
    };
    Fact::required("attribute search", CALL, outcome)
}

/// One fact per queue name of `routing.queues` (ids are used as they are).
async fn queues(genesys: &GenesysClient, settings: &Settings) -> Vec<Fact> {
    const CALL: &str = "GET /api/v2/routing/queues?name=";
    let named: Vec<_> = settings
        .routing
        .queues
        .iter()
        .filter(|(_, queue)| Uuid::parse_str(queue).is_err())
        .collect();
    if named.is_empty() {
        return vec![Fact::informative(
            "routing queues",
            CALL,
            Outcome::Skipped("routing.queues names no queue by name".into()),
        )];
    }
    let mut facts = Vec::new();
    for (tier, name) in named {
        let outcome = match genesys.find_queue_by_name(name).await {
            Ok(Some(queue)) => Outcome::Ok(format!("{name:?} is {}", queue.id)),
            Ok(None) => Outcome::Differs(format!(
                "Genesys has no queue named {name:?}: the service would not start"
            )),
            Err(error) => Outcome::from_error(&error, needs::QUEUE_VIEW),
        };
        facts.push(Fact::required(
            &format!("routing queue {tier}"),
            CALL,
            outcome,
        ));
    }
    facts
}

/// `replace/queue` on a made-up conversation, to no queue: nothing can move.
async fn transfer(genesys: &GenesysClient, settings: &Settings, made_up: &str) -> Fact {
    const CALL: &str = "POST /api/v2/conversations/{cid}/participants/{pid}/replace/queue";
    if settings.routing.mode != RoutingMode::Transfer {
        return Fact::informative(
            "queue transfer",
            CALL,
            Outcome::Skipped("routing.mode = attributes: the flow transfers".into()),
        );
    }
    let result = genesys.transfer_to_queue(made_up, made_up, "").await;
    Fact::required(
        "queue transfer",
        CALL,
        refused_as_expected(
            result,
            needs::TRANSFER,
            "a transfer of a made-up conversation",
        ),
    )
}

/// Enrich with no identifier (Genesys must refuse it), a link of a made-up conversation, and
/// the delete `verify --conversation` cleans up with.
async fn contacts(
    genesys: &GenesysClient,
    settings: &Settings,
    made_up: &str,
    facts: &mut Vec<Fact>,
) {
    const ENRICH: &str = "POST /api/v2/externalcontacts/contacts/enrich";
    const LINK: &str = "PUT /api/v2/externalcontacts/conversations/{cid}";
    const DELETE: &str = "DELETE /api/v2/externalcontacts/contacts/{id}";
    if !settings.genesys.external_contacts.enabled {
        let off = || Outcome::Skipped("genesys.external_contacts.enabled = false".into());
        facts.push(Fact::informative("contact enrich", ENRICH, off()));
        facts.push(Fact::informative("contact link", LINK, off()));
        return;
    }
    let empty = ContactEnrichRequest {
        matching_identifiers: Vec::new(),
        action: "Upsert",
        contact: ExternalContact::default(),
        options: ContactEnrichOptions { promote: false },
    };
    let enrich = match genesys.enrich_contact(&empty).await {
        Ok(contact) => Outcome::Differs(format!(
            "accepted an enrich without identifiers (contact {:?})",
            contact.id().unwrap_or("")
        )),
        Err(error) => {
            refused_as_expected(Err(error), needs::ENRICH, "an enrich without identifiers")
        }
    };
    facts.push(Fact::required("contact enrich", ENRICH, enrich));
    let link = genesys.link_contact(made_up, made_up, made_up).await;
    facts.push(Fact::required(
        "contact link",
        LINK,
        refused_as_expected(link, needs::LINK, "a link of a made-up conversation"),
    ));
    let path = format!("/api/v2/externalcontacts/contacts/{made_up}");
    let delete = genesys
        .call("delete_contact", Method::DELETE, &path, None::<&()>)
        .await
        .map(drop);
    facts.push(Fact::informative(
        "contact delete",
        DELETE,
        refused_as_expected(delete, needs::DELETE_CONTACT, "a made-up contact"),
    ));
}
