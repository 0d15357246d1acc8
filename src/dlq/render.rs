//! Output: aligned tables for people, one JSON document for scripts.
//!
//! Personal data (guest email and phone, and any email or phone quoted in an error message)
//! is masked unless the caller asked for it with `--show-pii`; the masking happens in
//! [`Letter::masked`], before anything is rendered.

use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::letter::{Class, Letter};
use super::replay::{Action, Report};
use crate::queue::dead_letter::ErrorClass;
use crate::queue::headers::timestamp;

/// Longest error message in a table cell (`--json` has it whole).
const MESSAGE_CHARS: usize = 80;

/// Counts of one class.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClassStats {
    /// The class.
    pub class: Class,
    /// Dead letters of that class.
    pub count: u64,
    /// The earliest `dead_lettered_at`.
    pub oldest: Option<DateTime<Utc>>,
    /// The latest `dead_lettered_at`.
    pub newest: Option<DateTime<Utc>>,
}

impl ClassStats {
    fn new(class: Class) -> Self {
        Self {
            class,
            count: 0,
            oldest: None,
            newest: None,
        }
    }

    fn add(&mut self, at: Option<DateTime<Utc>>) {
        self.count += 1;
        if let Some(at) = at {
            self.oldest = Some(self.oldest.map_or(at, |o| o.min(at)));
            self.newest = Some(self.newest.map_or(at, |n| n.max(at)));
        }
    }
}

/// `dlq stats`: every known class (zeros included, in [`ErrorClass::ALL`] order), then any
/// other class found, and the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    /// Per class.
    pub classes: Vec<ClassStats>,
    /// All classes together.
    pub total: ClassStats,
}

impl Stats {
    /// Empty counts.
    pub fn new() -> Self {
        Self {
            classes: ErrorClass::ALL
                .into_iter()
                .map(|c| ClassStats::new(Class::Known(c)))
                .collect(),
            total: ClassStats::new(Class::Other("total".into())),
        }
    }

    /// Counts one dead letter.
    pub fn add(&mut self, letter: &Letter) {
        let position = self.classes.iter().position(|c| c.class == letter.class);
        let index = position.unwrap_or_else(|| {
            self.classes.push(ClassStats::new(letter.class.clone()));
            self.classes.len() - 1
        });
        self.classes[index].add(letter.dead_lettered_at);
        self.total.add(letter.dead_lettered_at);
    }

    /// The count of one class.
    pub fn count(&self, class: ErrorClass) -> u64 {
        let class = Class::Known(class);
        self.classes
            .iter()
            .find(|c| c.class == class)
            .map_or(0, |c| c.count)
    }
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes `value` as one pretty JSON document.
pub fn json(out: &mut dyn Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// The stats table.
pub fn stats_table(out: &mut dyn Write, stats: &Stats) -> io::Result<()> {
    let rows = stats
        .classes
        .iter()
        .chain(std::iter::once(&stats.total))
        .map(|c| {
            vec![
                c.class.as_str().to_string(),
                c.count.to_string(),
                time_cell(c.oldest),
                time_cell(c.newest),
            ]
        })
        .collect();
    table(out, &["CLASS", "COUNT", "OLDEST", "NEWEST"], rows)
}

/// The dead letters as a table, one line each, personal data masked unless `show_pii`.
pub fn letters_table(out: &mut dyn Write, letters: &[Letter], show_pii: bool) -> io::Result<()> {
    let rows = letters
        .iter()
        .map(|letter| {
            let letter = if show_pii {
                letter.clone()
            } else {
                letter.masked()
            };
            let guest = [letter.email.as_deref(), letter.phone.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            let message = letter.message.as_deref().unwrap_or("");
            let message = if message.chars().count() > MESSAGE_CHARS {
                let cut: String = message.chars().take(MESSAGE_CHARS - 1).collect();
                format!("{cut}…")
            } else {
                message.to_string()
            };
            vec![
                time_cell(letter.dead_lettered_at),
                letter.class.as_str().to_string(),
                opt_cell(letter.status.map(|s| s.to_string())),
                opt_cell(letter.code),
                opt_cell(letter.attempts.map(|a| a.to_string())),
                time_cell(letter.first_failure_at),
                opt_cell(letter.submission_id),
                opt_cell(letter.conversation_id),
                opt_cell(Some(guest).filter(|g| !g.is_empty())),
                opt_cell(Some(message).filter(|m| !m.is_empty())),
            ]
        })
        .collect();
    table(
        out,
        &[
            "DEAD-LETTERED AT",
            "CLASS",
            "STATUS",
            "CODE",
            "ATTEMPTS",
            "FIRST FAILURE AT",
            "SUBMISSION",
            "CONVERSATION",
            "GUEST",
            "MESSAGE",
        ],
        rows,
    )
}

/// The dead letters as a JSON array, personal data masked unless `show_pii`.
pub fn letters_json(out: &mut dyn Write, letters: &[Letter], show_pii: bool) -> io::Result<()> {
    let letters: Vec<Letter> = if show_pii {
        letters.to_vec()
    } else {
        letters.iter().map(Letter::masked).collect()
    };
    json(out, &letters)
}

/// The closing sentence of a replay or purge.
pub fn report_line(out: &mut dyn Write, action: Action, report: &Report) -> io::Result<()> {
    let verb = match (action, report.dry_run) {
        (Action::Replay { .. }, true) => "would replay",
        (Action::Replay { .. }, false) => "replayed",
        (Action::Purge, true) => "would purge",
        (Action::Purge, false) => "purged",
    };
    let count = if report.dry_run {
        report.matched
    } else {
        report.moved
    };
    write!(
        out,
        "{verb} {count} of {} dead letters scanned ({} in the queue at the start)",
        report.scanned, report.queued
    )?;
    if let Some(reason) = &report.stopped_early {
        write!(out, "; stopped early: {reason}")?;
    }
    writeln!(out)
}

/// Masks a whole letter list for JSON reports (`would_move`).
pub fn mask_all(letters: &mut [Letter]) {
    for letter in letters {
        *letter = letter.masked();
    }
}

fn time_cell(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "-".into(), timestamp)
}

fn opt_cell(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".into())
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn table(out: &mut dyn Write, header: &[&str], rows: Vec<Vec<String>>) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(&rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(class: ErrorClass, at: &str) -> Letter {
        Letter {
            class: Class::Known(class),
            status: Some(400),
            code: Some("bad.request".into()),
            message: Some("refused jane@example.com".into()),
            context_id: None,
            attempts: Some(1),
            dead_lettered_at: Some(at.parse().unwrap()),
            first_failure_at: None,
            replayed_at: None,
            submission_id: Some("sub-1".into()),
            conversation_id: None,
            email: Some("jane@example.com".into()),
            phone: None,
            body_is_json: true,
            body_bytes: 10,
        }
    }

    #[test]
    fn stats_count_each_class_with_its_oldest_and_newest() {
        let mut stats = Stats::new();
        stats.add(&letter(ErrorClass::Expired, "2026-11-22T10:00:00Z"));
        stats.add(&letter(ErrorClass::Expired, "2026-11-21T10:00:00Z"));
        stats.add(&letter(ErrorClass::GenesysRejected, "2026-11-23T10:00:00Z"));
        assert_eq!(stats.count(ErrorClass::Expired), 2);
        assert_eq!(stats.count(ErrorClass::InvalidPayload), 0);
        let expired = &stats.classes[5];
        assert_eq!(expired.class, Class::Known(ErrorClass::Expired));
        assert_eq!(time_cell(expired.oldest), "2026-11-21T10:00:00Z");
        assert_eq!(time_cell(expired.newest), "2026-11-22T10:00:00Z");
        assert_eq!(stats.total.count, 3);
        assert_eq!(time_cell(stats.total.newest), "2026-11-23T10:00:00Z");
        let mut out = Vec::new();
        stats_table(&mut out, &stats).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("CLASS "), "{text}");
        assert!(
            text.contains("expired                 2      2026-11-21T10:00:00Z"),
            "{text}"
        );
        assert!(text.lines().last().unwrap().starts_with("total"));
    }

    #[test]
    fn tables_and_json_mask_personal_data_unless_asked() {
        let letters = [letter(ErrorClass::GenesysRejected, "2026-11-22T10:00:00Z")];
        for show_pii in [false, true] {
            let mut table = Vec::new();
            letters_table(&mut table, &letters, show_pii).unwrap();
            let mut json_out = Vec::new();
            letters_json(&mut json_out, &letters, show_pii).unwrap();
            for text in [table, json_out].map(|b| String::from_utf8(b).unwrap()) {
                assert_eq!(text.contains("jane@example.com"), show_pii, "{text}");
                assert!(text.contains("sub-1"));
            }
        }
    }
}
