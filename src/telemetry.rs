//! Logging setup. Rules: the subject in the message and as fields (`submission.id`,
//! `genesys.status`, `duration_ms`); a failure is logged once, where it is handled; never
//! tokens, secrets or raw session ids; emails and phones only masked.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber (`RUST_LOG` overrides `log.level`). Safe to call twice.
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
