//! `prechat-enricher dlq`: the operators' view of the dead-letter queue (`<ns>.dead`).
//!
//! - `stats`: counts by error class, with the oldest and newest dead letter of each;
//! - `list`: the dead letters, filtered, as a table or JSON; never changes the queue;
//! - `replay`: moves the selected dead letters back to `<ns>.ingest` (routing key
//!   `submission`) with the attempt count reset, paced by `--rate`, or shows them with
//!   `--dry-run`; the others stay dead-lettered;
//! - `purge --yes`: drops the selected dead letters.
//!
//! Every command reads the queue the same way, through a bounded [`reader::Scan`] that borrows
//! messages and hands back what it does not move (the module doc of [`reader`] says why that
//! is safe and what it changes). The commands need RabbitMQ only: no Genesys, no CRM.
//!
//! Layout: [`filter`] (pure selection and the CLI's value parsers), [`letter`] (what a dead
//! letter says), [`reader`] (the scan), [`replay`] (replay and purge), [`render`] (tables and
//! JSON).

pub mod filter;
pub mod letter;
pub mod reader;
pub mod render;
pub mod replay;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::config::Settings;
use crate::queue::dead_letter::ErrorClass;
use crate::queue::{Broker, Publisher, Topology};
use filter::{parse_class, parse_rate, parse_since, Filter, Since};
use letter::Letter;
use reader::{Scan, FAST_PREFETCH, PACED_PREFETCH};
use replay::{Action, Plan};

/// A scan of at least this many messages shows a progress bar (on a terminal).
const PROGRESS_FROM: u32 = 1_000;

/// The command was used wrongly; nothing was changed. The CLI exits with 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `dlq` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum DlqCommand {
    /// Counts by error class, with the oldest and newest dead letter of each.
    Stats {
        /// Which dead letters to count.
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Lists dead letters in queue order (oldest first); the queue is left as it was.
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
    /// Republishes dead letters to the ingest exchange with attempts reset; the rest stay.
    Replay {
        /// Which dead letters.
        #[command(flatten)]
        filter: FilterArgs,
        /// Replay at most this many.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Republish at most this many messages per second (e.g. 10, or 0.5).
        #[arg(long, value_parser = parse_rate)]
        rate: Option<f64>,
        /// Only show what would be replayed.
        #[arg(long)]
        dry_run: bool,
        /// A JSON report instead of text.
        #[arg(long)]
        json: bool,
        /// With --dry-run, show guests' emails and phones unmasked.
        #[arg(long)]
        show_pii: bool,
    },
    /// Deletes dead letters for good (requires --yes).
    Purge {
        /// Which dead letters.
        #[command(flatten)]
        filter: FilterArgs,
        /// Purge at most this many.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
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
    fn resolve(&self) -> Filter {
        Filter {
            classes: self.classes.clone(),
            since: self.since.map(|s| s.resolve(Utc::now())),
            ids: self.ids.clone(),
        }
    }
}

/// Runs a `dlq` command, writing its output to `out`; the exit code. A [`UsageError`] means
/// the command was refused before anything was touched. Unlike the service commands, these
/// do not declare the topology: a mistyped namespace fails (exit 1, "does not exist")
/// instead of creating an empty set of queues.
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

    let result = match command {
        DlqCommand::Stats { filter, json } => {
            stats(&read_broker, &topology, &filter.resolve(), json, out).await
        }
        DlqCommand::List {
            filter,
            limit,
            json,
            show_pii,
        } => {
            let filter = filter.resolve();
            list(&read_broker, &topology, &filter, limit, json, show_pii, out).await
        }
        DlqCommand::Replay {
            filter,
            limit,
            rate,
            dry_run,
            json,
            show_pii,
        } => {
            let plan = Plan {
                filter: filter.resolve(),
                limit,
                dry_run,
                action: Action::Replay { rate },
            };
            let output = Output { json, show_pii };
            move_letters(settings, &read_broker, &topology, &plan, output, out).await
        }
        DlqCommand::Purge {
            filter,
            limit,
            json,
            ..
        } => {
            let plan = Plan {
                filter: filter.resolve(),
                limit,
                dry_run: false,
                action: Action::Purge,
            };
            let output = Output {
                json,
                show_pii: false,
            };
            move_letters(settings, &read_broker, &topology, &plan, output, out).await
        }
    };
    read_broker.close().await;
    result
}

/// What clap cannot check.
fn check_usage(command: &DlqCommand) -> Result<(), UsageError> {
    match command {
        DlqCommand::Purge { yes: false, .. } => Err(UsageError(
            "`dlq purge` deletes dead letters for good; add --yes to confirm (see `dlq list` with the same filters first)".into(),
        )),
        DlqCommand::Replay {
            rate: Some(rate), ..
        } if !(rate.is_finite() && *rate > 0.0) => Err(UsageError(format!(
            "--rate must be a number of messages per second above 0, not {rate}"
        ))),
        DlqCommand::List { limit: Some(0), .. }
        | DlqCommand::Replay { limit: Some(0), .. }
        | DlqCommand::Purge { limit: Some(0), .. } => {
            Err(UsageError("--limit must be at least 1".into()))
        }
        _ => Ok(()),
    }
}

async fn stats(
    broker: &Broker,
    topology: &Topology,
    filter: &Filter,
    json: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<i32> {
    let mut scan = Scan::open(broker, &topology.dead_letter_queue(), FAST_PREFETCH).await?;
    let progress = progress_bar(scan.bound(), false, "counting");
    let mut stats = render::Stats::new();
    let result = async {
        while let Some(fetched) = scan.next().await? {
            progress.inc(1);
            if filter.matches(&fetched.letter) {
                stats.add(&fetched.letter);
            }
        }
        anyhow::Ok(())
    }
    .await;
    progress.finish_and_clear();
    scan.release().await?;
    result?;
    if json {
        render::json(out, &stats)?;
    } else {
        render::stats_table(out, &stats)?;
    }
    Ok(0)
}

async fn list(
    broker: &Broker,
    topology: &Topology,
    filter: &Filter,
    limit: Option<u64>,
    json: bool,
    show_pii: bool,
    out: &mut (dyn Write + Send),
) -> anyhow::Result<i32> {
    let mut scan = Scan::open(broker, &topology.dead_letter_queue(), FAST_PREFETCH).await?;
    let progress = progress_bar(scan.bound(), false, "reading");
    let mut letters: Vec<Letter> = Vec::new();
    let result = async {
        while limit.is_none_or(|limit| (letters.len() as u64) < limit) {
            let Some(fetched) = scan.next().await? else {
                return anyhow::Ok(());
            };
            progress.inc(1);
            if filter.matches(&fetched.letter) {
                letters.push(fetched.letter);
            }
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

/// How a replay or purge reports.
#[derive(Debug, Clone, Copy)]
struct Output {
    json: bool,
    show_pii: bool,
}

async fn move_letters(
    settings: &Settings,
    read_broker: &Broker,
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
    let scan = Scan::open(read_broker, &topology.dead_letter_queue(), prefetch).await?;
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
        if plan.dry_run {
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
