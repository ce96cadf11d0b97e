//! `kubus bench jobs`: one Job on simulated nodes whose pods run `--run-seconds` each
//! (`sim.kubus.io/run-seconds`) and exit 0. `kubus up --sim-nodes N` runs as a child; a pods
//! watch follows every pod of the Job. Reported: time until the Job is Complete (and the ideal,
//! `ceil(completions / parallelism) x run-seconds`), completions per second overall and in the
//! steady state (between the 10th and the 90th percentile completion), pods created (equal to
//! completions when nothing fails), the most pods active at once (at most parallelism), and
//! the CPU of the controller manager's thread and of the whole process.

use crate::controllers::{report, Reading};
use crate::pod_watch::PodWatch;
use crate::sim_cluster::{metric, SimCluster};
use anyhow::bail;
use k8s_openapi::api::core::v1::Pod;
use kubus_apimachinery::{pod as podutil, ObjectExt};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

const JOBS: &str = "/apis/batch/v1/namespaces/default/jobs";
const PODS: &str = "/api/v1/namespaces/default/pods";
const NAME: &str = "bench";

#[derive(clap::Args, Debug)]
pub struct JobsArgs {
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    #[arg(long, default_value_t = 1000)]
    completions: usize,
    #[arg(long, default_value_t = 100)]
    parallelism: usize,
    /// How long each pod runs before it exits 0.
    #[arg(long, default_value_t = 1.0)]
    run_seconds: f64,
    /// completionMode Indexed (each index 0..completions once) instead of NonIndexed.
    #[arg(long)]
    indexed: bool,
    /// Seconds the Job may take before the bench gives up.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Extra `kubus up` flags (repeatable), e.g. `--up-arg=--concurrent-job-syncs=10`.
    #[arg(long = "up-arg", allow_hyphen_values = true)]
    up_args: Vec<String>,
}

fn job(args: &JobsArgs) -> Value {
    let mode = if args.indexed { "Indexed" } else { "NonIndexed" };
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": NAME},
        "spec": {"completions": args.completions, "parallelism": args.parallelism, "completionMode": mode,
            "template": {"metadata": {"annotations": {"sim.kubus.io/run-seconds": args.run_seconds.to_string()}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}})
}

/// What the watch saw of the Job's pods.
#[derive(Default)]
struct JobPods {
    created: HashSet<String>,
    active: HashSet<String>,
    most_active: usize,
    ended: HashSet<String>,
    /// When each pod was seen Succeeded, from the Job's creation.
    succeeded_at: Vec<Duration>,
    failed: usize,
}

impl JobPods {
    fn apply(&mut self, pod: &Pod, deleted: bool, since: Duration) {
        let uid = pod.uid().to_string();
        self.created.insert(uid.clone());
        // Active as the Job controller counts it against parallelism: neither finished nor
        // being deleted.
        if !deleted && podutil::is_active(pod) {
            self.active.insert(uid.clone());
        } else {
            self.active.remove(&uid);
        }
        self.most_active = self.most_active.max(self.active.len());
        if podutil::is_terminal(pod) && self.ended.insert(uid) {
            if podutil::phase(pod) == "Succeeded" {
                self.succeeded_at.push(since);
            } else {
                self.failed += 1;
            }
        }
    }

    /// Completions per second between the 10th and the 90th percentile completion.
    fn steady_rate(&self) -> Option<f64> {
        let mut at = self.succeeded_at.clone();
        at.sort();
        let (lo, hi) = (at.len() / 10, at.len() * 9 / 10);
        let span = at.get(hi)?.checked_sub(*at.get(lo)?)?.as_secs_f64();
        (hi > lo && span > 0.0).then(|| (hi - lo) as f64 / span)
    }
}

fn complete(job: &Value) -> bool {
    job["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Complete" && c["status"] == "True"))
}

pub(crate) async fn run(args: JobsArgs) -> anyhow::Result<()> {
    let extra: Vec<&str> = args.up_args.iter().map(String::as_str).collect();
    let cluster = SimCluster::start("jobs", args.nodes, &extra).await?;
    let mode = if args.indexed { "Indexed" } else { "NonIndexed" };
    println!(
        "kubus bench jobs: {} simulated nodes, one {mode} Job of {} completions, parallelism {}, pods running {} s; server {} (pid {})",
        args.nodes, args.completions, args.parallelism, args.run_seconds, cluster.addr, cluster.pid
    );
    let ready = cluster.wait_nodes_ready(args.nodes).await?;
    println!("{:<44} {:>8.2} s", format!("{} nodes Ready", args.nodes), ready.as_secs_f64());
    let selector = format!("batch.kubernetes.io%2Fjob-name%3D{NAME}");
    let mut watch = PodWatch::start(&cluster.addr, PODS, &selector).await?;

    let before = Reading::of(&cluster).await?;
    let t0 = Instant::now();
    cluster.send("POST", JOBS, "application/json", &job(&args), &[201]).await?;
    let mut pods = JobPods::default();
    let timeout = Duration::from_secs(args.timeout);
    let mut next_poll = Instant::now();
    let (done, status) = loop {
        for ev in watch.next(Duration::from_millis(50)).await? {
            pods.apply(&ev.pod, ev.deleted, ev.at.saturating_duration_since(t0));
        }
        // The Job's own word on completion, polled (one GET) every 100 ms.
        if Instant::now() >= next_poll {
            next_poll = Instant::now() + Duration::from_millis(100);
            let j: Value = serde_json::from_slice(&cluster.get(&format!("{JOBS}/{NAME}")).await?)?;
            if complete(&j) {
                break (t0.elapsed(), j["status"].clone());
            }
            if t0.elapsed() > timeout {
                bail!("the Job is not Complete after {timeout:?}: {}", j["status"]);
            }
        }
    };
    let after = Reading::of(&cluster).await?;
    // Events that were already on their way when the Job was read Complete.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for ev in watch.drain()? {
        pods.apply(&ev.pod, ev.deleted, ev.at.saturating_duration_since(t0));
    }

    let waves = args.completions.div_ceil(args.parallelism.max(1));
    let ideal = waves as f64 * args.run_seconds;
    let n = args.completions as f64;
    println!(
        "{:<44} {:>8.2} s   (ideal {ideal:.1} s: {waves} waves of {} s)",
        "Job Complete",
        done.as_secs_f64(),
        args.run_seconds
    );
    let first = pods.succeeded_at.iter().min().copied().unwrap_or_default();
    println!("{:<44} {:>8.2} s", "    first pod Succeeded", first.as_secs_f64());
    println!("{:<44} {:>8.1} /s", "    completions per second, overall", n / done.as_secs_f64());
    match pods.steady_rate() {
        Some(r) => println!(
            "{:<44} {:>8.1} /s   (ideal {:.1} /s)",
            "    same, steady state (p10-p90)",
            r,
            args.parallelism as f64 / args.run_seconds
        ),
        None => println!("{:<44} {:>8}", "    same, steady state (p10-p90)", "-"),
    }
    let check = |ok: bool| if ok { "ok" } else { "WRONG" };
    println!(
        "{:<44} {:>8}   {} (completions {})",
        "    pods created",
        pods.created.len(),
        check(pods.created.len() == args.completions),
        args.completions
    );
    println!(
        "{:<44} {:>8}   {} (parallelism {})",
        "    most pods active at once",
        pods.most_active,
        check(pods.most_active <= args.parallelism),
        args.parallelism
    );
    println!(
        "{:<44} succeeded {}, failed {}, pods seen Succeeded {}, Failed {}{}",
        "    Job status",
        status["succeeded"],
        status["failed"],
        pods.succeeded_at.len(),
        pods.failed,
        if args.indexed { format!(", completedIndexes {}", status["completedIndexes"]) } else { String::new() }
    );
    let controller = after.controller_manager_cpu(&before);
    println!(
        "{:<44} {:>8.2} s   ({:.2} ms per completion; Job controller thread {:.2} s)",
        "    controller manager CPU",
        controller,
        controller * 1e3 / n,
        after.threads_cpu(&before, |t| t == "kcm-job")
    );
    report("    whole process", done, args.completions, &before, &after);
    let page = cluster.metrics().await?;
    println!("{:<44} {:>8.0}", "    simulated run timers left", metric(&page, "kubus_sim_node_run_timers", ""));
    let warnings = cluster.warnings().await?;
    println!("{:<44} {}", "Warning events", if warnings.is_empty() { "none" } else { &warnings });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, phase: &str, deleting: bool) -> Pod {
        let deletion = deleting.then_some("2026-01-01T00:00:00Z");
        serde_json::from_value(json!({"metadata": {"name": uid, "uid": uid, "deletionTimestamp": deletion},
            "status": {"phase": phase}}))
        .unwrap()
    }

    #[test]
    fn pods_are_counted_once_and_active_while_not_finished_or_deleting() {
        let mut p = JobPods::default();
        let s = Duration::from_secs;
        p.apply(&pod("a", "Pending", false), false, s(0));
        p.apply(&pod("b", "Running", false), false, s(0));
        p.apply(&pod("a", "Succeeded", false), false, s(1));
        p.apply(&pod("a", "Succeeded", false), false, s(2));
        p.apply(&pod("c", "Running", false), false, s(2));
        p.apply(&pod("b", "Running", true), false, s(3));
        p.apply(&pod("c", "Failed", false), false, s(3));
        p.apply(&pod("a", "Succeeded", false), true, s(4));
        assert_eq!((p.created.len(), p.most_active, p.active.len()), (3, 2, 0));
        assert_eq!((p.succeeded_at, p.failed), (vec![s(1)], 1));
    }

    #[test]
    fn steady_rate_spans_the_middle_of_the_completions() {
        // 100 completions, one every 10 ms after a slow start of 5 s.
        let succeeded_at = (0..100).map(|i| Duration::from_secs(5) + Duration::from_millis(10 * i)).collect();
        let mut p = JobPods { succeeded_at, ..Default::default() };
        let r = p.steady_rate().unwrap();
        assert!((r - 100.0).abs() < 1e-6, "{r}");
        p.succeeded_at.truncate(5);
        assert!(p.steady_rate().is_some());
        p.succeeded_at.truncate(1);
        assert_eq!(p.steady_rate(), None);
    }
}
