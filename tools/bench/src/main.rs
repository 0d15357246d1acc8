//! `prechat-bench`: the load driver behind `scripts/bench`.
//!
//! It runs the release `prechat-enricher` binary as child processes (`ingest`, `worker`,
//! `serve`) against the local RabbitMQ and in-process `prechat-sim` sandboxes, measures each
//! figure next to a baseline taken in the same run, and writes `bench/results.json` and
//! `bench/results.md`. Every phase uses namespaces `bench-<run>-<phase>` and deletes them.
//!
//! Layout: `context` (paths, settings, namespaces), `service` (one child process: readiness,
//! CPU and memory counters, SIGTERM), `amqp` (publishing, queue depth, the events tap),
//! `load` (closed-loop HTTP and AMQP load, latency summaries), `phases/` (one file per
//! figure), `report` (JSON and Markdown).
//!
//! ```text
//! prechat-bench --binary target/release/prechat-enricher --repo . --out bench [--quick]
//!               [--only ingest,workers,budget,calls,memory,latency,handoff]
//! ```

mod amqp;
mod context;
mod load;
mod phases;
mod report;
mod service;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _};

use crate::context::Bench;
use crate::report::Results;

struct Args {
    binary: PathBuf,
    repo: PathBuf,
    out: PathBuf,
    quick: bool,
    only: Option<Vec<String>>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut binary = None;
    let mut repo = PathBuf::from(".");
    let mut out = PathBuf::from("bench");
    let mut quick = false;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--binary" => binary = Some(PathBuf::from(value()?)),
            "--repo" => repo = PathBuf::from(value()?),
            "--out" => out = PathBuf::from(value()?),
            "--quick" => quick = true,
            "--only" => only = Some(value()?.split(',').map(str::to_owned).collect()),
            "-h" | "--help" => {
                println!("usage: prechat-bench --binary PATH [--repo DIR] [--out DIR] [--quick] [--only PHASES]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    Ok(Args {
        binary: binary.context("--binary PATH (the release prechat-enricher) is required")?,
        repo,
        out,
        quick,
        only,
    })
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    if let Err(error) = run().await {
        eprintln!("bench: error: {error:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    prechat_enricher::startup::install_crypto_provider();
    let bench = Bench::new(&args.repo, &args.binary, args.quick)?;
    let wanted = |phase: &str| {
        args.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|p| p == phase))
    };
    let started = Instant::now();
    let mut results = Results::new(&bench).await;
    say(&format!(
        "run {} ({} mode), machine: {} CPUs, {} MiB; logs in {}",
        bench.run_id,
        if bench.quick { "quick" } else { "full" },
        results.machine.nproc,
        results.machine.memory_mib,
        bench.logs.display()
    ));

    if wanted("ingest") {
        results.ingest = Some(phases::ingest::run(&bench).await.context("ingest phase")?);
    }
    if wanted("workers") {
        results.workers = Some(
            phases::workers::run(&bench)
                .await
                .context("workers phase")?,
        );
    }
    if wanted("budget") {
        results.budget = Some(phases::budget::run(&bench).await.context("budget phase")?);
    }
    if wanted("calls") {
        results.calls = Some(phases::calls::run(&bench).await.context("calls phase")?);
    }
    if wanted("memory") {
        results.memory = Some(phases::memory::run(&bench).await.context("memory phase")?);
    }
    if wanted("latency") {
        results.latency = Some(
            phases::latency::run(&bench)
                .await
                .context("latency phase")?,
        );
    }
    if wanted("handoff") {
        results.handoff = Some(
            phases::handoff::run(&bench)
                .await
                .context("handoff phase")?,
        );
    }
    results.duration_secs = started.elapsed().as_secs_f64();
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json = args.out.join("results.json");
    let markdown = args.out.join("results.md");
    std::fs::write(&json, serde_json::to_string_pretty(&results)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    std::fs::write(&markdown, report::markdown(&results))
        .with_context(|| format!("writing {}", markdown.display()))?;
    say(&format!(
        "done in {:.0} s: {} and {}",
        results.duration_secs,
        markdown.display(),
        json.display()
    ));
    Ok(())
}

/// Progress on stderr, with the time of day.
pub fn say(message: &str) {
    eprintln!(
        "bench {}: {message}",
        chrono::Local::now().format("%H:%M:%S")
    );
}
