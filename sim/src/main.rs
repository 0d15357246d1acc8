//! `prechat-sim`: runs the Genesys Cloud + CRM sandbox until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use prechat_sim::{spawn, Seed, SimConfig};

/// A loopback SANDBOX (test double) of the Genesys Cloud Platform API and of a CRM REST API.
/// It is not Genesys Cloud.
#[derive(Debug, Parser)]
#[command(name = "prechat-sim", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    bind: SocketAddr,
    /// OAuth client id accepted by /oauth/token.
    #[arg(long, default_value = "sandbox-client")]
    client_id: String,
    /// OAuth client secret accepted by /oauth/token.
    #[arg(long, default_value = "sandbox-secret")]
    client_secret: String,
    /// Bearer key the CRM sandbox expects.
    #[arg(long, default_value = "sandbox-crm-key")]
    crm_api_key: String,
    /// Access token lifetime (expires_in).
    #[arg(long, default_value_t = 86_400)]
    token_lifetime_secs: u64,
    /// Calls allowed per token per 60 s window.
    #[arg(long, default_value_t = 300)]
    requests_per_minute: u32,
    /// Latency added to every Genesys and CRM call.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction (0..1) of /api/v2 calls answered 503 at random.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Delay before a conversation with attributes shows in the attribute search.
    #[arg(long, default_value_t = 0)]
    index_delay_ms: u64,
    /// Plain contact creates claim their emails and phones as identifiers (undocumented in
    /// Genesys; off by default).
    #[arg(long)]
    claim_identifiers_on_create: bool,
    /// Attribute PATCHes replace the participant's attributes instead of merging the keys in
    /// (undocumented in Genesys; merge by default).
    #[arg(long)]
    attribute_patch_replaces: bool,
    /// A permission the client's role lacks (403 for calls that need it); repeatable.
    #[arg(long = "deny-permission")]
    deny_permissions: Vec<String>,
    /// JSON seed file: {"conversations":[…],"customers":[…],"queues":["Gold Support",…]}.
    #[arg(long)]
    seed: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let seed = match &cli.seed {
        Some(path) => Some(read_seed(path)?),
        None => None,
    };
    let sim = spawn(SimConfig {
        bind: cli.bind,
        client_id: cli.client_id.clone(),
        client_secret: cli.client_secret,
        crm_api_key: cli.crm_api_key,
        crm_client_id: SimConfig::default().crm_client_id,
        crm_client_secret: SimConfig::default().crm_client_secret,
        token_lifetime_secs: cli.token_lifetime_secs,
        requests_per_minute: cli.requests_per_minute,
        latency_ms: cli.latency_ms,
        error_rate: cli.error_rate,
        index_delay_ms: cli.index_delay_ms,
        claim_identifiers_on_create: cli.claim_identifiers_on_create,
        attribute_patch_replaces: cli.attribute_patch_replaces,
        denied_permissions: if cli.deny_permissions.is_empty() {
            Default::default()
        } else {
            [(
                cli.client_id.clone(),
                cli.deny_permissions.into_iter().collect(),
            )]
            .into()
        },
    })
    .await?;
    if let Some(seed) = seed {
        sim.apply_seed(seed);
    }
    println!(
        "prechat-sim: SANDBOX — a test double of the Genesys Cloud and CRM APIs, NOT Genesys Cloud.\n\
         base URL: {url} (login /oauth/token, API /api/v2/..., CRM /customers, control /sim/...)",
        url = sim.base_url()
    );
    wait_for_signal().await;
    tracing::info!("stopping the sandbox");
    sim.shutdown();
    sim.stopped().await;
    Ok(())
}

fn read_seed(path: &PathBuf) -> anyhow::Result<Seed> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading seed file {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing seed file {}", path.display()))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
