//! One finding of `genesys verify` and the report they make: a table or JSON, and the exit code.

use std::io::Write;

use serde::Serialize;

use crate::genesys::GenesysError;

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The call works as the service assumes.
    Ok(String),
    /// 403: the OAuth client's role lacks a permission (which ones, and what Genesys said).
    MissingPermission(String),
    /// The org answers, but not as the service assumes.
    Differs(String),
    /// The check could not run to the end (5xx, timeout, an unexpected answer).
    Failed(String),
    /// Not checked, and why.
    Skipped(String),
}

impl Outcome {
    /// `ok`, `missing_permission`, `differs`, `failed` or `skipped` (the JSON `status`).
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Ok(_) => "ok",
            Outcome::MissingPermission(_) => "missing_permission",
            Outcome::Differs(_) => "differs",
            Outcome::Failed(_) => "failed",
            Outcome::Skipped(_) => "skipped",
        }
    }

    /// The detail after the status.
    pub fn detail(&self) -> &str {
        match self {
            Outcome::Ok(d)
            | Outcome::MissingPermission(d)
            | Outcome::Differs(d)
            | Outcome::Failed(d)
            | Outcome::Skipped(d) => d,
        }
    }

    /// Whether the check found nothing wrong (a skipped check found nothing either).
    pub fn is_good(&self) -> bool {
        matches!(self, Outcome::Ok(_) | Outcome::Skipped(_))
    }

    /// The outcome of a call that failed: 403 names the permissions the call needs (`needs`,
    /// as the SDK declares them) and Genesys' message; anything else is a failure.
    pub fn from_error(error: &GenesysError, needs: &[&str]) -> Outcome {
        match error {
            GenesysError::Forbidden { body } => {
                let wanted = match needs {
                    [] => "none declared by the SDK".to_owned(),
                    [one] => (*one).to_owned(),
                    many => format!("one of {}", many.join(", ")),
                };
                let said = [body.code.as_deref(), body.message.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                Outcome::MissingPermission(format!("{wanted} (Genesys: {said})"))
            }
            other => Outcome::Failed(other.to_string()),
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let label = match self {
            Outcome::MissingPermission(_) => "missing permission",
            other => other.status(),
        };
        write!(f, "{label}: {}", self.detail())
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Fact {
    /// What was checked, e.g. `attribute search`.
    pub name: String,
    /// The Platform API call it made, e.g. `POST /api/v2/conversations/participants/attributes/search`.
    pub call: String,
    /// Whether the configuration depends on it (a bad outcome then fails the run).
    pub required: bool,
    /// What it found.
    #[serde(skip)]
    pub outcome: Outcome,
}

impl Fact {
    /// A fact the configuration depends on.
    pub fn required(name: &str, call: &str, outcome: Outcome) -> Self {
        Self {
            name: name.to_owned(),
            call: call.to_owned(),
            required: true,
            outcome,
        }
    }

    /// A fact reported for information: its outcome does not change the exit code.
    pub fn informative(name: &str, call: &str, outcome: Outcome) -> Self {
        Self {
            required: false,
            ..Self::required(name, call, outcome)
        }
    }

    fn fails(&self) -> bool {
        self.required && !self.outcome.is_good()
    }
}

/// Every fact of one run, in the order they were checked.
#[derive(Debug, Default)]
pub struct Report {
    /// The facts.
    pub facts: Vec<Fact>,
}

#[derive(Serialize)]
struct JsonFact<'a> {
    #[serde(flatten)]
    fact: &'a Fact,
    status: &'static str,
    detail: &'a str,
}

impl Report {
    /// Adds a fact.
    pub fn push(&mut self, fact: Fact) {
        self.facts.push(fact);
    }

    /// 0 when everything the configuration needs works, else 1.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.facts.iter().any(Fact::fails))
    }

    /// `fact  call  outcome` lines, then a summary line.
    pub fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        let width = |column: fn(&Fact) -> usize| self.facts.iter().map(column).max().unwrap_or(0);
        let name_width = width(|f| f.name.chars().count()).max(4);
        let call_width = width(|f| f.call.chars().count()).max(4);
        writeln!(
            out,
            "{:name_width$}  {:call_width$}  RESULT",
            "FACT", "CALL"
        )?;
        for fact in &self.facts {
            let note = if !fact.required && !fact.outcome.is_good() {
                " (not needed by this configuration)"
            } else {
                ""
            };
            writeln!(
                out,
                "{:name_width$}  {:call_width$}  {}{note}",
                fact.name, fact.call, fact.outcome
            )?;
        }
        let failing = self.facts.iter().filter(|f| f.fails()).count();
        match failing {
            0 => writeln!(
                out,
                "verify: ok, the org does what this configuration needs"
            ),
            n => writeln!(out, "verify: {n} problem(s) this configuration depends on"),
        }
    }

    /// `{"ok": bool, "facts": [{name, call, required, status, detail}]}`.
    pub fn to_json(&self) -> serde_json::Value {
        let facts: Vec<JsonFact> = self
            .facts
            .iter()
            .map(|fact| JsonFact {
                fact,
                status: fact.outcome.status(),
                detail: fact.outcome.detail(),
            })
            .collect();
        serde_json::json!({ "ok": self.exit_code() == 0, "facts": facts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesys::ErrorBody;

    #[test]
    fn a_403_names_the_permissions_and_what_genesys_said() {
        let error = GenesysError::Forbidden {
            body: ErrorBody {
                code: Some("missing.any.permissions".into()),
                message: Some("You must have at least one of [a:b:c]".into()),
                ..Default::default()
            },
        };
        let outcome = Outcome::from_error(&error, &["a:b:c", "d:e:f"]);
        assert_eq!(
            outcome.to_string(),
            "missing permission: one of a:b:c, d:e:f (Genesys: missing.any.permissions: \
             You must have at least one of [a:b:c])"
        );
    }

    #[test]
    fn only_a_bad_fact_the_configuration_needs_fails_the_run() {
        let mut report = Report::default();
        report.push(Fact::required("a", "GET /a", Outcome::Ok("fine".into())));
        report.push(Fact::required(
            "b",
            "GET /b",
            Outcome::Skipped("off".into()),
        ));
        report.push(Fact::informative(
            "c",
            "GET /c",
            Outcome::Differs("x".into()),
        ));
        assert_eq!(report.exit_code(), 0);
        report.push(Fact::required("d", "GET /d", Outcome::Differs("y".into())));
        assert_eq!(report.exit_code(), 1);
        let json = report.to_json();
        assert_eq!(json["ok"], false);
        assert_eq!(json["facts"][3]["status"], "differs");
        assert_eq!(json["facts"][2]["required"], false);
    }
}
