//! `genesys verify`: settles, against the org the configuration points at, what the Genesys
//! documentation leaves open, before go-live. It checks the token grant, then makes one
//! harmless probe per call the configuration will make (a 403 names the missing
//! permission), and with a test conversation measures what only a real conversation shows:
//! whether an attribute PATCH merges or replaces, how long the attribute search takes to show
//! the conversation, and whether enrich + link land (on a throwaway contact, deleted after).
//!
//! Each finding is a [`Fact`]: `ok`, `missing permission`, `differs`, `failed` or `skipped`;
//! the run fails (exit 1) when a fact the configuration depends on is not `ok`.
//!
//! Layout: `fact` (the findings and the report), `token` (the grant and rate-limit headers),
//! `probes` (permission probes that change nothing), `conversation` (index delay, merge or
//! replace), `contact` (enrich, link and delete on the test conversation).

mod contact;
mod conversation;
pub mod fact;
pub mod probes;
mod token;

use std::time::Duration;

use anyhow::Context;
use uuid::Uuid;

pub use conversation::{FIRST_KEY, SECOND_KEY};
pub use fact::{Fact, Outcome, Report};

use crate::config::Settings;
use crate::startup::{Components, Roles};

/// What to verify beyond the configuration's calls.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// A test conversation started through the org's Messenger with a `prechatSubmissionId`.
    pub conversation_id: Option<Uuid>,
    /// The longest wait for the attribute search to show the test conversation.
    pub search_wait: Duration,
}

/// Runs every check against the org of `settings`; an error only when the configuration
/// itself is unusable (every answer of Genesys is a fact).
pub async fn verify(settings: Settings, options: &VerifyOptions) -> anyhow::Result<Report> {
    let components = Components::build(settings, Roles::WORKER)?;
    let settings = &components.settings;
    let genesys = components.genesys.as_ref();
    let http = http_client(settings)?;
    let conversation_id = options.conversation_id.map(|id| id.to_string());
    let read_id = conversation_id
        .clone()
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    let mut report = Report::default();
    let token = token::check(
        &http,
        settings,
        &format!("/api/v2/conversations/messages/{read_id}"),
    )
    .await;
    let granted = token.first().is_some_and(|f| f.outcome.is_good());
    report.facts.extend(token);
    if !granted {
        return Ok(report);
    }
    probes::run(genesys, settings, &mut report.facts).await;
    match &conversation_id {
        Some(id) => {
            conversation::Test {
                genesys,
                settings,
                conversation_id: id,
                search_wait: options.search_wait,
            }
            .run(&mut report.facts)
            .await
        }
        None => report.push(Fact::informative(
            "test conversation",
            "",
            Outcome::Skipped(
                "no --conversation: merge or replace, the index delay and the contact link \
                 are not measured"
                    .into(),
            ),
        )),
    }
    Ok(report)
}

/// An HTTP client trusting `tls.ca_file` like the service's, for the raw token check.
fn http_client(settings: &Settings) -> anyhow::Result<reqwest::Client> {
    let mut http = reqwest::Client::builder()
        .user_agent(concat!("prechat-enricher/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(5));
    if let Some(pem) = settings.tls.ca_pem()? {
        for certificate in reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .context("tls.ca_file: not PEM certificates")?
        {
            http = http.add_root_certificate(certificate);
        }
    }
    http.build().context("building the HTTP client")
}
