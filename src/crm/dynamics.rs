//! Dynamics 365 through the Dataverse Web API (`crm.kind = "dynamics"`, README, "CRM").
//!
//! - Token: client credentials at the Microsoft identity platform,
//!   `POST {login_url}/{tenant}/oauth2/v2.0/token` with `scope={environment_url}/.default`;
//!   cached for its `expires_in`, dropped on a 401.
//! - Lookup: `GET {environment_url}/api/data/v9.2/{entity_set}?$select=<mapped columns>&
//!   $filter=<column> eq '…'&$top=1`, by email, then by the phone's usual spellings
//!   ([`super::phone`]) compared in E.164, then by the session hash column when mapped.
//!   String literals double their single quotes ([`odata_string`]) and the whole query
//!   option is percent-encoded, so no value can end the literal or the option.
//! - With `crm.lookup = "post"` each query goes as the one request of a `$batch`
//!   (`POST {environment_url}/api/data/v9.2/$batch`, `multipart/mixed`), so the filter (and
//!   the guest's email or phone in it) travels in the body, not in the URL.
//! - Service protection limits answer 429 with `Retry-After`: [`CrmError::RateLimited`],
//!   which the shared client waits out as a slowdown of the CRM's calls alone.

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::backend::CrmBackend;
use super::client::CrmError;
use super::fields::FieldMap;
use super::model::Customer;
use super::oauth::{encode, Grant, TokenCache};
use super::phone::spellings;
use crate::config::CrmSettings;
use crate::http_error::retry_after;
use crate::privacy::Phone;
use crate::submission::Submission;

/// Used when a 429 comes without a usable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Rows read in one phone search at most.
const PHONE_TOP: usize = 10;
/// Headers of every Web API request.
const ODATA_HEADERS: [(&str, &str); 3] = [
    ("accept", "application/json"),
    ("odata-maxversion", "4.0"),
    ("odata-version", "4.0"),
];

/// One Dataverse environment.
pub struct Dynamics {
    environment: String,
    api: String,
    entity_set: String,
    logical_name: String,
    fields: FieldMap,
    tokens: TokenCache,
    timeout: Duration,
    region: Option<phonenumber::country::Id>,
    /// `post`: queries go inside a `$batch` body.
    batch: bool,
}

/// An OData string literal, quotes included: a single quote is doubled. (The query option
/// it goes into is percent-encoded as a whole, [`encode`].)
pub fn odata_string(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// `{column} eq '…'`.
pub fn odata_eq(column: &str, value: &str) -> String {
    format!("{column} eq {}", odata_string(value))
}

/// `({column} eq '…' or {column} eq '…')`.
pub fn odata_any(column: &str, values: &[String]) -> String {
    let terms: Vec<String> = values.iter().map(|v| odata_eq(column, v)).collect();
    format!("({})", terms.join(" or "))
}

/// The query string `$select=…&$filter=…&$top=n`, each option percent-encoded.
pub fn odata_query(columns: &[&str], filter: Option<&str>, top: usize) -> String {
    let mut query = format!("$select={}", encode(&columns.join(",")));
    if let Some(filter) = filter {
        query.push_str("&$filter=");
        query.push_str(&encode(filter));
    }
    query.push_str(&format!("&$top={top}"));
    query
}

#[derive(Deserialize)]
struct Collection {
    value: Vec<Map<String, Value>>,
}

#[derive(Deserialize)]
struct ODataError {
    error: ODataErrorBody,
}

#[derive(Deserialize)]
struct ODataErrorBody {
    code: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AttributeDefinition {
    logical_name: String,
}

impl Dynamics {
    /// The environment of `crm.dynamics.*`.
    pub fn new(http: reqwest::Client, settings: &CrmSettings, fields: FieldMap) -> Self {
        let d = &settings.dynamics;
        let environment = d.environment_url.trim_end_matches('/').to_owned();
        let grant = Grant {
            token_url: format!(
                "{}/{}/oauth2/v2.0/token",
                d.login_url.trim_end_matches('/'),
                d.tenant
            ),
            form: vec![
                ("client_id", d.client_id.clone().into()),
                ("client_secret", d.client_secret.clone()),
                ("scope", format!("{environment}/.default").into()),
            ],
            default_lifetime: Duration::from_secs(3600),
            timeout: settings.timeout(),
        };
        let logical_name = if settings.object.is_empty() {
            "contact".to_owned()
        } else {
            settings.object.to_lowercase()
        };
        let entity_set = if d.entity_set.is_empty() {
            format!("{logical_name}s")
        } else {
            d.entity_set.clone()
        };
        Self {
            api: format!("{environment}/api/data/v9.2"),
            environment,
            entity_set,
            logical_name,
            fields,
            tokens: TokenCache::new(http, grant),
            timeout: settings.timeout(),
            region: settings.phone_region(),
            batch: settings.lookup == crate::config::RestLookup::Post,
        }
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, CrmError> {
        let answer = self.tokens.get(url, &ODATA_HEADERS, self.timeout).await?;
        match answer.status {
            200 => Ok(answer.body),
            status => Err(refusal(status, retry_after(&answer.headers), &answer.body)),
        }
    }

    /// `GET url` as the one request of a `$batch`: the URL travels in the body.
    async fn get_in_batch(&self, url: &str) -> Result<Vec<u8>, CrmError> {
        let boundary = format!("batch_{}", uuid::Uuid::new_v4().simple());
        let body = format!(
            "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET {url} HTTP/1.1\r\nAccept: application/json\r\n\r\n--{boundary}--\r\n"
        );
        let answer = self
            .tokens
            .post(
                &format!("{}/$batch", self.api),
                &ODATA_HEADERS,
                &format!("multipart/mixed; boundary={boundary}"),
                body.into_bytes(),
                self.timeout,
            )
            .await?;
        if answer.status != 200 {
            return Err(refusal(
                answer.status,
                retry_after(&answer.headers),
                &answer.body,
            ));
        }
        let content_type = answer
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let (status, body) = first_batch_answer(content_type, &answer.body)
            .ok_or_else(|| CrmError::Unreadable("batch answer".into()))?;
        match status {
            200 => Ok(body),
            // A throttled request inside a batch carries no header we read: wait the default.
            status => Err(refusal(status, None, &body)),
        }
    }

    /// Rows of the entity set matching `filter`.
    pub async fn rows(
        &self,
        filter: Option<&str>,
        columns: &[&str],
        top: usize,
    ) -> Result<Vec<Map<String, Value>>, CrmError> {
        let url = format!(
            "{}/{}?{}",
            self.api,
            self.entity_set,
            odata_query(columns, filter, top)
        );
        let body = if self.batch {
            self.get_in_batch(&url).await?
        } else {
            self.get(&url).await?
        };
        let collection: Collection = serde_json::from_slice(&body)
            .map_err(|e| CrmError::Unreadable(format!("collection: {e}")))?;
        Ok(collection.value)
    }

    async fn first(&self, filter: &str) -> Result<Option<Customer>, CrmError> {
        let rows = self.rows(Some(filter), &self.fields.columns(), 1).await?;
        rows.first().map(|r| self.fields.customer(r)).transpose()
    }

    async fn by_phone(&self, phone: &Phone) -> Result<Option<Customer>, CrmError> {
        let Some(search) = self.fields.phone_search.as_deref() else {
            return Ok(None);
        };
        let filter = odata_any(search, &spellings(phone));
        let rows = self
            .rows(Some(&filter), &self.fields.columns(), PHONE_TOP)
            .await?;
        self.fields
            .customer_with_phone(&rows, search, phone, self.region)
    }

    async fn lookup(&self, submission: &Submission) -> Result<Option<Customer>, CrmError> {
        let guest = &submission.guest;
        if let (Some(column), Some(email)) = (self.fields.email(), &guest.email) {
            if let Some(found) = self.first(&odata_eq(column, email.as_str())).await? {
                return Ok(Some(found));
            }
        }
        if let Some(phone) = &guest.phone {
            if let Some(found) = self.by_phone(phone).await? {
                return Ok(Some(found));
            }
        }
        if let (Some(column), Some(hash)) = (&self.fields.session_hash, &guest.session_hash) {
            if let Some(found) = self.first(&odata_eq(column, hash)).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }
}

impl CrmBackend for Dynamics {
    fn target(&self) -> String {
        format!("dynamics at {} ({})", self.environment, self.entity_set)
    }

    fn fetch<'a>(
        &'a self,
        submission: &'a Submission,
    ) -> BoxFuture<'a, Result<Option<Customer>, CrmError>> {
        self.lookup(submission).boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), CrmError>> {
        async { self.rows(None, &[self.fields.id()], 1).await.map(|_| ()) }.boxed()
    }

    fn verify(&self) -> BoxFuture<'_, Result<String, CrmError>> {
        async {
            self.tokens.token().await?;
            self.rows(None, &[self.fields.id()], 1).await?;
            let url = format!(
                "{}/EntityDefinitions(LogicalName={})/Attributes?$select=LogicalName",
                self.api,
                encode(&odata_string(&self.logical_name))
            );
            let body = self.get(&url).await?;
            let attributes: Vec<AttributeDefinition> =
                serde_json::from_slice::<Map<String, Value>>(&body)
                    .ok()
                    .and_then(|mut m| serde_json::from_value(m.remove("value")?).ok())
                    .ok_or_else(|| CrmError::Unreadable("attribute definitions".into()))?;
            let keyed = self.fields.keyed();
            let missing: Vec<(String, String)> = keyed
                .iter()
                .filter(|(_, column)| !attributes.iter().any(|a| a.logical_name == *column))
                .map(|(key, column)| ((*key).to_owned(), (*column).to_owned()))
                .collect();
            if !missing.is_empty() {
                return Err(CrmError::MissingFields(self.logical_name.clone(), missing));
            }
            Ok(format!(
                "{}: token granted, query answered, the {} mapped columns exist",
                self.target(),
                keyed.len()
            ))
        }
        .boxed()
    }
}

/// The error of an answer other than 200: Dataverse's `{"error": {"code", "message"}}`, or a
/// 429 to wait out.
fn refusal(status: u16, retry_after: Option<Duration>, body: &[u8]) -> CrmError {
    if status == 429 {
        return CrmError::RateLimited(retry_after.unwrap_or(DEFAULT_RETRY_AFTER));
    }
    match serde_json::from_slice::<ODataError>(body) {
        Ok(e) => CrmError::Refused {
            status,
            code: e.error.code,
        },
        Err(_) => CrmError::Status(status),
    }
}

/// The status and body of the first answer in a `multipart/mixed` batch answer: the part's
/// `application/http` content is a status line, headers, a blank line and the body.
fn first_batch_answer(content_type: &str, body: &[u8]) -> Option<(u16, Vec<u8>)> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    let text = std::str::from_utf8(body).ok()?;
    let delimiter = format!("--{boundary}");
    let part = text.split(&delimiter).nth(1)?;
    let (_, http) = part.split_once("\r\n\r\n")?;
    let (head, body) = http.split_once("\r\n\r\n")?;
    let status = head.lines().next()?.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.trim_end().as_bytes().to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads an OData string literal back: `''` is one quote, a lone quote ends it.
    fn unquote(s: &str) -> Option<(String, &str)> {
        let rest = s.strip_prefix('\'')?;
        let mut value = String::new();
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().is_some_and(|(_, n)| *n == '\'') {
                    chars.next();
                    value.push('\'');
                } else {
                    return Some((value, &rest[i + 1..]));
                }
            } else {
                value.push(c);
            }
        }
        None
    }

    fn decode(s: &str) -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .unwrap()
            .1
            .into_owned()
    }

    const HOSTILE: [&str; 10] = [
        "o'brien@example.com",
        "x' or emailaddress1 ne '",
        "''",
        "'",
        "a&$top=5000&b=c@example.com",
        "semi;colon#hash?q=1@example.com",
        "plus+sign@example.com",
        "pct%27encoded%2527@example.com",
        "back\\slash\"quote@example.com",
        "sp ace\ttab\nnl@例え.jp",
    ];

    #[test]
    fn hostile_values_stay_inside_their_literal() {
        for value in HOSTILE {
            let filter = odata_eq("emailaddress1", value);
            let tail = filter.strip_prefix("emailaddress1 eq ").unwrap();
            let (read, rest) = unquote(tail).unwrap();
            assert_eq!((read.as_str(), rest), (value, ""), "{filter}");
        }
    }

    #[test]
    fn a_hostile_value_never_changes_the_query_string() {
        for value in HOSTILE {
            let query = odata_query(
                &["contactid", "emailaddress1"],
                Some(&odata_eq("emailaddress1", value)),
                1,
            );
            let options: Vec<&str> = query.split('&').collect();
            assert_eq!(options.len(), 3, "{query}");
            assert_eq!(options[0], "$select=contactid%2Cemailaddress1");
            assert_eq!(options[2], "$top=1");
            assert!(!query.contains(' ') && !query.contains('+') && !query.contains('\''));
            let filter = decode(options[1].strip_prefix("$filter=").unwrap());
            assert_eq!(filter, odata_eq("emailaddress1", value));
        }
        let any = odata_any("telephone1", &HOSTILE.map(String::from));
        let mut rest = any.strip_prefix('(').unwrap();
        for value in HOSTILE {
            let (read, after) = unquote(rest.strip_prefix("telephone1 eq ").unwrap()).unwrap();
            assert_eq!(read, value);
            rest = after
                .strip_prefix(" or ")
                .or_else(|| after.strip_prefix(')'))
                .unwrap();
        }
        assert_eq!(rest, "");
    }

    #[test]
    fn single_quotes_are_doubled() {
        assert_eq!(odata_string("O'Brien"), "'O''Brien'");
        assert_eq!(odata_string("''"), "''''''");
        assert_eq!(encode("a eq 'b c'"), "a%20eq%20%27b%20c%27");
    }
}
