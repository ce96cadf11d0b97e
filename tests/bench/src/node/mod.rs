//! `kubus bench node`: figures for the node agent (issue #4), recorded in docs/benchmarks.md.
//!
//! One run measures, on this host and as root:
//! 1. pod startup latency (create -> Running seen by a watch) with a real control plane
//!    (`kubus up --no-node`) and a real node agent (`kubus node`), both child processes:
//!    pods one at a time, then a burst created at once; deletion time on the side;
//! 2. the runtime path alone: create+start+exit+delete of `echo hi` through the kubus
//!    `Runtime` (a shim per container) beside `runc run` on the same bundle;
//! 3. RSS of the node agent (idle, with the burst running, after it) and of the shims.
//!
//! With `--metrics-pods N` it measures instead what usage collection costs the agent with N
//! pods running ([`metrics_cost`]).
//!
//! Everything it makes on the host carries a random token and is removed by Drop guards,
//! also when a phase fails.

mod metrics_cost;
mod pods;
mod runtime_path;

use anyhow::{bail, Context as _};
use std::time::Duration;
use tracing::Instrument as _;

use crate::host::{is_root, token};
use crate::stats::pct;
use pods::pods_and_rss;
use runtime_path::runtime_path;

#[derive(clap::Args, Debug)]
pub struct NodeBenchArgs {
    /// Pods started one at a time (each deleted, until gone, before the next).
    #[arg(long, default_value_t = 30)]
    pub sequential: usize,
    /// Pods created at once (concurrently); RSS is read while they run.
    #[arg(long, default_value_t = 50)]
    pub burst: usize,
    /// create+start+exit+delete runs of `echo hi`, through the kubus runtime and through runc each.
    #[arg(long, default_value_t = 50)]
    pub runtime_runs: usize,
    /// Instead of the above: the cost of usage collection with this many pods running (the
    /// agent's CPU and RSS with `--housekeeping-interval` 10s and 0, and of a /metrics scrape).
    #[arg(long, default_value_t = 0)]
    pub metrics_pods: usize,
    /// Seconds of each CPU window of `--metrics-pods`.
    #[arg(long, default_value_t = 60)]
    pub metrics_window: u64,
    /// Scrapes of /metrics timed per agent run of `--metrics-pods`.
    #[arg(long, default_value_t = 20)]
    pub metrics_scrapes: usize,
    /// Rounds of `--metrics-pods` (each an agent run with collection on, then one with it off).
    #[arg(long, default_value_t = 2)]
    pub metrics_rounds: usize,
}

fn line(name: &str, samples: &[Duration]) {
    println!(
        "{name:<44} {:>4} runs  p50 {:>8.1} ms  p99 {:>8.1} ms",
        samples.len(),
        pct(samples, 0.5),
        pct(samples, 0.99)
    );
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

pub async fn run(args: NodeBenchArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("kubus bench node runs real containers: run it as root");
    }
    let tok = token()?;
    let exe = std::env::current_exe().context("locating the kubus binary")?;
    if args.metrics_pods > 0 {
        return metrics(&exe, &tok, &args).await;
    }
    println!(
        "kubus bench node (token {tok}): {} sequential pods, {} at once, {} runtime runs each for kubus and runc",
        args.sequential, args.burst, args.runtime_runs
    );
    // The phases own their Drop guards: on Ctrl-C or SIGTERM the phase's future is dropped,
    // which cleans up the host before the process exits.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let phases = async {
        let rt =
            runtime_path(&exe, &tok, args.runtime_runs).instrument(tracing::info_span!("bench.runtime_path")).await?;
        let pods =
            pods_and_rss(&exe, &tok, args.sequential, args.burst).instrument(tracing::info_span!("bench.pods")).await?;
        Ok::<_, anyhow::Error>((rt, pods))
    };
    let (rt, pods) = tokio::select! {
        r = phases => r?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; cleaned up"),
        _ = term.recv() => bail!("terminated; cleaned up"),
    };
    println!();
    println!("== runtime path: create+start+exit+delete of `echo hi` in busybox (overlay rootfs) ==");
    line("kubus Runtime (shim per container)", &rt.kubus);
    line("runc run (same bundle)", &rt.runc);
    println!("{:<44} {:>8.2}", "ratio kubus/runc at p50", pct(&rt.kubus, 0.5) / pct(&rt.runc, 0.5));
    for (op, v) in &rt.ops {
        println!("  kubus {op:<38} p50 {:>8.1} ms  p99 {:>8.1} ms", pct(v, 0.5), pct(v, 0.99));
    }
    println!();
    println!("== pods: create -> Running seen by a watch (busybox cached, sleep) ==");
    line("one at a time", &pods.sequential);
    line(&format!("{} created at once (per pod)", pods.burst.len()), &pods.burst);
    println!(
        "{:<44} {:>8.0} ms (first Running after {:.0} ms)",
        format!("all {} Running (from the first create)", pods.burst.len()),
        pods.burst_all_ms,
        pods.burst_first_ms
    );
    println!(
        "{:<44} {:>8.1} ms per pod; machine CPU {:.0}% busy",
        "  node agent CPU (with its reaped children)",
        pods.agent_cpu_ms / pods.burst.len().max(1) as f64,
        pods.machine_busy * 100.0
    );
    line("delete -> gone, one at a time (grace 1 s)", &pods.deleted);
    println!("{:<44} {:>8.0} ms", format!("all {} gone (deleted at once)", pods.burst.len()), pods.burst_gone_ms);
    println!();
    println!("== RSS ==");
    println!("{:<44} {:>8.1} MiB", "node agent, 0 pods (after start)", mib(pods.agent_idle_kib));
    println!("{:<44} {:>8.1} MiB", format!("node agent, {} pods running", pods.burst.len()), mib(pods.agent_busy_kib));
    println!("{:<44} {:>8.1} MiB", "node agent, 0 pods (after the runs)", mib(pods.agent_after_kib));
    println!(
        "{:<44} {:>8.2} MiB each, {:.1} MiB total",
        format!("shims, VmRSS ({} with {} pods)", pods.shims, pods.burst.len()),
        mib(pods.shims_total_kib) / pods.shims.max(1) as f64,
        mib(pods.shims_total_kib)
    );
    println!(
        "{:<44} {:>8.2} MiB each, {:.1} MiB total",
        "shims, PSS (shared pages split)",
        mib(pods.shims_pss_kib) / pods.shims.max(1) as f64,
        mib(pods.shims_pss_kib)
    );
    Ok(())
}

/// `--metrics-pods`: the cost of usage collection, printed as a table of the agent runs.
async fn metrics(exe: &std::path::Path, tok: &str, args: &NodeBenchArgs) -> anyhow::Result<()> {
    let window = Duration::from_secs(args.metrics_window.max(1));
    println!(
        "kubus bench node --metrics-pods (token {tok}): {} pods, {} s CPU windows, {} scrapes per run, {} rounds",
        args.metrics_pods,
        window.as_secs(),
        args.metrics_scrapes,
        args.metrics_rounds
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let run = metrics_cost::metrics_cost(
        exe,
        tok,
        args.metrics_pods,
        window,
        args.metrics_scrapes.max(1),
        args.metrics_rounds.max(1),
    )
    .instrument(tracing::info_span!("bench.metrics_cost"));
    let figs = tokio::select! {
        r = run => r?,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; cleaned up"),
        _ = term.recv() => bail!("terminated; cleaned up"),
    };
    println!();
    println!(
        "== usage collection with {} pods (busybox sleep): node agent over {} s, then /metrics scrapes ==",
        figs.pods,
        figs.window.as_secs()
    );
    println!(
        "{:<6} {:<11} {:>12} {:>9} {:>12} {:>12} {:>10} {:>8} {:>14}",
        "round", "collection", "CPU (core%)", "RSS MiB", "scrape p50", "scrape p99", "bytes", "series", "CPU/scrape ms"
    );
    for (i, r) in figs.runs.iter().enumerate() {
        println!(
            "{:<6} {:<11} {:>12.2} {:>9.1} {:>9.1} ms {:>9.1} ms {:>10} {:>8} {:>14.1}",
            i / 2 + 1,
            if r.collection { "on (10s)" } else { "off (0)" },
            r.cpu_core_share * 100.0,
            mib(r.rss_kib),
            pct(&r.scrape, 0.5),
            pct(&r.scrape, 0.99),
            r.scrape_bytes,
            r.scrape_series,
            r.scrape_cpu_ms
        );
    }
    for pair in figs.runs.chunks(2) {
        if let [on, off] = pair {
            println!(
                "  round: collection adds {:.2} points of a core ({:.2}x the agent's CPU), {:+.1} MiB RSS",
                (on.cpu_core_share - off.cpu_core_share) * 100.0,
                on.cpu_core_share / off.cpu_core_share.max(1e-9),
                mib(on.rss_kib) - mib(off.rss_kib)
            );
        }
    }
    for r in figs.runs.iter().filter(|r| r.collection) {
        if let (Some(s), Some((w, n))) = (r.sample_ms, r.fs_walk) {
            println!(
                "  housekeeping: one cgroup sample of every pod {s:.1} ms; one pod's disk walk {w:.2} ms ({n} walks)"
            );
        }
    }
    Ok(())
}
