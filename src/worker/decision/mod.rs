//! The one place that decides what happens to a message after processing: ack, park it
//! until its conversation is known, retry after a delay, or dead-letter with a reason.
//!
//! A pure function of the outcome, the attempt number, the clock and a jitter sample,
//! so every rule in README, "RabbitMQ topology and headers" is pinned by the table test below.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::genesys::GenesysError;
use crate::queue::dead_letter::{DeadLetter, ErrorClass};

/// Why processing failed.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The body is not a valid submission.
    InvalidPayload {
        /// The validation message.
        reason: String,
    },
    /// A Genesys call failed.
    Genesys(GenesysError),
    /// The CRM is down and `crm.on_unavailable = "retry"`.
    CrmUnavailable,
    /// `GET` the conversation answered 404: it may not exist *yet*.
    ConversationNotFound,
    /// The conversation exists but has no customer participant, or it vanished while
    /// being written.
    ConversationGone {
        /// What was missing.
        reason: String,
    },
    /// The consuming channel was lost mid-way, so the broker redelivers the message (perhaps
    /// to another replica): the attempt stopped before its next Genesys write.
    Abandoned,
}

/// What processing achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done {
    /// The attributes are on the conversation (`patched` is false when they already were).
    Enriched {
        /// Whether a `PATCH` was sent.
        patched: bool,
        /// The non-personal attributes now on the participant (for the handoff's answer).
        written: std::collections::BTreeMap<String, String>,
        /// The External Contact step failed in a way a later attempt may fix (5xx, timeout,
        /// 429): the attributes and the routing are done, the contact is tried again.
        contact_pending: bool,
    },
    /// No conversation id yet: the submission waits in `prechat.awaiting`.
    AwaitingConversation,
}

/// The retry cause of a submission whose attributes are written but whose External Contact
/// step is to be tried again.
pub const CONTACT_PENDING: &str = "contact_pending";

/// What to do with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Done: ack.
    Ack,
    /// Park in the awaiting queue, then ack.
    Await,
    /// Republish to a delay queue with `next_attempt`, then ack.
    Retry {
        /// Attempt number of the next delivery (unchanged after a 429).
        next_attempt: u32,
        /// How long to wait.
        delay: Duration,
        /// Short cause, for logs, events and metrics.
        cause: &'static str,
    },
    /// Publish to the dead-letter exchange, then ack.
    DeadLetter(DeadLetter),
}

/// Retry limits from `[worker]`.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts before `retries_exhausted`.
    pub max_attempts: u32,
    /// First delay.
    pub base_delay: Duration,
    /// Longest delay.
    pub max_delay: Duration,
    /// Time after `submittedAt` until a missing conversation expires.
    pub deadline: Duration,
    /// Delay of a message failed by an outage (retried without counting an attempt).
    pub outage_delay: Duration,
}

impl Failure {
    /// A failure of a dependency as a whole rather than of this message.
    pub fn is_systemic(&self) -> bool {
        match self {
            Failure::Genesys(error) => error.is_systemic(),
            Failure::CrmUnavailable => true,
            _ => false,
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with equal jitter: half the delay is fixed, half random.
    /// Hand-written (rather than backon's iterator) so that the decision stays a pure
    /// function of a jitter sample `jitter ∈ [0, 1)`.
    pub fn backoff(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let full = self
            .base_delay
            .saturating_mul(1 << exponent)
            .min(self.max_delay);
        full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// The state of the message being decided on.
#[derive(Debug, Clone, Copy)]
pub struct Attempt {
    /// This delivery's attempt number (1 = first).
    pub number: u32,
    /// Where the deadline counts from: `submittedAt`, or an operator's later replay.
    pub deadline_from: DateTime<Utc>,
    /// Now.
    pub now: DateTime<Utc>,
    /// A uniform sample in [0, 1).
    pub jitter: f64,
    /// Whether the process is in outage mode (a run of systemic failures).
    pub outage: bool,
}

/// Decides the fate of a message.
pub fn decide(
    result: Result<&Done, &Failure>,
    attempt: &Attempt,
    policy: &RetryPolicy,
) -> Decision {
    let failure = match result {
        Ok(Done::Enriched {
            contact_pending: true,
            ..
        }) if attempt.number < policy.max_attempts => {
            return Decision::Retry {
                next_attempt: attempt.number + 1,
                delay: policy.backoff(attempt.number, attempt.jitter),
                cause: CONTACT_PENDING,
            }
        }
        Ok(Done::Enriched { .. }) => return Decision::Ack,
        Ok(Done::AwaitingConversation) => return Decision::Await,
        Err(failure) => failure,
    };
    if attempt.outage && failure.is_systemic() {
        return Decision::Retry {
            next_attempt: attempt.number,
            delay: policy.outage_delay,
            cause: "outage",
        };
    }
    let retry = |cause| Decision::Retry {
        next_attempt: attempt.number + 1,
        delay: policy.backoff(attempt.number, attempt.jitter),
        cause,
    };
    match failure {
        Failure::InvalidPayload { reason } => {
            dead(ErrorClass::InvalidPayload, None, reason.clone())
        }
        Failure::ConversationGone { reason } => {
            dead(ErrorClass::ConversationNotFound, None, reason.clone())
        }
        Failure::ConversationNotFound => {
            let deadline = attempt.deadline_from + policy.deadline;
            let left = (deadline - attempt.now).to_std().unwrap_or_default();
            if left.is_zero() {
                dead(
                    ErrorClass::Expired,
                    Some(404),
                    "the conversation was not found before the submission's deadline".into(),
                )
            } else {
                match retry("conversation_not_found") {
                    Decision::Retry {
                        next_attempt,
                        delay,
                        cause,
                    } => Decision::Retry {
                        next_attempt,
                        delay: delay.min(left),
                        cause,
                    },
                    other => other,
                }
            }
        }
        Failure::Genesys(GenesysError::RateLimited { retry_after }) => Decision::Retry {
            next_attempt: attempt.number,
            delay: *retry_after,
            cause: "rate_limited",
        },
        Failure::Genesys(error @ GenesysError::Forbidden { .. }) => {
            genesys_dead(ErrorClass::GenesysForbidden, error)
        }
        Failure::Genesys(
            error @ (GenesysError::Rejected { .. } | GenesysError::NotFound { .. }),
        ) => genesys_dead(ErrorClass::GenesysRejected, error),
        Failure::Genesys(
            error @ (GenesysError::Unavailable { .. } | GenesysError::Unauthorized { .. }),
        ) => {
            if attempt.number >= policy.max_attempts {
                genesys_dead(ErrorClass::RetriesExhausted, error)
            } else {
                retry(if error.is_systemic() {
                    "genesys_unavailable"
                } else {
                    "genesys_error"
                })
            }
        }
        // The worker leaves such a message to its redelivery and decides nothing; should a
        // caller ask, the safe answer is the same attempt again.
        Failure::Abandoned => Decision::Retry {
            next_attempt: attempt.number,
            delay: policy.outage_delay,
            cause: "abandoned",
        },
        Failure::CrmUnavailable => {
            if attempt.number >= policy.max_attempts {
                dead(
                    ErrorClass::RetriesExhausted,
                    None,
                    "the CRM stayed unavailable".into(),
                )
            } else {
                retry("crm_unavailable")
            }
        }
    }
}

fn dead(class: ErrorClass, status: Option<u16>, message: String) -> Decision {
    Decision::DeadLetter(DeadLetter {
        class,
        status,
        code: None,
        message,
        context_id: None,
    })
}

fn genesys_dead(class: ErrorClass, error: &GenesysError) -> Decision {
    let body = error.body();
    Decision::DeadLetter(DeadLetter {
        class,
        status: error.status(),
        code: body.and_then(|b| b.code.clone()),
        // Masked again: a body may not have come through `ErrorBody::from_bytes`.
        message: crate::privacy::mask_text(
            &body
                .and_then(|b| b.message.clone())
                .unwrap_or_else(|| error.to_string()),
        ),
        context_id: body.and_then(|b| b.context_id.clone()),
    })
}

#[cfg(test)]
mod tests;
