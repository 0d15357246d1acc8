//! The command line: `serve`, `ingest`, `worker`, `topology declare|check`,
//! `dlq stats|list|show|export|replay|purge`, `genesys verify`.
//! Exit codes: 0 done, 1 error, 2 bad usage (clap's own exit code for usage errors).

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::dlq::{DlqCommand, Target, UsageError, MOVE_WARNING};
use crate::queue::depth::ManagementApi;
use crate::shutdown::on_signal;
use crate::startup::{Application, Components, Roles};
use crate::verify::{verify, VerifyOptions};

/// Enriches Genesys Cloud Web Messaging conversations with pre-chat survey and CRM data.
#[derive(Debug, Parser)]
#[command(name = "prechat-enricher", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Ingest and workers in one process.
    Serve,
    /// The HTTP ingest only.
    Ingest,
    /// The workers only.
    Worker,
    /// Declare or check the RabbitMQ topology.
    Topology {
        /// declare or check.
        #[command(subcommand)]
        action: TopologyAction,
    },
    /// Inspect, export, replay or purge the dead-letter queue.
    #[command(after_help = MOVE_WARNING)]
    Dlq {
        /// The broker and namespace, over the config and environment.
        #[command(flatten)]
        target: Target,
        /// stats, list, show, export, replay or purge.
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Check the configured Genesys Cloud org before go-live.
    Genesys {
        /// verify.
        #[command(subcommand)]
        action: GenesysAction,
    },
}

/// `genesys` actions.
#[derive(Debug, Subcommand)]
pub enum GenesysAction {
    /// Prove the org does what this configuration needs: the token grant, one harmless probe
    /// per call (naming each missing permission), and with --conversation whether attribute
    /// PATCHes merge, the search index delay and the External Contact link. Exit 0 when all
    /// the configuration needs works, 1 otherwise.
    Verify(VerifyArgs),
}

/// Arguments of `genesys verify`.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// A test conversation started through the org's Messenger with a prechatSubmissionId:
    /// it gets two prechatVerify* attributes and, with External Contacts, a link to a
    /// throwaway contact (deleted afterwards).
    #[arg(long, value_name = "ID")]
    pub conversation: Option<uuid::Uuid>,
    /// Print the facts as JSON.
    #[arg(long)]
    pub json: bool,
    /// The longest wait for the attribute search to show the test conversation.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub search_wait_secs: u64,
}

/// `topology` actions.
#[derive(Debug, Subcommand)]
pub enum TopologyAction {
    /// Declare every exchange and queue (idempotent).
    Declare,
    /// Validate the config, compare the broker's topology with it, and reach the CRM and
    /// Genesys (a token grant).
    Check,
}

/// Runs a parsed command; the process exit code.
///
/// Only the service commands catch SIGTERM and Ctrl-C (to finish the messages in hand); any
/// other command keeps the default and stops at once, which loses nothing: a `dlq` command
/// holds its messages unacked, so the broker returns them when the connection drops.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let settings = Settings::load()?;
    if matches!(cli.command, Command::Dlq { .. } | Command::Genesys { .. })
        && std::env::var_os("RUST_LOG").is_none()
    {
        // An operator's command: its output is the answer; only warnings go to stderr.
        let mut log = settings.log.clone();
        log.level = "warn".into();
        crate::telemetry::init(&log);
    } else {
        crate::telemetry::init(&settings.log);
    }
    match cli.command {
        Command::Serve => serve(settings, Roles::ALL, on_signal()).await,
        Command::Ingest => serve(settings, Roles::INGEST, on_signal()).await,
        Command::Worker => serve(settings, Roles::WORKER, on_signal()).await,
        Command::Topology {
            action: TopologyAction::Declare,
        } => {
            let components = Components::build(settings, Roles::BROKER)?;
            components
                .topology
                .declare(&components.publish_broker)
                .await?;
            println!(
                "topology declared: {}",
                components.topology.queues().join(", ")
            );
            Ok(0)
        }
        Command::Topology {
            action: TopologyAction::Check,
        } => check(settings).await,
        Command::Dlq { target, command } => {
            let mut settings = settings;
            target.apply(&mut settings);
            dlq(settings, command).await
        }
        Command::Genesys {
            action: GenesysAction::Verify(args),
        } => genesys_verify(settings, args).await,
    }
}

/// Runs `genesys verify`, printing the facts as a table or JSON.
async fn genesys_verify(settings: Settings, args: VerifyArgs) -> anyhow::Result<i32> {
    let options = VerifyOptions {
        conversation_id: args.conversation,
        search_wait: std::time::Duration::from_secs(args.search_wait_secs),
    };
    let report = verify(settings, &options).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report.to_json())?;
        std::io::Write::write_all(&mut out, b"\n")?;
    } else {
        report.write_table(&mut out)?;
    }
    Ok(report.exit_code())
}

/// Compares the broker's bindings with the config through the management API (AMQP cannot
/// list bindings); the number of differences.
async fn check_bindings(components: &Components) -> u32 {
    let settings = &components.settings;
    let Some(url) = settings.management_url() else {
        println!("rabbitmq: bindings not checked (amqp.management_url is empty)");
        return 0;
    };
    let management = match settings
        .tls
        .ca_pem()
        .map_err(anyhow::Error::from)
        .and_then(|ca| {
            Ok(ManagementApi::new(
                &url,
                &settings.amqp.url[0],
                ca.as_deref(),
            )?)
        }) {
        Ok(management) => management,
        Err(error) => {
            println!("rabbitmq: bindings not checked: {error}");
            return 1;
        }
    };
    let mut missing = 0;
    for (exchange, key, queue) in components.topology.bindings() {
        match management.binding_keys(&exchange, &queue).await {
            Ok(keys) if keys.contains(&key) => {}
            Ok(_) => {
                missing += 1;
                println!("rabbitmq: binding {exchange} → {queue} (key '{key}') is missing");
            }
            Err(error) => {
                println!("rabbitmq: bindings not checked through {url}: {error}");
                return 1;
            }
        }
    }
    if missing == 0 {
        println!("rabbitmq: ok, every binding is in place");
    }
    missing
}

/// Runs a `dlq` command on stdout; a refused command exits 2, having changed nothing.
async fn dlq(settings: Settings, command: DlqCommand) -> anyhow::Result<i32> {
    match crate::dlq::run(&settings, command, &mut std::io::stdout()).await {
        Err(error) => match error.downcast_ref::<UsageError>() {
            Some(usage) => {
                eprintln!("error: {usage}");
                Ok(2)
            }
            None => Err(error),
        },
        done => done,
    }
}

async fn serve(
    settings: Settings,
    roles: Roles,
    shutdown: CancellationToken,
) -> anyhow::Result<i32> {
    let app = Application::build(settings, roles).await?;
    app.run_until_stopped(shutdown).await?;
    Ok(0)
}

async fn check(settings: Settings) -> anyhow::Result<i32> {
    let components = Components::build(settings, Roles::ALL)?;
    println!("config: ok");
    let mut failures = 0;
    match components.topology.check(&components.publish_broker).await {
        Ok(differences) if differences.is_empty() => {
            println!("rabbitmq: ok, topology matches the config")
        }
        Ok(differences) => {
            for difference in differences {
                failures += 1;
                println!(
                    "rabbitmq: {} differs: {}",
                    difference.name, difference.detail
                );
            }
        }
        Err(error) => {
            failures += 1;
            println!("rabbitmq: unreachable: {error}");
        }
    }
    failures += check_bindings(&components).await;
    match components.crm.verify().await {
        Ok(checked) => println!("crm: ok, {checked}"),
        Err(error @ crate::crm::CrmError::MissingFields(..)) => {
            failures += 1;
            println!("crm: {}: {error}", components.crm.target());
        }
        Err(error) => {
            failures += 1;
            println!("crm: unavailable at {}: {error}", components.crm.target());
        }
    }
    match components.genesys.check_credentials().await {
        Ok(()) => println!(
            "genesys: ok, token granted by {}",
            components.settings.genesys_login_url()
        ),
        Err(error) => {
            failures += 1;
            println!("genesys: {error}");
        }
    }
    Ok(if failures == 0 { 0 } else { 1 })
}
