//! The load: one seeded conversation and one unique guest email per submission (so that
//! duplicated effects can be counted per email and per conversation), a mix of CRM tiers,
//! and an HTTP sender at a fixed rate that records every answer. Submissions are sent once:
//! a 503 is counted, not retried (a retrying web tier would only add 202s).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prechat_sim::{Customer, SeedConversation, SimHandle};
use serde_json::json;
use tokio::sync::Semaphore;

/// Routing queues the sandbox knows and the service maps tiers to.
pub const QUEUES: [(&str, &str); 3] = [
    ("GOLD", "Gold Support"),
    ("PLATINUM", "Platinum Support"),
    ("STANDARD", "Standard Support"),
];

/// One submission of the run.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Our idempotency key (the message id on the broker).
    pub submission_id: String,
    /// Its seeded conversation.
    pub conversation_id: String,
    /// Its guest's email, unique in the run.
    pub email: String,
    /// Sent without its conversation id: the resolver finds the conversation by its
    /// `prechatSubmissionId` participant attribute.
    pub parked: bool,
}

/// What the ingest answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 202: the broker confirmed it.
    Accepted,
    /// 503: not accepted.
    Unavailable,
    /// Any other status.
    Other(u16),
    /// No HTTP answer (connection refused, client timeout).
    Unanswered(String),
}

/// One sent submission and its answer.
#[derive(Debug, Clone)]
pub struct Sent {
    /// What was sent.
    pub planned: Planned,
    /// The answer.
    pub answer: Answer,
    /// When the request started, since the run began.
    pub at: Duration,
    /// How long the answer took.
    pub took: Duration,
}

/// Seeds `n` conversations and, for three in four guests, a CRM customer (gold, platinum,
/// standard; the fourth is unknown to the CRM and routes as standard).
pub fn seed(sim: &SimHandle, n: usize, run: &str) -> Vec<Planned> {
    (0..n)
        .map(|i| {
            let conversation = sim.seed_conversation(SeedConversation::default());
            let email = format!("guest{i}.{run}@example.com");
            let tier = match i % 4 {
                0 => Some("gold"),
                1 => Some("Platinum"),
                2 => Some("standard"),
                _ => None,
            };
            if let Some(tier) = tier {
                sim.seed_customer(Customer {
                    id: format!("CRM-{run}-{i}"),
                    first_name: format!("Guest{i}"),
                    last_name: "Chaos".into(),
                    email: email.clone(),
                    loyalty_tier: tier.into(),
                    account_status: "active".into(),
                    loyalty_points: i as i64,
                    previous_tickets: 1,
                    ..Customer::default()
                });
            }
            Planned {
                submission_id: uuid::Uuid::new_v4().to_string(),
                conversation_id: conversation.id,
                email,
                parked: false,
            }
        })
        .collect()
}

/// The JSON body of a planned submission (consent given, a signed-in guest whose email the web
/// tier verified, a raw browser session id).
pub fn body(planned: &Planned) -> serde_json::Value {
    let mut body = json!({
        "schemaVersion": 1,
        "submissionId": planned.submission_id,
        "conversationId": planned.conversation_id,
        "guest": {"email": planned.email, "verified": true, "sessionId": format!("browser-{}", planned.submission_id)},
        "survey": {"subject": "Billing", "priority": "high", "language": "en-US"},
        "consent": {"given": true, "type": "explicit"}
    });
    if planned.parked {
        body.as_object_mut().unwrap().remove("conversationId");
    }
    body
}

/// Counters the scenario can watch while the load runs.
#[derive(Debug, Default)]
pub struct Progress {
    /// Requests answered (any way).
    pub answered: AtomicUsize,
    /// 202s.
    pub accepted: AtomicUsize,
    /// 503s.
    pub unavailable: AtomicUsize,
    /// Set by the scenario: send no more (the rest of the plan stays unsent).
    pub stop: std::sync::atomic::AtomicBool,
}

/// Sends the planned submissions to `ingest_url` at `per_second`, at most `in_flight` at
/// once, until the plan is done or `progress.stop` is set, and returns every answer in plan
/// order.
pub async fn send(
    ingest_url: String,
    token: &'static str,
    plan: Vec<Planned>,
    per_second: f64,
    in_flight: usize,
    started: Instant,
    progress: Arc<Progress>,
) -> Vec<Sent> {
    prechat_enricher::startup::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client");
    let slots = Arc::new(Semaphore::new(in_flight));
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut tasks = Vec::with_capacity(plan.len());
    for planned in plan {
        ticker.tick().await;
        if progress.stop.load(Ordering::Relaxed) {
            break;
        }
        let permit = slots.clone().acquire_owned().await.expect("open semaphore");
        let (client, url, progress) = (client.clone(), ingest_url.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let at = started.elapsed();
            let body = body(&planned);
            let result = client
                .post(format!("{url}/v1/submissions"))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await;
            let took = started.elapsed() - at;
            let answer = match result {
                Ok(response) => match response.status().as_u16() {
                    202 => Answer::Accepted,
                    503 => Answer::Unavailable,
                    other => Answer::Other(other),
                },
                Err(error) => Answer::Unanswered(error.to_string()),
            };
            match answer {
                Answer::Accepted => progress.accepted.fetch_add(1, Ordering::Relaxed),
                Answer::Unavailable => progress.unavailable.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            progress.answered.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            Sent {
                planned,
                answer,
                at,
                took,
            }
        }));
    }
    let mut sent = Vec::with_capacity(tasks.len());
    for task in tasks {
        sent.push(task.await.expect("a sender task"));
    }
    sent
}
