//! Routing queues: names resolved to ids once at start (`GET /api/v2/routing/queues?name=`),
//! and the transfer of a customer participant to a queue
//! (`POST /api/v2/conversations/{cid}/participants/{pid}/replace/queue`).

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{GenesysClient, GenesysError};

/// A queue of the org.
#[derive(Debug, Clone, Deserialize)]
pub struct QueueEntity {
    /// Queue id.
    pub id: String,
    /// Queue name.
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Deserialize)]
struct QueueListing {
    #[serde(default)]
    entities: Vec<QueueEntity>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TransferToQueue<'a> {
    queue_id: &'a str,
}

impl GenesysClient {
    /// The queue named exactly `name` (case-insensitive), if any.
    pub async fn find_queue_by_name(
        &self,
        name: &str,
    ) -> Result<Option<QueueEntity>, GenesysError> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("name", name)
            .append_pair("pageSize", "25")
            .append_pair("pageNumber", "1")
            .finish();
        let path = format!("/api/v2/routing/queues?{query}");
        let listing: QueueListing = self
            .call_json("routing_queues", Method::GET, &path, None::<&()>)
            .await?;
        Ok(listing
            .entities
            .into_iter()
            .find(|q| q.name.eq_ignore_ascii_case(name)))
    }

    /// Transfers the participant to the queue (blind transfer; 202).
    pub async fn transfer_to_queue(
        &self,
        conversation_id: &str,
        participant_id: &str,
        queue_id: &str,
    ) -> Result<(), GenesysError> {
        let path = format!(
            "/api/v2/conversations/{conversation_id}/participants/{participant_id}/replace/queue"
        );
        self.call(
            "replace_queue",
            Method::POST,
            &path,
            Some(&TransferToQueue { queue_id }),
        )
        .await
        .map(|_| ())
    }
}
