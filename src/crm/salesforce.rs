//! Salesforce (`crm.kind = "salesforce"`, README, "CRM").
//!
//! - Token: OAuth 2.0 client credentials flow of a connected app at the org's My Domain,
//!   `POST {my_domain}/services/oauth2/token` (`grant_type=client_credentials`, the consumer
//!   key and secret). The answer carries no lifetime, so a token is kept for
//!   `crm.salesforce.token_ttl_secs` or until a 401.
//! - Lookup: SOQL through the REST API, `GET /services/data/v{api_version}/query?q=…`,
//!   selecting the mapped fields only: by email (`LIMIT 1`), then by the phone's usual
//!   spellings ([`super::phone`]) with an E.164 comparison, then by the session hash field
//!   when one is mapped. Values are escaped as SOQL's quoted string escape sequences require
//!   ([`soql_string`]), so no value can end the literal.
//! - Limits: every answer's `Sforce-Limit-Info` (`api-usage=used/limit`) is logged, with a
//!   warning past 90 %; 403 `REQUEST_LIMIT_EXCEEDED` makes the CRM unavailable (an outage of
//!   the CRM, not a failure of the submission).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::backend::CrmBackend;
use super::client::CrmError;
use super::fields::FieldMap;
use super::model::Customer;
use super::oauth::{encode, Answer, Grant, TokenCache};
use super::phone::spellings;
use crate::config::CrmSettings;
use crate::privacy::Phone;
use crate::submission::Submission;

/// Records read in one phone search at most.
const PHONE_LIMIT: usize = 10;

/// The Salesforce REST API of one org.
pub struct Salesforce {
    base: String,
    /// `/services/data/vXX.X`.
    api_path: String,
    /// `{base}{api_path}`.
    api: String,
    /// `post`: queries go as a Composite subrequest, in a `POST` body.
    composite: bool,
    object: String,
    fields: FieldMap,
    tokens: TokenCache,
    timeout: Duration,
    region: Option<phonenumber::country::Id>,
    used: AtomicU64,
    limit: AtomicU64,
    warned: AtomicBool,
}

/// A SOQL string literal, quotes included: backslash, both quotes, new line, carriage
/// return, tab, backspace and form feed as their escape sequences, any other control
/// character as `\uXXXX`. Nothing in `value` can end the literal or start an escape
/// Salesforce would reject.
pub fn soql_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// `SELECT {columns} FROM {object} WHERE {condition} LIMIT {limit}`; names come from the
/// validated configuration, values only through [`soql_string`].
pub fn soql_select(
    columns: &[&str],
    object: &str,
    condition: Option<&str>,
    limit: usize,
) -> String {
    let mut soql = format!("SELECT {} FROM {object}", columns.join(", "));
    if let Some(condition) = condition {
        soql.push_str(" WHERE ");
        soql.push_str(condition);
    }
    soql.push_str(&format!(" LIMIT {limit}"));
    soql
}

/// `{field} = '…'`.
pub fn soql_equals(field: &str, value: &str) -> String {
    format!("{field} = {}", soql_string(value))
}

/// `{field} IN ('…', '…')`.
pub fn soql_in(field: &str, values: &[String]) -> String {
    let list: Vec<String> = values.iter().map(|v| soql_string(v)).collect();
    format!("{field} IN ({})", list.join(", "))
}

#[derive(Deserialize)]
struct QueryResult {
    records: Vec<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApiError {
    error_code: String,
}

#[derive(Deserialize)]
struct Describe {
    fields: Vec<DescribeField>,
}

#[derive(Deserialize)]
struct DescribeField {
    name: String,
}

/// `api-usage=used/limit` of a `Sforce-Limit-Info` value.
pub fn api_usage(header: &str) -> Option<(u64, u64)> {
    let usage = header
        .split(';')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("api-usage="))?;
    let (used, limit) = usage.split_once('/')?;
    Some((used.trim().parse().ok()?, limit.trim().parse().ok()?))
}

impl Salesforce {
    /// The org of `crm.salesforce.*`.
    pub fn new(http: reqwest::Client, settings: &CrmSettings, fields: FieldMap) -> Self {
        let sf = &settings.salesforce;
        let base = sf.my_domain.trim_end_matches('/').to_owned();
        let grant = Grant {
            token_url: format!("{base}/services/oauth2/token"),
            form: vec![
                ("client_id", sf.client_id.clone().into()),
                ("client_secret", sf.client_secret.clone()),
            ],
            default_lifetime: Duration::from_secs(sf.token_ttl_secs),
            timeout: settings.timeout(),
        };
        let object = if settings.object.is_empty() {
            "Contact".to_owned()
        } else {
            settings.object.clone()
        };
        let api_path = format!("/services/data/v{}", sf.api_version);
        Self {
            api: format!("{base}{api_path}"),
            api_path,
            composite: settings.lookup == crate::config::RestLookup::Post,
            base,
            object,
            fields,
            tokens: TokenCache::new(http, grant),
            timeout: settings.timeout(),
            region: settings.phone_region(),
            used: AtomicU64::new(0),
            limit: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    fn note_limits(&self, answer: &Answer) {
        let Some((used, limit)) = answer
            .headers
            .get("sforce-limit-info")
            .and_then(|v| v.to_str().ok())
            .and_then(api_usage)
        else {
            return;
        };
        self.used.store(used, Ordering::Relaxed);
        self.limit.store(limit, Ordering::Relaxed);
        let high = limit > 0 && used * 10 >= limit * 9;
        if high && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                crm.api_usage = used,
                crm.api_limit = limit,
                "Salesforce API usage above 90% of the org's daily limit"
            );
        } else {
            if !high {
                self.warned.store(false, Ordering::Relaxed);
            }
            tracing::debug!(
                crm.api_usage = used,
                crm.api_limit = limit,
                "Salesforce API usage"
            );
        }
    }

    /// The latest `api-usage` the org reported, `(used, limit)`.
    pub fn api_usage(&self) -> Option<(u64, u64)> {
        let limit = self.limit.load(Ordering::Relaxed);
        (limit > 0).then(|| (self.used.load(Ordering::Relaxed), limit))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, CrmError> {
        let answer = self
            .tokens
            .get(url, &[("accept", "application/json")], self.timeout)
            .await?;
        self.note_limits(&answer);
        if answer.status == 200 {
            return Ok(answer.body);
        }
        Err(refusal(answer.status, &answer.body))
    }

    /// One query as the only subrequest of a Composite request, so that the SOQL (and the
    /// guest's email or phone in it) travels in the `POST` body rather than in the URL.
    async fn composite_query(&self, path: &str) -> Result<Vec<u8>, CrmError> {
        let request = serde_json::json!({
            "allOrNone": false,
            "compositeRequest": [{"method": "GET", "url": path, "referenceId": "lookup"}],
        });
        let answer = self
            .tokens
            .post_json(
                &format!("{}/composite", self.api),
                &[("accept", "application/json")],
                &request,
                self.timeout,
            )
            .await?;
        self.note_limits(&answer);
        if answer.status != 200 {
            return Err(refusal(answer.status, &answer.body));
        }
        let composite: CompositeResponse = serde_json::from_slice(&answer.body)
            .map_err(|e| CrmError::Unreadable(format!("composite result: {e}")))?;
        let Some(sub) = composite.composite_response.into_iter().next() else {
            return Err(CrmError::Unreadable(
                "composite result without a response".into(),
            ));
        };
        let body = serde_json::to_vec(&sub.body).unwrap_or_default();
        match sub.http_status_code {
            200 => Ok(body),
            status => Err(refusal(status, &body)),
        }
    }

    /// Runs one SOQL query.
    pub async fn query(&self, soql: &str) -> Result<Vec<Map<String, Value>>, CrmError> {
        let path = format!("{}/query?q={}", self.api_path, encode(soql));
        let body = if self.composite {
            self.composite_query(&path).await?
        } else {
            self.get(&format!("{}{path}", self.base)).await?
        };
        let result: QueryResult = serde_json::from_slice(&body)
            .map_err(|e| CrmError::Unreadable(format!("query result: {e}")))?;
        Ok(result.records)
    }

    fn select(&self, condition: &str, limit: usize) -> String {
        soql_select(&self.fields.columns(), &self.object, Some(condition), limit)
    }

    async fn by_phone(&self, phone: &Phone) -> Result<Option<Customer>, CrmError> {
        let Some(search) = self.fields.phone_search.as_deref() else {
            return Ok(None);
        };
        let records = self
            .query(&self.select(&soql_in(search, &spellings(phone)), PHONE_LIMIT))
            .await?;
        self.fields
            .customer_with_phone(&records, search, phone, self.region)
    }

    async fn lookup(&self, submission: &Submission) -> Result<Option<Customer>, CrmError> {
        let guest = &submission.guest;
        if let (Some(field), Some(email)) = (self.fields.email(), &guest.email) {
            let records = self
                .query(&self.select(&soql_equals(field, email.as_str()), 1))
                .await?;
            if let Some(record) = records.first() {
                return self.fields.customer(record).map(Some);
            }
        }
        if let Some(phone) = &guest.phone {
            if let Some(found) = self.by_phone(phone).await? {
                return Ok(Some(found));
            }
        }
        if let (Some(field), Some(hash)) = (&self.fields.session_hash, &guest.session_hash) {
            let records = self
                .query(&self.select(&soql_equals(field, hash), 1))
                .await?;
            if let Some(record) = records.first() {
                return self.fields.customer(record).map(Some);
            }
        }
        Ok(None)
    }

    fn harmless(&self) -> String {
        soql_select(&[self.fields.id()], &self.object, None, 1)
    }
}

impl CrmBackend for Salesforce {
    fn target(&self) -> String {
        format!("salesforce at {} ({})", self.base, self.object)
    }

    fn fetch<'a>(
        &'a self,
        submission: &'a Submission,
    ) -> BoxFuture<'a, Result<Option<Customer>, CrmError>> {
        self.lookup(submission).boxed()
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), CrmError>> {
        async { self.query(&self.harmless()).await.map(|_| ()) }.boxed()
    }

    fn verify(&self) -> BoxFuture<'_, Result<String, CrmError>> {
        async {
            self.tokens.token().await?;
            self.query(&self.harmless()).await?;
            let body = self
                .get(&format!("{}/sobjects/{}/describe", self.api, self.object))
                .await?;
            let describe: Describe = serde_json::from_slice(&body)
                .map_err(|e| CrmError::Unreadable(format!("describe: {e}")))?;
            let keyed = self.fields.keyed();
            let missing: Vec<(String, String)> = keyed
                .iter()
                .filter(|(_, field)| {
                    !describe
                        .fields
                        .iter()
                        .any(|f| f.name.eq_ignore_ascii_case(field))
                })
                .map(|(key, field)| ((*key).to_owned(), (*field).to_owned()))
                .collect();
            if !missing.is_empty() {
                return Err(CrmError::MissingFields(self.object.clone(), missing));
            }
            let usage = self
                .api_usage()
                .map(|(used, limit)| format!(", api-usage {used}/{limit}"))
                .unwrap_or_default();
            Ok(format!(
                "{}: token granted, query answered, the {} mapped fields exist{usage}",
                self.target(),
                keyed.len()
            ))
        }
        .boxed()
    }
}

/// The error of an answer other than 200: Salesforce's `[{"errorCode", "message"}]`.
fn refusal(status: u16, body: &[u8]) -> CrmError {
    let code = serde_json::from_slice::<Vec<ApiError>>(body)
        .ok()
        .and_then(|errors| errors.into_iter().next())
        .map(|e| e.error_code);
    match code {
        Some(code) if status == 403 && code == "REQUEST_LIMIT_EXCEEDED" => {
            tracing::warn!("Salesforce API request limit exceeded: the CRM is unavailable");
            CrmError::LimitExceeded
        }
        Some(code) => CrmError::Refused { status, code },
        None => CrmError::Status(status),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompositeResponse {
    composite_response: Vec<CompositeSubresponse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompositeSubresponse {
    body: Value,
    http_status_code: u16,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a SOQL string literal back the way Salesforce does: the literal must end at its
    /// closing quote and only listed escapes may follow a backslash. Returns the value and
    /// what follows the literal.
    fn unquote(soql: &str) -> Option<(String, &str)> {
        let rest = soql.strip_prefix('\'')?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' => return Some((value, &rest[i + 1..])),
                '\\' => {
                    let (_, e) = chars.next()?;
                    match e {
                        'n' | 'N' => value.push('\n'),
                        'r' | 'R' => value.push('\r'),
                        't' | 'T' => value.push('\t'),
                        'b' | 'B' => value.push('\u{8}'),
                        'f' | 'F' => value.push('\u{c}'),
                        '"' | '\'' | '\\' => value.push(e),
                        'u' => {
                            let hex: String = (0..4)
                                .filter_map(|_| chars.next())
                                .map(|(_, c)| c)
                                .collect();
                            value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                        }
                        _ => return None,
                    }
                }
                c => value.push(c),
            }
        }
        None
    }

    const HOSTILE: [&str; 12] = [
        "o'brien@example.com",
        "a\\'@example.com",
        "x' OR Email != '",
        "x\\' OR Id != null OR Email = \\'",
        "\\",
        "'",
        "\"quoted\"@example.com",
        "tab\there\nnew\rline",
        "bell\u{8}form\u{c}feed\u{0}nul\u{1b}esc",
        "%_like@example.com",
        "ünïcödé@例え.jp",
        "end\\",
    ];

    #[test]
    fn hostile_values_stay_inside_their_literal() {
        for value in HOSTILE {
            let literal = soql_string(value);
            let (read, rest) = unquote(&literal).unwrap_or_else(|| panic!("{literal} unreadable"));
            assert_eq!(read, value, "{literal}");
            assert_eq!(rest, "", "{literal} ends early");
        }
    }

    #[test]
    fn a_hostile_email_never_changes_the_query() {
        for value in HOSTILE {
            let soql = soql_select(
                &["Id", "Email"],
                "Contact",
                Some(&soql_equals("Email", value)),
                1,
            );
            let tail = soql
                .strip_prefix("SELECT Id, Email FROM Contact WHERE Email = ")
                .unwrap();
            let (read, rest) = unquote(tail).unwrap();
            assert_eq!((read.as_str(), rest), (value, " LIMIT 1"), "{soql}");
        }
        let list = soql_in("Phone", &HOSTILE.map(String::from));
        let mut rest = list.strip_prefix("Phone IN (").unwrap();
        for value in HOSTILE {
            let (read, after) = unquote(rest).unwrap();
            assert_eq!(read, value);
            rest = after
                .strip_prefix(", ")
                .or_else(|| after.strip_prefix(')'))
                .unwrap();
        }
        assert_eq!(rest, "");
    }

    #[test]
    fn the_escapes_are_salesforces() {
        assert_eq!(soql_string("Bob's"), r"'Bob\'s'");
        assert_eq!(soql_string(r"a\b"), r"'a\\b'");
        assert_eq!(soql_string("\"\n\r\t\u{8}\u{c}"), r#"'\"\n\r\t\b\f'"#);
        assert_eq!(soql_string("\u{0}\u{7f}"), r"'\u0000\u007f'");
        assert_eq!(soql_string("50%_off"), "'50%_off'");
    }

    #[test]
    fn limit_info_is_read() {
        assert_eq!(api_usage("api-usage=18/5000"), Some((18, 5000)));
        assert_eq!(
            api_usage("api-usage=10018/100000; per-app-api-usage=17/250(appName=x)"),
            Some((10018, 100000))
        );
        assert_eq!(api_usage("per-app-api-usage=17/250"), None);
        assert_eq!(api_usage("api-usage=x/1"), None);
    }
}
