//! `prechat-enricher dlq`: the operators' view of the dead-letter queue (`<ns>.dead`).
//!
//! - `stats [--by class|code|status]`: failure groups, each with its count, first and last
//!   dead-lettered-at and an example dead letter;
//! - `list`: the dead letters, filtered, as a table or JSON; never changes the queue;
//! - `show ID`: one dead letter in full (properties, headers, body), personal data masked;
//! - `export`: the selected dead letters in full, one JSON document per line (what a purge
//!   with the same filters would delete);
//! - `replay`: moves the selected dead letters back to `<ns>.ingest` (routing key
//!   `submission`) with the attempt count reset, paced by `--rate`, or shows them with
//!   `--dry-run`; the others stay dead-lettered;
//! - `purge`: drops the selected dead letters, after a confirmation (`--yes`, or a y/N prompt
//!   on a terminal), or shows them with `--dry-run`.
//!
//! A purge or replay without a filter must say `--all`. Every command reads the queue the same
//! way, through a bounded [`reader::Scan`] that borrows messages and puts back by copy what it
//! does not move (the module doc of [`reader`] says why not by requeue). The commands need
//! RabbitMQ only: no Genesys, no CRM; `--url` and `--namespace` override `amqp.url` and
//! `amqp.namespace` from the config and environment.
//!
//! Layout: [`filter`] (pure selection and the CLI's value parsers), [`letter`] (what a dead
//! letter says), [`document`] (a dead letter in full), [`reader`] (the scan), [`replay`]
//! (replay and purge), [`render`] (tables and JSON).

pub mod document;
pub mod filter;
pub mod letter;
pub mod reader;
pub mod render;
pub mod replay;

use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use secrecy::SecretString;

use crate::config::Settings;
use crate::queue::dead_letter::ErrorClass;
use crate::queue::{Broker, Publisher, Topology};
use filter::{parse_class, parse_rate, parse_since, Filter, Since};
use letter::Letter;
use reader::{Scan, FAST_PREFETCH, PACED_PREFETCH};
use render::GroupBy;
use replay::{Action, Plan};

/// A scan of at least this many messages shows a progress bar (on a terminal).
const PROGRESS_FROM: u32 = 1_000;

/// The command was used wrongly, or not confirmed; nothing was changed. The CLI exits with 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Shown in `dlq --help`, `dlq replay --help` and the runbook.
pub const MOVE_WARNING: &str = "\
Do not move dead letters with the RabbitMQ management UI (\"Move messages\") or a shovel: a
moved message keeps its prechat-attempt count and its deadline headers, so the worker may
dead-letter it again at once (retries_exhausted or expired). `dlq replay` resets the attempts
and the deadline, and removes a dead letter only after its copy is confirmed.";

const STATS_EXAMPLES: &str = "\
Examples:
  prechat-enricher dlq stats
  prechat-enricher dlq stats --by code --since 24h
  prechat-enricher dlq stats --by status --json";
const LIST_EXAMPLES: &str = "\
Examples:
  prechat-enricher dlq list --class genesys_rejected --limit 20
  prechat-enricher dlq list --since 2h --json | jq '.[].submissionId'
  prechat-enricher dlq --namespace prechat-staging list";
const SHOW_EXAMPLES: &str = "\
Examples:
  prechat-enricher dlq show 5f0c6c1e-0d7e-4a7b-9a57-2f0b8c1d9e21
  prechat-enricher dlq show 5f0c6c1e-0d7e-4a7b-9a57-2f0b8c1d9e21 --json
  prechat-enricher dlq show 5f0c6c1e-0d7e-4a7b-9a57-2f0b8c1d9e21 --show-pii";
const EXPORT_EXAMPLES: &str = "\
Examples:
  prechat-enricher dlq export --class invalid_payload > invalid.jsonl
  prechat-enricher dlq export --since 7d --show-pii > dead-letters.jsonl
  prechat-enricher dlq export --class expired > expired.jsonl && \\
    prechat-enricher dlq purge --class expired --yes";
const PURGE_EXAMPLES: &str = "\
Examples:
  prechat-enricher dlq purge --class invalid_payload --dry-run
  prechat-enricher dlq export --class invalid_payload > invalid.jsonl
  prechat-enricher dlq purge --class invalid_payload --yes
  prechat-enricher dlq purge --all --yes          # everything, from a script";

/// `replay --help` ends with its examples and [`MOVE_WARNING`].
const REPLAY_HELP: &str = "\
Examples:
  prechat-enricher dlq replay --class genesys_rejected --dry-run
  prechat-enricher dlq replay --class retries_exhausted --since 2h --rate 5
  prechat-enricher dlq replay --id 5f0c6c1e-0d7e-4a7b-9a57-2f0b8c1d9e21
  prechat-enricher dlq replay --all --yes --rate 10   # everything, from a script

Do not move dead letters with the RabbitMQ management UI (\"Move messages\") or a shovel: a
moved message keeps its prechat-attempt count and its deadline headers, so the worker may
dead-letter it again at once (retries_exhausted or expired). `dlq replay` resets the attempts
and the deadline, and removes a dead letter only after its copy is confirmed.";

/// `--url` and `--namespace`: where the dead letters are, over the config and environment.
#[derive(Debug, Clone, Default, Args)]
pub struct Target {
    /// AMQP URL of the broker (repeatable, tried in order), instead of `amqp.url`.
    #[arg(long = "url", value_name = "AMQP_URL", global = true)]
    pub urls: Vec<String>,
    /// Namespace of the queues (`<NAMESPACE>.dead`), instead of `amqp.namespace`.
    #[arg(long, value_name = "NAMESPACE", global = true)]
    pub namespace: Option<String>,
}

impl Target {
    /// `settings` with the flags given applied over them.
    pub fn apply(&self, settings: &mut Settings) {
        if !self.urls.is_empty() {
            settings.amqp.url = self
                .urls
                .iter()
                .map(|url| SecretString::from(url.clone()))
                .collect();
        }
        if let Some(namespace) = &self.namespace {
            settings.amqp.namespace = namespace.clone();
        }
    }
}

/// `dlq` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// Failure groups (by class, code or status): count, first and last dead-lettered-at,
    /// and an example of each.
    #[command(after_help = STATS_EXAMPLES)]
    Stats {
        /// Which dead letters to count.
        #[command(flatten)]
        filter: FilterArgs,
        /// Group by error class, Genesys error code, or HTTP status.
        #[arg(long, value_enum, default_value_t = GroupBy::Class)]
        by: GroupBy,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lists dead letters in queue order (oldest first); the queue is left as it was.
    #[command(after_help = LIST_EXAMPLES)]
    List {
        /// Which dead letters.
        #[command(flatten)]
        filter: FilterArgs,
        /// Show at most this many.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
        /// Show guests' emails and phones unmasked.
        #[arg(long)]
        show_pii: bool,
    },
    /// Shows one dead letter in full: properties, headers and body; the queue is left as it was.
    #[command(after_help = SHOW_EXAMPLES)]
    Show {
        /// Its submission id (the message id, as `dlq list` shows it).
        #[arg(value_name = "SUBMISSION_ID")]
        id: String,
        /// One JSON document instead of text.
        #[arg(long)]
        json: bool,
        /// Show guests' emails, phones and names unmasked.
        #[arg(long)]
        show_pii: bool,
    },
    /// Writes the selected dead letters in full (properties, headers, body) to stdout, one JSON
    /// document per line; the queue is left as it was. Run it before a purge to keep a copy.
    #[command(after_help = EXPORT_EXAMPLES)]
    Export {
        /// Which dead letters.
        #[command(flatten)]
        filter: FilterArgs,
        /// Export at most this many.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Keep guests' emails, phones and names unmasked.
        #[arg(long)]
        show_pii: bool,
    },
    /// Republishes dead letters to the ingest exchange with attempts reset; the rest stay.
    #[command(after_help = REPLAY_HELP)]
    Replay {
        /// Which dead letters.
        #[command(flatten)]
        filter: FilterArgs,
        /// With no filter: replay every dead letter (asks for confirmation).
        #[arg(long)]
        all: bool,
        /// Replay at most this many.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Republish at most this many messages per second (e.g. 10, or 0.5).
        #[arg(long, value_parser = parse_rate)]
        rate: Option<f64>,
        /// Only show what would be replayed.
        #[arg(long)]
        dry_run: bool,
        /// With --all, confirm without a prompt (for scripts).
        #[arg(long)]
        yes: bool,
        /// A JSON report instead of text.
        #[arg(long)]
        json: bool,
        /// With --dry-run, show guests' emails and phones unmasked.
        #[arg(long)]
        show_pii: bool,
    },
    /// Deletes dead letters for good, after a confirmation (--yes, or a prompt on a terminal).
    #[command(after_help = PURGE_EXAMPLES)]
    Purge {
        /// Which dead letters.
        #[command(flatten)]
        filter: FilterArgs,
        /// With no filter: purge every dead letter.
        #[arg(long)]
        all: bool,
        /// Purge at most this many.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Confirm the deletion without a prompt (for scripts).
        #[arg(long)]
        yes: bool,
        /// Only show what would be purged.
        #[arg(long)]
        dry_run: bool,
        /// A JSON report instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The filters every `dlq` subcommand takes.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only this error class (repeatable): invalid_payload, genesys_rejected,
    /// genesys_forbidden, conversation_not_found, retries_exhausted, expired, delivery_limit.
    #[arg(long = "class", value_name = "CLASS", value_parser = parse_class)]
    pub classes: Vec<ErrorClass>,
    /// Only dead letters from this time on: RFC 3339, or a duration before now (30m, 2h, 7d).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<Since>,
    /// Only this submission id (repeatable).
    #[arg(long = "id", value_name = "SUBMISSION_ID")]
    pub ids: Vec<String>,
}

impl FilterArgs {
    /// Whether no filter was given (the command would select every dead letter).
    fn is_empty(&self) -> bool {
        self.classes.is_empty() && self.since.is_none() && self.ids.is_empty()
    }

    fn resolve(&self) -> Filter {
        Filter {
            classes: self.classes.clone(),
            since: self.since.map(|s| s.resolve(Utc::now())),
            ids: self.ids.clone(),
        }
    }
}

/// Runs a `dlq` command, writing its output to `out`; the exit code. A [`UsageError`] means
/// the command was refused (or not confirmed) before anything was touched. Unlike the service
/// commands, these do not declare the topology: a mistyped namespace fails (exit 1, "does not
/// exist") instead of creating an empty set of queues. Confirmation prompts read stdin and
/// write to stderr, and only when both are a terminal.
pub async fn run(
    settings: &Settings,
    command: DlqCommand,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<i32> {
    check_usage(&command)?;
    // `validate` checks `[amqp]` first: an error about another section means `[amqp]` is
    // fine, and these commands need nothing else (no Genesys, no CRM).
    if let Err(invalid) = settings.validate() {
        if invalid.key.starts_with("amqp.") {
            return Err(invalid.into());
        }
    }
    crate::startup::install_crypto_provider();
    let ca_pem = settings.tls.ca_pem()?;
    let topology = Topology::new(&settings.amqp);
    let read_broker = Broker::with_ca(&settings.amqp.url, "prechat-enricher dlq read", ca_pem);
    let source = Source {
        broker: &read_broker,
        queue: topology.dead_letter_queue(),
        retention: match settings.amqp.dead_letter_ttl_hours {
            0 => None,
            hours => Some(Duration::from_secs(hours.saturating_mul(3_600))),
        },
    };

    let result = async {
        match command {
            DlqCommand::Stats { filter, by, json } => {
                stats(&source, &filter.resolve(), by, json, out).await
            }
            DlqCommand::List {
                filter,
                limit,
                json,
                show_pii,
            } => {
                let filter = filter.resolve();
                list(&source, &filter, limit, json, show_pii, out).await
            }
            DlqCommand::Show { id, json, show_pii } => {
                show(&source, &id, json, show_pii, out).await
            }
            DlqCommand::Export {
                filter,
                limit,
                show_pii,
            } => export(&source, &filter.resolve(), limit, show_pii, out).await,
            DlqCommand::Replay {
                filter,
                all,
                limit,
                rate,
                dry_run,
                yes,
                json,
                show_pii,
            } => {
                let unfiltered = filter.is_empty();
                let plan = Plan {
                    filter: filter.resolve(),
                    limit,
                    dry_run,
                    action: Action::Replay { rate },
                };
                if unfiltered && !dry_run {
                    confirm(&source, &plan, all, yes).await?;
                }
                let output = Output { json, show_pii };
                move_letters(settings, &source, &topology, &plan, output, out).await
            }
            DlqCommand::Purge {
                filter,
                all,
                limit,
                yes,
                dry_run,
                json,
            } => {
                let plan = Plan {
                    filter: filter.resolve(),
                    limit,
                    dry_run,
                    action: Action::Purge,
                };
                if !dry_run {
                    if filter.is_empty() && !all {
                        refuse_unfiltered(&source, &plan).await?;
                    }
                    confirm(&source, &plan, true, yes).await?;
                }
                let output = Output {
                    json,
                    show_pii: false,
                };
                move_letters(settings, &source, &topology, &plan, output, out).await
            }
        }
    }
    .await;
    read_broker.close().await;
    result
}

/// Where the dead letters are.
struct Source<'a> {
    broker: &'a Broker,
    queue: String,
    /// The queue's `x-message-ttl`.
    retention: Option<Duration>,
}

impl Source<'_> {
    async fn scan(&self, prefetch: u16) -> anyhow::Result<Scan> {
        let mut scan = Scan::open(self.broker, &self.queue, prefetch).await?;
        scan.retain_for(self.retention);
        Ok(scan)
    }

    /// Messages in the queue now (ready ones), without borrowing any.
    async fn count(&self) -> anyhow::Result<u32> {
        let channel = self
            .broker
            .channel()
            .await
            .context("connecting to RabbitMQ")?;
        let declared = channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| {
                format!(
                    "the dead-letter queue {} does not exist (run `topology declare`)",
                    self.queue
                )
            })?;
        let _ = channel.close(200, "counted".into()).await;
        Ok(declared.message_count())
    }

    /// How many dead letters `filter` selects (within `limit`): a scan that moves nothing.
    async fn count_matching(&self, filter: &Filter, limit: Option<u64>) -> anyhow::Result<u64> {
        let mut scan = self.scan(FAST_PREFETCH).await?;
        let mut matched = 0u64;
        let result = async {
            while let Some(fetched) = scan.next().await? {
                if filter.matches(&fetched.letter) {
                    matched += 1;
                }
                scan.put_back(fetched).await?;
            }
            anyhow::Ok(())
        }
        .await;
        scan.release().await?;
        result?;
        Ok(limit.map_or(matched, |limit| matched.min(limit)))
    }
}

fn verb(action: Action) -> &'static str {
    match action {
        Action::Replay { .. } => "replay",
        Action::Purge => "purge",
    }
}

/// An unfiltered purge or replay without `--all`: refused, saying how many it would touch.
async fn refuse_unfiltered(source: &Source<'_>, plan: &Plan) -> anyhow::Result<()> {
    let count = source.count().await?;
    let verb = verb(plan.action);
    Err(UsageError(format!(
        "`dlq {verb}` without --class, --since or --id selects every dead letter ({count} in {}); \
         add --all if that is meant, or a filter (see `dlq stats` and `dlq list`)",
        source.queue
    ))
    .into())
}

/// Asks for the confirmation of a purge, or of a replay with `--all`: `--yes`, else a y/N
/// prompt when stdin and stderr are a terminal, else refused.
async fn confirm(source: &Source<'_>, plan: &Plan, all: bool, yes: bool) -> anyhow::Result<()> {
    if !all {
        return refuse_unfiltered(source, plan).await;
    }
    if yes {
        return Ok(());
    }
    let verb = verb(plan.action);
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !interactive {
        return Err(UsageError(format!(
            "`dlq {verb}` needs a confirmation: add --yes (no terminal to ask on); \
             `dlq {verb} --dry-run` or `dlq export` with the same filters shows what it selects"
        ))
        .into());
    }
    let count = source.count_matching(&plan.filter, plan.limit).await?;
    let total = source.count().await?;
    eprint!(
        "{verb} {count} of the {total} dead letters in {}{}? [y/N] ",
        source.queue,
        if plan.action == Action::Purge {
            " (for good)"
        } else {
            ""
        }
    );
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(UsageError(format!("not confirmed; nothing was {verb}d")).into())
    }
}

/// What clap cannot check.
fn check_usage(command: &DlqCommand) -> Result<(), UsageError> {
    match command {
        DlqCommand::Replay {
            rate: Some(rate), ..
        } if !(rate.is_finite() && *rate > 0.0) => Err(UsageError(format!(
            "--rate must be a number of messages per second above 0, not {rate}"
        ))),
        DlqCommand::List { limit: Some(0), .. }
        | DlqCommand::Export { limit: Some(0), .. }
        | DlqCommand::Replay { limit: Some(0), .. }
        | DlqCommand::Purge { limit: Some(0), .. } => {
            Err(UsageError("--limit must be at least 1".into()))
        }
        DlqCommand::Replay {
            filter, all: true, ..
        }
        | DlqCommand::Purge {
            filter, all: true, ..
        } if !filter.is_empty() => Err(UsageError(
            "--all means every dead letter: give it without --class, --since or --id".into(),
        )),
        _ => Ok(()),
    }
}

async fn stats(
    source: &Source<'_>,
    filter: &Filter,
    by: GroupBy,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<i32> {
    let mut scan = source.scan(FAST_PREFETCH).await?;
    let progress = progress_bar(scan.bound(), false, "counting");
    let mut stats = render::Stats::new();
    let mut groups = render::Groups::new(by);
    let result = async {
        while let Some(fetched) = scan.next().await? {
            progress.inc(1);
            if filter.matches(&fetched.letter) {
                match by {
                    GroupBy::Class => stats.add(&fetched.letter),
                    _ => groups.add(&fetched.letter),
                }
            }
            scan.put_back(fetched).await?;
        }
        anyhow::Ok(())
    }
    .await;
    progress.finish_and_clear();
    scan.release().await?;
    result?;
    groups.finish();
    match (by, json) {
        (GroupBy::Class, true) => render::json(out, &stats)?,
        (GroupBy::Class, false) => render::stats_table(out, &stats)?,
        (_, true) => render::json(out, &groups)?,
        (_, false) => render::groups_table_of(out, &groups)?,
    }
    Ok(0)
}

async fn list(
    source: &Source<'_>,
    filter: &Filter,
    limit: Option<u64>,
    json: bool,
    show_pii: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<i32> {
    let mut scan = source.scan(FAST_PREFETCH).await?;
    let progress = progress_bar(scan.bound(), false, "reading");
    let mut letters: Vec<Letter> = Vec::new();
    let result = async {
        while limit.is_none_or(|limit| (letters.len() as u64) < limit) {
            let Some(fetched) = scan.next().await? else {
                return anyhow::Ok(());
            };
            progress.inc(1);
            if filter.matches(&fetched.letter) {
                letters.push(fetched.letter.clone());
            }
            scan.put_back(fetched).await?;
        }
        progress.set_message("restoring the order");
        scan.hold_rest().await
    }
    .await;
    progress.finish_and_clear();
    scan.release().await?;
    result?;
    if json {
        render::letters_json(out, &letters, show_pii)?;
    } else {
        render::letters_table(out, &letters, show_pii)?;
    }
    Ok(0)
}

/// `show ID`: the first dead letter with that submission id, in full.
async fn show(
    source: &Source<'_>,
    id: &str,
    json: bool,
    show_pii: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<i32> {
    let mut scan = source.scan(FAST_PREFETCH).await?;
    let progress = progress_bar(scan.bound(), false, "looking");
    let mut found = Vec::new();
    let result = async {
        while let Some(fetched) = scan.next().await? {
            progress.inc(1);
            if fetched.letter.submission_id.as_deref() == Some(id) {
                found.push(document::document(
                    &fetched.letter,
                    &fetched.properties,
                    &fetched.body,
                    show_pii,
                ));
            }
            scan.put_back(fetched).await?;
        }
        anyhow::Ok(())
    }
    .await;
    progress.finish_and_clear();
    scan.release().await?;
    result?;
    let Some(first) = found.first() else {
        anyhow::bail!("no dead letter with submission id {id} in {}", source.queue);
    };
    if json {
        render::json(out, first)?;
    } else {
        render::show_text(out, first)?;
        if found.len() > 1 {
            writeln!(
                out,
                "\n({} dead letters have this submission id; this is the oldest, \
                 `dlq export --id {id}` writes them all)",
                found.len()
            )?;
        }
    }
    Ok(0)
}

/// `export`: the selected dead letters in full, one JSON document per line.
async fn export(
    source: &Source<'_>,
    filter: &Filter,
    limit: Option<u64>,
    show_pii: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<i32> {
    let mut scan = source.scan(FAST_PREFETCH).await?;
    let progress = progress_bar(scan.bound(), false, "exporting");
    let mut written = 0u64;
    let result = async {
        while limit.is_none_or(|limit| written < limit) {
            let Some(fetched) = scan.next().await? else {
                return anyhow::Ok(());
            };
            progress.inc(1);
            if filter.matches(&fetched.letter) {
                let document = document::document(
                    &fetched.letter,
                    &fetched.properties,
                    &fetched.body,
                    show_pii,
                );
                serde_json::to_writer(&mut *out, &document)?;
                writeln!(out)?;
                written += 1;
            }
            scan.put_back(fetched).await?;
        }
        progress.set_message("restoring the order");
        scan.hold_rest().await
    }
    .await;
    progress.finish_and_clear();
    scan.release().await?;
    result?;
    out.flush()?;
    Ok(0)
}

/// How a replay or purge reports.
#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
    show_pii: bool,
}

async fn move_letters(
    settings: &Settings,
    source: &Source<'_>,
    topology: &Topology,
    plan: &Plan,
    output: Output,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<i32> {
    // Copies go out on a connection of their own: if the broker blocks publishers (a memory
    // or disk alarm), the scan's acks and nacks still flow.
    let publish_broker = Broker::with_ca(
        &settings.amqp.url,
        "prechat-enricher dlq publish",
        settings.tls.ca_pem()?,
    );
    let publisher = Publisher::new(publish_broker.clone(), settings.publish_timeout());
    let rated = matches!(plan.action, Action::Replay { rate: Some(_) }) && !plan.dry_run;
    let prefetch = if rated { PACED_PREFETCH } else { FAST_PREFETCH };
    let scan = source.scan(prefetch).await?;
    let label = match plan.action {
        Action::Replay { .. } if !plan.dry_run => "replaying",
        Action::Purge if !plan.dry_run => "purging",
        _ => "reading",
    };
    let progress = progress_bar(scan.bound(), rated, label);
    let (mut report, failure) = replay::execute(scan, &publisher, topology, plan, &progress).await;
    progress.finish_and_clear();
    publish_broker.close().await;
    if output.json {
        if !output.show_pii {
            render::mask_all(&mut report.would_move);
        }
        render::json(out, &report)?;
    } else {
        if plan.dry_run && !report.would_move.is_empty() {
            render::letters_table(out, &report.would_move, output.show_pii)?;
        }
        render::report_line(out, plan.action, &report)?;
    }
    match failure {
        Some(error) => Err(error.context(format!(
            "stopped after moving {} dead letters; every other one is still in {}",
            report.moved,
            topology.dead_letter_queue()
        ))),
        None => Ok(0),
    }
}

/// A progress bar on stderr for long runs, only when stderr is a terminal.
fn progress_bar(total: u32, long_anyway: bool, label: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() || (total < PROGRESS_FROM && !long_anyway) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total.into()), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:40}] {pos}/{len} dead letters scanned, {per_sec}, eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(label);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
