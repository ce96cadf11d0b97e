//! `kubus bench hpa`: how fast a HorizontalPodAutoscaler reacts, on the real node of `kubus up`
//! (root: real busybox containers, CPU measured from their cgroups by the node agent).
//!
//! A Deployment of one pod (CPU request `--cpu-request`, limit `--cpu-limit`) idles, then at a
//! wall-clock moment written into its template (`LOAD_FROM`) each of its pods, and every pod
//! started later, burns CPU up to its limit until `LOAD_UNTIL`, and idles again. An autoscaling/v2
//! HPA targets `--target-cpu`% utilization between 1 and `--max-replicas`. Reported, from the
//! load's start: the first HPA status that shows the high utilization, the scale decision (the
//! autoscaler writes the Deployment's scale), the Deployment's new replicas all Ready; and from the load's
//! end: the low utilization seen, the decision to scale down (after the scale-down
//! stabilization window), the extra pods gone. The time a change takes to be seen is bounded by
//! the node's usage report period plus the autoscaler's sync period.
//!
//! Everything it makes is removed, also after a failure (see `real_node`).

use crate::host::is_root;
use crate::http::{expect_json, list_items};
use crate::real_node::{condition_true, RealNode};
use anyhow::{bail, Context as _};
use kubus_apimachinery::quantity::parse_quantity;
use serde_json::{json, Value};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NS: &str = "/api/v1/namespaces/default";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const HPAS: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers";
const NAME: &str = "bench-hpa";
/// A Service range of the bench's own, apart from the other benches' and the tests'.
const SERVICE_CIDR: &str = "172.31.252.0/24";

#[derive(clap::Args, Debug)]
pub struct HpaArgs {
    /// The autoscaler's target: average CPU utilization of the pods' requests, in percent.
    #[arg(long, default_value_t = 50)]
    target_cpu: u32,
    #[arg(long, default_value_t = 4)]
    max_replicas: u32,
    /// Each pod's CPU request (what utilization is a percentage of).
    #[arg(long, default_value = "100m")]
    cpu_request: String,
    /// Each pod's CPU limit: a loaded pod uses about this much.
    #[arg(long, default_value = "200m")]
    cpu_limit: String,
    /// `kubus up --horizontal-pod-autoscaler-sync-period` (Go duration; upstream's default).
    #[arg(long, default_value = "15s")]
    sync_period: String,
    /// The HPA's `behavior.scaleDown.stabilizationWindowSeconds` (upstream's default: 300).
    #[arg(long, default_value_t = 60)]
    scale_down_window: u32,
    /// Seconds from the Deployment's creation to the load's start: the pod must be Ready and
    /// the HPA must have read its idle usage by then.
    #[arg(long, default_value_t = 45)]
    lead: u64,
    /// Seconds of load.
    #[arg(long, default_value_t = 120)]
    load_seconds: u64,
}

/// A random whole number below `n`.
fn random_below(n: u64) -> u64 {
    let tok = crate::host::token().unwrap_or_default();
    u64::from_str_radix(&tok, 16).unwrap_or(0) % n.max(1)
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The Instant at which the wall clock reads `unix` seconds.
fn instant_at(unix: u64) -> Instant {
    let now = Instant::now();
    let delta = unix as f64 - unix_now();
    if delta >= 0.0 {
        now + Duration::from_secs_f64(delta)
    } else {
        now - Duration::from_secs_f64(-delta)
    }
}

/// The pod's script: idle until `LOAD_FROM`, busy until `LOAD_UNTIL` (shell arithmetic, so
/// the time is user CPU of the container's own cgroup), then idle. `date +%s` is read once per
/// round of arithmetic, so the load starts and ends within about a second of the set moments.
const SCRIPT: &str = r#"while [ "$(date +%s)" -lt "$LOAD_FROM" ]; do sleep 0.2; done
while [ "$(date +%s)" -lt "$LOAD_UNTIL" ]; do i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; done
exec sleep 3600"#;

fn deployment(args: &HpaArgs, from: u64, until: u64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": NAME},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": NAME}},
            "template": {"metadata": {"labels": {"app": NAME}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": "busybox",
                    "imagePullPolicy": "IfNotPresent", "command": ["sh", "-c", SCRIPT],
                    "env": [{"name": "LOAD_FROM", "value": from.to_string()},
                            {"name": "LOAD_UNTIL", "value": until.to_string()}],
                    "resources": {"requests": {"cpu": args.cpu_request},
                                  "limits": {"cpu": args.cpu_limit}}}]}}}})
}

fn autoscaler(args: &HpaArgs) -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": NAME},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME},
            "minReplicas": 1, "maxReplicas": args.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": args.target_cpu}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": args.scale_down_window}}}})
}

/// The CPU utilization the HPA last computed, if it has one.
fn utilization(hpa: &Value) -> Option<i64> {
    hpa["status"]["currentMetrics"]
        .as_array()?
        .iter()
        .find_map(|m| m["resource"]["current"]["averageUtilization"].as_i64())
}

/// The highest CPU use among `pods` in a PodMetricsList, as a percentage of `request_milli`
/// (for the scale-down: the load is gone from every pod) or the lowest (for the scale-up: every
/// pod carries it); None unless every pod has its metrics.
fn pods_usage(list: &Value, pods: usize, request_milli: i128, highest: bool) -> Option<i64> {
    let items = list["items"].as_array()?;
    if items.len() < pods || pods == 0 {
        return None;
    }
    let percents = items.iter().map(|m| {
        let milli: i128 = m["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| parse_quantity(c["usage"]["cpu"].as_str()?).ok())
            .map(|q| q.milli_value())
            .sum();
        (milli * 100 / request_milli.max(1)) as i64
    });
    if highest {
        percents.max()
    } else {
        percents.min()
    }
}

/// What the bench saw, as times since the load's start or end.
#[derive(Default, Debug)]
struct Timeline {
    /// metrics.k8s.io shows every pod's CPU above the target (what the node reported).
    usage_high: Option<Duration>,
    high_seen: Option<Duration>,
    scale_up_decided: Option<Duration>,
    up_ready: Option<Duration>,
    peak_replicas: i64,
    usage_low: Option<Duration>,
    low_seen: Option<Duration>,
    scale_down_decided: Option<Duration>,
    down_done: Option<Duration>,
}

/// One reading of the cluster while the bench follows the autoscaler.
struct Reading {
    /// The CPU utilization in the HPA's status.
    util: Option<i64>,
    /// metrics.k8s.io: the lowest (while loaded) or highest (after) pod's CPU use in percent
    /// of its request (None: not every pod has metrics yet).
    usage: Option<i64>,
    /// The Deployment's spec.replicas: the autoscaler writes the scale before its status.
    scaled: i64,
    ready_pods: usize,
    /// Pods in the API, terminating ones included.
    pods: usize,
}

/// One step of the timeline, from a reading at `since` (time since the load's start, or its
/// end once `ended`).
fn observe(t: &mut Timeline, target: i64, r: &Reading, since: Duration, ended: bool) {
    if !ended {
        if t.usage_high.is_none() && r.usage.is_some_and(|u| u > target) {
            t.usage_high = Some(since);
        }
        if t.high_seen.is_none() && r.util.is_some_and(|u| u > target) {
            t.high_seen = Some(since);
        }
        if t.scale_up_decided.is_none() && r.scaled > 1 {
            t.scale_up_decided = Some(since);
        }
        t.peak_replicas = t.peak_replicas.max(r.scaled);
        if t.up_ready.is_none() && t.scale_up_decided.is_some() && r.ready_pods as i64 >= t.peak_replicas {
            t.up_ready = Some(since);
        }
    } else {
        if t.usage_low.is_none() && r.usage.is_some_and(|u| u <= target) {
            t.usage_low = Some(since);
        }
        if t.low_seen.is_none() && r.util.is_some_and(|u| u <= target) {
            t.low_seen = Some(since);
        }
        if t.scale_down_decided.is_none() && r.scaled == 1 {
            t.scale_down_decided = Some(since);
        }
        if t.down_done.is_none() && t.scale_down_decided.is_some() && r.pods == 1 {
            t.down_done = Some(since);
        }
    }
}

pub(crate) async fn run(args: HpaArgs) -> anyhow::Result<()> {
    if !is_root() {
        bail!("kubus bench hpa runs real containers on the real node: run it as root");
    }
    kubus_apimachinery::time::parse_go_duration(&args.sync_period)
        .map_err(|e| anyhow::anyhow!("--sync-period: {e}"))?;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    // On Ctrl-C or SIGTERM the bench's future is dropped and the node is cleaned up.
    tokio::select! {
        r = bench(&args) => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; cleaned up"),
        _ = term.recv() => bail!("terminated; cleaned up"),
    }
}

async fn bench(args: &HpaArgs) -> anyhow::Result<()> {
    let up_args = vec![format!("--horizontal-pod-autoscaler-sync-period={}", args.sync_period)];
    let node = RealNode::start("hpa", 'a', SERVICE_CIDR, &up_args).await?;
    let addr = node.addr.clone();
    // The load starts at a random phase of the autoscaler's sync period (a fixed lead would
    // always catch it at the same point of the period, the best or the worst case).
    let sync = kubus_apimachinery::time::parse_go_duration(&args.sync_period).map_err(anyhow::Error::msg)?;
    let jitter = random_below(sync.as_secs().max(1));
    let from = unix_now().ceil() as u64 + args.lead + jitter;
    let until = from + args.load_seconds;
    println!(
        "kubus bench hpa: target {}% of {} requested (limit {}), 1..{} replicas, sync period {}, \
         scale-down window {} s, {} s of load; node {}",
        args.target_cpu,
        args.cpu_request,
        args.cpu_limit,
        args.max_replicas,
        args.sync_period,
        args.scale_down_window,
        args.load_seconds,
        node.names.node_name
    );
    expect_json(&addr, "POST", DEPLOYMENTS, Some(&deployment(args, from, until)), &[201]).await?;
    expect_json(&addr, "POST", HPAS, Some(&autoscaler(args)), &[201]).await?;
    // The controller syncs a new autoscaler at once, then every period.
    let phase = (from as f64 - unix_now()) % sync.as_secs_f64().max(1.0);
    let (load_start, load_end) = (instant_at(from), instant_at(until));
    let pods_path = format!("{NS}/pods?labelSelector=app%3D{NAME}");
    let hpa_path = format!("{HPAS}/{NAME}");
    let deployment_path = format!("{DEPLOYMENTS}/{NAME}");

    // Before the load: the pod Ready and its idle utilization read by the autoscaler.
    let idle = loop {
        let hpa = expect_json(&addr, "GET", &hpa_path, None, &[200]).await?;
        let ready = list_items(&addr, &pods_path).await?.iter().filter(|p| condition_true(p, "Ready")).count();
        if let (1, Some(u)) = (ready, utilization(&hpa)) {
            break u;
        }
        if Instant::now() >= load_start {
            bail!("the pod was not Ready with its usage read by the HPA before the load started: raise --lead");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!(
        "{:<52} {:>5}% (the load starts in {:.1} s, {phase:.1} s into a sync period)",
        "idle utilization read by the HPA",
        idle,
        load_start.saturating_duration_since(Instant::now()).as_secs_f64()
    );

    let target = i64::from(args.target_cpu);
    let request_milli =
        parse_quantity(&args.cpu_request).map_err(anyhow::Error::msg).context("--cpu-request")?.milli_value();
    let metrics_path = format!("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3D{NAME}");
    let mut t = Timeline::default();
    let mut most_util = 0;
    let window = Duration::from_secs(u64::from(args.scale_down_window));
    // Bounds: scale-up within the load; scale-down within its window plus a generous margin.
    let deadline = load_end + window + Duration::from_secs(180);
    tokio::time::sleep_until(load_start.into()).await;
    while Instant::now() < deadline && t.down_done.is_none() {
        let now = Instant::now();
        let hpa = expect_json(&addr, "GET", &hpa_path, None, &[200]).await?;
        let pods = list_items(&addr, &pods_path).await?;
        let live = pods.iter().filter(|p| p["metadata"]["deletionTimestamp"].is_null()).count();
        let ready = pods.iter().filter(|p| condition_true(p, "Ready")).count();
        if let Some(u) = utilization(&hpa) {
            most_util = most_util.max(u);
        }
        let ended = now >= load_end;
        let metrics = expect_json(&addr, "GET", &metrics_path, None, &[200]).await?;
        let deployment = expect_json(&addr, "GET", &deployment_path, None, &[200]).await?;
        let reading = Reading {
            util: utilization(&hpa),
            usage: pods_usage(&metrics, live, request_milli, ended),
            scaled: deployment["spec"]["replicas"].as_i64().unwrap_or(0),
            ready_pods: ready,
            pods: pods.len(),
        };
        let since = if ended { now - load_end } else { now - load_start };
        observe(&mut t, target, &reading, since, ended);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let secs = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{:.1}", d.as_secs_f64()));
    println!("from the load's start:");
    println!("{:<52} {:>7} s", "  every pod's usage above target in metrics.k8s.io", secs(t.usage_high));
    println!(
        "{:<52} {:>7} s   (highest {}%)",
        "  utilization above target in the HPA's status",
        secs(t.high_seen),
        most_util
    );
    println!(
        "{:<52} {:>7} s   (to {} replicas)",
        "  scale-up written (the Deployment's replicas > 1)",
        secs(t.scale_up_decided),
        t.peak_replicas
    );
    println!("{:<52} {:>7} s", format!("  all {} replicas Ready", t.peak_replicas), secs(t.up_ready));
    println!("from the load's end:");
    println!("{:<52} {:>7} s", "  every pod's usage <= target in metrics.k8s.io", secs(t.usage_low));
    println!("{:<52} {:>7} s", "  utilization <= target in the HPA's status", secs(t.low_seen));
    println!(
        "{:<52} {:>7} s   (window {} s)",
        "  scale-down written (replicas back to 1)",
        secs(t.scale_down_decided),
        args.scale_down_window
    );
    println!("{:<52} {:>7} s", "  back to 1 pod (the others gone from the API)", secs(t.down_done));
    if t.up_ready.is_none() || t.down_done.is_none() {
        bail!(
            "the autoscaler did not go up and back down in time ({t:?}); see {}",
            node.dir.join("kubus.log").display()
        );
    }
    expect_json(&addr, "DELETE", &hpa_path, None, &[200]).await?;
    expect_json(&addr, "DELETE", &format!("{DEPLOYMENTS}/{NAME}"), None, &[200, 202]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(util: i64, usage: i64, scaled: i64, ready_pods: usize, pods: usize) -> Reading {
        Reading { util: Some(util), usage: Some(usage), scaled, ready_pods, pods }
    }

    #[test]
    fn the_timeline_follows_the_autoscaler_up_and_down() {
        let mut t = Timeline::default();
        let s = Duration::from_secs;
        observe(&mut t, 50, &r(0, 5, 1, 1, 1), s(1), false);
        assert!(t.usage_high.is_none() && t.high_seen.is_none() && t.scale_up_decided.is_none());
        observe(&mut t, 50, &r(0, 190, 1, 1, 1), s(8), false);
        observe(&mut t, 50, &r(180, 190, 4, 1, 4), s(12), false);
        // Not all Ready yet: the scale-up is not done.
        assert!(t.up_ready.is_none());
        observe(&mut t, 50, &r(190, 190, 4, 4, 4), s(13), false);
        assert_eq!(t.usage_high, Some(s(8)));
        assert_eq!(
            (t.high_seen, t.scale_up_decided, t.up_ready, t.peak_replicas),
            (Some(s(12)), Some(s(12)), Some(s(13)), 4)
        );
        observe(&mut t, 50, &r(190, 3, 4, 4, 4), s(6), true);
        observe(&mut t, 50, &r(10, 3, 4, 4, 4), s(11), true);
        observe(&mut t, 50, &r(0, 3, 1, 4, 4), s(70), true);
        assert!(t.down_done.is_none(), "the extra pods are still there");
        observe(&mut t, 50, &r(0, 3, 1, 1, 1), s(73), true);
        assert_eq!(
            (t.usage_low, t.low_seen, t.scale_down_decided, t.down_done),
            (Some(s(6)), Some(s(11)), Some(s(70)), Some(s(73)))
        );
    }

    #[test]
    fn pod_usage_is_a_percentage_of_the_request_once_every_pod_has_metrics() {
        let list = json!({"items": [
            {"containers": [{"name": "main", "usage": {"cpu": "190m", "memory": "1Mi"}}]},
            {"containers": [{"name": "main", "usage": {"cpu": "20000000n", "memory": "1Mi"}}]}]});
        assert_eq!(pods_usage(&list, 2, 100, false), Some(20));
        assert_eq!(pods_usage(&list, 2, 100, true), Some(190));
        assert_eq!(pods_usage(&list, 3, 100, true), None, "a pod without metrics yet");
        assert_eq!(pods_usage(&json!({}), 0, 100, true), None);
    }

    #[test]
    fn the_template_carries_the_load_window_and_resources() {
        let args = HpaArgs {
            target_cpu: 50,
            max_replicas: 4,
            cpu_request: "100m".into(),
            cpu_limit: "200m".into(),
            sync_period: "15s".into(),
            scale_down_window: 60,
            lead: 45,
            load_seconds: 120,
        };
        let d = deployment(&args, 1000, 1120);
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["env"][0], json!({"name": "LOAD_FROM", "value": "1000"}));
        assert_eq!(c["resources"]["limits"]["cpu"], "200m");
        let h = autoscaler(&args);
        assert_eq!(h["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"], 60);
        assert_eq!(h["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"], 50);
    }
}
