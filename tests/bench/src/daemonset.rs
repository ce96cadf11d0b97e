//! `kubus bench daemonset`: a DaemonSet over N simulated nodes (`kubus up --sim-nodes N` as a
//! child), followed by a pods watch. Phases: created until every node has a Ready pod; an image
//! change rolled out with maxUnavailable until every node runs the new image (and no old pod is
//! left); the same with maxSurge (maxUnavailable 0). For each rollout: its time, the most nodes
//! without an available pod at any moment (at most maxUnavailable) and, with surge, the most
//! nodes surging as upstream counts them (a new pod not yet available beside an old one: at
//! most maxSurge) and with two pods at once; and what each phase cost in CPU.

use crate::controllers::{report, Reading};
use crate::pod_watch::{PodEvent, PodWatch};
use crate::sim_cluster::SimCluster;
use anyhow::bail;
use k8s_openapi::api::core::v1::Pod;
use kubus_apimachinery::{pod as podutil, ObjectExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::{Duration, Instant};

const DAEMONSETS: &str = "/apis/apps/v1/namespaces/default/daemonsets";
const PODS: &str = "/api/v1/namespaces/default/pods";
const NAME: &str = "bench-ds";

#[derive(clap::Args, Debug)]
pub struct DaemonSetArgs {
    #[arg(long, default_value_t = 1000)]
    nodes: usize,
    /// rollingUpdate.maxUnavailable of the first rollout (a count, or a percentage of nodes).
    #[arg(long, default_value = "10%")]
    max_unavailable: String,
    /// rollingUpdate.maxSurge of the second rollout (with maxUnavailable 0).
    #[arg(long, default_value = "10%")]
    max_surge: String,
    /// Seconds any one phase may take before the bench gives up.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
    /// Extra `kubus up` flags (repeatable).
    #[arg(long = "up-arg", allow_hyphen_values = true)]
    up_args: Vec<String>,
}

/// An int-or-string as the API takes it: "10%" stays a string, "10" is a number.
fn int_or_percent(v: &str) -> Value {
    v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n))
}

/// The count an int-or-percent allows out of `total`, rounded up as upstream does for
/// DaemonSets.
fn scaled(v: &str, total: usize) -> usize {
    match v.strip_suffix('%') {
        Some(p) => (p.trim().parse::<usize>().unwrap_or(0) * total).div_ceil(100),
        None => v.trim().parse().unwrap_or(0),
    }
}

fn daemonset(max_unavailable: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": NAME},
        "spec": {"selector": {"matchLabels": {"app": NAME}},
            "updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": int_or_percent(max_unavailable)}},
            "template": {"metadata": {"labels": {"app": NAME}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1.35",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}}})
}

/// One pod as the coverage counts it.
#[derive(Clone)]
struct Placed {
    node: String,
    image: String,
    /// Ready and not being deleted: it serves on its node.
    available: bool,
    /// Not being deleted.
    live: bool,
}

/// One node's pods, by what the rollout asks of them.
#[derive(Default, Clone, Copy, PartialEq)]
struct NodeCounts {
    available: usize,
    available_new: usize,
    live_old: usize,
    live_new: usize,
}

impl NodeCounts {
    /// Whether the node is covered, covered by the new image, runs two pods, and surges as
    /// upstream counts it (a new pod not yet available beside an old one).
    fn flags(&self) -> [bool; 4] {
        [
            self.available > 0,
            self.available_new > 0,
            self.live_old + self.live_new > 1,
            self.live_old > 0 && self.live_new > 0 && self.available_new == 0,
        ]
    }
}

/// Which nodes have an available pod (of any image, and of the image being rolled out), run
/// two pods, or surge, kept up to date change by change.
#[derive(Default)]
struct Coverage {
    pods: HashMap<String, Placed>,
    nodes: HashMap<String, NodeCounts>,
    target: String,
    /// Nodes with each of [`NodeCounts::flags`].
    covered: usize,
    covered_new: usize,
    doubled: usize,
    surging: usize,
    /// Pods not being deleted, of any image and of an image other than the target.
    live_pods: usize,
    old_pods: usize,
}

impl Coverage {
    fn count(&mut self, p: &Placed, up: bool) {
        let step = |n: &mut usize, yes: bool| {
            if yes {
                if up {
                    *n += 1
                } else {
                    *n -= 1
                }
            }
        };
        let is_new = p.image == self.target;
        let counts = self.nodes.entry(p.node.clone()).or_default();
        let before = counts.flags();
        step(&mut counts.available, p.available);
        step(&mut counts.available_new, p.available && is_new);
        step(&mut counts.live_old, p.live && !is_new);
        step(&mut counts.live_new, p.live && is_new);
        let after = counts.flags();
        if *counts == NodeCounts::default() {
            self.nodes.remove(&p.node);
        }
        for (total, (b, a)) in [&mut self.covered, &mut self.covered_new, &mut self.doubled, &mut self.surging]
            .into_iter()
            .zip(before.into_iter().zip(after))
        {
            *total = *total + usize::from(a) - usize::from(b);
        }
        step(&mut self.live_pods, p.live);
        step(&mut self.old_pods, p.live && !is_new);
    }

    fn apply(&mut self, pod: &Pod, deleted: bool) {
        let uid = pod.uid().to_string();
        if let Some(old) = self.pods.remove(&uid) {
            self.count(&old, false);
        }
        // Counted once bound to a node; gone when deleted.
        let Some(node) = podutil::node_name(pod).filter(|_| !deleted) else { return };
        let image = podutil::spec(pod).containers.first().and_then(|c| c.image.clone()).unwrap_or_default();
        let live = !pod.is_deleting();
        let placed = Placed { node: node.to_string(), image, available: live && podutil::is_ready(pod), live };
        self.count(&placed, true);
        self.pods.insert(uid, placed);
    }

    /// Counts again towards a new image.
    fn retarget(&mut self, image: &str) {
        let pods: Vec<Placed> = self.pods.values().cloned().collect();
        pods.iter().for_each(|p| self.count(p, false));
        self.target = image.to_string();
        pods.iter().for_each(|p| self.count(p, true));
    }

    fn nodes_unavailable(&self, nodes: usize) -> usize {
        nodes.saturating_sub(self.covered)
    }
}

/// The most of what a rollout must bound, seen after any change.
#[derive(Default, Debug)]
struct Worst {
    unavailable: usize,
    /// Nodes surging as upstream counts them (bounded by maxSurge).
    surging: usize,
    /// Nodes with two pods at once (also those whose new pod is available and whose old one
    /// is about to be deleted, which upstream does not count against maxSurge).
    doubled: usize,
}

struct Bench {
    cluster: SimCluster,
    watch: PodWatch,
    cov: Coverage,
    nodes: usize,
    timeout: Duration,
}

impl Bench {
    fn apply(&mut self, events: Vec<PodEvent>, worst: &mut Worst) {
        for ev in events {
            self.cov.apply(&ev.pod, ev.deleted);
            worst.unavailable = worst.unavailable.max(self.cov.nodes_unavailable(self.nodes));
            worst.surging = worst.surging.max(self.cov.surging);
            worst.doubled = worst.doubled.max(self.cov.doubled);
        }
    }

    /// Follows the watch until every node has an available pod of the target image and no
    /// pod of another image is left; the time since `t0`, and the worst seen on the way.
    async fn until_rolled(&mut self, what: &str, t0: Instant) -> anyhow::Result<(Duration, Worst)> {
        let mut worst = Worst::default();
        let mut next_note = t0 + Duration::from_secs(10);
        loop {
            let events = self.watch.next(Duration::from_millis(100)).await?;
            self.apply(events, &mut worst);
            if self.cov.covered_new >= self.nodes && self.cov.old_pods == 0 {
                return Ok((t0.elapsed(), worst));
            }
            // A slow phase shows where it stands every 10 s.
            if Instant::now() >= next_note {
                next_note += Duration::from_secs(10);
                let old: Vec<String> = self
                    .cov
                    .pods
                    .values()
                    .filter(|p| p.live && p.image != self.cov.target)
                    .take(3)
                    .map(|p| p.node.clone())
                    .collect();
                println!(
                    "    ... {:>4.0} s: {} of {} nodes run {}, {} old pods left (on {}), {} nodes surging, {} unavailable",
                    t0.elapsed().as_secs_f64(),
                    self.cov.covered_new,
                    self.nodes,
                    self.cov.target,
                    self.cov.old_pods,
                    old.join(", "),
                    self.cov.surging,
                    self.cov.nodes_unavailable(self.nodes)
                );
            }
            if t0.elapsed() > self.timeout {
                bail!(
                    "{what}: after {:?}, {} of {} nodes run {} ({} old pods left)",
                    self.timeout,
                    self.cov.covered_new,
                    self.nodes,
                    self.cov.target,
                    self.cov.old_pods
                );
            }
        }
    }

    /// Waits until the DaemonSet's status agrees (the controller saw the end of the phase), so
    /// that the next phase starts from a settled controller.
    async fn until_status_settled(&mut self) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        loop {
            let ds: Value = serde_json::from_slice(&self.cluster.get(&format!("{DAEMONSETS}/{NAME}")).await?)?;
            let s = &ds["status"];
            let n = self.nodes as i64;
            if s["observedGeneration"] == ds["metadata"]["generation"]
                && s["desiredNumberScheduled"].as_i64() == Some(n)
                && s["updatedNumberScheduled"].as_i64() == Some(n)
                && s["numberAvailable"].as_i64() == Some(n)
            {
                return Ok(t0.elapsed());
            }
            if t0.elapsed() > self.timeout {
                bail!("DaemonSet status not settled after {:?}: {s}", self.timeout);
            }
            // Keep the coverage current meanwhile.
            let events = self.watch.drain()?;
            self.apply(events, &mut Worst::default());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn patch(&self, patch: &Value) -> anyhow::Result<()> {
        let path = format!("{DAEMONSETS}/{NAME}");
        self.cluster.send("PATCH", &path, "application/strategic-merge-patch+json", patch, &[200]).await
    }
}

fn cm_cpu(before: &Reading, after: &Reading) {
    println!(
        "{:<44} {:>8.2} s   (DaemonSet controller thread {:.2} s)",
        "    controller manager CPU",
        after.controller_manager_cpu(before),
        after.threads_cpu(before, |t| t == "kcm-daemonset")
    );
}

fn image_patch(image: &str) -> Value {
    json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}})
}

pub(crate) async fn run(args: DaemonSetArgs) -> anyhow::Result<()> {
    let extra: Vec<&str> = args.up_args.iter().map(String::as_str).collect();
    let cluster = SimCluster::start("daemonset", args.nodes, &extra).await?;
    let (unavailable_bound, surge_bound) =
        (scaled(&args.max_unavailable, args.nodes), scaled(&args.max_surge, args.nodes));
    println!(
        "kubus bench daemonset: {} simulated nodes, maxUnavailable {} ({unavailable_bound} nodes), then maxSurge {} ({surge_bound} nodes); server {} (pid {})",
        args.nodes, args.max_unavailable, args.max_surge, cluster.addr, cluster.pid
    );
    let ready = cluster.wait_nodes_ready(args.nodes).await?;
    println!("{:<44} {:>8.2} s", format!("{} nodes Ready", args.nodes), ready.as_secs_f64());
    let watch = PodWatch::start(&cluster.addr, PODS, &format!("app%3D{NAME}")).await?;
    let mut b = Bench {
        cluster,
        watch,
        cov: Coverage::default(),
        nodes: args.nodes,
        timeout: Duration::from_secs(args.timeout),
    };
    let check = |ok: bool| if ok { "ok" } else { "EXCEEDED" };

    // Created: a Ready pod on every node.
    b.cov.retarget("busybox:1.35");
    let before = Reading::of(&b.cluster).await?;
    let t0 = Instant::now();
    b.cluster.send("POST", DAEMONSETS, "application/json", &daemonset(&args.max_unavailable), &[201]).await?;
    let (took, _) = b.until_rolled("create", t0).await?;
    let after = Reading::of(&b.cluster).await?;
    report(&format!("{} pods Ready, one per node", args.nodes), took, args.nodes, &before, &after);
    cm_cpu(&before, &after);
    let settled = b.until_status_settled().await?;
    println!("{:<44} {:>8.2} s later", "    DaemonSet status caught up", settled.as_secs_f64());

    // Rolling update with maxUnavailable.
    for (phase, image, patch, bound_unavailable, surge) in [
        (
            format!("rollout to busybox:1.36, maxUnavailable {}", args.max_unavailable),
            "busybox:1.36",
            image_patch("busybox:1.36"),
            unavailable_bound,
            None,
        ),
        (
            format!("rollout to busybox:1.37, maxSurge {}", args.max_surge),
            "busybox:1.37",
            json!({"spec": {"updateStrategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": int_or_percent(&args.max_surge), "maxUnavailable": 0}},
                "template": {"spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}}}),
            0,
            Some(surge_bound),
        ),
    ] {
        b.cov.retarget(image);
        let before = Reading::of(&b.cluster).await?;
        let t0 = Instant::now();
        b.patch(&patch).await?;
        let (took, worst) = b.until_rolled(&phase, t0).await?;
        let after = Reading::of(&b.cluster).await?;
        report(&phase, took, args.nodes, &before, &after);
        cm_cpu(&before, &after);
        println!(
            "{:<44} {:>8}   {} (bound {bound_unavailable})",
            "    most nodes without an available pod",
            worst.unavailable,
            check(worst.unavailable <= bound_unavailable)
        );
        if let Some(bound) = surge {
            println!(
                "{:<44} {:>8}   {} (bound {bound}); nodes with two pods at most {}",
                "    most nodes surging (new pod not available)",
                worst.surging,
                check(worst.surging <= bound),
                worst.doubled
            );
        }
        let settled = b.until_status_settled().await?;
        println!("{:<44} {:>8.2} s later", "    DaemonSet status caught up", settled.as_secs_f64());
    }
    let warnings = b.cluster.warnings().await?;
    println!("{:<44} {}", "Warning events", if warnings.is_empty() { "none" } else { &warnings });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, node: Option<&str>, image: &str, ready: bool, deleting: bool) -> Pod {
        let status = if ready { "True" } else { "False" };
        serde_json::from_value(json!({
            "metadata": {"name": uid, "uid": uid, "deletionTimestamp": deleting.then_some("2026-01-01T00:00:00Z")},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": image}]},
            "status": {"conditions": [{"type": "Ready", "status": status}]}}))
        .unwrap()
    }

    #[test]
    fn percentages_round_up_and_counts_stay() {
        assert_eq!((scaled("10%", 1000), scaled("10%", 5), scaled("3", 1000), scaled("0%", 10)), (100, 1, 3, 0));
        assert_eq!((int_or_percent("10%"), int_or_percent("3")), (json!("10%"), json!(3)));
    }

    #[test]
    fn coverage_follows_pods_change_by_change() {
        let mut c = Coverage::default();
        c.retarget("old");
        c.apply(&pod("a", None, "old", false, false), false);
        assert_eq!((c.nodes_unavailable(2), c.live_pods), (2, 0), "not bound yet");
        c.apply(&pod("a", Some("n1"), "old", true, false), false);
        c.apply(&pod("b", Some("n2"), "old", true, false), false);
        assert_eq!((c.nodes_unavailable(2), c.covered_new, c.old_pods), (0, 2, 0));
        // Rolling to "new": n1's old pod is deleted, a new one starts, then is Ready.
        c.retarget("new");
        assert_eq!((c.covered_new, c.old_pods, c.live_pods), (0, 2, 2));
        c.apply(&pod("a", Some("n1"), "old", true, true), false);
        assert_eq!((c.nodes_unavailable(2), c.live_pods), (1, 1), "a pod being deleted serves no more");
        c.apply(&pod("c", Some("n1"), "new", false, false), false);
        c.apply(&pod("a", Some("n1"), "old", true, true), true);
        c.apply(&pod("c", Some("n1"), "new", true, false), false);
        assert_eq!((c.nodes_unavailable(2), c.covered_new, c.old_pods, c.surging), (0, 1, 1, 0));
        // Surge on n2: two pods there, surging until the new one is available, then doubled
        // until the old one is deleted.
        c.apply(&pod("d", Some("n2"), "new", false, false), false);
        assert_eq!((c.live_pods, c.doubled, c.surging), (3, 1, 1));
        c.apply(&pod("d", Some("n2"), "new", true, false), false);
        assert_eq!((c.doubled, c.surging), (1, 0));
        c.apply(&pod("b", Some("n2"), "old", true, true), false);
        assert_eq!((c.doubled, c.surging, c.old_pods), (0, 0, 0));
        c.apply(&pod("b", Some("n2"), "old", true, true), true);
        assert_eq!((c.covered_new, c.live_pods, c.pods.len(), c.nodes.len()), (2, 2, 2, 2));
    }
}
