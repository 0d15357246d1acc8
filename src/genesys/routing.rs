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
#[serde(rename_all = "camelCase")]
struct QueueListing {
    #[serde(default)]
    entities: Vec<QueueEntity>,
    #[serde(default)]
    page_count: Option<u32>,
}

/// Pages of a name search read at most (a filter that is a prefix or wildcard in Genesys
/// could list many queues before the exact one).
const MAX_QUEUE_PAGES: u32 = 10;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct TransferToQueue<'a> {
    queue_id: &'a str,
}

impl GenesysClient {
    /// The queue named exactly `name` (case-insensitive), if any, over the listing's pages.
    pub async fn find_queue_by_name(
        &self,
        name: &str,
    ) -> Result<Option<QueueEntity>, GenesysError> {
        for page in 1..=MAX_QUEUE_PAGES {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("name", name)
                .append_pair("pageSize", "100")
                .append_pair("pageNumber", &page.to_string())
                .finish();
            let path = format!("/api/v2/routing/queues?{query}");
            let listing: QueueListing = self
                .call_json("routing_queues", Method::GET, &path, None::<&()>)
                .await?;
            let last =
                listing.page_count.is_none_or(|count| page >= count) || listing.entities.is_empty();
            if let Some(queue) = listing
                .entities
                .into_iter()
                .find(|q| q.name.eq_ignore_ascii_case(name))
            {
                return Ok(Some(queue));
            }
            if last {
                break;
            }
        }
        Ok(None)
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
