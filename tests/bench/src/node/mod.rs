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
//! Everything it makes on the host carries a random token and is removed by Drop guards,
//! also when a phase fails.

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
