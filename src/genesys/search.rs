//! `POST /api/v2/conversations/participants/attributes/search`: recent conversations that
//! carry participant attributes. The endpoint filters only on `conversationId`, `startTime`,
//! `endTime` and `divisionId` (a criterion on participant data is refused with "Search not
//! supported."), so callers match attribute values themselves over a `DATE_RANGE` window.
//! Pages come with a `cursor` until the last one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{GenesysClient, GenesysError};

/// Pages read in one scan at most, so a flood of conversations cannot make a scan endless.
const MAX_PAGES: usize = 200;

/// One conversation found by the search.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchRow {
    /// Conversation id.
    pub conversation_id: String,
    /// Participants with their attributes.
    #[serde(default)]
    pub participant_data: Vec<ParticipantData>,
}

/// A participant's attributes in a search row.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantData {
    /// `customer`, `agent`, …
    #[serde(default)]
    pub participant_purpose: Option<String>,
    /// Participant id.
    #[serde(default)]
    pub participant_id: Option<String>,
    /// The attributes.
    #[serde(default)]
    pub participant_attributes: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SearchRequest<'a> {
    query: [Criterion; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Criterion {
    #[serde(rename = "type")]
    kind: &'static str,
    fields: [&'static str; 1],
    start_value: String,
    end_value: String,
}

#[derive(Debug, Deserialize)]
struct SearchPage {
    #[serde(default)]
    results: Vec<SearchRow>,
    #[serde(default)]
    cursor: Option<String>,
}

/// The result of one scan.
#[derive(Debug, Default)]
pub struct Scan {
    /// Every row of the window.
    pub rows: Vec<SearchRow>,
    /// Search calls made.
    pub pages: usize,
    /// Whether the scan stopped at its page limit with more pages left.
    pub truncated: bool,
}

impl GenesysClient {
    /// Every conversation with attributes that started in `[from, to]`, all pages.
    pub async fn search_conversations(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Scan, GenesysError> {
        let format = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut scan = Scan::default();
        let mut cursor: Option<String> = None;
        loop {
            let request = SearchRequest {
                query: [Criterion {
                    kind: "DATE_RANGE",
                    fields: ["startTime"],
                    start_value: format(from),
                    end_value: format(to),
                }],
                cursor: cursor.as_deref(),
            };
            let page: SearchPage = self
                .call_json(
                    "attributes_search",
                    Method::POST,
                    "/api/v2/conversations/participants/attributes/search",
                    Some(&request),
                )
                .await?;
            scan.pages += 1;
            scan.rows.extend(page.results);
            match page.cursor.filter(|c| !c.is_empty()) {
                Some(next) if scan.pages < MAX_PAGES => cursor = Some(next),
                Some(_) => {
                    scan.truncated = true;
                    return Ok(scan);
                }
                None => return Ok(scan),
            }
        }
    }
}
