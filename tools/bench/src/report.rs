//! `bench/results.json` (everything measured) and `bench/results.md` (the tables).

use std::fmt::Write as _;

use serde::Serialize;

use crate::context::Bench;
use crate::load::Latency;
use crate::phases::budget::BudgetResult;
use crate::phases::calls::CallsResult;
use crate::phases::handoff::HandoffResult;
use crate::phases::ingest::IngestResult;
use crate::phases::latency::LatencyResult;
use crate::phases::memory::MemoryResult;
use crate::phases::workers::WorkersResult;

/// The machine the figures come from.
#[derive(Debug, Serialize)]
pub struct Machine {
    /// `nproc`.
    pub nproc: usize,
    /// `MemTotal`, MiB.
    pub memory_mib: u64,
    /// `/proc/cpuinfo` model name.
    pub cpu_model: String,
    /// `uname -r`.
    pub kernel: String,
    /// The broker's version (management API), when it answers.
    pub rabbitmq: String,
}

/// Everything one run measured.
#[derive(Debug, Serialize)]
pub struct Results {
    /// When the run started (UTC, RFC 3339).
    pub date: String,
    /// `git describe`-like commit of the code measured.
    pub commit: String,
    /// `quick` or `full`.
    pub mode: String,
    /// The machine.
    pub machine: Machine,
    /// Wall time of the whole run, seconds.
    pub duration_secs: f64,
    /// Ingest vs raw publish.
    pub ingest: Option<IngestResult>,
    /// Worker throughput and CPU.
    pub workers: Option<WorkersResult>,
    /// Genesys budget use.
    pub budget: Option<BudgetResult>,
    /// Genesys calls per submission.
    pub calls: Option<CallsResult>,
    /// Worker memory under a backlog.
    pub memory: Option<MemoryResult>,
    /// Accepted → enriched.
    pub latency: Option<LatencyResult>,
    /// The Architect handoff against the search fallback.
    pub handoff: Option<HandoffResult>,
}

fn command(program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

async fn rabbitmq_version() -> String {
    let answer = async {
        let overview: serde_json::Value = reqwest::Client::new()
            .get("http://127.0.0.1:15672/api/overview")
            .basic_auth("guest", Some("guest"))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        overview["rabbitmq_version"].as_str().map(str::to_owned)
    };
    answer.await.unwrap_or_else(|| "unknown".into())
}

impl Results {
    /// An empty report with the date and the machine.
    pub async fn new(bench: &Bench) -> Self {
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_else(|| "unknown".into());
        let nproc = command("nproc", &[])
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let commit = command("git", &["rev-parse", "--short", "HEAD"]).map_or_else(
            || "unknown".to_string(),
            |head| {
                let dirty = command("git", &["status", "--porcelain", "--untracked-files=no"])
                    .is_some_and(|s| !s.is_empty());
                if dirty {
                    format!("{head} + uncommitted changes")
                } else {
                    head
                }
            },
        );
        Self {
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
            commit,
            mode: if bench.quick { "quick" } else { "full" }.into(),
            machine: Machine {
                nproc,
                memory_mib: memory_kib / 1024,
                cpu_model,
                kernel: command("uname", &["-r"]).unwrap_or_default(),
                rabbitmq: rabbitmq_version().await,
            },
            duration_secs: 0.0,
            ingest: None,
            workers: None,
            budget: None,
            calls: None,
            memory: None,
            latency: None,
            handoff: None,
        }
    }
}

fn ms(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0} ms")
    } else if x >= 10.0 {
        format!("{x:.1} ms")
    } else {
        format!("{x:.2} ms")
    }
}

fn latency_cells(l: &Latency) -> String {
    format!("{} | {} | {}", ms(l.p50_ms), ms(l.p99_ms), ms(l.max_ms))
}

/// The Markdown report.
pub fn markdown(r: &Results) -> String {
    let mut out = String::new();
    let m = &r.machine;
    let _ = writeln!(out, "# Benchmark results\n");
    let _ = writeln!(
        out,
        "Measured by `scripts/bench` on {}: **{} CPUs** (`nproc`), **{:.1} GiB** memory, {}; \
         kernel {}; RabbitMQ {} on loopback; commit {}; {} mode, {:.0} s in all.\n",
        r.date,
        m.nproc,
        m.memory_mib as f64 / 1024.0,
        m.cpu_model,
        m.kernel,
        m.rabbitmq,
        r.commit,
        r.mode,
        r.duration_secs
    );
    let _ = writeln!(
        out,
        "Each figure stands next to a baseline measured in the same run; compare ratios and \
         counts, not absolute times, across machines. The broker, the sandbox (`prechat-sim`), \
         the load driver and the service share these CPUs. See `bench/README.md`.\n"
    );
    if let Some(i) = &r.ingest {
        let _ = writeln!(
            out,
            "## Ingest\n\nClosed loop at concurrency {}, {:.0} s measured per side, {}-byte bodies.\n",
            i.concurrency, i.measured_secs, i.body_bytes
        );
        let _ = writeln!(
            out,
            "| path | submissions/s | p50 | p99 | max |\n|---|---:|---:|---:|---:|"
        );
        let _ = writeln!(
            out,
            "| `POST /v1/submissions` → 202 (ingest process) | {:.0} | {} |",
            i.http_per_sec,
            latency_cells(&i.http_latency)
        );
        let _ = writeln!(
            out,
            "| baseline: publish + confirm straight to RabbitMQ | {:.0} | {} |",
            i.raw_per_sec,
            latency_cells(&i.raw_latency)
        );
        let _ = writeln!(
            out,
            "\n**HTTP / raw = {:.2}**; the ingest process spends {:.0} µs of CPU per accepted \
             submission; {} HTTP errors.\n",
            i.ratio, i.ingest_cpu_us_per_submission, i.http_errors
        );
    }
    if let Some(w) = &r.workers {
        let _ = writeln!(
            out,
            "## Workers\n\nOne `worker` process (concurrency {}), a backlog of {} submissions, the \
             sandbox without latency or budget, the service's budget out of the way.\n",
            w.concurrency, w.backlog
        );
        let _ = writeln!(
            out,
            "| submissions/s | CPU per submission | cores busy | Genesys calls / submission | CRM calls / submission |\n|---:|---:|---:|---:|---:|"
        );
        let _ = writeln!(
            out,
            "| {:.0} | {:.0} µs | {:.2} | {:.2} | {:.2} |\n",
            w.per_sec,
            w.cpu_us_per_submission,
            w.cpu_cores_busy,
            w.genesys_calls_per_submission,
            w.crm_calls_per_submission
        );
    }
    if let Some(b) = &r.budget {
        let _ = writeln!(
            out,
            "## Genesys budget\n\nA backlog larger than the budget; the sandbox answers after {} ms; \
             two minutes watched from the first call. \"Used\" is calls admitted by the sandbox over \
             its limit for that minute.\n",
            b.sandbox_latency_ms
        );
        let _ = writeln!(
            out,
            "| scenario | sandbox limit/min | config/min | minute 1 used | minute 2 used | 429s | pauses | 429s per pause | longest pause | enriched |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for s in &b.scenarios {
            let describe = match s.name.as_str() {
                "equal" => "equal limits".to_string(),
                "tighter" => "sandbox tighter than config".to_string(),
                "lowered" => "sandbox lowered 300 → 60 at 30 s".to_string(),
                other => other.to_string(),
            };
            let used = |i: usize| {
                s.minutes
                    .get(i)
                    .map(|m| format!("{} ({:.0} %)", m.admitted, m.share_of_budget * 100.0))
                    .unwrap_or_default()
            };
            let _ = writeln!(
                out,
                "| {describe} | {} | {} | {} | {} | {} | {} | {} | {:.1} s | {} |",
                s.sandbox_per_minute,
                s.config_per_minute,
                used(0),
                used(1),
                s.rate_limited,
                s.pauses,
                if s.pauses > 0 {
                    format!("{:.2}", s.rate_limited_per_pause)
                } else {
                    "–".into()
                },
                s.longest_pause_secs,
                s.enriched
            );
        }
        let _ = writeln!(out);
    }
    if let Some(c) = &r.calls {
        let _ = writeln!(
            out,
            "## Genesys calls per submission\n\nFrom the sandbox's counters; {} submissions per mode; \
             token grants and start-up queue lookups not counted.\n",
            c.modes.first().map_or(0, |m| m.submissions)
        );
        let _ = writeln!(
            out,
            "| mode | calls / submission | by route | expected |\n|---|---:|---|---|"
        );
        for mode in &c.modes {
            let routes = mode
                .by_route
                .iter()
                .map(|(route, n)| format!("{route} {n:.2}"))
                .collect::<Vec<_>>()
                .join(", ");
            let _ = writeln!(
                out,
                "| {} | {:.2} | {} | {} |",
                mode.name, mode.genesys_calls_per_submission, routes, mode.expected
            );
        }
        let _ = writeln!(out);
    }
    if let Some(mem) = &r.memory {
        let _ = writeln!(
            out,
            "## Memory\n\nPeak resident set (`VmHWM`) of a `worker` process (concurrency 8, so \
             prefetch 8), each watched for {} s while it works at full speed.\n",
            mem.watched_secs
        );
        let _ = writeln!(
            out,
            "| worker | waiting at start | enriched while watched | peak RSS |\n|---|---:|---:|---:|"
        );
        for (name, w) in [
            ("idle, empty queue (baseline)", &mem.idle),
            ("busy, small backlog (baseline)", &mem.busy_small_backlog),
            ("busy, big backlog", &mem.busy_big_backlog),
        ] {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {:.1} MiB |",
                group(w.backlog as u64),
                group(w.enriched),
                w.peak_mib
            );
        }
        let _ = writeln!(
            out,
            "\n**big backlog / idle = {:.2}; big backlog / small backlog = {:.2}.** The big backlog \
             was published in {:.1} s ({:.0} messages/s, pipelined confirms); {} were still waiting \
             at the end; deleting its namespace took {:.1} s.\n",
            mem.ratio_to_idle,
            mem.ratio_to_small_backlog,
            mem.publish_secs,
            mem.publish_per_sec,
            group(u64::from(mem.busy_big_backlog.still_waiting)),
            mem.delete_secs
        );
    }
    if let Some(l) = &r.latency {
        let _ = writeln!(
            out,
            "## End-to-end latency\n\nA `serve` process under an open-loop {}/s for {} s; from the \
             202 to the `submission.enriched` event (emitted right after the sandbox took the write).\n",
            l.rate_per_sec, l.duration_secs
        );
        let _ = writeln!(out, "| span | p50 | p99 | max |\n|---|---:|---:|---:|");
        let _ = writeln!(
            out,
            "| accepted → enriched | {} |",
            latency_cells(&l.accepted_to_enriched)
        );
        let _ = writeln!(out, "| request → 202 | {} |", latency_cells(&l.http_accept));
        let _ = writeln!(
            out,
            "\n{} accepted, {} enriched.",
            group(l.accepted as u64),
            group(l.enriched as u64)
        );
    }
    if let Some(h) = &r.handoff {
        let _ = writeln!(
            out,
            "## The Architect handoff\n\nA `serve` process, {} ms added to every sandbox call (the \
             CRM and Genesys alike), resolver poll {} ms. Baseline: submissions that carry their \
             conversation id. Handoff: a parked submission on a conversation the search cannot \
             match, then `POST /v1/handoffs`. Fallback: no handoff; the conversation becomes \
             searchable 0.5 s after the submission.\n",
            h.sandbox_latency_ms, h.poll_interval_ms
        );
        let _ = writeln!(out, "| span | p50 | p99 | max |\n|---|---:|---:|---:|");
        for (span, latency) in [
            ("baseline: 202 → enriched", &h.with_conversation_id),
            ("handoff → its answer", &h.handoff_answer),
            ("handoff → enriched", &h.handoff_to_enriched),
            ("fallback: searchable → enriched", &h.search_fallback),
        ] {
            let _ = writeln!(out, "| {span} | {} |", latency_cells(latency));
        }
        let _ = writeln!(
            out,
            "\n{} of {} answers `enriched`; attribute searches: {} during the handoffs, {} during the fallback.",
            h.answers_enriched, h.handoffs, h.handoff_searches, h.fallback_searches
        );
    }
    out
}

fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
