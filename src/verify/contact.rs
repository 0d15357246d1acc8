//! External Contacts on the test conversation: enrich a throwaway identifier
//! (`prechat-verify-<uuid>@example.invalid`, in no field of the contact), link the
//! conversation to the contact as the worker does, read back that the conversation points at
//! it, then delete the contact and read back that it is gone.

use reqwest::Method;
use tokio::time::{sleep, Instant};
use uuid::Uuid;

use super::conversation::{Test, READ_BACK_POLL, READ_BACK_WAIT};
use super::fact::{Fact, Outcome};
use super::probes::{conversation_read, needs};
use crate::genesys::contacts::{
    ContactEnrichOptions, ContactEnrichRequest, ContactIdentifier, ExternalContact, IdentifierType,
};
use crate::genesys::GenesysError;

const ENRICH: &str = "POST /api/v2/externalcontacts/contacts/enrich";
const LINK: &str = "PUT /api/v2/externalcontacts/conversations/{cid}";
const DELETE: &str = "DELETE /api/v2/externalcontacts/contacts/{id}";

impl Test<'_> {
    /// Enrich, link, read back, delete: one fact each (later ones skipped when one fails).
    pub(super) async fn contact(&self, facts: &mut Vec<Fact>) {
        let throwaway = format!("prechat-verify-{}@example.invalid", Uuid::new_v4());
        let request = ContactEnrichRequest {
            matching_identifiers: vec![ContactIdentifier {
                kind: IdentifierType::Email,
                value: throwaway.clone(),
            }],
            action: "Upsert",
            contact: ExternalContact(
                serde_json::json!({"firstName": "prechat-enricher", "lastName": "verify"})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
            ),
            // Not promoted: were the delete to fail, an Identified contact expires by itself.
            options: ContactEnrichOptions { promote: false },
        };
        let contact_id = match self.genesys.enrich_contact(&request).await {
            Ok(contact) => match contact.id() {
                Some(id) => {
                    facts.push(Fact::required(
                        "contact enrich (test)",
                        ENRICH,
                        Outcome::Ok(format!("contact {id} for {throwaway}")),
                    ));
                    id.to_owned()
                }
                None => {
                    facts.push(Fact::required(
                        "contact enrich (test)",
                        ENRICH,
                        Outcome::Differs("the answer has no contact id".into()),
                    ));
                    return;
                }
            },
            Err(error) => {
                facts.push(Fact::required(
                    "contact enrich (test)",
                    ENRICH,
                    Outcome::from_error(&error, needs::ENRICH),
                ));
                return;
            }
        };
        facts.push(self.link(&contact_id).await);
        facts.push(self.delete(&contact_id).await);
    }

    /// Links the conversation through the customer's communication id, then waits for the
    /// conversation to show the contact (the link works asynchronously).
    async fn link(&self, contact_id: &str) -> Fact {
        let (read_call, read_needs) = conversation_read(self.settings);
        let conversation = match self.genesys.get_conversation(self.conversation_id).await {
            Ok(conversation) => conversation,
            Err(error) => {
                return Fact::required(
                    "contact link (test)",
                    read_call,
                    Outcome::from_error(&error, read_needs),
                )
            }
        };
        let Some(communication_id) = conversation
            .customer()
            .and_then(|customer| customer.communication_id.clone())
        else {
            return Fact::required(
                "contact link (test)",
                read_call,
                Outcome::Differs("the customer participant lists no communication".into()),
            );
        };
        if let Err(error) = self
            .genesys
            .link_contact(self.conversation_id, &communication_id, contact_id)
            .await
        {
            return Fact::required(
                "contact link (test)",
                LINK,
                Outcome::from_error(&error, needs::LINK),
            );
        }
        let started = Instant::now();
        let outcome = loop {
            match self.customer().await {
                Ok(customer)
                    if customer.external_contact.as_ref().map(|c| c.id.as_str())
                        == Some(contact_id) =>
                {
                    break Outcome::Ok(format!(
                        "the conversation points at {contact_id} after {:.1} s",
                        started.elapsed().as_secs_f64()
                    ))
                }
                Ok(customer) if started.elapsed() >= READ_BACK_WAIT => {
                    break Outcome::Differs(format!(
                        "accepted, but {} s later the conversation points at {}",
                        READ_BACK_WAIT.as_secs(),
                        customer
                            .external_contact
                            .map_or("no contact".to_owned(), |c| c.id)
                    ))
                }
                Ok(_) => sleep(READ_BACK_POLL).await,
                Err(outcome) => break outcome,
            }
        };
        Fact::required("contact link (test)", LINK, outcome)
    }

    /// Deletes the throwaway contact and reads it back (404 = gone).
    async fn delete(&self, contact_id: &str) -> Fact {
        let path = format!("/api/v2/externalcontacts/contacts/{contact_id}");
        let outcome = match self
            .genesys
            .call("delete_contact", Method::DELETE, &path, None::<&()>)
            .await
        {
            Err(error) => match Outcome::from_error(&error, needs::DELETE_CONTACT) {
                Outcome::MissingPermission(detail) => Outcome::MissingPermission(format!(
                    "{detail}; delete contact {contact_id} by hand"
                )),
                other => other,
            },
            Ok(_) => match self
                .genesys
                .call("get_contact", Method::GET, &path, None::<&()>)
                .await
            {
                Err(GenesysError::NotFound { .. }) => {
                    Outcome::Ok(format!("{contact_id} deleted (a read answers 404)"))
                }
                Ok(_) => Outcome::Differs(format!(
                    "the DELETE was accepted, but {contact_id} still reads back"
                )),
                Err(error) => Outcome::Ok(format!("{contact_id} deleted (not read back: {error})")),
            },
        };
        Fact::informative("contact delete (test)", DELETE, outcome)
    }
}
