//! Output: aligned tables for people, one JSON document for scripts.
//!
//! Tables fit [`TABLE_WIDTH`] columns (or `$COLUMNS`, if wider): the widest free-text columns
//! shrink first and a cell longer than its column wraps onto the next lines. Every cell is
//! cleaned of control and bidirectional-formatting characters first ([`clean`]): a dead letter
//! is attacker-controlled input, and an escape sequence in it must not move the cursor, change
//! colours or retitle the terminal of the operator reading it.
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
/// The width tables fit when `$COLUMNS` does not say more.
pub const TABLE_WIDTH: usize = 80;
/// Columns between two table columns.
const GAP: usize = 2;

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
    /// The first dead letter of the group, personal data masked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub example: Option<Example>,
}

/// One dead letter standing for its group in `dlq stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Example {
    /// Its submission id (for `dlq show`).
    pub submission_id: Option<String>,
    /// Its error class.
    pub class: String,
    /// HTTP status.
    pub status: Option<i64>,
    /// Error code.
    pub code: Option<String>,
    /// Error message, emails and phones masked.
    pub message: Option<String>,
}

impl Example {
    fn of(letter: &Letter) -> Self {
        let letter = letter.masked();
        Self {
            submission_id: letter.submission_id,
            class: letter.class.as_str().to_string(),
            status: letter.status,
            code: letter.code,
            message: letter.message,
        }
    }
}

impl ClassStats {
    fn new(class: Class) -> Self {
        Self {
            class,
            count: 0,
            oldest: None,
            newest: None,
            example: None,
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

/// What `dlq stats --by` groups dead letters by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    /// The error class.
    #[default]
    Class,
    /// The Genesys error code (`-` when none).
    Code,
    /// The HTTP status of the failing call (`-` when none).
    Status,
}

/// `dlq stats --by code|status`: failure groups, largest first, and the total.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Groups {
    /// What the groups are keyed by.
    pub by: GroupBy,
    /// Per group (`class` holds the group's key), largest first.
    pub groups: Vec<ClassStats>,
    /// All groups together.
    pub total: ClassStats,
}

impl Groups {
    /// No groups yet.
    pub fn new(by: GroupBy) -> Self {
        Self {
            by,
            groups: Vec::new(),
            total: ClassStats::new(Class::Other("total".into())),
        }
    }

    /// Counts one dead letter in its group.
    pub fn add(&mut self, letter: &Letter) {
        let key = match self.by {
            GroupBy::Class => letter.class.as_str().to_string(),
            GroupBy::Code => letter.code.clone().unwrap_or_else(|| "-".into()),
            GroupBy::Status => letter.status.map_or_else(|| "-".into(), |s| s.to_string()),
        };
        let key = Class::Other(key);
        let index = match self.groups.iter().position(|g| g.class == key) {
            Some(index) => index,
            None => {
                let mut group = ClassStats::new(key);
                group.example = Some(Example::of(letter));
                self.groups.push(group);
                self.groups.len() - 1
            }
        };
        self.groups[index].add(letter.dead_lettered_at);
        self.total.add(letter.dead_lettered_at);
    }

    /// Sorts the groups, largest first (then by key).
    pub fn finish(&mut self) {
        self.groups.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.class.as_str().cmp(b.class.as_str()))
        });
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
        let class = &mut self.classes[index];
        class.add(letter.dead_lettered_at);
        if class.example.is_none() {
            class.example = Some(Example::of(letter));
        }
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

/// The stats table, then one example per group.
pub fn stats_table(out: &mut dyn Write, stats: &Stats) -> io::Result<()> {
    groups_table(out, "CLASS", &stats.classes, &stats.total)
}

/// The `--by code|status` table, then one example per group.
pub fn groups_table_of(out: &mut dyn Write, groups: &Groups) -> io::Result<()> {
    let title = match groups.by {
        GroupBy::Class => "CLASS",
        GroupBy::Code => "CODE",
        GroupBy::Status => "STATUS",
    };
    groups_table(out, title, &groups.groups, &groups.total)
}

fn groups_table(
    out: &mut dyn Write,
    title: &str,
    groups: &[ClassStats],
    total: &ClassStats,
) -> io::Result<()> {
    let rows = groups
        .iter()
        .chain(std::iter::once(total))
        .map(|c| {
            vec![
                c.class.as_str().to_string(),
                c.count.to_string(),
                time_cell(c.oldest),
                time_cell(c.newest),
            ]
        })
        .collect();
    table(
        out,
        &[title, "COUNT", "FIRST DEAD-LETTERED", "LAST DEAD-LETTERED"],
        rows,
    )?;
    let examples: Vec<(&ClassStats, &Example)> = groups
        .iter()
        .filter_map(|g| Some((g, g.example.as_ref()?)))
        .collect();
    if examples.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    let rows = examples
        .into_iter()
        .map(|(group, example)| {
            let error = [
                example.status.map(|s| s.to_string()),
                example.code.clone(),
                example.message.clone(),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
            vec![
                group.class.as_str().to_string(),
                opt_cell(example.submission_id.clone()),
                error,
            ]
        })
        .collect();
    table(out, &[title, "EXAMPLE SUBMISSION", "EXAMPLE ERROR"], rows)
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
            let error = [letter.status.map(|s| s.to_string()), letter.code]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ");
            let detail = [guest, message]
                .into_iter()
                .filter(|d| !d.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            vec![
                time_cell(letter.dead_lettered_at),
                letter.class.as_str().to_string(),
                opt_cell(Some(error).filter(|e| !e.is_empty())),
                opt_cell(letter.submission_id),
                opt_cell(Some(detail).filter(|d| !d.is_empty())),
            ]
        })
        .collect();
    // Attempts, first failure and conversation are in `dlq show` and `--json`.
    table(
        out,
        &[
            "DEAD-LETTERED AT",
            "CLASS",
            "ERROR",
            "SUBMISSION",
            "GUEST, MESSAGE",
        ],
        rows,
    )
}

/// `dlq show`: the document of [`super::document::document`] as text: what the letter says,
/// its properties and headers one per line, then its body (pretty JSON, or the text).
pub fn show_text(out: &mut dyn Write, document: &serde_json::Value) -> io::Result<()> {
    let section = |out: &mut dyn Write, title: &str, value: &serde_json::Value| {
        writeln!(out, "{title}")?;
        if let Some(map) = value.as_object() {
            let width = map.keys().map(|k| k.chars().count()).max().unwrap_or(0);
            for (key, value) in map {
                let value = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => "-".into(),
                    other => other.to_string(),
                };
                writeln!(out, "  {:width$}  {}", clean(key), clean(&value))?;
            }
        }
        writeln!(out)
    };
    let mut summary = serde_json::Map::new();
    if let Some(letter) = document["letter"].as_object() {
        for key in [
            "submissionId",
            "conversationId",
            "class",
            "status",
            "code",
            "message",
            "contextId",
            "attempts",
            "firstFailureAt",
            "deadLetteredAt",
            "replayedAt",
        ] {
            if let Some(value) = letter.get(key).filter(|v| !v.is_null()) {
                summary.insert(key.into(), value.clone());
            }
        }
    }
    section(out, "DEAD LETTER", &summary.into())?;
    section(out, "PROPERTIES", &document["properties"])?;
    section(out, "HEADERS", &document["headers"])?;
    writeln!(out, "BODY")?;
    let body = match &document["body"] {
        serde_json::Value::String(text) => text.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    };
    for line in body.lines() {
        writeln!(out, "  {}", clean(line))?;
    }
    Ok(())
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

/// `text` without control characters (escape sequences, carriage returns, tabs, newlines)
/// or bidirectional-formatting characters, each replaced by `?`: safe to print in a terminal
/// and one line long.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
            if c.is_control() || bidi {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// The width tables fit: `$COLUMNS` if it says more than [`TABLE_WIDTH`], else that.
fn table_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > TABLE_WIDTH)
        .unwrap_or(TABLE_WIDTH)
}

/// Left-aligned columns two spaces apart, fitting [`table_width`]; the last column is not
/// padded.
fn table(out: &mut dyn Write, header: &[&str], rows: Vec<Vec<String>>) -> io::Result<()> {
    table_fitting(out, header, rows, table_width())
}

/// Column widths that fit `max`: each column as wide as its widest cell; while too wide, the
/// last column (free text) shrinks first, down to 16, then the widest column but the first
/// (the time or key, never shrunk) loses one, never below its title nor 8.
fn fit(natural: &[usize], titles: &[usize], max: usize) -> Vec<usize> {
    let mut widths = natural.to_vec();
    let total = |w: &[usize]| w.iter().sum::<usize>() + GAP * w.len().saturating_sub(1);
    if let Some(last) = widths.len().checked_sub(1).filter(|&l| l > 0) {
        let floor = titles[last].max(16).min(natural[last]);
        let over = total(&widths).saturating_sub(max);
        widths[last] = widths[last].saturating_sub(over).max(floor);
    }
    while total(&widths) > max {
        let floor = |i: usize| titles[i].max(8).min(natural[i]);
        let Some(widest) = (1..widths.len())
            .filter(|&i| widths[i] > floor(i))
            .max_by_key(|&i| (widths[i], i))
        else {
            break;
        };
        widths[widest] -= 1;
    }
    widths
}

fn table_fitting(
    out: &mut dyn Write,
    header: &[&str],
    rows: Vec<Vec<String>>,
    max: usize,
) -> io::Result<()> {
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let rows: Vec<Vec<Vec<char>>> = std::iter::once(header)
        .chain(rows)
        .map(|row| {
            row.iter()
                .map(|cell| clean(cell).chars().collect())
                .collect()
        })
        .collect();
    let titles: Vec<usize> = rows[0].iter().map(Vec::len).collect();
    let mut natural = titles.clone();
    for row in &rows {
        for (width, cell) in natural.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let widths = fit(&natural, &titles, max);
    for row in &rows {
        // A cell wider than its column wraps onto the next lines, at a word or name boundary
        // where there is one.
        let cells: Vec<Vec<String>> = row
            .iter()
            .zip(&widths)
            .map(|(cell, &width)| wrap(cell, width))
            .collect();
        let lines = cells.iter().map(Vec::len).max().unwrap_or(1);
        for line_no in 0..lines {
            let mut line = String::new();
            for (cell, &width) in cells.iter().zip(&widths) {
                let piece = cell.get(line_no).map(String::as_str).unwrap_or("");
                line.push_str(piece);
                let pad = width.saturating_sub(piece.chars().count());
                line.extend(std::iter::repeat_n(' ', pad + GAP));
            }
            writeln!(out, "{}", line.trim_end())?;
        }
    }
    Ok(())
}

/// The lines of a cell `width` wide: each line ends after the last space, `-`, `_`, `/` or
/// `@` that fits (not at a `.`, which would split `bad.request` or a domain) (a space at the start of the next line is dropped); a word longer than the
/// column is cut where the column ends.
fn wrap(cell: &[char], width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut rest = cell;
    while rest.len() > width {
        let cut = rest[..width]
            .iter()
            .rposition(|c| matches!(c, ' ' | '-' | '_' | '/' | '@'))
            .filter(|&at| at > 0)
            .map_or(width, |at| at + 1);
        lines.push(
            rest[..cut]
                .iter()
                .collect::<String>()
                .trim_end()
                .to_string(),
        );
        rest = &rest[cut..];
        while rest.first() == Some(&' ') {
            rest = &rest[1..];
        }
    }
    if !rest.is_empty() || lines.is_empty() {
        lines.push(rest.iter().collect());
    }
    lines
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
        assert!(text.lines().any(|l| l.starts_with("total ")), "{text}");
        // One example per group, after the counts.
        assert!(text.contains("EXAMPLE SUBMISSION"), "{text}");
        assert!(
            text.contains("j***@example.com") && !text.contains("jane@"),
            "{text}"
        );
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
                assert_eq!(text.contains("jane@"), show_pii, "{text}");
                assert_eq!(text.contains("j***@"), !show_pii, "{text}");
                assert!(text.contains("sub-1"));
            }
        }
    }

    #[test]
    fn cells_wrap_at_word_and_name_boundaries() {
        let chars = |s: &str| s.chars().collect::<Vec<_>>();
        assert_eq!(
            wrap(&chars("genesys_rejected"), 13),
            ["genesys_", "rejected"]
        );
        assert_eq!(
            wrap(&chars("The attribute payload was rejected"), 14),
            ["The attribute", "payload was", "rejected"]
        );
        assert_eq!(
            wrap(&chars("46cac7a3-1367-45c6-a007-7057e666abc7"), 13),
            ["46cac7a3-", "1367-45c6-", "a007-", "7057e666abc7"]
        );
        assert_eq!(wrap(&chars("400 bad.request"), 13), ["400", "bad.request"]);
        assert_eq!(
            wrap(&chars("real.guest@example.com"), 14),
            ["real.guest@", "example.com"]
        );
        assert_eq!(wrap(&chars("xxxxxxxxxx"), 4), ["xxxx", "xxxx", "xx"]);
        assert_eq!(wrap(&chars(""), 4), [""]);
    }

    #[test]
    fn tables_fit_80_columns_and_a_hostile_message_cannot_drive_the_terminal() {
        let mut hostile = letter(ErrorClass::ConversationNotFound, "2026-11-22T10:00:00Z");
        hostile.submission_id = Some("0f8fad5b-d9cb-469f-a165-70867728950e".into());
        hostile.code = Some("\u{1b}[2J\u{1b}]0;pwned\u{7}conversation.not.found".into());
        hostile.message = Some(format!(
            "\u{1b}[31mred\u{1b}[0m\r\n\u{202e}reversed {}",
            "x".repeat(300)
        ));
        hostile.email = Some("a\u{9b}b@example.com".into());
        let mut out = Vec::new();
        letters_table(&mut out, &[hostile.clone(), hostile], false).unwrap();
        let text = String::from_utf8(out).unwrap();
        for line in text.lines() {
            assert!(line.chars().count() <= TABLE_WIDTH, "{line:?}");
            assert!(
                !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
                "{line:?}"
            );
        }
        assert!(text.starts_with("DEAD-LETTERED AT"), "{text}");
        // Nothing is cut off: a long cell wraps.
        let joined: String = text.split_whitespace().collect();
        assert!(joined.contains(&"x".repeat(40)), "{text}");
        assert_eq!(clean("a\u{1b}[0mb\tc\n"), "a?[0mb?c?");

        let mut stats = Stats::new();
        stats.add(&letter(ErrorClass::Expired, "2026-11-22T10:00:00Z"));
        let mut out = Vec::new();
        stats_table(&mut out, &stats).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines().all(|l| l.chars().count() <= TABLE_WIDTH),
            "{text}"
        );
    }

    #[test]
    fn groups_by_code_count_first_and_last_with_an_example_largest_first() {
        let mut groups = Groups::new(GroupBy::Code);
        let mut other = letter(ErrorClass::GenesysForbidden, "2026-11-20T10:00:00Z");
        other.code = Some("not.authorized".into());
        other.submission_id = Some("sub-9".into());
        groups.add(&other);
        groups.add(&letter(ErrorClass::GenesysRejected, "2026-11-22T10:00:00Z"));
        groups.add(&letter(ErrorClass::Expired, "2026-11-21T10:00:00Z"));
        let mut none = letter(ErrorClass::Expired, "2026-11-23T10:00:00Z");
        none.code = None;
        groups.add(&none);
        groups.finish();
        let keys: Vec<&str> = groups.groups.iter().map(|g| g.class.as_str()).collect();
        assert_eq!(keys, ["bad.request", "-", "not.authorized"]);
        let bad = &groups.groups[0];
        assert_eq!(bad.count, 2);
        assert_eq!(time_cell(bad.oldest), "2026-11-21T10:00:00Z");
        assert_eq!(time_cell(bad.newest), "2026-11-22T10:00:00Z");
        let example = bad.example.as_ref().unwrap();
        assert_eq!(example.submission_id.as_deref(), Some("sub-1"));
        assert_eq!(example.message.as_deref(), Some("refused j***@example.com"));
        assert_eq!(groups.total.count, 4);
        let mut out = Vec::new();
        groups_table_of(&mut out, &groups).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("CODE "), "{text}");
        assert!(text.contains("not.authorized"), "{text}");
    }
}
