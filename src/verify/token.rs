//! The token grant as the org answers it: the lifetime it gives tokens, and whether API answers
//! carry the `inin-ratelimit-*` headers the budget adapts to. These are read from the raw
//! answers (the service's client keeps neither), with one grant and one read of their own.

use std::time::Duration;

use reqwest::header::HeaderMap;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::fact::{Fact, Outcome};
use crate::config::Settings;
use crate::http_error::transport_reason;

const GRANT: &str = "POST /oauth/token";
const READ: &str = "GET /api/v2/conversations/messages/{id}";

#[derive(Deserialize)]
struct Granted {
    access_token: String,
    expires_in: u64,
}

/// Grants a token and reads one API answer's rate-limit headers: two facts. `read_path` is
/// the path of a message conversation (a read that needs no permission).
pub async fn check(http: &reqwest::Client, settings: &Settings, read_path: &str) -> Vec<Fact> {
    let timeout = settings.genesys.timeout();
    let answer = http
        .post(format!("{}/oauth/token", settings.genesys_login_url()))
        .basic_auth(
            &settings.genesys.client_id,
            Some(settings.genesys.client_secret.expose_secret()),
        )
        .form(&[("grant_type", "client_credentials")])
        .timeout(timeout)
        .send()
        .await;
    let granted = match answer {
        Err(error) => Err(format!(
            "login host unreachable: {}",
            transport_reason(&error)
        )),
        Ok(response) if response.status().is_success() => response
            .json::<Granted>()
            .await
            .map_err(|e| format!("answer not understood: {e}")),
        Ok(response) => {
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            Err(format!("answered {status}: {}", truncate(&body)))
        }
    };
    let granted = match granted {
        Ok(granted) => granted,
        Err(reason) => {
            return vec![
                Fact::required("token grant", GRANT, Outcome::Failed(reason)),
                Fact::informative(
                    "rate-limit headers",
                    READ,
                    Outcome::Skipped("no token".into()),
                ),
            ];
        }
    };
    let margin = settings.genesys.token_refresh_margin();
    let lifetime = Duration::from_secs(granted.expires_in);
    let grant = Fact::required(
        "token grant",
        GRANT,
        Outcome::Ok(format!(
            "granted; lifetime {} s, renewed {} s before it ends",
            granted.expires_in,
            margin.min(lifetime / 2).as_secs()
        )),
    );
    let read = http
        .get(format!("{}{read_path}", settings.genesys_api_url()))
        .bearer_auth(&granted.access_token)
        .timeout(timeout)
        .send()
        .await;
    let headers = match read {
        Ok(response) => rate_limit_headers(
            response.status().as_u16(),
            response.headers(),
            settings.genesys.requests_per_minute,
        ),
        Err(error) => Outcome::Failed(transport_reason(&error).to_owned()),
    };
    vec![
        grant,
        Fact::informative("rate-limit headers", READ, headers),
    ]
}

/// What the `inin-ratelimit-*` headers of one answer say, against the configured budget.
fn rate_limit_headers(status: u16, headers: &HeaderMap, configured: u32) -> Outcome {
    let value = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(count), Some(allowed), Some(reset)) = (
        value("inin-ratelimit-count"),
        value("inin-ratelimit-allowed"),
        value("inin-ratelimit-reset"),
    ) else {
        return Outcome::Differs(format!(
            "the answer ({status}) had no inin-ratelimit-* headers: the budget then keeps to \
             genesys.requests_per_minute = {configured} and 429s alone"
        ));
    };
    let seen = format!("allowed {allowed}, count {count}, reset {reset} s (answer {status})");
    match allowed.trim().parse::<u32>() {
        Ok(allowed) if allowed < configured => Outcome::Differs(format!(
            "{seen}: below genesys.requests_per_minute = {configured}; the budget slows to the \
             server's, but set your share"
        )),
        _ => Outcome::Ok(seen),
    }
}

fn truncate(text: &str) -> &str {
    let end = text
        .char_indices()
        .nth(300)
        .map_or(text.len(), |(index, _)| index);
    &text[..end]
}
