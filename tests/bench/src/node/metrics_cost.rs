//! What collecting usage costs the node agent (issue #12): with N real pods running, the
//! agent's CPU over a fixed window and its RSS with collection on (`--housekeeping-interval
//! 10s`: cgroup samples every 10 s, disk walks every minute) and off (`0`), and what one
//! Prometheus scrape of its `/metrics` costs (latency, size, the agent's CPU per scrape).
//!
//! The same pods serve every run: the agent is restarted with the other setting and adopts the
//! running containers, so the runs differ in collection only. Runs alternate on, off, on, off
//! (the machine is shared: compare within a round). Everything goes with the bench's guard
//! (`kubus node-reset` on the node's data dir, bridge and cgroup root).

use anyhow::{bail, Context as _};
use std::path::Path;
use std::time::{Duration, Instant};

use super::pods::{pod, start_control_plane, ClusterGuard, Watch, PODS, POD_TIMEOUT};
use crate::host::{clock_ticks_per_second, own_cpu_ticks, vm_rss_kib};
use crate::http::{expect_json, Conn};
use crate::stats::{pct, sorted};

/// After an agent (re)starts and reports every pod: time for adoption, first syncs and status
/// writes to pass before the window.
const SETTLE: Duration = Duration::from_secs(20);

/// One agent run's figures.
pub(super) struct Run {
    pub(super) collection: bool,
    /// The agent's utime+stime over the window, as a share of one core.
    pub(super) cpu_core_share: f64,
    pub(super) rss_kib: u64,
    pub(super) scrape: Vec<Duration>,
    pub(super) scrape_bytes: usize,
    pub(super) scrape_series: usize,
    /// The agent's CPU per scrape (over all the scrapes), ms.
    pub(super) scrape_cpu_ms: f64,
    /// Mean time of one usage sample of every pod (cgroups), ms (collection on).
    pub(super) sample_ms: Option<f64>,
    /// Mean time to walk one pod's disk use, ms, and how many walks (collection on).
    pub(super) fs_walk: Option<(f64, u64)>,
}

pub(super) struct MetricsFigures {
    pub(super) pods: usize,
    pub(super) window: Duration,
    pub(super) runs: Vec<Run>,
}

/// A Prometheus text value: the first sample line of `name` (with its labels, if any).
fn value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        let rest =
            rest.strip_prefix(' ').or_else(|| rest.strip_prefix('{').and_then(|r| r.split_once("} ").map(|x| x.1)))?;
        rest.trim().parse().ok()
    })
}

async fn scrape(conn: &mut Conn) -> anyhow::Result<String> {
    let (code, body) = conn.request("GET", "/metrics", "text/plain", b"").await?;
    if code != 200 {
        bail!("GET /metrics: {code}");
    }
    Ok(String::from_utf8(body)?)
}

/// Waits until the agent's /metrics says `pods` pods run (it has adopted or started them all).
async fn wait_running(metrics: &str, pods: usize, guard: &ClusterGuard) -> anyhow::Result<()> {
    let deadline = Instant::now() + POD_TIMEOUT;
    loop {
        if let Ok(mut c) = Conn::open(metrics).await {
            if let Ok(text) = scrape(&mut c).await {
                if value(&text, "kubelet_running_pods") == Some(pods as f64) {
                    return Ok(());
                }
            }
        }
        if Instant::now() > deadline {
            bail!("the agent does not report {pods} running pods; see {}", guard.dir().join("node.log").display());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// One agent run: settle, the CPU window, RSS, then the scrapes.
async fn measure(agent: u32, metrics: &str, collection: bool, window: Duration, scrapes: usize) -> anyhow::Result<Run> {
    tokio::time::sleep(SETTLE).await;
    let hz = clock_ticks_per_second();
    let t0 = (Instant::now(), own_cpu_ticks(agent).context("node agent exited")?);
    tokio::time::sleep(window).await;
    let t1 = (Instant::now(), own_cpu_ticks(agent).context("node agent exited")?);
    let cpu_core_share = (t1.1 - t0.1) as f64 / hz / (t1.0 - t0.0).as_secs_f64();
    let rss_kib = vm_rss_kib(agent).context("node agent exited")?;

    // Scrapes on one keep-alive connection, as Prometheus makes them.
    let mut conn = Conn::open(metrics).await?;
    let mut times = Vec::with_capacity(scrapes);
    let mut text = String::new();
    let c0 = own_cpu_ticks(agent).context("node agent exited")?;
    for _ in 0..scrapes {
        let t = Instant::now();
        text = scrape(&mut conn).await?;
        times.push(t.elapsed());
    }
    let c1 = own_cpu_ticks(agent).context("node agent exited")?;
    let has_usage = text.lines().any(|l| l.starts_with("container_cpu_usage_seconds_total{"));
    if has_usage != collection {
        bail!(
            "collection {}, but the scrape {} container series",
            on_off(collection),
            if has_usage { "has" } else { "lacks" }
        );
    }
    let mean = |name: &str| Some((value(&text, &format!("{name}_sum"))?, value(&text, &format!("{name}_count"))?));
    let (sample_ms, fs_walk) = if collection {
        let sample = mean("kubus_kubelet_stats_sample_duration_seconds").filter(|(_, n)| *n > 0.0);
        let walk = mean("kubus_kubelet_fs_usage_duration_seconds").filter(|(_, n)| *n > 0.0);
        (sample.map(|(s, n)| s * 1e3 / n), walk.map(|(s, n)| (s * 1e3 / n, n as u64)))
    } else {
        (None, None)
    };
    Ok(Run {
        collection,
        cpu_core_share,
        rss_kib,
        scrape_bytes: text.len(),
        scrape_series: text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).count(),
        scrape_cpu_ms: (c1 - c0) as f64 * 1e3 / hz / scrapes.max(1) as f64,
        scrape: sorted(times),
        sample_ms,
        fs_walk,
    })
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

pub(super) async fn metrics_cost(
    exe: &Path,
    tok: &str,
    pods: usize,
    window: Duration,
    scrapes: usize,
    rounds: usize,
) -> anyhow::Result<MetricsFigures> {
    let started = Instant::now();
    let (mut guard, addr, nats) = start_control_plane(exe, tok).await?;
    let metrics = format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port());
    let flags = |on: bool| -> Vec<String> {
        let interval = if on { "10s" } else { "0" };
        vec!["--metrics-bind-address".into(), metrics.clone(), "--housekeeping-interval".into(), interval.into()]
    };
    let args = flags(true);
    let mut agent = guard.start_agent(&nats, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
    guard.wait_node_ready(&addr, started, Duration::from_secs(90)).await?;
    println!("control plane and node {} Ready after {:.1} s", guard.node_name(), started.elapsed().as_secs_f64());

    // The pods, created at once; a watch tells when they all run.
    let mut watch = Watch::open(&addr, tok).await?;
    let names: Vec<String> = (0..pods).map(|i| format!("b{tok}-m{i}")).collect();
    let t0 = Instant::now();
    for chunk in names.chunks(20) {
        futures::future::try_join_all(chunk.iter().map(|name| {
            let (addr, body) = (addr.clone(), pod(name, tok));
            async move { expect_json(&addr, "POST", PODS, Some(&body), &[201]).await }
        }))
        .await?;
    }
    watch
        .until(&format!("{pods} pods Running"), POD_TIMEOUT * 4, |s| {
            names.iter().all(|n| s.get(n).is_some_and(|p| p.running.is_some()))
        })
        .await?;
    drop(watch);
    println!("{pods} pods Running after {:.1} s", t0.elapsed().as_secs_f64());

    let mut runs = Vec::new();
    let mut current = true;
    for round in 0..rounds {
        for on in [true, false] {
            if on != current {
                let args = flags(on);
                agent = guard.start_agent(&nats, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
                current = on;
            }
            wait_running(&metrics, pods, &guard).await?;
            let run = measure(agent, &metrics, on, window, scrapes).await?;
            println!(
                "round {}, collection {:<3}: agent CPU {:5.2}% of a core, RSS {:6.1} MiB, scrape p50 {:6.1} ms ({} bytes)",
                round + 1,
                on_off(on),
                run.cpu_core_share * 100.0,
                run.rss_kib as f64 / 1024.0,
                pct(&run.scrape, 0.5),
                run.scrape_bytes
            );
            runs.push(run);
        }
    }
    drop(guard);
    Ok(MetricsFigures { pods, window, runs })
}

#[cfg(test)]
mod tests {
    use super::value;

    #[test]
    fn values_with_and_without_labels() {
        let text = "# HELP x y\nkubelet_running_pods 100\nfoo_sum{a=\"b\"} 1.5\nfoo_count 3\n";
        assert_eq!(value(text, "kubelet_running_pods"), Some(100.0));
        assert_eq!(value(text, "foo_sum"), Some(1.5));
        assert_eq!(value(text, "foo_count"), Some(3.0));
        assert_eq!(value(text, "foo"), None);
        assert_eq!(value(text, "kubelet_running"), None, "a name's prefix is not the name");
    }
}
